//! Time, injected: production reads the system clock, tests move a manual one.

use std::cell::Cell;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Offset, Utc};
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

/// UTC quarter-hours: the span over which a thread keeps the last conversion it made.
const QUARTER_HOUR_SECS: i64 = 900;

/// A quarter-hour of UTC as a reporting zone's clock shows it.
#[derive(Debug, Clone, Copy)]
struct Kept {
    zone: Tz,
    /// Unix seconds / 900.
    quarter: i64,
    /// The zone's offset from UTC throughout the quarter-hour, in seconds.
    offset: i64,
    /// The reporting day throughout the quarter-hour.
    day: NaiveDate,
}

thread_local! {
    /// The last quarter-hour a thread converted.
    static LAST: Cell<Option<Kept>> = const { Cell::new(None) };
}

impl ReportingZone {
    /// The reporting day of an instant ("today" when it is now).
    pub fn day(self, now: DateTime<Utc>) -> NaiveDate {
        match self.kept(now) {
            Some(kept) => kept.day,
            None => now.with_timezone(&self.0).date_naive(),
        }
    }

    /// The zone's wall clock at `now`, as the Unix seconds of that date and time in UTC
    /// (for day-parting: the weekday and the minute of the day).
    pub fn wall_clock_secs(self, now: DateTime<Utc>) -> i64 {
        match self.kept(now) {
            Some(kept) => now.timestamp() + kept.offset,
            None => now
                .with_timezone(&self.0)
                .naive_local()
                .and_utc()
                .timestamp(),
        }
    }

    /// What this thread keeps of `now`'s quarter-hour of UTC, converted afresh when it keeps
    /// another one.
    ///
    /// Every decision and every event converts the time, each time a moment close to the
    /// last. Today's offsets from UTC are whole quarter-hours and change at quarter-hours, so
    /// a reporting day starts and ends on a quarter-hour of UTC; a quarter-hour that has two
    /// offsets or two days (historical local mean times) is not kept: `None`.
    fn kept(self, now: DateTime<Utc>) -> Option<Kept> {
        let quarter = now.timestamp().div_euclid(QUARTER_HOUR_SECS);
        if let Some(kept) = LAST.get() {
            if kept.zone == self.0 && kept.quarter == quarter {
                return Some(kept);
            }
        }
        let at = |secs: i64| DateTime::from_timestamp(secs, 0).map(|t| t.with_timezone(&self.0));
        let first = quarter * QUARTER_HOUR_SECS;
        let (start, end) = (at(first)?, at(first + QUARTER_HOUR_SECS - 1)?);
        let offset = start.offset().fix();
        if offset != end.offset().fix() || start.date_naive() != end.date_naive() {
            return None;
        }
        let kept = Kept {
            zone: self.0,
            quarter,
            offset: i64::from(offset.local_minus_utc()),
            day: start.date_naive(),
        };
        LAST.set(Some(kept));
        Some(kept)
    }

    /// Seconds from the start of the reporting day of `now` to `now` (local wall time).
    pub fn seconds_into_day(self, now: DateTime<Utc>) -> i64 {
        self.wall_clock_secs(now).rem_euclid(86_400)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The day and the wall clock each instant of `instants` has in `zone`, asked in that
    /// order of one thread, against the same computed afresh.
    fn check(zone: Tz, instants: impl Iterator<Item = i64>) -> usize {
        let reporting = ReportingZone(zone);
        let mut checked = 0;
        for secs in instants {
            let now = DateTime::from_timestamp(secs, 0).unwrap();
            let local = now.with_timezone(&zone);
            assert_eq!(reporting.day(now), local.date_naive(), "{zone} at {now}");
            assert_eq!(
                reporting.wall_clock_secs(now),
                local.naive_local().and_utc().timestamp(),
                "{zone} at {now}"
            );
            checked += 1;
        }
        checked
    }

    #[test]
    fn the_kept_day_and_clock_are_right_in_every_zone_across_transitions_and_midnights() {
        // Zones with half- and quarter-hour offsets, transitions of half an hour, and
        // transitions at midnight (Brazil went back from 00:00 to 23:00 of the day before).
        let zones = [
            chrono_tz::Europe::Paris,
            chrono_tz::America::Sao_Paulo,
            chrono_tz::Asia::Kathmandu,
            chrono_tz::Pacific::Chatham,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::America::St_Johns,
        ];
        // 2018, every 7 minutes and 13 seconds, so that every second of a quarter-hour comes.
        let year_2018 = (1_514_764_800..1_546_300_800).step_by(433);
        for zone in zones {
            assert!(check(zone, year_2018.clone()) > 70_000);
        }
        // Back and forth across zones and days: a kept day is never another zone's or time's.
        let mut jumps = Vec::new();
        for (i, secs) in year_2018.clone().step_by(997).enumerate() {
            jumps.push(secs);
            jumps.push(secs - 86_400 * (i as i64 % 3));
        }
        for zone in zones.iter().cycle().take(12) {
            check(*zone, jumps.iter().copied());
        }
    }

    #[test]
    fn a_local_mean_time_offset_is_computed_each_time_and_right() {
        // Paris kept its local mean time (UTC+0:09:21) until 1911: its midnight is not on a
        // quarter-hour of UTC. Every second of the quarter-hour around it.
        let midnight =
            chrono::TimeZone::with_ymd_and_hms(&chrono_tz::Europe::Paris, 1900, 6, 1, 0, 0, 0)
                .unwrap()
                .timestamp();
        assert_ne!(midnight % 60, 0, "a midnight off the minute");
        let quarter = midnight.div_euclid(QUARTER_HOUR_SECS) * QUARTER_HOUR_SECS;
        let paris = ReportingZone(chrono_tz::Europe::Paris);
        assert!(paris
            .kept(DateTime::from_timestamp(quarter, 0).unwrap())
            .is_none());
        check(
            chrono_tz::Europe::Paris,
            quarter..quarter + QUARTER_HOUR_SECS,
        );
    }
}
