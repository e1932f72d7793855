//! "Retention and prune", "Locks" and "Checking the repository", as the
//! README states them: forget's groups, `--group-by` and filters, a week
//! without backups, prune's index merge, `--max-unused` and memory,
//! `unlock --all`, `check --read-data-subset` and a killed backup's packs.

use crate::common::{json, open_repo, stderr, stdout, tree, TempRepo};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Seconds since the epoch of `y-m-d 12:00 UTC`.
fn noon(y: i32, m: u32, d: u32) -> i64 {
    let days = (y as i64 - 1970) * 365 + ((y as i64 - 1969) / 4);
    let before: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (y % 4 == 0 && m > 2) as i64;
    (days + before[m as usize - 1] + leap + d as i64 - 1) * 86_400 + 12 * 3600
}

/// A repository holding one backup's tree under manifests of the given
/// (time, host, paths, tags), the backup's own manifest removed.
fn manifests(snaps: &[(i64, &str, &[&str], &[&str])]) -> TempRepo {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("f"), b"x");
    let id = t.backup(&src);
    let repo = open_repo(&t.repo());
    let (sid, base) = repo.find_snapshot(&id, &Default::default()).unwrap();
    for (time, host, paths, tags) in snaps {
        let mut s = base.clone();
        s.time.sec = *time;
        s.host = host.to_string();
        s.paths = paths.iter().map(|p| p.to_string()).collect();
        s.tags = tags.iter().map(|p| p.to_string()).collect();
        repo.save_snapshot(&s).unwrap();
    }
    repo.remove_snapshot(&sid).unwrap();
    t
}

/// `forget --dry-run --json ARGS` in UTC: each group's key and the times
/// (as `noon` gives them) it keeps.
fn kept(t: &TempRepo, args: &[&str]) -> Vec<(String, Vec<i64>)> {
    let mut all = vec!["forget", "--dry-run", "--json"];
    all.extend(args);
    let out = t.cmd(&all).env("TZ", "UTC").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let v = json(&stdout(&out));
    let repo = open_repo(&t.repo());
    let (snaps, _) = repo.snapshots().unwrap();
    let time_of = |id: &str| {
        snaps
            .iter()
            .find(|(i, _)| i.to_hex() == id)
            .map(|(_, s)| s.time.sec)
            .unwrap()
    };
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let mut times: Vec<i64> = g["keep"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| time_of(k["id"].as_str().unwrap()))
                .collect();
            times.sort();
            (g["group"].as_str().unwrap().to_string(), times)
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// "`--keep-weekly N`: the newest snapshot of each ... ISO week ... for the
/// N most recent periods that have a snapshot. A week without backups does
/// not use up one of the N."
#[test]
fn a_week_without_backups_does_not_use_up_keep_weekly() {
    // Wednesdays and Sundays of five ISO weeks; none in the week of Jan 19.
    let days = [
        (2025, 12, 31),
        (2026, 1, 4),
        (2026, 1, 7),
        (2026, 1, 11),
        (2026, 1, 14),
        (2026, 1, 18),
        (2026, 1, 28),
        (2026, 2, 1),
        (2026, 2, 4),
        (2026, 2, 8),
    ];
    let snaps: Vec<_> = days
        .iter()
        .map(|&(y, m, d)| (noon(y, m, d), "web1", &["/srv"][..], &[][..]))
        .collect();
    let t = manifests(&snaps);
    let got = kept(&t, &["--keep-weekly", "4"]);
    let want = [
        noon(2026, 1, 11),
        noon(2026, 1, 18),
        noon(2026, 2, 1),
        noon(2026, 2, 8),
    ];
    assert_eq!(got, [("host web1, paths /srv".to_string(), want.to_vec())]);
    // And for real: exactly those four stay.
    t.cmd(["forget", "--keep-weekly", "4"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let left: BTreeSet<i64> = json(&t.ok(["snapshots", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap();
            let repo = open_repo(&t.repo());
            repo.find_snapshot(id, &Default::default())
                .unwrap()
                .1
                .time
                .sec
        })
        .collect();
    assert_eq!(left, want.into_iter().collect());
}

/// "`forget` applies the policy to each group of snapshots with the same
/// host and paths (`--group-by host,paths,tags` to change that; `--host`,
/// `--tag` and `--path` to select)".
#[test]
fn forget_groups_by_host_and_paths_and_group_by_and_filters_change_that() {
    let day = |d| noon(2026, 3, d);
    let t = manifests(&[
        (day(1), "web1", &["/srv"], &["nightly"]),
        (day(2), "web1", &["/srv"], &["manual"]),
        (day(3), "web1", &["/srv"], &["nightly"]),
        (day(4), "web2", &["/srv"], &["nightly"]),
        (day(5), "web2", &["/srv"], &["nightly"]),
        (day(6), "web1", &["/etc"], &["nightly"]),
        (day(7), "web1", &["/etc", "/srv"], &["nightly"]),
    ]);
    let g = |k: &str, times: &[i64]| (k.to_string(), times.to_vec());
    // Groups come sorted by key (`kept` sorts them).
    assert_eq!(
        kept(&t, &["--keep-last", "1"]),
        [
            g("host web1, paths /etc", &[day(6)]),
            g("host web1, paths /etc /srv", &[day(7)]),
            g("host web1, paths /srv", &[day(3)]),
            g("host web2, paths /srv", &[day(5)]),
        ]
    );
    assert_eq!(
        kept(&t, &["--keep-last", "1", "--group-by", "host"]),
        [g("host web1", &[day(7)]), g("host web2", &[day(5)])]
    );
    assert_eq!(
        kept(&t, &["--keep-last", "1", "--group-by", "paths"]),
        [
            g("paths /etc", &[day(6)]),
            g("paths /etc /srv", &[day(7)]),
            g("paths /srv", &[day(5)]),
        ]
    );
    assert_eq!(
        kept(&t, &["--keep-last", "1", "--group-by", "host,paths,tags"]),
        [
            g("host web1, paths /etc /srv, tags nightly", &[day(7)]),
            g("host web1, paths /etc, tags nightly", &[day(6)]),
            g("host web1, paths /srv, tags manual", &[day(2)]),
            g("host web1, paths /srv, tags nightly", &[day(3)]),
            g("host web2, paths /srv, tags nightly", &[day(5)]),
        ]
    );
    // Filters select what the policy sees; the rest is not touched.
    assert_eq!(
        kept(&t, &["--keep-last", "1", "--host", "web2"]),
        [g("host web2, paths /srv", &[day(5)])]
    );
    assert_eq!(
        kept(&t, &["--keep-last", "1", "--tag", "manual"]),
        [g("host web1, paths /srv", &[day(2)])]
    );
    assert_eq!(
        kept(&t, &["--keep-last", "1", "--path", "/etc"]),
        [
            g("host web1, paths /etc", &[day(6)]),
            g("host web1, paths /etc /srv", &[day(7)]),
        ]
    );
    let out = t.rewind(["forget", "--keep-last", "1", "--host", "web2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&t.ok(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let out = t.rewind(["forget", "--keep-last", "1", "--group-by", "colour"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn index_files(t: &TempRepo) -> usize {
    crate::common::fault::files_below(&t.repo().join("index")).len()
}

/// "`prune` ... repacks packs whose unused share is above `--max-unused`
/// (default 5%), merges the index files into one".
#[test]
fn prune_honours_max_unused_and_merges_the_index_files() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("keep"), &tree::noise(1 << 20, 1));
    tree::file(&src.join("gone"), &tree::noise(1 << 20, 2));
    let first = t.backup(&src);
    fs::remove_file(src.join("gone")).unwrap();
    tree::file(&src.join("small"), b"x");
    t.backup(&src);
    t.backup(&t.join("src/small"));
    assert!(index_files(&t) >= 3, "one index file per backup");
    t.ok(["forget", &first]);
    // The first pack is now about half unused.
    let prune = |max: &str| json(&t.ok(["prune", "--json", "--max-unused", max]));
    let r = prune("60%");
    assert_eq!(r["packs_repacked"], 0, "{r}");
    assert_eq!(index_files(&t), 1, "prune merges the index files: {r}");
    let r = prune("40%");
    assert_eq!(r["packs_repacked"], 1, "{r}");
    assert!(
        r["bytes_after"].as_u64().unwrap() + (900 << 10) < r["bytes_before"].as_u64().unwrap(),
        "{r}"
    );
    // (The repack's own index file stays beside the merged one, until the
    // next prune merges both.)
    t.ok(["check", "--read-data"]);
    let cat = t.rewind([
        OsStr::new("cat"),
        OsStr::new("latest"),
        src.join("keep").as_os_str(),
    ]);
    assert!(cat.stdout == tree::noise(1 << 20, 1), "{}", stderr(&cat));
}

/// Peak RSS in KiB of `rewind prune` on `t`.
fn prune_peak_kib(t: &TempRepo) -> u64 {
    let mut child = t
        .cmd(["prune", "--max-unused", "0%"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (status, peak) = crate::common::wait_peak_rss(&mut child);
    assert!(status.success());
    peak
}

/// A repository of 4 backups of `n` files each, every file new, then all
/// but the newest forgotten (so prune has `4 * n` blobs to weigh).
fn many_blobs(n: usize) -> TempRepo {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    for round in 0..4 {
        for i in 0..n {
            fs::write(
                src.join(format!("f{i}")),
                format!("round {round} file {i}\n"),
            )
            .unwrap();
        }
        t.ok([OsStr::new("backup"), OsStr::new("-q"), src.as_os_str()]);
    }
    t.ok(["forget", "--keep-last", "1"]);
    t
}

/// "Its memory does not grow with the repository": prune's peak RSS on a
/// repository with 10 times the blobs stays below twice the small one's.
#[test]
fn prune_memory_does_not_grow_with_the_repository() {
    let small = prune_peak_kib(&many_blobs(500));
    let large = prune_peak_kib(&many_blobs(5000));
    eprintln!("prune peak RSS: {small} KiB (2,000 blobs), {large} KiB (20,000 blobs)");
    assert!(
        large < 2 * small,
        "prune peak RSS: {small} KiB for 2,000 blobs, {large} KiB for 20,000"
    );
}

/// "Stale locks never block anyone; `rewind unlock` removes them (`--all`
/// removes live ones too)."
#[test]
fn unlock_keeps_live_locks_and_all_removes_them() {
    let t = TempRepo::new();
    let repo = std::sync::Arc::new(open_repo(&t.repo()));
    // A live lock: this test process holds it.
    let lock = rewind::repo::lock::acquire(&repo, true, "prune (test)", Duration::ZERO).unwrap();
    let out = t.ok(["unlock"]);
    assert!(
        out.contains("still held") && out.contains("0 locks removed, 1 remain"),
        "{out}"
    );
    let blocked = t.rewind(["forget", "--keep-last", "1"]);
    assert_eq!(blocked.status.code(), Some(1), "{}", stderr(&blocked));
    let out = t.ok(["unlock", "--all"]);
    assert!(out.contains("1 lock removed, 0 remain"), "{out}");
    assert!(crate::common::fault::files_below(&t.repo().join("locks")).is_empty());
    t.ok(["forget", "--keep-last", "1"]);
    drop(lock);
}

/// Twenty small backups: about forty packs.
fn many_packs() -> TempRepo {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        tree::file(&src.join(format!("f{i}")), &tree::noise(20_000, i));
        t.ok([OsStr::new("backup"), OsStr::new("-q"), src.as_os_str()]);
    }
    t
}

/// "`rewind check --read-data-subset 10%`: also read and verify a random
/// tenth of the packs ... A weekly `--read-data-subset 10%` covers the
/// whole repository over time", and finds damage when it reads it.
#[test]
fn read_data_subset_reads_a_random_share_and_finds_damage_when_it_reads_it() {
    let t = many_packs();
    let check = |pct: &str| {
        let out = t.rewind(["check", "--json", "--read-data-subset", pct]);
        (out.status.code(), json(&stdout(&out)))
    };
    let (code, all) = check("100%");
    assert_eq!(code, Some(0), "{all}");
    let packs = all["packs"].as_u64().unwrap();
    assert!(packs >= 20, "{all}");
    assert_eq!(all["packs_read"], packs);
    let (_, none) = check("0");
    assert_eq!(none["packs_read"], 0, "{none}");
    let (_, tenth) = check("10%");
    assert_eq!(tenth["packs_read"], packs.div_ceil(10), "{tenth}");
    // One damaged data pack: half the packs at a time finds it in some runs
    // and not others (never finding it in 40 runs, or always, has odds of
    // 2^-40 each).
    let repo = crate::common::fault::open(&t);
    let src = t.join("src/f7");
    let e = crate::common::fault::entry(&repo, "latest", &src);
    let loc = crate::common::fault::data_locations(&repo, &e)[0];
    drop(repo);
    let pack = crate::common::fault::pack_file(&t, &loc);
    crate::common::fault::flip_byte(&pack, loc.frame.offset as u64 + 10);
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    let (mut found, mut missed) = (0, 0);
    for _ in 0..40 {
        let out = t.rewind(["check", "--read-data-subset", "50%"]);
        match out.status.code() {
            Some(0) => missed += 1,
            Some(1) => {
                found += 1;
                let text = stdout(&out);
                assert!(text.contains(&name[..16]), "the pack is named: {text}");
                assert!(
                    text.contains(src.to_str().unwrap()),
                    "the file is named: {text}"
                );
            }
            c => panic!("check exited {c:?}: {}", stderr(&out)),
        }
        if found > 0 && missed > 0 {
            break;
        }
    }
    assert!(found > 0 && missed > 0, "found {found}, missed {missed}");
    let (code, _) = check("100%");
    assert_eq!(code, Some(1));
}

/// "Packs left by an interrupted backup are reported as unreferenced and
/// are harmless": a backup killed after storing packs, before any index.
#[test]
fn a_killed_backups_packs_are_reported_unreferenced_and_harmless() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("f"), b"before");
    t.backup(&src);
    let data = t.repo().join("data");
    // Pack files, not temporary ones (`.tmp-…`).
    let pack_files = || {
        crate::common::fault::files_below(&data)
            .into_iter()
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .map(|p| data.join(p))
            .collect::<Vec<_>>()
    };
    let packs = || pack_files().len();
    let before = packs();
    let mut child = t
        .cmd(["backup", "--stdin-name", "/db/big.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Two full packs (16 MiB each) of incompressible data; stdin stays open.
    stdin.write_all(&tree::noise(36 << 20, 11)).unwrap();
    let start = Instant::now();
    while packs() < before + 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no packs written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let v = json(&t.ok(["check", "--json"]));
    let left = v["unreferenced_packs"].as_array().unwrap().len();
    assert!(left >= 1, "{v}");
    let out = t.rewind(["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let count = match left {
        1 => "1 pack is".to_string(),
        n => format!("{n} packs are"),
    };
    assert!(
        stdout(&out).contains(&format!("{count} in no index")),
        "{}",
        stdout(&out)
    );
    // Harmless: the next backup and check --read-data pass; prune removes
    // them once they are older than any backup could still be running
    // (made so here by their times).
    t.backup(&src);
    t.ok(["check", "--read-data"]);
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 86_400;
    for p in pack_files() {
        tree::set_times(&p, (old, 0), (old, 0));
    }
    let r = json(&t.ok(["prune", "--json"]));
    assert_eq!(r["packs_unreferenced"], left as u64, "{r}");
    let v = json(&t.ok(["check", "--json"]));
    assert_eq!(v["unreferenced_packs"], serde_json::json!([]), "{v}");
}
