//! Reference sets loaded from a real Postgres (127.0.0.1:5432, see `scripts/dev`), refreshed by
//! the evaluator's own refresh task.

use std::sync::Arc;
use std::time::Duration;

use dq_rules::{Evaluator, RuleSet, Verdict};
use serde_json::json;
use summit_test_support::Endpoints;
use summit_test_support::postgres::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reference_set_loads_refreshes_and_versions_its_snapshots() {
    let endpoints = Endpoints::from_env();
    let database = TestDatabase::create(&endpoints, "dq_reference")
        .await
        .expect("Postgres at SUMMIT_POSTGRES_URL (scripts/dev up)");
    sqlx::raw_sql(
        "CREATE TABLE skus (sku text PRIMARY KEY); INSERT INTO skus VALUES ('A-1'), ('B-2');",
    )
    .execute(&database.pool)
    .await
    .expect("seed skus");

    let rules = RuleSet::from_yaml_str(&format!(
        "name: pg\nreferences:\n  skus:\n    postgres: {{url: '{}', query: 'SELECT sku FROM skus'}}\n    refresh: 200ms\nrules:\n  - {{id: sku-known, field: sku, kind: reference, severity: hard, params: {{set: skus}}}}\n",
        database.url
    ))
    .expect("valid rule set");
    let evaluator = Arc::new(Evaluator::build(&rules).await.expect("loads from Postgres"));
    let first = evaluator.evaluate(&json!({"sku": "A-1"}));
    assert_eq!(first.verdict, Verdict::Pass);
    assert_eq!(
        evaluator.evaluate(&json!({"sku": "C-3"})).verdict,
        Verdict::HardFail
    );

    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&errors);
    let tasks = evaluator.spawn_reference_refresh(move |e| {
        if let Ok(mut list) = sink.lock() {
            list.push(e.to_string());
        }
    });
    sqlx::raw_sql("INSERT INTO skus VALUES ('C-3')")
        .execute(&database.pool)
        .await
        .expect("add a sku");
    let mut refreshed = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let outcome = evaluator.evaluate(&json!({"sku": "C-3"}));
        if outcome.verdict == Verdict::Pass {
            refreshed = Some(outcome);
            break;
        }
    }
    let refreshed = refreshed.expect("the refresh task picked up the new row within 5 s");
    assert_ne!(
        first.reference_version, refreshed.reference_version,
        "a new snapshot has a new version"
    );

    // A source that stops answering keeps the last good snapshot and reports the error.
    let snapshot_before = evaluator.reference_data().version.clone();
    sqlx::raw_sql("DROP TABLE skus")
        .execute(&database.pool)
        .await
        .expect("drop");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(evaluator.reference_data().version, snapshot_before);
    assert_eq!(
        evaluator.evaluate(&json!({"sku": "C-3"})).verdict,
        Verdict::Pass
    );
    let reported = errors.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        reported
            .iter()
            .any(|e| e.contains("skus") && e.contains("Postgres")),
        "{reported:?}"
    );

    for task in tasks {
        task.abort();
    }
    database.drop_database().await.expect("drop test database");
}

#[tokio::test]
async fn unreachable_postgres_reference_is_a_load_error_naming_set_and_rule() {
    let rules = RuleSet::from_yaml_str(
        "name: pg\nreferences:\n  skus:\n    postgres: {url: 'postgres://postgres@127.0.0.1:1/none', query: 'SELECT 1'}\nrules:\n  - {id: sku-known, field: sku, kind: reference, severity: hard, params: {set: skus}}\n",
    )
    .expect("valid rule set");
    let error = Evaluator::build(&rules)
        .await
        .expect_err("nothing listens on port 1");
    let text = error.to_string();
    assert!(
        text.contains("skus") && text.contains("sku-known"),
        "{text}"
    );
}
