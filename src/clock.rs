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

/// RFC 3339 in local time with its offset: `2026-11-23T02:15:04+01:00`,
/// with nanoseconds when the time has them
/// (`2026-11-23T02:15:04.000000123+01:00`). Every time in JSON output is
/// written by this function. A time the C library cannot place is given in
/// UTC.
pub fn rfc3339(t: Time) -> String {
    let offset = local(t.sec).map_or(0, |tm| tm.tm_gmtoff);
    rfc3339_at(t, offset)
}

/// [`rfc3339`] at a fixed offset from UTC (seconds east).
pub fn rfc3339_at(t: Time, offset: i64) -> String {
    let wall = t.sec.saturating_add(offset);
    let (y, mo, d) = crate::forget::civil_from_days(wall.div_euclid(86400));
    let s = wall.rem_euclid(86400);
    let frac = if t.nsec == 0 {
        String::new()
    } else {
        format!(".{:09}", t.nsec)
    };
    let sign = if offset < 0 { '-' } else { '+' };
    let off = offset.unsigned_abs();
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}{frac}{sign}{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        off / 3600,
        off / 60 % 60
    )
}

/// The time now.
pub fn now() -> Time {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Time {
        sec: d.as_secs() as i64,
        nsec: d.subsec_nanos(),
    }
}

/// [`rfc3339`] of now, to the second.
pub fn rfc3339_now() -> String {
    rfc3339(Time { nsec: 0, ..now() })
}

/// This machine's name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_keeps_the_offset_and_nanoseconds() {
        let t = |sec, nsec| Time { sec, nsec };
        assert_eq!(
            rfc3339_at(t(1_700_000_000, 0), 3600),
            "2023-11-14T23:13:20+01:00"
        );
        assert_eq!(
            rfc3339_at(t(1_690_000_000, 5), 7200),
            "2023-07-22T06:26:40.000000005+02:00"
        );
        assert_eq!(
            rfc3339_at(t(1_700_000_000, 987_654_321), 0),
            "2023-11-14T22:13:20.987654321+00:00"
        );
        assert_eq!(
            rfc3339_at(t(0, 0), -(9 * 3600 + 30 * 60)),
            "1969-12-31T14:30:00-09:30"
        );
        assert_eq!(rfc3339_at(t(-1, 0), 0), "1969-12-31T23:59:59+00:00");
        // The offset of the moment: a local time read back gives the same instant.
        let now = t(1_750_000_000, 0);
        let s = rfc3339(now);
        assert_eq!(s.len(), 25, "{s}");
    }

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

    #[test]
    fn rfc3339_has_an_offset() {
        let s = rfc3339(Time {
            sec: 1_700_000_000,
            nsec: 5,
        });
        assert_eq!(s.len(), 19 + 10 + 6, "{s}");
        assert!(
            s.ends_with(":00") || s.ends_with(":30") || s.ends_with(":45"),
            "{s}"
        );
        assert_eq!(&s[19..29], ".000000005");
    }
}
