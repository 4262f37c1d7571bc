//! The in-flight budget: how many source records and bytes may await acknowledgement.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Counts source records (and their bytes) from the moment they are fetched until all their
/// outputs are acknowledged. Above either limit the service pauses fetching; it resumes once
/// both are at or below half, so it does not flap on every acknowledgement.
#[derive(Debug)]
pub struct InFlightBudget {
    records: AtomicU64,
    bytes: AtomicU64,
    max_records: u64,
    max_bytes: u64,
    below_resume_mark: Notify,
}

impl InFlightBudget {
    pub fn new(max_records: u64, max_bytes: u64) -> Self {
        Self {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
            below_resume_mark: Notify::new(),
        }
    }

    /// Takes one record of `bytes`. Never refuses: the caller checks [`Self::is_exhausted`]
    /// before fetching more, so the overshoot is at most one fetched record.
    pub fn acquire(&self, bytes: u64) {
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn release(&self, records: u64, bytes: u64) {
        let before_records = self.records.fetch_sub(records, Ordering::Relaxed);
        let before_bytes = self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        let records_now = before_records.saturating_sub(records);
        let bytes_now = before_bytes.saturating_sub(bytes);
        if records_now <= self.max_records / 2 && bytes_now <= self.max_bytes / 2 {
            self.below_resume_mark.notify_waiters();
        }
    }

    pub fn is_exhausted(&self) -> bool {
        self.records.load(Ordering::Relaxed) >= self.max_records
            || self.bytes.load(Ordering::Relaxed) >= self.max_bytes
    }

    pub fn may_resume(&self) -> bool {
        self.records.load(Ordering::Relaxed) <= self.max_records / 2
            && self.bytes.load(Ordering::Relaxed) <= self.max_bytes / 2
    }

    pub fn in_flight(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Resolves once usage drops to the resume mark (check [`Self::may_resume`] afterwards:
    /// a wake-up can race with new acquisitions).
    pub async fn resume_mark_reached(&self) {
        let notified = self.below_resume_mark.notified();
        if self.may_resume() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn exhausted_above_either_limit_and_resumes_at_half() {
        let budget = Arc::new(InFlightBudget::new(4, 1000));
        for _ in 0..3 {
            budget.acquire(10);
        }
        assert!(!budget.is_exhausted());
        budget.acquire(10);
        assert!(budget.is_exhausted(), "4 records reach the record limit");
        budget.release(1, 10);
        assert!(!budget.may_resume(), "3 of 4 is above half");

        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.resume_mark_reached().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        budget.release(1, 10);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken at the resume mark")
            .expect("task ran");
        assert!(budget.may_resume());

        let bytes = InFlightBudget::new(100, 1000);
        bytes.acquire(1000);
        assert!(bytes.is_exhausted(), "byte limit alone pauses");
    }
}
