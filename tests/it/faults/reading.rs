//! Unreadable, growing and vanishing source files: each is named, and the
//! rest is saved.

use super::{code, expect_code, json, snapshot_ids};
use crate::common::fault::{self, as_nobody, NOBODY};
use crate::common::{restored, stderr, stdout, tree, TempRepo};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Files out of `candidates` named in `warning:` lines that say `what`.
fn warned(err: &str, candidates: &[PathBuf], what: &str) -> BTreeSet<PathBuf> {
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains(what))
        .collect();
    candidates
        .iter()
        .filter(|p| {
            let p = format!("{}: ", p.display());
            lines.iter().any(|l| l.contains(&p))
        })
        .cloned()
        .collect()
}

#[test]
fn unreadable_file_and_directory_are_named_exit_3_and_the_rest_is_saved() {
    let t = TempRepo::new();
    fault::open_up(t.path());
    let src = t.join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    tree::file(&src.join("readable"), b"anyone may read this");
    tree::file(&src.join("dir/inner"), &tree::noise(300_000, 1));
    tree::file(&src.join("secret"), b"root only");
    tree::chmod(&src.join("secret"), 0o000);
    fs::create_dir(src.join("closed")).unwrap();
    tree::file(&src.join("closed/hidden"), b"behind a closed door");
    tree::chmod(&src.join("closed"), 0o000);
    fault::chown_tree(&t.repo(), NOBODY, NOBODY);

    let mut cmd = t.cmd([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
    let out = as_nobody(&mut cmd).current_dir(t.path()).output().unwrap();
    expect_code(&out, 3, "backup with unreadable entries");
    let err = stderr(&out);
    for p in ["secret", "closed"] {
        let line = format!("{}: Permission denied", src.join(p).display());
        assert!(err.contains(&line), "stderr does not name {p}:\n{err}");
    }
    assert!(err.contains("2 entries could not be read"), "{err}");
    let v = json(&stdout(&out));
    assert_eq!(v["summary"]["errors"], 2, "{v}");

    // The snapshot holds everything else, byte for byte.
    assert_eq!(
        snapshot_ids(&t),
        vec![v["id"].as_str().unwrap().to_string()]
    );
    let target = t.join("out");
    t.restore("latest", &target);
    let back = restored(&target, &src);
    for p in ["readable", "dir/inner"] {
        assert_eq!(
            fs::read(back.join(p)).unwrap(),
            fs::read(src.join(p)).unwrap(),
            "{p}"
        );
    }
    assert!(!back.join("secret").exists());
    assert!(!back.join("closed/hidden").exists());
    t.ok(["check", "--read-data"]);
}

#[test]
fn file_growing_while_read_is_warned_and_saved_as_read() {
    // The file grows by appends all through the backup; the second stat must
    // notice, and what was saved must be exactly a prefix of the file.
    let content = tree::noise(40 << 20, 5);
    for attempt in 0..3 {
        let t = TempRepo::new();
        let src = t.join("src");
        fs::create_dir_all(&src).unwrap();
        let still = tree::file(&src.join("still.txt"), b"not changing");
        let log = tree::file(&src.join("growing.log"), &content[..16 << 20]);
        let done = AtomicBool::new(false);
        let out = std::thread::scope(|s| {
            s.spawn(|| {
                use std::io::Write;
                let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
                let mut at = 16 << 20;
                while !done.load(Ordering::Relaxed) && at < content.len() {
                    f.write_all(&content[at..at + (64 << 10)]).unwrap();
                    at += 64 << 10;
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let out = t.rewind([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
            done.store(true, Ordering::Relaxed);
            out
        });
        let err = stderr(&out);
        assert!(
            matches!(code(&out), Some(0 | 3)),
            "exit {:?}: {err}",
            code(&out)
        );
        let target = t.join("out");
        t.restore("latest", &target);
        let back = restored(&target, &src);
        let saved = fs::read(back.join("growing.log")).unwrap();
        assert!(saved.len() >= 16 << 20, "saved {} bytes", saved.len());
        assert!(
            saved == content[..saved.len()],
            "the saved file is not a prefix of what was written"
        );
        assert_eq!(
            fs::read(back.join("still.txt")).unwrap(),
            fs::read(&still).unwrap()
        );
        if err.contains("changed while being read") {
            assert!(
                err.contains(&format!("{}: changed", log.display())),
                "{err}"
            );
            return;
        }
        eprintln!("attempt {attempt}: the append did not overlap the read; again");
    }
    panic!("a file appended to all through the backup was never reported as changed");
}

#[test]
fn files_vanishing_during_backup_are_named_and_the_rest_is_saved() {
    // A thread deletes the odd files, last first, as soon as the backup has
    // opened the directory. The walker meets some of them after listing: each
    // must be named, and every even file must be saved intact.
    const N: usize = 3000;
    for attempt in 0..5 {
        let t = TempRepo::new();
        let src = t.join("src");
        let dir = src.join("many");
        fs::create_dir_all(&dir).unwrap();
        let name = |i: usize| dir.join(format!("f{i:05}"));
        for i in 0..N {
            tree::file(&name(i), format!("content of file {i}").as_bytes());
        }
        let child = t.spawn([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
        wait_until_open(child.id(), &dir);
        for i in (0..N).rev().filter(|i| i % 2 == 1) {
            fs::remove_file(name(i)).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        let odd: Vec<PathBuf> = (0..N).filter(|i| i % 2 == 1).map(name).collect();
        let vanished = warned(&err, &odd, "vanished during backup");
        // Unlinking a file changes its ctime: one deleted while being read is
        // saved whole, with a warning that it changed.
        let changed = warned(&err, &odd, "changed while being read");
        let warnings = err.lines().filter(|l| l.starts_with("warning:")).count();
        let summary = err
            .lines()
            .filter(|l| l.contains("could not be read"))
            .count();
        let expected = vanished.len() + changed.len() + summary;
        assert_eq!(warnings, expected, "unexpected warnings:\n{err}");
        let want = if warnings == 0 { 0 } else { 3 };
        expect_code(&out, want, &format!("backup with {warnings} warnings"));
        let target = t.join("out");
        t.restore("latest", &target);
        let back = restored(&target, &dir);
        for i in 0..N {
            let want = format!("content of file {i}");
            match fs::read(back.join(format!("f{i:05}"))) {
                Ok(got) => assert_eq!(got, want.as_bytes(), "f{i:05}"),
                Err(_) if i % 2 == 0 => {
                    panic!("f{i:05} was never touched but is not in the snapshot")
                }
                Err(_) => {}
            }
        }
        for p in &vanished {
            let rel = p.file_name().unwrap();
            assert!(
                !back.join(rel).exists(),
                "{} was named as vanished but restored:\n{err}",
                p.display()
            );
        }
        for p in &changed {
            assert!(
                back.join(p.file_name().unwrap()).exists(),
                "{} was read but not saved",
                p.display()
            );
        }
        t.ok(["check", "--read-data"]);
        if !vanished.is_empty() {
            return;
        }
        eprintln!("attempt {attempt}: the deletions missed the walk; again");
    }
    panic!("files deleted during a backup were never reported as vanished");
}

/// Wait (up to 5 s) until process `pid` has `dir` open.
fn wait_until_open(pid: u32, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let fds = PathBuf::from(format!("/proc/{pid}/fd"));
    while Instant::now() < deadline {
        if let Ok(rd) = fs::read_dir(&fds) {
            if rd
                .flatten()
                .any(|e| fs::read_link(e.path()).is_ok_and(|l| l == dir))
            {
                return;
            }
        } else {
            return; // exited
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
