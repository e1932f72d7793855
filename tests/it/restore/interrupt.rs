//! SIGINT or SIGTERM stops a restore: no more files are made, a file not
//! fully written is removed (none is left looking complete), the
//! directories it was in get their metadata, and it says it was interrupted.

use super::{restore, spawn_restore, spec};
use crate::common::{compare, stderr, tree, TempRepo};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

fn source(src: &Path) {
    for d in 0..4 {
        let dir = src.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..30 {
            tree::file(
                &dir.join(format!("f{f:02}")),
                &tree::noise(200_000, d * 100 + f),
            );
        }
        tree::file(&dir.join("big"), &tree::noise(8 << 20, d));
        tree::chmod(&dir, 0o750);
        tree::set_times(&dir, (1_500_000_000, 0), (1_500_000_000 + d as i64, 0));
    }
}

/// Everything in `target` is exactly as in `src` (whatever is missing).
fn assert_no_partial_entries(src: &Path, target: &Path, what: &str) {
    let opts = compare::Options {
        atime: false,
        ..Default::default()
    };
    let only_src = format!(": only in {}", src.display());
    let wrong: Vec<String> = compare::differences(src, target, opts)
        .into_iter()
        .filter(|d| !d.ends_with(&only_src))
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: entries not as in the snapshot:\n{wrong:#?}"
    );
}

#[test]
fn a_signal_stops_restore_with_no_half_written_file_left() {
    let t = TempRepo::new();
    let src = t.join("src");
    source(&src);
    t.backup(&src);
    let mut stopped_midway = 0;
    for (round, sig) in [libc::SIGINT, libc::SIGTERM, libc::SIGINT, libc::SIGTERM]
        .into_iter()
        .enumerate()
    {
        let target = t.join(format!("out{round}"));
        let child = spawn_restore(&t, &spec(&src), &target, &["--threads", "2"]);
        let pid = child.id() as i32;
        // Stop it as soon as it has begun, so that the signal is waiting
        // when it goes on: it cannot have finished by then.
        let start = Instant::now();
        while !fs::read_dir(&target).is_ok_and(|mut d| d.next().is_some()) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "restore did not start"
            );
            std::thread::yield_now();
        }
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        unsafe { libc::kill(pid, sig) };
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        if out.status.code() == Some(0) {
            // It was past its last check already; nothing to look at.
            continue;
        }
        stopped_midway += 1;
        assert!(
            out.status.code() == Some(130),
            "round {round}: {:?}\n{err}",
            out.status
        );
        assert!(err.contains("interrupted"), "round {round}: {err}");
        assert_no_partial_entries(&src, &target, &format!("round {round}"));
        let kept = crate::common::fault::files_below(&target).len();
        eprintln!("round {round}: stopped with {kept} of 124 files restored");

        // A second restore over it completes it.
        let out = restore(&t, &spec(&src), &target, &["--overwrite"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let opts = compare::Options {
            atime: false,
            ..Default::default()
        };
        compare::assert_same(&src, &target, opts);
    }
    assert!(stopped_midway > 0, "no restore was stopped before its end");
}
