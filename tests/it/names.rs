//! Paths longer than PATH_MAX, built and checked with directory fds.

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

const DEPTH: usize = 30;

fn component(i: usize) -> CString {
    CString::new(format!("{i:02}{}", "d".repeat(200))).unwrap()
}

#[test]
fn paths_longer_than_path_max_back_up_and_restore() {
    let t = TempRepo::new();
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut fd = root_fd(&src);
    for i in 0..DEPTH {
        let c = component(i);
        assert_eq!(
            unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o750) },
            0
        );
        fd = open_dir(fd.as_raw_fd(), &c);
    }
    let leaf = CString::new("leaf").unwrap();
    let f = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            leaf.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY,
            0o640,
        )
    };
    assert!(f >= 0);
    assert_eq!(
        unsafe { libc::write(f, b"deep down".as_ptr().cast(), 9) },
        9
    );
    unsafe { libc::close(f) };
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
    let f = unsafe { libc::openat(fd.as_raw_fd(), leaf.as_ptr(), libc::O_RDONLY) };
    assert!(f >= 0, "leaf missing after restore");
    let mut buf = [0u8; 64];
    let n = unsafe { libc::read(f, buf.as_mut_ptr().cast(), buf.len()) };
    unsafe { libc::close(f) };
    assert_eq!(&buf[..n as usize], b"deep down");
}

#[test]
fn a_tree_four_thousand_levels_deep() {
    const LEVELS: usize = 4000;
    let t = TempRepo::new();
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let d = CString::new("d").unwrap();
    let mut fd = root_fd(&src);
    for _ in 0..LEVELS {
        assert_eq!(
            unsafe { libc::mkdirat(fd.as_raw_fd(), d.as_ptr(), 0o755) },
            0
        );
        fd = open_dir(fd.as_raw_fd(), &d);
    }
    let leaf = CString::new("leaf").unwrap();
    let f = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            leaf.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY,
            0o600,
        )
    };
    assert!(f >= 0);
    unsafe { libc::close(f) };
    t.backup(&src);
    let target = t.join("out");
    t.restore("latest", &target);
    let mut fd = root_fd(&restored(&target, &src));
    for _ in 0..LEVELS {
        fd = open_dir(fd.as_raw_fd(), &d);
    }
    let f = unsafe { libc::openat(fd.as_raw_fd(), leaf.as_ptr(), libc::O_RDONLY) };
    assert!(f >= 0, "leaf missing after restore");
    unsafe { libc::close(f) };
}
