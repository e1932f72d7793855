//! Bad paths, repositories, versions and arguments: refused with a clear
//! error and the right exit code, changing nothing.

use super::{check, expect_code, restore, snapshot_ids};
use crate::common::fault;
use crate::common::{restored, stderr, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn missing_source_path_fails_naming_it_and_saves_nothing() {
    let t = TempRepo::new();
    let missing = t.join("no/such/dir");
    let out = t.rewind([OsStr::new("backup"), missing.as_os_str()]);
    expect_code(&out, 1, "backup of a missing path");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}: No such file or directory", missing.display())),
        "{err}"
    );
    assert!(snapshot_ids(&t).is_empty());

    // Beside a path that exists: still an error naming it, never a silent skip.
    let here = t.join("here");
    fs::create_dir_all(&here).unwrap();
    tree::file(&here.join("f"), b"present");
    let out = t.rewind([OsStr::new("backup"), here.as_os_str(), missing.as_os_str()]);
    // Exit 3: the snapshot holds the rest, and its paths leave the missing one out.
    expect_code(&out, 3, "backup of a missing path beside one that exists");
    assert!(
        stderr(&out).contains(&missing.display().to_string()),
        "{}",
        stderr(&out)
    );
    let target = t.join("out");
    t.restore("latest", &target);
    assert_eq!(
        fs::read(restored(&target, &here).join("f")).unwrap(),
        b"present"
    );
    let snaps: serde_json::Value = serde_json::from_str(&t.ok(["snapshots", "--json"])).unwrap();
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([here.display().to_string()]),
        "{snaps}"
    );
    t.ok(["check"]);
}

#[test]
fn a_directory_that_is_not_a_repository_is_refused_and_left_alone() {
    let t = TempRepo::uninit();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("f"), b"data");
    let not_repo = t.join("repo");
    fs::create_dir_all(&not_repo).unwrap();
    tree::file(&not_repo.join("notes.txt"), b"my notes");
    let target = t.join("out");
    let commands: [Vec<&OsStr>; 5] = [
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["snapshots".as_ref()],
        vec!["check".as_ref()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
        vec!["ls".as_ref(), "latest".as_ref()],
    ];
    for args in &commands {
        let out = t.rewind(args);
        expect_code(&out, 1, &format!("{args:?} on a non-repository"));
        let err = stderr(&out);
        assert!(
            err.contains(&not_repo.display().to_string()),
            "{args:?}: {err}"
        );
        assert!(err.contains("not a rewind repository"), "{args:?}: {err}");
    }
    assert_eq!(
        fault::files_below(&not_repo),
        vec![PathBuf::from("notes.txt")]
    );
    assert!(!target.exists());
    let out = t.rewind(["init"]);
    expect_code(&out, 1, "init in a non-empty directory");
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));

    // A repository path that does not exist is not created by reading commands.
    fs::remove_dir_all(&not_repo).unwrap();
    for args in &commands[1..] {
        let out = t.rewind(args);
        expect_code(&out, 1, &format!("{args:?} on a missing repository"));
        assert!(
            stderr(&out).contains(&not_repo.display().to_string()),
            "{}",
            stderr(&out)
        );
    }
    assert!(!not_repo.exists());

    // A repository path that is a file.
    tree::file(&not_repo, b"a file");
    let out = t.rewind(["snapshots"]);
    expect_code(&out, 1, "snapshots on a file");
    assert!(
        stderr(&out).contains(&not_repo.display().to_string()),
        "{}",
        stderr(&out)
    );

    // And init over an existing repository.
    fs::remove_file(&not_repo).unwrap();
    t.ok(["init"]);
    let out = t.rewind(["init"]);
    expect_code(&out, 1, "init over a repository");
    assert!(
        stderr(&out).contains("already holds a repository"),
        "{}",
        stderr(&out)
    );
}

/// A repository with one snapshot of `src/f`.
fn one_snapshot() -> (TempRepo, PathBuf, String) {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("f"), b"data");
    let snap = t.backup(&src);
    (t, src, snap)
}

/// Every command that opens the repository exits 1 and says each of `want`
/// on stderr; nothing in the repository changes and no target appears.
fn refused(t: &TempRepo, src: &Path, what: &str, want: &[&str]) {
    let target = t.join("out");
    let before = fault::files_below(&t.repo());
    for args in [
        vec![OsStr::new("backup"), src.as_os_str()],
        vec!["snapshots".as_ref()],
        vec!["check".as_ref()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    ] {
        let out = t.rewind(&args);
        expect_code(&out, 1, &format!("{args:?} with {what}"));
        for w in want {
            assert!(
                stderr(&out).contains(w),
                "{args:?} with {what}: {}",
                stderr(&out)
            );
        }
    }
    assert_eq!(
        fault::files_below(&t.repo()),
        before,
        "{what}: the repository changed"
    );
    assert!(!target.exists());
}

#[test]
fn unknown_config_format_is_refused_naming_it() {
    for plain in [true, false] {
        let t = if plain {
            TempRepo::plain()
        } else {
            TempRepo::new()
        };
        let src = t.join("src");
        fs::create_dir_all(&src).unwrap();
        tree::file(&src.join("f"), b"data");
        t.backup(&src);
        let config = t.repo().join("config");
        let good = fs::read(&config).unwrap();

        if plain {
            // The config's JSON says a format this build does not know.
            let text = String::from_utf8_lossy(&good[8..]).into_owned();
            assert!(text.contains("\"format\": 1"), "{text}");
            let mut future = good[..8].to_vec();
            future.extend_from_slice(text.replace("\"format\": 1", "\"format\": 7").as_bytes());
            fs::write(&config, &future).unwrap();
            refused(
                &t,
                &src,
                "config format 7",
                &["config", "unknown repository format 7"],
            );
        }

        // The config's envelope has a version this build does not know.
        let mut future = good.clone();
        future[5] = 3;
        fs::write(&config, &future).unwrap();
        refused(
            &t,
            &src,
            "config envelope version 3",
            &["config", "unknown format version 3"],
        );

        fs::write(&config, &good).unwrap();
        t.ok(["check", "--read-data"]);
    }
}

#[test]
fn index_of_an_unknown_version_is_refused_naming_it() {
    // Not damage to skip: a later rewind wrote it, and this one must not
    // write beside it or report its blobs as missing.
    let (t, src, _) = one_snapshot();
    let index = fault::repo_files(&t, "index").remove(0);
    let mut future = fs::read(&index).unwrap();
    future[5] = 3;
    // A new object, as a later rewind would write (the cache holds a copy
    // of every object it has seen, by name, size and time).
    let name = "ab".repeat(32);
    fs::write(index.with_file_name(&name), &future).unwrap();
    refused(
        &t,
        &src,
        "index version 3",
        &[&name, "unknown format version 3"],
    );
}

#[test]
fn snapshot_of_an_unknown_version_is_named_and_the_others_still_work() {
    let (t, _, snap) = one_snapshot();
    let other = t.join("other");
    fs::create_dir_all(&other).unwrap();
    tree::file(&other.join("g"), b"other data");
    t.backup(&other);
    let file = t.repo().join("snapshots").join(&snap);
    let mut future = fs::read(&file).unwrap();
    future[5] = 3;
    fs::write(&file, &future).unwrap();
    let (c, report) = check(&t, &[]);
    assert_eq!(c, Some(1), "{report}");
    let errors = report["errors"].to_string();
    assert!(
        errors.contains(&snap[..8]) && errors.contains("unknown format version 3"),
        "{errors}"
    );
    let target = t.join("out");
    t.restore("latest", &target);
    assert_eq!(
        fs::read(restored(&target, &other).join("g")).unwrap(),
        b"other data"
    );
}

#[test]
fn usage_errors_exit_2() {
    let t = TempRepo::new();
    let cases: [&[&str]; 8] = [
        &[],
        &["frobnicate"],
        &["snapshots", "--no-such-flag"],
        &["restore", "latest"],
        &["backup", "--compression", "99", "/"],
        &["check", "--read-data-subset", "lots"],
        &["check", "--read-data-subset", "150%"],
        &["check", "--read-data", "--read-data-subset", "5%"],
    ];
    for args in cases {
        let out = t.rewind(args);
        expect_code(&out, 2, &format!("{args:?}"));
        assert!(!stderr(&out).is_empty(), "{args:?}: no message");
    }
    let (c, report) = check(&t, &["--read-data-subset", "50%"]);
    assert_eq!(c, Some(0), "{report}");
}

#[test]
fn backup_without_paths_is_a_usage_error() {
    let t = TempRepo::new();
    let out = t.rewind(["backup"]);
    expect_code(&out, 2, "backup with no path");
    assert!(
        stderr(&out).contains("required arguments were not provided"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_snapshots_and_paths_are_named() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("f"), b"data");
    t.backup(&src);
    let target = t.join("out");
    for (spec, want) in [
        ("deadbeef", "snapshot deadbeef not found"),
        ("zz", "\"zz\" is not a snapshot id"),
        ("latest:/no/such/path", "/no/such/path"),
    ] {
        let out = restore(&t, spec, &target, &[]);
        expect_code(&out, 1, spec);
        assert!(stderr(&out).contains(want), "{spec}: {}", stderr(&out));
        assert!(!target.exists(), "{spec}: target created");
    }
    let out = t.rewind(["cat", "latest", "/no/such/file"]);
    expect_code(&out, 1, "cat of a missing path");
    assert!(stderr(&out).contains("/no/such/file"), "{}", stderr(&out));
}
