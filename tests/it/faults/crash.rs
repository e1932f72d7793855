//! A full disk and killed backups: the backup fails, the repository stays
//! valid, and the next backup and check succeed.

use super::{check, expect_code, json, snapshot_ids};
use crate::common::fault::{self, Rng, Tmpfs};
use crate::common::{compare, restored, stderr, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Fill a small tmpfs repository: the backup fails naming ENOSPC, writes no
/// snapshot, and leaves the repository valid.
fn fill_the_disk() -> (TempRepo, Tmpfs, PathBuf, Output) {
    let t = TempRepo::uninit();
    let mount = Tmpfs::mount(&t.repo(), "8m");
    t.ok(["init"]);
    let small = t.join("small");
    fs::create_dir_all(&small).unwrap();
    tree::file(&small.join("f"), b"fits easily");
    t.backup(&small);
    let big = t.join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..4 {
        tree::file(&big.join(format!("part{i}")), &tree::noise(5 << 20, 40 + i));
    }
    let out = t.rewind([OsStr::new("backup"), big.as_os_str()]);
    (t, mount, small, out)
}

#[test]
fn full_disk_fails_the_backup_and_leaves_the_repository_valid() {
    let (t, _mount, small, out) = fill_the_disk();
    expect_code(&out, 1, "backup onto a full disk");
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot_ids(&t).len(), 1);
    let leftovers: Vec<_> = fault::files_below(&t.repo())
        .into_iter()
        .filter(|p| p.file_name().unwrap().as_bytes().starts_with(b".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let (c, report) = check(&t, &["--read-data"]);
    assert_eq!(c, Some(0), "{report}");
    let target = t.join("out");
    t.restore("latest", &target);
    assert_eq!(
        fs::read(restored(&target, &small).join("f")).unwrap(),
        b"fits easily"
    );

    // With room again, backups work.
    tree::file(&small.join("g"), &tree::noise(2 << 20, 3));
    t.backup(&small);
    t.ok(["check", "--read-data"]);
}

#[test]
fn full_disk_error_line_names_enospc() {
    let (_t, _mount, _small, out) = fill_the_disk();
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("rewind: error:"))
        .unwrap_or("");
    assert!(line.contains("No space left on device"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("warning:")),
        "a repository write failure is not a source warning:\n{err}"
    );
}

#[test]
fn backups_killed_at_random_moments_leave_a_valid_repository() {
    let t = TempRepo::new();
    let src = t.join("src");
    let base = src.join("base");
    fs::create_dir_all(&base).unwrap();
    for i in 0..4 {
        tree::file(&base.join(format!("b{i}")), &tree::noise(1 << 20, 200 + i));
    }
    tree::file(&base.join("text"), &b"the same line again\n".repeat(50_000));
    fs::create_dir_all(src.join("round")).unwrap();
    let pool = tree::noise(20 << 20, 99);
    let round_data = |round: u8| {
        let mut v = pool.clone();
        v.iter_mut().step_by(16 << 10).for_each(|b| *b = round);
        v
    };
    let write_round = |round: u8| {
        tree::file(&src.join("round/data.bin"), &round_data(round));
        tree::file(
            &src.join("round/n.txt"),
            format!("round {round}").as_bytes(),
        );
    };

    let backup = |round: u8| {
        write_round(round);
        let tag = format!("r{round}");
        // --force: every round reads everything, so each takes as long as
        // the timed first one and a kill lands mid-backup.
        t.cmd([
            OsStr::new("backup"),
            OsStr::new("--force"),
            OsStr::new("--tag"),
            OsStr::new(&tag),
            src.as_os_str(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    };

    // A whole backup first, to time one; then kills anywhere in that time.
    let started = Instant::now();
    assert!(backup(0).wait().unwrap().success());
    let span = started.elapsed().as_millis() as u64 * 11 / 10 + 1;
    let mut rng = Rng::from_env_or_clock();
    let mut killed = 0;
    for round in 1..13u8 {
        let mut child = backup(round);
        std::thread::sleep(Duration::from_millis(rng.below(span)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let (c, report) = check(&t, &[]);
        assert_eq!(c, Some(0), "after round {round}: {report}");
    }
    assert!(
        killed >= 3,
        "only {killed} backups were killed (one takes {span} ms)"
    );
    assert!(backup(99).wait().unwrap().success());
    let (c, report) = check(&t, &["--read-data"]);
    assert_eq!(c, Some(0), "{report}");

    // Every snapshot that exists is whole.
    let snaps = json(&t.ok(["snapshots", "--json"]));
    for s in snaps.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let round: u8 = s["tags"][0].as_str().unwrap()[1..].parse().unwrap();
        let target = t.join(format!("out-{id}"));
        t.restore(id, &target);
        let back = restored(&target, &src);
        // The source's atimes move as this loop reads it; the snapshots' do not.
        let opts = compare::Options {
            atime: false,
            ..Default::default()
        };
        compare::assert_same(&base, &back.join("base"), opts);
        assert!(
            fs::read(back.join("round/data.bin")).unwrap() == round_data(round),
            "round {round}: data"
        );
        assert_eq!(
            fs::read(back.join("round/n.txt")).unwrap(),
            format!("round {round}").as_bytes()
        );
        fs::remove_dir_all(&target).unwrap();
    }
}
