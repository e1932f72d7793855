//! A prune killed after writing its new packs and index, before deleting:
//! every blob it moved is then stored twice (in an old pack and a new one),
//! and a prune run again must settle on one copy, not keep both.

use super::{json, mutate};
use crate::common::{tree, TempRepo};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

fn names(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(names(&e.path()));
        } else {
            out.insert(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// Copy the files below `from` missing below `to` (with their times).
fn add_missing(from: &Path, to: &Path) {
    let have = names(to);
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            fs::create_dir_all(&dest).unwrap();
            add_missing(&e.path(), &dest);
        } else if !have.contains(&*e.file_name().to_string_lossy()) {
            crate::common::cp_a(&e.path(), &dest);
        }
    }
}

#[test]
fn a_prune_cut_short_after_its_index_settles_on_one_copy_when_rerun() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("small")).unwrap();
    tree::file(&src.join("base.bin"), &tree::noise(3 << 20, 7));
    for day in 0..8u64 {
        mutate(&src, day);
        // Small files rewritten daily: bundled frames, many index records,
        // and packs that are part garbage after `forget`.
        for i in 0..200u32 {
            fs::write(
                src.join("small").join(format!("f{i}")),
                format!("{day} {i}\n"),
            )
            .unwrap();
        }
        t.ok([OsStr::new("backup"), src.as_os_str()]);
    }
    t.ok(["forget", "--keep-last", "2"]);
    let repo = t.repo();
    let before = t.join("before");
    crate::common::cp_a(&repo, &before);

    // What a whole prune leaves.
    t.ok(["prune", "--max-unused", "0%"]);
    let done_packs = names(&repo.join("data"));
    let old_packs = names(&before.join("data"));
    assert!(
        old_packs.difference(&done_packs).count() >= 2
            && done_packs.difference(&old_packs).count() >= 1,
        "the prune must both delete and write packs"
    );

    // The repository as a prune killed just before its first deletion
    // leaves it: every old file, and the new packs and index files.
    let done = t.join("done");
    fs::rename(&repo, &done).unwrap();
    fs::rename(&before, &repo).unwrap();
    add_missing(&done.join("data"), &repo.join("data"));
    add_missing(&done.join("index"), &repo.join("index"));
    let _ = fs::remove_dir_all(t.join("cache"));
    t.ok(["check", "--read-data"]);

    // Run again with the default --max-unused: the old copies go, the new
    // packs stay, and nothing is left to do.
    let planned = t.ok(["prune", "--dry-run", "--json"]);
    t.ok(["prune"]);
    assert_eq!(
        names(&repo.join("data")),
        done_packs,
        "the rerun kept old copies (or repacked the new ones); it planned {planned}"
    );
    let dry = json(&t.ok(["prune", "--max-unused", "0%", "--dry-run", "--json"]));
    assert_eq!(dry["packs_repacked"], 0, "{dry}");
    assert_eq!(dry["packs_deleted"], 0, "{dry}");
    assert_eq!(dry["bytes_unused"], 0, "{dry}");
    t.ok(["check", "--read-data"]);
}
