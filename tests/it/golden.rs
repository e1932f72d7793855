//! Golden repositories: one written by the first release (format 1), one by
//! format 2, both committed under tests/data. A change to the on-disk format
//! that would break users' repositories fails here: each is opened, listed,
//! checked, restored, mounted, backed up into and pruned.
//!
//! They were made by `make_golden` below (an ignored test: see
//! tests/data/README.md), from the tree [`golden_tree`] builds.

use crate::common::compare::{assert_same, Options};
use crate::common::tree::{self, acl_bytes, NO_ID};
use crate::common::{bin, test_env, TempRepo};
use crate::mount::guard::MountGuard;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the golden tree was when it was backed up: snapshots keep it.
const SOURCE: &str = "/tmp/rewind-golden/src";

/// The format-2 repository's password.
const PASSWORD: &str = "golden";

/// A small tree with every kind of entry and metadata a snapshot keeps.
/// Deterministic: the same bytes, modes, owners and times every time.
pub fn golden_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let p = |s: &str| root.join(s);
    tree::file(&p("empty"), b"");
    tree::file(&p("hello.txt"), b"hello, golden world\n");
    // Several chunks of incompressible data, and compressible text.
    tree::file(&p("chunks.bin"), &tree::noise(200 << 10, 2026));
    tree::file(
        &p("text.sql"),
        &b"INSERT INTO t VALUES (1, 'golden');\n".repeat(4000),
    );
    tree::file(&p("setuid"), b"#!/bin/sh\n");
    tree::chmod(&p("setuid"), 0o4755);
    tree::file(&p("setgid"), b"x");
    tree::chmod(&p("setgid"), 0o2750);
    tree::file(&p("owned"), b"someone else's");
    tree::chown(&p("owned"), 1234, 5678);
    fs::create_dir_all(p("dirs/sticky")).unwrap();
    tree::chmod(&p("dirs/sticky"), 0o1777);
    fs::create_dir_all(p("dirs/a/b")).unwrap();
    tree::file(&p("dirs/a/b/deep"), b"deep");
    tree::chown(&p("dirs/a"), 42, 43);
    symlink("hello.txt", p("link")).unwrap();
    symlink(OsStr::from_bytes(b"caf\xe9\xff"), p("weirdlink")).unwrap();
    tree::file(&p("hl1"), b"linked content");
    fs::hard_link(p("hl1"), p("dirs/hl2")).unwrap();
    tree::mknod(&p("fifo"), libc::S_IFIFO | 0o640, 0);
    tree::mknod(&p("socket"), libc::S_IFSOCK | 0o755, 0);
    tree::mknod(&p("chardev"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    tree::mknod(&p("blockdev"), libc::S_IFBLK | 0o660, libc::makedev(7, 200));
    tree::set_xattr(&p("hello.txt"), "user.comment", b"a comment");
    tree::set_xattr(&p("hello.txt"), "trusted.secret", &[0, 1, 255]);
    tree::set_xattr(&p("chunks.bin"), "security.rewind-test", b"sec");
    let acl = acl_bytes(&[
        (1, 6, NO_ID),
        (2, 4, 1234),
        (4, 4, NO_ID),
        (16, 6, NO_ID),
        (32, 4, NO_ID),
    ]);
    tree::set_xattr(&p("hello.txt"), "system.posix_acl_access", &acl);
    tree::sparse(&p("sparse"), 8 << 20, &[(1 << 20, b"island")]);
    tree::file(&root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name");
    tree::file(&root.join(OsStr::from_bytes(b"new\nline")), b"newline name");
    // Every entry gets fixed times, children before their directory.
    fn fix_times(dir: &Path) {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                fix_times(&path);
            }
            tree::set_times(&path, (1_700_000_000, 7), (1_700_000_000, 8));
        }
    }
    fix_times(root);
    tree::set_times(
        &p("hello.txt"),
        (1_600_000_000, 123_456_789),
        (1_500_000_000, 987_654_321),
    );
    tree::set_times(&p("empty"), (-1_000_000_000, 5), (-86_400, 999_999_999));
    tree::set_times(&p("chunks.bin"), (4_102_444_800, 1), (4_102_444_800, 2));
    tree::set_times(&p("link"), (1_000_000_000, 0), (1_111_111_111, 111));
    tree::set_times(&p("fifo"), (1_200_000_000, 0), (1_200_000_001, 1));
    for d in ["dirs/a/b", "dirs/a", "dirs/sticky", "dirs"] {
        tree::set_times(&p(d), (1_300_000_000, 0), (1_300_000_000, 300));
    }
    tree::set_times(root, (1_300_000_000, 1), (1_300_000_000, 301));
}

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A writable copy of golden repository `name` in a scratch directory.
fn copy_of(name: &str) -> TempRepo {
    let t = TempRepo::uninit();
    crate::common::cp_a(&data().join(name).join("repo"), &t.repo());
    t
}

/// Run `rewind` on `t` with the golden password.
fn golden(t: &TempRepo, args: &[&OsStr]) -> String {
    let out = t
        .cmd(args)
        .env("REWIND_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rewind {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_golden(name: &str, encrypted: bool) {
    let t = copy_of(name);
    let expected = t.join("expected");
    golden_tree(&expected);
    let opts = Options {
        root_meta: false,
        ..Options::default()
    };
    let snapshots = golden(&t, &[OsStr::new("snapshots")]);
    assert!(
        snapshots.contains("1 snapshot") || snapshots.lines().count() >= 2,
        "{snapshots}"
    );
    let stats = golden(&t, &[OsStr::new("stats")]);
    assert_eq!(
        stats.contains("unencrypted") || stats.contains("UNENCRYPTED"),
        !encrypted,
        "{stats}"
    );
    let ls = golden(&t, &["ls", "latest", SOURCE].map(OsStr::new));
    assert!(
        ls.contains("hello.txt") && ls.contains("dirs/a/b/deep"),
        "{ls}"
    );
    golden(&t, &["check", "--read-data"].map(OsStr::new));

    // Restored exactly.
    let target = t.join("restored");
    golden(
        &t,
        &[
            OsStr::new("restore"),
            OsStr::new(&format!("latest:{SOURCE}")),
            OsStr::new("--target"),
            target.as_os_str(),
        ],
    );
    assert_same(&expected, &target, opts);

    // Mounted: the same tree (compared with a fresh copy of the expected
    // tree: reading one sets its atimes).
    {
        let expected = t.join("expected-again");
        golden_tree(&expected);
        let m = MountGuard::start_env(
            &t,
            "mnt",
            &["--snapshot", "latest"],
            &[("REWIND_PASSWORD", PASSWORD)],
        );
        assert_same(&expected, &m.join(&SOURCE[1..]), opts);
    }

    // Backed up into (format 1 stays format 1) and pruned.
    let src = t.join("new");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("added"), b"a new file");
    golden(&t, &[OsStr::new("backup"), src.as_os_str()]);
    golden(
        &t,
        &["forget", "--keep-last", "1", "--prune"].map(OsStr::new),
    );
    golden(&t, &["check", "--read-data"].map(OsStr::new));
    let config = fs::read(t.repo().join("config")).unwrap();
    assert_eq!(
        config[5],
        if encrypted { 2 } else { 1 },
        "the format did not change"
    );
    let target = t.join("after");
    golden(
        &t,
        &[
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
        ],
    );
    assert_eq!(
        fs::read(crate::common::restored(&target, &src).join("added")).unwrap(),
        b"a new file"
    );
}

/// The first release's format, as that release wrote it.
#[test]
fn a_format_1_repository_of_the_first_release_still_works() {
    check_golden("golden-v1", false);
}

/// Format 2, encrypted.
#[test]
fn a_format_2_repository_still_works() {
    check_golden("golden-v2", true);
}

/// Makes tests/data/golden-v{1,2}/repo again: `OLD_REWIND=<first release's
/// binary> cargo test --release --test it golden::make_golden -- --ignored`.
#[test]
#[ignore]
fn make_golden() {
    let old = PathBuf::from(
        std::env::var_os("OLD_REWIND").expect("OLD_REWIND names the first release's binary"),
    );
    let src = Path::new(SOURCE);
    let _ = fs::remove_dir_all(src.parent().unwrap());
    golden_tree(src);
    for (name, binary, init) in [
        ("golden-v1", old, &["init"][..]),
        ("golden-v2", bin(), &["init"][..]),
    ] {
        let repo = data().join(name).join("repo");
        let _ = fs::remove_dir_all(&repo);
        let run = |args: &[&OsStr]| {
            let mut c = Command::new(&binary);
            c.arg("--repo").arg(&repo).args(args);
            test_env(&mut c)
                .env("REWIND_PASSWORD", PASSWORD)
                .env("REWIND_KDF_PARAMS", "m=64K,t=1,p=1");
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&init.iter().map(OsStr::new).collect::<Vec<_>>());
        run(&[
            OsStr::new("backup"),
            OsStr::new("--host"),
            OsStr::new("golden"),
            src.as_os_str(),
        ]);
    }
    let _ = fs::remove_dir_all(src.parent().unwrap());
}
