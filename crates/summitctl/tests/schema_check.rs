//! The `schema:check` gate as CI runs it: the real binary over the repository's schemas/ and over
//! a temporary folder holding a breaking change.

use std::path::{Path, PathBuf};
use std::process::Command;

fn summitctl(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_summitctl"))
        .args(args)
        .env_remove("SUMMIT_REGISTRY_URL")
        .output()
        .expect("summitctl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn temp_schemas(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("summit-schema-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn repository_schemas_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let (ok, text) = summitctl(&[
        "schema",
        "check",
        "--dir",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("schema check passed"), "{text}");
}

#[test]
fn breaking_avro_change_fails_naming_subject_versions_path_and_reason() {
    let dir = temp_schemas("avro");
    write(
        &dir.join("payments-value/subject.yaml"),
        "type: AVRO\ncompatibility: BACKWARD\n",
    );
    write(
        &dir.join("payments-value/v1.avsc"),
        r#"{"type":"record","name":"Payment","fields":[{"name":"id","type":"string"}]}"#,
    );
    // v2 adds a field without a default: v2 cannot read v1 data.
    write(
        &dir.join("payments-value/v2.avsc"),
        r#"{"type":"record","name":"Payment","fields":[{"name":"id","type":"string"},{"name":"amount","type":"long"}]}"#,
    );
    let (ok, text) = summitctl(&[
        "schema",
        "check",
        "--dir",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert!(!ok, "a breaking change must exit non-zero: {text}");
    for needle in [
        "payments-value",
        "v2 vs v1",
        "$.amount",
        "no default",
        "BACKWARD",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn breaking_json_change_and_transitive_level_fail() {
    let dir = temp_schemas("json");
    write(
        &dir.join("clicks-value/subject.yaml"),
        "type: JSON\ncompatibility: FORWARD_TRANSITIVE\n",
    );
    write(
        &dir.join("clicks-value/v1.json"),
        r#"{"type":"object","properties":{"page":{"type":"string"}},"required":["page"]}"#,
    );
    write(
        &dir.join("clicks-value/v2.json"),
        r#"{"type":"object","properties":{"page":{"type":"string"}}}"#,
    );
    // Old readers must read new data: v1 requires `page` (v2, v3 do not), and v3 makes `page` an
    // integer, which v1 and v2 (strings) cannot accept.
    write(
        &dir.join("clicks-value/v3.json"),
        r#"{"type":"object","properties":{"page":{"type":"integer"}}}"#,
    );
    let (ok, text) = summitctl(&[
        "schema",
        "check",
        "--dir",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert!(!ok, "{text}");
    for needle in [
        "clicks-value",
        "v2 vs v1",
        "v3 vs v1",
        "$.page",
        "became required",
        "narrowed",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_level_in_subject_yaml_is_reported() {
    let dir = temp_schemas("level");
    write(
        &dir.join("x-value/subject.yaml"),
        "type: AVRO\ncompatibility: SIDEWAYS\n",
    );
    write(&dir.join("x-value/v1.avsc"), r#""string""#);
    let (ok, text) = summitctl(&[
        "schema",
        "check",
        "--dir",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert!(!ok);
    assert!(
        text.contains("subject.yaml") && text.contains("SIDEWAYS"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The deploy-time half of the gate: files that pass offline but would break what a registry
/// already holds must fail with `--registry`.
#[test]
fn newest_file_incompatible_with_the_registry_fails() {
    use summit_schema::{RegistryClient, SchemaDefinition};
    use summit_test_support::{Endpoints, postgres::TestDatabase};

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (db, registry) = runtime.block_on(async {
        let db = TestDatabase::create(&Endpoints::from_env(), "schema_gate")
            .await
            .expect("database");
        let pool = schema_registry_server::connect(&db.url, 4)
            .await
            .expect("migrated registry database");
        let registry = schema_registry_server::RunningRegistry::start("127.0.0.1:0", pool)
            .await
            .expect("registry");
        let client = RegistryClient::new(&registry.url).expect("client");
        client
            .register(
                "payments-value",
                &SchemaDefinition::avro(
                    r#"{"type":"record","name":"Payment","fields":[{"name":"id","type":"string"}]}"#,
                ),
            )
            .await
            .expect("register v1 in the registry");
        (db, registry)
    });

    // Locally the subject has a single version, so the offline check has nothing to compare and
    // passes; against the registry, `amount` (no default) cannot be read from its v1 data.
    let dir = temp_schemas("registry");
    write(
        &dir.join("payments-value/subject.yaml"),
        "type: AVRO\ncompatibility: BACKWARD\n",
    );
    write(
        &dir.join("payments-value/v1.avsc"),
        r#"{"type":"record","name":"Payment","fields":[{"name":"id","type":"string"},{"name":"amount","type":"long"}]}"#,
    );
    let dir_arg = dir.to_str().expect("utf-8 path");
    let (offline_ok, offline) = summitctl(&["schema", "check", "--dir", dir_arg]);
    assert!(offline_ok, "offline check should pass: {offline}");

    let (ok, text) = summitctl(&[
        "schema",
        "check",
        "--dir",
        dir_arg,
        "--registry",
        &registry.url,
    ]);
    assert!(
        !ok,
        "an incompatibility with the registry must exit non-zero: {text}"
    );
    for needle in ["payments-value", "registry version 1", "$.amount"] {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(registry);
    runtime
        .block_on(db.drop_database())
        .expect("drop the test database");
}
