use std::env;

/// Addresses of the local servers. Defaults match `scripts/dev`; each can be moved with the
/// environment variable named next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `SUMMIT_KAFKA_BOOTSTRAP`: tansu, the Kafka-protocol broker.
    pub kafka_bootstrap: String,
    /// `SUMMIT_KINESIS_ENDPOINT`: kinesis-local (enhanced fan-out, resharding).
    pub kinesis: String,
    /// `SUMMIT_KINESALITE_ENDPOINT`: kinesalite (bulk polling throughput).
    pub kinesalite: String,
    /// `SUMMIT_DYNAMODB_ENDPOINT`: dynalite.
    pub dynamodb: String,
    /// `SUMMIT_SQS_ENDPOINT`: moto server.
    pub sqs: String,
    /// `SUMMIT_POSTGRES_URL`: an admin connection used to create per-test databases.
    pub postgres_admin_url: String,
    /// `SUMMIT_REGISTRY_URL`: the project's Confluent-compatible schema registry.
    pub schema_registry: String,
    /// `SUMMIT_AWS_REGION`: the region every local AWS stand-in is addressed with.
    pub aws_region: String,
}

impl Endpoints {
    pub fn from_env() -> Self {
        Self {
            kafka_bootstrap: var("SUMMIT_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            kinesis: var("SUMMIT_KINESIS_ENDPOINT", "http://127.0.0.1:4567"),
            kinesalite: var("SUMMIT_KINESALITE_ENDPOINT", "http://127.0.0.1:4569"),
            dynamodb: var("SUMMIT_DYNAMODB_ENDPOINT", "http://127.0.0.1:4570"),
            sqs: var("SUMMIT_SQS_ENDPOINT", "http://127.0.0.1:4571"),
            postgres_admin_url: var(
                "SUMMIT_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            schema_registry: var("SUMMIT_REGISTRY_URL", "http://127.0.0.1:18081"),
            aws_region: var("SUMMIT_AWS_REGION", "us-east-1"),
        }
    }
}

fn var(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_variable_falls_back_to_default() {
        // An exported-but-empty variable (common in CI templates) must not produce an empty URL.
        assert_eq!(var("SUMMIT_TEST_SUPPORT_UNSET_VARIABLE", "x"), "x");
    }
}
