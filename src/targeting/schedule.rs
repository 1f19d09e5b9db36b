//! Day-parting: a campaign's windows of the week, evaluated in the reporting time zone.
//!
//! A window is a local wall-clock range (`07:00` to `10:00`) opening on some days of the week;
//! `to` is excluded and may be earlier than `from`, for a window that runs across midnight into
//! the next day. Local time is read from the decision's instant through the time zone's rules,
//! so windows follow the wall clock across daylight-saving changes: on the day clocks go
//! forward, a window inside the skipped hour never opens; on the day they go back, the
//! repeated hour is inside a window both times.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use crate::inventory::{Day, ScheduleWindow};

/// Minutes in a day: `24:00`, the latest `to`.
const DAY_MINUTES: u16 = 24 * 60;

/// A moment as the reporting time zone's wall clock shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMoment {
    /// Day of the week, 0 for Monday.
    weekday: u8,
    /// Minutes since local midnight.
    minute: u16,
}

impl LocalMoment {
    /// The wall-clock time of `now` in `timezone`.
    pub fn at(now: DateTime<Utc>, timezone: Tz) -> Self {
        let local = now.with_timezone(&timezone);
        Self {
            weekday: local.weekday().num_days_from_monday() as u8,
            minute: (local.hour() * 60 + local.minute()) as u16,
        }
    }

    /// The moment a wall clock shows, given as the Unix seconds of its date and time read as
    /// UTC (see [`crate::clock::ReportingZone::wall_clock_secs`]).
    pub fn of_wall_clock(secs: i64) -> Self {
        const DAY_SECS: i64 = 86_400;
        // 1 January 1970 was a Thursday: day 3 of a week that starts on Monday.
        let weekday = (secs.div_euclid(DAY_SECS) + 3).rem_euclid(7);
        Self {
            weekday: weekday as u8,
            minute: (secs.rem_euclid(DAY_SECS) / 60) as u16,
        }
    }
}

/// A campaign's schedule, compiled: open when any window is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    windows: Vec<Window>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Bit `d` set when the window opens on weekday `d` (0 = Monday).
    days: u8,
    from: u16,
    to: u16,
}

impl Window {
    fn opens_on(&self, weekday: u8) -> bool {
        self.days & (1 << weekday) != 0
    }

    fn contains(&self, at: LocalMoment) -> bool {
        if self.from < self.to {
            self.opens_on(at.weekday) && (self.from..self.to).contains(&at.minute)
        } else {
            // Across midnight: the evening of an opening day, or the early hours after one.
            let yesterday = (at.weekday + 6) % 7;
            (self.opens_on(at.weekday) && at.minute >= self.from)
                || (self.opens_on(yesterday) && at.minute < self.to)
        }
    }
}

impl Schedule {
    /// Compiles validated windows; `None` when there are none (always open). A window whose
    /// times do not parse (validation reports them) is left out.
    pub fn compile(windows: &[ScheduleWindow]) -> Option<Self> {
        if windows.is_empty() {
            return None;
        }
        let windows = windows
            .iter()
            .filter_map(|w| {
                Some(Window {
                    days: w
                        .days
                        .iter()
                        .fold(0, |mask, day| mask | 1 << day_index(*day)),
                    from: parse_time_of_day(&w.from, false)?,
                    to: parse_time_of_day(&w.to, true)?,
                })
            })
            .collect();
        Some(Self { windows })
    }

    /// Whether the campaign may be served at this moment.
    pub fn is_open(&self, at: LocalMoment) -> bool {
        self.windows.iter().any(|w| w.contains(at))
    }
}

fn day_index(day: Day) -> u8 {
    Day::ALL
        .iter()
        .position(|d| *d == day)
        .expect("every day is listed") as u8
}

/// Parses `HH:MM` (00:00 to 23:59, and `24:00` when `end` is set) into minutes since midnight.
pub fn parse_time_of_day(raw: &str, end: bool) -> Option<u16> {
    let (h, m) = raw.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let minutes = h * 60 + m;
    let valid = m < 60 && (minutes < DAY_MINUTES || (end && minutes == DAY_MINUTES));
    valid.then_some(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_moment_read_off_the_wall_clock_is_the_moment_at_that_instant() {
        // Every 7 min 13 s of 2018, and of days around 1970 and before it.
        let instants = (1_514_764_800..1_546_300_800)
            .step_by(433)
            .chain((-2_000_000..2_000_000).step_by(433));
        for tz in [
            chrono_tz::Europe::Paris,
            chrono_tz::Asia::Kathmandu,
            chrono_tz::UTC,
        ] {
            let zone = crate::clock::ReportingZone(tz);
            for secs in instants.clone() {
                let now = DateTime::from_timestamp(secs, 0).unwrap();
                assert_eq!(
                    LocalMoment::of_wall_clock(zone.wall_clock_secs(now)),
                    LocalMoment::at(now, tz),
                    "{tz} at {now}"
                );
            }
        }
    }

    fn window(days: &[Day], from: &str, to: &str) -> ScheduleWindow {
        ScheduleWindow {
            days: days.to_vec(),
            from: from.into(),
            to: to.into(),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn open_at(schedule: &Schedule, now: DateTime<Utc>, tz: Tz) -> bool {
        schedule.is_open(LocalMoment::at(now, tz))
    }

    #[test]
    fn times_of_day_are_two_digit_hours_and_minutes() {
        assert_eq!(parse_time_of_day("07:30", false), Some(450));
        assert_eq!(parse_time_of_day("00:00", false), Some(0));
        assert_eq!(parse_time_of_day("23:59", false), Some(1439));
        assert_eq!(parse_time_of_day("24:00", true), Some(1440));
        for bad in [
            "24:00", "7:30", "07:60", "25:00", "07-30", "0730", "+7:30", "07:3x", "",
        ] {
            assert_eq!(parse_time_of_day(bad, false), None, "{bad}");
        }
        assert_eq!(parse_time_of_day("24:01", true), None);
    }

    #[test]
    fn a_window_includes_its_start_and_excludes_its_end() {
        let s = Schedule::compile(&[window(&[Day::Mon], "07:00", "10:00")]).unwrap();
        // 2026-11-30 is a Monday.
        assert!(!open_at(&s, utc(2026, 11, 30, 6, 59), Tz::UTC));
        assert!(open_at(&s, utc(2026, 11, 30, 7, 0), Tz::UTC));
        assert!(open_at(&s, utc(2026, 11, 30, 9, 59), Tz::UTC));
        assert!(!open_at(&s, utc(2026, 11, 30, 10, 0), Tz::UTC));
        assert!(!open_at(&s, utc(2026, 12, 1, 8, 0), Tz::UTC), "Tuesday");
    }

    #[test]
    fn a_window_across_midnight_runs_into_the_next_day() {
        let s = Schedule::compile(&[window(&[Day::Fri], "22:00", "02:00")]).unwrap();
        // 2026-11-27 is a Friday.
        assert!(!open_at(&s, utc(2026, 11, 27, 21, 59), Tz::UTC));
        assert!(open_at(&s, utc(2026, 11, 27, 23, 30), Tz::UTC));
        assert!(
            open_at(&s, utc(2026, 11, 28, 1, 59), Tz::UTC),
            "Saturday's early hours"
        );
        assert!(!open_at(&s, utc(2026, 11, 28, 2, 0), Tz::UTC));
        assert!(
            !open_at(&s, utc(2026, 11, 28, 23, 0), Tz::UTC),
            "Saturday evening"
        );
        assert!(
            !open_at(&s, utc(2026, 11, 27, 1, 0), Tz::UTC),
            "Thursday night"
        );
        // Sunday's window runs into Monday: the week wraps.
        let s = Schedule::compile(&[window(&[Day::Sun], "23:00", "01:00")]).unwrap();
        assert!(open_at(&s, utc(2026, 11, 30, 0, 30), Tz::UTC));
    }

    #[test]
    fn a_window_to_midnight_is_written_24_00() {
        let s = Schedule::compile(&[window(&Day::ALL, "18:00", "24:00")]).unwrap();
        assert!(open_at(&s, utc(2026, 11, 30, 23, 59), Tz::UTC));
        assert!(!open_at(&s, utc(2026, 12, 1, 0, 0), Tz::UTC));
    }

    #[test]
    fn windows_follow_the_wall_clock_when_clocks_go_forward() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // Sunday 2026-03-29: at 01:00 UTC, 02:00 CET becomes 03:00 CEST.
        let s = Schedule::compile(&[window(&[Day::Sat, Day::Sun], "07:00", "10:00")]).unwrap();
        // Saturday, winter time (UTC+1): 07:00 local is 06:00 UTC.
        assert!(!open_at(&s, utc(2026, 3, 28, 5, 59), paris));
        assert!(open_at(&s, utc(2026, 3, 28, 6, 0), paris));
        assert!(!open_at(&s, utc(2026, 3, 28, 9, 0), paris));
        // Sunday, summer time (UTC+2): 07:00 local is 05:00 UTC.
        assert!(!open_at(&s, utc(2026, 3, 29, 4, 59), paris));
        assert!(open_at(&s, utc(2026, 3, 29, 5, 0), paris));
        assert!(open_at(&s, utc(2026, 3, 29, 7, 59), paris));
        assert!(!open_at(&s, utc(2026, 3, 29, 8, 0), paris));
        // A window inside the skipped hour never opens that night.
        let skipped = Schedule::compile(&[window(&[Day::Sun], "02:15", "02:45")]).unwrap();
        for minute in 0..180 {
            let now = utc(2026, 3, 28, 23, 0) + chrono::Duration::minutes(minute);
            assert!(!open_at(&skipped, now, paris), "{now}");
        }
    }

    #[test]
    fn windows_follow_the_wall_clock_when_clocks_go_back() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // Sunday 2026-10-25: at 01:00 UTC, 03:00 CEST becomes 02:00 CET.
        let s = Schedule::compile(&[window(&[Day::Sat, Day::Sun], "07:00", "10:00")]).unwrap();
        // Saturday, summer time (UTC+2).
        assert!(open_at(&s, utc(2026, 10, 24, 5, 0), paris));
        assert!(!open_at(&s, utc(2026, 10, 24, 8, 0), paris));
        // Sunday, winter time (UTC+1): 07:00 local is 06:00 UTC.
        assert!(!open_at(&s, utc(2026, 10, 25, 5, 30), paris));
        assert!(open_at(&s, utc(2026, 10, 25, 6, 0), paris));
        assert!(open_at(&s, utc(2026, 10, 25, 8, 59), paris));
        assert!(!open_at(&s, utc(2026, 10, 25, 9, 0), paris));
        // The repeated hour is inside a window both times it is lived.
        let repeated = Schedule::compile(&[window(&[Day::Sun], "02:00", "03:00")]).unwrap();
        assert!(
            open_at(&repeated, utc(2026, 10, 25, 0, 30), paris),
            "02:30 CEST"
        );
        assert!(
            open_at(&repeated, utc(2026, 10, 25, 1, 30), paris),
            "02:30 CET"
        );
        assert!(
            !open_at(&repeated, utc(2026, 10, 25, 2, 0), paris),
            "03:00 CET"
        );
    }

    #[test]
    fn no_window_means_no_schedule() {
        assert_eq!(Schedule::compile(&[]), None);
    }
}
