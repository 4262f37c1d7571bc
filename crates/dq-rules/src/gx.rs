//! Great Expectations 1.x ExpectationSuite JSON → rule set.
//!
//! Each expectation becomes one rule with id `<column>:<expectation type without the
//! "expect_column_" prefix>` (a `#2`, `#3`... suffix for repeats). `severity` `critical` → hard,
//! `warning` and `info` → soft. Null semantics follow GX: only the not-null expectation looks at
//! null or missing values. Anything that cannot be translated is an error listing every such
//! expectation type; nothing is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as JsonValue, json};

use crate::error::LoadError;
use crate::ruleset::RuleSet;

/// Keys GX adds to every expectation that do not change what it checks.
const NEUTRAL_KWARGS: &[&str] = &[
    "column",
    "mostly",
    "result_format",
    "catch_exceptions",
    "meta",
];

impl RuleSet {
    /// Reads a GX suite file.
    pub fn from_gx_suite_path(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let suite: JsonValue = serde_json::from_str(&text).map_err(|e| LoadError::Suite {
            problem: format!("{} is not JSON: {e}", path.display()),
        })?;
        Self::from_gx_suite(
            &suite,
            path.parent().map(Path::to_owned).unwrap_or_default(),
        )
    }

    /// Translates a parsed GX suite.
    pub fn from_gx_suite(suite: &JsonValue, base_dir: PathBuf) -> Result<Self, LoadError> {
        let suite_error = |problem: String| LoadError::Suite { problem };
        let name = suite
            .get("name")
            .or_else(|| suite.get("expectation_suite_name"))
            .and_then(JsonValue::as_str)
            .ok_or_else(|| suite_error("missing `name`".into()))?;
        let expectations = suite
            .get("expectations")
            .and_then(JsonValue::as_array)
            .ok_or_else(|| suite_error("missing `expectations` array".into()))?;

        let mut rules = Vec::with_capacity(expectations.len());
        let mut untranslatable = Vec::new();
        let mut id_uses: BTreeMap<String, usize> = BTreeMap::new();
        for (position, expectation) in expectations.iter().enumerate() {
            let kind_name = expectation
                .get("type")
                .or_else(|| expectation.get("expectation_type"))
                .and_then(JsonValue::as_str)
                .ok_or_else(|| suite_error(format!("expectation {position} has no `type`")))?;
            let empty = Map::new();
            let kwargs = expectation
                .get("kwargs")
                .and_then(JsonValue::as_object)
                .unwrap_or(&empty);
            let Some((kind, params, extra_kwargs)) = translate(kind_name, kwargs) else {
                untranslatable.push(kind_name.to_owned());
                continue;
            };
            let unknown: Vec<&str> = kwargs
                .iter()
                .filter(|(k, v)| {
                    !NEUTRAL_KWARGS.contains(&k.as_str())
                        && !extra_kwargs.contains(&k.as_str())
                        && !v.is_null()
                })
                .map(|(k, _)| k.as_str())
                .collect();
            if !unknown.is_empty() {
                return Err(suite_error(format!(
                    "{kind_name} (expectation {position}): unsupported kwargs {unknown:?}"
                )));
            }
            let column = kwargs
                .get("column")
                .and_then(JsonValue::as_str)
                .ok_or_else(|| {
                    suite_error(format!(
                        "{kind_name} (expectation {position}) has no `column`"
                    ))
                })?;
            let severity = match expectation.get("severity").and_then(JsonValue::as_str) {
                None | Some("critical") => "hard",
                Some("warning" | "info") => "soft",
                Some(other) => {
                    return Err(suite_error(format!(
                        "{kind_name} (expectation {position}): unknown severity `{other}`"
                    )));
                }
            };
            let short = kind_name.trim_start_matches("expect_column_");
            let base_id = format!("{column}:{short}");
            let uses = id_uses.entry(base_id.clone()).or_default();
            *uses += 1;
            let id = if *uses == 1 {
                base_id
            } else {
                format!("{base_id}#{uses}")
            };
            let mut rule = json!({
                "id": id,
                "field": column,
                "kind": kind,
                "severity": severity,
                "params": params,
            });
            if let Some(mostly) = kwargs.get("mostly").filter(|m| !m.is_null()) {
                rule["mostly"] = mostly.clone();
            }
            rules.push(rule);
        }
        if !untranslatable.is_empty() {
            untranslatable.sort();
            untranslatable.dedup();
            return Err(LoadError::UntranslatableExpectations {
                expectation_types: untranslatable,
            });
        }
        Self::from_json_value(json!({ "name": name, "rules": rules }), base_dir)
    }
}

/// (rule kind, params, kwargs this expectation understands besides the neutral ones).
fn translate(
    expectation_type: &str,
    kwargs: &Map<String, JsonValue>,
) -> Option<(&'static str, JsonValue, &'static [&'static str])> {
    let get = |key: &str| kwargs.get(key).cloned().unwrap_or(JsonValue::Null);
    let flag = |key: &str| {
        kwargs
            .get(key)
            .and_then(JsonValue::as_bool)
            .unwrap_or(false)
    };
    let bounds = || {
        let mut params = Map::new();
        for (from, to) in [("min_value", "min"), ("max_value", "max")] {
            let value = get(from);
            if !value.is_null() {
                params.insert(to.into(), value);
            }
        }
        params.insert("exclusive_min".into(), JsonValue::Bool(flag("strict_min")));
        params.insert("exclusive_max".into(), JsonValue::Bool(flag("strict_max")));
        JsonValue::Object(params)
    };
    const BOUND_KWARGS: &[&str] = &["min_value", "max_value", "strict_min", "strict_max"];
    Some(match expectation_type {
        "expect_column_values_to_not_be_null" => ("required", json!({}), &[]),
        "expect_column_values_to_be_between" => ("range", bounds(), BOUND_KWARGS),
        "expect_column_values_to_be_in_set" => (
            "in_set",
            json!({ "values": get("value_set") }),
            &["value_set"],
        ),
        "expect_column_values_to_match_regex" => {
            ("regex", json!({ "pattern": get("regex") }), &["regex"])
        }
        "expect_column_value_lengths_to_be_between" => ("length", bounds(), BOUND_KWARGS),
        "expect_column_values_to_be_unique" => ("unique", json!({}), &[]),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleKind;

    #[test]
    fn every_untranslatable_expectation_is_listed() {
        let suite = json!({"name": "s", "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
            {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "a"}},
            {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 3}},
        ]});
        match RuleSet::from_gx_suite(&suite, PathBuf::new()) {
            Err(LoadError::UntranslatableExpectations { expectation_types }) => assert_eq!(
                expectation_types,
                [
                    "expect_column_mean_to_be_between",
                    "expect_table_row_count_to_equal"
                ]
            ),
            other => panic!("expected an untranslatable error, got {other:?}"),
        }
    }

    #[test]
    fn severities_kwargs_and_repeats_translate() {
        let suite = json!({"name": "s", "expectations": [
            {"type": "expect_column_values_to_be_between", "severity": "warning",
             "kwargs": {"column": "n", "min_value": 1, "max_value": 5, "strict_max": true, "mostly": 0.9}},
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0}},
        ]});
        let rules = RuleSet::from_gx_suite(&suite, PathBuf::new()).expect("translates");
        assert_eq!(rules.rules.len(), 2);
        assert_eq!(rules.rules[0].id, "n:values_to_be_between");
        assert_eq!(rules.rules[0].severity, crate::Severity::Soft);
        assert_eq!(rules.rules[0].mostly, Some(0.9));
        assert!(matches!(
            rules.rules[0].kind,
            RuleKind::Range {
                exclusive_max: true,
                exclusive_min: false,
                ..
            }
        ));
        assert_eq!(rules.rules[1].id, "n:values_to_be_between#2");
        assert_eq!(rules.rules[1].severity, crate::Severity::Hard);
    }

    #[test]
    fn conditions_are_refused_not_ignored() {
        let suite = json!({"name": "s", "expectations": [
            {"type": "expect_column_values_to_not_be_null",
             "kwargs": {"column": "a", "row_condition": "b > 1", "condition_parser": "pandas"}},
        ]});
        let error = RuleSet::from_gx_suite(&suite, PathBuf::new()).expect_err("refused");
        assert!(error.to_string().contains("row_condition"), "{error}");
    }
}
