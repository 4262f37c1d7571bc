//! Instruction-count driver for `valgrind --tool=callgrind`: wall-clock figures are noisy on a
//! shared machine, instruction counts are not. Not a criterion bench; `cargo bench` runs it with
//! `--bench`, which does nothing.
//!
//! ```text
//! cargo bench -p dq-rules --bench callgrind --no-run     # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='*callgrind::measure*' <binary> dq 10
//! ```
//! Modes: `dq` (evaluate), `dq-parse` (parse + evaluate), `js-iter` (`iter_errors().count()`),
//! `js-valid` (`is_valid`), `js-parse` (parse + `iter_errors`), `parse` (serde_json to `Value`
//! alone), `dq-borrowed` (parse to `JsonRecord` + evaluate), `parse-borrowed` (`JsonRecord`
//! alone).
//! Each runs the 1,000 bench records `passes` times; with `--toggle-collect` only the measured
//! loop is counted, so Ir / (passes × 1000) is instructions per record.

mod common;

use std::hint::black_box;

use serde_json::Value;

#[inline(never)]
fn measure_dq(evaluator: &dq_rules::Evaluator, parsed: &[Value], passes: usize) -> usize {
    let mut violations = 0;
    for _ in 0..passes {
        for record in parsed {
            violations += black_box(evaluator.evaluate(black_box(record)))
                .violations
                .len();
        }
    }
    violations
}

#[inline(never)]
fn measure_dq_parse(evaluator: &dq_rules::Evaluator, texts: &[String], passes: usize) -> usize {
    let mut violations = 0;
    for _ in 0..passes {
        for text in texts {
            if let Ok(record) = serde_json::from_str::<Value>(black_box(text)) {
                violations += black_box(evaluator.evaluate(&record)).violations.len();
            }
        }
    }
    violations
}

#[inline(never)]
fn measure_dq_borrowed(evaluator: &dq_rules::Evaluator, texts: &[String], passes: usize) -> usize {
    let mut violations = 0;
    for _ in 0..passes {
        for text in texts {
            if let Ok(record) = dq_rules::JsonRecord::from_str(black_box(text)) {
                violations += black_box(evaluator.evaluate(&record)).violations.len();
            }
        }
    }
    violations
}

#[inline(never)]
fn measure_parse_borrowed(texts: &[String], passes: usize) -> usize {
    let mut parsed = 0;
    for _ in 0..passes {
        for text in texts {
            if let Ok(record) = dq_rules::JsonRecord::from_str(black_box(text)) {
                black_box(&record);
                parsed += 1;
            }
        }
    }
    parsed
}

#[inline(never)]
fn measure_parse(texts: &[String], passes: usize) -> usize {
    let mut parsed = 0;
    for _ in 0..passes {
        for text in texts {
            if let Ok(record) = serde_json::from_str::<Value>(black_box(text)) {
                black_box(&record);
                parsed += 1;
            }
        }
    }
    parsed
}

#[inline(never)]
fn measure_js_iter(schema: &jsonschema::Validator, parsed: &[Value], passes: usize) -> usize {
    let mut errors = 0;
    for _ in 0..passes {
        for record in parsed {
            errors += black_box(schema.iter_errors(black_box(record)).count());
        }
    }
    errors
}

#[inline(never)]
fn measure_js_valid(schema: &jsonschema::Validator, parsed: &[Value], passes: usize) -> usize {
    let mut invalid = 0;
    for _ in 0..passes {
        for record in parsed {
            invalid += usize::from(!black_box(schema.is_valid(black_box(record))));
        }
    }
    invalid
}

#[inline(never)]
fn measure_js_parse(schema: &jsonschema::Validator, texts: &[String], passes: usize) -> usize {
    let mut errors = 0;
    for _ in 0..passes {
        for text in texts {
            if let Ok(record) = serde_json::from_str::<Value>(black_box(text)) {
                errors += black_box(schema.iter_errors(&record).count());
            }
        }
    }
    errors
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first().filter(|m| !m.starts_with("--")) else {
        return; // run by `cargo bench` with `--bench`: nothing to do
    };
    let passes: usize = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(10);
    let customers = common::customers();
    let texts = common::records();
    let parsed = common::parse_all(&texts);
    let result = match mode.as_str() {
        "dq" => measure_dq(&common::evaluator(&customers), &parsed, passes),
        "dq-parse" => measure_dq_parse(&common::evaluator(&customers), &texts, passes),
        "dq-borrowed" => measure_dq_borrowed(&common::evaluator(&customers), &texts, passes),
        "parse" => measure_parse(&texts, passes),
        "parse-borrowed" => measure_parse_borrowed(&texts, passes),
        "js-iter" => measure_js_iter(&common::json_schema_validator(&customers), &parsed, passes),
        "js-valid" => measure_js_valid(&common::json_schema_validator(&customers), &parsed, passes),
        "js-parse" => measure_js_parse(&common::json_schema_validator(&customers), &texts, passes),
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    };
    let average = texts.iter().map(String::len).sum::<usize>() / texts.len();
    println!(
        "{mode}: {passes} passes over {} records of {average} bytes on average, result {result}",
        texts.len()
    );
}
