//! `rewind dump`: tar streams that GNU tar and bsdtar extract to the source
//! tree itself, sparse members, raw and long names, errors that break the
//! archive visibly, and flat memory.

use crate::common::fault;
use crate::common::{compare, stderr, tree, TempRepo};
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// GNU tar, extracting everything a tar of the source would restore.
fn gnu_tar() -> Command {
    let mut c = Command::new("tar");
    c.args(["--xattrs", "--xattrs-include=*", "--acls", "-xpf", "-"]);
    c
}

/// bsdtar (libarchive-tools), extracting as root does: owners, modes, ACLs,
/// xattrs, times.
fn bsdtar() -> Command {
    let mut c = Command::new("bsdtar");
    c.args(["-xpf", "-"]);
    c
}

/// `rewind dump ARGS` piped into `tar` running in `dir`: both outputs.
fn dump_into(t: &TempRepo, args: &[&OsStr], mut tar: Command, dir: &Path) -> (Output, Output) {
    fs::create_dir_all(dir).unwrap();
    let mut rewind = t.cmd([OsStr::new("dump")].iter().chain(args));
    let mut child = rewind
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rewind dump");
    let pipe = child.stdout.take().unwrap();
    let tar_out = tar
        .current_dir(dir)
        .stdin(pipe)
        .output()
        .expect("run tar (apt-get install tar libarchive-tools)");
    (child.wait_with_output().unwrap(), tar_out)
}

/// `rewind dump ARGS` into a file: the output, and the archive.
fn dump_to_file(t: &TempRepo, args: &[&OsStr], file: &Path) -> Output {
    let out = fs::File::create(file).unwrap();
    t.cmd([OsStr::new("dump")].iter().chain(args))
        .stdout(out)
        .output()
        .unwrap()
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} exited {:?}: {}",
        o.status.code(),
        stderr(o)
    );
}

fn spec(path: &Path) -> OsString {
    let mut s = OsString::from("latest:");
    s.push(path);
    s
}

/// tree::full, plus names that need pax records: a directory with a long
/// non-UTF-8 name, a long symlink target, a hard link deep inside it.
fn source(t: &TempRepo) -> PathBuf {
    let src = t.full_src();
    let long: Vec<u8> = [&b"l\xe9"[..], &[b'x'; 140]].concat();
    let dir = src.join(OsStr::from_bytes(&long));
    fs::create_dir(&dir).unwrap();
    tree::file(&dir.join("inside"), b"in a long raw name");
    symlink("t/".repeat(150), dir.join("long-target")).unwrap();
    fs::hard_link(src.join("pair1"), dir.join(OsStr::from_bytes(&[b'h'; 200]))).unwrap();
    src
}

/// Backed up, then the socket removed: tar has no type for it, so the
/// extraction is compared with the source without it.
fn backed_up_source(t: &TempRepo) -> PathBuf {
    let src = source(t);
    t.backup(&src);
    let md = fs::metadata(&src).unwrap();
    fs::remove_file(src.join("socket")).unwrap();
    let (atime, mtime) = ((md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec()));
    tree::set_times(&src, atime, mtime);
    src
}

#[test]
fn gnu_tar_extracts_what_the_source_holds() {
    let t = TempRepo::new();
    let src = backed_up_source(&t);
    let out = t.join("out");
    let (dump, tar) = dump_into(&t, &[&spec(&src)], gnu_tar(), &out);
    ok(&dump, "rewind dump");
    ok(&tar, "tar -x");
    assert!(
        stderr(&dump).contains(&format!(
            "{}: socket not dumped",
            src.join("socket").display()
        )),
        "{}",
        stderr(&dump)
    );
    // GNU tar sets no atime (it has no way to ask for one).
    let opts = compare::Options {
        atime: false,
        root_meta: true,
        ..Default::default()
    };
    compare::assert_same(&src, &out.join("src"), opts);
}

#[test]
fn bsdtar_extracts_what_the_source_holds() {
    let t = TempRepo::new();
    let src = backed_up_source(&t);
    let out = t.join("out");
    let (dump, tar) = dump_into(&t, &[&spec(&src)], bsdtar(), &out);
    ok(&dump, "rewind dump");
    ok(&tar, "bsdtar -x");
    let opts = compare::Options {
        root_meta: true,
        ..Default::default()
    };
    // libarchive reads a pax time before 1970 with a fraction as the
    // seconds plus the fraction (-86399.000000001 as -86399 + 1 ns), where
    // POSIX and GNU tar read the value: only `empty` has such times.
    let diffs = compare::differences(&src, &out.join("src"), opts);
    let expected =
        |d: &String| d.starts_with("empty: mtime differs") || d.starts_with("empty: atime differs");
    assert!(diffs.iter().all(expected), "{}", diffs.join("\n"));
    assert_eq!(diffs.len(), 2, "{}", diffs.join("\n"));
}

#[test]
fn an_8_gib_sparse_file_is_a_few_kib_of_tar() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir(&src).unwrap();
    let island = tree::noise(4096, 11);
    let size = 8u64 << 30;
    let islands = [(0, &island[..]), (3 << 30, &island), (size - 4096, &island)];
    tree::sparse(&src.join("disk.img"), size, &islands);
    t.backup(&src);
    let archive = t.join("sparse.tar");
    ok(&dump_to_file(&t, &[&spec(&src)], &archive), "dump");
    let len = fs::metadata(&archive).unwrap().len();
    assert!(
        len < 32 << 10,
        "an 8 GiB sparse file took {len} bytes of tar"
    );
    for (name, mut tar) in [("gnu", gnu_tar()), ("bsd", bsdtar())] {
        let out = t.join(name);
        fs::create_dir(&out).unwrap();
        let done = tar
            .current_dir(&out)
            .stdin(fs::File::open(&archive).unwrap())
            .output()
            .unwrap();
        ok(&done, name);
        let got = out.join("src/disk.img");
        let md = fs::metadata(&got).unwrap();
        assert_eq!(md.len(), size, "{name}");
        let src_md = fs::metadata(src.join("disk.img")).unwrap();
        assert!(
            md.blocks() <= src_md.blocks() + 64,
            "{name}: {} blocks",
            md.blocks()
        );
        assert_eq!(data_map(&got), data_map(&src.join("disk.img")), "{name}");
        let mut f = fs::File::open(&got).unwrap();
        for (off, bytes) in islands {
            let mut buf = vec![0; bytes.len()];
            f.seek(SeekFrom::Start(off)).unwrap();
            f.read_exact(&mut buf).unwrap();
            assert!(buf == bytes, "{name}: island at {off}");
        }
    }
}

/// Where `path` has data, by SEEK_DATA and SEEK_HOLE.
fn data_map(path: &Path) -> Vec<(i64, i64)> {
    let f = fs::File::open(path).unwrap();
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let start = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if start < 0 {
            return out;
        }
        let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        out.push((start, end));
        at = end;
    }
}

#[test]
fn paths_beyond_path_max_are_in_the_archive() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir(&src).unwrap();
    let names: Vec<CString> = (0..24)
        .map(|i| CString::new(format!("{i:02}{}", "d".repeat(200))).unwrap())
        .collect();
    let mut dir = fs::File::open(&src).unwrap();
    for n in &names {
        assert_eq!(
            unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), 0o750) },
            0
        );
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                n.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            )
        };
        assert!(fd >= 0);
        dir = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    }
    let leaf = c"leaf";
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            leaf.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY,
            0o640,
        )
    };
    assert!(fd >= 0);
    assert_eq!(
        unsafe { libc::write(fd, b"deep down".as_ptr().cast(), 9) },
        9
    );
    unsafe { libc::close(fd) };
    t.backup(&src);
    let archive = t.join("deep.tar");
    ok(&dump_to_file(&t, &[&spec(&src)], &archive), "dump");
    let mut want = b"src".to_vec();
    for n in &names {
        want.push(b'/');
        want.extend_from_slice(n.as_bytes());
    }
    want.extend_from_slice(b"/leaf");
    assert!(want.len() > libc::PATH_MAX as usize);
    // Both tars read the whole path (GNU tar cannot create it: it opens
    // paths whole, and the kernel refuses them).
    for lister in ["tar", "bsdtar"] {
        let list = Command::new(lister)
            .arg("-tf")
            .arg(&archive)
            .output()
            .unwrap();
        ok(&list, lister);
        assert!(
            list.stdout.split(|&b| b == b'\n').any(|l| l == want),
            "{lister} does not list the deep leaf"
        );
    }
    // bsdtar creates deep paths a directory at a time: the leaf is there.
    // (Its exit code is 1: it sets the deep directories' owners by full path
    // afterwards, which the kernel refuses.)
    let out = t.join("bsd");
    fs::create_dir(&out).unwrap();
    Command::new("bsdtar")
        .args(["-xpf"])
        .arg(&archive)
        .current_dir(&out)
        .output()
        .unwrap();
    let mut dir = fs::File::open(out.join("src")).unwrap();
    for n in &names {
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                n.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            )
        };
        assert!(fd >= 0, "{:?} missing", n);
        dir = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    }
    let fd = unsafe { libc::openat(dir.as_raw_fd(), leaf.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0, "the deep leaf was not extracted");
    let mut buf = [0u8; 32];
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    unsafe { libc::close(fd) };
    assert_eq!(&buf[..n as usize], b"deep down");
}

#[test]
fn a_single_file_dumps_as_its_bytes_the_same_as_cat() {
    let t = TempRepo::new();
    let src = t.full_src();
    t.backup(&src);
    for name in ["big.bin", "text.sql", "sparse-tail", "empty"] {
        let path = src.join(name);
        let dump = t.rewind([OsStr::new("dump"), &spec(&path)]);
        ok(&dump, "dump");
        let cat = t.rewind([OsStr::new("cat"), OsStr::new("latest"), path.as_os_str()]);
        ok(&cat, "cat");
        let source = fs::read(&path).unwrap();
        assert!(dump.stdout == source, "{name}: dump differs from the file");
        assert!(cat.stdout == source, "{name}: cat differs from the file");
    }
    // A raw name (not UTF-8) as an argument.
    let raw = src.join(OsStr::from_bytes(b"caf\xe9"));
    let dump = t.rewind([OsStr::new("dump"), &spec(&raw)]);
    ok(&dump, "dump of a raw name");
    assert_eq!(dump.stdout, b"name 0");
    // --archive tar: one member, the file's own name, with its metadata.
    let out = t.join("one");
    let hello = src.join("hello.txt");
    let args = [
        &spec(&hello)[..],
        OsStr::new("--archive"),
        OsStr::new("tar"),
    ];
    let (dump, tar) = dump_into(&t, &args, gnu_tar(), &out);
    ok(&dump, "dump --archive tar");
    ok(&tar, "tar");
    let names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["hello.txt"]);
    let opts = compare::Options {
        atime: false,
        ..Default::default()
    };
    let (a, b) = (t.join("a"), t.join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::hard_link(&hello, a.join("hello.txt")).unwrap();
    fs::rename(&out, &b).unwrap();
    compare::assert_same(&a, &b, opts);
}

#[test]
fn the_whole_snapshot_dumps_under_its_paths() {
    let t = TempRepo::new();
    let src = t.join("site");
    fs::create_dir(&src).unwrap();
    tree::file(&src.join("index.php"), b"<?php echo 1;");
    t.backup(&src);
    let archive = t.join("all.tar");
    ok(
        &dump_to_file(&t, &[OsStr::new("latest")], &archive),
        "dump latest",
    );
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .unwrap();
    ok(&list, "tar -t");
    let rel = src.strip_prefix("/").unwrap().join("index.php");
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(listed.lines().any(|l| Path::new(l) == rel), "{listed}");
    assert!(!listed.lines().any(|l| l.starts_with('/')), "{listed}");
}

#[test]
fn a_damaged_chunk_fails_the_dump_and_the_tar_reading_it() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("a")).unwrap();
    tree::file(&src.join("a/first.bin"), &tree::noise(1 << 20, 1));
    let victim = tree::file(&src.join("b-victim.bin"), &tree::noise(3 << 20, 2));
    tree::file(&src.join("c-after.bin"), &tree::noise(1 << 20, 3));
    t.backup(&src);
    let repo = fault::open(&t);
    let locs = fault::data_locations(&repo, &fault::entry(&repo, "latest", &victim));
    let loc = locs[locs.len() / 2];
    drop(repo);
    fault::flip_byte(
        &fault::pack_file(&t, &loc),
        loc.frame.offset as u64 + loc.frame.stored_len as u64 / 2,
    );
    for (name, tar) in [("gnu", gnu_tar()), ("bsd", bsdtar())] {
        let out = t.join(name);
        let (dump, tar) = dump_into(&t, &[&spec(&src)], tar, &out);
        assert_eq!(dump.status.code(), Some(1), "{}", stderr(&dump));
        let err = stderr(&dump);
        assert!(err.contains(&victim.display().to_string()), "{err}");
        assert!(
            err.contains("damaged") && err.contains("incomplete"),
            "{err}"
        );
        assert!(
            !tar.status.success(),
            "{name} took the broken archive for whole"
        );
        // What came before is intact.
        assert!(fs::read(out.join("src/a/first.bin")).unwrap() == tree::noise(1 << 20, 1));
        assert!(!out.join("src/c-after.bin").exists());
    }
}

/// A damaged tree stops the dump between members: the archive then ends in
/// a header whose data never comes, and both tars fail on it (an archive
/// that just stopped there would read as complete).
#[test]
fn a_damaged_directory_fails_the_dump_and_the_tar_reading_it() {
    let t = TempRepo::new();
    let src = t.join("src");
    let big = src.join("big-dir");
    fs::create_dir_all(&big).unwrap();
    tree::file(&src.join("a-first.bin"), &tree::noise(100_000, 4));
    // Enough entries that the tree is a frame of its own (over 64 KiB).
    for i in 0..1500 {
        tree::file(&big.join(format!("{i:04}-{}", "n".repeat(60))), b"x");
    }
    tree::file(&src.join("z-after.bin"), b"after");
    t.backup(&src);
    let repo = fault::open(&t);
    let loc = fault::tree_location(&repo, &fault::entry(&repo, "latest", &big));
    drop(repo);
    assert!(
        loc.frame.raw_len == loc.raw_len,
        "the tree shares its frame"
    );
    fault::flip_byte(
        &fault::pack_file(&t, &loc),
        loc.frame.offset as u64 + loc.frame.stored_len as u64 / 2,
    );
    for (name, tar) in [("gnu", gnu_tar()), ("bsd", bsdtar())] {
        let out = t.join(name);
        let (dump, tar) = dump_into(&t, &[&spec(&src)], tar, &out);
        assert_eq!(dump.status.code(), Some(1), "{}", stderr(&dump));
        assert!(
            stderr(&dump).contains(&big.display().to_string()),
            "{}",
            stderr(&dump)
        );
        assert!(
            !tar.status.success(),
            "{name} took the broken archive for whole"
        );
        assert!(fs::read(out.join("src/a-first.bin")).unwrap() == tree::noise(100_000, 4));
        assert!(!out.join("src/z-after.bin").exists());
    }
}

#[test]
fn what_cannot_be_dumped_is_refused_by_name() {
    let t = TempRepo::new();
    let src = t.full_src();
    let id = t.backup(&src);
    let fail_with = |code: i32, args: &[&OsStr], wants: &[&str]| {
        let out = t.rewind([OsStr::new("dump")].iter().chain(args));
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        for w in wants {
            assert!(
                stderr(&out).contains(w),
                "{args:?}: no {w:?} in {}",
                stderr(&out)
            );
        }
    };
    let fail = |args: &[&OsStr], wants: &[&str]| fail_with(1, args, wants);
    let link = src.join("link");
    fail(
        &[&spec(&link)],
        &[
            &link.display().to_string(),
            "symbolic link",
            "--archive tar",
        ],
    );
    let fifo = src.join("fifo");
    fail(&[&spec(&fifo)], &["FIFO"]);
    let missing = src.join("no/such/file");
    // latest:PATH is the newest snapshot holding PATH: none here.
    fail(&[&spec(&missing)], &["no/such/file", "no snapshot holds"]);
    let mut pinned = std::ffi::OsString::from(format!("{}:", &id[..8]));
    pinned.push(&missing);
    fail(&[&pinned], &["no/such/file", "not found"]);
    fail(&[OsStr::new("beef:/x")], &["snapshot beef"]);
    let usage = [
        OsStr::new("latest"),
        OsStr::new("--archive"),
        OsStr::new("zip"),
    ];
    fail_with(2, &usage, &["zip"]);
    // A symlink as a tar member is fine.
    let archive = t.join("link.tar");
    let args = [&spec(&link)[..], OsStr::new("--archive"), OsStr::new("tar")];
    ok(
        &dump_to_file(&t, &args, &archive),
        "dump --archive tar of a symlink",
    );
    let list = Command::new("tar")
        .arg("-tvf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        stderr(&list).is_empty()
            && String::from_utf8_lossy(&list.stdout).contains("link -> hello.txt")
    );
}

/// The peak resident memory (KiB) of `rewind dump ARGS`, whose output is
/// `len` bytes. Read from /proc while the dump is blocked on a full pipe
/// near its end, so the process is surely alive (rusage would not do: a
/// child's maxrss starts from this test process's, inherited at fork).
fn peak_rss_kib(t: &TempRepo, args: &[&OsStr], len: u64) -> u64 {
    let mut child = t
        .cmd([OsStr::new("dump")].iter().chain(args))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let leave = 16 << 20;
    let mut head = (&mut pipe).take(len - leave);
    assert_eq!(
        std::io::copy(&mut head, &mut std::io::sink()).unwrap(),
        len - leave
    );
    let status = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rest = std::io::copy(&mut pipe, &mut std::io::sink()).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(rest >= leave);
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn memory_stays_flat_whatever_the_size() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir(&src).unwrap();
    let len = 320u64 << 20;
    let big = tree::file(&src.join("big.bin"), &tree::noise(len as usize, 5));
    t.backup(&src);
    let tar = peak_rss_kib(&t, &[&spec(&src)], len);
    let raw = peak_rss_kib(&t, &[&spec(&big)], len);
    for (what, kib) in [("tar", tar), ("raw", raw)] {
        assert!(
            kib < 96 << 10,
            "dump ({what}) of 320 MiB peaked at {kib} KiB"
        );
    }
}

/// SIGINT or SIGTERM in the middle of a dump: the archive stops short and
/// both tars fail on it, the command says it was interrupted and exits
/// non-zero, and it releases its repository lock (a kill would leave it).
/// The dump cannot finish before the signal: its output (64 MiB) is far
/// more than the pipe and its buffers hold, and nothing reads it until the
/// signal is sent.
#[test]
fn a_signal_ends_the_dump_unfinished_and_releases_the_lock() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir(&src).unwrap();
    tree::file(&src.join("big.bin"), &tree::noise(64 << 20, 6));
    tree::file(&src.join("small.txt"), b"small");
    t.backup(&src);
    for (round, sig) in [libc::SIGINT, libc::SIGTERM].into_iter().enumerate() {
        let mut child = t.spawn(["dump".as_ref(), spec(&src).as_os_str()]);
        let mut pipe = child.stdout.take().unwrap();
        let mut head = vec![0; 1 << 20];
        pipe.read_exact(&mut head).unwrap();
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let out = t.join(format!("out{round}"));
        fs::create_dir(&out).unwrap();
        let mut tar = gnu_tar()
            .current_dir(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut tar_in = tar.stdin.take().unwrap();
        std::io::Write::write_all(&mut tar_in, &head).unwrap();
        let copied = std::io::copy(&mut pipe, &mut tar_in).unwrap();
        drop(tar_in);
        let dump = child.wait_with_output().unwrap();
        let tar = tar.wait_with_output().unwrap();
        let err = stderr(&dump);
        assert!(
            matches!(dump.status.code(), Some(1) | Some(130)),
            "round {round}: {:?} {err}",
            dump.status
        );
        assert!(
            err.contains("interrupted") && err.contains("incomplete"),
            "{err}"
        );
        assert!(
            (head.len() as u64 + copied) < 64 << 20,
            "round {round}: the whole file was dumped"
        );
        assert!(
            !tar.status.success(),
            "round {round}: tar took it for whole"
        );
        assert!(!out.join("src/small.txt").exists());
        let locks = fs::read_dir(t.repo().join("locks")).map_or(0, |d| d.count());
        assert_eq!(locks, 0, "round {round}: a lock was left behind");
    }
}
