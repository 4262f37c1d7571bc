//! State for `unique` rules in a stream.
//!
//! The stream processor keeps one [`UniquenessTracker`] per partition (state moves with its
//! partition on a rebalance, like window state) and calls
//! [`crate::Evaluator::evaluate_with_state`] with each record's event time (the
//! `summit-event-time` header). A key repeated within the rule's `horizon` of event time fails;
//! keys older than the newest event time seen minus the horizon are evicted, so memory is
//! bounded by the keys of one horizon. A record later than the horizon may therefore miss a
//! duplicate that was already evicted; the processor routes such records to `.late` anyway.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::value::{RecordView, Scalar};

#[derive(Debug, Default)]
struct SeenKeys {
    last_seen: FxHashMap<String, i64>,
    expiry: BinaryHeap<Reverse<(i64, String)>>,
    newest_event_time: i64,
}

/// Keys seen by each `unique` rule, evicted by event time.
#[derive(Debug, Default)]
pub struct UniquenessTracker {
    rules: FxHashMap<String, SeenKeys>,
}

impl UniquenessTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys currently held across all rules.
    pub fn tracked_keys(&self) -> usize {
        self.rules.values().map(|s| s.last_seen.len()).sum()
    }

    /// Records `key` at `event_time_micros`; true when it was seen within `horizon_micros`
    /// (any time at all when there is no horizon).
    pub(crate) fn observe(
        &mut self,
        rule_id: &str,
        key: String,
        event_time_micros: i64,
        horizon_micros: Option<i64>,
    ) -> bool {
        let seen = match self.rules.get_mut(rule_id) {
            Some(seen) => seen,
            None => self.rules.entry(rule_id.to_owned()).or_default(),
        };
        if seen.last_seen.is_empty() {
            seen.newest_event_time = event_time_micros;
        }
        seen.newest_event_time = seen.newest_event_time.max(event_time_micros);
        if let Some(horizon) = horizon_micros {
            let cutoff = seen.newest_event_time.saturating_sub(horizon);
            while let Some(Reverse((at, _))) = seen.expiry.peek() {
                if *at >= cutoff {
                    break;
                }
                if let Some(Reverse((at, old_key))) = seen.expiry.pop()
                    && seen.last_seen.get(&old_key) == Some(&at)
                {
                    seen.last_seen.remove(&old_key);
                }
            }
        }
        let repeated = match (seen.last_seen.get(&key), horizon_micros) {
            (Some(previous), Some(horizon)) => {
                event_time_micros.abs_diff(*previous) <= horizon.unsigned_abs()
            }
            (Some(_), None) => true,
            (None, _) => false,
        };
        let latest = seen
            .last_seen
            .get(&key)
            .map_or(event_time_micros, |p| (*p).max(event_time_micros));
        if horizon_micros.is_some() {
            seen.expiry.push(Reverse((latest, key.clone())));
        }
        seen.last_seen.insert(key, latest);
        repeated
    }
}

/// The identity of a value for uniqueness: 1 and 1.0 are the same key (as in pandas), "1" is not.
pub(crate) fn unique_key<V: RecordView>(value: &V) -> Option<String> {
    Some(match value.scalar() {
        Scalar::Null => return None,
        Scalar::Str(s) => format!("s:{s}"),
        Scalar::Int(i) => format!("n:{i}"),
        #[allow(clippy::cast_possible_truncation)]
        Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("n:{}", f as i64),
        Scalar::Float(f) => format!("f:{f}"),
        Scalar::Bool(b) => format!("b:{b}"),
        Scalar::Timestamp(t) => format!("t:{t}"),
        Scalar::Bytes(b) => format!("x:{}", hex::encode(b)),
        Scalar::Array(_) | Scalar::Object | Scalar::Other(_) => {
            let mut text = String::from("j:");
            crate::ruleset::write_canonical(&value.to_json(), &mut text);
            text
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;

    #[test]
    fn repeats_within_the_horizon_fail_and_old_keys_are_evicted() {
        let mut tracker = UniquenessTracker::new();
        let horizon = Some(10 * MINUTE);
        assert!(!tracker.observe("r", "a".into(), 0, horizon));
        assert!(tracker.observe("r", "a".into(), 5 * MINUTE, horizon));
        assert!(!tracker.observe("r", "b".into(), 30 * MINUTE, horizon));
        // "a" was last seen at 5 min, the watermark is 30 min: evicted, so it is new again.
        assert_eq!(tracker.tracked_keys(), 1);
        assert!(!tracker.observe("r", "a".into(), 31 * MINUTE, horizon));
        // Rules do not share keys.
        assert!(!tracker.observe("other", "a".into(), 31 * MINUTE, horizon));
    }

    #[test]
    fn without_a_horizon_every_repeat_fails() {
        let mut tracker = UniquenessTracker::new();
        assert!(!tracker.observe("r", "a".into(), 0, None));
        assert!(tracker.observe("r", "a".into(), i64::MAX / 2, None));
    }

    #[test]
    fn integral_floats_and_integers_are_the_same_key() {
        assert_eq!(
            unique_key(&serde_json::json!(1)),
            unique_key(&serde_json::json!(1.0))
        );
        assert_ne!(
            unique_key(&serde_json::json!(1)),
            unique_key(&serde_json::json!("1"))
        );
        assert_eq!(unique_key(&serde_json::Value::Null), None);
    }
}
