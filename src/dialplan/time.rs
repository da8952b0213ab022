//! Weekly schedules in WIB (UTC+7) for time rules: day sets (`mon-fri`, `sat`) and time ranges
//! (`07:30-16:00`). Pure values: the caller passes the weekday and minute of day, this module
//! never reads the clock.

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
