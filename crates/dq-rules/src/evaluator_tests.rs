use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::LoadError;

fn evaluator(yaml: &str) -> Evaluator {
    let rules = RuleSet::from_yaml_str(yaml).expect("valid rule set");
    Evaluator::with_references(&rules, Vec::new())
}

fn one_rule(kind: &str, field: &str, params: &str) -> Evaluator {
    evaluator(&format!(
        "name: t\nrules:\n  - {{id: r, field: '{field}', kind: {kind}, severity: hard, params: {params}}}\n"
    ))
}

fn fails<V: RecordView>(evaluator: &Evaluator, record: &V) -> bool {
    evaluator.evaluate(record).verdict == Verdict::HardFail
}

#[test]
fn required_fails_on_null_and_missing_only() {
    let e = evaluator("name: t\nrules:\n  - {id: r, field: a.b, kind: required, severity: hard}\n");
    assert!(fails(&e, &json!({"a": {"b": null}})));
    assert!(fails(&e, &json!({"a": {}})));
    assert!(fails(&e, &json!({"a": null})));
    assert!(fails(&e, &json!({})));
    for present in [json!(0), json!(""), json!([]), json!(false), json!({})] {
        assert!(!fails(&e, &json!({"a": {"b": present}})), "{present}");
    }
}

#[test]
fn every_other_kind_passes_nulls_and_missing_fields() {
    let kinds = [
        ("type", "{types: [string]}"),
        ("range", "{min: 0, max: 1}"),
        ("in_set", "{values: [x]}"),
        ("regex", "{pattern: '^x$'}"),
        ("length", "{min: 1}"),
    ];
    for (kind, params) in kinds {
        let e = one_rule(kind, "v", params);
        assert!(!fails(&e, &json!({"v": null})), "{kind} on null");
        assert!(!fails(&e, &json!({})), "{kind} on missing");
    }
}

#[test]
fn ranges_handle_bounds_nan_wrong_types_and_timestamps() {
    let e = one_rule("range", "n", "{min: 0, max: 10, exclusive_max: true}");
    assert!(!fails(&e, &json!({"n": 0})));
    assert!(!fails(&e, &json!({"n": 9.999})));
    assert!(fails(&e, &json!({"n": 10})));
    assert!(fails(&e, &json!({"n": -0.001})));
    assert!(fails(&e, &json!({"n": "5"})));
    // NaN cannot come from JSON, but it can from Avro.
    let nan = apache_avro::types::Value::Record(vec![(
        "n".into(),
        apache_avro::types::Value::Double(f64::NAN),
    )]);
    let outcome = e.evaluate(&nan);
    assert_eq!(outcome.violations[0].message, "NaN is not in any range");
    assert_eq!(outcome.violations[0].observed.as_deref(), Some("NaN"));

    let t = one_rule(
        "range",
        "t",
        "{min: '2024-01-01T00:00:00Z', max: '2025-01-01T00:00:00Z', exclusive_min: true}",
    );
    assert!(!fails(&t, &json!({"t": "2024-06-01T12:00:00+02:00"})));
    assert!(fails(&t, &json!({"t": "2024-01-01T00:00:00Z"})));
    assert!(fails(&t, &json!({"t": "2025-01-01T00:00:01Z"})));
    assert!(fails(&t, &json!({"t": "yesterday"})));
    assert!(fails(&t, &json!({"t": 1_700_000_000})));
    let avro_time = |ms| {
        apache_avro::types::Value::Record(vec![(
            "t".into(),
            apache_avro::types::Value::TimestampMillis(ms),
        )])
    };
    assert!(!fails(&t, &avro_time(1_720_000_000_000)));
    assert!(fails(&t, &avro_time(1_600_000_000_000)));
}

#[test]
fn type_in_set_regex_and_length_edge_cases() {
    let types = one_rule("type", "v", "{types: [integer, timestamp]}");
    assert!(!fails(&types, &json!({"v": 3})));
    assert!(fails(&types, &json!({"v": 3.5})));
    assert!(!fails(&types, &json!({"v": "2024-01-01T00:00:00Z"})));
    assert!(fails(&types, &json!({"v": "3"})));

    let set = one_rule("in_set", "v", "{values: [a, 1, 2.5, true]}");
    assert!(!fails(&set, &json!({"v": 1.0})));
    assert!(!fails(&set, &json!({"v": 2.5})));
    assert!(!fails(&set, &json!({"v": true})));
    assert!(fails(&set, &json!({"v": "1"})));
    assert!(fails(&set, &json!({"v": false})));
    assert!(fails(&set, &json!({"v": ["a"]})));

    let regex = one_rule("regex", "v", "{pattern: 'é+'}");
    assert!(!fails(&regex, &json!({"v": "caféé"})));
    assert!(fails(&regex, &json!({"v": "cafe"})));
    assert!(fails(&regex, &json!({"v": 5})));

    let length = one_rule("length", "v", "{min: 1, max: 3}");
    assert!(
        !fails(&length, &json!({"v": "日本語"})),
        "three characters, nine bytes"
    );
    assert!(fails(&length, &json!({"v": "日本語!"})));
    assert!(fails(&length, &json!({"v": ""})));
    assert!(
        fails(&length, &json!({"v": []})),
        "empty arrays have length 0"
    );
    assert!(!fails(&length, &json!({"v": [1, 2]})));
}

#[test]
fn wildcard_paths_report_each_failing_element() {
    let e = one_rule("regex", "order.items[*].sku", "{pattern: '^SKU-'}");
    let outcome =
        e.evaluate(&json!({"order": {"items": [{"sku": "SKU-1"}, {"sku": "x"}, {"sku": 7}]}}));
    let fields: Vec<&str> = outcome
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["order.items[1].sku", "order.items[2].sku"]);
    assert!(!fails(&e, &json!({"order": {"items": []}})));
    assert!(
        fails(&e, &json!({"order": {"items": "SKU-1"}})),
        "not an array"
    );
}

#[test]
fn worst_severity_wins_and_violations_follow_rule_ids() {
    let e = evaluator(
        "name: t\nrules:\n  - {id: z-soft, field: a, kind: required, severity: soft}\n  - {id: a-hard, field: b, kind: required, severity: hard}\n",
    );
    let outcome = e.evaluate(&json!({}));
    assert_eq!(outcome.verdict, Verdict::HardFail);
    let ids: Vec<&str> = outcome
        .violations
        .iter()
        .map(|v| v.rule_id.as_str())
        .collect();
    assert_eq!(ids, ["a-hard", "z-soft"]);
    assert_eq!(e.evaluate(&json!({"b": 1})).verdict, Verdict::SoftFail);
    assert_eq!(e.evaluate(&json!({"a": 1, "b": 1})).verdict, Verdict::Pass);
}

#[test]
fn reference_rules_use_the_current_snapshot_and_report_its_version() {
    let e = evaluator(
        "name: t\nreferences:\n  countries: {values: [DE, FR, 49]}\nrules:\n  - {id: c, field: c, kind: reference, severity: hard, params: {set: countries}}\n",
    );
    let rules = e.rule_set().clone();
    let e = block_on(Evaluator::build(&rules)).expect("inline values load");
    let before = e.evaluate(&json!({"c": "DE"}));
    assert_eq!(before.verdict, Verdict::Pass);
    assert!(fails(&e, &json!({"c": "US"})));
    assert!(!fails(&e, &json!({"c": 49})));
    e.replace_reference(ReferenceSnapshot::from_values("countries", ["US"]))
        .expect("declared");
    let after = e.evaluate(&json!({"c": "DE"}));
    assert_eq!(after.verdict, Verdict::HardFail);
    assert_ne!(before.reference_version, after.reference_version);
    assert!(
        e.replace_reference(ReferenceSnapshot::from_values("nope", ["x"]))
            .is_err()
    );
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn unique_is_skipped_when_pure_and_checked_with_state_or_in_batches() {
    let e = one_rule("unique", "k", "{horizon: 1m}");
    let record = json!({"k": "a"});
    assert!(!fails(&e, &record));
    assert!(!fails(&e, &record), "pure evaluation has no memory");
    let mut tracker = UniquenessTracker::new();
    let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid time");
    assert_eq!(
        e.evaluate_with_state(&record, &mut tracker, t0).verdict,
        Verdict::Pass
    );
    let later = t0 + chrono::Duration::seconds(30);
    assert_eq!(
        e.evaluate_with_state(&record, &mut tracker, later).verdict,
        Verdict::HardFail
    );
    let much_later = t0 + chrono::Duration::minutes(5);
    assert_eq!(
        e.evaluate_with_state(&record, &mut tracker, much_later)
            .verdict,
        Verdict::Pass
    );

    let batch = e.evaluate_batch(&[
        json!({"k": "a"}),
        json!({"k": "b"}),
        json!({"k": null}),
        json!({"k": "a"}),
    ]);
    assert_eq!(batch.rules[0].unexpected_index_list, [0, 3]);
    assert_eq!(batch.rules[0].missing_count, 1);
    assert_eq!(batch.rules[0].unexpected_percent, Some(200.0 / 3.0));
}

#[test]
fn rego_rules_deny_with_messages_and_turn_errors_into_violations() {
    let e = evaluator(
        r#"
name: t
rules:
  - id: tenant
    kind: rego
    severity: soft
    params:
      rule: data.tenant.deny
      policy: |
        package tenant
        deny contains msg if {
          input.amount > 100
          msg := sprintf("amount %v over tenant limit", [input.amount])
        }
        deny contains "division" if { 1 / input.divisor }
"#,
    );
    assert_eq!(e.evaluate(&json!({"amount": 5})).verdict, Verdict::Pass);
    let over = e.evaluate(&json!({"amount": 500}));
    assert_eq!(over.verdict, Verdict::SoftFail);
    assert_eq!(over.violations[0].message, "amount 500 over tenant limit");
    // Division by zero is an evaluation error in regorus: a violation, not a crash.
    let broken = e.evaluate(&json!({"amount": 1, "divisor": 0}));
    assert_eq!(broken.verdict, Verdict::SoftFail, "{broken:?}");
    assert!(
        broken.violations[0]
            .message
            .starts_with("Rego evaluation failed"),
        "{broken:?}"
    );
}

#[test]
fn load_errors_name_the_rule_and_the_problem() {
    let cases = [
        (
            "{id: a, field: x, kind: rnage, severity: hard}",
            "rule `a`: unknown kind `rnage`",
        ),
        (
            "{id: b, field: x, kind: regex, severity: hard, params: {pattern: '('}}",
            "rule `b`: bad regex `(`",
        ),
        (
            "{id: c, field: x, kind: range, severity: hard, params: {min: 5, max: 1}}",
            "rule `c`: min 5 > max 1",
        ),
        (
            "{id: d, field: x, kind: required, severity: fatal}",
            "rule `d`: unknown severity `fatal`",
        ),
        (
            "{id: e, field: x, kind: reference, severity: hard, params: {set: nope}}",
            "rule `e`: reference set `nope` is not declared",
        ),
        (
            "{id: f, field: 'x[', kind: required, severity: hard}",
            "rule `f`: malformed brackets",
        ),
        (
            "{id: g, field: x, kind: length, severity: hard, params: {mn: 1}}",
            "rule `g`: bad `params` for kind `length`: unknown field `mn`",
        ),
        (
            "{id: h, kind: rego, severity: hard, params: {rule: data.x.deny, policy: 'package x\n deny if {'}}",
            "rule `h`: Rego policy does not compile",
        ),
    ];
    for (rule, expected) in cases {
        let error =
            RuleSet::from_yaml_str(&format!("name: t\nrules:\n  - {rule}\n")).expect_err(expected);
        assert!(
            error.to_string().contains(expected),
            "{error} should contain {expected}"
        );
    }
    let duplicate = RuleSet::from_yaml_str(
        "name: t\nrules:\n  - {id: a, field: x, kind: required, severity: hard}\n  - {id: a, field: y, kind: required, severity: hard}\n",
    );
    assert!(matches!(duplicate, Err(LoadError::DuplicateId { rule_id }) if rule_id == "a"));
}

#[test]
fn unreadable_reference_sources_fail_the_build_naming_set_and_rules() {
    let rules = RuleSet::from_yaml_str(
        "name: t\nreferences:\n  skus: {file: /nonexistent/skus.txt}\nrules:\n  - {id: sku-known, field: sku, kind: reference, severity: hard, params: {set: skus}}\n",
    )
    .expect("parses");
    let error = block_on(Evaluator::build(&rules)).expect_err("file is missing");
    let text = error.to_string();
    assert!(
        text.contains("skus")
            && text.contains("sku-known")
            && text.contains("/nonexistent/skus.txt"),
        "{text}"
    );
}

const SHUFFLE_RULES: [&str; 7] = [
    "{id: amount, field: amount, kind: range, severity: hard, params: {min: 0, max: 100}}",
    "{id: currency, field: currency, kind: in_set, severity: soft, params: {values: [EUR, USD]}}",
    "{id: email, field: email, kind: regex, severity: soft, params: {pattern: '@'}}",
    "{id: id-required, field: id, kind: required, severity: hard}",
    "{id: name-length, field: name, kind: length, severity: soft, params: {min: 1, max: 5}}",
    "{id: sku, field: 'items[*].sku', kind: type, severity: soft, params: {types: [string]}}",
    "{id: tags, field: tags, kind: type, severity: soft, params: {types: [array]}}",
];

fn arbitrary_record() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-200i64..200).prop_map(Value::from),
        (-200.0f64..200.0).prop_map(Value::from),
        "[a-zé@日]{0,8}".prop_map(Value::from),
    ];
    let field = prop_oneof![
        scalar.clone(),
        prop::collection::vec(scalar.clone(), 0..3).prop_map(Value::from)
    ];
    let items = prop::collection::vec(
        prop::option::of(scalar.clone()).prop_map(|sku| match sku {
            Some(sku) => json!({ "sku": sku }),
            None => json!({}),
        }),
        0..3,
    );
    (
        prop::collection::btree_map(
            prop::sample::select(vec!["amount", "currency", "email", "id", "name", "tags"]),
            field,
            0..6,
        ),
        prop::option::of(items),
    )
        .prop_map(|(fields, items)| {
            let mut object: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(items) = items {
                object.insert("items".into(), Value::from(items));
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn shuffled_rule_order_keeps_hash_and_outcomes(
        order in Just((0..SHUFFLE_RULES.len()).collect::<Vec<_>>()).prop_shuffle(),
        records in prop::collection::vec(arbitrary_record(), 1..8),
    ) {
        let file = |order: &[usize]| {
            let mut yaml = String::from("name: shuffle\nrules:\n");
            for i in order {
                yaml.push_str("  - ");
                yaml.push_str(SHUFFLE_RULES[*i]);
                yaml.push('\n');
            }
            RuleSet::from_yaml_str(&yaml).expect("valid")
        };
        let sorted = file(&(0..SHUFFLE_RULES.len()).collect::<Vec<_>>());
        let shuffled = file(&order);
        prop_assert_eq!(sorted.version_id(), shuffled.version_id());
        let a = Evaluator::with_references(&sorted, Vec::new());
        let b = Evaluator::with_references(&shuffled, Vec::new());
        for record in &records {
            let first = a.evaluate(record);
            prop_assert_eq!(&first, &b.evaluate(record));
            prop_assert_eq!(&first, &a.evaluate(record), "repeated run");
        }
    }
}

#[test]
fn changing_a_rule_changes_the_hash() {
    let a = RuleSet::from_yaml_str(&format!("name: h\nrules:\n  - {}\n", SHUFFLE_RULES[0]))
        .expect("valid");
    let b = RuleSet::from_yaml_str(&format!(
        "name: h\nrules:\n  - {}\n",
        SHUFFLE_RULES[0].replace("100", "101")
    ))
    .expect("valid");
    assert_ne!(a.hash(), b.hash());
    assert!(a.version_id().starts_with("h@"));
    assert_eq!(a.hash().len(), 16);
}

/// Every kind but `unique`, including `$` (Rego reads the whole record through `to_json`).
const EQUIVALENCE_RULES: &str = r#"
name: equivalence
rules:
  - {id: amount, field: amount, kind: range, severity: hard, params: {min: -100, max: 100}}
  - {id: currency, field: currency, kind: in_set, severity: soft, params: {values: [a, "é", 1, true]}}
  - {id: email, field: email, kind: regex, severity: soft, params: {pattern: '^[a-z]+@'}}
  - {id: id, field: id, kind: required, severity: hard}
  - {id: items, field: 'items[*].sku', kind: length, severity: soft, params: {min: 1, max: 3}}
  - {id: first-item, field: 'items[0]', kind: type, severity: soft, params: {types: [object]}}
  - {id: name, field: name, kind: type, severity: soft, params: {types: [string, timestamp]}}
  - {id: tags, field: 'tags[*]', kind: required, severity: soft}
  - id: whole
    kind: rego
    severity: soft
    params:
      rule: data.t.deny
      policy: |
        package t
        deny contains msg if { count(object.keys(input)) > 4; msg := "wide" }
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn json_record_and_serde_value_give_the_same_outcome(
        records in prop::collection::vec(arbitrary_record(), 1..8),
    ) {
        let evaluator = evaluator(EQUIVALENCE_RULES);
        for record in &records {
            let text = record.to_string();
            let parsed = crate::JsonRecord::from_str(&text).expect("serde_json's output parses");
            prop_assert_eq!(evaluator.evaluate(&parsed), evaluator.evaluate(record), "{}", text);
        }
    }
}

#[test]
fn json_record_reads_repeated_keys_and_escapes_like_serde_value() {
    let evaluator = evaluator(EQUIVALENCE_RULES);
    for text in [
        r#"{"amount": 500, "amount": 5, "email": "a\u0040b", "id": null, "id": 1}"#,
        r#"{"items": [{"sku": ""}, {"sku": "\u00e9\u00e9\u00e9\u00e9"}], "tags": [null, 1], "name": "2024-01-01T00:00:00Z"}"#,
        r#"{"amount": 18446744073709551615, "currency": 1.0, "name": 1, "items": 3}"#,
    ] {
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        let parsed = crate::JsonRecord::from_str(text).expect("valid JSON");
        assert_eq!(
            evaluator.evaluate(&parsed),
            evaluator.evaluate(&value),
            "{text}"
        );
    }
}

#[test]
fn in_set_strings_match_exactly_in_small_and_large_sets() {
    let long = "a-value-longer-than-sixteen-bytes";
    let small = one_rule(
        "in_set",
        "v",
        &format!("{{values: [aaaaaaaa, '{long}', 'é', '']}}"),
    );
    for (value, inside) in [
        ("aaaaaaaa", true),
        ("aaaaaaaaa", false),
        ("aaaaaaa", false),
        (long, true),
        ("a-value-longer-than-sixteen-bytez", false),
        ("a-value-longer-XXXX-sixteen-bytes", false),
        ("é", true),
        ("", true),
        ("e", false),
    ] {
        assert_eq!(!fails(&small, &json!({ "v": value })), inside, "{value:?}");
    }
    let names: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let large = one_rule(
        "in_set",
        "v",
        &format!("{{values: [{}]}}", names.join(", ")),
    );
    assert!(!fails(&large, &json!({"v": "v19"})));
    assert!(fails(&large, &json!({"v": "v20"})));
}

const QUICK_PASS_RULES: &str = r#"
name: quick
references:
  known:
    values: [a, "1", "é"]
rules:
  - {id: range, field: amount, kind: range, severity: hard, params: {min: -100, max: 100, exclusive_max: true}}
  - {id: time, field: name, kind: range, severity: hard, params: {min: "2000-01-01T00:00:00Z"}}
  - {id: set, field: currency, kind: in_set, severity: soft, params: {values: [a, "é", 1, 2.5, true]}}
  - {id: regex, field: email, kind: regex, severity: soft, params: {pattern: '^[a-z]+@'}}
  - {id: required, field: id, kind: required, severity: hard}
  - {id: length, field: 'items[*].sku', kind: length, severity: soft, params: {min: 1, max: 3, exclusive_min: true}}
  - {id: type, field: 'tags[*]', kind: type, severity: soft, params: {types: [integer, timestamp, object]}}
  - {id: number-type, field: amount, kind: type, severity: soft, params: {types: [number]}}
  - {id: reference, field: email, kind: reference, severity: soft, params: {set: known}}
  - {id: reference-n, field: amount, kind: reference, severity: soft, params: {set: known}}
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The passing shortcut never passes what the full check fails.
    #[test]
    fn quick_pass_never_hides_a_violation(records in prop::collection::vec(arbitrary_record(), 1..8)) {
        let evaluator = block_on(Evaluator::build(
            &RuleSet::from_yaml_str(QUICK_PASS_RULES).expect("valid"),
        ))
        .expect("inline reference values load");
        let references = evaluator.references.load();
        for record in &records {
            for (index, rule) in evaluator.rules.iter().enumerate() {
                let mut seen = Vec::new();
                rule.field.visit(record, &mut |located, _| {
                    if let Located::Found(value) = located {
                        let quick = quick_pass(&rule.check, value, &references);
                        let full = check_value(rule, index, value, &references, &mut UniqueMode::Skip);
                        seen.push((value.clone(), quick, full));
                    }
                });
                for (value, quick, full) in seen {
                    prop_assert!(!quick || full.is_none(), "{} on {}: {:?}", rule.id, value, full);
                }
            }
        }
    }
}
