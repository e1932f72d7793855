//! Snapshots deeper than a thread's stack: the commands that walk whole
//! trees (`stats`, `check`, `ls`, `prune`) go through the library's walker,
//! whose depth is bounded by memory. `stats` recursed and aborted on such a
//! snapshot (issue 13).

use crate::common::{fault, TempRepo};
use rewind::format::snapshot::Snapshot;
use rewind::format::tree::{Entry, Extent, Kind, Time, Tree};
use rewind::repo::writer::RepoWriter;
use std::sync::Arc;

/// Deep enough to overflow the main thread's 8 MiB stack with a frame of
/// under 100 bytes per level (a backup this deep is a test of backup, so
/// the snapshot is written through the library).
const LEVELS: usize = 100_000;

const PAYLOAD: &[u8] = b"at the bottom";

/// A snapshot of `/deep/d/d/…/d/leaf`, `LEVELS` directories named `d`.
fn deep_snapshot(t: &TempRepo) {
    let repo = Arc::new(fault::open(t));
    let w = RepoWriter::new(repo, 3, false).unwrap();
    let id = w.add_data(PAYLOAD).unwrap();
    let mut leaf = Entry::new(b"leaf".to_vec(), Kind::File);
    leaf.mode = 0o640;
    leaf.size = PAYLOAD.len() as u64;
    leaf.extents = vec![Extent::Data {
        id,
        len: PAYLOAD.len() as u32,
    }];
    let mut tree = Tree::new(vec![leaf]);
    for level in (0..=LEVELS).rev() {
        let name = if level == 0 { &b"deep"[..] } else { b"d" };
        let mut d = Entry::new(name.to_vec(), Kind::Dir);
        d.mode = 0o755;
        d.subtree = Some(w.add_tree(&tree.encode()).unwrap());
        tree = Tree::new(vec![d]);
    }
    let root = w.add_tree(&tree.encode()).unwrap();
    w.commit(&Snapshot {
        time: Time {
            sec: 1_700_000_000,
            nsec: 0,
        },
        host: "deep".into(),
        username: "root".into(),
        paths: vec!["/deep".into()],
        tags: vec![],
        tree: root,
        parent: None,
        program: "deep test".into(),
        summary: Default::default(),
        original: None,
    })
    .unwrap();
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
