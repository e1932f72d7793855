//! A target that changes while restore runs: names in it swapped for
//! symlinks to a directory outside, the target itself too. Restore sets
//! metadata only through descriptors it opened itself, so nothing outside
//! the target ever changes, whatever the timing.

use super::{restore, spawn_restore, spec};
use crate::common::{compare, stderr, tree, TempRepo};
use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// A directory tree with fixed metadata, built the same way twice: one is
/// exposed to the restore, the other is what it must still be.
fn bystander(dir: &Path) {
    fs::create_dir_all(dir.join("inner")).unwrap();
    for name in ["precious", "f000", "inner/f001"] {
        tree::file(&dir.join(name), name.as_bytes());
        tree::chmod(&dir.join(name), 0o640);
        tree::chown(&dir.join(name), 111, 222);
        tree::set_xattr(&dir.join(name), "user.bystander", b"yes");
        tree::set_times(&dir.join(name), (1_000_000_000, 0), (1_000_000_000, 5));
    }
    tree::mknod(&dir.join("fifo"), libc::S_IFIFO | 0o600, 0);
    tree::set_times(&dir.join("fifo"), (1_000_000_000, 0), (1_000_000_000, 6));
    for d in [dir.join("inner"), dir.to_path_buf()] {
        tree::chmod(&d, 0o755);
        tree::chown(&d, 111, 222);
        tree::set_xattr(&d, "user.bystander", b"dir");
        tree::set_times(&d, (1_000_000_000, 0), (1_000_000_000, 7));
    }
}

/// `dir` is still exactly `reference` (owner, mode, mtime, xattrs, content,
/// entries), its own metadata included.
fn assert_untouched(dir: &Path, reference: &Path, what: &str) {
    let opts = compare::Options {
        atime: false,
        root_meta: true,
        ..Default::default()
    };
    let diffs = compare::differences(reference, dir, opts);
    assert!(
        diffs.is_empty(),
        "{what}: outside the target changed:\n{diffs:#?}"
    );
}

/// A source whose every entry has metadata unlike the bystander's.
fn source(src: &Path) {
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for i in 0..300 {
        let f = src.join(format!("sub/f{i:03}"));
        tree::file(&f, format!("{i}").as_bytes());
        tree::chmod(&f, 0o604);
    }
    tree::file(&src.join("sub/deeper/x"), b"x");
    tree::file(&src.join("precious"), b"restored");
    symlink("precious", src.join("sub/link")).unwrap();
    tree::mknod(&src.join("sub/fifo"), libc::S_IFIFO | 0o606, 0);
    for d in ["sub/deeper", "sub", ""] {
        let d = src.join(d);
        tree::chmod(&d, 0o711);
        tree::chown(&d, 4321, 4321);
        tree::set_xattr(&d, "user.restored", b"1");
        tree::set_times(&d, (1_700_000_000, 0), (1_700_000_000, 0));
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Until `stop`: swap `name` in directory `dir` (an open descriptor, so the
/// swapping stays inside the real directory whatever happens to its path)
/// for a symlink to `outside`, and back.
fn swapper(dir: fs::File, name: &str, outside: PathBuf, stop: Arc<AtomicBool>) {
    let (name, moved) = (c(Path::new(name)), c(Path::new(&format!("{name}.moved"))));
    let to = c(&outside);
    let d = dir.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        if unsafe { libc::renameat(d, name.as_ptr(), d, moved.as_ptr()) } != 0 {
            thread::yield_now();
            continue;
        }
        unsafe { libc::symlinkat(to.as_ptr(), d, name.as_ptr()) };
        for _ in 0..200 {
            std::hint::spin_loop();
        }
        put_back(d, &name, &moved);
    }
}

/// The real directory back under its name, if it is away and a symlink (or
/// nothing) is there.
fn put_back(d: i32, name: &CString, moved: &CString) {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let is_link = unsafe { libc::fstatat(d, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }
        == 0
        && st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    if is_link {
        unsafe { libc::unlinkat(d, name.as_ptr(), 0) };
    }
    unsafe { libc::renameat(d, moved.as_ptr(), d, name.as_ptr()) };
}

/// Many restores, each into a target whose `sub` and which itself are
/// swapped for symlinks to outside directories for as long as it runs.
#[test]
fn metadata_never_lands_outside_a_target_swapped_under_restore() {
    let t = TempRepo::new();
    let src = t.join("src");
    source(&src);
    t.backup(&src);
    let (outside, outside2) = (t.join("outside"), t.join("outside2"));
    let reference = t.join("reference");
    for d in [&outside, &outside2, &reference] {
        bystander(d);
    }
    let mut ok_rounds = 0;
    for round in 0..20 {
        let name = format!("target{round}");
        let target = t.join(&name);
        let stop = Arc::new(AtomicBool::new(false));
        let mut child = spawn_restore(&t, &spec(&src), &target, &[]);
        // Once restore has made the target and is at work in it.
        let started = loop {
            if fs::read_dir(&target).is_ok_and(|mut d| d.next().is_some()) {
                break true;
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            thread::yield_now();
        };
        let mut racers = Vec::new();
        if started {
            let real = fs::File::open(&target).unwrap();
            let (s, o) = (stop.clone(), outside.clone());
            racers.push(thread::spawn(move || swapper(real, "sub", o, s)));
            let parent = fs::File::open(t.path()).unwrap();
            let (s, o, n) = (stop.clone(), outside2.clone(), name.clone());
            racers.push(thread::spawn(move || swapper(parent, &n, o, s)));
        }
        let out = child.wait_with_output().unwrap();
        stop.store(true, Ordering::Relaxed);
        for r in racers {
            r.join().unwrap();
        }
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(3)),
            "round {round}: exit {code:?}\n{}",
            stderr(&out)
        );
        ok_rounds += usize::from(code == Some(0));
        assert_untouched(&outside, &reference, &format!("round {round}, sub swapped"));
        assert_untouched(
            &outside2,
            &reference,
            &format!("round {round}, target swapped"),
        );
    }
    eprintln!("{ok_rounds} of 20 rounds restored without an error");
}

/// Symlinks planted in the target before an `--overwrite` restore, where
/// the snapshot has a directory, a file, a FIFO and a symlink, are replaced,
/// never followed.
#[test]
fn planted_symlinks_are_replaced_and_what_they_point_to_is_untouched() {
    let t = TempRepo::new();
    let src = t.join("src");
    source(&src);
    t.backup(&src);
    let (outside, reference) = (t.join("outside"), t.join("reference"));
    bystander(&outside);
    bystander(&reference);
    let target = t.join("out");
    fs::create_dir_all(target.join("sub")).unwrap();
    symlink(outside.join("inner"), target.join("sub/deeper")).unwrap();
    symlink(outside.join("precious"), target.join("precious")).unwrap();
    symlink(outside.join("fifo"), target.join("sub/fifo")).unwrap();
    symlink(outside.join("f000"), target.join("sub/link")).unwrap();
    symlink(outside.join("f000"), target.join("sub/f000")).unwrap();

    let out = restore(&t, &spec(&src), &target, &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_untouched(&outside, &reference, "planted symlinks");
    let opts = compare::Options {
        root_meta: true,
        ..Default::default()
    };
    compare::assert_same(&src, &target, opts);
}
