//! Times as the operator reads and types them: WIB (Western Indonesia Time, UTC+7, no
//! daylight saving). Parses `--since`/`--until` values and formats Unix milliseconds. The
//! current time is passed in, never read here.

use std::fmt;
use std::str::FromStr;

use crate::dialplan::time;

/// WIB's offset from UTC, in milliseconds (the calendar arithmetic is the dialplan's).
const WIB_OFFSET_MS: i64 = time::WIB_OFFSET_SECS * 1000;
const DAY_MS: i64 = 86_400_000;

/// A `--since`/`--until` value: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM` (WIB; `T` may replace the
/// space, `:SS` may follow), or a span back from now: `24h`, `7d`, `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeArg {
    /// A whole day in WIB; holds the Unix ms of its midnight.
    Day(i64),
    /// An instant, Unix ms.
    At(i64),
    /// This many milliseconds before now.
    Ago(i64),
}

impl TimeArg {
    /// As the start of a range (inclusive): a day starts at its midnight.
    pub(super) fn since_ms(self, now_ms: i64) -> i64 {
        match self {
            TimeArg::Day(ms) | TimeArg::At(ms) => ms,
            TimeArg::Ago(span) => now_ms - span,
        }
    }

    /// As the end of a range (exclusive): a day ends at the next midnight, so
    /// `--until 2026-03-02` includes the whole of 2 March.
    pub(super) fn until_ms(self, now_ms: i64) -> i64 {
        match self {
            TimeArg::Day(ms) => ms + DAY_MS,
            TimeArg::At(ms) => ms,
            TimeArg::Ago(span) => now_ms - span,
        }
    }
}

/// A value that is not a [`TimeArg`]; the message names the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadTime(String);

impl fmt::Display for BadTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a time: use YYYY-MM-DD or 'YYYY-MM-DD HH:MM' (WIB), or 24h / 7d / 2w \
             back from now",
            self.0
        )
    }
}

impl std::error::Error for BadTime {}

impl FromStr for TimeArg {
    type Err = BadTime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadTime(s.to_owned());
        let t = s.trim();
        if let Some(unit_ms) = t.chars().last().and_then(|u| match u.to_ascii_lowercase() {
            'h' => Some(3_600_000),
            'd' => Some(DAY_MS),
            'w' => Some(7 * DAY_MS),
            _ => None,
        }) {
            let n: i64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
            if !(0..=100_000).contains(&n) {
                return Err(bad());
            }
            return Ok(TimeArg::Ago(n * unit_ms));
        }
        let (date, time) = match t.split_once([' ', 'T']) {
            Some((d, tm)) => (d, Some(tm.trim())),
            None => (t, None),
        };
        let midnight = parse_date(date).ok_or_else(bad)?;
        match time {
            None => Ok(TimeArg::Day(midnight)),
            Some(tm) => Ok(TimeArg::At(midnight + parse_clock(tm).ok_or_else(bad)?)),
        }
    }
}

/// `YYYY-MM-DD` as the Unix ms of its midnight in WIB.
fn parse_date(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u8, u8) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d < 1 || d > time::days_in_month(y, m) {
        return None;
    }
    Some(time::days_from_civil(y, m, d) * DAY_MS - WIB_OFFSET_MS)
}

/// `HH:MM` or `HH:MM:SS` as ms after midnight.
fn parse_clock(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let num = |p: &str| p.parse::<i64>().ok();
    let (h, m) = (num(parts[0])?, num(parts[1])?);
    let sec = parts.get(2).map_or(Some(0), |p| num(p))?;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(((h * 60 + m) * 60 + sec) * 1000)
}

/// The civil date of a day count since 1970-01-01, as (year, month, day).
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let (y, m, d) = time::civil_from_days(days);
    (y, i64::from(m), i64::from(d))
}

/// Unix ms as WIB date and time of day (h, m, s).
fn wib_parts(ms: i64) -> ((i64, i64, i64), (i64, i64, i64)) {
    let local = ms.div_euclid(1000) + WIB_OFFSET_MS / 1000;
    let secs = local.rem_euclid(86_400);
    (
        civil_from_days(local.div_euclid(86_400)),
        (secs / 3600, secs % 3600 / 60, secs % 60),
    )
}

/// Unix ms as `2026-03-02 08:15:03` (WIB), for tables.
pub(super) fn wib(ms: i64) -> String {
    let ((y, mo, d), (h, mi, s)) = wib_parts(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// Unix ms as ISO 8601 in WIB: `2026-03-02T08:15:03+07:00`, for CSV and JSON.
pub(super) fn wib_iso(ms: i64) -> String {
    let ((y, mo, d), (h, mi, s)) = wib_parts(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+07:00")
}

/// Milliseconds as `m:ss` (whole seconds, rounded down): `0:00`, `1:05`, `75:00`.
pub(super) fn minutes_seconds(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// The current time as Unix ms (the one place the CLI reads the clock for times).
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-02 00:00 WIB = 2026-03-01 17:00 UTC.
    const MAR2_WIB: i64 = 1_772_384_400_000;

    #[test]
    fn dates_and_times_are_wib() {
        assert_eq!("2026-03-02".parse(), Ok(TimeArg::Day(MAR2_WIB)));
        let at = TimeArg::At(MAR2_WIB + (8 * 60 + 15) * 60_000);
        assert_eq!("2026-03-02 08:15".parse(), Ok(at));
        assert_eq!("2026-03-02T08:15".parse(), Ok(at));
        assert_eq!(
            "2026-03-02 08:15:30".parse(),
            Ok(TimeArg::At(MAR2_WIB + (8 * 60 + 15) * 60_000 + 30_000))
        );
        assert_eq!("1970-01-01".parse(), Ok(TimeArg::Day(-WIB_OFFSET_MS)));
        assert_eq!(
            "2024-02-29".parse::<TimeArg>().map(|t| t.since_ms(0)),
            Ok(1_709_139_600_000)
        );
    }

    #[test]
    fn relative_spans() {
        assert_eq!("24h".parse(), Ok(TimeArg::Ago(DAY_MS)));
        assert_eq!("7d".parse(), Ok(TimeArg::Ago(7 * DAY_MS)));
        assert_eq!("2w".parse(), Ok(TimeArg::Ago(14 * DAY_MS)));
        assert_eq!(TimeArg::Ago(DAY_MS).since_ms(10 * DAY_MS), 9 * DAY_MS);
        assert_eq!(TimeArg::Ago(DAY_MS).until_ms(10 * DAY_MS), 9 * DAY_MS);
    }

    #[test]
    fn a_day_until_includes_the_whole_day() {
        let day = TimeArg::Day(MAR2_WIB);
        assert_eq!(day.since_ms(0), MAR2_WIB);
        assert_eq!(day.until_ms(0), MAR2_WIB + DAY_MS);
        assert_eq!(TimeArg::At(5).until_ms(0), 5);
    }

    #[test]
    fn bad_times_name_the_forms() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-3-2",
            "2026-03-02 24:00",
            "2026-03-02 8:15",
            "h",
            "-1d",
            "1.5h",
        ] {
            let err = bad.parse::<TimeArg>().unwrap_err();
            assert!(err.to_string().contains("YYYY-MM-DD"), "{bad}: {err}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(wib(MAR2_WIB), "2026-03-02 00:00:00");
        assert_eq!(wib(MAR2_WIB - 1), "2026-03-01 23:59:59");
        assert_eq!(
            wib_iso(MAR2_WIB + 8 * 3_600_000),
            "2026-03-02T08:00:00+07:00"
        );
        assert_eq!(wib_iso(0), "1970-01-01T07:00:00+07:00");
        assert_eq!(minutes_seconds(0), "0:00");
        assert_eq!(minutes_seconds(65_999), "1:05");
        assert_eq!(minutes_seconds(4_500_000), "75:00");
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_513, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(time::days_from_civil(y, m as u8, d as u8), days);
        }
    }
}
