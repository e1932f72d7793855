//! A directory moved away while restore is below it, deeper than restore
//! keeps directories open: it cannot be opened again as the same directory,
//! so the rest of it is skipped with one error naming it, and nothing is
//! written anywhere else.

use super::{spawn_restore, spec};
use crate::common::{stderr, tree, TempRepo};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Levels of `chain` below `top/a`: more than restore keeps open.
const LEVELS: usize = 40;
/// Files at the bottom of the chain: restore is stopped while making them.
const BOTTOM: usize = 3000;
/// Files in `top` after `a`.
const AFTER: usize = 300;

/// `top/a/l01/…/l40/f0000…` and `top/z000…`: the `z` files come after the
/// chain in name order.
fn source(src: &Path) -> PathBuf {
    let mut bottom = PathBuf::from("top/a");
    for level in 1..=LEVELS {
        bottom.push(format!("l{level:02}"));
    }
    fs::create_dir_all(src.join(&bottom)).unwrap();
    for f in 0..BOTTOM {
        tree::file(&src.join(&bottom).join(format!("f{f:04}")), b"b");
    }
    for f in 0..AFTER {
        tree::file(&src.join(format!("top/z{f:03}")), b"z");
    }
    bottom
}

#[test]
fn a_directory_moved_away_loses_the_rest_of_it_with_one_error() {
    let t = TempRepo::new();
    let src = t.join("src");
    let bottom = source(&src);
    t.backup(&src);
    let mut caught = 0;
    for round in 0..10 {
        let target = t.join(format!("out{round}"));
        let child = spawn_restore(&t, &spec(&src), &target, &[]);
        let pid = child.id() as i32;
        let start = Instant::now();
        while !target.join(&bottom).join("f0000").exists() {
            assert!(start.elapsed() < Duration::from_secs(30), "no bottom");
            std::thread::yield_now();
        }
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        // Still making the bottom's files: it has not gone back up yet.
        let made = fs::read_dir(target.join(&bottom)).unwrap().count();
        let midway = made < BOTTOM;
        if midway {
            // `a` leaves `top`, and `top` goes: neither `..` of `a` nor the
            // name `top` leads back to the directory restore made.
            fs::rename(target.join("top/a"), target.join("moved_a")).unwrap();
            fs::rename(target.join("top"), target.join("old_top")).unwrap();
        }
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        if !midway {
            continue;
        }
        caught += 1;
        assert_eq!(out.status.code(), Some(3), "round {round}:\n{err}");
        let lost = target.join("top");
        let rest = "the rest of it is not restored";
        assert_eq!(err.matches(rest).count(), 1, "round {round}:\n{err}");
        let named = format!("{}: ", lost.display());
        assert!(err.contains(&named), "round {round}:\n{err}");
        assert!(err.contains("error: 1 entries could not"), "{err}");
        // The chain was finished where it went; nothing after it was made.
        let moved_bottom = target
            .join("moved_a")
            .join(bottom.strip_prefix("top/a").unwrap());
        assert_eq!(fs::read_dir(moved_bottom).unwrap().count(), BOTTOM);
        assert!(!lost.exists());
        let old: Vec<_> = fs::read_dir(target.join("old_top")).unwrap().collect();
        assert!(old.is_empty(), "round {round}: {old:?}");
    }
    assert!(caught > 0, "restore was never stopped at the bottom");
}
