//! Retention: which snapshots a policy keeps, and why.
//!
//! The policy is a pure function over snapshot times, so it is tested with
//! tables of synthetic times and a clock of the test's choosing (time zones,
//! DST, year ends). Semantics follow restic's:
//!
//! - Snapshots are considered newest first.
//! - `keep-last N` keeps the N newest.
//! - `keep-hourly|daily|weekly|monthly|yearly N`: the newest snapshot of each
//!   hour, day, ISO week, month or year (in local time) is kept, for the N
//!   most recent periods that *have* snapshots. Periods without snapshots do
//!   not count.
//! - `keep-within D` keeps every snapshot newer than the newest one minus D
//!   (`1y2m3w4d5h`: years, months of 30 days, weeks, days, hours).
//! - `keep-tag T` keeps every snapshot tagged T.
//! - A snapshot is kept if any rule keeps it; the reasons are all reported.
//!
//! Worked example: daily backups at 02:00 from Jan 1 to Feb 10, and
//! `--keep-daily 7 --keep-weekly 4 --keep-monthly 12` keep Feb 4-10 (daily),
//! the newest snapshot of each of the 4 newest ISO weeks (Tue Feb 10 for the
//! week in progress, then the Sundays Feb 8, Feb 1 and Jan 25), and the newest
//! of each month (Feb 10 and Jan 31): 10 snapshots. The table tests below
//! check exactly this.

use crate::format::tree::Time;

/// A calendar position of an instant, in some time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub iso_year: i64,
    pub iso_week: u32,
}

/// How many of each to keep. Zero means the rule is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    /// Seconds.
    pub within: Option<i64>,
    pub tags: Vec<String>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|&n| n == 0)
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// The verdict on one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub keep: bool,
    /// Every rule that keeps it: `last`, `daily`, `within`, `tag nightly`, …
    pub reasons: Vec<String>,
}

/// Apply `policy` to snapshots given as (time, tags), in any order. Returns one
/// decision per input, in input order. `civil` places an instant in the
/// calendar (local time in production).
pub fn apply(
    snaps: &[(Time, Vec<String>)],
    policy: &Policy,
    civil: &dyn Fn(i64) -> Civil,
) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..snaps.len()).collect();
    order.sort_by(|&a, &b| snaps[b].0.cmp(&snaps[a].0).then(b.cmp(&a)));
    let mut out = vec![Decision::default(); snaps.len()];
    let newest = order.first().map(|&i| snaps[i].0.sec);
    type Key = fn(&Civil) -> (i64, u32, u32, u32);
    let rules: [(&str, u32, Key); 5] = [
        ("hourly", policy.hourly, |c| {
            (c.year, c.month, c.day, c.hour)
        }),
        ("daily", policy.daily, |c| (c.year, c.month, c.day, 0)),
        ("weekly", policy.weekly, |c| (c.iso_year, c.iso_week, 0, 0)),
        ("monthly", policy.monthly, |c| (c.year, c.month, 0, 0)),
        ("yearly", policy.yearly, |c| (c.year, 0, 0, 0)),
    ];
    let mut left: Vec<u32> = rules.iter().map(|r| r.1).collect();
    let mut last_key: Vec<Option<(i64, u32, u32, u32)>> = vec![None; rules.len()];
    for (rank, &i) in order.iter().enumerate() {
        let (time, tags) = &snaps[i];
        let d = &mut out[i];
        if (rank as u32) < policy.last {
            d.reasons.push("last".into());
        }
        let c = civil(time.sec);
        for (r, (name, _, key)) in rules.iter().enumerate() {
            let k = key(&c);
            if left[r] > 0 && last_key[r] != Some(k) {
                last_key[r] = Some(k);
                left[r] -= 1;
                d.reasons.push((*name).into());
            }
        }
        if let (Some(w), Some(n)) = (policy.within, newest) {
            if time.sec >= n.saturating_sub(w) {
                d.reasons.push("within".into());
            }
        }
        for t in &policy.tags {
            if tags.contains(t) {
                d.reasons.push(format!("tag {t}"));
            }
        }
        d.keep = !d.reasons.is_empty();
    }
    out
}

/// Parse `1y2m3w4d5h` into seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let unit = match ch {
            'y' => 365 * 86400,
            'm' => 30 * 86400,
            'w' => 7 * 86400,
            'd' => 86400,
            'h' => 3600,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (num.is_empty() && !s.is_empty()).then_some(total)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ISO 8601 (year, week) of a date.
fn iso_week(y: i64, m: u32, d: u32) -> (i64, u32) {
    let days = days_from_civil(y, m, d);
    let weekday = (days + 3).rem_euclid(7) + 1; // Monday = 1; 1970-01-01 was a Thursday
    let thursday = days - weekday + 4; // the Thursday of this ISO week decides its year
    let (ty, _, _) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(ty, 1, 1)) / 7 + 1;
    (ty, week as u32)
}

/// A civil time from a wall-clock date and hour.
pub fn civil_of(y: i64, m: u32, d: u32, hour: u32) -> Civil {
    let (iso_year, iso_week) = iso_week(y, m, d);
    Civil {
        year: y,
        month: m,
        day: d,
        hour,
        iso_year,
        iso_week,
    }
}

/// The calendar position of `sec` in a fixed offset from UTC (seconds east).
pub fn civil_at_offset(sec: i64, offset: i64) -> Civil {
    let t = sec + offset;
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    civil_of(y, m, d, (t.rem_euclid(86400) / 3600) as u32)
}

/// The calendar position of `sec` in this machine's local time zone.
pub fn local_civil(sec: i64) -> Civil {
    match crate::clock::local(sec) {
        Some(tm) => civil_of(
            tm.tm_year as i64 + 1900,
            tm.tm_mon as u32 + 1,
            tm.tm_mday as u32,
            tm.tm_hour as u32,
        ),
        None => civil_at_offset(sec, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: u32) -> Time {
        Time {
            sec: days_from_civil(y, m, d) * 86400 + h as i64 * 3600,
            nsec: 0,
        }
    }

    fn kept(
        snaps: &[(Time, Vec<String>)],
        p: &Policy,
        civil: &dyn Fn(i64) -> Civil,
    ) -> Vec<String> {
        let ds = apply(snaps, p, civil);
        let mut out: Vec<String> = snaps
            .iter()
            .zip(&ds)
            .filter(|(_, d)| d.keep)
            .map(|((t, _), d)| {
                let c = civil_at_offset(t.sec, 0);
                format!(
                    "{}-{:02}-{:02}T{:02} {}",
                    c.year,
                    c.month,
                    c.day,
                    c.hour,
                    d.reasons.join(",")
                )
            })
            .collect();
        out.sort();
        out
    }

    fn utc(sec: i64) -> Civil {
        civil_at_offset(sec, 0)
    }

    #[test]
    fn calendar_helpers() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // ISO weeks around year ends.
        assert_eq!(iso_week(2021, 1, 3), (2020, 53));
        assert_eq!(iso_week(2021, 1, 4), (2021, 1));
        assert_eq!(iso_week(2024, 12, 30), (2025, 1));
        assert_eq!(iso_week(2026, 11, 23), (2026, 48));
        assert_eq!(
            parse_duration("1y2m3w4d5h"),
            Some(365 * 86400 + 60 * 86400 + 21 * 86400 + 4 * 86400 + 5 * 3600)
        );
        assert_eq!(parse_duration("7d"), Some(7 * 86400));
        assert_eq!(parse_duration("7"), None);
        assert_eq!(parse_duration("7x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
        assert_eq!(parse_duration("300000000000y"), None);
    }

    /// Counts that would overflow a sum, and a period longer than all time.
    #[test]
    fn huge_rules_neither_wrap_nor_panic() {
        let p = Policy {
            last: u32::MAX,
            hourly: 1,
            ..Default::default()
        };
        assert!(!p.is_empty());
        let snaps = vec![(at(1900, 1, 1, 0), vec![]), (at(2026, 1, 1, 0), vec![])];
        let p = Policy {
            within: Some(i64::MAX),
            ..Default::default()
        };
        assert!(apply(&snaps, &p, &utc).iter().all(|d| d.keep));
    }

    #[test]
    fn the_worked_example() {
        let snaps: Vec<_> = (0..41)
            .map(|i| {
                (
                    Time {
                        sec: at(2026, 1, 1, 2).sec + i * 86400,
                        nsec: 0,
                    },
                    vec![],
                )
            })
            .collect();
        let p = Policy {
            daily: 7,
            weekly: 4,
            monthly: 12,
            ..Default::default()
        };
        let k = kept(&snaps, &p, &utc);
        assert_eq!(
            k,
            [
                "2026-01-25T02 weekly",
                "2026-01-31T02 monthly",
                "2026-02-01T02 weekly",
                "2026-02-04T02 daily",
                "2026-02-05T02 daily",
                "2026-02-06T02 daily",
                "2026-02-07T02 daily",
                "2026-02-08T02 daily,weekly",
                "2026-02-09T02 daily",
                "2026-02-10T02 daily,weekly,monthly",
            ]
        );
    }

    #[test]
    fn last_within_and_tags() {
        let snaps = vec![
            (at(2026, 5, 1, 0), vec!["keep".to_string()]),
            (at(2026, 5, 2, 0), vec![]),
            (at(2026, 5, 3, 0), vec![]),
            (at(2026, 5, 4, 0), vec![]),
        ];
        let p = Policy {
            last: 1,
            within: parse_duration("1d"),
            tags: vec!["keep".into()],
            ..Default::default()
        };
        assert_eq!(
            kept(&snaps, &p, &utc),
            [
                "2026-05-01T00 tag keep",
                "2026-05-03T00 within",
                "2026-05-04T00 last,within"
            ]
        );
    }

    #[test]
    fn several_per_day_keep_the_newest_of_each_day_and_hour() {
        let snaps = vec![
            (at(2026, 3, 1, 1), vec![]),
            (at(2026, 3, 1, 13), vec![]),
            (at(2026, 3, 1, 13), vec![]), // same instant: the later in input order wins ties
            (at(2026, 3, 2, 9), vec![]),
        ];
        let p = Policy {
            daily: 2,
            ..Default::default()
        };
        let d = apply(&snaps, &p, &utc);
        assert_eq!(
            d.iter().map(|d| d.keep).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        let p = Policy {
            hourly: 3,
            ..Default::default()
        };
        let d = apply(&snaps, &p, &utc);
        assert_eq!(
            d.iter().map(|d| d.keep).collect::<Vec<_>>(),
            [true, false, true, true]
        );
    }

    #[test]
    fn time_zones_move_day_boundaries() {
        // 23:30 UTC and 00:30 UTC the next day: two days in UTC, one in UTC-2.
        let snaps = vec![
            (
                Time {
                    sec: at(2026, 7, 1, 23).sec + 1800,
                    nsec: 0,
                },
                vec![],
            ),
            (
                Time {
                    sec: at(2026, 7, 2, 0).sec + 1800,
                    nsec: 0,
                },
                vec![],
            ),
        ];
        let p = Policy {
            daily: 5,
            ..Default::default()
        };
        assert_eq!(apply(&snaps, &p, &utc).iter().filter(|d| d.keep).count(), 2);
        let minus2 = |s| civil_at_offset(s, -2 * 3600);
        assert_eq!(
            apply(&snaps, &p, &minus2).iter().filter(|d| d.keep).count(),
            1
        );
    }

    #[test]
    fn dst_fall_back_repeats_an_hour_but_not_a_day() {
        // Europe/Berlin 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC).
        let switch = at(2026, 10, 25, 1).sec;
        let berlin = move |s: i64| civil_at_offset(s, if s < switch { 7200 } else { 3600 });
        // 00:30 UTC (02:30 CEST) and 01:30 UTC (02:30 CET): the same wall hour twice.
        let snaps = vec![
            (
                Time {
                    sec: switch - 1800,
                    nsec: 0,
                },
                vec![],
            ),
            (
                Time {
                    sec: switch + 1800,
                    nsec: 0,
                },
                vec![],
            ),
        ];
        let p = Policy {
            hourly: 5,
            ..Default::default()
        };
        assert_eq!(
            apply(&snaps, &p, &berlin).iter().filter(|d| d.keep).count(),
            1
        );
        let p = Policy {
            daily: 5,
            ..Default::default()
        };
        assert_eq!(
            apply(&snaps, &p, &berlin).iter().filter(|d| d.keep).count(),
            1
        );
    }

    #[test]
    fn year_end_weeks_and_years() {
        // Dec 28 2020 .. Jan 5 2021, one a day: ISO week 53 of 2020 spans the new year.
        let snaps: Vec<_> = (0..9)
            .map(|i| {
                (
                    Time {
                        sec: at(2020, 12, 28, 12).sec + i * 86400,
                        nsec: 0,
                    },
                    vec![],
                )
            })
            .collect();
        let p = Policy {
            weekly: 2,
            yearly: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&snaps, &p, &utc),
            [
                "2020-12-31T12 yearly",
                "2021-01-03T12 weekly",
                "2021-01-05T12 weekly,yearly"
            ]
        );
    }
}
