//! SIGINT and SIGTERM end a backup (and check, prune) cleanly: exit 130,
//! "interrupted" on stderr, no lock and no temporary file left, no snapshot
//! written; the next backup and `check` succeed.

use crate::common::{stderr, tree, TempRepo};
use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Files under `dir` whose name starts with `.tmp-`, at any depth.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(temp_files(&p));
        } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
            out.push(p.display().to_string());
        }
    }
    out
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Wait (up to a minute) until `ready` holds or the child has exited;
/// returns whether it is still running.
fn wait_for(child: &mut Child, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            return true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never became ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill has no memory effects; the child is not reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// After an interrupted command: exit 130, "interrupted", nothing left
/// behind, and the repository usable.
fn assert_clean_stop(t: &TempRepo, child: Child, snapshots_before: usize, what: &str) {
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{what}: {err}");
    assert!(err.contains("rewind: interrupted"), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert_eq!(count(&t.repo().join("locks")), 0, "{what}: a lock was left");
    assert_eq!(temp_files(&t.repo()), Vec::<String>::new(), "{what}");
    assert_eq!(
        count(&t.repo().join("snapshots")),
        snapshots_before,
        "{what}: a snapshot was written"
    );
    let check = t.rewind(["check"]);
    assert!(check.status.success(), "{what}: {}", stderr(&check));
}

/// A dump command that never ends, in its own process group: SIGINT and
/// SIGTERM stop the backup, and the command (a pipeline under `sh`) is
/// ended too.
#[test]
fn a_backup_waiting_on_a_dump_command_stops_on_sigint_and_sigterm() {
    let t = TempRepo::new();
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let marker = t.join(format!("dump-started-{name}"));
        // A sleep no other process on the machine has, to find it by.
        let token = format!("1000.{}{sig}", std::process::id());
        // Silent after a first burst, as a dump is while a large query
        // runs. (Its stderr goes nowhere, so a survivor cannot hold this
        // test's pipes open.)
        let cmd = format!(
            "exec 2>/dev/null; head -c 3000000 /dev/zero; touch {}; sleep {token}; echo done",
            marker.display()
        );
        let child = t
            .cmd([
                "backup",
                "--stdin-name",
                "db/site.sql",
                "--stdin-from-command",
                &cmd,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = child;
        assert!(
            wait_for(&mut child, || marker.exists()),
            "{name}: ended early"
        );
        signal(&child, sig);
        assert_clean_stop(&t, child, 0, name);
        // The command's process group (`sh` and its `sleep`) was ended with it.
        let left: Vec<i32> = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c == format!("sleep\0{token}\0").as_bytes())
            })
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        for pid in &left {
            // SAFETY: kill has no memory effects; this test started the sleep.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        assert!(left.is_empty(), "{name}: the dump command still runs");
    }
    // The next backup succeeds.
    t.ok([
        "backup",
        "--stdin-name",
        "db/site.sql",
        "--stdin-from-command",
        "echo done",
    ]);
    assert_eq!(t.ok(["cat", "latest:/db/site.sql"]), "done\n");
}

/// A backup reading a large tree stops at a signal, with its packs
/// written so far kept (indexed, so the next backup does not store them
/// again) and its open ones removed.
#[test]
fn a_backup_of_a_large_tree_stops_on_sigint_and_sigterm() {
    let t = TempRepo::new();
    let src = t.join("src");
    for i in 0..48 {
        tree::file(&src.join(format!("big{i:02}")), &tree::noise(8 << 20, i));
    }
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let mut child = t
            .cmd([
                "backup".as_ref(),
                "--threads".as_ref(),
                "1".as_ref(),
                src.as_os_str(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Once it writes packs, it is well inside the walk.
        let data = t.repo().join("data");
        let running = wait_for(&mut child, || !temp_files(&data).is_empty());
        assert!(
            running,
            "{name}: the backup ended before it could be stopped"
        );
        signal(&child, sig);
        assert_clean_stop(&t, child, 0, name);
    }
    let out = t.rewind(["backup".as_ref(), "--json".as_ref(), src.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    t.ok(["check", "--read-data"]);
}

/// `check --read-data` stops at a signal too, and leaves no lock.
#[test]
fn check_stops_on_sigint() {
    let t = TempRepo::new();
    let src = t.join("src");
    for i in 0..24 {
        tree::file(
            &src.join(format!("big{i:02}")),
            &tree::noise(8 << 20, 100 + i),
        );
    }
    t.backup(&src);
    let mut child = t
        .cmd(["check", "--read-data"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let locks = t.repo().join("locks");
    assert!(
        wait_for(&mut child, || count(&locks) > 0),
        "check ended before it could be stopped"
    );
    signal(&child, libc::SIGINT);
    assert_clean_stop(&t, child, 1, "check");
}

/// Whether process `pid` catches SIGINT (its handler is installed).
fn catches_sigint(pid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGINT - 1)) != 0)
}

/// A backup, prune or forget waiting (`--lock-wait`) for another's lock
/// stops at SIGINT, leaving no lock of its own.
#[test]
fn commands_waiting_for_a_lock_stop_on_sigint() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"x");
    t.backup(&src);
    // An exclusive lock of a live process (this test's), fresh.
    let repo = crate::common::open_repo(&t.repo());
    let held = repo.write_lock(&repo.lock_info(true, "prune")).unwrap();
    drop(repo);
    let s = src.to_str().unwrap();
    for args in [
        vec!["--lock-wait", "30s", "backup", s],
        vec!["--lock-wait", "30s", "prune"],
        vec!["--lock-wait", "30s", "forget", "--keep-last", "1"],
    ] {
        let mut child = t
            .cmd(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(
            wait_for(&mut child, || catches_sigint(pid)),
            "{args:?} ended: {}",
            stderr(&child.wait_with_output().unwrap())
        );
        signal(&child, libc::SIGINT);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("rewind: interrupted"),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            count(&t.repo().join("locks")),
            1,
            "{args:?}: its lock was left"
        );
    }
    fs::remove_file(t.repo().join("locks").join(&held)).unwrap();
    assert_eq!(count(&t.repo().join("snapshots")), 1);
}
