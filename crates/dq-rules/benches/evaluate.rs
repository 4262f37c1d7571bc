//! `cargo bench -p dq-rules`: a 10-rule set (mixed kinds, one regex, one reference set of 100k
//! values) over ~500-byte JSON records, evaluation alone, parse + evaluation, and the
//! `jsonschema` crate validating the nearest equivalent schema on the same records.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dq_rules::{Evaluator, ReferenceSnapshot, RuleSet};
use serde_json::{Value, json};

const RECORDS: usize = 1_000;
const REFERENCE_VALUES: usize = 100_000;

fn rule_set() -> RuleSet {
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

/// JSON Schema with the same constraints, as far as JSON Schema can say them: the reference
/// set becomes a 100k-value `enum`, the timestamp window becomes `format: date-time`.
fn json_schema(customers: &[String]) -> Value {
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
            "created_at": {"type": "string", "format": "date-time"},
            "channel": {"enum": ["web", "app", "store", "phone"]},
            "items": {"type": "array", "minItems": 1}
        }
    })
}

fn customers() -> Vec<String> {
    (0..REFERENCE_VALUES)
        .map(|i| format!("cust-{i:06}"))
        .collect()
}

/// Deterministic records, about 500 bytes each; every 20th breaks a rule.
fn records() -> Vec<String> {
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
            let currency = ["EUR", "USD", "GBP", "CHF", "JPY"][(next() % 5) as usize];
            let channel = ["web", "app", "store", "phone"][(next() % 4) as usize];
            let customer = next() % (REFERENCE_VALUES as u64 + if bad { 50_000 } else { 0 });
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
                "created_at": format!("2025-{:02}-{:02}T{:02}:15:30Z", next() % 12 + 1, next() % 28 + 1, next() % 24),
                "channel": channel,
                "items": [
                    {"sku": format!("SKU-{:08}", next() % 100_000_000), "qty": 1, "price": 12.5},
                    {"sku": format!("SKU-{:08}", next() % 100_000_000), "qty": 2, "price": 3.25}
                ],
                "notes": "gift wrap requested, leave at the front desk if nobody answers"
            });
            record.to_string()
        })
        .collect()
}

fn evaluator(customers: &[String]) -> Evaluator {
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

/// Records per second of `work` over the batch, run for about `duration`.
fn records_per_second(duration: Duration, mut work: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut records = 0usize;
    while start.elapsed() < duration {
        records += work();
    }
    records as f64 / start.elapsed().as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let customers = customers();
    let texts = records();
    let parsed: Vec<Value> = texts
        .iter()
        .map(|t| serde_json::from_str(t).expect("generated JSON parses"))
        .collect();
    let average_bytes = texts.iter().map(String::len).sum::<usize>() / texts.len();
    let evaluator = evaluator(&customers);
    let schema = jsonschema::options()
        .should_validate_formats(true)
        .build(&json_schema(&customers))
        .expect("the bench schema compiles");

    // Both sides must agree on which records are bad, or the comparison is not equal work.
    let ours_failing = parsed
        .iter()
        .filter(|r| !evaluator.evaluate(*r).violations.is_empty())
        .count();
    let schema_failing = parsed.iter().filter(|r| !schema.is_valid(r)).count();
    println!(
        "records: {RECORDS}, average {average_bytes} bytes; failing: dq-rules {ours_failing}, jsonschema {schema_failing}"
    );
    assert_eq!(
        ours_failing, schema_failing,
        "the two validators disagree on the bench data"
    );

    let mut group = c.benchmark_group("dq");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("eval_only", |b| {
        b.iter(|| {
            for record in &parsed {
                black_box(evaluator.evaluate(black_box(record)));
            }
        })
    });
    group.bench_function("parse_and_eval", |b| {
        b.iter(|| {
            for text in &texts {
                let record: Value = serde_json::from_str(black_box(text)).expect("valid JSON");
                black_box(evaluator.evaluate(&record));
            }
        })
    });
    group.bench_function("jsonschema_iter_errors", |b| {
        b.iter(|| {
            for record in &parsed {
                black_box(schema.iter_errors(black_box(record)).count());
            }
        })
    });
    group.bench_function("jsonschema_is_valid", |b| {
        b.iter(|| {
            for record in &parsed {
                black_box(schema.is_valid(black_box(record)));
            }
        })
    });
    group.finish();

    // One plain timed loop each, printed as records/s on this single thread.
    let window = Duration::from_secs(3);
    let eval_only = records_per_second(window, || {
        for record in &parsed {
            black_box(evaluator.evaluate(record));
        }
        parsed.len()
    });
    let parse_and_eval = records_per_second(window, || {
        for text in &texts {
            if let Ok(record) = serde_json::from_str::<Value>(text) {
                black_box(evaluator.evaluate(&record));
            }
        }
        texts.len()
    });
    let schema_all_errors = records_per_second(window, || {
        for record in &parsed {
            black_box(schema.iter_errors(record).count());
        }
        parsed.len()
    });
    let schema_is_valid = records_per_second(window, || {
        for record in &parsed {
            black_box(schema.is_valid(record));
        }
        parsed.len()
    });
    println!("SUMMARY dq-rules eval-only:            {eval_only:>12.0} records/s");
    println!("SUMMARY dq-rules parse+eval:           {parse_and_eval:>12.0} records/s");
    println!("SUMMARY jsonschema iter_errors:        {schema_all_errors:>12.0} records/s");
    println!("SUMMARY jsonschema is_valid:           {schema_is_valid:>12.0} records/s");
    println!(
        "SUMMARY eval-only / jsonschema iter_errors = {:.2}x, / is_valid = {:.2}x",
        eval_only / schema_all_errors,
        eval_only / schema_is_valid
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
