//! `summitctl dq check` end to end, with Great Expectations itself as the oracle for
//! `--gx-suite` (run through `$SUMMIT_PYTHON`, set up by `scripts/dev test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn dq_rules_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dq-rules/tests")
}

fn summitctl(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_summitctl"))
        .args(args)
        .output()
        .expect("summitctl runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn gx_suite_check_agrees_with_great_expectations() {
    let python = std::env::var("SUMMIT_PYTHON").expect(
        "SUMMIT_PYTHON must name a Python with great-expectations installed \
         (scripts/dev test sets it from scripts/requirements-test.txt)",
    );
    let dir = dq_rules_tests();
    let suite = dir.join("data/gx_suite.json");
    let records = dir.join("data/orders.ndjson");

    let oracle = Command::new(&python)
        .arg(dir.join("gx_oracle.py"))
        .arg(&suite)
        .arg(&records)
        .output()
        .expect("the GX oracle script starts");
    assert!(
        oracle.status.success(),
        "gx_oracle.py failed: {}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    let expected: Vec<Value> = serde_json::from_slice(&oracle.stdout).expect("oracle prints JSON");

    let (code, stdout, stderr) = summitctl(&[
        "dq",
        "check",
        "--gx-suite",
        suite.to_str().expect("utf-8 path"),
        "--input",
        records.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]);
    let ours: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    // Two hard failures (null order id, amount out of range) in the file: exit status 2.
    assert_eq!(code, 2, "stderr: {stderr}");

    let rules = ours["rules"].as_array().expect("rules array");
    assert_eq!(rules.len(), expected.len());
    for gx in &expected {
        let short = gx["type"]
            .as_str()
            .expect("type")
            .trim_start_matches("expect_column_");
        let id = format!("{}:{short}", gx["column"].as_str().expect("column"));
        let rule = rules
            .iter()
            .find(|r| r["rule_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no rule {id} in {rules:?}"));
        for key in [
            "success",
            "element_count",
            "unexpected_count",
            "unexpected_index_list",
        ] {
            assert_eq!(
                rule[key], gx[key],
                "{id}: {key} differs (ours {rule}, GX {gx})"
            );
        }
    }
}

#[test]
fn rule_set_check_reports_bad_lines_and_exit_status() {
    let dir = tempdir();
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "name: t\nrules:\n  - {id: amount, field: amount, kind: range, severity: soft, params: {min: 0}}\n",
    )
    .expect("write rules");
    let input = dir.join("in.ndjson");
    std::fs::write(&input, "{\"amount\": 1}\nnot json\n\n{\"amount\": -1}\n").expect("write input");
    let (code, stdout, stderr) = summitctl(&[
        "dq",
        "check",
        "--rules",
        rules.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    // Only a soft failure: exit 0.
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("line 2: not JSON"), "{stdout}");
    assert!(stdout.contains("line 4: soft_fail"), "{stdout}");
    assert!(
        stdout.contains("records 2: pass 1, soft_fail 1, hard_fail 0; not JSON 1"),
        "{stdout}"
    );

    std::fs::write(
        &rules,
        "name: t\nrules:\n  - {id: amount, field: amount, kind: rnage, severity: soft}\n",
    )
    .expect("write rules");
    let (code, _, stderr) = summitctl(&[
        "dq",
        "check",
        "--rules",
        rules.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("rule `amount`: unknown kind `rnage`"),
        "{stderr}"
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "summitctl-dq-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
