use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test, process or earlier run has used: `<prefix>-<time>-<pid>-<n>-<random>`.
///
/// nextest runs every test in its own process, so the pid alone would repeat across runs; the
/// clock and a random suffix keep re-runs against long-lived servers apart. Only characters
/// valid in Kafka topics, Kinesis streams, DynamoDB tables, SQS queues and (lower-cased)
/// Postgres identifiers are used.
pub fn unique_name(prefix: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt: u16 = rand::random();
    format!(
        "{}-{millis}-{}-{n}-{salt:04x}",
        prefix.to_ascii_lowercase(),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_and_keep_the_prefix() {
        let a = unique_name("Orders");
        let b = unique_name("Orders");
        assert_ne!(a, b);
        assert!(a.starts_with("orders-"), "{a}");
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{a}"
        );
    }
}
