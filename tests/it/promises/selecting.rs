//! "Selecting snapshots" and "Looking inside", as the README states them:
//! an id or a unique prefix of 4 or more hex digits on every command that
//! takes a snapshot, and `stats SNAP`'s figures for that snapshot alone.

use crate::common::{json, snapshot_ids, stderr, tree, TempRepo, PASSWORD};
use crate::mount::guard::{is_mounted, MountGuard};
use std::fs;
use std::path::Path;
use std::process::Stdio;

/// Every command that takes a snapshot, naming it `snap` (paths inside `t`).
fn commands(t: &TempRepo, src: &Path, snap: &str) -> Vec<(&'static str, Vec<String>)> {
    let s = src.to_str().unwrap();
    let at = |p: &str| t.join(p).to_str().unwrap().to_string();
    let v = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        ("ls", v(&["ls", snap])),
        ("ls SNAP PATH", v(&["ls", snap, s])),
        ("cat", v(&["cat", &format!("{snap}:{s}/f")])),
        ("dump", v(&["dump", &format!("{snap}:{s}/f")])),
        ("restore", v(&["restore", snap, "--target", &at("r")])),
        ("diff", v(&["diff", snap, s])),
        ("verify", v(&["verify", &format!("{snap}:{s}"), s])),
        ("stats", v(&["stats", snap])),
        ("snapshots", v(&["snapshots", snap])),
        ("backup --parent", v(&["backup", "-q", s, "--parent", snap])),
        ("tag", v(&["tag", snap, "--add", "kept"])),
        ("forget", v(&["forget", snap])),
    ]
}

/// "an id (64 hex digits) or a unique prefix of 4 or more": three digits are
/// refused by every command, even when they match one snapshot only, and
/// nothing is done; four digits are enough (upper case too).
#[test]
fn a_prefix_needs_four_hex_digits_on_every_command() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"selected\n");
    let id = t.backup(&src);
    let snapshots = || snapshot_ids(&t);
    assert_eq!(snapshots(), vec![id.clone()]);
    for prefix in [&id[..3], &id[..1], "", &format!("{}g", &id[..4])] {
        for (what, args) in commands(&t, &src, prefix) {
            let out = t.rewind(&args);
            // diff and verify, as diff(1), exit 2 on any trouble.
            let code = if matches!(what, "diff" | "verify") {
                2
            } else {
                1
            };
            assert_eq!(
                out.status.code(),
                Some(code),
                "{what} {prefix:?}: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains(&format!("{prefix:?} is not a snapshot id"))
                    && err.contains("4 or more hex digits"),
                "{what} {prefix:?}: {err}"
            );
            assert!(!t.join("r").exists(), "{what} restored");
            assert_eq!(
                snapshots(),
                vec![id.clone()],
                "{what} {prefix:?} changed the list"
            );
        }
    }
    // `copy` (from another repository) and `mount --snapshot` too; the
    // mount is undone.
    let other = TempRepo::new();
    let copy = |prefix: &str| {
        other
            .cmd(["copy", "--from-repo", t.repo().to_str().unwrap(), prefix])
            .env("REWIND_FROM_PASSWORD", PASSWORD)
            .output()
            .unwrap()
    };
    let out = copy(&id[..3]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4 or more hex digits"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        json(&other.ok(["snapshots", "--json"])),
        serde_json::json!([])
    );
    let mnt = t.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let out = t
        .cmd(["mount".as_ref(), mnt.as_os_str()])
        .args(["--snapshot", &id[..3]])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4 or more hex digits"),
        "{}",
        stderr(&out)
    );
    assert!(!is_mounted(&fs::canonicalize(&mnt).unwrap()));

    // Four digits name the snapshot, lower or upper case, for each command
    // (the last two, tag and forget, change the list: run them apart).
    let upper = id[..4].to_ascii_uppercase();
    for prefix in [&id[..4], upper.as_str()] {
        for (what, args) in commands(&t, &src, prefix) {
            if matches!(what, "tag" | "forget") {
                continue;
            }
            let out = t.rewind(&args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{what} {prefix}: {}",
                stderr(&out)
            );
            let _ = fs::remove_dir_all(t.join("r"));
        }
        assert_eq!(
            t.ok(["cat", &format!("{prefix}:{}/f", src.display())]),
            "selected\n"
        );
    }
    let out = copy(&id[..4]);
    assert!(out.status.success(), "{}", stderr(&out));
    let copied = json(&other.ok(["snapshots", "--json"]));
    assert_eq!(copied.as_array().unwrap().len(), 1, "{copied}");
    assert_eq!(copied[0]["original"], id.as_str(), "{copied}");
    {
        let m = MountGuard::start(&t, "mnt", &["--snapshot", &id[..4]]);
        let f = m.join(src.strip_prefix("/").unwrap()).join("f");
        assert_eq!(fs::read(f).unwrap(), b"selected\n");
    }
    // `backup --parent` added snapshots; forget by a 4-digit prefix removes
    // exactly the one it names.
    let all = snapshots();
    assert!(all.len() > 1);
    let newest = all.last().unwrap().clone();
    let unique = (4..=64)
        .map(|n| &newest[..n])
        .find(|p| all.iter().filter(|i| i.starts_with(p)).count() == 1)
        .unwrap();
    t.ok(["forget", unique]);
    assert_eq!(snapshots(), all[..all.len() - 1]);
}

/// `rewind stats SNAP` counts that snapshot alone: its files, its logical
/// size and the unique data it uses, while `rewind stats` counts every
/// snapshot and the data they share once.
#[test]
fn stats_of_one_snapshot_count_that_snapshot_alone() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("a"), &tree::noise(40_000, 1));
    tree::file(&src.join("b"), &tree::noise(30_000, 2));
    let first = t.backup(&src);
    // The second snapshot keeps both files and adds a third.
    tree::file(&src.join("c"), &tree::noise(50_000, 3));
    let second = t.backup(&src);
    let stats = |args: &[&str]| {
        let mut all = vec!["stats", "--json"];
        all.extend(args);
        json(&t.ok(all))
    };
    let whole = stats(&[]);
    let one = stats(&[&first[..8]]);
    let last = stats(&["latest"]);
    let figures = |v: &serde_json::Value| {
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        (
            n("snapshots"),
            n("files"),
            n("logical_bytes"),
            n("unique_raw_bytes"),
        )
    };
    assert_eq!(figures(&whole), (2, 5, 190_000, 120_000), "{whole}");
    assert_eq!(figures(&one), (1, 2, 70_000, 70_000), "{one}");
    assert_eq!(figures(&last), (1, 3, 120_000, 120_000), "{last}");
    assert_eq!(stats(&[&second]), last);
    // Deduplication shows in the whole repository only; each snapshot's
    // stored size is its own data's.
    assert!(whole["dedup_ratio"].as_f64().unwrap() > 1.5, "{whole}");
    assert_eq!(one["dedup_ratio"].as_f64(), Some(1.0), "{one}");
    let stored = |v: &serde_json::Value| v["unique_stored_bytes"].as_u64().unwrap();
    assert!(stored(&one) < stored(&last), "{one}\n{last}");
    assert_eq!(stored(&last), stored(&whole), "{last}\n{whole}");
    // The packs on disk are the repository's, whichever snapshot is asked.
    assert_eq!(one["repository_pack_bytes"], whole["repository_pack_bytes"]);
    // The human form says the same.
    let text = t.ok(["stats", &first[..8]]);
    assert!(text.contains("snapshots:           1\n"), "{text}");
    assert!(text.contains("files:               2\n"), "{text}");
}
