//! Damaged packs, trees and indexes: `check` names the damage and the files
//! that need it, restore fails exactly those by path, and nothing returns
//! wrong bytes.

use super::{check, code, expect_code, restore, strings};
use crate::common::fault;
use crate::common::{compare, restored, stderr, stdout, tree, TempRepo};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// A source tree of files with distinct content (no shared chunks), backed up
/// twice (the second time with one more file), so both snapshots need every
/// original file.
struct Damaged {
    t: TempRepo,
    src: PathBuf,
    /// Relative paths of the regular files in the first snapshot.
    files: Vec<PathBuf>,
    snaps: [String; 2],
}

fn two_snapshots() -> Damaged {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("dir/deeper")).unwrap();
    fs::create_dir_all(src.join("other")).unwrap();
    let files = [
        ("victim.bin", 3 << 20),
        ("big.bin", 2 << 20),
        ("dir/a.bin", 1 << 20),
        ("dir/deeper/b.bin", 700_000),
        ("other/c.bin", 400_000),
        ("small.txt", 20),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        tree::file(&src.join(name), &tree::noise(*len, 100 + i as u64));
    }
    let first = t.backup(&src);
    tree::file(&src.join("later.txt"), b"added between the snapshots");
    let second = t.backup(&src);
    Damaged {
        files: files.iter().map(|(n, _)| PathBuf::from(n)).collect(),
        t,
        src,
        snaps: [first, second],
    }
}

impl Damaged {
    fn short(&self, i: usize) -> &str {
        &self.snaps[i][..8]
    }

    /// `check`'s name for `rel` in snapshot `i`.
    fn named(&self, i: usize, rel: &str) -> String {
        format!("{}:{}", self.short(i), self.src.join(rel).display())
    }

    /// Restore snapshot `i`; return the exit code, stderr, and the files
    /// (relative) that are missing from the target. Every file that is there
    /// must hold exactly the source's bytes, and every missing one must be
    /// named on stderr.
    fn restore_checked(&self, i: usize, target: &Path) -> (Option<i32>, String, BTreeSet<PathBuf>) {
        self.restore_checked_with(i, target, &[])
    }

    /// [`Damaged::restore_checked`] with more restore flags.
    fn restore_checked_with(
        &self,
        i: usize,
        target: &Path,
        extra: &[&str],
    ) -> (Option<i32>, String, BTreeSet<PathBuf>) {
        let out = restore(&self.t, &self.snaps[i], target, extra);
        let err = stderr(&out);
        let back = restored(target, &self.src);
        let mut missing = BTreeSet::new();
        for rel in &self.files {
            match fs::read(back.join(rel)) {
                Ok(got) => assert!(
                    got == fs::read(self.src.join(rel)).unwrap(),
                    "{}: wrong bytes restored",
                    rel.display()
                ),
                Err(_) => {
                    // The file is named, or a directory above it that could
                    // not be read (the whole snapshot, when its root is lost).
                    let abs = back.join(rel);
                    let named = abs
                        .ancestors()
                        .take_while(|a| a.starts_with(target))
                        .any(|a| {
                            [" ", ":", "\n"]
                                .iter()
                                .any(|sep| err.contains(&format!("{}{sep}", a.display())))
                        });
                    assert!(named, "{} is missing but not named:\n{err}", rel.display());
                    missing.insert(rel.clone());
                }
            }
        }
        (code(&out), err, missing)
    }
}

#[test]
fn bit_flip_in_a_data_pack_is_found_by_read_data_and_fails_only_that_file() {
    let d = two_snapshots();
    let t = &d.t;
    let repo = fault::open(t);
    let victim = d.src.join("victim.bin");
    let locs = fault::data_locations(&repo, &fault::entry(&repo, "latest", &victim));
    let loc = locs[locs.len() / 2];
    let pack = fault::pack_file(t, &loc);
    drop(repo);
    fault::flip_byte(
        &pack,
        loc.frame.offset as u64 + loc.frame.stored_len as u64 / 2,
    );

    // Only reading the data can see a flipped bit.
    let (c, report) = check(t, &[]);
    assert_eq!(c, Some(0), "{report}");
    let (c, report) = check(t, &["--read-data"]);
    assert_eq!(c, Some(1), "{report}");
    let pack_hex = loc.pack.to_hex();
    assert_eq!(
        strings(&report["damaged_packs"]),
        BTreeSet::from([pack_hex.clone()]),
        "{report}"
    );
    let want = BTreeSet::from([d.named(0, "victim.bin"), d.named(1, "victim.bin")]);
    assert_eq!(strings(&report["damaged_files"]), want, "{report}");
    let human = t.rewind(["check", "--read-data"]);
    expect_code(&human, 1, "check --read-data");
    for w in [
        pack_hex.as_str(),
        &d.named(1, "victim.bin"),
        "the repository is damaged",
    ] {
        assert!(
            stdout(&human).contains(w),
            "check does not say {w}:\n{}",
            stdout(&human)
        );
    }

    // Restore fails that file by path, and restores the rest exactly.
    let target = t.join("out");
    let (c, err, missing) = d.restore_checked(1, &target);
    assert_eq!(c, Some(3), "{err}");
    assert_eq!(
        missing,
        BTreeSet::from([PathBuf::from("victim.bin")]),
        "{err}"
    );
    assert_eq!(
        fs::read(restored(&target, &d.src).join("later.txt")).unwrap(),
        b"added between the snapshots"
    );

    // cat fails rather than printing wrong bytes: what it printed is a prefix.
    let out = t.rewind([OsStr::new("cat"), OsStr::new("latest"), victim.as_os_str()]);
    assert_eq!(code(&out), Some(1), "cat of a damaged file");
    assert!(
        stderr(&out).contains(&victim.display().to_string()),
        "{}",
        stderr(&out)
    );
    let source = fs::read(&victim).unwrap();
    assert!(out.stdout.len() < source.len() && out.stdout == source[..out.stdout.len()]);
}

#[test]
fn truncated_data_pack_is_named_with_exactly_the_files_restore_fails() {
    let d = two_snapshots();
    let t = &d.t;
    // Cut the data pack inside its last frame: the header and that frame go,
    // every other frame stays readable.
    let repo = fault::open(t);
    let locs: Vec<_> = d
        .files
        .iter()
        .flat_map(|f| fault::data_locations(&repo, &fault::entry(&repo, "latest", &d.src.join(f))))
        .collect();
    drop(repo);
    let loc = *locs.iter().max_by_key(|l| l.frame.offset).unwrap();
    assert!(
        locs.iter().all(|l| l.pack == loc.pack),
        "the data spans several packs"
    );
    fault::truncate(&fault::pack_file(t, &loc), loc.frame.offset as u64 + 10);

    // Without reading data: the pack is too short for what the index says.
    let (c, report) = check(t, &[]);
    assert_eq!(c, Some(1), "{report}");
    assert_eq!(
        strings(&report["damaged_packs"]),
        BTreeSet::from([loc.pack.to_hex()]),
        "{report}"
    );
    let named = strings(&report["damaged_files"]);
    assert!(!named.is_empty(), "{report}");

    // Restore fails exactly the files check named, and restores the rest.
    for i in 0..2 {
        let target = t.join(format!("out{i}"));
        let (c, err, missing) = d.restore_checked(i, &target);
        assert_eq!(c, Some(3), "{err}");
        let as_named: BTreeSet<String> = missing
            .iter()
            .map(|r| d.named(i, r.to_str().unwrap()))
            .collect();
        let in_report: BTreeSet<String> = named
            .iter()
            .filter(|n| n.starts_with(d.short(i)))
            .cloned()
            .collect();
        assert_eq!(
            as_named, in_report,
            "check and restore disagree on snapshot {i}"
        );
        assert!(missing.len() < d.files.len(), "nothing restored");
    }
    let (c, report) = check(t, &["--read-data"]);
    assert_eq!(c, Some(1), "{report}");
    assert_eq!(strings(&report["damaged_files"]), named, "{report}");
}

#[test]
fn damaged_tree_is_named_by_directory_and_the_rest_restores() {
    // Trees under 64 KiB share compressed frames; a directory of 800 entries
    // has a tree of its own, so damage to it touches nothing else.
    let t = TempRepo::new();
    let src = t.join("src");
    let broken = src.join("broken");
    fs::create_dir_all(&broken).unwrap();
    for i in 0..800 {
        tree::file(
            &broken.join(format!("an-entry-with-a-long-name-{i:04}")),
            format!("{i}").as_bytes(),
        );
    }
    fs::create_dir_all(src.join("keep/deeper")).unwrap();
    tree::file(&src.join("keep/deeper/k"), &tree::noise(200_000, 1));
    tree::file(&src.join("top"), b"top");
    let snaps = [t.backup(&src), {
        tree::file(&src.join("later"), b"later");
        t.backup(&src)
    }];
    let repo = fault::open(&t);
    let loc = fault::tree_location(&repo, &fault::entry(&repo, "latest", &broken));
    drop(repo);
    assert!(
        loc.frame.raw_len as usize == loc.raw_len as usize,
        "the tree shares its frame"
    );
    fault::flip_byte(
        &fault::pack_file(&t, &loc),
        loc.frame.offset as u64 + loc.frame.stored_len as u64 / 2,
    );

    // Trees are always read: check needs no --read-data to see it.
    let (c, report) = check(&t, &[]);
    assert_eq!(c, Some(1), "{report}");
    let want: BTreeSet<String> = snaps
        .iter()
        .map(|s| format!("{}:{}", &s[..8], broken.display()))
        .collect();
    assert_eq!(strings(&report["damaged_files"]), want, "{report}");
    let (c, report) = check(&t, &["--read-data"]);
    assert_eq!(c, Some(1), "{report}");
    assert_eq!(
        strings(&report["damaged_packs"]),
        BTreeSet::from([loc.pack.to_hex()]),
        "{report}"
    );
    assert_eq!(strings(&report["damaged_files"]), want, "{report}");

    let target = t.join("out");
    let out = restore(&t, "latest", &target, &[]);
    expect_code(&out, 3, "restore with a damaged tree");
    let back = restored(&target, &src);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("warning: {} (", back.join("broken").display())),
        "{err}"
    );
    assert!(fault::files_below(&back.join("broken")).is_empty());
    let diffs = compare::differences(&src, &back, compare::Options::default());
    let unexpected: Vec<&String> = diffs.iter().filter(|d| !d.starts_with("broken")).collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");

    let out = t.rewind([OsStr::new("ls"), OsStr::new("latest"), broken.as_os_str()]);
    expect_code(&out, 1, "ls of a damaged directory");
    assert!(
        stderr(&out).contains(&broken.display().to_string()),
        "{}",
        stderr(&out)
    );
}

/// An index object damaged in the repository is named by `check` with the
/// files that need it; a restore that must read it (a cold cache, or
/// another host) restores everything else and names those files; a restore
/// from a warm cache, which checked the object when it cached it, restores
/// everything exactly. Nothing wrong is ever restored.
#[test]
fn bit_flip_in_an_index_is_named_and_no_wrong_bytes_are_restored() {
    let d = two_snapshots();
    let t = &d.t;
    // A third snapshot of other data has its own index file: it stays whole.
    let apart = t.join("apart");
    fs::create_dir_all(&apart).unwrap();
    tree::file(&apart.join("own.bin"), &tree::noise(500_000, 77));
    let own = t.backup(&apart);

    // The index file that holds the victim's first blob.
    let repo = fault::open(t);
    let victim = fault::entry(&repo, &d.snaps[0], &d.src.join("big.bin"));
    let rewind::format::tree::Extent::Data { id, .. } = victim.extents[0] else {
        panic!("data")
    };
    let name = repo
        .index_files()
        .into_iter()
        .find(|f| f.get(&id).unwrap().is_some())
        .unwrap()
        .name()
        .to_string();
    drop(repo);
    let index = t.repo().join("index").join(&name);
    let meta = fs::metadata(&index).unwrap();
    fault::flip_byte(&index, meta.len() / 2);
    // Bit rot: the bytes change, not the time.
    let f = fs::OpenOptions::new().write(true).open(&index).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    drop(f);

    let (c, report) = check(t, &[]);
    assert_eq!(c, Some(1), "{report}");
    let errors = report["errors"].to_string();
    assert!(errors.contains(&name), "{errors}");
    let named = strings(&report["damaged_files"]);
    assert!(named.iter().any(|n| n.starts_with(d.short(0))), "{report}");
    assert!(!named.iter().any(|n| n.starts_with(&own[..8])), "{report}");

    // The untouched snapshot restores; the damaged one loses only what it
    // must, and only where the damaged object is read.
    let target = t.join("apart-out");
    t.restore(&own, &target);
    assert_eq!(
        fs::read(restored(&target, &apart).join("own.bin")).unwrap(),
        tree::noise(500_000, 77)
    );
    let target = t.join("warm");
    let (c, err, missing) = d.restore_checked(0, &target);
    assert_eq!((c, missing.len()), (Some(0), 0), "{err}");
    // Without the cache the damaged file's records are unknown: the trees
    // and data it listed cannot be found (here the snapshot's root too).
    let target = t.join("cold");
    let (c, err, missing) = d.restore_checked_with(0, &target, &["--no-cache"]);
    assert!(matches!(c, Some(1) | Some(3)), "{err}");
    assert!(err.contains("missing data"), "{err}");
    assert!(missing.contains(Path::new("big.bin")), "{err}");
    // The packs still describe themselves: a rebuilt index restores it all.
    t.ok(["repair", "index"]);
    t.ok(["check", "--read-data"]);
    let target = t.join("repaired");
    let (c, err, missing) = d.restore_checked_with(0, &target, &["--no-cache"]);
    assert_eq!((c, missing.len()), (Some(0), 0), "{err}");
}

#[test]
fn truncated_index_is_named_and_other_snapshots_still_restore() {
    let d = two_snapshots();
    let t = &d.t;
    let apart = t.join("apart");
    fs::create_dir_all(&apart).unwrap();
    tree::file(&apart.join("own.bin"), &tree::noise(500_000, 77));
    // The index files of the first two snapshots; the third writes its own.
    let index = fault::repo_files(t, "index").remove(0);
    let own = t.backup(&apart);
    let len = fs::metadata(&index).unwrap().len();
    fault::truncate(&index, len - 20);

    let out = t.rewind(["check"]);
    expect_code(&out, 1, "check with a truncated index");
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains(index.file_name().unwrap().to_str().unwrap()),
        "{all}"
    );
    // Nothing else is lost: the snapshot whose index is whole restores.
    let target = t.join("out");
    t.restore(&own, &target);
    assert_eq!(
        fs::read(restored(&target, &apart).join("own.bin")).unwrap(),
        tree::noise(500_000, 77)
    );
    // And check still reports on everything it can read.
    let (c, report) = check(t, &[]);
    assert_eq!(c, Some(1));
    assert_eq!(report["snapshots"], 3, "{report}");
}

#[test]
fn damaged_hard_link_group_leaves_no_link_with_wrong_bytes() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("d1/d2")).unwrap();
    let content = tree::noise(3 << 20, 9);
    tree::file(&src.join("first"), &content);
    fs::hard_link(src.join("first"), src.join("d1/second")).unwrap();
    fs::hard_link(src.join("first"), src.join("d1/d2/third")).unwrap();
    tree::file(&src.join("plain"), b"not linked");
    t.backup(&src);
    let repo = fault::open(&t);
    let locs = fault::data_locations(&repo, &fault::entry(&repo, "latest", &src.join("first")));
    // The first chunk is large, so its frame holds nothing of `plain`.
    let loc = locs[0];
    drop(repo);
    let middle = loc.frame.offset as u64 + loc.frame.stored_len as u64 / 2;
    fault::flip_byte(&fault::pack_file(&t, &loc), middle);

    for threads in ["1", "8"] {
        let target = t.join(format!("out{threads}"));
        let out = restore(&t, "latest", &target, &["--threads", threads]);
        expect_code(&out, 3, "restore of a damaged hard-link group");
        let back = restored(&target, &src);
        for rel in ["first", "d1/second", "d1/d2/third"] {
            let p = back.join(rel);
            if let Ok(got) = fs::read(&p) {
                panic!("{rel} restored with {} bytes of a damaged file", got.len());
            }
            assert!(
                stderr(&out).contains(&p.display().to_string()),
                "{rel} not named: {}",
                stderr(&out)
            );
        }
        assert_eq!(fs::read(back.join("plain")).unwrap(), b"not linked");
    }
}
