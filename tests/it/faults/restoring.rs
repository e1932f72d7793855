//! Restore targets: a non-empty one is refused, symlinks in it are replaced,
//! names in a snapshot cannot escape it, and a non-root restore does what it
//! may (no setuid bit on a file it could not give its owner) and names the rest.

use super::{check, expect_code, restore, strings};
use crate::common::fault::{self, as_nobody, NOBODY};
use crate::common::{compare, stderr, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

#[test]
fn restore_into_a_non_empty_target_is_refused() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("f"), b"from the snapshot");
    t.backup(&src);
    let spec = format!("latest:{}", src.display());

    let target = t.join("out");
    fs::create_dir_all(&target).unwrap();
    tree::file(&target.join("keep.txt"), b"mine");
    let out = restore(&t, &spec, &target, &[]);
    expect_code(&out, 1, "restore into a non-empty target");
    let err = stderr(&out);
    assert!(
        err.contains(&target.display().to_string()) && err.contains("not empty"),
        "{err}"
    );
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(fault::files_below(&target), vec![PathBuf::from("keep.txt")]);
    assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"mine");

    let file_target = t.join("a-file");
    tree::file(&file_target, b"not a directory");
    let out = restore(&t, &spec, &file_target, &[]);
    expect_code(&out, 1, "restore onto a file");
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    assert_eq!(fs::read(&file_target).unwrap(), b"not a directory");

    let out = restore(&t, &spec, &target, &["--overwrite"]);
    expect_code(&out, 0, "restore --overwrite");
    assert_eq!(fs::read(target.join("f")).unwrap(), b"from the snapshot");
    assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"mine");
}

#[test]
fn overwrite_replaces_symlinks_in_the_target_instead_of_following_them() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    tree::file(&src.join("sub/inner"), b"inner");
    tree::file(&src.join("f"), b"top");
    t.backup(&src);
    let outside = t.join("outside");
    fs::create_dir_all(&outside).unwrap();
    tree::file(&outside.join("precious"), b"precious");
    let target = t.join("out");
    fs::create_dir_all(&target).unwrap();
    symlink(&outside, target.join("sub")).unwrap();
    symlink(outside.join("precious"), target.join("f")).unwrap();

    let out = restore(
        &t,
        &format!("latest:{}", src.display()),
        &target,
        &["--overwrite"],
    );
    expect_code(&out, 0, "restore --overwrite over symlinks");
    assert_eq!(
        fault::files_below(&outside),
        vec![PathBuf::from("precious")]
    );
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"precious");
    assert!(fs::symlink_metadata(target.join("sub")).unwrap().is_dir());
    assert!(fs::symlink_metadata(target.join("f")).unwrap().is_file());
    assert_eq!(fs::read(target.join("sub/inner")).unwrap(), b"inner");
    assert_eq!(fs::read(target.join("f")).unwrap(), b"top");
}

#[test]
fn names_that_would_escape_the_target_are_rejected() {
    use rewind::format::snapshot::Snapshot;
    use rewind::format::tree::{Entry, Extent, Kind, Time, Tree};
    use rewind::repo::writer::RepoWriter;
    use std::sync::Arc;

    let t = TempRepo::new();
    let outside = t.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let repo = Arc::new(fault::open(&t));
    let w = RepoWriter::new(repo, 3, false).unwrap();
    let payload = b"escaped!";
    let id = w.add_data(payload).unwrap();
    let file = |name: &[u8]| {
        let mut e = Entry::new(name.to_vec(), Kind::File);
        e.mode = 0o644;
        e.size = payload.len() as u64;
        e.extents = vec![Extent::Data {
            id,
            len: payload.len() as u32,
        }];
        e
    };
    let dir = |name: &str, tree: &Tree| {
        let mut e = Entry::new(name.as_bytes().to_vec(), Kind::Dir);
        e.mode = 0o755;
        e.subtree = Some(w.add_tree(&tree.encode()).unwrap());
        e
    };
    let bad_names: [&[u8]; 6] = [
        b"..",
        b".",
        b"",
        b"sub/../../../outside/x",
        b"/abs",
        b"nul\0byte",
    ];
    let mut root = vec![file(b"good")];
    for (i, name) in bad_names.iter().enumerate() {
        root.push(dir(&format!("evil{i}"), &Tree::new(vec![file(name)])));
    }
    // Two entries of one name: a symlink out, then a directory through it.
    let mut link = Entry::new(b"x".to_vec(), Kind::Symlink);
    link.target = outside.as_os_str().as_bytes().to_vec();
    let through = dir("x", &Tree::new(vec![file(b"pwned")]));
    let twice = Tree {
        version: 1,
        entries: vec![link, through],
    };
    root.push(dir("evil-twice", &twice));
    let root = w.add_tree(&Tree::new(root).encode()).unwrap();
    let snapshot = Snapshot {
        time: Time {
            sec: 1_700_000_000,
            nsec: 0,
        },
        host: "crafted".into(),
        username: "root".into(),
        paths: vec!["/".into()],
        tags: vec![],
        tree: root,
        parent: None,
        program: "faults test".into(),
        summary: Default::default(),
        original: None,
    };
    w.commit(&snapshot).unwrap();

    let jail = t.join("jail");
    let target = jail.join("target");
    let out = restore(&t, "latest", &target, &[]);
    expect_code(&out, 3, "restore of a snapshot with unsafe names");
    let err = stderr(&out);
    for i in 0..bad_names.len() {
        let p = target.join(format!("evil{i}"));
        assert!(
            err.contains(&format!("{} (tree", p.display())),
            "evil{i} not named:\n{err}"
        );
    }
    assert!(err.contains("unsafe entry name"), "{err}");
    assert!(
        err.contains(&format!("{} (tree", target.join("evil-twice").display())),
        "{err}"
    );
    // Only `good` was written, and nothing outside the target.
    assert_eq!(
        fault::files_below(&jail),
        vec![PathBuf::from("target/good")]
    );
    assert_eq!(fs::read(target.join("good")).unwrap(), payload);
    assert!(fault::files_below(&outside).is_empty());

    let (c, report) = check(&t, &[]);
    assert_eq!(c, Some(1), "{report}");
    assert_eq!(
        strings(&report["damaged_files"]).len(),
        bad_names.len() + 1,
        "{report}"
    );

    // A path in the snapshot cannot climb out either.
    let target2 = t.join("target2");
    let out = restore(&t, "latest:/../../etc", &target2, &[]);
    expect_code(&out, 1, "restore of latest:/../../etc");
    assert!(!target2.exists());
}

#[test]
fn non_root_restore_restores_what_it_may_and_names_the_rest() {
    let t = TempRepo::new();
    fault::open_up(t.path());
    let src = t.join("src");
    fs::create_dir_all(src.join("theirs")).unwrap();
    tree::file(&src.join("theirs/data"), &tree::noise(400_000, 4));
    tree::chown(&src.join("theirs/data"), 1234, 5678);
    tree::chmod(&src.join("theirs/data"), 0o640);
    tree::chown(&src.join("theirs"), 42, 43);
    tree::chmod(&src.join("theirs"), 0o750);
    tree::file(&src.join("tool"), b"#!/bin/sh\n");
    tree::chmod(&src.join("tool"), 0o4755);
    tree::file(&src.join("group-tool"), b"#!/bin/sh\n");
    tree::chown(&src.join("group-tool"), NOBODY, 0);
    tree::chmod(&src.join("group-tool"), 0o6755);
    tree::file(&src.join("nothing"), b"mode 000");
    tree::chmod(&src.join("nothing"), 0o000);
    tree::file(&src.join("tagged"), b"with a user xattr");
    tree::set_xattr(&src.join("tagged"), "user.note", b"kept");
    tree::set_xattr(&src.join("tagged"), "trusted.note", b"root only");
    tree::mknod(&src.join("fifo"), libc::S_IFIFO | 0o600, 0);
    tree::mknod(
        &src.join("null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    );
    fs::create_dir_all(src.join("dirs-keep-setgid")).unwrap();
    tree::chmod(&src.join("dirs-keep-setgid"), 0o2750);
    fs::create_dir_all(src.join("ro")).unwrap();
    tree::file(&src.join("ro/inside"), b"in a read-only directory");
    tree::chmod(&src.join("ro"), 0o555);
    t.backup(&src);
    // The user's own repository (readers take a lock in it); the tree is root's.
    fault::chown_tree(&t.repo(), NOBODY, NOBODY);

    let target = t.join("out");
    fs::create_dir(&target).unwrap();
    tree::chown(&target, NOBODY, NOBODY);
    let spec = format!("latest:{}", src.display());
    let mut cmd = t.cmd([
        OsStr::new("restore"),
        OsStr::new(&spec),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let out = as_nobody(&mut cmd).current_dir(t.path()).output().unwrap();
    expect_code(&out, 3, "non-root restore with a device");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}: Operation not permitted",
            target.join("null").display()
        )),
        "the device is not named:\n{err}"
    );
    assert!(err.contains("could not set the owner of"), "{err}");
    assert!(
        err.contains("2 files restored without their setuid/setgid bit"),
        "{err}"
    );
    assert!(err.contains("extended attributes"), "{err}");
    assert!(err.contains("1 entries could not be restored"), "{err}");

    // Everything else: content, modes, times, links, all right; owned by nobody.
    let diffs = compare::differences(
        &src,
        &target,
        compare::Options {
            owner: false,
            xattrs: false,
            ..Default::default()
        },
    );
    // No setuid or setgid bit on a file whose owner or group is not the
    // stored one: nobody must not end up with a setuid root program of its own.
    let setid = [
        "tool: mode differs: 4755 vs 755",
        "group-tool: mode differs: 6755 vs 4755",
    ];
    let unexpected: Vec<&String> = diffs
        .iter()
        .filter(|d| !d.starts_with("null") && !setid.contains(&d.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    for d in setid {
        assert!(diffs.iter().any(|x| x == d), "{d} not found in {diffs:#?}");
    }
    assert!(!target.join("null").exists());
    assert_eq!(
        fs::symlink_metadata(target.join("theirs/data"))
            .unwrap()
            .uid(),
        NOBODY
    );
    let mode = |name: &str| fs::symlink_metadata(target.join(name)).unwrap().mode() & 0o7777;
    assert_eq!(mode("tool"), 0o755);
    // Its own uid, so setuid stays; group root is not nobody's to give.
    assert_eq!(mode("group-tool"), 0o4755);
    assert_eq!(mode("dirs-keep-setgid"), 0o2750);
    let v = xattr(&target.join("tagged"), "user.note");
    assert_eq!(v.as_deref(), Some(&b"kept"[..]));
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = tree::c(p);
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}
