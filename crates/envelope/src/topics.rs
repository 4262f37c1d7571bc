//! Topic names of DESIGN §4. Datasets and source topics come from routing config.

/// One JSON validation result per non-pass record, plus periodic per-rule counts.
pub const DQ_EVENTS: &str = "dq.events";
/// OpenLineage RunEvents, keyed by run id.
pub const LINEAGE_EVENTS: &str = "lineage.events";

/// Validated events of one dataset.
pub fn mesh(dataset: &str) -> String {
    format!("mesh.{dataset}")
}

/// soft_fail records of one dataset, replayable.
pub fn quarantine(dataset: &str) -> String {
    format!("dq.quarantine.{dataset}")
}

/// Records of a Kafka source topic that could not be decoded or delivered.
pub fn dlq(source_topic: &str) -> String {
    format!("dlq.{source_topic}")
}

/// Late data of a stream-processor output.
pub fn late(output: &str) -> String {
    format!("mesh.{output}.late")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        assert_eq!(mesh("orders"), "mesh.orders");
        assert_eq!(quarantine("orders"), "dq.quarantine.orders");
        assert_eq!(dlq("src.orders"), "dlq.src.orders");
        assert_eq!(late("orders_5m"), "mesh.orders_5m.late");
    }
}
