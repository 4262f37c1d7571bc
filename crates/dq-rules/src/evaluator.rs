//! The compiled evaluator: a rule set plus the current reference snapshots, evaluated on records.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustc_hash::FxHashSet;
use serde::Serialize;

use crate::error::LoadError;
use crate::path::{FieldPath, Located};
use crate::reference::{ReferenceData, ReferenceError, ReferenceSnapshot, load_reference};
use crate::resolve::{FieldTrie, key_parts};
use crate::ruleset::{
    Bound, RegoMode, RegoPolicy, RuleKind, RuleSet, Severity, ValueType, parse_timestamp,
};
use crate::uniqueness::{UniquenessTracker, unique_key};
use crate::value::{RecordView, Scalar, render_observed};

/// A record's result: the worst severity among its failed rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    SoftFail,
    HardFail,
}

impl Verdict {
    /// The `summit-dq` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::SoftFail => "soft_fail",
            Verdict::HardFail => "hard_fail",
        }
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub rule_id: String,
    /// The concrete path, with `[*]` replaced by the element index.
    pub field: String,
    pub severity: Severity,
    pub message: String,
    /// The value seen, rendered and truncated; absent when the field was missing.
    pub observed: Option<String>,
}

/// The result of evaluating one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    /// In rule id order, then in path order within a rule.
    pub violations: Vec<Violation>,
    /// The reference snapshot version used, when the rule set has reference rules.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_arc_str"
    )]
    pub reference_version: Option<Arc<str>>,
}

fn serialize_arc_str<S: serde::Serializer>(
    value: &Option<Arc<str>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(text) => serializer.serialize_some(&**text),
        None => serializer.serialize_none(),
    }
}

/// Up to this many strings an `in_set` rule compares against each instead of hashing: hashing
/// the value and probing cost more than a few integer comparisons.
const LINEAR_STRINGS: usize = 8;

#[derive(Debug)]
struct FewString {
    len: usize,
    parts: (u64, u64),
    text: Box<str>,
}

/// Scalars of an `in_set` rule, split by type so lookups never allocate.
#[derive(Debug, Default)]
struct ValueSet {
    strings: FxHashSet<Box<str>>,
    /// The strings again, with their length and [`key_parts`], when there are few of them.
    few_strings: Option<Vec<FewString>>,
    integers: FxHashSet<i64>,
    floats: Vec<f64>,
    booleans: [bool; 2],
}

impl ValueSet {
    fn new(values: &[serde_json::Value]) -> Self {
        let mut set = Self::default();
        for value in values {
            match value.scalar() {
                Scalar::Str(s) => {
                    set.strings.insert(s.into());
                }
                Scalar::Int(i) => {
                    set.integers.insert(i);
                }
                Scalar::Float(f) => set.floats.push(f),
                Scalar::Bool(b) => set.booleans[usize::from(b)] = true,
                _ => {}
            }
        }
        if set.strings.len() <= LINEAR_STRINGS {
            set.few_strings = Some(
                set.strings
                    .iter()
                    .map(|s| FewString {
                        len: s.len(),
                        parts: key_parts(s.as_bytes()),
                        text: s.clone(),
                    })
                    .collect(),
            );
        }
        set
    }

    #[inline]
    fn contains_str(&self, value: &str) -> bool {
        match &self.few_strings {
            Some(few) => {
                let (len, parts) = (value.len(), key_parts(value.as_bytes()));
                // key_parts is the whole key up to 16 bytes.
                few.iter()
                    .any(|f| f.len == len && f.parts == parts && (len <= 16 || *f.text == *value))
            }
            None => self.strings.contains(value),
        }
    }

    fn contains(&self, value: Scalar<'_>) -> bool {
        match value {
            Scalar::Str(s) => self.contains_str(s),
            Scalar::Int(i) => {
                // i64 → f64 is exact for the magnitudes sets hold in practice.
                #[allow(clippy::cast_precision_loss)]
                let as_float = i as f64;
                self.integers.contains(&i) || self.floats.contains(&as_float)
            }
            Scalar::Float(f) => {
                #[allow(clippy::cast_possible_truncation)]
                let integral =
                    f.fract() == 0.0 && f.abs() < 9.0e15 && self.integers.contains(&(f as i64));
                integral || self.floats.contains(&f)
            }
            Scalar::Bool(b) => self.booleans[usize::from(b)],
            _ => false,
        }
    }
}

#[derive(Debug)]
enum Check {
    Required,
    Type(Vec<ValueType>),
    NumberRange {
        min: Option<f64>,
        max: Option<f64>,
        exclusive_min: bool,
        exclusive_max: bool,
    },
    TimeRange {
        min: Option<i64>,
        max: Option<i64>,
        exclusive_min: bool,
        exclusive_max: bool,
    },
    InSet(ValueSet),
    Regex(regex::Regex),
    Length {
        min: Option<u64>,
        max: Option<u64>,
        exclusive_min: bool,
        exclusive_max: bool,
    },
    Reference {
        set_index: usize,
        set_name: String,
    },
    Unique,
    Rego(Box<RegoPolicy>),
}

#[derive(Debug)]
struct CompiledRule {
    id: String,
    field: FieldPath,
    /// The [`FieldTrie`] node the path's leading field names lead to, and how many segments
    /// that covers; `direct` when that is the whole path (no index or `[*]` after it).
    node: usize,
    skip: usize,
    direct: bool,
    severity: Severity,
    check: Check,
    horizon_micros: Option<i64>,
}

/// How uniqueness rules are decided in one evaluation.
pub(crate) enum UniqueMode<'a> {
    /// Pure evaluation: uniqueness needs state, so it is not checked.
    Skip,
    /// Streaming: a repeat of a key within the rule's horizon of event time fails.
    Stream {
        tracker: &'a mut UniquenessTracker,
        event_time_micros: i64,
    },
    /// Batch (GX semantics): every occurrence of a key that occurs more than once fails.
    /// Indexed like the evaluator's rules; `None` for rules that are not `unique`.
    Batch(&'a [Option<FxHashSet<String>>]),
}

/// A rule set compiled for evaluation. Cheap to share (`Arc<Evaluator>`); reference sets are
/// swapped atomically underneath readers.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<CompiledRule>,
    fields: FieldTrie,
    version_id: String,
    rule_set: RuleSet,
    reference_names: Vec<String>,
    references: ArcSwap<ReferenceData>,
    has_reference_rules: bool,
}

impl Evaluator {
    /// Compiles the rule set and loads every reference set once. An unreadable reference
    /// source is a [`LoadError::Reference`] naming the set and the rules that use it.
    pub async fn build(rule_set: &RuleSet) -> Result<Self, LoadError> {
        let mut snapshots = Vec::with_capacity(rule_set.references.len());
        for (name, spec) in &rule_set.references {
            let snapshot = load_reference(name, spec, &rule_set.base_dir)
                .await
                .map_err(|e| LoadError::Reference {
                    set: name.clone(),
                    rule_ids: rules_using(rule_set, name),
                    problem: e.to_string(),
                })?;
            snapshots.push(Arc::new(snapshot));
        }
        Ok(Self::with_references(rule_set, snapshots))
    }

    /// Compiles with reference snapshots supplied by the caller (same order as
    /// `rule_set.references`, i.e. sorted by name). Missing sets are empty.
    pub fn with_references(rule_set: &RuleSet, mut snapshots: Vec<Arc<ReferenceSnapshot>>) -> Self {
        let reference_names: Vec<String> = rule_set.references.keys().cloned().collect();
        for name in reference_names.iter().skip(snapshots.len()) {
            snapshots.push(Arc::new(ReferenceSnapshot::from_values::<_, String>(
                name,
                [],
            )));
        }
        let index_of: BTreeMap<&str, usize> = reference_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut fields = FieldTrie::new();
        let rules: Vec<CompiledRule> = rule_set
            .rules
            .iter()
            .map(|rule| {
                let (node, skip) = fields.insert(&rule.field);
                (rule, node, skip)
            })
            .map(|(rule, node, skip)| CompiledRule {
                id: rule.id.clone(),
                field: rule.field.clone(),
                node,
                skip,
                direct: skip == rule.field.segment_count(),
                severity: rule.severity,
                horizon_micros: match &rule.kind {
                    RuleKind::Unique { horizon: Some(h) } => {
                        Some(i64::try_from(h.as_micros()).unwrap_or(i64::MAX))
                    }
                    _ => None,
                },
                check: compile_check(&rule.kind, &index_of),
            })
            .collect();
        let has_reference_rules = rules
            .iter()
            .any(|r| matches!(r.check, Check::Reference { .. }));
        Self {
            rules,
            fields,
            version_id: rule_set.version_id(),
            rule_set: rule_set.clone(),
            reference_names,
            references: ArcSwap::from_pointee(ReferenceData::new(snapshots)),
            has_reference_rules,
        }
    }

    /// `name@hash` of the rule set.
    pub fn version_id(&self) -> &str {
        &self.version_id
    }

    pub fn rule_set(&self) -> &RuleSet {
        &self.rule_set
    }

    /// The reference snapshots evaluation uses right now.
    pub fn reference_data(&self) -> Arc<ReferenceData> {
        self.references.load_full()
    }

    /// Replaces one reference set; records evaluated afterwards see the new snapshot.
    pub fn replace_reference(&self, snapshot: ReferenceSnapshot) -> Result<(), ReferenceError> {
        let index = self
            .reference_names
            .iter()
            .position(|n| *n == snapshot.name)
            .ok_or_else(|| ReferenceError::UnknownSet(snapshot.name.clone()))?;
        let snapshot = Arc::new(snapshot);
        self.references.rcu(|current| {
            let mut sets = current.sets.clone();
            sets[index] = snapshot.clone();
            ReferenceData::new(sets)
        });
        Ok(())
    }

    /// Reloads one reference set from its source. On error the old snapshot stays.
    pub async fn refresh_reference(&self, name: &str) -> Result<(), ReferenceError> {
        let spec = self
            .rule_set
            .references
            .get(name)
            .ok_or_else(|| ReferenceError::UnknownSet(name.to_owned()))?;
        let snapshot = load_reference(name, spec, &self.rule_set.base_dir).await?;
        self.replace_reference(snapshot)
    }

    /// Starts one task per reference set that has a `refresh` interval. Failed reloads keep
    /// the previous snapshot and are handed to `on_error` (log and alert there).
    pub fn spawn_reference_refresh(
        self: &Arc<Self>,
        on_error: impl Fn(ReferenceError) + Send + Sync + 'static,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let on_error = Arc::new(on_error);
        self.rule_set
            .references
            .iter()
            .filter_map(|(name, spec)| spec.refresh.map(|every| (name.clone(), every)))
            .map(|(name, every)| {
                let evaluator = Arc::clone(self);
                let on_error = Arc::clone(&on_error);
                tokio::spawn(async move {
                    let mut ticker = tokio::time::interval(every);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticker.tick().await; // the first tick is immediate; build() just loaded it
                    loop {
                        ticker.tick().await;
                        if let Err(e) = evaluator.refresh_reference(&name).await {
                            on_error(e);
                        }
                    }
                })
            })
            .collect()
    }

    /// Evaluates the stateless rules. `unique` rules need state and are skipped here: use
    /// [`Evaluator::evaluate_with_state`] in the stream processor.
    pub fn evaluate<V: RecordView>(&self, record: &V) -> Outcome {
        self.evaluate_in(record, &mut UniqueMode::Skip)
    }

    /// Evaluates every rule; `unique` rules consult and update `tracker` at `event_time`.
    pub fn evaluate_with_state<V: RecordView>(
        &self,
        record: &V,
        tracker: &mut UniquenessTracker,
        event_time: chrono::DateTime<chrono::Utc>,
    ) -> Outcome {
        self.evaluate_in(
            record,
            &mut UniqueMode::Stream {
                tracker,
                event_time_micros: event_time.timestamp_micros(),
            },
        )
    }

    pub(crate) fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    pub(crate) fn rule_field(&self, index: usize) -> &FieldPath {
        &self.rules[index].field
    }

    pub(crate) fn is_unique_rule(&self, index: usize) -> bool {
        matches!(self.rules[index].check, Check::Unique)
    }

    pub(crate) fn evaluate_in<V: RecordView>(
        &self,
        record: &V,
        unique: &mut UniqueMode<'_>,
    ) -> Outcome {
        // One snapshot for the whole record, so a refresh cannot mix versions within it.
        let references = self.references.load();
        let mut violations = Vec::new();
        self.fields.resolve(record, |slots| {
            for (index, rule) in self.rules.iter().enumerate() {
                if matches!(rule.check, Check::Unique) && matches!(unique, UniqueMode::Skip) {
                    continue;
                }
                let start = slots.get(rule.node).copied().flatten();
                // Most values pass: decide those here, without the closure call below.
                if rule.direct
                    && let Some(value) = start
                    && quick_pass(&rule.check, value, &references)
                {
                    continue;
                }
                let mut judge = |located: Located<'_, V>, indexes: &[usize]| {
                    let failure = match located {
                        Located::Missing => match rule.check {
                            Check::Required => Some(("missing".to_owned(), None)),
                            _ => None,
                        },
                        Located::NotAnArray(value) => Some((
                            format!("expected an array, found {}", value.scalar().type_name()),
                            Some(render_observed(value)),
                        )),
                        Located::Found(value) if quick_pass(&rule.check, value, &references) => {
                            None
                        }
                        Located::Found(value) => {
                            check_value(rule, index, value, &references, unique)
                                .map(|message| (message, Some(render_observed(value))))
                        }
                    };
                    // Violations are built only on failure: the passing path allocates nothing.
                    if let Some((message, observed)) = failure {
                        violations.push(Violation {
                            rule_id: rule.id.clone(),
                            field: rule.field.render(indexes),
                            severity: rule.severity,
                            message,
                            observed,
                        });
                    }
                };
                if rule.direct {
                    judge(start.map_or(Located::Missing, Located::Found), &[]);
                } else {
                    rule.field.visit_from(rule.skip, start, &mut judge);
                }
            }
        });
        let verdict = violations
            .iter()
            .map(|v| match v.severity {
                Severity::Soft => Verdict::SoftFail,
                Severity::Hard => Verdict::HardFail,
            })
            .max()
            .unwrap_or(Verdict::Pass);
        Outcome {
            verdict,
            violations,
            reference_version: self
                .has_reference_rules
                .then(|| Arc::clone(&references.version)),
        }
    }
}

fn rules_using(rule_set: &RuleSet, set: &str) -> Vec<String> {
    rule_set
        .rules
        .iter()
        .filter(|r| matches!(&r.kind, RuleKind::Reference { set: s } if s == set))
        .map(|r| r.id.clone())
        .collect()
}

fn compile_check(kind: &RuleKind, reference_index: &BTreeMap<&str, usize>) -> Check {
    match kind {
        RuleKind::Required => Check::Required,
        RuleKind::Type { types } => Check::Type(types.clone()),
        RuleKind::Range {
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => {
            let is_time = matches!(min, Some(Bound::Timestamp(_)))
                || matches!(max, Some(Bound::Timestamp(_)));
            if is_time {
                let micros = |b: &Option<Bound>| match b {
                    Some(Bound::Timestamp(t)) => Some(*t),
                    _ => None,
                };
                Check::TimeRange {
                    min: micros(min),
                    max: micros(max),
                    exclusive_min: *exclusive_min,
                    exclusive_max: *exclusive_max,
                }
            } else {
                let number = |b: &Option<Bound>| match b {
                    Some(Bound::Number(n)) => Some(*n),
                    _ => None,
                };
                Check::NumberRange {
                    min: number(min),
                    max: number(max),
                    exclusive_min: *exclusive_min,
                    exclusive_max: *exclusive_max,
                }
            }
        }
        RuleKind::InSet { values } => Check::InSet(ValueSet::new(values)),
        RuleKind::Regex { pattern } => Check::Regex(pattern.clone()),
        RuleKind::Length {
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => Check::Length {
            min: *min,
            max: *max,
            exclusive_min: *exclusive_min,
            exclusive_max: *exclusive_max,
        },
        RuleKind::Reference { set } => Check::Reference {
            // Parsing guarantees the set is declared.
            set_index: reference_index
                .get(set.as_str())
                .copied()
                .unwrap_or(usize::MAX),
            set_name: set.clone(),
        },
        RuleKind::Unique { .. } => Check::Unique,
        RuleKind::Rego(policy) => Check::Rego(policy.clone()),
    }
}

fn outside<T: PartialOrd + Copy>(
    value: T,
    min: Option<T>,
    max: Option<T>,
    exclusive_min: bool,
    exclusive_max: bool,
) -> bool {
    let below = min.is_some_and(|lo| {
        if exclusive_min {
            value <= lo
        } else {
            value < lo
        }
    });
    let above = max.is_some_and(|hi| {
        if exclusive_max {
            value >= hi
        } else {
            value > hi
        }
    });
    below || above
}

fn describe_range<T: std::fmt::Display>(
    min: Option<T>,
    max: Option<T>,
    exclusive_min: bool,
    exclusive_max: bool,
) -> String {
    let lo = min.map_or("-∞".to_owned(), |v| v.to_string());
    let hi = max.map_or("+∞".to_owned(), |v| v.to_string());
    format!(
        "{}{lo}, {hi}{}",
        if exclusive_min { '(' } else { '[' },
        if exclusive_max { ')' } else { ']' }
    )
}

/// Whether `value` (a scalar) has one of `types`.
#[inline]
fn type_matches(types: &[ValueType], scalar: Scalar<'_>) -> bool {
    types.iter().any(|t| match (t, scalar) {
        (ValueType::String, Scalar::Str(_))
        | (ValueType::Integer, Scalar::Int(_))
        | (ValueType::Number, Scalar::Int(_) | Scalar::Float(_))
        | (ValueType::Boolean, Scalar::Bool(_))
        | (ValueType::Object, Scalar::Object)
        | (ValueType::Array, Scalar::Array(_))
        | (ValueType::Bytes, Scalar::Bytes(_))
        | (ValueType::Timestamp, Scalar::Timestamp(_)) => true,
        (ValueType::Timestamp, Scalar::Str(s)) => parse_timestamp(s).is_some(),
        _ => false,
    })
}

/// Unicode scalar values, like Python's len(); ASCII (checked a word at a time) has one per
/// byte, which spares the per-character count.
#[inline]
fn char_length(s: &str) -> u64 {
    if s.is_ascii() {
        s.len() as u64
    } else {
        s.chars().count() as u64
    }
}

/// The passing path: `true` only when [`check_value`] would find nothing wrong with `value`.
/// It decides the common cases with no message building and a small stack frame; `false` means
/// "ask `check_value`", which repeats the check and words the violation (so failures pay twice,
/// passes once). Stateful (`unique`) and Rego rules always go to `check_value`.
#[inline]
fn quick_pass<V: RecordView>(check: &Check, value: &V, references: &ReferenceData) -> bool {
    let scalar = value.scalar();
    #[allow(clippy::cast_precision_loss)]
    match (check, scalar) {
        // Nulls pass every kind but `required`, in check_value too.
        (Check::Required, Scalar::Null) => false,
        (_, Scalar::Null) | (Check::Required, _) => true,
        (Check::Type(types), scalar) => type_matches(types, scalar),
        (
            Check::NumberRange {
                min,
                max,
                exclusive_min,
                exclusive_max,
            },
            Scalar::Int(_) | Scalar::Float(_),
        ) => {
            let number = match scalar {
                Scalar::Int(i) => i as f64,
                Scalar::Float(f) => f,
                _ => return false,
            };
            !number.is_nan() && !outside(number, *min, *max, *exclusive_min, *exclusive_max)
        }
        (
            Check::TimeRange {
                min,
                max,
                exclusive_min,
                exclusive_max,
            },
            Scalar::Timestamp(_) | Scalar::Str(_),
        ) => {
            let micros = match scalar {
                Scalar::Timestamp(t) => Some(t),
                Scalar::Str(s) => parse_timestamp(s),
                _ => None,
            };
            micros.is_some_and(|t| !outside(t, *min, *max, *exclusive_min, *exclusive_max))
        }
        (
            Check::InSet(set),
            Scalar::Str(_) | Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_),
        ) => set.contains(scalar),
        (Check::Regex(pattern), Scalar::Str(s)) => pattern.is_match(s),
        (
            Check::Length {
                min,
                max,
                exclusive_min,
                exclusive_max,
            },
            Scalar::Str(_) | Scalar::Array(_),
        ) => {
            let length = match scalar {
                Scalar::Str(s) => char_length(s),
                Scalar::Array(n) => n as u64,
                _ => return false,
            };
            !outside(length, *min, *max, *exclusive_min, *exclusive_max)
        }
        (Check::Reference { set_index, .. }, Scalar::Str(_) | Scalar::Int(_)) => references
            .sets
            .get(*set_index)
            .is_some_and(|set| match scalar {
                Scalar::Str(s) => set.contains_str(s),
                Scalar::Int(i) => set.contains_integer(i),
                _ => false,
            }),
        _ => false,
    }
}

/// Checks one present value; `Some(message)` on failure. Nulls pass every kind but `required`.
/// Out of line: the passing path is [`quick_pass`], this one words violations.
#[inline(never)]
fn check_value<V: RecordView>(
    rule: &CompiledRule,
    rule_index: usize,
    value: &V,
    references: &ReferenceData,
    unique: &mut UniqueMode<'_>,
) -> Option<String> {
    let scalar = value.scalar();
    if scalar == Scalar::Null {
        return matches!(rule.check, Check::Required).then(|| "null".to_owned());
    }
    let wrong_type =
        |expected: &str| Some(format!("expected {expected}, found {}", scalar.type_name()));
    match &rule.check {
        Check::Required => None,
        Check::Type(types) => (!type_matches(types, scalar)).then(|| {
            let names: Vec<String> = types
                .iter()
                .map(|t| format!("{t:?}").to_lowercase())
                .collect();
            format!(
                "expected type {}, found {}",
                names.join(" or "),
                scalar.type_name()
            )
        }),
        Check::NumberRange {
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => {
            #[allow(clippy::cast_precision_loss)]
            let number = match scalar {
                Scalar::Int(i) => i as f64,
                Scalar::Float(f) if f.is_nan() => return Some("NaN is not in any range".into()),
                Scalar::Float(f) => f,
                _ => return wrong_type("a number"),
            };
            outside(number, *min, *max, *exclusive_min, *exclusive_max).then(|| {
                format!(
                    "{number} is outside {}",
                    describe_range(*min, *max, *exclusive_min, *exclusive_max)
                )
            })
        }
        Check::TimeRange {
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => {
            let micros = match scalar {
                Scalar::Timestamp(t) => t,
                Scalar::Str(s) => match parse_timestamp(s) {
                    Some(t) => t,
                    None => return Some("not an RFC 3339 timestamp".into()),
                },
                _ => return wrong_type("a timestamp"),
            };
            outside(micros, *min, *max, *exclusive_min, *exclusive_max).then(|| {
                let text = |t: Option<i64>| {
                    t.and_then(chrono::DateTime::from_timestamp_micros)
                        .map(|t| t.to_rfc3339())
                };
                format!(
                    "timestamp is outside {}",
                    describe_range(text(*min), text(*max), *exclusive_min, *exclusive_max)
                )
            })
        }
        Check::InSet(set) => match scalar {
            Scalar::Str(_) | Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_) => {
                (!set.contains(scalar)).then(|| "not in the allowed set".to_owned())
            }
            _ => wrong_type("a string, number or boolean"),
        },
        Check::Regex(pattern) => match scalar {
            Scalar::Str(s) => {
                (!pattern.is_match(s)).then(|| format!("does not match /{}/", pattern.as_str()))
            }
            _ => wrong_type("a string"),
        },
        Check::Length {
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => {
            let length = match scalar {
                Scalar::Str(s) => char_length(s),
                Scalar::Array(n) => n as u64,
                _ => return wrong_type("a string or an array"),
            };
            outside(length, *min, *max, *exclusive_min, *exclusive_max).then(|| {
                format!(
                    "length {length} is outside {}",
                    describe_range(*min, *max, *exclusive_min, *exclusive_max)
                )
            })
        }
        Check::Reference {
            set_index,
            set_name,
        } => {
            let Some(set) = references.sets.get(*set_index) else {
                return Some(format!("reference set `{set_name}` is not loaded"));
            };
            let found = match scalar {
                Scalar::Str(s) => set.contains_str(s),
                Scalar::Int(i) => set.contains_integer(i),
                _ => return wrong_type("a string or an integer"),
            };
            (!found).then(|| {
                format!(
                    "not in reference set `{set_name}` (version {})",
                    set.content_hash
                )
            })
        }
        Check::Unique => {
            let key = unique_key(value)?;
            let repeated = match unique {
                UniqueMode::Skip => false,
                UniqueMode::Stream {
                    tracker,
                    event_time_micros,
                } => tracker.observe(&rule.id, key, *event_time_micros, rule.horizon_micros),
                UniqueMode::Batch(duplicates) => duplicates
                    .get(rule_index)
                    .and_then(Option::as_ref)
                    .is_some_and(|d| d.contains(&key)),
            };
            repeated.then(|| "value is not unique".to_owned())
        }
        Check::Rego(policy) => check_rego(policy, value),
    }
}

fn check_rego<V: RecordView>(policy: &RegoPolicy, value: &V) -> Option<String> {
    let input = regorus::Value::from(value.to_json());
    let result = match policy.policy.eval_with_input(input) {
        Ok(result) => result,
        Err(e) => return Some(format!("Rego evaluation failed: {e}")),
    };
    let messages = |items: &mut dyn Iterator<Item = &regorus::Value>| -> Vec<String> {
        items
            .map(|v| match v.as_string() {
                Ok(s) => s.to_string(),
                Err(_) => v.to_json_str().unwrap_or_else(|_| format!("{v:?}")),
            })
            .collect()
    };
    let denied: Vec<String> = match (&result, policy.mode) {
        (regorus::Value::Bool(true), RegoMode::Allow) => Vec::new(),
        (_, RegoMode::Allow) => vec![format!("`{}` is not true", policy.entrypoint)],
        (regorus::Value::Bool(true), RegoMode::Deny) => {
            vec![format!("`{}` is true", policy.entrypoint)]
        }
        (regorus::Value::Set(items), RegoMode::Deny) => messages(&mut items.iter()),
        (regorus::Value::Array(items), RegoMode::Deny) => messages(&mut items.iter()),
        (regorus::Value::String(s), RegoMode::Deny) => vec![s.to_string()],
        _ => Vec::new(),
    };
    (!denied.is_empty()).then(|| denied.join("; "))
}

#[cfg(test)]
#[path = "evaluator_tests.rs"]
mod tests;
