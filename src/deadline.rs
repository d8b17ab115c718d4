//! Deadlines that saturate: a duration too long to add to "now" means "no deadline", never a
//! panic. `grace_period(Duration::MAX)` and `ready_timeout(Duration::MAX)` mean "as long as it
//! takes" (issue: a guardian that panicked on `Instant + Duration::MAX`).

use std::time::{Duration, Instant};

/// A point in time to wait until, or `never`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// `timeout` from now; `never` when that is past what `Instant` can hold.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// `timeout` after `start`, saturating the same way.
    pub(crate) fn from(start: Instant, timeout: Duration) -> Deadline {
        Deadline(start.checked_add(timeout))
    }

    pub(crate) fn never() -> Deadline {
        Deadline(None)
    }

    /// Time left, `Some(ZERO)` once passed, `None` for never.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    pub(crate) fn passed(&self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }

    /// The shorter of the time left and `cap` (`None`: wait without a limit).
    pub(crate) fn remaining_capped(&self, cap: Option<Duration>) -> Option<Duration> {
        match (self.remaining(), cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `a + b`, saturating at `Duration::MAX`.
pub(crate) fn add(a: Duration, b: Duration) -> Duration {
    a.saturating_add(b)
}

/// Growing poll interval: 0.5 ms at first, ×1.5, capped.
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub(crate) fn new(cap: Duration) -> Backoff {
        Backoff::starting(Duration::from_micros(500), cap)
    }

    pub(crate) fn starting(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            next: first.min(cap),
            cap,
        }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (now * 3 / 2).min(self.cap);
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_mean_never_and_do_not_panic() {
        let d = Deadline::after(Duration::MAX);
        assert_eq!(d, Deadline::never());
        assert_eq!(d.remaining(), None);
        assert!(!d.passed());
        assert_eq!(
            d.remaining_capped(Some(Duration::from_millis(5))),
            Some(Duration::from_millis(5))
        );
        assert_eq!(add(Duration::MAX, Duration::from_secs(1)), Duration::MAX);
    }

    #[test]
    fn zero_timeout_has_passed() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.passed());
    }
}
