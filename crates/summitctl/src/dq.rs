//! `summitctl dq check`: run a rule set (or a Great Expectations suite) over an NDJSON file.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use dq_rules::{BatchReport, Evaluator, RuleSet, Verdict};
use serde_json::{Value, json};

/// Exit status when at least one record hard-fails (errors exit with 1).
const EXIT_HARD_FAIL: i32 = 2;

#[derive(Debug, Args)]
pub(crate) struct DqCommand {
    #[command(subcommand)]
    action: DqAction,
}

#[derive(Debug, Subcommand)]
enum DqAction {
    /// Evaluate every record of an NDJSON file; exit 2 when any record hard-fails.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Rule set file (YAML or JSON).
    #[arg(
        long,
        required_unless_present = "gx_suite",
        conflicts_with = "gx_suite"
    )]
    rules: Option<PathBuf>,
    /// Great Expectations 1.x ExpectationSuite JSON, used instead of --rules.
    #[arg(long)]
    gx_suite: Option<PathBuf>,
    /// One JSON record per line.
    #[arg(long)]
    input: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

/// A line that is not a JSON value: reported and counted, never fatal.
struct BadLine {
    line: usize,
    error: String,
}

pub(crate) fn run(command: DqCommand) -> anyhow::Result<()> {
    match command.action {
        DqAction::Check(args) => check(&args),
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let rule_set = match (&args.rules, &args.gx_suite) {
        (Some(path), _) => RuleSet::from_path(path)?,
        (None, Some(path)) => RuleSet::from_gx_suite_path(path)?,
        (None, None) => anyhow::bail!("give --rules or --gx-suite"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let evaluator = runtime.block_on(Evaluator::build(&rule_set))?;

    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;
    let mut records = Vec::new();
    let mut record_lines = Vec::new();
    let mut bad_lines = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line_number = index + 1;
        let text =
            line.with_context(|| format!("reading {} line {line_number}", args.input.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(record) => {
                records.push(record);
                record_lines.push(line_number);
            }
            Err(e) => bad_lines.push(BadLine {
                line: line_number,
                error: e.to_string(),
            }),
        }
    }

    let report = evaluator.evaluate_batch(&records);
    let count = |verdict: Verdict| {
        report
            .outcomes
            .iter()
            .filter(|o| o.verdict == verdict)
            .count()
    };
    let hard_fails = count(Verdict::HardFail);
    let reference_version = evaluator.reference_data().version.to_string();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        OutputFormat::Json => {
            let document = json!({
                "rule_set": report.rule_set,
                "reference_version": reference_version,
                "records": report.outcomes.iter().zip(&record_lines).enumerate().map(|(index, (outcome, line))| json!({
                    "line": line,
                    "record_index": index,
                    "verdict": outcome.verdict,
                    "violations": outcome.violations,
                })).collect::<Vec<_>>(),
                "not_json": bad_lines.iter().map(|b| json!({"line": b.line, "error": b.error})).collect::<Vec<_>>(),
                "summary": {
                    "records": records.len(),
                    "pass": count(Verdict::Pass),
                    "soft_fail": count(Verdict::SoftFail),
                    "hard_fail": hard_fails,
                    "not_json": bad_lines.len(),
                },
                "rules": report.rules,
            });
            serde_json::to_writer_pretty(&mut out, &document)?;
            writeln!(out)?;
        }
        OutputFormat::Text => write_text(
            &mut out,
            &report,
            &record_lines,
            &bad_lines,
            &reference_version,
        )?,
    }
    out.flush()?;
    if hard_fails > 0 {
        drop(out);
        std::process::exit(EXIT_HARD_FAIL);
    }
    Ok(())
}

fn write_text(
    out: &mut impl Write,
    report: &BatchReport,
    record_lines: &[usize],
    bad_lines: &[BadLine],
    reference_version: &str,
) -> std::io::Result<()> {
    let mut bad = bad_lines.iter().peekable();
    for (outcome, line) in report.outcomes.iter().zip(record_lines) {
        while let Some(b) = bad.next_if(|b| b.line < *line) {
            writeln!(out, "line {}: not JSON: {}", b.line, b.error)?;
        }
        writeln!(out, "line {line}: {}", outcome.verdict.as_str())?;
        for v in &outcome.violations {
            writeln!(
                out,
                "  {} [{}] {}: {} (observed {})",
                v.rule_id,
                match v.severity {
                    dq_rules::Severity::Soft => "soft",
                    dq_rules::Severity::Hard => "hard",
                },
                v.field,
                v.message,
                v.observed.as_deref().unwrap_or("nothing")
            )?;
        }
    }
    for b in bad {
        writeln!(out, "line {}: not JSON: {}", b.line, b.error)?;
    }
    let count = |verdict: Verdict| {
        report
            .outcomes
            .iter()
            .filter(|o| o.verdict == verdict)
            .count()
    };
    writeln!(out)?;
    writeln!(
        out,
        "rule set {}{}",
        report.rule_set,
        if reference_version.is_empty() {
            String::new()
        } else {
            format!(", reference data {reference_version}")
        }
    )?;
    writeln!(
        out,
        "records {}: pass {}, soft_fail {}, hard_fail {}; not JSON {}",
        report.outcomes.len(),
        count(Verdict::Pass),
        count(Verdict::SoftFail),
        count(Verdict::HardFail),
        bad_lines.len()
    )?;
    for rule in &report.rules {
        writeln!(
            out,
            "  {:<40} {:>6} unexpected of {:>6} ({}) {}",
            rule.rule_id,
            rule.unexpected_count,
            rule.element_count,
            rule.unexpected_percent
                .map_or("n/a".to_owned(), |p| format!("{p:.2}%")),
            if rule.success { "ok" } else { "FAILED" }
        )?;
    }
    Ok(())
}
