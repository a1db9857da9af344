//! Graph time ("peer time"): FILETIME units, 100 ns ticks since 1601-01-01 UTC.
//!
//! The core never reads a clock: drivers pass the current graph time in. This file holds
//! the conversions from and to [`SystemTime`] and the text form attribute and search
//! values of type `date` use.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::result::PeerError;

/// 100 ns ticks in one second.
const TICKS_PER_SECOND: u64 = 10_000_000;
/// Ticks from 1601-01-01 (FILETIME's epoch) to 1970-01-01 (the Unix epoch).
const UNIX_EPOCH_TICKS: u64 = 116_444_736_000_000_000;
/// Days from 1601-01-01 to 1970-01-01.
const UNIX_EPOCH_DAYS: i64 = 134_774;
/// Seconds in a day.
const SECONDS_PER_DAY: i64 = 86_400;
/// The latest year a `date` text may name. FILETIME reaches year 30828; 9999 is the last
/// year with four digits, which is all the text form has.
const MAX_YEAR: i64 = 9999;
/// The earliest year a `date` text may name: FILETIME starts in 1601.
const MIN_YEAR: i64 = 1601;
/// Digits of a fraction of a second that carry meaning: a tick is 10^-7 s.
const FRACTION_DIGITS: usize = 7;

/// A point in graph time: 100 ns ticks since 1601-01-01 00:00 UTC (FILETIME).
///
/// Every node of a graph agrees on graph time closely enough to order record changes;
/// it is UTC when the graph is created and then adjusted from neighbors, so it can step
/// back slightly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct GraphTime(u64);

impl GraphTime {
    /// The FILETIME epoch, 1601-01-01 00:00 UTC.
    pub const ZERO: GraphTime = GraphTime(0);
    /// The latest representable time.
    pub const MAX: GraphTime = GraphTime(u64::MAX);
    /// The latest time the `date` text form can write: 9999-12-31T23:59:59.9999999Z
    /// (10000-01-01 is 3,067,671 days after 1601-01-01). Attribute values stop here so
    /// that every one prints as text [`GraphTime::parse_date`] reads back.
    pub const MAX_DATE: GraphTime = GraphTime(3_067_671 * 86_400 * TICKS_PER_SECOND - 1);

    /// The time `ticks` 100 ns units after 1601-01-01 UTC.
    pub const fn from_ticks(ticks: u64) -> Self {
        GraphTime(ticks)
    }

    /// 100 ns ticks since 1601-01-01 UTC.
    pub const fn ticks(self) -> u64 {
        self.0
    }

    /// The graph time of `time` (`UniversalTimeToPeerTime` with no offset).
    ///
    /// # Errors
    /// `E_INVALIDARG` when `time` is before 1601 or past the last FILETIME.
    pub fn from_system_time(time: SystemTime) -> Result<Self, PeerError> {
        let ticks = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => duration_ticks(after).and_then(|t| t.checked_add(UNIX_EPOCH_TICKS)),
            Err(before) => {
                duration_ticks(before.duration()).and_then(|t| UNIX_EPOCH_TICKS.checked_sub(t))
            }
        };
        ticks.map(GraphTime).ok_or(PeerError::INVALID_ARG)
    }

    /// The [`SystemTime`] of this graph time (`PeerTimeToUniversalTime` with no offset).
    ///
    /// # Errors
    /// `E_INVALIDARG` when the platform's `SystemTime` cannot hold it.
    pub fn to_system_time(self) -> Result<SystemTime, PeerError> {
        let result = if self.0 >= UNIX_EPOCH_TICKS {
            UNIX_EPOCH.checked_add(ticks_duration(self.0 - UNIX_EPOCH_TICKS))
        } else {
            UNIX_EPOCH.checked_sub(ticks_duration(UNIX_EPOCH_TICKS - self.0))
        };
        result.ok_or(PeerError::INVALID_ARG)
    }

    /// This time plus `duration`, saturating at [`GraphTime::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Self {
        GraphTime(
            self.0
                .saturating_add(duration_ticks(duration).unwrap_or(u64::MAX)),
        )
    }

    /// The time from `earlier` to this one, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: GraphTime) -> Duration {
        ticks_duration(self.0.saturating_sub(earlier.0))
    }

    /// Parses the text form of a `date` value: `YYYY-MM-DDThh:mm:ss`, optionally with a
    /// fraction of a second (up to 7 digits count, more are cut) and a zone (`Z` or
    /// `+hh:mm` / `-hh:mm`; none means UTC), as in XML Schema's `dateTime`.
    ///
    /// Returns `None` for anything else, including dates before 1601.
    pub fn parse_date(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        // ASCII only, so that every slice below falls on a character boundary.
        if !text.is_ascii()
            || bytes.len() < 19
            || bytes[4] != b'-'
            || bytes[7] != b'-'
            || bytes[10] != b'T'
        {
            return None;
        }
        if bytes[13] != b':' || bytes[16] != b':' {
            return None;
        }
        let year = digits(&text[0..4])?;
        let month = digits(&text[5..7])?;
        let day = digits(&text[8..10])?;
        let hour = digits(&text[11..13])?;
        let minute = digits(&text[14..16])?;
        let second = digits(&text[17..19])?;
        if !(MIN_YEAR..=MAX_YEAR).contains(&year)
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let mut rest = &text[19..];
        let mut fraction_ticks = 0i64;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            if end == 0 {
                return None;
            }
            let kept = &after_dot[..end.min(FRACTION_DIGITS)];
            fraction_ticks = digits(kept)? * 10i64.pow((FRACTION_DIGITS - kept.len()) as u32);
            rest = &after_dot[end..];
        }
        let offset_seconds = match rest {
            "" | "Z" => 0,
            zone if zone.len() == 6 && zone.as_bytes()[3] == b':' => {
                let sign = match zone.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let hours = digits(&zone[1..3])?;
                let minutes = digits(&zone[4..6])?;
                if hours > 14 || minutes > 59 {
                    return None;
                }
                sign * (hours * 3600 + minutes * 60)
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day) + UNIX_EPOCH_DAYS;
        let seconds = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset_seconds;
        let ticks = seconds
            .checked_mul(TICKS_PER_SECOND as i64)?
            .checked_add(fraction_ticks)?;
        u64::try_from(ticks).ok().map(GraphTime)
    }
}

/// The text form [`GraphTime::parse_date`] reads: UTC, seven fraction digits, `Z`.
impl fmt::Display for GraphTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ticks = self.0;
        let seconds = (ticks / TICKS_PER_SECOND) as i64;
        let fraction = ticks % TICKS_PER_SECOND;
        let days = seconds.div_euclid(SECONDS_PER_DAY);
        let of_day = seconds.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days - UNIX_EPOCH_DAYS);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:07}Z",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )
    }
}

impl fmt::Debug for GraphTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GraphTime({self})")
    }
}

fn duration_ticks(duration: Duration) -> Option<u64> {
    let ticks = duration.as_nanos() / 100;
    u64::try_from(ticks).ok()
}

fn ticks_duration(ticks: u64) -> Duration {
    Duration::new(
        ticks / TICKS_PER_SECOND,
        // The remainder is below 10^7, so times 100 it is below 10^9 and fits a u32.
        (ticks % TICKS_PER_SECOND * 100) as u32,
    )
}

/// A run of ASCII digits as a number; `None` for anything else or an empty run.
fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_epoch_is_the_documented_filetime() {
        let epoch = GraphTime::from_system_time(UNIX_EPOCH).expect("representable");
        assert_eq!(epoch.ticks(), 116_444_736_000_000_000);
        assert_eq!(epoch.to_string(), "1970-01-01T00:00:00.0000000Z");
        assert_eq!(epoch.to_system_time(), Ok(UNIX_EPOCH));
    }

    #[test]
    fn system_time_round_trips_at_tick_precision() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_700);
        let graph_time = GraphTime::from_system_time(time).expect("representable");
        assert_eq!(graph_time.to_system_time(), Ok(time));
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        let graph_time = GraphTime::from_system_time(before).expect("after 1601");
        assert_eq!(graph_time.to_string(), "1969-12-31T00:00:00.0000000Z");
        assert_eq!(graph_time.to_system_time(), Ok(before));
        let too_early = UNIX_EPOCH - Duration::from_secs(400 * 366 * 86_400);
        assert_eq!(
            GraphTime::from_system_time(too_early),
            Err(PeerError::INVALID_ARG)
        );
    }

    #[test]
    fn dates_parse_and_print() {
        let time = GraphTime::parse_date("2003-01-31T08:00:00.5-07:00").expect("valid");
        assert_eq!(time.to_string(), "2003-01-31T15:00:00.5000000Z");
        assert_eq!(GraphTime::parse_date(&time.to_string()), Some(time));
        assert_eq!(
            GraphTime::parse_date("1601-01-01T00:00:00Z"),
            Some(GraphTime::ZERO)
        );
        assert_eq!(
            GraphTime::parse_date("2024-02-29T23:59:59"),
            GraphTime::parse_date("2024-02-29T23:59:59Z")
        );
        assert!(GraphTime::parse_date("2024-02-29T23:59:59.123456789Z").is_some());
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-01-01 00:00:00Z",
            "2023-01-01T24:00:00Z",
            "2023-01-01T00:00:00.Z",
            "2023-01-01T00:00:00+0100",
            "2023-01-01T00:00:00+15:00",
            "1600-12-31T23:59:59Z",
            "1601-01-01T00:00:00+01:00",
            "+023-01-01T00:00:00Z",
            "2023-01-01T00:00:00ZZ",
            "2023-01-01T00:00:0é",
        ] {
            assert_eq!(GraphTime::parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_last_date_prints_and_parses() {
        assert_eq!(
            GraphTime::MAX_DATE.to_string(),
            "9999-12-31T23:59:59.9999999Z"
        );
        assert_eq!(
            GraphTime::parse_date("9999-12-31T23:59:59.9999999Z"),
            Some(GraphTime::MAX_DATE)
        );
        let after = GraphTime::from_ticks(GraphTime::MAX_DATE.ticks() + 1);
        assert_eq!(GraphTime::parse_date(&after.to_string()), None);
    }

    #[test]
    fn civil_conversion_round_trips() {
        for days in (-200_000..200_000).step_by(997) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }

    #[test]
    fn arithmetic_saturates() {
        let time = GraphTime::from_ticks(10);
        assert_eq!(time.saturating_add(Duration::from_micros(1)).ticks(), 20);
        assert_eq!(
            GraphTime::MAX.saturating_add(Duration::from_secs(1)),
            GraphTime::MAX
        );
        assert_eq!(
            time.saturating_since(GraphTime::from_ticks(20)),
            Duration::ZERO
        );
        assert_eq!(
            GraphTime::from_ticks(30).saturating_since(time),
            Duration::from_micros(2)
        );
    }
}
