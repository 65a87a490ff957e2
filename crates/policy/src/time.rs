//! Instants and durations: RFC 3339 parsing and formatting, civil-date
//! arithmetic and `90s`/`2h30m` durations, with no clock and no zone database.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant, as seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

/// Why a timestamp or a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeError {
    /// Not of the form `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
    Syntax,
    /// Well-formed, but without `Z` or an offset.
    NoZone,
    /// A field out of range (month 13, 31 April, hour 24, ...).
    Range,
    /// Not a duration such as `90s`, `15m`, `2h30m`, `1d`.
    Duration,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeError::Syntax => {
                "not an RFC 3339 time (expected e.g. 2026-11-21T10:00:00Z or 2026-11-21T11:00:00+01:00)"
            }
            TimeError::NoZone => {
                "time has no zone: add Z (UTC) or an offset such as +01:00 (e.g. 2026-11-21T10:00:00Z)"
            }
            TimeError::Range => "time has a field out of range",
            TimeError::Duration => {
                "not a duration (expected a number and a unit, e.g. 90s, 15m, 2h30m, 1d)"
            }
        })
    }
}

impl std::error::Error for TimeError {}

/// Broken-down UTC (or local) calendar time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    /// `YYYYMMDDHHMMSS`, the form of sshd's `expiry-time` option.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

const SECS_PER_DAY: i64 = 86_400;
/// 9999-12-31T23:59:59Z: RFC 3339 has four-digit years.
const MAX_SECS: i64 = 253_402_300_799;
/// 0000-01-01T00:00:00Z.
const MIN_SECS: i64 = -62_167_219_200;

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// An instant from Unix seconds and nanoseconds (`nanos` is clamped below 1e9).
    pub const fn from_unix(secs: i64, nanos: u32) -> Self {
        let nanos = if nanos > 999_999_999 {
            999_999_999
        } else {
            nanos
        };
        Timestamp { secs, nanos }
    }

    /// The system clock, now. Before the epoch counts as the epoch.
    pub fn now() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(_) => Timestamp::UNIX_EPOCH,
        }
    }

    pub fn unix_seconds(self) -> i64 {
        self.secs
    }

    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// `self + d`, saturating at the largest representable RFC 3339 time.
    pub fn saturating_add(self, d: Duration) -> Self {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let mut nanos = self.nanos + d.subsec_nanos();
        let mut carry = 0;
        if nanos >= 1_000_000_000 {
            nanos -= 1_000_000_000;
            carry = 1;
        }
        let secs = self.secs.saturating_add(secs).saturating_add(carry);
        if secs > MAX_SECS {
            Timestamp {
                secs: MAX_SECS,
                nanos: 0,
            }
        } else {
            Timestamp { secs, nanos }
        }
    }

    /// `self - d`, saturating at year 0.
    pub fn saturating_sub(self, d: Duration) -> Self {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let (mut s, mut n) = (self.secs.saturating_sub(secs), self.nanos);
        if n < d.subsec_nanos() {
            n += 1_000_000_000;
            s = s.saturating_sub(1);
        }
        n -= d.subsec_nanos();
        if s < MIN_SECS {
            Timestamp {
                secs: MIN_SECS,
                nanos: 0,
            }
        } else {
            Timestamp { secs: s, nanos: n }
        }
    }

    /// How long from `self` until `later`; zero when `later` is not later.
    pub fn until(self, later: Timestamp) -> Duration {
        if later <= self {
            return Duration::ZERO;
        }
        let (mut s, mut n) = (later.secs - self.secs, later.nanos);
        if n < self.nanos {
            n += 1_000_000_000;
            s -= 1;
        }
        Duration::new(u64::try_from(s).unwrap_or(0), n - self.nanos)
    }

    /// Parses an RFC 3339 date-time (`T` or `t` between date and time, `Z`,
    /// `z` or a numeric offset required, fractions of a second allowed).
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeError> {
        let b = s.as_bytes();
        if b.len() < 19 || b.len() > 40 {
            return Err(TimeError::Syntax);
        }
        let year = digits(b, 0, 4)?;
        expect(b, 4, b'-')?;
        let month = digits(b, 5, 2)?;
        expect(b, 7, b'-')?;
        let day = digits(b, 8, 2)?;
        if b[10] != b'T' && b[10] != b't' {
            return Err(TimeError::Syntax);
        }
        let hour = digits(b, 11, 2)?;
        expect(b, 13, b':')?;
        let minute = digits(b, 14, 2)?;
        expect(b, 16, b':')?;
        let second = digits(b, 17, 2)?;
        let mut i = 19;
        let mut nanos: u32 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            let mut scale = 100_000_000u32;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start >= 9 {
                    return Err(TimeError::Syntax);
                }
                nanos += u32::from(b[i] - b'0') * scale;
                scale /= 10;
                i += 1;
            }
            if i == start {
                return Err(TimeError::Syntax);
            }
        }
        let offset_secs: i64 = match b.get(i) {
            None => return Err(TimeError::NoZone),
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
                let oh = digits(b, i + 1, 2)?;
                expect(b, i + 3, b':')?;
                let om = digits(b, i + 4, 2)?;
                if oh > 23 || om > 59 {
                    return Err(TimeError::Range);
                }
                let off = i64::from(oh * 3600 + om * 60);
                if sign == b'+' { off } else { -off }
            }
            Some(_) => return Err(TimeError::Syntax),
        };
        let civil = Civil {
            year: i64::from(year),
            month,
            day,
            hour,
            minute,
            second,
        };
        let local = civil_to_unix(&civil).ok_or(TimeError::Range)?;
        let secs = local - offset_secs;
        if !(MIN_SECS..=MAX_SECS).contains(&secs) {
            return Err(TimeError::Range);
        }
        Ok(Timestamp { secs, nanos })
    }

    /// The UTC calendar fields of this instant.
    pub fn to_civil(self) -> Civil {
        unix_to_civil(self.secs)
    }

    /// RFC 3339 in UTC with `Z`; fractions only when present.
    pub fn to_rfc3339(self) -> String {
        let c = self.to_civil();
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        );
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, TimeError> {
    let field = b.get(at..at + n).ok_or(TimeError::Syntax)?;
    let mut v = 0u32;
    for &c in field {
        if !c.is_ascii_digit() {
            return Err(TimeError::Syntax);
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Ok(v)
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), TimeError> {
    if b.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(TimeError::Syntax)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Seconds since the epoch of calendar fields read as UTC; `None` when a field is out of range.
pub fn civil_to_unix(c: &Civil) -> Option<i64> {
    if !(1..=12).contains(&c.month)
        || c.day == 0
        || c.day > days_in_month(c.year, c.month)
        || c.hour > 23
        || c.minute > 59
        || c.second > 59
    {
        return None;
    }
    Some(
        days_from_civil(c.year, c.month, c.day) * SECS_PER_DAY
            + i64::from(c.hour * 3600 + c.minute * 60 + c.second),
    )
}

/// UTC calendar fields of Unix seconds.
pub fn unix_to_civil(secs: i64) -> Civil {
    let days = secs.div_euclid(SECS_PER_DAY);
    let rem = secs.rem_euclid(SECS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
    }
}

/// Parses a duration: one or more `<number><unit>` pairs with units
/// `d`, `h`, `m`, `s` in that order, e.g. `90s`, `15m`, `2h30m`, `1d`, `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, TimeError> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 32 {
        return Err(TimeError::Duration);
    }
    let mut total: u64 = 0;
    let mut i = 0;
    let mut last_rank = usize::MAX;
    while i < b.len() {
        let start = i;
        let mut n: u64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b[i] - b'0')))
                .ok_or(TimeError::Duration)?;
            i += 1;
        }
        if i == start || i == b.len() {
            return Err(TimeError::Duration);
        }
        let (rank, unit) = match b[i] {
            b'd' => (3, 86_400),
            b'h' => (2, 3_600),
            b'm' => (1, 60),
            b's' => (0, 1),
            _ => return Err(TimeError::Duration),
        };
        if rank >= last_rank {
            return Err(TimeError::Duration);
        }
        last_rank = rank;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or(TimeError::Duration)?;
        i += 1;
    }
    Ok(Duration::from_secs(total))
}

/// `1d2h`, `45m`, `30s`: the largest two units, for people reading a table.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        if hours > 0 {
            format!("{days}d{hours}h")
        } else {
            format!("{days}d")
        }
    } else if hours > 0 {
        if mins > 0 {
            format!("{hours}h{mins}m")
        } else {
            format!("{hours}h")
        }
    } else if mins > 0 {
        if secs > 0 {
            format!("{mins}m{secs}s")
        } else {
            format!("{mins}m")
        }
    } else {
        format!("{secs}s")
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = crate::types::cow_str(d)?;
        Timestamp::parse_rfc3339(&s).map_err(|e| {
            serde::de::Error::custom(format_args!(
                "{}: {e}",
                crate::types::quote_for_display(&s, 48)
            ))
        })
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn parses_utc_and_offsets_to_the_same_instant() {
        assert_eq!(ts("2026-11-21T10:00:00Z").unix_seconds(), 1_795_255_200);
        assert_eq!(ts("2026-11-21T11:00:00+01:00"), ts("2026-11-21T10:00:00Z"));
        assert_eq!(ts("2026-11-21T04:15:00-05:45"), ts("2026-11-21T10:00:00Z"));
        assert_eq!(ts("2026-11-21t10:00:00z"), ts("2026-11-21T10:00:00Z"));
        assert_eq!(ts("1970-01-01T00:00:00Z"), Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn keeps_fractions() {
        let t = ts("2026-11-21T10:00:00.25Z");
        assert_eq!(t.subsec_nanos(), 250_000_000);
        assert_eq!(t.to_rfc3339(), "2026-11-21T10:00:00.25Z");
        assert_eq!(
            ts("2026-11-21T10:00:00.123456789Z").subsec_nanos(),
            123_456_789
        );
        assert!(t > ts("2026-11-21T10:00:00Z"));
    }

    #[test]
    fn refuses_zone_less_and_malformed_times() {
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-21T10:00:00"),
            Err(TimeError::NoZone)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-21T10:00:00.5"),
            Err(TimeError::NoZone)
        );
        for bad in [
            "",
            "2026-11-21",
            "2026-11-21 10:00:00Z",
            "2026-11-21T10:00Z",
            "2026-11-21T10:00:00+0100",
            "2026-11-21T10:00:00+01",
            "2026-11-21T10:00:00.Z",
            "2026-11-21T10:00:00.1234567891Z",
            "2026-11-21T10:00:00ZZ",
            "+2026-11-21T10:00:00Z",
            "2026-1-21T10:00:00Z",
            "２026-11-21T10:00:00Z",
        ] {
            assert_eq!(
                Timestamp::parse_rfc3339(bad),
                Err(TimeError::Syntax),
                "{bad:?}"
            );
        }
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T10:60:00Z",
            "2026-11-21T10:00:60Z",
            "2026-11-21T10:00:00+24:00",
        ] {
            assert_eq!(
                Timestamp::parse_rfc3339(bad),
                Err(TimeError::Range),
                "{bad:?}"
            );
        }
        assert!(Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn civil_round_trips_across_eras() {
        for secs in [
            MIN_SECS,
            -1,
            0,
            951_782_400,
            1_795_255_200,
            4_102_444_800,
            MAX_SECS,
        ] {
            let c = unix_to_civil(secs);
            assert_eq!(civil_to_unix(&c), Some(secs), "{c:?}");
        }
        assert_eq!(
            Timestamp::from_unix(1_795_255_200, 0).to_civil().compact(),
            "20261121100000"
        );
    }

    #[test]
    fn arithmetic_saturates_and_measures() {
        let t = ts("2026-11-21T10:00:00.75Z");
        let later = t.saturating_add(Duration::from_millis(500));
        assert_eq!(later, ts("2026-11-21T10:00:01.25Z"));
        assert_eq!(later.saturating_sub(Duration::from_millis(500)), t);
        assert_eq!(t.until(later), Duration::from_millis(500));
        assert_eq!(later.until(t), Duration::ZERO);
        assert_eq!(
            t.saturating_add(Duration::from_secs(u64::MAX))
                .unix_seconds(),
            MAX_SECS
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h30m"), Ok(Duration::from_secs(9000)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1d2h3m4s"), Ok(Duration::from_secs(93_784)));
        for bad in [
            "",
            "10",
            "s",
            "1h1d",
            "1m1m",
            "1.5h",
            "-1s",
            "1 h",
            "1w",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration(bad), Err(TimeError::Duration), "{bad:?}");
        }
        assert_eq!(format_duration(Duration::from_secs(93_784)), "1d2h");
        assert_eq!(format_duration(Duration::from_secs(9000)), "2h30m");
        assert_eq!(format_duration(Duration::from_secs(61)), "1m1s");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
    }
}
