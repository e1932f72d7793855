//! Very deep trees: restore (and verify of what it restored) holds a
//! bounded number of directories open and memory linear (and small) in
//! depth, so 30,000 levels restore and verify under a limit of 256 open
//! files.

use crate::common::{fault, TempRepo};
use rewind::format::tree::Time;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

const LEVELS: usize = 30_000;

/// The mtime of the directory `level` steps down.
fn mtime(level: usize) -> i64 {
    1_600_000_000 + level as i64
}

/// A snapshot of `/deep/d/d/…/d/leaf`, `LEVELS` directories named `d`
/// with modes and mtimes of their level.
fn deep_snapshot(t: &TempRepo) {
    crate::common::deep_chain_snapshot(t, b"at the bottom", 1_700_000_000, LEVELS, &|level, d| {
        d.mode = if level % 2 == 0 { 0o750 } else { 0o705 };
        d.mtime = Time {
            sec: mtime(level),
            nsec: 0,
        };
    });
}

fn open_dir(parent: i32, name: &std::ffi::CStr) -> OwnedFd {
    let fd = unsafe { libc::openat(parent, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn fstat(fd: &OwnedFd) -> libc::stat {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
    st
}

/// Run `cmd` with at most `files` open descriptors; its exit code, stderr,
/// and peak resident memory in KiB.
fn run_limited(mut cmd: std::process::Command, files: u64) -> (Option<i32>, String, u64) {
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: files,
                rlim_max: files,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        stderr.read_to_string(&mut err).unwrap();
        err
    });
    let (status, peak) = crate::common::wait_peak_rss(&mut child);
    (status.code(), reader.join().unwrap(), peak)
}

#[test]
fn thirty_thousand_levels_restore_with_256_open_files() {
    let t = TempRepo::new();
    deep_snapshot(&t);
    // On a tmpfs: fast to fill, and gone at once when unmounted
    // (`remove_dir_all` takes a descriptor per level).
    let mnt = fault::Tmpfs::mount(&t.join("mnt"), "256m");
    let target = t.join("mnt/out");
    let cmd = t.cmd([
        OsStr::new("restore"),
        OsStr::new("latest:/deep"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let (code, err, rss_kib) = run_limited(cmd, 256);
    assert_eq!(code, Some(0), "restore of {LEVELS} levels:\n{err}");
    eprintln!("peak RSS of the restore: {rss_kib} KiB");
    // A tree blob and a name per level: a few MiB, not the ~1 GB that
    // keeping each level's full path took.
    assert!(rss_kib < 200 * 1024, "peak RSS {rss_kib} KiB");
    check_chain(&target);
    // verify walks the restore beside the snapshot under the same limit:
    // it holds a bounded number of the live directories open too.
    let verify = t.cmd([
        OsStr::new("verify"),
        OsStr::new("latest:/deep"),
        target.as_os_str(),
    ]);
    let (code, err, _) = run_limited(verify, 256);
    assert_eq!(code, Some(0), "verify of {LEVELS} levels:\n{err}");
    drop(mnt);
}

/// Every level is there with its mode and mtime, and the leaf at the bottom.
fn check_chain(target: &Path) {
    let root = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
    let mut fd = open_dir(libc::AT_FDCWD, &root);
    for level in 1..=LEVELS {
        fd = open_dir(fd.as_raw_fd(), c"d");
        let st = fstat(&fd);
        let mode = if level % 2 == 0 { 0o750 } else { 0o705 };
        assert_eq!(
            (st.st_mode & 0o7777, st.st_mtime),
            (mode, mtime(level)),
            "level {level}"
        );
    }
    let leaf = unsafe { libc::openat(fd.as_raw_fd(), c"leaf".as_ptr(), libc::O_RDONLY) };
    assert!(leaf >= 0, "no leaf at the bottom");
    let mut f = unsafe { std::fs::File::from_raw_fd(leaf) };
    let mut content = Vec::new();
    f.read_to_end(&mut content).unwrap();
    assert_eq!(content, b"at the bottom");
    assert_eq!(f.metadata().unwrap().mode() & 0o7777, 0o640);
}
