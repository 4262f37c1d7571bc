//! Avro decisions against the Apache Avro reference checker (`avro` on PyPI, pinned in
//! scripts/requirements-test.txt): every (reader, writer) pair its own compatibility tests put to
//! its checker is put to ours, and the answers are compared.

use std::path::Path;
use std::process::Command;

use summit_schema::SchemaDefinition;
use summit_schema::compat::{ParsedSchema, reader_problems};

fn oracle_pairs() -> serde_json::Value {
    let python = std::env::var("SUMMIT_PYTHON").unwrap_or_else(|_| {
        panic!("SUMMIT_PYTHON is not set: point it at a Python with the pinned `avro` package (scripts/dev test does)")
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/avro_oracle.py");
    let output = Command::new(&python)
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run SUMMIT_PYTHON={python}: {e}"));
    assert!(
        output.status.success(),
        "avro_oracle.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("avro_oracle.py prints JSON")
}

/// Our decision, or why our side could not decide.
fn our_decision(
    reader: &serde_json::Value,
    writer: &serde_json::Value,
) -> Result<(bool, String), String> {
    let parse = |json: &serde_json::Value| {
        ParsedSchema::parse(&SchemaDefinition::avro(json.to_string())).map_err(|e| e.to_string())
    };
    let problems = reader_problems(&parse(writer)?, &parse(reader)?);
    let detail = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Ok((problems.is_empty(), detail))
}

#[test]
fn avro_decisions_agree_with_the_reference_checker() {
    let oracle = oracle_pairs();
    let pairs = oracle["pairs"].as_array().expect("pairs array");
    let mut agreements = 0;
    let mut disagreements = Vec::new();
    for pair in pairs {
        let expected = pair["compatible"].as_bool().expect("decision");
        match our_decision(&pair["reader"], &pair["writer"]) {
            Ok((ours, _)) if ours == expected => agreements += 1,
            Ok((ours, detail)) => disagreements.push(format!(
                "[{}] reference={expected} ours={ours} ({detail})\n  reader={}\n  writer={}",
                pair["test"], pair["reader"], pair["writer"]
            )),
            Err(error) => disagreements.push(format!(
                "[{}] reference={expected}, ours: schema refused by apache-avro: {error}\n  reader={}\n  writer={}",
                pair["test"], pair["reader"], pair["writer"]
            )),
        }
    }
    println!(
        "avro {}: {agreements} of {} pairs agree; {} disagree",
        oracle["avro_version"],
        pairs.len(),
        disagreements.len()
    );
    for line in &disagreements {
        println!("{line}");
    }
    assert!(
        pairs.len() > 100,
        "the oracle produced only {} pairs",
        pairs.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements (listed above)",
        disagreements.len()
    );
}
