//! sshd's reading of a zone-less time (`expiry-time="YYYYMMDDHHMMSS"`,
//! allowed_signers' `valid-after`): the host's local time, as mktime sees
//! it with `tm_isdst = 0`. The zone rules live in the C library, so the
//! host supplies them through `LocalTime`; the search is pure.

use crate::time::{Civil, unix_to_civil};

/// The host's local-time rules, as the C library applies them.
pub trait LocalTime {
    /// The offset from UTC, in seconds, in effect at `unix` (localtime_r's
    /// `tm_gmtoff`).
    fn offset(&self, unix: i64) -> Option<i64>;
    /// The instant that mktime gives for these fields with `tm_isdst = 0`,
    /// as OpenSSH's parse_absolute_time calls it.
    fn mktime_standard(&self, fields: &Civil) -> Option<i64>;
}

/// A zone with one fixed offset and no summer time (UTC is `Fixed(0)`):
/// for tests, and for hosts whose zone is known to be fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed(pub i64);

impl LocalTime for Fixed {
    fn offset(&self, _unix: i64) -> Option<i64> {
        Some(self.0)
    }

    fn mktime_standard(&self, fields: &Civil) -> Option<i64> {
        crate::time::civil_to_unix(fields)?.checked_sub(self.0)
    }
}

/// The calendar fields that sshd reads back as exactly `unix`.
///
/// sshd parses a zone-less `expiry-time` by zeroing a `struct tm`, filling
/// it with strptime and calling mktime: local time with `tm_isdst = 0`, so
/// in summer time glibc reads the fields as *standard* time. We search for
/// fields that mktime maps back to `unix` with that same convention and
/// accept only an exact round trip. Returns `None` when no such fields exist
/// (the caller then refuses to print the line).
pub fn sshd_fields(unix: i64, zone: &dyn LocalTime) -> Option<Civil> {
    let mut offset = zone.offset(unix)?;
    for _ in 0..4 {
        let fields = unix_to_civil(unix.checked_add(offset)?);
        let back = zone.mktime_standard(&fields)?;
        if back == unix {
            return Some(fields);
        }
        offset = offset.checked_add(unix - back)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_offsets_round_trip() {
        for off in [0, 3600, -5 * 3600, 5 * 3600 + 45 * 60] {
            let zone = Fixed(off);
            let unix = 1_800_000_000;
            let fields = sshd_fields(unix, &zone).unwrap();
            assert_eq!(zone.mktime_standard(&fields), Some(unix));
            assert_eq!(crate::time::civil_to_unix(&fields), Some(unix + off));
        }
    }
}
