//! Value parsers for every number, size, duration and percentage on the
//! command line. Each is a clap `value_parser`, so a bad value is a usage
//! error (exit 2) that names the option. All arithmetic is checked: a value
//! too large to mean anything is refused, never wrapped.

use std::time::Duration;

/// The longest duration taken anywhere (`--lock-wait`): 10 years.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86400);

/// The most threads any command starts.
pub const MAX_THREADS: usize = 1024;

/// A duration: `30s`, `10m`, `2h`, `1d`, `1h30m`, or plain seconds.
pub fn wait(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("expected a duration like 30s, 10m, 2h or 1d".into());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return seconds(s, t.parse::<u64>().ok());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{s:?}: expected a number before each unit"));
        }
        let n: Option<u64> = rest[..digits].parse().ok();
        let Some(unit) = rest[digits..].chars().next() else {
            return Err(format!("{s:?}: a number without a unit at the end"));
        };
        let scale: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
        };
        total = n
            .and_then(|n| n.checked_mul(scale))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| too_long(s))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    seconds(s, Some(total))
}

fn seconds(s: &str, n: Option<u64>) -> Result<Duration, String> {
    match n.map(Duration::from_secs) {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(too_long(s)),
    }
}

fn too_long(s: &str) -> String {
    format!("{s:?} is too long (at most 3650d)")
}

/// A size in bytes: `4096`, `64K`, `256M`, `1G`, `2T`, `10MiB`, `1.5G`
/// (binary units; `B`, `iB` suffixes allowed).
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    let bad = || format!("{s:?} is not a size (like 10M or 1.5G)");
    if num.is_empty() {
        return Err(bad());
    }
    let too_large = || format!("{s:?} is too large");
    match num.split_once('.') {
        None => num
            .parse::<u64>()
            .map_err(|_| too_large())?
            .checked_mul(1u64 << shift)
            .ok_or_else(too_large),
        Some((whole, frac)) => {
            if frac.is_empty() || frac.contains('.') || frac.len() > 9 {
                return Err(bad());
            }
            let whole: u64 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| too_large())?
            };
            let digits: u64 = frac.parse().map_err(|_| bad())?;
            let den = 10u64.pow(frac.len() as u32);
            let whole = whole.checked_mul(1u64 << shift).ok_or_else(too_large)?;
            // digits / den of a unit, rounded down; digits < 2^30 and
            // shift <= 50, so the shift fits in a u128.
            let part = ((digits as u128) << shift) / den as u128;
            whole
                .checked_add(u64::try_from(part).map_err(|_| too_large())?)
                .ok_or_else(too_large)
        }
    }
}

/// A thread count: 1 to [`MAX_THREADS`].
pub fn threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be between 1 and {MAX_THREADS}")),
        Err(_) => Err(format!("{s:?} is not a number of threads")),
    }
}

/// A percentage from 0 to 100: `10%`, `10`, `2.5%`.
pub fn percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let num = t.strip_suffix('%').unwrap_or(t);
    // Digits and one dot only: no "nan", "inf" or exponents.
    let plain = !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && num.bytes().filter(|&b| b == b'.').count() <= 1
        && num != ".";
    match num.parse::<f64>() {
        Ok(p) if plain && (0.0..=100.0).contains(&p) => Ok(p),
        Ok(_) if plain => Err("must be between 0% and 100%".into()),
        _ => Err(format!("{s:?} is not a percentage (like 10%)")),
    }
}

/// A tag: not empty, no comma (`--tag a,b` is two tags), no control characters.
pub fn tag(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("a tag cannot be empty".into());
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?}: a tag cannot hold control characters"));
    }
    Ok(s.to_string())
}

/// A `--keep-within` period: `14d`, `2w`, `1y6m`, `12h` (months are 30 days).
pub fn period(s: &str) -> Result<i64, String> {
    crate::forget::parse_duration(s.trim())
        .ok_or_else(|| format!("{s:?}: expected a period like 14d, 2w, 1y6m or 12h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits() {
        assert_eq!(wait("90"), Ok(Duration::from_secs(90)));
        assert_eq!(wait("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(wait("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(wait("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(wait("3650d"), Ok(MAX_DURATION));
        for bad in [
            "",
            "h",
            "2x",
            "-5",
            "1.5h",
            "3651d",
            "99999999999999999999",
            "18446744073709551615d",
            "5000000000000000000h",
            "2h5",
        ] {
            assert!(wait(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        for (s, want) in [
            ("4096", 4096),
            ("256M", 256 << 20),
            ("1g", 1 << 30),
            ("64KiB", 64 << 10),
            ("2MB", 2 << 20),
            ("1.5K", 1536),
            ("0.5M", 512 << 10),
            ("0", 0),
            ("16383P", 16383 << 50),
        ] {
            assert_eq!(size(s), Ok(want), "{s}");
        }
        for bad in [
            "",
            "M",
            "12Q",
            "-1",
            "1.",
            "1..5M",
            "16384P",
            "99999999999999999999T",
            "18446744073709551615K",
            "1e9",
        ] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_percentages_tags() {
        assert_eq!(threads("8"), Ok(8));
        for bad in ["0", "1025", "-1", "99999999999999999999999", "x"] {
            assert!(threads(bad).is_err(), "{bad}");
        }
        assert_eq!(percent("10%"), Ok(10.0));
        assert_eq!(percent("2.5"), Ok(2.5));
        assert_eq!(percent("0%"), Ok(0.0));
        for bad in ["", "%", "101%", "nan", "inf", "1e2", "-1%", "1.2.3", "."] {
            assert!(percent(bad).is_err(), "{bad}");
        }
        assert_eq!(tag("nightly"), Ok("nightly".into()));
        assert!(tag("").is_err());
        assert!(tag(" ").is_err());
        assert!(tag("a\nb").is_err());
        assert_eq!(period("14d"), Ok(14 * 86400));
        assert!(period("99999999999999999999y").is_err());
        assert!(period("14").is_err());
    }
}
