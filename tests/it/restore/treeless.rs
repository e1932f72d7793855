//! A directory stored without its tree (a backup that could not store a
//! directory's listing records the directory alone): restore makes it
//! empty, with its own metadata, and goes on with its siblings.

use super::restore;
use crate::common::{fault, stderr, tree, TempRepo};
use rewind::format::snapshot::Snapshot;
use rewind::format::tree::{Entry, Extent, Kind, Time, Tree};
use rewind::repo::writer::RepoWriter;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

/// `/top/{empty/, z}`, `empty` a directory without a tree.
fn snapshot(t: &TempRepo) {
    let repo = Arc::new(fault::open(t));
    let w = RepoWriter::new(repo, 3, false).unwrap();
    let payload = b"after the treeless directory";
    let mut z = Entry::new(b"z".to_vec(), Kind::File);
    z.mode = 0o640;
    z.size = payload.len() as u64;
    z.extents = vec![Extent::Data {
        id: w.add_data(payload).unwrap(),
        len: payload.len() as u32,
    }];
    let mut empty = Entry::new(b"empty".to_vec(), Kind::Dir);
    empty.mode = 0o710;
    empty.mtime = Time {
        sec: 1_234_567_890,
        nsec: 0,
    };
    let mut top = Entry::new(b"top".to_vec(), Kind::Dir);
    top.mode = 0o755;
    top.subtree = Some(w.add_tree(&Tree::new(vec![empty, z]).encode()).unwrap());
    let root = w.add_tree(&Tree::new(vec![top]).encode()).unwrap();
    w.commit(&Snapshot {
        time: Time {
            sec: 1_700_000_000,
            nsec: 0,
        },
        host: "treeless".into(),
        username: "root".into(),
        paths: vec!["/top".into()],
        tags: vec![],
        tree: root,
        parent: None,
        program: "treeless test".into(),
        summary: Default::default(),
        original: None,
    })
    .unwrap();
}

#[test]
fn a_directory_without_a_tree_comes_back_empty_with_its_metadata() {
    let t = TempRepo::new();
    snapshot(&t);
    let target = t.join("out");
    let out = restore(&t, "latest:/top", &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let empty = target.join("empty");
    let m = fs::symlink_metadata(&empty).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.permissions().mode() & 0o7777, 0o710);
    assert_eq!(m.mtime(), 1_234_567_890);
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    assert_eq!(
        fs::read(target.join("z")).unwrap(),
        b"after the treeless directory"
    );

    // Restored by its path, it is the target, and `--delete` empties it.
    let target = t.join("alone");
    fs::create_dir(&target).unwrap();
    tree::file(&target.join("stray"), b"not in the snapshot");
    let out = restore(&t, "latest:/top/empty", &target, &["--delete"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    let m = fs::symlink_metadata(&target).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o710);
}
