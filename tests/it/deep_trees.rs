//! Snapshots deeper than a thread's stack: the commands that walk whole
//! trees (`stats`, `check`, `ls`, `prune`) go through the library's walker,
//! whose depth is bounded by memory. `stats` recursed and aborted on such a
//! snapshot (issue 13), and so did `find` and `diff` of two snapshots, which
//! keep explicit stacks of their own.

use crate::common::TempRepo;

/// Deep enough to overflow the main thread's 8 MiB stack with a frame of
/// under 100 bytes per level (a backup this deep is a test of backup, so
/// the snapshot is written through the library).
const LEVELS: usize = 100_000;

const PAYLOAD: &[u8] = b"at the bottom";

/// A snapshot of `/deep/d/d/…/d/leaf`, `LEVELS` directories named `d`.
fn deep_snapshot(t: &TempRepo) {
    deep_snapshot_of(t, PAYLOAD, 1_700_000_000, LEVELS);
}

/// The path of the leaf in a deep snapshot.
fn leaf_path() -> String {
    format!("/deep{}/leaf", "/d".repeat(LEVELS))
}

/// A snapshot `levels` deep whose leaf holds `payload`, taken at `sec`.
fn deep_snapshot_of(t: &TempRepo, payload: &[u8], sec: i64, levels: usize) {
    crate::common::deep_chain_snapshot(t, payload, sec, levels, &|_, _| {});
}

#[test]
fn stats_and_check_walk_a_snapshot_deeper_than_the_stack() {
    let t = TempRepo::new();
    deep_snapshot(&t);
    let stats: serde_json::Value = serde_json::from_str(&t.ok(["stats", "--json"])).unwrap();
    assert_eq!(stats["files"], 1, "{stats}");
    assert_eq!(stats["logical_bytes"], PAYLOAD.len(), "{stats}");
    assert_eq!(stats["unique_blobs"], 1, "{stats}");
    let one: serde_json::Value =
        serde_json::from_str(&t.ok(["stats", "--json", "latest"])).unwrap();
    assert_eq!(one["files"], 1, "{one}");
    let check = t.ok(["check"]);
    assert!(check.contains("no errors"), "{check}");
}

#[test]
fn prune_keeps_the_bottom_of_a_deep_snapshot() {
    let t = TempRepo::new();
    let src = t.join("src");
    crate::common::tree::file(&src.join("other"), b"only in a forgotten snapshot");
    t.backup(&src);
    let listed: serde_json::Value = serde_json::from_str(&t.ok(["snapshots", "--json"])).unwrap();
    let id = listed[0]["id"]
        .as_str()
        .expect("the snapshot's id")
        .to_string();
    deep_snapshot(&t);
    t.ok(["forget", &id]);
    let report: serde_json::Value = serde_json::from_str(&t.ok(["prune", "--json"])).unwrap();
    assert!(report["blobs_unused"].as_u64() > Some(0), "{report}");
    // Every tree and the leaf's data are still there: the walk reached the bottom.
    let check = t.ok(["check"]);
    assert!(check.contains("no errors"), "{check}");
    let stats: serde_json::Value = serde_json::from_str(&t.ok(["stats", "--json"])).unwrap();
    assert_eq!(
        (&stats["snapshots"], &stats["files"]),
        (&1.into(), &1.into()),
        "{stats}"
    );
}

/// Two deep snapshots, the second with another leaf: their ids, oldest first.
fn two_deep_snapshots(t: &TempRepo) -> (String, String) {
    deep_snapshot(t);
    deep_snapshot_of(t, b"changed at the bottom", 1_700_086_400, LEVELS);
    let listed: serde_json::Value = serde_json::from_str(&t.ok(["snapshots", "--json"])).unwrap();
    let id = |i: usize| listed[i]["id"].as_str().expect("an id").to_string();
    (id(0), id(1))
}

#[test]
fn find_reaches_the_bottom_of_a_deep_snapshot() {
    let t = TempRepo::new();
    let (a, b) = two_deep_snapshots(&t);
    let out = t.ok(["find", "--json", "leaf"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one matching path");
    let found: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(found["path"], leaf_path());
    let snaps = found["snapshots"].as_array().expect("its snapshots");
    let seen: Vec<_> = snaps
        .iter()
        .map(|s| (s["id"].as_str(), s["size"].as_u64(), s["status"].as_str()))
        .collect();
    let want = [
        (Some(a.as_str()), Some(13), Some("new")),
        (Some(b.as_str()), Some(21), Some("changed")),
    ];
    assert_eq!(seen, want);
}

#[test]
fn diff_of_two_deep_snapshots_finds_the_changed_bottom() {
    let t = TempRepo::new();
    let (a, b) = two_deep_snapshots(&t);
    let out = t.rewind(["diff", "--json", &a, &b]);
    assert_eq!(out.status.code(), Some(1), "differences found");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = report["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{:?}", report["summary"]);
    let c = &changes[0];
    assert_eq!(c["path"], leaf_path());
    assert_eq!(
        (&c["status"], &c["categories"]),
        (&"M".into(), &serde_json::json!(["content"]))
    );
    assert_eq!(
        (&c["details"][0]["a"], &c["details"][0]["b"]),
        (&"13 bytes".into(), &"21 bytes".into())
    );
    // Each side's root, `/deep` and every level below it: nothing else.
    assert_eq!(
        report["stats"]["trees_read"],
        2 * (LEVELS + 2),
        "{}",
        report["stats"]
    );
}

#[test]
fn diff_against_a_live_tree_lists_a_deep_removed_directory() {
    // Every path of a removed tree is in the report, so the chain is
    // shallower than the others: still deeper than a comparing thread's
    // stack allows for recursion.
    const SHALLOWER: usize = 10_000;
    let t = TempRepo::new();
    deep_snapshot_of(&t, PAYLOAD, 1_700_000_000, SHALLOWER);
    let live = t.join("live");
    std::fs::create_dir(&live).unwrap();
    let snap = "latest:/deep";
    let out = t.rewind(["diff", "--json", snap, live.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "differences found");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = report["changes"].as_array().expect("changes");
    let removed: Vec<&str> = changes
        .iter()
        .filter(|c| c["status"] == "D")
        .map(|c| c["path"].as_str().expect("a path"))
        .collect();
    assert_eq!(removed.len(), SHALLOWER + 1, "every level and the leaf");
    let bottom = format!("/deep{}", "/d".repeat(SHALLOWER));
    assert_eq!(removed[SHALLOWER - 1], bottom);
    assert_eq!(removed[SHALLOWER], format!("{bottom}/leaf"));
}
