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
}
