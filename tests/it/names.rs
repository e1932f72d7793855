//! Paths longer than PATH_MAX, built and checked with directory fds, restored
//! and through the mount.

use crate::common::{restored, TempRepo};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn open_dir(parent: i32, name: &CString) -> OwnedFd {
    let fd = unsafe { libc::openat(parent, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn root_fd(p: &std::path::Path) -> OwnedFd {
    open_dir(libc::AT_FDCWD, &CString::new(p.to_str().unwrap()).unwrap())
}

/// Make `names` as a chain of directories below `root`; returns the deepest.
fn make_chain(root: &std::path::Path, names: impl Iterator<Item = CString>, mode: u32) -> OwnedFd {
    let mut fd = root_fd(root);
    for c in names {
        assert_eq!(
            unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), mode) },
            0
        );
        fd = open_dir(fd.as_raw_fd(), &c);
    }
    fd
}

/// Write file `leaf` with `content` in the open directory `dir`.
fn write_leaf(dir: &OwnedFd, content: &[u8], mode: u32) {
    let leaf = CString::new("leaf").unwrap();
    let flags = libc::O_CREAT | libc::O_WRONLY;
    let f = unsafe { libc::openat(dir.as_raw_fd(), leaf.as_ptr(), flags, mode) };
    assert!(f >= 0);
    let n = unsafe { libc::write(f, content.as_ptr().cast(), content.len()) };
    unsafe { libc::close(f) };
    assert_eq!(n, content.len() as isize);
}

/// The content of file `leaf` in the open directory `dir`.
fn read_leaf(dir: &OwnedFd) -> Vec<u8> {
    let leaf = CString::new("leaf").unwrap();
    let f = unsafe { libc::openat(dir.as_raw_fd(), leaf.as_ptr(), libc::O_RDONLY) };
    assert!(f >= 0, "leaf missing after restore");
    let mut buf = [0u8; 64];
    let n = unsafe { libc::read(f, buf.as_mut_ptr().cast(), buf.len()) };
    unsafe { libc::close(f) };
    buf[..n as usize].to_vec()
}

const DEPTH: usize = 30;

fn component(i: usize) -> CString {
    CString::new(format!("{i:02}{}", "d".repeat(200))).unwrap()
}

#[test]
fn paths_longer_than_path_max_back_up_restore_and_mount() {
    let t = TempRepo::new();
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_leaf(
        &make_chain(&src, (0..DEPTH).map(component), 0o750),
        b"deep down",
        0o640,
    );
    assert!(DEPTH * 203 > libc::PATH_MAX as usize);

    t.backup(&src);
    let target = t.join("out");
    t.restore("latest", &target);
    let mut fd = root_fd(&restored(&target, &src));
    for i in 0..DEPTH {
        let c = component(i);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::fstatat(fd.as_raw_fd(), c.as_ptr(), &mut st, 0) },
            0
        );
        assert_eq!(st.st_mode & 0o7777, 0o750, "level {i}");
        fd = open_dir(fd.as_raw_fd(), &c);
    }
    assert_eq!(read_leaf(&fd), b"deep down");

    // Through the mount, walked the same way.
    let m = crate::mount::guard::MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let mut fd = root_fd(&restored(&m.mnt, &src));
    for i in 0..DEPTH {
        fd = open_dir(fd.as_raw_fd(), &component(i));
    }
    assert_eq!(read_leaf(&fd), b"deep down");
}

#[test]
fn a_tree_four_thousand_levels_deep() {
    const LEVELS: usize = 4000;
    let t = TempRepo::new();
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let d = || CString::new("d").unwrap();
    write_leaf(
        &make_chain(&src, (0..LEVELS).map(|_| d()), 0o755),
        b"at the bottom",
        0o600,
    );
    t.backup(&src);
    let target = t.join("out");
    t.restore("latest", &target);
    let mut fd = root_fd(&restored(&target, &src));
    for _ in 0..LEVELS {
        fd = open_dir(fd.as_raw_fd(), &d());
    }
    assert_eq!(read_leaf(&fd), b"at the bottom");
}
