//! Bench data shared by `evaluate` (criterion, wall clock) and `callgrind` (instruction counts):
//! the 10-rule set, the equivalent JSON Schema, the 100k reference values and the records.

#![allow(dead_code, unreachable_pub)] // each bench target uses a different part

use dq_rules::{Evaluator, ReferenceSnapshot, RuleSet};
use serde_json::{Value, json};

pub const RECORDS: usize = 1_000;
pub const REFERENCE_VALUES: usize = 100_000;

pub fn rule_set() -> RuleSet {
    RuleSet::from_yaml_str(
        r#"
name: bench-orders
version: 1
references:
  customers:
    values: []
rules:
  - { id: order-id-required, field: order_id, kind: required, severity: hard }
  - { id: order-id-length, field: order_id, kind: length, severity: hard, params: { min: 8, max: 40 } }
  - { id: customer-known, field: customer.id, kind: reference, severity: soft, params: { set: customers } }
  - { id: email-shape, field: customer.email, kind: regex, severity: soft, params: { pattern: '^[^@\s]+@[^@\s]+\.[a-z]{2,}$' } }
  - { id: amount-range, field: amount, kind: range, severity: hard, params: { min: 0, max: 100000, exclusive_min: true } }
  - { id: quantity-type, field: quantity, kind: type, severity: hard, params: { types: [integer] } }
  - { id: currency-set, field: currency, kind: in_set, severity: hard, params: { values: [EUR, USD, GBP, CHF, JPY] } }
  - { id: created-window, field: created_at, kind: range, severity: soft, params: { min: "2020-01-01T00:00:00Z", max: "2030-01-01T00:00:00Z" } }
  - { id: channel-set, field: channel, kind: in_set, severity: soft, params: { values: [web, app, store, phone] } }
  - { id: items-present, field: items, kind: length, severity: hard, params: { min: 1 } }
"#,
    )
    .expect("the bench rule set is valid")
}

/// JSON Schema with the same constraints. The reference set becomes a 100k-value `enum` (which
/// `jsonschema` compiles to a hash set of strings, like ours). JSON Schema has no timestamp
/// range, so the window `[2020-01-01T00:00:00Z, 2030-01-01T00:00:00Z]` becomes
/// `format: date-time` (the full RFC 3339 parse) plus a `pattern` on the year: the same result
/// on these records, which are all UTC (`Z`), but not for every offset at the edges of the window
/// — an approximation that does at least as much work as our rule. Both validators must flag the
/// same records (asserted before timing), and the generator breaks the window on purpose, so a
/// schema without the window check would fail that assertion.
///
/// Not modelled: our kinds other than `required` pass nulls (GX semantics) while JSON Schema
/// `type`/`enum` reject them; the records hold no nulls, so the work is the same.
pub fn json_schema(customers: &[String]) -> Value {
    json!({
        "type": "object",
        "required": ["order_id"],
        "properties": {
            "order_id": {"type": "string", "minLength": 8, "maxLength": 40},
            "customer": {"type": "object", "properties": {
                "id": {"enum": customers},
                "email": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$"}
            }},
            "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 100000},
            "quantity": {"type": "integer"},
            "currency": {"enum": ["EUR", "USD", "GBP", "CHF", "JPY"]},
            "created_at": {
                "type": "string",
                "format": "date-time",
                "pattern": "^(202[0-9]-|2030-01-01T00:00:00(\\.0+)?(Z|z|[+]00:00))"
            },
            "channel": {"enum": ["web", "app", "store", "phone"]},
            "items": {"type": "array", "minItems": 1}
        }
    })
}

pub fn customers() -> Vec<String> {
    (0..REFERENCE_VALUES)
        .map(|i| format!("cust-{i:06}"))
        .collect()
}

/// Deterministic records of about 500 bytes; every 20th breaks the reference (sometimes) and
/// regex rules, every 50th the timestamp window.
pub fn records() -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..RECORDS)
        .map(|i| {
            let bad = i % 20 == 19;
            let out_of_window = i % 50 == 7;
            let currency = ["EUR", "USD", "GBP", "CHF", "JPY"][(next() % 5) as usize];
            let channel = ["web", "app", "store", "phone"][(next() % 4) as usize];
            let customer = next() % (REFERENCE_VALUES as u64 + if bad { 50_000 } else { 0 });
            let city = ["Amsterdam", "Berlin", "Lisbon", "Zurich", "Oslo"][(next() % 5) as usize];
            let record = json!({
                "order_id": format!("ord-{:012}", next() % 1_000_000_000_000),
                "customer": {
                    "id": format!("cust-{customer:06}"),
                    "email": if bad { "not-an-email".to_owned() } else { format!("user{}@example.com", next() % 10_000) },
                    "name": "Ada Lovelace",
                    "segment": "retail"
                },
                "amount": (next() % 100_000) as f64 / 100.0 + 0.01,
                "quantity": next() % 10 + 1,
                "currency": currency,
                "created_at": format!(
                    "{}-{:02}-{:02}T{:02}:15:30.{:03}Z",
                    if out_of_window { 2019 } else { 2025 },
                    next() % 12 + 1,
                    next() % 28 + 1,
                    next() % 24,
                    next() % 1000
                ),
                "channel": channel,
                "items": [
                    {"sku": format!("SKU-{:08}", next() % 100_000_000), "qty": 1, "price": 12.5},
                    {"sku": format!("SKU-{:08}", next() % 100_000_000), "qty": 2, "price": 3.25}
                ],
                "shipping": {
                    "street": format!("{} Canal Street", next() % 300 + 1),
                    "city": city,
                    "postcode": format!("{:05}", next() % 100_000),
                    "country": "NL"
                },
                "notes": "gift wrap requested, leave at the front desk if nobody answers"
            });
            record.to_string()
        })
        .collect()
}

pub fn evaluator(customers: &[String]) -> Evaluator {
    let rules = rule_set();
    let evaluator = Evaluator::with_references(&rules, Vec::new());
    evaluator
        .replace_reference(ReferenceSnapshot::from_values(
            "customers",
            customers.iter().cloned(),
        ))
        .expect("customers is declared");
    evaluator
}

pub fn json_schema_validator(customers: &[String]) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&json_schema(customers))
        .expect("the bench schema compiles")
}

pub fn parse_all(texts: &[String]) -> Vec<Value> {
    texts
        .iter()
        .map(|t| serde_json::from_str(t).expect("generated JSON parses"))
        .collect()
}
