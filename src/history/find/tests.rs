//! The search on repositories in memory: what it finds, in which order, how
//! each hit compares with the one before, and that shared trees are read
//! once.

use super::*;
use crate::backend::memory::MemoryBackend;
use crate::format::snapshot::Summary;
use crate::format::tree::{Extent, Time};
use crate::progress::{Collect, Silent};
use crate::repo::writer::RepoWriter;

struct Repo {
    mem: Arc<MemoryBackend>,
    repo: Arc<Repository>,
    w: RepoWriter,
}

impl Repo {
    fn new() -> Repo {
        let mem = Arc::new(MemoryBackend::new());
        let repo =
            Arc::new(Repository::init(mem.clone(), &crate::repo::InitOptions::test()).unwrap());
        let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
        Repo { mem, repo, w }
    }

    fn file(&self, name: &str, content: &[u8], mode: u32) -> Entry {
        let mut e = Entry::new(name.into(), Kind::File);
        e.mode = mode;
        if !content.is_empty() {
            let id = self.w.add_data(content).unwrap();
            e.extents = vec![Extent::Data {
                id,
                len: content.len() as u32,
            }];
        }
        e.size = content.len() as u64;
        e
    }

    fn dir(&self, name: &str, entries: Vec<Entry>) -> Entry {
        let mut d = Entry::new(name.into(), Kind::Dir);
        d.mode = 0o755;
        d.subtree = Some(self.tree(entries));
        d
    }

    fn tree(&self, entries: Vec<Entry>) -> TreeId {
        self.w.add_tree(&Tree::new(entries).encode()).unwrap()
    }

    fn snapshot(&self, root: Vec<Entry>, sec: i64, host: &str) -> TreeId {
        let tree = self.tree(root);
        self.w
            .commit(&Snapshot {
                time: Time { sec, nsec: 0 },
                host: host.into(),
                username: "root".into(),
                paths: vec!["/srv".into()],
                tags: vec![],
                tree,
                parent: None,
                original: None,
                program: "test".into(),
                summary: Summary::default(),
            })
            .unwrap();
        tree
    }

    /// `find` over every snapshot: per path, (snapshot time, change) of each hit.
    fn find(&self, patterns: &[&str]) -> (Vec<PathHits>, Stats) {
        let (snaps, _) = self.repo.snapshots().unwrap();
        let m = Matcher::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap();
        let mut out = Vec::new();
        let stats = find(&self.repo, &snaps, &m, &Silent, &mut |path, hits| {
            let hits = hits
                .iter()
                .map(|h| (snaps[h.snapshot].1.time.sec, h.change))
                .collect();
            out.push((String::from_utf8_lossy(path).into_owned(), hits));
            Ok(())
        })
        .unwrap();
        (out, stats)
    }
}

/// A path and the (snapshot time, change) of each hit.
type PathHits = (String, Vec<(i64, Change)>);

/// /srv/www with config.php, index.php and a lib/ directory.
fn site(r: &Repo, config: &[u8], mode: u32) -> Vec<Entry> {
    let www = r.dir(
        "www",
        vec![
            r.file("config.php", config, mode),
            r.file("index.php", b"<?php index", 0o644),
            r.dir("lib", vec![r.file("util.php", b"<?php util", 0o644)]),
            r.file("robots.txt", b"User-agent: *", 0o644),
        ],
    );
    vec![r.dir("srv", vec![www])]
}

use Change::{Content, Metadata, New, Same};

#[test]
fn two_hundred_snapshots_of_one_tree_read_each_tree_once() {
    let r = Repo::new();
    for day in 0..200 {
        r.snapshot(site(&r, b"v1", 0o640), day, "web1");
    }
    let (found, stats) = r.find(&["config.php"]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "/srv/www/config.php");
    let hits = &found[0].1;
    assert_eq!(hits.len(), 200);
    assert_eq!(hits[0], (0, New));
    assert!(hits[1..].iter().all(|h| h.1 == Same));
    // Root, srv, www, lib: four distinct trees.
    assert_eq!(stats.trees_read, 4);
    assert_eq!((stats.paths, stats.hits, stats.errors), (1, 200, 0));
}

#[test]
fn each_hit_is_compared_with_the_last_snapshot_of_its_host_that_held_the_path() {
    let r = Repo::new();
    r.snapshot(site(&r, b"v1", 0o640), 1, "web1");
    r.snapshot(site(&r, b"v1", 0o640), 2, "web1");
    r.snapshot(site(&r, b"v2", 0o640), 3, "web1");
    r.snapshot(site(&r, b"v2", 0o600), 4, "web1");
    // Another host in between, with other content: compared only with itself.
    r.snapshot(site(&r, b"other", 0o600), 5, "web2");
    // Deleted, then back with the content it had: the same as last held.
    r.snapshot(vec![r.dir("srv", vec![])], 6, "web1");
    r.snapshot(site(&r, b"v2", 0o600), 7, "web1");
    r.snapshot(site(&r, b"other", 0o600), 8, "web2");
    let (found, stats) = r.find(&["config.php"]);
    assert_eq!(
        found,
        [(
            "/srv/www/config.php".to_string(),
            vec![
                (1, New),
                (2, Same),
                (3, Content),
                (4, Metadata),
                (5, New),
                (7, Same),
                (8, Same)
            ]
        )]
    );
    // Each distinct tree once: the roots of 1..4 share srv/www/lib with
    // each other and the others; 6's root and srv are their own.
    let distinct_www = 4; // v1, v2, v2 0600, other
    assert_eq!(stats.trees_read, 3 * distinct_www + 1 + 2);
}

#[test]
fn paths_come_in_find_order_and_path_patterns_look_at_the_whole_path() {
    let r = Repo::new();
    r.snapshot(site(&r, b"v1", 0o640), 1, "web1");
    let names = |patterns: &[&str]| -> Vec<String> {
        r.find(patterns).0.into_iter().map(|(p, _)| p).collect()
    };
    assert_eq!(
        names(&["*.php"]),
        [
            "/srv/www/config.php",
            "/srv/www/index.php",
            "/srv/www/lib/util.php"
        ]
    );
    assert_eq!(
        names(&["www", "robots.txt"]),
        ["/srv/www", "/srv/www/robots.txt"]
    );
    assert_eq!(
        names(&["/srv/www/*.php"]),
        ["/srv/www/config.php", "/srv/www/index.php"]
    );
    assert_eq!(names(&["/srv/**/util.php"]), ["/srv/www/lib/util.php"]);
    assert!(names(&["nothing*"]).is_empty());
    // A directory's hits compare its tree: the same tree is the same.
    let (found, _) = r.find(&["lib"]);
    assert_eq!(found[0].1, [(1, New)]);
}

#[test]
fn a_tree_that_cannot_be_read_is_reported_and_the_rest_is_searched() {
    let r = Repo::new();
    r.snapshot(site(&r, b"v1", 0o640), 1, "web1");
    r.w.flush().unwrap();
    // lib/ of the second snapshot goes alone into a frame, which is damaged.
    let lib = r.dir("lib", vec![r.file("util.php", b"<?php util 2", 0o644)]);
    r.w.flush().unwrap();
    let loc = r
        .repo
        .lookup(&lib.subtree.unwrap().blob())
        .unwrap()
        .unwrap();
    let www = r.dir(
        "www",
        vec![
            r.file("config.php", b"v1", 0o640),
            r.file("index.php", b"<?php index", 0o644),
            lib,
        ],
    );
    r.snapshot(vec![r.dir("srv", vec![www])], 2, "web1");
    r.mem
        .tamper(crate::backend::FileType::Pack, &loc.pack.to_hex(), |b| {
            b[loc.frame.offset as usize + loc.frame.stored_len as usize / 2] ^= 0xff
        });
    let (snaps, _) = r.repo.snapshots().unwrap();
    let warned = Collect::default();
    let m = Matcher::new(&["*.php".into()]).unwrap();
    let mut paths = Vec::new();
    let stats = find(&r.repo, &snaps, &m, &warned, &mut |p, hits| {
        paths.push((String::from_utf8_lossy(p).into_owned(), hits.len()));
        Ok(())
    })
    .unwrap();
    assert_eq!(stats.errors, 1);
    let warnings = warned.warnings.into_inner().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("/srv/www/lib in snapshot ") && warnings[0].contains("damaged"),
        "{warnings:?}"
    );
    assert_eq!(
        paths,
        [
            ("/srv/www/config.php".to_string(), 2),
            ("/srv/www/index.php".to_string(), 2),
            ("/srv/www/lib/util.php".to_string(), 1)
        ]
    );
}

#[test]
fn an_empty_pattern_list_or_a_bad_pattern_is_refused() {
    assert!(matches!(Matcher::new(&[]), Err(Error::InvalidInput(_))));
    assert!(matches!(
        Matcher::new(&["[".into()]),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn trees_past_the_read_ahead_bound_are_each_read_once() {
    let r = Repo::new();
    let dir = |i: usize, extra: bool| {
        let mut files: Vec<Entry> = (0..400)
            .map(|j| r.file(&format!("f{j}.txt"), b"", 0o644))
            .collect();
        files.push(r.file(&format!("own{i}"), b"", 0o644));
        if extra {
            files.push(r.file("new.txt", b"", 0o644));
        }
        r.dir(&format!("d{i:03}"), files)
    };
    let first: Vec<Entry> = (0..200).map(|i| dir(i, false)).collect();
    const { assert!(200 * 400 > super::super::ahead::READY_ENTRIES) };
    r.snapshot(first.clone(), 1, "h");
    let mut second = first;
    second[150] = dir(150, true);
    r.snapshot(second, 2, "h");
    let (found, stats) = r.find(&["f7.txt", "new.txt"]);
    assert_eq!(found.len(), 201);
    assert_eq!(found[0].0, "/d000/f7.txt");
    assert_eq!(found[0].1, [(1, New), (2, Same)]);
    assert_eq!(found[151].0, "/d150/new.txt");
    assert_eq!(found[151].1, [(2, New)]);
    assert_eq!(
        stats.trees_read,
        1 + 200 + 1 + 1,
        "two roots, 201 directories"
    );
}
