//! `history/` without FUSE: the version and merge logic as tables, then the
//! handlers on repositories in memory.

use super::*;
use crate::backend::memory::MemoryBackend;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{Extent, Xattr};
use crate::repo::writer::RepoWriter;
use crate::repo::Repository;
use crate::vfs::{Options, Root, ROOT};

fn snap(n: u8, sec: i64) -> SnapInfo {
    SnapInfo {
        id: SnapshotId([n; 32]),
        time: Time { sec, nsec: 0 },
        host: "h".into(),
        tags: vec![],
        tree: TreeId([n; 32]),
    }
}

fn name(t: Time) -> String {
    format!("T{}", t.sec)
}

/// A place of kind `kind` whose version is `v`.
fn place(kind: Kind, v: u8) -> Place {
    Place {
        at: Some((TreeId([v; 32]), 0)),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: Time::default(),
        subtree: None,
        fingerprint: [v; 16],
    }
}

/// Per snapshot: `None` for not holding a path, else (kind, version).
type Held = Vec<Option<(Kind, u8)>>;

/// The versions of a path held as `held` says: per snapshot (at time 10 *
/// position), `None` for not held, else (kind, version).
fn versions_of(held: &Held) -> Vec<String> {
    let snaps: Vec<SnapInfo> = (0..held.len())
        .map(|i| snap(i as u8, 10 * i as i64))
        .collect();
    let mut places = Vec::new();
    let mut at = Vec::new();
    for (i, h) in held.iter().enumerate() {
        if let Some((kind, v)) = h {
            places.push(place(*kind, *v));
            at.push((i, places.len() - 1));
        }
    }
    versions(&places, &at, &snaps, &name)
        .into_iter()
        .map(|v| String::from_utf8(v.name).unwrap())
        .collect()
}

#[test]
fn a_version_starts_wherever_the_entry_differs_from_the_last_one_held() {
    use Kind::{Dir, File, Symlink};
    let f = |v| Some((File, v));
    let table: &[(&str, Held, &[&str])] = &[
        ("unchanged nights", vec![f(1), f(1), f(1)], &["T0-00000000"]),
        (
            "a change",
            vec![f(1), f(1), f(2)],
            &["T0-00000000", "T20-02020202"],
        ),
        (
            "reverted",
            vec![f(1), f(2), f(1)],
            &["T0-00000000", "T10-01010101", "T20-02020202"],
        ),
        (
            "not held in between: nothing changed",
            vec![f(1), None, None, f(1)],
            &["T0-00000000"],
        ),
        (
            "deleted and back changed",
            vec![None, f(1), None, f(2)],
            &["T10-01010101", "T30-03030303"],
        ),
        (
            "a directory in between",
            vec![f(1), Some((Dir, 9)), f(1)],
            &["T0-00000000", "T20-02020202"],
        ),
        (
            "a file that became a symlink",
            vec![f(1), Some((Symlink, 3))],
            &["T0-00000000", "T10-01010101"],
        ),
        (
            "a directory only",
            vec![Some((Dir, 1)), Some((Dir, 2))],
            &[],
        ),
    ];
    for (what, held, want) in table {
        assert_eq!(versions_of(held), *want, "{what}");
    }
}

#[test]
fn versions_whose_names_collide_are_named_by_the_full_id() {
    let mut snaps = vec![snap(1, 5), snap(2, 5)];
    snaps[1].id.0[..4].copy_from_slice(&[1; 4]);
    let places = vec![place(Kind::File, 1), place(Kind::File, 2)];
    let v = versions(&places, &[(0, 0), (1, 1)], &snaps, &name);
    let names: Vec<String> = v
        .iter()
        .map(|v| String::from_utf8(v.name.clone()).unwrap())
        .collect();
    assert_eq!(names[0], format!("T5-{}", snaps[0].id.to_hex()));
    assert_eq!(names[1], format!("T5-{}", snaps[1].id.to_hex()));
}

#[test]
fn history_directories_take_the_newest_mode_with_search_bits_for_files() {
    let with = |kind, mode| Place {
        mode,
        ..place(kind, 1)
    };
    let table = [
        (Kind::File, 0o640, 0o750),
        (Kind::File, 0o600, 0o700),
        (Kind::File, 0o4755, 0o755),
        (Kind::File, 0o000, 0o000),
        (Kind::Symlink, 0o777, 0o777),
        (Kind::Dir, 0o1777, 0o1777),
        (Kind::Dir, 0o700, 0o700),
    ];
    for (kind, mode, want) in table {
        assert_eq!(with(kind, mode).dir_perm(), want, "{kind:?} {mode:o}");
    }
}

/// Trees in memory, counting loads.
struct Trees {
    trees: HashMap<TreeId, Arc<Tree>>,
    loads: usize,
}

impl Trees {
    fn add(&mut self, entries: Vec<Entry>) -> TreeId {
        let t = Tree::new(entries);
        let id = TreeId(blake3::hash(&t.encode()).into());
        self.trees.insert(id, Arc::new(t));
        id
    }
    fn load(&mut self, id: &TreeId) -> Result<Arc<Tree>> {
        self.loads += 1;
        self.trees
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound("tree".into()))
    }
}

fn file_entry(name: &str, content: u8) -> Entry {
    let mut e = Entry::new(name.into(), Kind::File);
    e.mode = 0o644;
    e.size = 1;
    e.extents = vec![Extent::Data {
        id: BlobId([content; 32]),
        len: 1,
    }];
    e
}

fn dir_entry(name: &str, tree: TreeId) -> Entry {
    let mut e = Entry::new(name.into(), Kind::Dir);
    e.mode = 0o755;
    e.subtree = Some(tree);
    e
}

#[test]
fn a_path_is_looked_up_once_per_distinct_tree_and_names_are_unioned() {
    let mut t = Trees {
        trees: HashMap::new(),
        loads: 0,
    };
    // www in three shapes; 200 snapshots use them in runs.
    let www1 = t.add(vec![file_entry("a", 1), file_entry("config", 1)]);
    let www2 = t.add(vec![file_entry("b", 1), file_entry("config", 2)]);
    let www3 = t.add(vec![dir_entry("config", www1)]);
    let roots: Vec<TreeId> = [www1, www2, www3]
        .iter()
        .map(|w| {
            let srv = t.add(vec![dir_entry("www", *w)]);
            t.add(vec![dir_entry("srv", srv)])
        })
        .collect();
    let snaps: Vec<SnapInfo> = (0..200)
        .map(|i| SnapInfo {
            tree: roots[match i {
                0..100 => 0,
                100..150 => 1,
                150..199 => 0,
                _ => 2,
            }],
            ..snap(i as u8, i as i64)
        })
        .collect();
    let root = Trail::root(&snaps);
    assert_eq!((root.places.len(), root.held.len()), (3, 200));
    let mut load = |id: &TreeId| t.load(id);
    let srv = root.step(b"srv", &snaps, &name, &mut load).unwrap();
    let www = srv.step(b"www", &snaps, &name, &mut load).unwrap();
    let config = www.step(b"config", &snaps, &name, &mut load).unwrap();
    assert_eq!(t.loads, 9, "three distinct trees at each level");
    let names: Vec<&[u8]> = config.versions.iter().map(|v| v.name.as_slice()).collect();
    assert_eq!(
        names,
        [&b"T0-00000000"[..], b"T100-64646464", b"T150-96969696"]
    );
    assert_eq!(config.newest().map(|p| p.kind), Some(Kind::Dir));
    let mut load = |id: &TreeId| t.load(id);
    assert_eq!(
        www.children(&mut load).unwrap(),
        [b"a".to_vec(), b"b".to_vec(), b"config".to_vec()]
    );
    let inside = config.children(&mut load).unwrap();
    assert_eq!(inside, [b"a".to_vec(), b"config".to_vec()]);
    let listing = Listing::new(&config, inside);
    let listed: Vec<(String, Listed, Kind)> = listing
        .items
        .iter()
        .map(|(n, l, k)| (String::from_utf8_lossy(n).into_owned(), *l, *k))
        .collect();
    assert_eq!(
        listed,
        [
            ("T0-00000000".into(), Listed::Version(0), Kind::File),
            ("T100-64646464".into(), Listed::Version(1), Kind::File),
            ("T150-96969696".into(), Listed::Version(2), Kind::File),
            ("a".into(), Listed::Child, Kind::Dir),
            ("config".into(), Listed::Child, Kind::Dir),
        ]
    );
    let missing = www.step(b"nope", &snaps, &name, &mut load).unwrap();
    assert!(missing.held.is_empty() && missing.newest().is_none());
}

#[test]
fn a_version_wins_over_a_child_of_the_same_name() {
    let trail = Trail {
        places: vec![place(Kind::File, 1)],
        held: vec![(0, 0)],
        versions: vec![Version {
            name: b"x".to_vec(),
            place: 0,
            first: 0,
        }],
    };
    let l = Listing::new(&trail, vec![b"a".to_vec(), b"x".to_vec()]);
    let listed: Vec<(&[u8], Listed)> = l.items.iter().map(|(n, w, _)| (n.as_slice(), *w)).collect();
    assert_eq!(
        listed,
        [(&b"a"[..], Listed::Child), (&b"x"[..], Listed::Version(0))]
    );
}

// The handlers, on a repository in memory.

struct Fixture {
    mem: Arc<MemoryBackend>,
    repo: Arc<Repository>,
    w: RepoWriter,
}

impl Fixture {
    fn new() -> Fixture {
        let mem = Arc::new(MemoryBackend::new());
        let repo =
            Arc::new(Repository::init(mem.clone(), &crate::repo::InitOptions::test()).unwrap());
        let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
        Fixture { mem, repo, w }
    }

    fn file(&self, name: &str, content: &[u8], mode: u32) -> Entry {
        let mut e = Entry::new(name.into(), Kind::File);
        e.mode = mode;
        e.uid = 33;
        if !content.is_empty() {
            let id = self.w.add_data(content).unwrap();
            e.extents.push(Extent::Data {
                id,
                len: content.len() as u32,
            });
        }
        e.size = content.len() as u64;
        e.mtime = Time {
            sec: content.len() as i64,
            nsec: 0,
        };
        e
    }

    fn dir(&self, name: &str, entries: Vec<Entry>) -> Entry {
        let mut d = Entry::new(name.into(), Kind::Dir);
        d.mode = 0o750;
        d.gid = 44;
        d.subtree = Some(self.w.add_tree(&Tree::new(entries).encode()).unwrap());
        d
    }

    /// A snapshot of host `host` at `sec` of `srv/www` holding `www`.
    fn snapshot(&self, www: Vec<Entry>, sec: i64, host: &str) -> SnapshotId {
        let srv = self.dir("srv", vec![self.dir("www", www)]);
        let tree = self.w.add_tree(&Tree::new(vec![srv]).encode()).unwrap();
        self.w
            .commit(&Snapshot {
                time: Time { sec, nsec: 0 },
                host: host.into(),
                username: "root".into(),
                paths: vec!["/srv/www".into()],
                tags: vec![],
                tree,
                parent: None,
                original: None,
                program: "test".into(),
                summary: Summary::default(),
            })
            .unwrap()
    }

    fn mount(&self) -> Vfs {
        let opts = Options {
            cache_bytes: 1 << 20,
            read_ahead_threads: 0,
            owner: (5, 6),
        };
        Vfs::new(self.repo.clone(), Root::Repository, &opts).unwrap()
    }
}

fn names(v: &Vfs, ino: Ino) -> Vec<String> {
    let mut out = Vec::new();
    v.readdir(ino, 2, &mut |i| {
        out.push(String::from_utf8_lossy(i.name).into_owned());
        false
    })
    .unwrap();
    out
}

fn walk(v: &Vfs, path: &str) -> Attr {
    let mut a = v.getattr(ROOT).unwrap();
    for name in path.split('/').filter(|n| !n.is_empty()) {
        a = v
            .lookup(a.ino, name.as_bytes())
            .unwrap_or_else(|e| panic!("{path}: {name}: {e}"));
    }
    a
}

/// The version names of `path` in `v`, each with the content it reads.
fn versions_read(v: &Vfs, path: &str) -> Vec<(String, Vec<u8>)> {
    let dir = walk(v, path).ino;
    names(v, dir)
        .into_iter()
        .filter(|n| n.starts_with(|c: char| c.is_ascii_digit()))
        .map(|n| {
            let a = v.lookup(dir, n.as_bytes()).unwrap();
            (n, v.read(a.ino, 0, 1 << 20).unwrap())
        })
        .collect()
}

#[test]
fn one_host_shows_its_paths_with_a_file_s_versions_side_by_side() {
    let f = Fixture::new();
    let cfg = |content: &[u8], mode| f.file("config.php", content, mode);
    let index = || {
        let mut e = f.file("index.php", b"<?php", 0o644);
        (e.nlink, e.dev, e.ino) = (2, 7, 8);
        e
    };
    let ids = [
        f.snapshot(vec![cfg(b"one", 0o640), index()], 100, "web1"),
        f.snapshot(vec![cfg(b"one", 0o640), index()], 200, "web1"),
        f.snapshot(vec![cfg(b"two!", 0o640), index()], 300, "web1"),
        f.snapshot(vec![cfg(b"two!", 0o600)], 400, "web1"),
        f.snapshot(
            vec![cfg(b"two!", 0o600), f.file("new.php", b"n", 0o644)],
            500,
            "web1",
        ),
    ];
    let v = f.mount();
    let root: Vec<String> = names(&v, ROOT);
    assert_eq!(root, ["history", "hosts", "ids", "snapshots", "tags"]);
    assert_eq!(names(&v, walk(&v, "history").ino), ["srv"]);
    assert_eq!(
        names(&v, walk(&v, "history/srv/www").ino),
        ["config.php", "index.php", "new.php"],
        "every name any snapshot held"
    );
    let t =
        |sec, id: &SnapshotId| format!("{}-{}", local_time_name(Time { sec, nsec: 0 }), id.short());
    assert_eq!(
        versions_read(&v, "history/srv/www/config.php"),
        [
            (t(100, &ids[0]), b"one".to_vec()),
            (t(300, &ids[2]), b"two!".to_vec()),
            (t(400, &ids[3]), b"two!".to_vec()),
        ]
    );
    let index = versions_read(&v, "history/srv/www/index.php");
    assert_eq!(index.len(), 1);
    let index = walk(&v, &format!("history/srv/www/index.php/{}", index[0].0));
    assert_eq!(index.nlink, 1, "a hard link's version is no link");
    // Each version shows its own metadata, with nlink 1; the directory of
    // versions the newest mode with search bits, and the newest owner.
    let dir = walk(&v, "history/srv/www/config.php");
    assert_eq!(
        (dir.kind, dir.perm, dir.uid, dir.stable),
        (Kind::Dir, 0o700, 33, false)
    );
    let first = walk(
        &v,
        &format!("history/srv/www/config.php/{}", t(100, &ids[0])),
    );
    assert_eq!(
        (
            first.kind,
            first.perm,
            first.size,
            first.nlink,
            first.stable
        ),
        (Kind::File, 0o640, 3, 1, true)
    );
    let www = walk(&v, "history/srv/www");
    assert_eq!((www.perm, www.gid), (0o750, 44));
    assert!(v.lookup(dir.ino, b"T0-nothing").is_err());
    assert!(v.lookup(www.ino, b"gone.php").is_err());
    assert_eq!(
        v.path(first.ino),
        format!("/history/srv/www/config.php/{}", t(100, &ids[0]))
    );
}

#[test]
fn several_hosts_each_have_their_own_history_and_new_snapshots_appear() {
    let f = Fixture::new();
    f.snapshot(vec![f.file("a", b"web", 0o644)], 100, "web1");
    f.snapshot(vec![f.file("a", b"db", 0o644)], 200, "db1");
    let v = f.mount();
    assert_eq!(names(&v, walk(&v, "history").ino), ["db1", "web1"]);
    let web = walk(&v, "history/web1/srv/www/a");
    assert_eq!(names(&v, web.ino).len(), 1);
    let id = f.snapshot(vec![f.file("a", b"web, later", 0o644)], 300, "web1");
    std::thread::sleep(crate::vfs::catalog::REFRESH + std::time::Duration::from_millis(50));
    let listed = names(&v, web.ino);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed[1].ends_with(&id.short()));
    assert_eq!(names(&v, walk(&v, "history/db1/srv/www/a").ino).len(), 1);
    // A host that appears while mounted gets its history.
    f.snapshot(vec![], 400, "mail");
    std::thread::sleep(crate::vfs::catalog::REFRESH + std::time::Duration::from_millis(50));
    assert_eq!(names(&v, walk(&v, "history").ino), ["db1", "mail", "web1"]);
}

#[test]
fn a_file_that_becomes_a_directory_lists_its_versions_and_its_names() {
    let f = Fixture::new();
    let mut x = f.file("x", b"plain", 0o644);
    x.xattrs = vec![Xattr {
        name: b"user.k".to_vec(),
        value: b"v".to_vec(),
    }];
    f.snapshot(vec![x], 100, "h");
    f.snapshot(
        vec![f.dir("x", vec![f.file("inner", b"in", 0o600)])],
        200,
        "h",
    );
    let v = f.mount();
    let x = walk(&v, "history/srv/www/x");
    assert_eq!(x.perm, 0o750, "newest: the directory");
    let listed = names(&v, x.ino);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[1], "inner");
    let version = v.lookup(x.ino, listed[0].as_bytes()).unwrap();
    assert_eq!(version.kind, Kind::File);
    assert_eq!(
        v.getxattr(version.ino, b"user.k", crate::vfs::Caller::Privileged)
            .unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(
        v.listxattr(version.ino, crate::vfs::Caller::Privileged)
            .unwrap(),
        b"user.k\0"
    );
    assert_eq!(v.read(version.ino, 0, 100).unwrap(), b"plain");
    let inner = walk(&v, "history/srv/www/x/inner");
    assert_eq!(names(&v, inner.ino).len(), 1);
    // readdir's numbers are lookup's numbers, from any offset.
    let mut all = Vec::new();
    v.readdir(x.ino, 0, &mut |i| {
        all.push((i.name.to_vec(), i.ino, i.next));
        false
    })
    .unwrap();
    for (name, ino, _) in &all[2..] {
        assert_eq!(v.lookup(x.ino, name).unwrap().ino, *ino);
    }
    let mut from_3 = Vec::new();
    v.readdir(x.ino, all[2].2, &mut |i| {
        from_3.push(i.name.to_vec());
        false
    })
    .unwrap();
    assert_eq!(from_3, [all[3].0.clone()]);
}

#[test]
fn a_damaged_tree_fails_the_history_that_needs_it_naming_it() {
    let f = Fixture::new();
    f.snapshot(vec![f.file("a", b"1", 0o644)], 100, "h");
    f.w.flush().unwrap();
    let sub = f.dir("sub", vec![f.file("b", b"2", 0o644)]);
    f.w.flush().unwrap();
    let loc = f
        .repo
        .lookup(&sub.subtree.unwrap().blob())
        .unwrap()
        .unwrap();
    f.snapshot(vec![f.file("a", b"1", 0o644), sub], 200, "h");
    f.mem
        .tamper(crate::backend::FileType::Pack, &loc.pack.to_hex(), |b| {
            b[loc.frame.offset as usize + loc.frame.stored_len as usize / 2] ^= 0xff
        });
    let v = f.mount();
    assert_eq!(names(&v, walk(&v, "history/srv/www/a").ino).len(), 1);
    let sub = walk(&v, "history/srv/www/sub");
    let e = v.readdir(sub.ino, 2, &mut |_| false).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt { object, .. } if object.starts_with("/history/srv/www/sub")),
        "{e}"
    );
}
