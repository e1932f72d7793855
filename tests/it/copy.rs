//! `rewind copy`: snapshots between repositories with their own keys and
//! formats; reruns copy nothing twice; shared chunker parameters make copies
//! and later backups deduplicate.

use crate::common::compare::{assert_same, Options};
use crate::common::{restored, snapshot_ids, tree, TempRepo, PASSWORD};
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

/// `copy` into `dst` from `src`, whose password is `from_password`; the JSON report.
fn copy(dst: &TempRepo, src: &TempRepo, from_password: &str, extra: &[&str]) -> serde_json::Value {
    let out = dst
        .cmd([
            OsStr::new("copy"),
            OsStr::new("--json"),
            OsStr::new("--from-repo"),
            src.repo().as_os_str(),
        ])
        .args(extra)
        .env("REWIND_FROM_PASSWORD", from_password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The latest snapshot of `t` restores to exactly `src`.
fn latest_is(t: &TempRepo, src: &Path, label: &str) {
    let target = t.join(format!("restore-{label}"));
    t.restore("latest", &target);
    assert_same(src, &restored(&target, src), Options::default());
}

/// Between two encrypted repositories with different passwords and keys:
/// every snapshot copied, exact, once.
#[test]
fn copies_between_repositories_with_their_own_keys_exactly_and_once() {
    let src = TempRepo::uninit();
    let out = src
        .cmd(["init"])
        .env("REWIND_PASSWORD", "the source's own")
        .output()
        .unwrap();
    assert!(out.status.success());
    let data = src.full_src();
    let backup = |t: &TempRepo| {
        let out = t
            .cmd([OsStr::new("backup"), data.as_os_str()])
            .env("REWIND_PASSWORD", "the source's own")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    backup(&src);
    tree::file(&data.join("added later"), b"second snapshot");
    backup(&src);

    let dst = TempRepo::new();
    let report = copy(&dst, &src, "the source's own", &[]);
    assert_eq!(report["copied"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(snapshot_ids(&dst).len(), 2);
    dst.ok(["check", "--read-data"]);
    let target = dst.join("restored");
    dst.restore("latest", &target);
    assert_same(
        &data,
        &restored(&target, &data),
        Options {
            atime: false,
            ..Options::default()
        },
    );

    // Again: nothing new to copy.
    let report = copy(&dst, &src, "the source's own", &[]);
    assert_eq!(report["copied"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["skipped"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(snapshot_ids(&dst).len(), 2);
}

/// From an unencrypted (format 1) repository into an encrypted one: the
/// migration path.
#[test]
fn migrates_an_unencrypted_repository_into_an_encrypted_one() {
    let src = TempRepo::plain();
    let data = src.join("data");
    fs::create_dir_all(&data).unwrap();
    tree::file(&data.join("a.txt"), b"plain data");
    tree::file(&data.join("big"), &tree::noise(2 << 20, 5));
    src.backup(&data);
    let dst = TempRepo::new();
    copy(&dst, &src, PASSWORD, &[]);
    latest_is(&dst, &data, "migrated");
    dst.ok(["check", "--read-data"]);
    let config = fs::read(dst.repo().join("config")).unwrap();
    assert_eq!(config[5], 2, "the destination stays encrypted");
}

/// A repository made with the other's chunker parameters shares its blob
/// ids: a second copy reads only what changed, and a backup of the same
/// data into it stores nothing new.
#[test]
fn shared_chunker_parameters_make_copies_and_backups_deduplicate() {
    let src = TempRepo::new();
    let data = src.join("data");
    fs::create_dir_all(&data).unwrap();
    tree::file(&data.join("big"), &tree::noise(4 << 20, 9));
    src.backup(&data);
    let dst = TempRepo::uninit();
    let out = dst
        .cmd([
            OsStr::new("init"),
            OsStr::new("--copy-chunker-params-from"),
            src.repo().as_os_str(),
        ])
        .env("REWIND_FROM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    copy(&dst, &src, PASSWORD, &[]);
    latest_is(&dst, &data, "first");

    tree::file(&data.join("small"), b"a small change");
    src.backup(&data);
    let report = copy(&dst, &src, PASSWORD, &[]);
    assert_eq!(report["copied"].as_array().unwrap().len(), 1, "{report}");
    assert!(
        report["bytes_read"].as_u64().unwrap() < 64 << 10,
        "read the unchanged data again: {report}"
    );
    latest_is(&dst, &data, "second");

    // A backup straight into the destination finds every chunk there.
    let out = dst.ok([
        OsStr::new("backup"),
        OsStr::new("--json"),
        OsStr::new("--force"),
        data.as_os_str(),
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["summary"]["data_blobs_added"], 0, "{v}");
}

/// Only the snapshots named (or let through by the filters) are copied.
#[test]
fn copies_the_snapshots_asked_for() {
    let src = TempRepo::new();
    for name in ["one", "two", "three"] {
        let d = src.join(name);
        fs::create_dir_all(&d).unwrap();
        tree::file(&d.join("f"), name.as_bytes());
        src.backup(&d);
    }
    let ids = snapshot_ids(&src);
    let dst = TempRepo::new();
    copy(&dst, &src, PASSWORD, &[&ids[1][..8]]);
    assert_eq!(snapshot_ids(&dst).len(), 1);
    let path = src.join("three");
    copy(&dst, &src, PASSWORD, &["--path", path.to_str().unwrap()]);
    assert_eq!(snapshot_ids(&dst).len(), 2);
    latest_is(&dst, &path, "filtered");
}
