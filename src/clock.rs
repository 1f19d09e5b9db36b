//! Time, injected: production reads the system clock, tests move a manual one.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use parking_lot::Mutex;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The reporting time zone: its calendar days are the days of counters, daily caps, pacing
/// and stats. "Today" is computed here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportingZone(pub Tz);

impl ReportingZone {
    /// The reporting day of an instant ("today" when it is now).
    pub fn day(self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.0).date_naive()
    }

    /// Seconds from the start of the reporting day of `now` to `now` (local wall time).
    pub fn seconds_into_day(self, now: DateTime<Utc>) -> i64 {
        let local = now.with_timezone(&self.0);
        let midnight = local
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists");
        (local.naive_local() - midnight).num_seconds().max(0)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to, shared between a test and the application.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }

    /// Now, in Unix seconds.
    pub fn now_secs(&self) -> i64 {
        self.now().timestamp()
    }

    /// Puts the clock at `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock() = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock()
    }
}

/// The clock handle the application holds.
pub type SharedClock = Arc<dyn Clock>;
