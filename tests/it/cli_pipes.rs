//! A closed stdout (`rewind … | head`) ends a command quietly: no panic, no
//! abort, no message, and the exit code of its outcome (a difference found
//! stays 1).

use crate::common::{stderr, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Output, Stdio};

/// A pipe whose reading end is already closed: every write to the other end
/// fails with EPIPE, whenever the command writes.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are fresh descriptors owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

/// Run `rewind ARGS` with stdout into a closed pipe.
fn into_closed_pipe<S: AsRef<OsStr>>(t: &TempRepo, args: &[S]) -> Output {
    t.cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap()
}

/// Exit `code`, and nothing on stderr (no panic message, no error).
fn assert_quiet(out: &Output, code: i32, what: &str) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert_eq!(err, "", "{what}");
}

#[test]
fn every_command_ends_quietly_on_a_closed_stdout() {
    let t = TempRepo::new();
    let src = t.join("src");
    for i in 0..200 {
        tree::file(&src.join(format!("f{i:03}")), format!("{i}\n").as_bytes());
    }
    let first = t.backup(&src);
    tree::file(&src.join("f000"), b"changed\n");
    t.backup(&src);
    let s = src.to_str().unwrap();
    let spec = format!("latest:{s}");
    let file = format!("{s}/f001");
    for args in [
        vec!["snapshots"],
        vec!["snapshots", "--json"],
        vec!["ls", "latest"],
        vec!["ls", "-l", &spec],
        vec!["ls", "--json", &spec],
        vec!["cat", "latest", &file],
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["check"],
        vec!["check", "--json"],
        vec!["diff", &first, "latest"],
        vec!["diff", "latest", s],
        vec!["verify", &spec, s],
        vec!["forget", "--keep-last", "5", "--dry-run"],
        vec!["prune", "--dry-run"],
        vec!["tag", "latest", "--add", "piped"],
        vec!["completion", "bash"],
        vec!["man"],
        vec!["unlock"],
    ] {
        let out = into_closed_pipe(&t, &args);
        let code = if args[0] == "diff" && args[1] == first {
            1 // the two snapshots differ in f000
        } else {
            0
        };
        assert_quiet(&out, code, &args.join(" "));
    }
    // The tag was set although its report could not be printed.
    let tagged = t.ok(["snapshots", "--tag", "piped", "--json"]);
    assert!(tagged.contains("\"piped\""), "{tagged}");
}

/// Work whose outcome is decided before it prints is done, and its exit
/// code kept: a difference stays 1, a backup is saved, forget forgets.
#[test]
fn outcomes_survive_a_closed_stdout() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("a"), b"a\n");
    t.backup(&src);
    tree::file(&src.join("b"), b"new\n");
    let s = src.to_str().unwrap();
    let spec = format!("latest:{s}");
    assert_quiet(
        &into_closed_pipe(&t, &["diff", "latest", s]),
        1,
        "diff live",
    );
    assert_quiet(&into_closed_pipe(&t, &["verify", &spec, s]), 1, "verify");
    assert_quiet(
        &into_closed_pipe(&t, &["diff", "latest", s, "--json"]),
        1,
        "diff --json",
    );
    let before = t.ok(["snapshots", "--json"]);
    assert_quiet(
        &into_closed_pipe(&t, &["backup", "--json", s]),
        0,
        "backup --json",
    );
    assert_quiet(&into_closed_pipe(&t, &["backup", s]), 0, "backup");
    let count = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(&t.ok(["snapshots", "--json"])), count(&before) + 2);
    assert_quiet(
        &into_closed_pipe(&t, &["forget", "--keep-last", "1"]),
        0,
        "forget",
    );
    assert_eq!(count(&t.ok(["snapshots", "--json"])), 1);
    // A damaged repository stays a failure.
    for e in fs::read_dir(t.repo().join("index")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let out = into_closed_pipe(&t, &["check"]);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}
