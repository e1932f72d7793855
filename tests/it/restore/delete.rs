//! `restore --delete`: the target becomes the snapshot, what an intruder
//! added goes, nothing outside the target is touched; `--dry-run` lists it
//! all and changes nothing; `--exclude` and `--include` keep what they leave
//! out.

use super::{restore, spec};
use crate::common::{compare, fault, stderr, stdout, tree, TempRepo};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

/// A small web site.
fn site(src: &Path) {
    fs::create_dir_all(src.join("uploads")).unwrap();
    fs::create_dir_all(src.join("conf")).unwrap();
    tree::file(&src.join("index.php"), b"<?php echo 'hello';");
    tree::file(&src.join("uploads/photo.jpg"), &tree::noise(10_000, 1));
    tree::file(&src.join("conf/settings.php"), b"<?php $db = 'x';");
    tree::file(&src.join(".htaccess"), b"Deny from all");
    tree::chmod(&src.join("conf"), 0o750);
    tree::set_times(&src.join("uploads"), (1_500_000_000, 0), (1_500_000_000, 1));
}

/// What an intruder does to a restored site.
fn hack(target: &Path, outside: &Path) {
    tree::file(
        &target.join("uploads/shell.php"),
        b"<?php system($_GET['c']);",
    );
    fs::create_dir_all(target.join("evil/deeper")).unwrap();
    tree::file(&target.join("evil/deeper/kit.sh"), b"#!/bin/sh");
    tree::file(&target.join("evil/readme"), b"owned");
    tree::file(&target.join("index.php"), b"<?php eval($_POST['x']);");
    fs::remove_dir_all(target.join("conf")).unwrap();
    tree::file(&target.join("conf"), b"a file where a directory was");
    fs::remove_file(target.join(".htaccess")).unwrap();
    fs::create_dir_all(target.join(".htaccess/inside")).unwrap();
    tree::file(
        &target.join(".htaccess/inside/x"),
        b"a directory where a file was",
    );
    symlink(outside, target.join("uploads/link-out")).unwrap();
    symlink(outside, target.join("evil/link-out")).unwrap();
}

/// Every entry below `dir` with its type, size and mtime.
fn listing(dir: &Path) -> BTreeSet<(PathBuf, String, u64, i64, i64)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let md = fs::symlink_metadata(dir.join(&rel)).unwrap();
        if md.is_dir() {
            for e in fs::read_dir(dir.join(&rel)).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        let kind = format!("{:?}", md.file_type());
        out.insert((rel, kind, md.size(), md.mtime(), md.mtime_nsec()));
    }
    out
}

fn lines(out: &str, action: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix(action))
        .map(|l| l.trim_start().to_string())
        .collect()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

#[test]
fn delete_makes_a_hacked_target_the_snapshot_again_and_dry_run_lists_it_first() {
    let t = TempRepo::new();
    let src = t.join("src");
    site(&src);
    t.backup(&src);
    let target = t.join("www");
    let out = restore(&t, &spec(&src), &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let outside = t.join("outside");
    fs::create_dir_all(&outside).unwrap();
    tree::file(&outside.join("precious"), b"not in the target");
    hack(&target, &outside);
    let p = |rel: &str| target.join(rel).display().to_string();

    // A dry run lists what would change, and changes nothing.
    let before = listing(&target);
    let out = restore(&t, &spec(&src), &target, &["--delete", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(listing(&target), before, "a dry run changed the target");
    let deleted = set(&[
        p("uploads/shell.php"),
        p("uploads/link-out"),
        p("evil/deeper/kit.sh"),
        p("evil/deeper") + "/",
        p("evil/readme"),
        p("evil/link-out"),
        p("evil") + "/",
        p(".htaccess/inside/x"),
        p(".htaccess/inside") + "/",
    ]);
    assert_eq!(lines(&text, "delete"), deleted, "{text}");
    let replaced = set(&[
        p("index.php"),
        p("uploads/photo.jpg"),
        p("conf") + "/",
        p(".htaccess"),
    ]);
    assert_eq!(lines(&text, "replace"), replaced, "{text}");
    assert_eq!(
        lines(&text, "create"),
        set(&[p("conf/settings.php")]),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");

    // The same as JSON.
    let out = restore(
        &t,
        &spec(&src),
        &target,
        &["--delete", "--dry-run", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["deleted"], 9, "{v}");
    assert_eq!(v["replaced"], 4, "{v}");
    let json_deleted: BTreeSet<String> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "delete")
        .map(|c| {
            let slash = if c["type"] == "dir" { "/" } else { "" };
            format!("{}{slash}", c["path"].as_str().unwrap())
        })
        .collect();
    assert_eq!(json_deleted, deleted);
    assert_eq!(listing(&target), before, "a dry run changed the target");

    // For real: the target is the snapshot again, and outside is untouched.
    let out = restore(&t, &spec(&src), &target, &["--delete"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("9 deleted"), "{}", stdout(&out));
    let opts = compare::Options {
        root_meta: true,
        ..Default::default()
    };
    compare::assert_same(&src, &target, opts);
    assert_eq!(
        fault::files_below(&outside),
        vec![PathBuf::from("precious")]
    );
}

#[test]
fn delete_and_the_filters_leave_excluded_and_not_included_entries_alone() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::create_dir_all(src.join("logs")).unwrap();
    for f in ["a.php", "b.txt", "logs/x.log", "sub/c.php", "sub/d.txt"] {
        tree::file(&src.join(f), f.as_bytes());
    }
    t.backup(&src);

    // --exclude: neither restored…
    let target = t.join("out");
    let out = restore(&t, &spec(&src), &target, &["--exclude", "logs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fault::files_below(&target),
        ["a.php", "b.txt", "sub/c.php", "sub/d.txt"].map(PathBuf::from)
    );
    // …nor deleted; with --include only included entries are.
    fs::create_dir_all(target.join("logs")).unwrap();
    fs::create_dir_all(target.join("newdir")).unwrap();
    for f in [
        "logs/new.log",
        "e.php",
        "f.txt",
        "sub/g.php",
        "sub/h.txt",
        "newdir/i.php",
        "newdir/j.txt",
    ] {
        tree::file(&target.join(f), b"added");
    }
    let out = restore(
        &t,
        &spec(&src),
        &target,
        &["--delete", "--include", "*.php", "--exclude", "logs"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("3 deleted"), "{}", stdout(&out));
    assert_eq!(
        fault::files_below(&target),
        [
            "a.php",
            "b.txt",
            "f.txt",
            "logs/new.log",
            "newdir/j.txt",
            "sub/c.php",
            "sub/d.txt",
            "sub/h.txt",
        ]
        .map(PathBuf::from)
    );

    // Without filters, all of it goes but what the snapshot has.
    let out = restore(&t, &spec(&src), &target, &["--delete"]);
    assert!(out.status.success(), "{}", stderr(&out));
    compare::assert_same(&src, &target, compare::Options::default());
}

#[test]
fn delete_refuses_a_file_and_does_not_reach_into_another_file_system() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("kept"), b"kept");
    t.backup(&src);

    let target = t.join("out");
    let file_spec = format!("{}:{}", "latest", src.join("kept").display());
    let out = restore(&t, &file_spec, &target, &["--delete"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--delete needs a directory"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());

    let out = restore(&t, &spec(&src), &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mnt = fault::Tmpfs::mount(&target.join("mounted"), "1m");
    tree::file(&target.join("mounted/data"), b"on another file system");
    tree::file(&target.join("extra"), b"extra");
    let out = restore(&t, &spec(&src), &target, &["--delete"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}: another file system is mounted here",
            target.join("mounted").display()
        )),
        "{err}"
    );
    assert_eq!(
        fs::read(target.join("mounted/data")).unwrap(),
        b"on another file system"
    );
    assert!(!target.join("extra").exists());
    drop(mnt);
}

/// A repository inside the target (a site backed up into its own
/// directory) is read by the restore, and never deleted by it.
#[test]
fn delete_keeps_the_repository_it_reads_from() {
    let t = TempRepo::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let src = elsewhere.path().join("site");
    site(&src);
    t.backup(&src);
    tree::file(&t.join("extra"), b"not in the snapshot");
    let out = restore(&t, &spec(&src), t.path(), &["--delete", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("/repo"), "{}", stdout(&out));
    let out = restore(&t, &spec(&src), t.path(), &["--delete"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!t.join("extra").exists());
    assert_eq!(
        fs::read(t.join("index.php")).unwrap(),
        b"<?php echo 'hello';"
    );
    t.ok(["check", "--read-data"]);
}

/// With `--include`, a directory is made only when something in it is
/// restored: what the target has in its place stays otherwise.
#[test]
fn include_makes_directories_only_for_what_it_restores() {
    let t = TempRepo::new();
    let src = t.join("src");
    for d in ["keep", "only-txt", "deep/er"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    for f in [
        "keep/a.txt",
        "keep/b.php",
        "only-txt/c.txt",
        "deep/er/d.php",
    ] {
        tree::file(&src.join(f), f.as_bytes());
    }
    for d in ["keep", "only-txt", "deep/er", "deep"] {
        tree::chmod(&src.join(d), 0o710);
        tree::set_times(&src.join(d), (1_500_000_000, 0), (1_500_000_000, 3));
    }
    t.backup(&src);
    let target = t.join("out");
    fs::create_dir_all(&target).unwrap();
    tree::file(
        &target.join("only-txt"),
        b"a file where the snapshot has a directory",
    );
    let p = |rel: &str| target.join(rel).display().to_string();

    let args = ["--overwrite", "--include", "*.php"];
    let out = restore(
        &t,
        &spec(&src),
        &target,
        &[&args[..], &["--dry-run"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let created = set(&[
        p("keep") + "/",
        p("keep/b.php"),
        p("deep") + "/",
        p("deep/er") + "/",
        p("deep/er/d.php"),
    ]);
    assert_eq!(lines(&text, "create"), created, "{text}");
    assert!(!text.contains("only-txt"), "{text}");

    let out = restore(&t, &spec(&src), &target, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fault::files_below(&target),
        ["deep/er/d.php", "keep/b.php", "only-txt"].map(PathBuf::from)
    );
    assert_eq!(
        fs::read(target.join("only-txt")).unwrap(),
        b"a file where the snapshot has a directory"
    );
    for d in ["keep", "deep", "deep/er"] {
        let md = fs::symlink_metadata(target.join(d)).unwrap();
        assert_eq!((md.mode() & 0o7777, md.mtime_nsec()), (0o710, 3), "{d}");
    }
}
