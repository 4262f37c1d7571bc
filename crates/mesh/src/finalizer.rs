//! The offset tracker and the in-flight budget behind one lock, shared between the consuming
//! task, the sink's delivery thread and the rebalance (or lease-loss) path.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{InFlightBudget, Lane, OffsetTracker, PartitionKey, Position};

/// Shared acknowledgement state. The producer's delivery callback calls
/// [`Finalizer::acknowledge`]; the rebalance callback waits in [`Finalizer::wait_drained`]
/// without the consuming task's help, which is blocked inside the callback.
#[derive(Debug)]
pub struct Finalizer<L = PartitionKey, P = i64> {
    tracker: Mutex<OffsetTracker<L, P>>,
    progress: Condvar,
    budget: InFlightBudget,
}

impl<L: Lane, P: Position> Finalizer<L, P> {
    pub fn new(budget: InFlightBudget) -> Self {
        Self {
            tracker: Mutex::new(OffsetTracker::new()),
            progress: Condvar::new(),
            budget,
        }
    }

    fn tracker(&self) -> MutexGuard<'_, OffsetTracker<L, P>> {
        // A panic while holding the lock leaves consistent counters (every method finishes its
        // update before returning), so a poisoned lock is still usable.
        self.tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn budget(&self) -> &InFlightBudget {
        &self.budget
    }

    pub fn assign(&self, key: L) {
        self.tracker().assign(key);
    }

    pub fn revoke(&self, key: &L) {
        let released = self.tracker().revoke(key);
        if released.records > 0 {
            self.budget.release(released.records, released.bytes);
        }
    }

    /// Registers a fetched source record and the number of outputs it produced.
    pub fn register(&self, key: &L, position: P, outputs: u32, bytes: u64) {
        self.budget.acquire(bytes);
        let completed = {
            let mut tracker = self.tracker();
            tracker.register(key, position, outputs, bytes);
            outputs == 0
        };
        if completed {
            self.budget.release(1, bytes);
        }
    }

    /// One output of `position` was acknowledged by its sink.
    pub fn acknowledge(&self, key: &L, position: &P) {
        let released = self.tracker().acknowledge(key, position);
        if let Some(released) = released {
            self.budget.release(released.records, released.bytes);
            self.progress.notify_all();
        }
    }

    pub fn pending(&self, key: Option<&L>) -> usize {
        self.tracker().pending(key)
    }

    /// Every lane's last finished position that moved since the last call (inclusive).
    pub fn take_committable(&self) -> Vec<(L, P)> {
        self.tracker().take_committable()
    }

    /// Commit points of `keys` that moved, for a commit before they are released.
    pub fn take_committable_for(&self, keys: &[L]) -> Vec<(L, P)> {
        let mut tracker = self.tracker();
        keys.iter()
            .filter_map(|key| {
                tracker
                    .take_committable_for(key)
                    .map(|position| (key.clone(), position))
            })
            .collect()
    }

    pub fn commit_failed(&self, key: &L, position: &P) {
        self.tracker().commit_failed(key, position);
    }

    /// Blocks until no record of `keys` awaits acknowledgement, or `timeout` passes. Returns
    /// whether they drained. Blocking is the point: it runs inside librdkafka's rebalance
    /// callback, which must not return before the revoked partitions are committed.
    pub fn wait_drained(&self, keys: &[L], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut tracker = self.tracker();
        loop {
            if keys.iter().all(|key| tracker.pending(Some(key)) == 0) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tracker = match self.progress.wait_timeout(tracker, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn wait_drained_returns_when_another_thread_acknowledges() {
        let finalizer: Arc<Finalizer> = Arc::new(Finalizer::new(InFlightBudget::new(10, 1000)));
        let key = PartitionKey::new("t", 0);
        finalizer.assign(key.clone());
        finalizer.register(&key, 0, 1, 50);
        assert_eq!(finalizer.budget().in_flight(), (1, 50));
        assert!(!finalizer.wait_drained(std::slice::from_ref(&key), Duration::from_millis(20)));
        let acker = {
            let finalizer = finalizer.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                finalizer.acknowledge(&key, &0);
            })
        };
        assert!(finalizer.wait_drained(std::slice::from_ref(&key), Duration::from_secs(5)));
        acker.join().expect("acker thread");
        assert_eq!(finalizer.budget().in_flight(), (0, 0));
        assert_eq!(
            finalizer.take_committable_for(std::slice::from_ref(&key)),
            vec![(key, 0)]
        );
    }
}
