//! Config parsing, defaults, overrides and the errors that name the key.

use super::*;

const MINIMAL: &str = r#"
kafka: { bootstrap_servers: "127.0.0.1:19092", group_id: g, cluster_name: local }
routes:
  - { topics: [orders], dataset: orders, rules: orders.rules.yaml }
"#;

fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_yaml(
        text,
        Path::new("test.yaml"),
        PathBuf::from("/etc/summit"),
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

#[test]
fn consumer_properties_extend_the_defaults() {
    let defaults = parse(MINIMAL, &[]).expect("valid");
    assert_eq!(
        defaults.kafka.consumer_properties.get("fetch.wait.max.ms"),
        Some(&"20".to_owned())
    );
    let text = MINIMAL.replace(
        "cluster_name: local }",
        "cluster_name: local, consumer_properties: { fetch.wait.max.ms: '500', fetch.min.bytes: '1' } }",
    );
    let overridden = parse(&text, &[]).expect("valid");
    let properties = &overridden.kafka.consumer_properties;
    assert_eq!(properties.get("fetch.wait.max.ms"), Some(&"500".to_owned()));
    assert_eq!(properties.get("fetch.min.bytes"), Some(&"1".to_owned()));
}

#[test]
fn defaults_and_env_overrides() {
    let config = parse(
        MINIMAL,
        &[
            ("SUMMIT_KAFKA__BOOTSTRAP_SERVERS", "broker:9092"),
            ("SUMMIT_LIMITS__MAX_IN_FLIGHT_RECORDS", "500"),
            ("SUMMIT_ROUTES__0__DATASET", "orders_v2"),
            ("SUMMIT_KAFKA_BOOTSTRAP", "ignored: no double underscore"),
        ],
    )
    .expect("valid");
    assert_eq!(config.kafka.bootstrap_servers, "broker:9092");
    assert_eq!(config.limits.max_in_flight_records, 500);
    assert_eq!(config.routes[0].dataset, "orders_v2");
    assert_eq!(config.delivery.mode, DeliveryMode::EffectivelyOnce);
    assert_eq!(config.kafka.session_timeout, Duration::from_secs(6));
    assert_eq!(config.mesh_bootstrap_servers(), "broker:9092");
    assert_eq!(
        config.rules_path(&config.routes[0]),
        PathBuf::from("/etc/summit/orders.rules.yaml")
    );
}

#[test]
fn operations_sections_default_sensibly() {
    let config = parse(MINIMAL, &[]).expect("valid");
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9464");
    assert!(config.lineage.enabled);
    assert_eq!(
        config.lineage.topic,
        summit_envelope::topics::LINEAGE_EVENTS
    );
    assert_eq!(config.lineage_bootstrap_servers(), "127.0.0.1:19092");
    assert!(config.tickets.is_none());
    assert_eq!(config.dlq.max_records_per_second, 5_000.0);
    assert_eq!(config.dlq.companions_per_window, 100);
    assert_eq!(config.dlq.companion_window, Duration::from_secs(10));
}

#[test]
fn admin_telemetry_lineage_tickets_and_dlq_sections() {
    let text = format!(
        "{MINIMAL}admin: {{ listen: \"127.0.0.1:0\", lag_interval: 1s }}\n\
         telemetry: {{ log_format: text, otlp_endpoint: \"http://collector:4318\" }}\n\
         lineage: {{ bootstrap_servers: \"lineage:9092\", emit_budget: 2s }}\n\
         tickets: {{ threshold: 5, window: 10m, webhook: {{ url: \"http://t/x\", max_attempts: 2 }} }}\n\
         dlq: {{ max_records_per_second: 200, companion_window: 1s }}\n"
    );
    let config = parse(&text, &[("SUMMIT_TICKETS__THRESHOLD", "7")]).expect("valid");
    assert_eq!(config.admin.listen.port(), 0);
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://collector:4318")
    );
    assert_eq!(config.lineage_bootstrap_servers(), "lineage:9092");
    assert_eq!(config.lineage.emit_budget, Duration::from_secs(2));
    let tickets = config.tickets.expect("tickets");
    assert_eq!(tickets.threshold, 7);
    assert_eq!(tickets.window, Duration::from_secs(600));
    assert_eq!(tickets.max_samples, 10);
    assert_eq!(tickets.webhook.max_attempts, 2);
    assert_eq!(config.dlq.max_records_per_second, 200.0);
    assert_eq!(config.dlq.companion_window, Duration::from_secs(1));

    for (extra, key) in [
        (
            "tickets: { threshold: 0, window: 1m, webhook: { url: \"http://t\" } }",
            "tickets.threshold",
        ),
        ("lineage: { max_attempts: 0 }", "lineage.max_attempts"),
        ("admin: { listen: \"nowhere\" }", "admin.listen"),
        ("telemetry: { log_fromat: text }", "log_fromat"),
        (
            "dlq: { max_records_per_second: 0 }",
            "dlq.max_records_per_second",
        ),
        (
            "dlq: { max_bytes_per_second: -5 }",
            "dlq.max_bytes_per_second",
        ),
        (
            "dlq: { companions_per_window: 0 }",
            "dlq.companions_per_window",
        ),
    ] {
        let error = parse(&format!("{MINIMAL}{extra}\n"), &[]).expect_err(key);
        assert!(error.to_string().contains(key), "{key}: {error}");
    }
}

#[test]
fn the_readme_example_is_a_valid_config() {
    let readme = include_str!("../../README.md");
    let example = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a yaml example");
    let config = parse(example, &[]).expect("the README example parses");
    assert_eq!(config.routes[0].subject.as_deref(), Some("orders-value"));
    assert_eq!(config.tickets.expect("tickets").threshold, 50);
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let text = MINIMAL.replace("group_id: g", "group_id: g, sesion_timeout: 5s");
    let error = parse(&text, &[]).expect_err("typo");
    let message = error.to_string();
    assert!(message.contains("kafka"), "{message}");
    assert!(message.contains("sesion_timeout"), "{message}");

    let error = parse(MINIMAL, &[("SUMMIT_LIMITS__MAX_BYTES", "1")]).expect_err("env typo");
    assert!(error.to_string().contains("max_bytes"), "{error}");
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        (
            MINIMAL.replace("topics: [orders]", "topic_pattern: '^orders(['"),
            "routes[0].topic_pattern",
        ),
        (
            MINIMAL.replace("topics: [orders]", "topic_pattern: 'orders.*'"),
            "routes[0].topic_pattern",
        ),
        (
            format!("{MINIMAL}limits: {{ max_in_flight_bytes: 0 }}\n"),
            "limits.max_in_flight_bytes",
        ),
        (
            format!("{MINIMAL}delivery: {{ mode: at_most_once }}\n"),
            "delivery.mode",
        ),
        (
            MINIMAL.replace(
                "dataset: orders,",
                "dataset: orders, subject: orders-value,",
            ),
            "schema_registry.url",
        ),
    ];
    for (text, key) in cases {
        let error = parse(&text, &[]).expect_err(key);
        assert!(error.to_string().contains(key), "{key}: {error}");
    }
}
