//! Rule set documents (YAML or JSON): parsed, validated and hashed. Everything a rule needs at
//! evaluation time (paths, regexes, Rego policies) is compiled here, once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value as JsonValue};
use sha2::{Digest, Sha256};

use crate::error::LoadError;
use crate::path::FieldPath;

/// What a failed rule does to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The record goes to quarantine (`soft_fail`).
    Soft,
    /// The record is dropped with a dq event (`hard_fail`).
    Hard,
}

impl Severity {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "soft" => Some(Self::Soft),
            "hard" => Some(Self::Hard),
            _ => None,
        }
    }
}

/// Types a `type` rule can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    String,
    /// Integers only (a JSON number with a fraction is not one).
    Integer,
    /// Integers and floats (NaN included; use a range rule to refuse it).
    Number,
    Boolean,
    Object,
    Array,
    Bytes,
    /// An Avro timestamp or an RFC 3339 string.
    Timestamp,
}

/// A range bound: numbers, or RFC 3339 timestamps kept as microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Number(f64),
    Timestamp(i64),
}

/// Whether a Rego rule names violations (`deny`) or must hold (`allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RegoMode {
    /// Undefined, false or an empty collection passes; `true` or each message in a non-empty
    /// set or array is a violation.
    #[default]
    Deny,
    /// Only `true` passes.
    Allow,
}

/// A compiled Rego entry point.
#[derive(Clone)]
pub struct RegoPolicy {
    pub(crate) policy: regorus::CompiledPolicy,
    pub entrypoint: String,
    pub mode: RegoMode,
}

impl fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegoPolicy")
            .field("entrypoint", &self.entrypoint)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The check a rule makes, with its parameters validated.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// Present and not null. The only kind that looks at nulls and missing fields: every other
    /// kind passes them, as Great Expectations does.
    Required,
    Type {
        types: Vec<ValueType>,
    },
    Range {
        min: Option<Bound>,
        max: Option<Bound>,
        exclusive_min: bool,
        exclusive_max: bool,
    },
    InSet {
        values: Vec<JsonValue>,
    },
    /// Unanchored search, like Python's `re.search` and GX's `str.contains`.
    Regex {
        pattern: regex::Regex,
    },
    /// Characters (Unicode scalar values) of a string, or elements of an array.
    Length {
        min: Option<u64>,
        max: Option<u64>,
        exclusive_min: bool,
        exclusive_max: bool,
    },
    /// The value must be in the named reference set.
    Reference {
        set: String,
    },
    /// No repeat of the value within `horizon` of event time (stream), or within the batch.
    Unique {
        horizon: Option<Duration>,
    },
    Rego(Box<RegoPolicy>),
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Required => "required",
            RuleKind::Type { .. } => "type",
            RuleKind::Range { .. } => "range",
            RuleKind::InSet { .. } => "in_set",
            RuleKind::Regex { .. } => "regex",
            RuleKind::Length { .. } => "length",
            RuleKind::Reference { .. } => "reference",
            RuleKind::Unique { .. } => "unique",
            RuleKind::Rego(_) => "rego",
        }
    }
}

const KINDS: &str = "required, type, range, in_set, regex, length, reference, unique, rego";

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub field: FieldPath,
    pub kind: RuleKind,
    pub severity: Severity,
    /// For Great Expectations suites: the fraction of values that must pass for the batch
    /// summary to succeed (GX `mostly`). Per-record outcomes ignore it.
    pub mostly: Option<f64>,
}

/// Where a reference set's values come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// A file: one value per line, or a JSON array when the name ends in `.json`. Relative to
    /// the rule set file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A Postgres query whose first column (cast it to text) holds the values.
    #[serde(default)]
    pub postgres: Option<PostgresSource>,
    /// Values written in the rule set itself.
    #[serde(default)]
    pub values: Option<Vec<JsonValue>>,
    /// How often to reload; absent means load once.
    #[serde(default, with = "humantime_serde")]
    pub refresh: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// Connection URL; `${NAME}` is replaced by the environment variable NAME.
    pub url: String,
    pub query: String,
}

/// A parsed and validated rule set. Its identity is [`RuleSet::version_id`], `name@hash`.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub name: String,
    /// Rules sorted by id, so evaluation order (and violation order) never depends on the file.
    pub rules: Vec<Rule>,
    pub references: BTreeMap<String, ReferenceSpec>,
    /// Directory that relative reference files are read from.
    pub base_dir: PathBuf,
    hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSetDocument {
    name: String,
    #[serde(default)]
    version: Option<JsonValue>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    references: Map<String, JsonValue>,
    rules: Vec<JsonValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDocument {
    #[allow(dead_code)]
    id: String,
    field: Option<String>,
    kind: String,
    severity: String,
    #[serde(default)]
    params: Map<String, JsonValue>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    mostly: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeParams {
    types: Vec<ValueType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeParams {
    #[serde(default)]
    min: Option<JsonValue>,
    #[serde(default)]
    max: Option<JsonValue>,
    #[serde(default)]
    exclusive_min: bool,
    #[serde(default)]
    exclusive_max: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LengthParams {
    #[serde(default)]
    min: Option<u64>,
    #[serde(default)]
    max: Option<u64>,
    #[serde(default)]
    exclusive_min: bool,
    #[serde(default)]
    exclusive_max: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InSetParams {
    values: Vec<JsonValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexParams {
    pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceParams {
    set: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UniqueParams {
    #[serde(default, with = "humantime_serde")]
    horizon: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegoParams {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    policy_file: Option<PathBuf>,
    /// e.g. `data.tenant.deny`.
    rule: String,
    #[serde(default)]
    mode: RegoMode,
}

impl RuleSet {
    /// Reads a `.yaml`/`.yml` or `.json` rule set file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let document = parse_document(&text, &path.display().to_string(), is_json(path))?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::from_document(document, base_dir)
    }

    /// Parses YAML (JSON is valid YAML, so this takes both). Relative paths resolve from the
    /// current directory.
    pub fn from_yaml_str(text: &str) -> Result<Self, LoadError> {
        Self::from_document(parse_document(text, "rule set", false)?, PathBuf::new())
    }

    /// Builds a rule set from an already parsed JSON document.
    pub fn from_json_value(document: JsonValue, base_dir: PathBuf) -> Result<Self, LoadError> {
        Self::from_document(document, base_dir)
    }

    fn from_document(document: JsonValue, base_dir: PathBuf) -> Result<Self, LoadError> {
        let parsed: RuleSetDocument =
            serde_json::from_value(document).map_err(|e| LoadError::Syntax {
                what: "rule set".into(),
                message: e.to_string(),
            })?;

        let mut references = BTreeMap::new();
        for (name, spec) in &parsed.references {
            let spec: ReferenceSpec =
                serde_json::from_value(spec.clone()).map_err(|e| LoadError::Reference {
                    set: name.clone(),
                    rule_ids: Vec::new(),
                    problem: e.to_string(),
                })?;
            let sources = [
                spec.file.is_some(),
                spec.postgres.is_some(),
                spec.values.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(LoadError::Reference {
                    set: name.clone(),
                    rule_ids: Vec::new(),
                    problem: "give exactly one of `file`, `postgres`, `values`".into(),
                });
            }
            references.insert(name.clone(), spec);
        }

        let mut rules = Vec::with_capacity(parsed.rules.len());
        let mut seen = BTreeSet::new();
        for raw in &parsed.rules {
            let rule = compile_rule(raw, &references, &base_dir)?;
            if !seen.insert(rule.id.clone()) {
                return Err(LoadError::DuplicateId { rule_id: rule.id });
            }
            rules.push(rule);
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));

        // The hash covers a canonical form: rules sorted by id, object keys sorted, so moving
        // rules or keys around in the file keeps the version id.
        let mut sorted_rules = parsed.rules.clone();
        sorted_rules.sort_by(|a, b| rule_id_of(a).cmp(rule_id_of(b)));
        let mut canonical = Map::new();
        canonical.insert("name".into(), JsonValue::String(parsed.name.clone()));
        canonical.insert(
            "version".into(),
            parsed.version.clone().unwrap_or(JsonValue::Null),
        );
        canonical.insert(
            "description".into(),
            parsed
                .description
                .clone()
                .map_or(JsonValue::Null, JsonValue::String),
        );
        canonical.insert(
            "references".into(),
            JsonValue::Object(parsed.references.clone()),
        );
        canonical.insert("rules".into(), JsonValue::Array(sorted_rules));
        let mut text = String::new();
        write_canonical(&JsonValue::Object(canonical), &mut text);
        let digest = Sha256::digest(text.as_bytes());
        let hash = hex::encode(&digest[..8]);

        Ok(Self {
            name: parsed.name,
            rules,
            references,
            base_dir,
            hash,
        })
    }

    /// 16 hex digits of the SHA-256 of the canonical form.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// `name@hash`, the value of the `summit-dq-ruleset` header.
    pub fn version_id(&self) -> String {
        format!("{}@{}", self.name, self.hash)
    }
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn parse_document(text: &str, what: &str, json: bool) -> Result<JsonValue, LoadError> {
    let syntax = |message: String| LoadError::Syntax {
        what: what.to_owned(),
        message,
    };
    if json {
        serde_json::from_str(text).map_err(|e| syntax(e.to_string()))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))
    }
}

fn rule_id_of(raw: &JsonValue) -> &str {
    raw.get("id").and_then(JsonValue::as_str).unwrap_or("")
}

fn compile_rule(
    raw: &JsonValue,
    references: &BTreeMap<String, ReferenceSpec>,
    base_dir: &Path,
) -> Result<Rule, LoadError> {
    let id = match raw.get("id") {
        Some(JsonValue::String(id)) if !id.trim().is_empty() => id.clone(),
        _ => {
            return Err(LoadError::Rule {
                rule_id: "<no id>".into(),
                problem: format!("every rule needs a non-empty string `id`; got {raw}"),
            });
        }
    };
    let problem = |problem: String| LoadError::Rule {
        rule_id: id.clone(),
        problem,
    };
    let document: RuleDocument =
        serde_json::from_value(raw.clone()).map_err(|e| problem(e.to_string()))?;
    let severity = Severity::parse(&document.severity).ok_or_else(|| {
        problem(format!(
            "unknown severity `{}` (expected `soft` or `hard`)",
            document.severity
        ))
    })?;
    let field_text = match (&document.field, document.kind.as_str()) {
        (Some(field), _) => field.clone(),
        // A Rego policy sees the whole record unless told otherwise.
        (None, "rego") => "$".to_owned(),
        (None, _) => return Err(problem("missing `field`".into())),
    };
    let field = FieldPath::parse(&field_text).map_err(problem)?;
    let params = JsonValue::Object(document.params.clone());
    fn params_of<T: serde::de::DeserializeOwned>(
        params: JsonValue,
        kind: &str,
    ) -> Result<T, String> {
        serde_json::from_value(params).map_err(|e| format!("bad `params` for kind `{kind}`: {e}"))
    }
    let kind = match document.kind.as_str() {
        "required" | "not_null" => {
            if !document.params.is_empty() {
                return Err(problem("kind `required` takes no params".into()));
            }
            RuleKind::Required
        }
        "type" => {
            let p: TypeParams = params_of(params, "type").map_err(problem)?;
            if p.types.is_empty() {
                return Err(problem("`types` is empty".into()));
            }
            RuleKind::Type { types: p.types }
        }
        "range" => {
            let p: RangeParams = params_of(params, "range").map_err(problem)?;
            let min = p
                .min
                .as_ref()
                .map(parse_bound)
                .transpose()
                .map_err(problem)?;
            let max = p
                .max
                .as_ref()
                .map(parse_bound)
                .transpose()
                .map_err(problem)?;
            match (min, max) {
                (None, None) => return Err(problem("range needs `min`, `max` or both".into())),
                (Some(Bound::Number(lo)), Some(Bound::Number(hi))) if lo > hi => {
                    return Err(problem(format!("min {lo} > max {hi}")));
                }
                (Some(Bound::Timestamp(lo)), Some(Bound::Timestamp(hi))) if lo > hi => {
                    return Err(problem("min timestamp is after max timestamp".into()));
                }
                (Some(Bound::Number(_)), Some(Bound::Timestamp(_)))
                | (Some(Bound::Timestamp(_)), Some(Bound::Number(_))) => {
                    return Err(problem(
                        "min and max must both be numbers or both timestamps".into(),
                    ));
                }
                _ => {}
            }
            RuleKind::Range {
                min,
                max,
                exclusive_min: p.exclusive_min,
                exclusive_max: p.exclusive_max,
            }
        }
        "in_set" => {
            let p: InSetParams = params_of(params, "in_set").map_err(problem)?;
            if let Some(bad) = p.values.iter().find(|v| v.is_array() || v.is_object()) {
                return Err(problem(format!("set values must be scalars, found {bad}")));
            }
            RuleKind::InSet { values: p.values }
        }
        "regex" => {
            let p: RegexParams = params_of(params, "regex").map_err(problem)?;
            let pattern = regex::Regex::new(&p.pattern)
                .map_err(|e| problem(format!("bad regex `{}`: {e}", p.pattern)))?;
            RuleKind::Regex { pattern }
        }
        "length" => {
            let p: LengthParams = params_of(params, "length").map_err(problem)?;
            match (p.min, p.max) {
                (None, None) => return Err(problem("length needs `min`, `max` or both".into())),
                (Some(lo), Some(hi)) if lo > hi => {
                    return Err(problem(format!("min {lo} > max {hi}")));
                }
                _ => {}
            }
            RuleKind::Length {
                min: p.min,
                max: p.max,
                exclusive_min: p.exclusive_min,
                exclusive_max: p.exclusive_max,
            }
        }
        "reference" => {
            let p: ReferenceParams = params_of(params, "reference").map_err(problem)?;
            if !references.contains_key(&p.set) {
                return Err(problem(format!(
                    "reference set `{}` is not declared under `references`",
                    p.set
                )));
            }
            RuleKind::Reference { set: p.set }
        }
        "unique" => {
            let p: UniqueParams = params_of(params, "unique").map_err(problem)?;
            RuleKind::Unique { horizon: p.horizon }
        }
        "rego" => {
            let p: RegoParams = params_of(params, "rego").map_err(problem)?;
            let source = match (p.policy, p.policy_file) {
                (Some(text), None) => text,
                (None, Some(file)) => {
                    let path = base_dir.join(file);
                    std::fs::read_to_string(&path).map_err(|e| {
                        problem(format!("cannot read policy file {}: {e}", path.display()))
                    })?
                }
                _ => {
                    return Err(problem(
                        "give exactly one of `policy`, `policy_file`".into(),
                    ));
                }
            };
            let mut engine = regorus::Engine::new();
            engine
                .add_policy(format!("{id}.rego"), source)
                .map_err(|e| problem(format!("Rego policy does not compile: {e}")))?;
            let entry: regorus::Rc<str> = p.rule.as_str().into();
            let policy = engine
                .compile_with_entrypoint(&entry)
                .map_err(|e| problem(format!("Rego rule `{}`: {e}", p.rule)))?;
            RuleKind::Rego(Box::new(RegoPolicy {
                policy,
                entrypoint: p.rule,
                mode: p.mode,
            }))
        }
        other => {
            return Err(problem(format!("unknown kind `{other}` (known: {KINDS})")));
        }
    };
    if let Some(mostly) = document.mostly
        && !(0.0..=1.0).contains(&mostly)
    {
        return Err(problem(format!("`mostly` {mostly} is outside 0..=1")));
    }
    Ok(Rule {
        id,
        field,
        kind,
        severity,
        mostly: document.mostly,
    })
}

fn parse_bound(value: &JsonValue) -> Result<Bound, String> {
    match value {
        JsonValue::Number(n) => n
            .as_f64()
            .filter(|f| !f.is_nan())
            .map(Bound::Number)
            .ok_or_else(|| format!("bound {n} is not a usable number")),
        JsonValue::String(text) => parse_timestamp(text)
            .map(Bound::Timestamp)
            .ok_or_else(|| format!("bound `{text}` is neither a number nor an RFC 3339 timestamp")),
        other => Err(format!(
            "bound {other} is neither a number nor an RFC 3339 timestamp"
        )),
    }
}

/// RFC 3339 text to microseconds since the epoch.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    crate::timestamp::parse_rfc3339_micros(text)
}

/// JSON with object keys sorted and no whitespace: the input of content hashes.
pub(crate) fn write_canonical(value: &JsonValue, out: &mut String) {
    match value {
        JsonValue::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&JsonValue::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        JsonValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
