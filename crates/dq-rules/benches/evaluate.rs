//! `cargo bench -p dq-rules`: a 10-rule set (mixed kinds, one regex, one reference set of 100k
//! values) over ~500-byte JSON records, evaluation alone, parse + evaluation, and the
//! `jsonschema` crate validating an equivalent schema on the same records (see `common.rs`).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{RECORDS, customers, evaluator, json_schema_validator, parse_all, records};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dq_rules::JsonRecord;
use serde_json::Value;

/// One timed loop body: runs the batch once, returns how many records it handled.
type Work<'a> = Box<dyn FnMut() -> usize + 'a>;

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`), so a rate can be taken per
/// second of CPU rather than of wall clock: on a shared, oversubscribed machine the wall clock
/// also counts the time this thread waited for a core. `None` where the file does not exist.
fn thread_cpu_nanos() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Records per wall-clock second and per CPU second of `work` over the batch, run for about
/// `duration`.
fn records_per_second(duration: Duration, mut work: impl FnMut() -> usize) -> (f64, Option<f64>) {
    let cpu_start = thread_cpu_nanos();
    let start = Instant::now();
    let mut records = 0usize;
    while start.elapsed() < duration {
        records += work();
    }
    let wall = records as f64 / start.elapsed().as_secs_f64();
    let cpu = cpu_start
        .zip(thread_cpu_nanos())
        .filter(|(a, b)| b > a)
        .map(|(a, b)| records as f64 / ((b - a) as f64 / 1e9));
    (wall, cpu)
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

    // Plain timed loops, single thread. The machine is shared, so the load drifts during a run:
    // the loops take turns in short windows over several rounds, and each reports its median
    // and best window, so every side sees the same load.
    let mut loops: Vec<(&str, Work<'_>)> = vec![
        (
            "dq-rules eval-only",
            Box::new(|| {
                for record in &parsed {
                    black_box(evaluator.evaluate(black_box(record)));
                }
                parsed.len()
            }),
        ),
        (
            "dq-rules parse(Value)+eval",
            Box::new(|| {
                for text in &texts {
                    if let Ok(record) = serde_json::from_str::<Value>(black_box(text)) {
                        black_box(evaluator.evaluate(&record));
                    }
                }
                texts.len()
            }),
        ),
        (
            "dq-rules parse(JsonRecord)+eval",
            Box::new(|| {
                for text in &texts {
                    if let Ok(record) = JsonRecord::from_str(black_box(text)) {
                        black_box(evaluator.evaluate(&record));
                    }
                }
                texts.len()
            }),
        ),
        (
            "serde_json parse to Value only",
            Box::new(|| {
                for text in &texts {
                    if let Ok(record) = serde_json::from_str::<Value>(black_box(text)) {
                        black_box(record);
                    }
                }
                texts.len()
            }),
        ),
        (
            "JsonRecord parse only",
            Box::new(|| {
                for text in &texts {
                    if let Ok(record) = JsonRecord::from_str(black_box(text)) {
                        black_box(record);
                    }
                }
                texts.len()
            }),
        ),
        (
            "jsonschema iter_errors",
            Box::new(|| {
                for record in &parsed {
                    black_box(schema.iter_errors(black_box(record)).count());
                }
                parsed.len()
            }),
        ),
        (
            "jsonschema is_valid",
            Box::new(|| {
                for record in &parsed {
                    black_box(schema.is_valid(black_box(record)));
                }
                parsed.len()
            }),
        ),
        (
            "jsonschema parse(Value)+iter_errors",
            Box::new(|| {
                for text in &texts {
                    if let Ok(record) = serde_json::from_str::<Value>(black_box(text)) {
                        black_box(schema.iter_errors(&record).count());
                    }
                }
                texts.len()
            }),
        ),
    ];
    const ROUNDS: usize = 9;
    let window = Duration::from_millis(400);
    let mut rates: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); loops.len()];
    let mut cpu_rates: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); loops.len()];
    for _ in 0..ROUNDS {
        for (((_, work), rates), cpu_rates) in loops.iter_mut().zip(&mut rates).zip(&mut cpu_rates)
        {
            let (wall, cpu) = records_per_second(window, work);
            rates.push(wall);
            cpu_rates.extend(cpu);
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut medians = Vec::with_capacity(loops.len());
    let mut cpu_medians = Vec::with_capacity(loops.len());
    for (((name, _), rates), cpu_rates) in loops.iter().zip(&mut rates).zip(&mut cpu_rates) {
        let wall = median(rates);
        let best = rates.last().copied().unwrap_or(f64::NAN);
        let cpu = median(cpu_rates);
        println!(
            "SUMMARY {name:<36} median {wall:>10.0} records/s, best {best:>10.0}; per CPU second {cpu:>10.0}"
        );
        medians.push(wall);
        cpu_medians.push(cpu);
    }
    if let [
        eval_only,
        _,
        parse_borrowed,
        _,
        _,
        iter_errors,
        is_valid,
        schema_parse,
    ] = cpu_medians[..]
    {
        println!(
            "SUMMARY ratio (per CPU second) eval-only / jsonschema iter_errors = {:.2}x, / is_valid = {:.2}x",
            eval_only / iter_errors,
            eval_only / is_valid
        );
        println!(
            "SUMMARY ratio (per CPU second) parse(JsonRecord)+eval / jsonschema parse(Value)+iter_errors = {:.2}x",
            parse_borrowed / schema_parse
        );
    }
    if let [
        eval_only,
        _,
        parse_borrowed,
        _,
        _,
        iter_errors,
        is_valid,
        schema_parse,
    ] = medians[..]
    {
        println!(
            "SUMMARY ratio (wall medians) eval-only / jsonschema iter_errors = {:.2}x, / is_valid = {:.2}x",
            eval_only / iter_errors,
            eval_only / is_valid
        );
        println!(
            "SUMMARY ratio (wall medians) parse(JsonRecord)+eval / jsonschema parse(Value)+iter_errors = {:.2}x",
            parse_borrowed / schema_parse
        );
    }
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
