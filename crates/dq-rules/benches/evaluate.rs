//! `cargo bench -p dq-rules`: a 10-rule set (mixed kinds, one regex, one reference set of 100k
//! values) over ~500-byte JSON records, evaluation alone, parse + evaluation, and the
//! `jsonschema` crate validating an equivalent schema on the same records (see `common.rs`).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{RECORDS, customers, evaluator, json_schema_validator, parse_all, records};
use dq_rules::JsonRecord;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

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
    let parsed: Vec<Value> = parse_all(&texts);
    let average_bytes = texts.iter().map(String::len).sum::<usize>() / texts.len();
    let evaluator = evaluator(&customers);
    let schema = json_schema_validator(&customers);

    // Both sides must flag the same records, or the comparison is not equal work.
    let ours_failing: Vec<usize> = (0..parsed.len())
        .filter(|&i| !evaluator.evaluate(&parsed[i]).violations.is_empty())
        .collect();
    let schema_failing: Vec<usize> = (0..parsed.len())
        .filter(|&i| !schema.is_valid(&parsed[i]))
        .collect();
    println!(
        "records: {RECORDS}, average {average_bytes} bytes; failing: dq-rules {}, jsonschema {}",
        ours_failing.len(),
        schema_failing.len()
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
    group.bench_function("parse_borrowed_and_eval", |b| {
        b.iter(|| {
            for text in &texts {
                let record = JsonRecord::from_str(black_box(text)).expect("valid JSON");
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
    let parse_borrowed_and_eval = records_per_second(window, || {
        for text in &texts {
            if let Ok(record) = JsonRecord::from_str(text) {
                black_box(evaluator.evaluate(&record));
            }
        }
        texts.len()
    });
    let parse_only = records_per_second(window, || {
        for text in &texts {
            if let Ok(record) = serde_json::from_str::<Value>(text) {
                black_box(record);
            }
        }
        texts.len()
    });
    let parse_borrowed_only = records_per_second(window, || {
        for text in &texts {
            if let Ok(record) = JsonRecord::from_str(text) {
                black_box(record);
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
    let schema_parse_all_errors = records_per_second(window, || {
        for text in &texts {
            if let Ok(record) = serde_json::from_str::<Value>(text) {
                black_box(schema.iter_errors(&record).count());
            }
        }
        texts.len()
    });
    println!("SUMMARY dq-rules eval-only:            {eval_only:>12.0} records/s");
    println!("SUMMARY dq-rules parse+eval:           {parse_and_eval:>12.0} records/s");
    println!("SUMMARY dq-rules parse(JsonRecord)+eval: {parse_borrowed_and_eval:>12.0} records/s");
    println!("SUMMARY serde_json parse to Value only: {parse_only:>12.0} records/s");
    println!("SUMMARY JsonRecord parse only:         {parse_borrowed_only:>12.0} records/s");
    println!("SUMMARY jsonschema iter_errors:        {schema_all_errors:>12.0} records/s");
    println!("SUMMARY jsonschema is_valid:           {schema_is_valid:>12.0} records/s");
    println!("SUMMARY jsonschema parse+iter_errors:  {schema_parse_all_errors:>12.0} records/s");
    println!(
        "SUMMARY eval-only / jsonschema iter_errors = {:.2}x, / is_valid = {:.2}x",
        eval_only / schema_all_errors,
        eval_only / schema_is_valid
    );
    println!(
        "SUMMARY parse+eval / jsonschema parse+iter_errors = {:.2}x",
        parse_and_eval / schema_parse_all_errors
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
