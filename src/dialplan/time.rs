//! Weekly schedules in WIB (UTC+7) for time rules: day sets (`mon-fri`, `sat`) and time ranges
//! (`07:30-16:00`), and the conversion between Unix seconds and the WIB calendar. Pure values:
//! the caller passes the time, this module never reads the clock.

use std::fmt;

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    fn parse(s: &str) -> Option<Weekday> {
        let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .position(|d| d.eq_ignore_ascii_case(s))?;
        Some(Weekday::ALL[i])
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][*self as usize])
    }
}

/// WIB (Western Indonesia Time) is UTC+7 all year (no daylight saving).
pub const WIB_OFFSET_SECS: i64 = 7 * 3600;

/// A moment as read on a WIB clock, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WibTime {
    pub year: i64,
    pub month: u8,
    pub day: u8,
    pub weekday: Weekday,
    /// Minutes after midnight WIB, 0..1440.
    pub minute_of_day: u16,
}

impl WibTime {
    /// The WIB calendar date and time of Unix second `unix`.
    pub fn from_unix(unix: i64) -> WibTime {
        let local = unix + WIB_OFFSET_SECS;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        // 1970-01-01 was a Thursday.
        let weekday = Weekday::ALL[(days + 3).rem_euclid(7) as usize];
        WibTime {
            year,
            month,
            day,
            weekday,
            // Holds: secs < 86 400, so the minute is < 1440.
            minute_of_day: (secs / 60) as u16,
        }
    }

    /// The Unix second at which a WIB clock shows `year-month-day hour:minute`, or `None` for
    /// an impossible date or time.
    pub fn to_unix(year: i64, month: u8, day: u8, hour: u8, minute: u8) -> Option<i64> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 - WIB_OFFSET_SECS)
    }
}

impl fmt::Display for WibTime {
    /// `Mon 2025-03-03 09:00 WIB`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04}-{:02}-{:02} {:02}:{:02} WIB",
            self.weekday,
            self.year,
            self.month,
            self.day,
            self.minute_of_day / 60,
            self.minute_of_day % 60
        )
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(crate) fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A set of weekdays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Days(u8);

impl Days {
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day as u8) != 0
    }

    /// Parses `mon`, `mon-fri` or `sat-sun` (a range may not wrap past Sunday).
    pub fn parse(s: &str) -> Result<Days, String> {
        let bad = || format!("'{s}' is not a day or day range (e.g. 'mon', 'mon-fri')");
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (
                Weekday::parse(a.trim()).ok_or_else(bad)?,
                Weekday::parse(b.trim()).ok_or_else(bad)?,
            ),
            None => {
                let d = Weekday::parse(s.trim()).ok_or_else(bad)?;
                (d, d)
            }
        };
        if hi < lo {
            return Err(format!(
                "day range '{s}' runs backwards (write e.g. 'sat-sun')"
            ));
        }
        Ok(Days((lo as u8..=hi as u8).fold(0, |acc, d| acc | 1 << d)))
    }

    pub fn union(self, other: Days) -> Days {
        Days(self.0 | other.0)
    }
}

/// A time range within one day, `[start, end)` in minutes after midnight WIB; `end` may be
/// 24:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub start: u16,
    pub end: u16,
}

impl Hours {
    pub fn contains(self, minute_of_day: u16) -> bool {
        (self.start..self.end).contains(&minute_of_day)
    }

    /// Parses `HH:MM-HH:MM` with start before end (split ranges that cross midnight in two).
    pub fn parse(s: &str) -> Result<Hours, String> {
        let bad = || format!("'{s}' is not a time range (e.g. '07:30-16:00')");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = parse_clock(a.trim()).ok_or_else(bad)?;
        let end = parse_clock(b.trim()).ok_or_else(bad)?;
        if start >= end {
            return Err(format!(
                "time range '{s}' is empty or crosses midnight (split it, e.g. '22:00-24:00' and '00:00-06:00')"
            ));
        }
        Ok(Hours { start, end })
    }
}

fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// One line of a schedule: on these days, during these hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub days: Days,
    pub hours: Vec<Hours>,
}

/// A named weekly schedule (e.g. `office-hours`), in WIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    pub periods: Vec<Period>,
    /// Line of the schedule's `name` in its file.
    pub line: usize,
}

impl Schedule {
    /// Whether the instant given as a WIB weekday and minute of day falls in the schedule.
    pub fn covers(&self, day: Weekday, minute_of_day: u16) -> bool {
        self.periods
            .iter()
            .any(|p| p.days.contains(day) && p.hours.iter().any(|h| h.contains(minute_of_day)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_hours() {
        let d = Days::parse("mon-thu").unwrap();
        assert!(d.contains(Weekday::Mon) && d.contains(Weekday::Thu));
        assert!(!d.contains(Weekday::Fri));
        assert!(Days::parse("fri-mon").is_err());
        assert!(Days::parse("monday").is_err());
        let h = Hours::parse("07:30-16:00").unwrap();
        assert!(h.contains(7 * 60 + 30) && !h.contains(16 * 60));
        assert_eq!(h.to_string(), "07:30-16:00");
        assert!(Hours::parse("16:00-07:30").is_err());
        assert!(Hours::parse("7:3-8:00").is_err());
        assert!(Hours::parse("22:00-24:00").is_ok());
        assert!(Hours::parse("24:30-24:40").is_err());
    }

    #[test]
    fn wib_calendar() {
        // 2025-03-03 02:00 UTC is Monday 09:00 WIB.
        let t = WibTime::from_unix(1_740_967_200);
        assert_eq!(t.to_string(), "Mon 2025-03-03 09:00 WIB");
        assert_eq!(WibTime::to_unix(2025, 3, 3, 9, 0), Some(1_740_967_200));
        // The WIB date changes at 17:00 UTC.
        let t = WibTime::from_unix(0);
        assert_eq!(t.to_string(), "Thu 1970-01-01 07:00 WIB");
        assert_eq!(
            WibTime::from_unix(-1).to_string(),
            "Thu 1970-01-01 06:59 WIB"
        );
        assert_eq!(
            WibTime::to_unix(2024, 2, 29, 23, 59)
                .map(WibTime::from_unix)
                .unwrap()
                .to_string(),
            "Thu 2024-02-29 23:59 WIB"
        );
        assert_eq!(WibTime::to_unix(2025, 2, 29, 0, 0), None);
        assert_eq!(WibTime::to_unix(2025, 13, 1, 0, 0), None);
        assert_eq!(WibTime::to_unix(2025, 1, 1, 24, 0), None);
        for unix in (-100_000_000..4_000_000_000i64).step_by(86_399 * 37) {
            let t = WibTime::from_unix(unix);
            let back = WibTime::to_unix(
                t.year,
                t.month,
                t.day,
                (t.minute_of_day / 60) as u8,
                (t.minute_of_day % 60) as u8,
            );
            assert_eq!(back, Some(unix - unix.rem_euclid(60)), "{t}");
        }
    }

    #[test]
    fn schedule_covers() {
        let s = Schedule {
            name: "office-hours".into(),
            periods: vec![Period {
                days: Days::parse("mon-fri").unwrap(),
                hours: vec![Hours::parse("07:30-16:00").unwrap()],
            }],
            line: 1,
        };
        assert!(s.covers(Weekday::Wed, 9 * 60));
        assert!(!s.covers(Weekday::Sat, 9 * 60));
        assert!(!s.covers(Weekday::Wed, 17 * 60));
    }
}
