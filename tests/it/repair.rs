//! `repair snapshots`: snapshots that need lost or damaged data are
//! rewritten without it; everything intact is kept; check passes and prune
//! runs again; the next backup stores the lost file anew.

use crate::common::{fault, json, restored, snapshot_ids, stderr, stdout, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

/// `keep/` backed up first; `lost/` added and backed up twice (the second
/// deduplicates against the first). Returns the three snapshot ids.
fn three_snapshots(t: &TempRepo, src: &Path) -> Vec<String> {
    fs::create_dir_all(src.join("keep/sub")).unwrap();
    tree::file(&src.join("keep/a.txt"), b"kept through everything");
    tree::file(&src.join("keep/sub/b.bin"), &tree::noise(300_000, 1));
    let first = t.backup(src);
    fs::create_dir_all(src.join("lost/also")).unwrap();
    tree::file(&src.join("lost/x.bin"), &tree::noise(200_000, 2));
    tree::file(&src.join("lost/also/y.bin"), &tree::noise(100_000, 3));
    tree::file(
        &src.join("lost/also/z.txt"),
        b"small, stored with the trees' night",
    );
    tree::chmod(&src.join("lost/also"), 0o750);
    let second = t.backup(src);
    let third = t.backup(src);
    vec![first, second, third]
}

/// Delete the packs that hold `file`'s data (as snapshot `snap` has it).
fn lose_data_of(t: &TempRepo, snap: &str, file: &Path) {
    let repo = fault::open(t);
    let e = fault::entry(&repo, snap, file);
    let locs = fault::data_locations(&repo, &e);
    assert!(!locs.is_empty());
    let packs: Vec<_> = locs.iter().map(|l| fault::pack_file(t, l)).collect();
    drop(repo);
    for p in packs {
        let _ = fs::remove_file(p);
    }
}

#[test]
fn a_lost_pack_is_cut_out_of_every_snapshot_and_backups_store_it_again() {
    let t = TempRepo::new();
    let src = t.join("src");
    let ids = three_snapshots(&t, &src);
    let x = src.join("lost/x.bin");
    lose_data_of(&t, &ids[2], &x);
    // Which of lost/ went with it (data is packed together by night).
    let repo = fault::open(&t);
    let gone = |p: &str| {
        let e = fault::entry(&repo, &ids[2], &src.join(p));
        fault::data_locations(&repo, &e)
            .iter()
            .any(|l| !fault::pack_file(&t, l).exists())
    };
    let lost: Vec<&str> = ["lost/x.bin", "lost/also/y.bin", "lost/also/z.txt"]
        .into_iter()
        .filter(|p| gone(p))
        .collect();
    assert!(lost.contains(&"lost/x.bin"));
    assert!(!gone("keep/sub/b.bin") && !gone("keep/a.txt"));
    drop(repo);

    // check names the files and says what to run.
    let broken = t.rewind(["check"]);
    assert_eq!(broken.status.code(), Some(1), "{}", stdout(&broken));
    assert!(
        stdout(&broken).contains("rewind repair snapshots"),
        "{}",
        stdout(&broken)
    );
    assert!(!stdout(&broken).contains("rewind repair index"));

    // A dry run says what goes and changes nothing.
    let dry = t.ok(["repair", "snapshots", "--dry-run"]);
    for p in &lost {
        let full = src.join(p).display().to_string();
        assert_eq!(
            dry.matches(&full).count(),
            2,
            "{full} in two snapshots:\n{dry}"
        );
    }
    assert!(!dry.contains("keep/"), "{dry}");
    assert_eq!(snapshot_ids(&t), ids);
    assert_eq!(t.rewind(["check"]).status.code(), Some(1));

    // The repair.
    let out = json(&t.ok(["repair", "snapshots", "--json"]));
    let repaired = out["repaired"].as_array().unwrap();
    assert_eq!(repaired.len(), 2, "{out}");
    let after = snapshot_ids(&t);
    assert_eq!(after.len(), 3);
    assert_eq!(after[0], ids[0], "the intact snapshot keeps its id");
    assert!(!after.contains(&ids[1]) && !after.contains(&ids[2]));
    for r in repaired {
        let removed: Vec<&str> = r["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut want: Vec<String> = lost
            .iter()
            .map(|p| src.join(p).display().to_string())
            .collect();
        want.sort();
        let mut got: Vec<String> = removed.iter().map(|s| s.to_string()).collect();
        got.sort();
        assert_eq!(got, want, "{r}");
    }
    let snaps = json(&t.ok(["snapshots", "--json"]));
    assert!(snaps[2]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "repaired"));
    t.ok(["check", "--read-data"]);
    t.ok(["prune", "--max-unused", "0%"]);
    t.ok(["check", "--read-data"]);

    // What is left restores exactly; the lost files are absent, their
    // directories still there with their metadata.
    let target = t.join("out");
    t.restore("latest", &target);
    let back = restored(&target, &src);
    assert_eq!(
        fs::read(back.join("keep/sub/b.bin")).unwrap(),
        fs::read(src.join("keep/sub/b.bin")).unwrap()
    );
    for p in &lost {
        assert!(!back.join(p).exists(), "{p} restored");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(back.join("lost/also"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o750);

    // The next backup stores the lost data again (it dedups against
    // nothing lost), and it restores.
    t.backup(&src);
    t.ok(["check", "--read-data"]);
    let again = t.join("again");
    t.restore("latest", &again);
    assert_eq!(
        fs::read(restored(&again, &src).join("lost/x.bin")).unwrap(),
        fs::read(&x).unwrap()
    );
}

#[test]
fn a_backup_after_a_pack_was_lost_does_not_point_at_it() {
    let t = TempRepo::new();
    let src = t.join("src");
    let ids = three_snapshots(&t, &src);
    lose_data_of(&t, &ids[2], &src.join("lost/x.bin"));
    // No repair: the backup alone must not deduplicate against the lost
    // pack. It stores the lost blobs again, and with them the snapshots
    // that needed them are whole again (blobs are named by content).
    assert_eq!(t.rewind(["check"]).status.code(), Some(1));
    let fourth = t.backup(&src);
    t.ok(["check", "--read-data"]);
    for snap in [&ids[1], &fourth] {
        let target = t.join(format!("out-{snap}"));
        t.restore(snap, &target);
        assert_eq!(
            fs::read(restored(&target, &src).join("lost/x.bin")).unwrap(),
            fs::read(src.join("lost/x.bin")).unwrap()
        );
    }
}

#[test]
fn damage_found_by_reading_and_lost_trees_are_repaired_too() {
    let t = TempRepo::new();
    let src = t.join("src");
    let ids = three_snapshots(&t, &src);
    // A flipped byte in keep/sub/b.bin's data: only reading finds it.
    let repo = fault::open(&t);
    let e = fault::entry(&repo, &ids[0], &src.join("keep/sub/b.bin"));
    let loc = fault::data_locations(&repo, &e)[0];
    let pack = fault::pack_file(&t, &loc);
    drop(repo);
    fault::flip_byte(
        &pack,
        loc.frame.offset as u64 + loc.frame.stored_len as u64 / 2,
    );
    let plain = t.ok(["repair", "snapshots"]);
    assert!(plain.contains("none needs lost data"), "{plain}");
    assert_eq!(snapshot_ids(&t), ids);
    let out = t.ok(["repair", "snapshots", "--read-data"]);
    assert_eq!(
        out.matches("removed ").count(),
        3,
        "in each snapshot:\n{out}"
    );
    assert!(out.contains(&src.join("keep/sub/b.bin").display().to_string()));
    // check (no reading) passes now; the damaged blob itself is still in its
    // pack until prune repacks what is used and drops the rest.
    t.ok(["check"]);
    t.ok(["prune", "--max-unused", "0%"]);
    t.ok(["check", "--read-data"]);
    let target = t.join("out");
    t.restore("latest", &target);
    let back = restored(&target, &src);
    assert!(!back.join("keep/sub/b.bin").exists());
    assert_eq!(
        fs::read(back.join("keep/a.txt")).unwrap(),
        b"kept through everything"
    );
}

#[test]
fn a_lost_tree_empties_its_directory_and_packs_in_no_index_come_first() {
    let t = TempRepo::new();
    let src = t.join("src");
    let ids = three_snapshots(&t, &src);
    // The tree of lost/also: its pack holds the second night's trees.
    let repo = fault::open(&t);
    let e = fault::entry(&repo, &ids[1], &src.join("lost/also"));
    let loc = fault::tree_location(&repo, &e);
    let tree_pack = fault::pack_file(&t, &loc);
    drop(repo);

    // An index file gone: repair snapshots will not guess, it asks for
    // repair index first.
    let index: Vec<_> = fault::repo_files(&t, "index");
    fs::remove_file(&index[0]).unwrap();
    let refused = t.rewind(["repair", "snapshots"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("repair index"),
        "{}",
        stderr(&refused)
    );
    assert!(
        stdout(&t.rewind(["check"])).contains("rewind repair index"),
        "check says so too"
    );
    t.ok(["repair", "index"]);
    t.ok(["check"]);

    fs::remove_file(&tree_pack).unwrap();
    let out = t.ok(["repair", "snapshots"]);
    assert!(out.contains("emptied"), "{out}");
    t.ok(["check", "--read-data"]);
    t.ok(["prune", "--max-unused", "0%"]);
    t.ok(["check", "--read-data"]);
    // The first night never had those trees: it is untouched.
    assert_eq!(snapshot_ids(&t)[0], ids[0]);
    let target = t.join("out");
    t.ok([
        OsStr::new("restore"),
        OsStr::new(&ids[0]),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    assert!(restored(&target, &src).join("keep/sub/b.bin").exists());
}
