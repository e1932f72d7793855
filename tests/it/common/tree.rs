//! Builders of real trees with every kind of entry and metadata, straight
//! through libc (no helper binaries needed).

use std::ffi::CString;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

pub fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL")
}

fn check(r: libc::c_int, what: &str, p: &Path) {
    assert!(
        r == 0,
        "{what} {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Set an extended attribute without following symlinks.
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).unwrap();
    let r = unsafe {
        libc::lsetxattr(
            c(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(r, &format!("lsetxattr {name}"), p);
}

/// Owner, without following symlinks.
/// A uid and a gid that no user and no group has on this machine (from 1001
/// and 1002 up), so listings show them as numbers.
pub fn unnamed_ids() -> (u32, u32) {
    // SAFETY: getpwuid and getgrgid return pointers into static storage,
    // only compared with null here.
    let uid = (1001..)
        .find(|&u| unsafe { libc::getpwuid(u) }.is_null())
        .expect("a free uid");
    let gid = (1002..)
        .find(|&g| unsafe { libc::getgrgid(g) }.is_null())
        .expect("a free gid");
    (uid, gid)
}

pub fn chown(p: &Path, uid: u32, gid: u32) {
    check(
        unsafe { libc::lchown(c(p).as_ptr(), uid, gid) },
        "lchown",
        p,
    );
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// atime and mtime as (seconds, nanoseconds), without following symlinks.
pub fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c(p).as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(r, "utimensat", p);
}

pub fn mknod(p: &Path, mode: u32, dev: libc::dev_t) {
    check(unsafe { libc::mknod(c(p).as_ptr(), mode, dev) }, "mknod", p);
}

/// A POSIX ACL as the kernel stores it in `system.posix_acl_*`: entries of
/// (tag, perm, id). Tags: 1 user_obj, 2 user, 4 group_obj, 8 group, 16 mask, 32 other.
pub fn acl_bytes(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

pub const NO_ID: u32 = u32::MAX;

/// A deterministic pseudo-random buffer.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    // Every seed its own stream (`seed | 1` made 2 and 3 the same).
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x2545_F491_4F6C_DD1D)
        | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Write a file with `content` (its missing parent directories created).
pub fn file(p: &Path, content: &[u8]) -> PathBuf {
    if let Some(parent) = p.parent() {
        let _ = fs::create_dir_all(parent);
    }
    fs::write(p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p.to_path_buf()
}

/// A sparse file of `size` bytes with data `islands` at the given offsets.
pub fn sparse(p: &Path, size: u64, islands: &[(u64, &[u8])]) {
    let mut f = fs::File::create(p).unwrap();
    f.set_len(size).unwrap();
    for (off, data) in islands {
        f.seek(SeekFrom::Start(*off)).unwrap();
        f.write_all(data).unwrap();
    }
}

/// Build, under `root` (which must not exist), a tree with every kind of entry
/// and every kind of metadata rewind keeps. Needs root.
pub fn full(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let p = |s: &str| root.join(s);

    // Regular files: empty, small, multi-chunk, modes incl. setuid/setgid, owners.
    file(&p("empty"), b"");
    file(&p("hello.txt"), b"hello, world\n");
    file(&p("big.bin"), &noise(5 << 20, 7));
    file(
        &p("text.sql"),
        &b"INSERT INTO t VALUES (1, 'row');\n".repeat(100_000),
    );
    file(&p("setuid"), b"#!/bin/sh\n");
    chmod(&p("setuid"), 0o4755);
    file(&p("setgid"), b"x");
    chmod(&p("setgid"), 0o2750);
    file(&p("nothing"), b"no permissions");
    chmod(&p("nothing"), 0o000);
    file(&p("owned"), b"someone else's");
    chown(&p("owned"), 1234, 5678);
    file(&p("nobody"), b"nobody's");
    chown(&p("nobody"), 65534, 65534);

    // Directories: sticky, setgid, read-only, empty, nested.
    fs::create_dir_all(p("dirs/sticky")).unwrap();
    chmod(&p("dirs/sticky"), 0o1777);
    fs::create_dir_all(p("dirs/sgid")).unwrap();
    file(&p("dirs/sgid/inner"), b"in sgid");
    chmod(&p("dirs/sgid"), 0o2775);
    fs::create_dir_all(p("dirs/empty")).unwrap();
    fs::create_dir_all(p("dirs/a/b/c/d")).unwrap();
    file(&p("dirs/a/b/c/d/deep"), b"deep");
    fs::create_dir_all(p("dirs/readonly")).unwrap();
    file(&p("dirs/readonly/locked"), b"locked in");
    chmod(&p("dirs/readonly"), 0o555);
    chown(&p("dirs/a"), 42, 43);

    // Symlinks: relative, absolute, dangling, non-UTF-8 target; own owner and times.
    symlink("hello.txt", p("link")).unwrap();
    symlink("/etc/passwd", p("abslink")).unwrap();
    symlink("does/not/exist", p("dangling")).unwrap();
    symlink(std::ffi::OsStr::from_bytes(b"caf\xe9\xff"), p("weirdlink")).unwrap();
    let (uid, gid) = unnamed_ids();
    chown(&p("link"), uid, gid);

    // Hard links: a group of three across directories, and a pair.
    file(&p("hl1"), b"linked content");
    fs::hard_link(p("hl1"), p("dirs/hl2")).unwrap();
    fs::hard_link(p("hl1"), p("dirs/a/hl3")).unwrap();
    file(&p("pair1"), b"pair");
    fs::hard_link(p("pair1"), p("pair2")).unwrap();

    // Special files.
    mknod(&p("fifo"), libc::S_IFIFO | 0o640, 0);
    mknod(&p("socket"), libc::S_IFSOCK | 0o755, 0);
    mknod(&p("chardev"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mknod(&p("blockdev"), libc::S_IFBLK | 0o660, libc::makedev(7, 200));

    // Extended attributes in every namespace, and ACLs.
    set_xattr(&p("hello.txt"), "user.comment", b"a comment");
    set_xattr(&p("hello.txt"), "user.binary", &[0, 1, 2, 255]);
    set_xattr(&p("hello.txt"), "trusted.secret", b"root only");
    set_xattr(&p("big.bin"), "security.rewind-test", b"sec");
    set_xattr(&p("link"), "trusted.on-symlink", b"yes");
    set_xattr(&p("dirs/empty"), "user.dir", b"on a dir");
    let acl = acl_bytes(&[
        (1, 6, NO_ID),
        (2, 4, 1234),
        (4, 4, NO_ID),
        (16, 6, NO_ID),
        (32, 4, NO_ID),
    ]);
    set_xattr(&p("hello.txt"), "system.posix_acl_access", &acl);
    fs::create_dir_all(p("dirs/acl")).unwrap();
    let dacl = acl_bytes(&[
        (1, 7, NO_ID),
        (4, 5, NO_ID),
        (8, 5, 5678),
        (16, 7, NO_ID),
        (32, 5, NO_ID),
    ]);
    set_xattr(&p("dirs/acl"), "system.posix_acl_default", &dacl);
    set_xattr(&p("dirs/acl"), "system.posix_acl_access", &dacl);

    // Sparse: 64 MiB with three 4 KiB islands, and one that ends in a hole.
    let island = noise(4096, 3);
    sparse(
        &p("sparse"),
        64 << 20,
        &[
            (0, &island),
            (20 << 20, &island),
            ((64 << 20) - 4096, &island),
        ],
    );
    sparse(&p("sparse-tail"), 32 << 20, &[(1 << 20, &island)]);

    // Names: not UTF-8, newline, spaces, 255 bytes, leading dash.
    let names: [&[u8]; 5] = [
        b"caf\xe9",
        b"new\nline",
        b"with space",
        b"-dash",
        &[b'n'; 255],
    ];
    for (i, n) in names.iter().enumerate() {
        file(
            &root.join(std::ffi::OsStr::from_bytes(n)),
            format!("name {i}").as_bytes(),
        );
    }

    // Times: nanoseconds, before 1970, after 2038, on files, dirs and symlinks.
    set_times(
        &p("hello.txt"),
        (1_600_000_000, 123_456_789),
        (1_500_000_000, 987_654_321),
    );
    set_times(&p("empty"), (-1_000_000_000, 5), (-86_400, 999_999_999));
    set_times(&p("big.bin"), (4_102_444_800, 1), (4_102_444_800, 2));
    set_times(&p("link"), (1_000_000_000, 0), (1_111_111_111, 111));
    set_times(&p("fifo"), (1_200_000_000, 0), (1_200_000_001, 1));
    set_times(&p("dirs/a/b"), (1_300_000_000, 0), (1_300_000_000, 300));
    // Directory times last: creating entries above changed them.
    set_times(
        &p("dirs/readonly"),
        (1_400_000_000, 0),
        (1_400_000_000, 400),
    );
    set_times(&p("dirs"), (1_400_000_001, 0), (1_400_000_001, 401));
}

/// A directory with `n` small files.
pub fn wide(dir: &Path, n: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        fs::write(dir.join(format!("f{i:06}")), format!("{i}")).unwrap();
    }
}

/// The directory `depth` levels below `top`, opened with `openat` one level
/// at a time (the path is longer than PATH_MAX from about 20 levels: each
/// name is 202 bytes); the levels are made first when `make`.
pub fn deep_chain(top: &Path, depth: usize, make: bool) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let open = |parent: i32, name: &CString| {
        let fd = unsafe { libc::openat(parent, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut fd = open(libc::AT_FDCWD, &c(top));
    for i in 0..depth {
        let name = CString::new(format!("{i:02}{}", "d".repeat(200))).unwrap();
        if make {
            unsafe { libc::mkdirat(fd.as_raw_fd(), name.as_ptr(), 0o750) };
        }
        fd = open(fd.as_raw_fd(), &name);
    }
    fd
}

/// A path to the open directory `fd` that a path of any length below it
/// can be joined to.
pub fn fd_path(fd: &std::os::fd::OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Build, under `root` (which must not exist), one hard-link pair of every
/// type that can be hard-linked: a regular file, a symlink, a FIFO, a
/// socket, a character and a block device; each pair has one name at the
/// top and one in `sub/`, and its own owner, mode and times. Needs root.
pub fn linked(root: &Path) {
    fs::create_dir_all(root.join("sub")).unwrap();
    let p = |s: &str| root.join(s);
    file(&p("file"), b"linked content");
    symlink("file", p("symlink")).unwrap();
    mknod(&p("fifo"), libc::S_IFIFO | 0o640, 0);
    mknod(&p("socket"), libc::S_IFSOCK | 0o750, 0);
    mknod(&p("chardev"), libc::S_IFCHR | 0o620, libc::makedev(1, 5));
    mknod(&p("blockdev"), libc::S_IFBLK | 0o600, libc::makedev(7, 201));
    for (i, name) in ["file", "symlink", "fifo", "socket", "chardev", "blockdev"]
        .iter()
        .enumerate()
    {
        let i = i as u32;
        chown(&p(name), 2000 + i, 3000 + i);
        let second = p(&format!("sub/{name}2"));
        // linkat without AT_SYMLINK_FOLLOW: a symlink is linked, not its target.
        let r = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                c(&p(name)).as_ptr(),
                libc::AT_FDCWD,
                c(&second).as_ptr(),
                0,
            )
        };
        check(r, "linkat", &second);
        let t = 1_500_000_000 + i64::from(i);
        set_times(&p(name), (t, 7), (t, 9));
    }
    set_times(&p("sub"), (1_600_000_000, 0), (1_600_000_000, 1));
}
