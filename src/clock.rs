//! Local time, the one place that asks the C library for it.

use crate::format::tree::Time;

/// The broken-down local time of `sec`, or `None` where the C library cannot
/// represent it.
pub fn local(sec: i64) -> Option<libc::tm> {
    let t = sec as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`; a zeroed tm is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some(tm)
}

/// `YYYY-MM-DD<sep>HH:MM:SS` in local time (`@seconds` if unrepresentable).
pub fn stamp(t: Time, sep: char) -> String {
    match local(t.sec) {
        Some(tm) => format!(
            "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => format!("@{}", t.sec),
    }
}

/// RFC 3339 in local time with the UTC offset in force then:
/// `2026-12-01T02:15:01+01:00`, with `.nnnnnnnnn` when the nanoseconds are
/// not zero. A time the C library cannot represent (beyond year 2^31) comes
/// out as `@seconds`, as in [`stamp`].
pub fn rfc3339(t: Time) -> String {
    let Some(tm) = local(t.sec) else {
        return format!("@{}", t.sec);
    };
    let frac = match t.nsec {
        0 => String::new(),
        n => format!(".{:09}", n.min(999_999_999)),
    };
    let off = tm.tm_gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{sign}{:02}:{:02}",
        tm.tm_year as i64 + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 3600,
        off % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_have_the_right_shape() {
        let s = stamp(
            Time {
                sec: 1_700_000_000,
                nsec: 0,
            },
            'T',
        );
        assert_eq!(s.len(), 19, "{s}");
        assert_eq!(&s[10..11], "T");
        assert!(stamp(Time { sec: 0, nsec: 0 }, ' ').starts_with("19"));
    }

    /// Seconds since the epoch of an RFC 3339 time (whole seconds).
    fn parse(s: &str) -> i64 {
        let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
        let (y, m, d) = (n(0..4), n(5..7), n(8..10));
        // Days from civil (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
        let tz = s.len() - 6;
        let sign = if &s[tz..tz + 1] == "-" { -1 } else { 1 };
        let off = sign * (n(tz + 1..tz + 3) * 3600 + n(tz + 4..tz + 6) * 60);
        days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19) - off
    }

    #[test]
    fn rfc3339_is_local_time_with_its_offset() {
        let at = |sec, nsec| rfc3339(Time { sec, nsec });
        for sec in [0, 1_700_000_000, 1_719_000_000, -86_401, 4_102_444_800] {
            let s = at(sec, 0);
            assert_eq!(s.len(), "2023-11-14T22:13:20+00:00".len(), "{s}");
            assert_eq!((&s[10..11], &s[22..23]), ("T", ":"), "{s}");
            assert_eq!(parse(&s), sec, "{s}");
        }
        let n = at(1_700_000_000, 5);
        assert_eq!(&n[19..29], ".000000005", "{n}");
        assert_eq!(at(1_700_000_000, 0)[..19], n[..19]);
    }
}
