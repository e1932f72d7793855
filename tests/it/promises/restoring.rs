//! "Owners are restored by user and group name where the name exists on this
//! machine, else by number (`--numeric-owner` always uses numbers)."
//!
//! The machine that backs up and the one that restores are two mount
//! namespaces (`unshare -m`), each with its own copy of `/etc/passwd` and
//! `/etc/group` bind-mounted over the real ones: the same names with other
//! numbers. The real files are never touched.

use crate::common::{stderr, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `/etc/passwd` and `/etc/group` as the real ones plus `users` and `groups`
/// (name, id), written under `dir`.
fn accounts(dir: &Path, users: &[(&str, u32)], groups: &[(&str, u32)]) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let mut passwd = fs::read_to_string("/etc/passwd").unwrap();
    for (name, id) in users {
        passwd += &format!("{name}:x:{id}:{id}::/nonexistent:/usr/sbin/nologin\n");
    }
    let mut group = fs::read_to_string("/etc/group").unwrap();
    for (name, id) in groups {
        group += &format!("{name}:x:{id}:\n");
    }
    let (p, g) = (dir.join("passwd"), dir.join("group"));
    fs::write(&p, passwd).unwrap();
    fs::write(&g, group).unwrap();
    (p, g)
}

/// `cmd` (a `rewind` from [`TempRepo::cmd`], with its arguments and
/// environment) run in a mount namespace of its own where `passwd` and
/// `group` are `/etc/passwd` and `/etc/group`.
fn with_accounts(cmd: &Command, (passwd, group): &(PathBuf, PathBuf)) -> Output {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/passwd && mount --bind "$1" /etc/group && shift && exec "$@""#)
        .arg(passwd)
        .arg(group)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().expect("run unshare");
    assert!(
        out.status.success(),
        "{:?} exited {:?}: {}",
        cmd.get_args().collect::<Vec<_>>(),
        out.status.code(),
        stderr(&out)
    );
    out
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn owners_are_mapped_by_name_and_numeric_owner_keeps_numbers() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    let mapped = tree::file(&src.join("dir/mapped"), b"by name\n");
    let unknown = tree::file(&src.join("unknown"), b"no such name here\n");
    let link = src.join("link");
    std::os::unix::fs::symlink("mapped", &link).unwrap();
    tree::chown(&mapped, 40_101, 40_201);
    tree::chown(&src.join("dir"), 40_101, 40_202);
    tree::chown(&unknown, 40_102, 40_203);
    std::os::unix::fs::lchown(&link, Some(40_101), Some(40_201)).unwrap();
    // Backed up where rwp-alice is 40101 and rwp-bob 40102.
    let at_backup = accounts(
        &t.join("backup-etc"),
        &[("rwp-alice", 40_101), ("rwp-bob", 40_102)],
        &[
            ("rwp-www", 40_201),
            ("rwp-ops", 40_202),
            ("rwp-gone", 40_203),
        ],
    );
    with_accounts(&t.cmd([OsStr::new("backup"), src.as_os_str()]), &at_backup);
    let ls = t.ok([
        "ls",
        "-l",
        "latest",
        src.join("dir/mapped").to_str().unwrap(),
    ]);
    assert!(ls.contains("rwp-alice") && ls.contains("rwp-www"), "{ls}");

    // Restored where the same names have other numbers, and rwp-bob and
    // rwp-gone do not exist.
    let at_restore = accounts(
        &t.join("restore-etc"),
        &[("rwp-alice", 40_301)],
        &[("rwp-www", 40_401), ("rwp-ops", 40_402)],
    );
    let target = t.join("by-name");
    let restore = |target: &Path, extra: &[&str]| {
        let mut args = vec!["restore", "latest", "--target", target.to_str().unwrap()];
        args.extend(extra);
        with_accounts(&t.cmd(args), &at_restore);
    };
    restore(&target, &[]);
    let back = crate::common::restored(&target, &src);
    assert_eq!(owner(&back.join("dir/mapped")), (40_301, 40_401));
    assert_eq!(owner(&back.join("dir")), (40_301, 40_402));
    assert_eq!(owner(&back.join("link")), (40_301, 40_401));
    assert_eq!(
        owner(&back.join("unknown")),
        (40_102, 40_203),
        "no such names: numbers"
    );

    let target = t.join("numeric");
    restore(&target, &["--numeric-owner"]);
    let back = crate::common::restored(&target, &src);
    assert_eq!(owner(&back.join("dir/mapped")), (40_101, 40_201));
    assert_eq!(owner(&back.join("dir")), (40_101, 40_202));
    assert_eq!(owner(&back.join("link")), (40_101, 40_201));
    assert_eq!(owner(&back.join("unknown")), (40_102, 40_203));
}

/// "with `--include`, only included entries (and what is below an included
/// directory) are restored ..., and the directories on the way to them are
/// made as needed."
#[test]
fn include_restores_what_is_below_an_included_directory() {
    let t = TempRepo::new();
    let src = t.join("src");
    for f in [
        "www/a/deep/x.php",
        "www/a/y.txt",
        "www/b/z.txt",
        "etc/n.conf",
    ] {
        fs::create_dir_all(src.join(f).parent().unwrap()).unwrap();
        tree::file(&src.join(f), f.as_bytes());
    }
    t.backup(&src);
    let target = t.join("out");
    let s = src.to_str().unwrap();
    t.ok([
        "restore",
        &format!("latest:{s}"),
        "--target",
        target.to_str().unwrap(),
        "--include",
        &format!("{s}/www/a"),
        "--include",
        "*.conf",
    ]);
    assert_eq!(
        crate::common::fault::files_below(&target),
        ["etc/n.conf", "www/a/deep/x.php", "www/a/y.txt"].map(PathBuf::from)
    );
    assert_eq!(
        fs::read(target.join("www/a/deep/x.php")).unwrap(),
        b"www/a/deep/x.php"
    );
}
