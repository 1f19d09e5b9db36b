//! The store's circuit breaker on the request path (contract section 9): a public request
//! never waits on a slow or unreachable store for more than its budget (50 ms by default).
//!
//! A request-path call that fails to reach the store, or gets no answer within the budget,
//! opens the breaker. While it is open, request-path calls fail at once without touching the
//! store, so what needs the store (frequency caps) is skipped and everything else is served
//! from memory; one background probe pings the store until it answers, then closes it. The
//! outage is logged when the breaker opens and when it closes, never per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether request-path calls may reach the store, and how long they may take.
#[derive(Debug)]
pub struct Breaker {
    open: AtomicBool,
    budget: Duration,
}

impl Breaker {
    /// A closed breaker whose calls get `budget` each.
    pub fn new(budget: Duration) -> Self {
        Self {
            open: AtomicBool::new(false),
            budget,
        }
    }

    /// The longest a request-path call may wait for the store.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Whether request-path calls are being skipped.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Opens the breaker; true for the caller that opened it, which starts the probe.
    pub fn trip(&self) -> bool {
        !self.open.swap(true, Ordering::AcqRel)
    }

    /// Closes the breaker; true when it was open.
    pub fn reset(&self) -> bool {
        self.open.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_trip_of_an_outage_starts_a_probe() {
        let breaker = Breaker::new(Duration::from_millis(50));
        assert!(!breaker.is_open());

        assert!(breaker.trip());
        assert!(!breaker.trip(), "a second failure during the outage");
        assert!(breaker.is_open());

        assert!(breaker.reset());
        assert!(!breaker.is_open());
        assert!(!breaker.reset());
        assert!(breaker.trip(), "a new outage");
    }
}
