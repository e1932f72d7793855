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

/// RFC 3339 in local time with its offset, to the nanosecond when there is
/// one: `2026-12-04T02:15:01.123456789+01:00`.
pub fn rfc3339(t: Time) -> String {
    let Some(tm) = local(t.sec) else {
        return format!("@{}", t.sec);
    };
    let frac = if t.nsec == 0 {
        String::new()
    } else {
        format!(".{:09}", t.nsec)
    };
    let off = tm.tm_gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs();
    format!(
        "{}{frac}{sign}{:02}:{:02}",
        stamp(t, 'T'),
        off / 3600,
        off % 3600 / 60
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
