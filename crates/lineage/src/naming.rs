//! Job and dataset names (DESIGN §6). Kafka and Postgres follow the OpenLineage naming spec;
//! Kinesis and SQS, which it lacks, use `kinesis://<region>` and `sqs://<region>`.

use crate::event::{Dataset, DatasetFacets, Job};

/// Namespace of every Summit job.
pub const JOB_NAMESPACE: &str = "summit";

/// The job of a service reading one source: `kafka-consumer.orders`.
pub fn job(service: &str, source: &str) -> Job {
    Job {
        namespace: JOB_NAMESPACE.to_owned(),
        name: format!("{service}.{source}"),
    }
}

/// A dataset's identity: namespace (where it lives) and name (what it is there).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatasetName {
    pub namespace: String,
    pub name: String,
}

impl DatasetName {
    /// `kafka://host:port` + topic. `bootstrap_servers` may be a comma-separated list; the spec
    /// names the cluster by its first bootstrap server.
    pub fn kafka(bootstrap_servers: &str, topic: &str) -> Self {
        let first = bootstrap_servers
            .split(',')
            .map(str::trim)
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        Self {
            namespace: format!("kafka://{first}"),
            name: topic.to_owned(),
        }
    }

    /// `postgres://host:port` + `database.schema.table`.
    pub fn postgres(host: &str, port: u16, database: &str, schema: &str, table: &str) -> Self {
        Self {
            namespace: format!("postgres://{host}:{port}"),
            name: format!("{database}.{schema}.{table}"),
        }
    }

    /// `kinesis://<region>` + stream name.
    pub fn kinesis(region: &str, stream: &str) -> Self {
        Self {
            namespace: format!("kinesis://{region}"),
            name: stream.to_owned(),
        }
    }

    /// `sqs://<region>` + queue name.
    pub fn sqs(region: &str, queue: &str) -> Self {
        Self {
            namespace: format!("sqs://{region}"),
            name: queue.to_owned(),
        }
    }

    pub(crate) fn into_dataset(self, facets: DatasetFacets) -> Dataset {
        Dataset {
            namespace: self.namespace,
            name: self.name,
            facets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_design_section_6() {
        assert_eq!(
            job("kafka-consumer", "orders").name,
            "kafka-consumer.orders"
        );
        assert_eq!(job("kafka-consumer", "orders").namespace, "summit");
        assert_eq!(
            DatasetName::kafka(" broker-1:9092, broker-2:9092", "mesh.orders"),
            DatasetName {
                namespace: "kafka://broker-1:9092".to_owned(),
                name: "mesh.orders".to_owned()
            }
        );
        let pg = DatasetName::postgres("db", 5432, "ledger", "public", "entries");
        assert_eq!(
            (pg.namespace.as_str(), pg.name.as_str()),
            ("postgres://db:5432", "ledger.public.entries")
        );
        let kinesis = DatasetName::kinesis("eu-west-1", "clicks");
        assert_eq!(
            (kinesis.namespace.as_str(), kinesis.name.as_str()),
            ("kinesis://eu-west-1", "clicks")
        );
        let sqs = DatasetName::sqs("us-east-1", "dlq-clicks");
        assert_eq!(
            (sqs.namespace.as_str(), sqs.name.as_str()),
            ("sqs://us-east-1", "dlq-clicks")
        );
    }
}
