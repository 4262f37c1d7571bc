//! Deciding when a rule's failures deserve a ticket: pure, with the time passed in.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// When to open a ticket: `threshold` failures of one rule on one dataset within `window`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TicketPolicy {
    pub threshold: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Event ids quoted in a ticket at most.
    pub max_samples: usize,
}

/// The webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// `<dataset>/<rule>/<window start ms>`: the same window always gives the same id, so the
    /// receiver can drop a repeat after a retried request that had in fact arrived.
    pub ticket_id: String,
    pub dataset: String,
    pub rule: String,
    /// Failures counted in the window when the ticket was opened.
    pub failures: u64,
    pub threshold: u64,
    pub window_seconds: u64,
    /// Epoch milliseconds of the window's first failure.
    pub window_started_at_ms: i64,
    /// `summit-event-id`s of the first failing records, at most `max_samples`.
    pub sample_event_ids: Vec<String>,
}

#[derive(Debug)]
struct RuleWindow {
    started_at: SystemTime,
    failures: u64,
    samples: Vec<String>,
    ticketed: bool,
}

/// Failure counts per (dataset, rule) in tumbling windows that start at a window's first failure.
/// One ticket at most per (dataset, rule) per window.
#[derive(Debug)]
pub struct FailureWindow {
    policy: TicketPolicy,
    windows: HashMap<(String, String), RuleWindow>,
}

impl FailureWindow {
    pub fn new(policy: TicketPolicy) -> Self {
        Self {
            policy,
            windows: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &TicketPolicy {
        &self.policy
    }

    /// Counts one failure of `rule` on `dataset` at `now`; returns the ticket when this failure
    /// reaches the threshold for the first time in the current window.
    pub fn record_failure(
        &mut self,
        dataset: &str,
        rule: &str,
        event_id: &str,
        now: SystemTime,
    ) -> Option<Ticket> {
        let window = self
            .windows
            .entry((dataset.to_owned(), rule.to_owned()))
            .or_insert_with(|| RuleWindow {
                started_at: now,
                failures: 0,
                samples: Vec::new(),
                ticketed: false,
            });
        // A clock that stepped back counts as still inside the window.
        let age = now.duration_since(window.started_at).unwrap_or_default();
        if age >= self.policy.window {
            *window = RuleWindow {
                started_at: now,
                failures: 0,
                samples: Vec::new(),
                ticketed: false,
            };
        }
        window.failures += 1;
        if window.samples.len() < self.policy.max_samples {
            window.samples.push(event_id.to_owned());
        }
        if window.ticketed || window.failures < self.policy.threshold.max(1) {
            return None;
        }
        window.ticketed = true;
        let started_ms = window
            .started_at
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Some(Ticket {
            ticket_id: format!("{dataset}/{rule}/{started_ms}"),
            dataset: dataset.to_owned(),
            rule: rule.to_owned(),
            failures: window.failures,
            threshold: self.policy.threshold,
            window_seconds: self.policy.window.as_secs(),
            window_started_at_ms: started_ms,
            sample_event_ids: window.samples.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn policy() -> TicketPolicy {
        TicketPolicy {
            threshold: 3,
            window: Duration::from_secs(60),
            max_samples: 2,
        }
    }

    #[test]
    fn one_ticket_when_the_threshold_is_reached_and_none_after_in_the_window() {
        let mut tracker = FailureWindow::new(policy());
        let tickets: Vec<Ticket> = (0..10)
            .filter_map(|i| {
                tracker.record_failure("orders", "amount_positive", &format!("e{i}"), at(i))
            })
            .collect();
        assert_eq!(tickets.len(), 1);
        let ticket = &tickets[0];
        assert_eq!(ticket.failures, 3);
        assert_eq!(
            ticket.sample_event_ids,
            ["e0", "e1"],
            "samples capped at max_samples"
        );
        assert_eq!(ticket.window_started_at_ms, 1_700_000_000_000);
        assert_eq!(ticket.ticket_id, "orders/amount_positive/1700000000000");
    }

    #[test]
    fn a_new_window_can_open_a_new_ticket() {
        let mut tracker = FailureWindow::new(policy());
        let mut tickets = Vec::new();
        for second in [0, 1, 2, 30, 59, 60, 61, 62] {
            tickets.extend(tracker.record_failure("orders", "r", "e", at(second)));
        }
        let starts: Vec<i64> = tickets.iter().map(|t| t.window_started_at_ms).collect();
        assert_eq!(starts, [1_700_000_000_000, 1_700_000_060_000]);
    }

    #[test]
    fn failures_spread_over_windows_do_not_add_up() {
        let mut tracker = FailureWindow::new(policy());
        for second in [0, 1, 100, 101, 200, 201] {
            assert_eq!(tracker.record_failure("orders", "r", "e", at(second)), None);
        }
    }

    #[test]
    fn rules_and_datasets_are_counted_apart() {
        let mut tracker = FailureWindow::new(policy());
        let mut tickets = Vec::new();
        for i in 0..3 {
            tickets.extend(tracker.record_failure("orders", "a", "e", at(i)));
            tickets.extend(tracker.record_failure("orders", "b", "e", at(i)));
            tickets.extend(tracker.record_failure("clicks", "a", "e", at(i)));
        }
        let mut keys: Vec<(String, String)> =
            tickets.into_iter().map(|t| (t.dataset, t.rule)).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                ("clicks".to_owned(), "a".to_owned()),
                ("orders".to_owned(), "a".to_owned()),
                ("orders".to_owned(), "b".to_owned())
            ]
        );
    }

    #[test]
    fn a_clock_stepping_back_stays_in_the_window() {
        let mut tracker = FailureWindow::new(policy());
        assert_eq!(tracker.record_failure("d", "r", "e", at(10)), None);
        assert_eq!(tracker.record_failure("d", "r", "e", at(5)), None);
        assert!(tracker.record_failure("d", "r", "e", at(11)).is_some());
    }

    #[test]
    fn policy_reads_human_durations() {
        let policy: TicketPolicy =
            serde_json::from_str(r#"{"threshold": 5, "window": "10m", "max_samples": 3}"#)
                .expect("policy");
        assert_eq!(policy.window, Duration::from_secs(600));
    }
}
