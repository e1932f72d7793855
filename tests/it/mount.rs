//! `rewind mount`, for real: stat, xattrs, links, devices, contents, EROFS,
//! permissions for other users, copying out, faults, unmounting and `history/`.

pub(crate) mod guard;
mod history;
mod lifecycle;
mod push;

use crate::common::fault::{self, as_nobody, open_up, Rng};
use crate::common::{compare, restored, stderr, tree, TempRepo};
use guard::MountGuard;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

/// The full tree, backed up and mounted with `--snapshot latest`; returns
/// the source and where it is in the mount.
fn mounted_full(t: &TempRepo) -> (std::path::PathBuf, MountGuard) {
    let src = t.full_src();
    t.backup(&src);
    let m = MountGuard::start(t, "mnt", &["--snapshot", "latest"]);
    (src, m)
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

#[test]
fn a_mounted_snapshot_is_its_source_entry_by_entry() {
    let t = TempRepo::new();
    let (src, m) = mounted_full(&t);
    let inside = restored(&m.mnt, &src);
    compare::assert_same(&src, &inside, compare::Options::default());
    // What the comparer does not look at: ctime as stored, nlink, inode sharing.
    for rel in [
        "hello.txt",
        "empty",
        "big.bin",
        "link",
        "fifo",
        "chardev",
        "sparse",
        "dirs/a/b",
    ] {
        let (a, b) = (
            fs::symlink_metadata(src.join(rel)).unwrap(),
            fs::symlink_metadata(inside.join(rel)).unwrap(),
        );
        assert_eq!(
            (a.ctime(), a.ctime_nsec()),
            (b.ctime(), b.ctime_nsec()),
            "ctime of {rel}"
        );
        if !a.is_dir() {
            assert_eq!(a.nlink(), b.nlink(), "nlink of {rel}");
        }
    }
    let ino = |rel: &str| fs::symlink_metadata(inside.join(rel)).unwrap().ino();
    assert_eq!(ino("hl1"), ino("dirs/hl2"));
    assert_eq!(ino("hl1"), ino("dirs/a/hl3"));
    assert_eq!(ino("pair1"), ino("pair2"));
    assert_ne!(ino("hl1"), ino("pair1"));
    assert_eq!(
        fs::symlink_metadata(inside.join("blockdev"))
            .unwrap()
            .rdev(),
        libc::makedev(7, 200)
    );
    let sparse = fs::metadata(inside.join("sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "holes take no blocks: {}",
        sparse.blocks()
    );
    assert_eq!(
        fs::read_link(inside.join("weirdlink"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"caf\xe9\xff"
    );
    same_acls(&src, &inside);
}

/// `getfacl` says the same of the source and the mount.
fn same_acls(src: &Path, inside: &Path) {
    for rel in ["hello.txt", "dirs/acl"] {
        let acl = |p: &Path| {
            crate::common::tool("getfacl")
                .args(["-n", "--omit-header"])
                .arg(p)
                .output()
                .unwrap()
        };
        let (a, b) = (acl(&src.join(rel)), acl(&inside.join(rel)));
        assert!(b.status.success(), "getfacl {rel}: {}", stderr(&b));
        assert_eq!(
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout),
            "ACL of {rel}"
        );
    }
}

#[test]
fn reads_at_random_offsets_match_the_source() {
    let t = TempRepo::new();
    let (src, m) = mounted_full(&t);
    let inside = restored(&m.mnt, &src);
    let mut rng = Rng::from_env_or_clock();
    for rel in ["big.bin", "text.sql", "sparse", "sparse-tail"] {
        let (a, b) = (
            fs::File::open(src.join(rel)).unwrap(),
            fs::File::open(inside.join(rel)).unwrap(),
        );
        let size = a.metadata().unwrap().len();
        for _ in 0..200 {
            let off = rng.below(size + 10);
            let len = 1 + rng.below(300_000) as usize;
            let (mut x, mut y) = (vec![0u8; len], vec![0u8; len]);
            let nx = a.read_at(&mut x, off).unwrap();
            let ny = b.read_at(&mut y, off).unwrap();
            assert_eq!(nx, ny, "{rel}: bytes at {off}+{len}");
            assert!(x[..nx] == y[..ny], "{rel}: content at {off}+{len}");
        }
    }
}

/// The data regions of a file, by SEEK_DATA/SEEK_HOLE from each offset in
/// `probes`: (offset, next data or ENXIO, next hole).
fn seeks(f: &fs::File, probes: &[u64]) -> Vec<(u64, i64, i64)> {
    use std::os::fd::AsRawFd;
    let at = |off: u64, whence| unsafe { libc::lseek(f.as_raw_fd(), off as i64, whence) };
    probes
        .iter()
        .map(|&o| (o, at(o, libc::SEEK_DATA), at(o, libc::SEEK_HOLE)))
        .collect()
}

/// Bytes in data regions, by SEEK_DATA/SEEK_HOLE.
fn data_bytes(f: &fs::File) -> u64 {
    use std::os::fd::AsRawFd;
    let (fd, size) = (f.as_raw_fd(), f.metadata().unwrap().len() as i64);
    let (mut at, mut total) = (0i64, 0u64);
    while at < size {
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        total += (hole - data) as u64;
        at = hole;
    }
    total
}

/// Holes through the mount: `lseek(SEEK_DATA/SEEK_HOLE)` lands where it
/// does in the source, and `st_blocks` counts the data, not the holes.
#[test]
fn holes_show_through_lseek_and_st_blocks() {
    let t = TempRepo::new();
    let (src, m) = mounted_full(&t);
    let inside = restored(&m.mnt, &src);
    for rel in ["sparse", "sparse-tail", "big.bin", "empty"] {
        let (a, b) = (
            fs::File::open(src.join(rel)).unwrap(),
            fs::File::open(inside.join(rel)).unwrap(),
        );
        let size = a.metadata().unwrap().len();
        let mut probes = vec![
            0,
            1,
            4095,
            4096,
            size / 3,
            size / 2,
            size.saturating_sub(1),
            size,
        ];
        probes.extend([
            (1 << 20) - 1,
            1 << 20,
            (1 << 20) + 4096,
            20 << 20,
            (20 << 20) + 4096,
        ]);
        probes.retain(|&p| p <= size);
        assert_eq!(seeks(&a, &probes), seeks(&b, &probes), "{rel}");
        let data = data_bytes(&a);
        assert_eq!(data_bytes(&b), data, "{rel}: data bytes");
        assert_eq!(
            b.metadata().unwrap().blocks(),
            data.div_ceil(4096) * 8,
            "{rel}: st_blocks for {data} bytes of data"
        );
    }
}

/// The cache's size and the number of serving threads change nothing but
/// speed: with no cache, a 1 KiB one and one thread, the mount is still its
/// source, byte for byte.
#[test]
fn small_caches_and_one_thread_read_the_same() {
    let t = TempRepo::new();
    let src = t.full_src();
    t.backup(&src);
    for (i, tuning) in [
        ["--cache-size", "0", "--threads", "1"],
        ["--cache-size", "1K", "--threads", "2"],
    ]
    .iter()
    .enumerate()
    {
        let mut args = vec!["--snapshot", "latest"];
        args.extend(tuning.iter());
        let m = MountGuard::start(&t, &format!("mnt{i}"), &args);
        // The comparer reads every byte of both; reading the source sets its
        // atimes, so after the first round they are not compared.
        let opts = compare::Options {
            atime: i == 0,
            ..Default::default()
        };
        compare::assert_same(&src, &restored(&m.mnt, &src), opts);
    }
}

/// A directory of 20,000 entries lists completely and in order through the
/// mount (the kernel asks for it in many pieces, each from an offset).
#[test]
fn a_directory_of_twenty_thousand_entries_lists_whole() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::wide(&src.join("wide"), 20_000);
    t.backup(&src);
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let dir = restored(&m.mnt, &src).join("wide");
    let names = |d: &Path| {
        let mut v: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let (a, b) = (names(&src.join("wide")), names(&dir));
    assert_eq!(b.len(), 20_000);
    assert!(a == b, "names differ");
    let ls = crate::common::tool("ls")
        .arg("-f")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(ls.status.success(), "{}", stderr(&ls));
    assert_eq!(
        ls.stdout
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        20_002
    );
    assert_eq!(fs::read(dir.join("f019999")).unwrap(), b"19999");
}

/// `op` fails with EROFS.
fn erofs(what: &str, r: std::io::Result<()>) {
    let e = r
        .err()
        .unwrap_or_else(|| panic!("{what} succeeded on the mount"));
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
}

fn cvt(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[test]
fn every_write_is_refused_with_erofs() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    t.backup(&src);
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let d = restored(&m.mnt, &src);
    let (f, new) = (d.join("f"), d.join("new"));
    erofs("create", fs::File::create(&new).map(drop));
    erofs(
        "open for writing",
        fs::OpenOptions::new().write(true).open(&f).map(drop),
    );
    erofs(
        "append",
        fs::OpenOptions::new().append(true).open(&f).map(drop),
    );
    erofs(
        "truncate",
        cvt(unsafe { libc::truncate(c(&f).as_ptr(), 0) }),
    );
    erofs("mkdir", fs::create_dir(d.join("nd")));
    erofs("rmdir", fs::remove_dir(d.join("d")));
    erofs("unlink", fs::remove_file(&f));
    erofs("rename", fs::rename(&f, d.join("g")));
    erofs(
        "chmod",
        fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o777)),
    );
    erofs("chown", std::os::unix::fs::chown(&f, Some(1), Some(1)));
    erofs("symlink", std::os::unix::fs::symlink("f", &new));
    erofs("link", fs::hard_link(&f, &new));
    erofs(
        "mknod",
        cvt(unsafe { libc::mknod(c(&new).as_ptr(), libc::S_IFIFO | 0o644, 0) }),
    );
    erofs(
        "utimes",
        cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c(&f).as_ptr(), std::ptr::null(), 0) }),
    );
    let (n, v) = (c(Path::new("user.x")), b"v");
    erofs(
        "setxattr",
        cvt(unsafe { libc::setxattr(c(&f).as_ptr(), n.as_ptr(), v.as_ptr().cast(), 1, 0) }),
    );
    erofs(
        "removexattr",
        cvt(unsafe { libc::removexattr(c(&f).as_ptr(), n.as_ptr()) }),
    );
    assert_eq!(fs::read(&f).unwrap(), b"data");
}

#[test]
fn other_users_are_held_to_the_stored_modes_and_acls() {
    let t = TempRepo::new();
    open_up(t.path());
    let src = t.join("src");
    fs::create_dir_all(src.join("private")).unwrap();
    for (name, mode) in [
        ("public", 0o644),
        ("secret", 0o600),
        ("private/inner", 0o644),
        ("acl", 0o644),
    ] {
        fs::write(src.join(name), name).unwrap();
        tree::chmod(&src.join(name), mode);
    }
    tree::chmod(&src.join("private"), 0o700);
    // Readable by "other", but an ACL entry shuts nobody out.
    let acl = tree::acl_bytes(&[
        (1, 6, u32::MAX),
        (2, 0, fault::NOBODY),
        (4, 4, u32::MAX),
        (16, 4, u32::MAX),
        (32, 4, u32::MAX),
    ]);
    tree::set_xattr(&src.join("acl"), "system.posix_acl_access", &acl);
    t.backup(&src);
    let cat = |m: &MountGuard, name: &str| {
        let p = restored(&m.mnt, &src).join(name);
        as_nobody(crate::common::tool("cat").arg(&p))
            .output()
            .unwrap()
    };
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest", "--allow-other"]);
    let out = cat(&m, "public");
    assert!(
        out.status.success(),
        "nobody reads a 0644 file: {}",
        stderr(&out)
    );
    assert_eq!(out.stdout, b"public");
    for denied in ["secret", "private/inner", "acl"] {
        let out = cat(&m, denied);
        assert!(!out.status.success(), "nobody read {denied}");
        assert!(
            stderr(&out).contains("Permission denied"),
            "{denied}: {}",
            stderr(&out)
        );
    }
    drop(m);
    let m = MountGuard::start(&t, "mnt2", &["--snapshot", "latest"]);
    let out = cat(&m, "public");
    assert!(
        !out.status.success(),
        "without --allow-other only the mounting user gets in"
    );
}

/// Linux shows `trusted.*` attributes to root alone; through the mount, as
/// on the source's file system, another user neither lists nor reads them.
#[test]
fn trusted_xattrs_are_hidden_from_other_users() {
    let t = TempRepo::new();
    open_up(t.path());
    let src = t.join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    tree::file(&src.join("f"), b"data");
    for p in [src.join("f"), src.join("dir")] {
        tree::set_xattr(&p, "user.note", b"for all");
        tree::set_xattr(&p, "trusted.secret", b"root only");
    }
    t.backup(&src);
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest", "--allow-other"]);
    let inside = restored(&m.mnt, &src);
    for name in ["f", "dir"] {
        let p = inside.join(name);
        assert_eq!(
            list_xattrs_as(0, &p),
            "trusted.secret\0user.note\0",
            "root lists every attribute of {name}"
        );
        assert_eq!(
            list_xattrs_as(fault::NOBODY, &p),
            "user.note\0",
            "nobody lists no trusted.* of {name}"
        );
        // Reading one by name: the kernel already refuses trusted.* to
        // nobody, and the mount would too.
        let get = |cmd: &mut Command| {
            cmd.args(["--absolute-names", "--only-values", "-n", "trusted.secret"])
                .arg(&p)
                .output()
                .unwrap()
        };
        let out = get(as_nobody(&mut crate::common::tool("getfattr")));
        assert!(
            !out.status.success(),
            "nobody read trusted.secret of {name}"
        );
        let out = get(&mut crate::common::tool("getfattr"));
        assert_eq!(out.stdout, b"root only", "{}", stderr(&out));
    }
}

/// `llistxattr(path)` as user `uid` (gid the same), in a forked child: the
/// list of NUL-terminated names.
fn list_xattrs_as(uid: u32, path: &Path) -> String {
    let cpath = c(path);
    let mut buf = vec![0u8; 4096];
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child makes raw system calls only (no allocation, no
    // locks) on memory prepared before the fork, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            let ok = libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                && libc::syscall(libc::SYS_setresgid, uid, uid, uid) == 0
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0;
            let n = if ok {
                libc::llistxattr(cpath.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            } else {
                -1
            };
            if n >= 0 {
                libc::write(fds[1], buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(if n >= 0 { 0 } else { 1 });
        }
    }
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let mut f = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
    std::io::Read::read_to_end(&mut f, &mut out).unwrap();
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "llistxattr {} as {uid} failed",
        path.display()
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn copying_out_with_cp_or_rsync_gives_the_source_and_diff_finds_nothing() {
    let t = TempRepo::new();
    let (src, m) = mounted_full(&t);
    let inside = restored(&m.mnt, &src);
    let cp = t.join("cp");
    crate::common::cp_a(&inside, &cp);
    compare::assert_same(
        &src,
        &cp,
        compare::Options {
            root_meta: true,
            ..Default::default()
        },
    );
    // rsync keeps access times only with -U and only to the second, and
    // skips setting an mtime whose second matches the new file's: start in a
    // later second than the tree was built in.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let rs = t.join("rsync");
    let out = crate::common::tool("rsync")
        .arg("-aHAXU")
        .arg("--sparse")
        .arg(format!("{}/", inside.display()))
        .arg(&rs)
        .output()
        .unwrap();
    assert!(out.status.success(), "rsync: {}", stderr(&out));
    compare::assert_same(
        &inside,
        &rs,
        compare::Options {
            root_meta: true,
            atime: false,
            ..Default::default()
        },
    );
    // GNU diff names every FIFO and socket, even between identical trees on
    // disk; nothing else may show.
    let out = crate::common::tool("diff")
        .args(["-r", "--no-dereference"])
        .arg(&src)
        .arg(&inside)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let special = |l: &str| l.ends_with(" is a fifo") || l.ends_with(" is a socket");
    assert!(
        text.lines().all(special),
        "diff -r:\n{text}{}",
        stderr(&out)
    );
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn the_whole_repository_by_time_id_host_and_tag_with_new_snapshots_appearing() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"one").unwrap();
    let backup = |host: &str| {
        let out = t.ok([
            "backup",
            "--json",
            "--host",
            host,
            "--tag",
            "nightly",
            src.to_str().unwrap(),
        ]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["id"].as_str().unwrap()[..8].to_string()
    };
    let first = backup("web1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(src.join("f"), b"two").unwrap();
    let second = backup("db1");
    // Two more of one second (copies of the second snapshot, told apart by
    // their program field): each gets its short id after the time.
    let shared = {
        let repo = crate::common::open_repo(&t.repo());
        let (list, bad) = repo.snapshots().unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let (_, snap) = list
            .iter()
            .find(|(id, _)| id.to_hex().starts_with(&second))
            .unwrap();
        let save = |program: &str| {
            let mut s = snap.clone();
            s.program = program.to_string();
            repo.save_snapshot(&s).unwrap().to_hex()[..8].to_string()
        };
        (save("rewind (test copy a)"), save("rewind (test copy b)"))
    };
    let made = 4;
    let m = MountGuard::start(&t, "mnt", &[]);
    let names = |rel: &str| {
        let mut v: Vec<String> = fs::read_dir(m.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(""), ["history", "hosts", "ids", "snapshots", "tags"]);
    let (a, b) = shared;
    let listed = names("snapshots");
    assert_eq!(listed.len(), made + 1, "{listed:?}");
    let (na, nb) = (
        listed.iter().find(|n| n.ends_with(&format!("-{a}"))),
        listed.iter().find(|n| n.ends_with(&format!("-{b}"))),
    );
    let (na, nb) = (
        na.expect("first of a shared second"),
        nb.expect("second of it"),
    );
    assert_eq!(na.len(), "2026-11-23T02:15:04-".len() + 8, "{na}");
    assert_eq!(na[..19], nb[..19], "{na} {nb}");
    assert_eq!(names("hosts"), ["db1", "web1"]);
    assert_eq!(names("ids").len(), made);
    assert!(names("ids").contains(&first) && names("ids").contains(&second));
    let file = |dir: &str| fs::read(restored(&m.join(dir), &src).join("f")).unwrap();
    assert_eq!(file(&format!("ids/{first}")), b"one");
    assert_eq!(file("snapshots/latest"), b"two");
    assert_eq!(file("hosts/web1/latest"), b"one");
    assert_eq!(file("tags/nightly/latest"), b"two");
    let latest = fs::read_link(m.join("snapshots/latest")).unwrap();
    assert!(names("snapshots").contains(&latest.to_string_lossy().into_owned()));
    // A snapshot written while mounted appears without remounting.
    fs::write(src.join("f"), b"three").unwrap();
    let third = backup("web1");
    let start = std::time::Instant::now();
    while !names("ids").contains(&third) {
        assert!(
            start.elapsed().as_secs() < 5,
            "new snapshot not shown: {:?}",
            names("ids")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(file("snapshots/latest"), b"three");
    assert_eq!(file(&format!("ids/{third}")), b"three");
}

#[test]
fn a_damaged_or_missing_chunk_fails_that_read_with_eio_and_one_log_line() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("good.bin"), tree::noise(1 << 20, 5)).unwrap();
    fs::write(src.join("damaged.bin"), tree::noise(1 << 20, 7)).unwrap();
    t.backup(&src);
    // A second backup puts the new file's chunks in a pack of their own.
    // (Odd seeds: noise() makes even seeds odd.)
    fs::write(src.join("missing.bin"), tree::noise(1 << 20, 9)).unwrap();
    t.backup(&src);
    let repo = fault::open(&t);
    let at =
        |name: &str| fault::data_locations(&repo, &fault::entry(&repo, "latest", &src.join(name)));
    let damaged = at("damaged.bin")[0];
    fault::flip_byte(
        &fault::pack_file(&t, &damaged),
        (damaged.frame.offset + damaged.frame.stored_len / 2) as u64,
    );
    let missing = at("missing.bin")[0];
    assert!(at("good.bin").iter().all(|l| l.pack != missing.pack));
    fs::remove_file(fault::pack_file(&t, &missing)).unwrap();
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let inside = restored(&m.mnt, &src);
    for bad in ["damaged.bin", "missing.bin"] {
        for _ in 0..2 {
            let e = fs::read(inside.join(bad)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{bad}: {e}");
        }
    }
    assert_eq!(
        fs::read(inside.join("good.bin")).unwrap(),
        tree::noise(1 << 20, 5)
    );
    let log = m.log_text();
    for bad in ["damaged.bin", "missing.bin"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(bad)).collect();
        assert_eq!(lines.len(), 1, "one line about {bad}:\n{log}");
        assert!(
            lines[0].contains(&inside.join(bad).display().to_string()),
            "names the file: {}",
            lines[0]
        );
    }
    assert!(!log.contains("good.bin"), "{log}");
}

#[test]
fn a_damaged_directory_fails_with_eio_and_a_log_line_naming_it() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/f"), b"x").unwrap();
    t.backup(&src);
    let repo = fault::open(&t);
    let loc = fault::tree_location(&repo, &fault::entry(&repo, "latest", &src.join("sub")));
    let at = loc.frame.offset + loc.frame.stored_len / 2;
    fault::flip_byte(&fault::pack_file(&t, &loc), at as u64);
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let sub = restored(&m.mnt, &src).join("sub");
    let listed: std::io::Result<Vec<_>> = fs::read_dir(&sub).and_then(|d| d.collect());
    let e = listed.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let log = m.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("is damaged"))
        .unwrap_or_else(|| panic!("no log line:\n{log}"));
    // The line names a path in the mount: sub, or (trees may share a frame)
    // a directory above it.
    let named = line
        .strip_prefix(&format!("rewind: {}", m.mnt.display()))
        .and_then(|rest| rest.split([':', ' ']).next())
        .and_then(|p| p.strip_prefix('/'))
        .map(|p| m.mnt.join(p))
        .unwrap_or_else(|| panic!("names no path in the mount: {line}"));
    assert!(
        sub.starts_with(&named),
        "names {}, not sub or a directory above it: {line}",
        named.display()
    );
    assert_eq!(
        log.lines().filter(|l| l.contains("is damaged")).count(),
        1,
        "one line:\n{log}"
    );
}
