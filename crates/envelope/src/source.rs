use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Where a record came from: the `summit-source` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceCoordinates {
    Kafka {
        cluster: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
    Kinesis {
        region: String,
        stream: String,
        shard_id: String,
        sequence_number: String,
    },
}

/// Namespace of `summit-event-id` UUIDv5s. Fixed forever: changing it would give every replayed
/// record a new id and defeat downstream de-duplication.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_7e3a_9b1d_4c2e_8a61_3d0f_b2e4_c901);

/// The deterministic event id of a source record: UUIDv5 of its `summit-source` URI, so the same
/// record gets the same id on every replay, in every service.
pub fn event_id(source: &SourceCoordinates) -> Uuid {
    Uuid::new_v5(&EVENT_ID_NAMESPACE, source.to_string().as_bytes())
}

impl fmt::Display for SourceCoordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kafka {
                cluster,
                topic,
                partition,
                offset,
            } => write!(f, "kafka://{cluster}/{topic}/{partition}/{offset}"),
            Self::Kinesis {
                region,
                stream,
                shard_id,
                sequence_number,
            } => write!(
                f,
                "kinesis://{region}/{stream}/{shard_id}/{sequence_number}"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a summit-source URI ({reason}): `{input}`")]
pub struct SourceParseError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for SourceCoordinates {
    type Err = SourceParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| SourceParseError {
            input: input.to_owned(),
            reason,
        };
        let (scheme, rest) = input.split_once("://").ok_or(err("missing scheme"))?;
        // Cluster, topic, stream and shard names never contain '/', so four segments are exact.
        let parts: Vec<&str> = rest.split('/').collect();
        let [a, b, c, d] = parts[..] else {
            return Err(err("expected four path segments"));
        };
        if [a, b, c, d].iter().any(|s| s.is_empty()) {
            return Err(err("empty segment"));
        }
        match scheme {
            "kafka" => Ok(Self::Kafka {
                cluster: a.to_owned(),
                topic: b.to_owned(),
                partition: c.parse().map_err(|_| err("partition is not a number"))?,
                offset: d.parse().map_err(|_| err("offset is not a number"))?,
            }),
            "kinesis" => Ok(Self::Kinesis {
                region: a.to_owned(),
                stream: b.to_owned(),
                shard_id: c.to_owned(),
                sequence_number: d.to_owned(),
            }),
            _ => Err(err("scheme must be kafka or kinesis")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(offset: i64) -> SourceCoordinates {
        SourceCoordinates::Kafka {
            cluster: "prod-eu".into(),
            topic: "orders".into(),
            partition: 3,
            offset,
        }
    }

    #[test]
    fn uri_round_trips() {
        let kinesis = SourceCoordinates::Kinesis {
            region: "eu-west-1".into(),
            stream: "clicks".into(),
            shard_id: "shardId-000000000001".into(),
            sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
        };
        for source in [kafka(42), kinesis] {
            let text = source.to_string();
            assert_eq!(text.parse::<SourceCoordinates>(), Ok(source));
        }
        assert_eq!(kafka(42).to_string(), "kafka://prod-eu/orders/3/42");
    }

    #[test]
    fn event_id_is_stable_and_distinct() {
        assert_eq!(event_id(&kafka(1)), event_id(&kafka(1)));
        assert_ne!(event_id(&kafka(1)), event_id(&kafka(2)));
        // Pinned (computed independently with Python's uuid.uuid5): a change here gives every
        // record already in the mesh a new id and breaks de-duplication.
        assert_eq!(
            event_id(&kafka(1)).to_string(),
            "7c07e112-279a-5223-b5fc-7a064b8cc546"
        );
        assert_eq!(event_id(&kafka(1)).get_version_num(), 5);
    }

    #[test]
    fn bad_uris_name_the_problem() {
        for (input, reason) in [
            ("orders/3/1", "missing scheme"),
            ("kafka://c/t/3", "expected four path segments"),
            ("kafka://c/t/x/1", "partition is not a number"),
            ("kafka://c//3/1", "empty segment"),
            ("http://c/t/3/1", "scheme must be kafka or kinesis"),
        ] {
            let err = input.parse::<SourceCoordinates>().expect_err(input);
            assert_eq!(err.reason, reason, "{input}");
        }
    }
}
