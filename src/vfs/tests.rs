//! The mount's handlers, called directly on a repository in memory.

use super::*;
use crate::backend::memory::MemoryBackend;
use crate::backend::FileType;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{Entry, Extent, Xattr};
use crate::repo::writer::RepoWriter;

struct Fixture {
    mem: Arc<MemoryBackend>,
    repo: Arc<Repository>,
    big: Vec<u8>,
    big_blobs: Vec<BlobId>,
}

fn file(name: &str, w: &RepoWriter, content: &[&[u8]], hole: u64) -> (Entry, Vec<BlobId>) {
    let mut e = Entry::new(name.into(), Kind::File);
    e.mode = 0o640;
    let mut ids = Vec::new();
    for c in content {
        let id = w.add_data(c).unwrap();
        ids.push(id);
        e.extents.push(Extent::Data {
            id,
            len: c.len() as u32,
        });
    }
    if hole > 0 {
        e.extents.push(Extent::Hole { len: hole });
    }
    e.size = e.extents.iter().map(Extent::len).sum();
    (e, ids)
}

fn dir(name: &str, w: &RepoWriter, entries: Vec<Entry>) -> Entry {
    let mut d = Entry::new(name.into(), Kind::Dir);
    d.mode = 0o755;
    d.nlink = 3;
    d.subtree = Some(w.add_tree(&Tree::new(entries).encode()).unwrap());
    d
}

/// Bytes of each of the big file's five parts.
const PART: usize = 70_000;

/// How the tests open their repositories again.
fn test_open() -> crate::repo::OpenOptions<'static> {
    crate::repo::OpenOptions {
        password: &|| Ok(crate::repo::Secret::new(b"test password".to_vec())),
        cache_root: None,
    }
}

/// /srv/www with a big file, a sparse file, a symlink, a hard-link pair, a
/// device and xattrs; snapshots from two hosts.
fn fixture() -> Fixture {
    let mem = Arc::new(MemoryBackend::new());
    let repo = Arc::new(Repository::init(mem.clone(), &crate::repo::InitOptions::test()).unwrap());
    let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
    // Parts of the big file are large enough to get frames of their own, so
    // damage to one (an encrypted frame fails whole) leaves the others.
    let parts: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            (0..PART as u32)
                .map(|j| (j as u8).wrapping_mul(i + 1))
                .collect()
        })
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let (mut big, big_blobs) = file("big", &w, &refs, 0);
    big.xattrs = vec![
        Xattr {
            name: b"trusted.t".to_vec(),
            value: b"root only".to_vec(),
        },
        Xattr {
            name: b"user.a".to_vec(),
            value: b"1".to_vec(),
        },
        Xattr {
            name: b"user.b".to_vec(),
            value: vec![0, 255],
        },
    ];
    let (sparse, _) = file("sparse", &w, &[b"head"], 10_000);
    let mut link = Entry::new(b"link".to_vec(), Kind::Symlink);
    link.target = b"big".to_vec();
    let (mut hl1, _) = file("hl1", &w, &[b"shared"], 0);
    (hl1.nlink, hl1.dev, hl1.ino) = (2, 9, 77);
    let mut hl2 = hl1.clone();
    hl2.name = b"hl2".to_vec();
    let mut dev = Entry::new(b"null".to_vec(), Kind::CharDev);
    dev.rdev = libc::makedev(1, 3);
    let www = dir(
        "www",
        &w,
        vec![big, sparse, link, hl1, dev, dir("sub", &w, vec![hl2])],
    );
    let root = w
        .add_tree(&Tree::new(vec![dir("srv", &w, vec![www])]).encode())
        .unwrap();
    for (sec, host) in [(1_000, "h1"), (2_000, "h2")] {
        w.commit(&snapshot(root, sec, host)).unwrap();
    }
    let big = parts.concat();
    Fixture {
        mem,
        repo,
        big,
        big_blobs,
    }
}

fn snapshot(tree: TreeId, sec: i64, host: &str) -> Snapshot {
    Snapshot {
        time: Time { sec, nsec: 0 },
        host: host.into(),
        username: "root".into(),
        paths: vec!["/srv/www".into()],
        tags: vec!["nightly".into()],
        tree,
        parent: None,
        program: "test".into(),
        summary: Summary::default(),
        original: None,
    }
}

fn opts() -> Options {
    Options {
        cache_bytes: 1 << 20,
        read_ahead_threads: 1,
        owner: (5, 6),
    }
}

fn names(v: &Vfs, ino: Ino) -> Vec<String> {
    let mut out = Vec::new();
    v.readdir(ino, 0, &mut |i| {
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

#[test]
fn the_virtual_directories_list_snapshots_by_time_host_and_tag() {
    let f = fixture();
    let v = Vfs::new(f.repo.clone(), Root::Repository, &opts()).unwrap();
    assert_eq!(
        names(&v, ROOT),
        [".", "..", "history", "hosts", "ids", "snapshots", "tags"]
    );
    let snaps = walk(&v, "snapshots");
    let listed = names(&v, snaps.ino);
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert_eq!(listed[4], "latest");
    let latest = walk(&v, "snapshots/latest");
    assert_eq!(
        (latest.kind, latest.stable, latest.uid),
        (Kind::Symlink, false, 5)
    );
    assert_eq!(v.readlink(latest.ino).unwrap(), listed[3].as_bytes());
    assert_eq!(names(&v, walk(&v, "hosts").ino), [".", "..", "h1", "h2"]);
    assert_eq!(names(&v, walk(&v, "tags/nightly").ino).len(), 5);
    let root = walk(&v, &format!("snapshots/{}", listed[2]));
    assert_eq!(
        (root.kind, root.perm, root.stable, root.mtime.sec),
        (Kind::Dir, 0o755, true, 1_000)
    );
    assert!(v.lookup(snaps.ino, b"nope").is_err());
    let www = walk(&v, &format!("snapshots/{}/srv/www", listed[3]));
    assert_eq!(
        names(&v, www.ino),
        [".", "..", "big", "hl1", "link", "null", "sparse", "sub"]
    );
}

#[test]
fn readdir_continues_from_any_offset() {
    let f = fixture();
    let v = Vfs::new(
        f.repo.clone(),
        Root::Snapshot {
            tree: tree_of(&f),
            time: Time::default(),
        },
        &opts(),
    )
    .unwrap();
    let dir = walk(&v, "srv/www").ino;
    let all = names(&v, dir);
    for start in 0..all.len() as u64 + 1 {
        let mut got = Vec::new();
        let mut offset = start;
        loop {
            let mut batch = 0;
            v.readdir(dir, offset, &mut |i| {
                got.push(String::from_utf8_lossy(i.name).into_owned());
                offset = i.next;
                batch += 1;
                batch == 2 // a buffer that holds two names
            })
            .unwrap();
            if batch < 2 {
                break;
            }
        }
        assert_eq!(got, all[start as usize..], "from {start}");
    }
}

fn tree_of(f: &Fixture) -> TreeId {
    f.repo
        .find_snapshot("latest", &Default::default())
        .unwrap()
        .1
        .tree
}

fn one(f: &Fixture) -> Vfs {
    Vfs::new(
        f.repo.clone(),
        Root::Snapshot {
            tree: tree_of(f),
            time: Time { sec: 7, nsec: 0 },
        },
        &opts(),
    )
    .unwrap()
}

#[test]
fn stat_shows_stored_metadata_and_hard_links_share_an_inode() {
    let f = fixture();
    let v = one(&f);
    let root = v.getattr(ROOT).unwrap();
    assert_eq!(
        (root.kind, root.nlink, root.uid, root.mtime.sec),
        (Kind::Dir, 1, 5, 7)
    );
    let big = walk(&v, "srv/www/big");
    assert_eq!(
        (big.kind, big.perm, big.size, big.blocks),
        (
            Kind::File,
            0o640,
            5 * PART as u64,
            (5 * PART as u64).div_ceil(4096) * 8
        )
    );
    let sparse = walk(&v, "srv/www/sparse");
    assert_eq!((sparse.size, sparse.blocks), (10_004, 8));
    let (hl1, hl2) = (walk(&v, "srv/www/hl1"), walk(&v, "srv/www/sub/hl2"));
    assert_eq!(hl1.ino, hl2.ino);
    assert_eq!(hl1.nlink, 2);
    let null = walk(&v, "srv/www/null");
    assert_eq!((null.kind, null.rdev), (Kind::CharDev, 0x103));
    let link = walk(&v, "srv/www/link");
    assert_eq!(v.readlink(link.ino).unwrap(), b"big");
    assert!(v.readlink(big.ino).is_err());
    assert_eq!(
        v.path(hl2.ino),
        "/srv/www/hl1",
        "a hard link is named by its first path"
    );
    assert_eq!(v.path(big.ino), "/srv/www/big");
    // readdir's numbers are lookup's numbers.
    let www = walk(&v, "srv/www").ino;
    v.readdir(www, 2, &mut |i| {
        assert_eq!(i.ino, v.lookup(www, i.name).unwrap().ino, "{:?}", i.name);
        false
    })
    .unwrap();
}

#[test]
fn reads_give_the_content_at_every_offset_and_seek_finds_holes() {
    let f = fixture();
    let v = one(&f);
    let big = walk(&v, "srv/www/big");
    v.open(big.ino).unwrap();
    let fh = big.ino;
    let end = 5 * PART;
    for (off, size) in [
        (0, end),
        (PART - 1, 2),
        (1, end - 1),
        (end - 1, 10),
        (end, 1),
        (2 * PART + 500, PART + 300),
    ] {
        let off = off as u64;
        let got = v.read(fh, off, size).unwrap();
        assert_eq!(
            got,
            f.big[(off as usize).min(end)..(off as usize + size).min(end)],
            "{off}+{size}"
        );
    }
    assert!(
        v.read(walk(&v, "srv/www/link").ino, 0, 1).is_err(),
        "only files read"
    );
    let sparse = walk(&v, "srv/www/sparse");
    let fh = sparse.ino;
    assert_eq!(v.read(fh, 0, 8).unwrap(), b"head\0\0\0\0");
    assert_eq!(v.seek(fh, 0, Whence::Hole).unwrap(), Some(4));
    assert_eq!(v.seek(fh, 5, Whence::Data).unwrap(), None);
    assert!(v.open(walk(&v, "srv/www").ino).is_err());
}

#[test]
fn xattrs_are_listed_and_read() {
    let f = fixture();
    let v = one(&f);
    let big = walk(&v, "srv/www/big");
    let (root, user) = (Caller::Privileged, Caller::Unprivileged);
    assert_eq!(
        v.listxattr(big.ino, root).unwrap(),
        b"trusted.t\0user.a\0user.b\0"
    );
    assert_eq!(
        v.getxattr(big.ino, b"user.b", root).unwrap(),
        Some(vec![0, 255])
    );
    assert_eq!(v.getxattr(big.ino, b"user.c", root).unwrap(), None);
    assert_eq!(v.listxattr(ROOT, root).unwrap(), b"");
    // trusted.* is root's alone, as on a local file system.
    assert_eq!(
        v.getxattr(big.ino, b"trusted.t", root).unwrap(),
        Some(b"root only".to_vec())
    );
    assert_eq!(v.listxattr(big.ino, user).unwrap(), b"user.a\0user.b\0");
    assert_eq!(v.getxattr(big.ino, b"trusted.t", user).unwrap(), None);
    assert_eq!(
        v.getxattr(big.ino, b"user.b", user).unwrap(),
        Some(vec![0, 255])
    );
}

#[test]
fn forgotten_inodes_go_and_come_back_with_the_same_number() {
    let f = fixture();
    let v = one(&f);
    let before = v.inodes();
    let srv = v.lookup(ROOT, b"srv").unwrap();
    assert_eq!(v.inodes(), before + 1);
    v.forget(srv.ino, 1);
    assert_eq!(v.inodes(), before);
    assert_eq!(v.lookup(ROOT, b"srv").unwrap().ino, srv.ino);
}

#[test]
fn a_damaged_chunk_fails_that_read_naming_the_file_and_nothing_else() {
    let f = fixture();
    let loc = f.repo.lookup(&f.big_blobs[2]).unwrap().unwrap();
    f.mem.tamper(FileType::Pack, &loc.pack.to_hex(), |b| {
        b[loc.frame.offset as usize + loc.frame.stored_len as usize / 2] ^= 0xff
    });
    let v = one(&f);
    let big = walk(&v, "srv/www/big");
    v.open(big.ino).unwrap();
    let fh = big.ino;
    assert_eq!(
        v.read(fh, 0, 1000).unwrap(),
        f.big[..1000],
        "chunks before it still read"
    );
    let e = v.read(fh, 2 * PART as u64 + 500, 1000).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt { object, .. } if object.starts_with("/srv/www/big (blob")),
        "{e}"
    );
    let hl = walk(&v, "srv/www/hl1");
    let fh = hl.ino;
    assert_eq!(v.read(fh, 0, 100).unwrap(), b"shared");
}

#[test]
fn snapshots_written_while_mounted_appear() {
    let f = fixture();
    let v = Vfs::new(f.repo.clone(), Root::Repository, &opts()).unwrap();
    let snaps = walk(&v, "snapshots").ino;
    assert_eq!(names(&v, snaps).len(), 5);
    let other = Repository::open(f.mem.clone(), &test_open()).unwrap();
    other.reload_index().unwrap();
    let w = RepoWriter::new(Arc::new(other), 3, false).unwrap();
    let tree = w.add_tree(&Tree::new(vec![]).encode()).unwrap();
    let id: SnapshotId = w.commit(&snapshot(tree, 3_000, "h3")).unwrap();
    std::thread::sleep(catalog::REFRESH + std::time::Duration::from_millis(50));
    assert_eq!(names(&v, snaps).len(), 6);
    let fresh = walk(&v, &format!("ids/{}", id.short()));
    assert_eq!(
        names(&v, fresh.ino),
        [".", ".."],
        "its tree is read through the reloaded index"
    );
}

/// Stores a fake kernel received.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(Ino, u64, Vec<u8>)>>);

impl push::Sink for Recorder {
    fn store(&self, ino: Ino, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().push((ino, offset, data.to_vec()));
        Ok(())
    }
}

impl Recorder {
    /// Wait until `n` stores arrived; what arrived, by inode.
    fn wait_for(&self, n: usize) -> std::collections::HashMap<Ino, Vec<u8>> {
        let start = std::time::Instant::now();
        loop {
            let got = self.0.lock().unwrap();
            if got.len() >= n {
                return got
                    .iter()
                    .map(|(ino, off, data)| {
                        assert_eq!(*off, 0, "whole files are stored from 0");
                        (*ino, data.clone())
                    })
                    .collect();
            }
            drop(got);
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "{n} stores expected"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// [`Recorder::wait_for`] `n` stores, then check a moment later that no
    /// more came.
    fn exactly(&self, n: usize) -> std::collections::HashMap<Ino, Vec<u8>> {
        let got = self.wait_for(n);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(self.0.lock().unwrap().len(), n, "{n} stores, no more");
        got
    }
}

/// A one-snapshot mount of the root entries `build` writes, pushing into a
/// recorder.
fn pushing(build: impl FnOnce(&RepoWriter) -> Vec<Entry>) -> (Vfs, Arc<Recorder>) {
    let repo = Arc::new(
        Repository::init(
            Arc::new(MemoryBackend::new()),
            &crate::repo::InitOptions::test(),
        )
        .unwrap(),
    );
    let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
    let root = w.add_tree(&Tree::new(build(&w)).encode()).unwrap();
    w.flush().unwrap();
    let tree = Root::Snapshot {
        tree: root,
        time: Time::default(),
    };
    let v = Vfs::new(repo, tree, &opts()).unwrap();
    let rec = Arc::new(Recorder::default());
    v.push_to(rec.clone()).unwrap();
    (v, rec)
}

#[test]
fn a_directory_read_in_order_pushes_its_next_files_whole() {
    let bytes = |i: u8, n: usize| -> Vec<u8> { (0..n).map(|j| (j as u8) ^ i).collect() };
    let (a, b) = (bytes(1, 700), bytes(2, 900));
    let (v, rec) = pushing(|w| {
        let f = |name: &str, parts: &[&[u8]], hole| file(name, w, parts, hole).0;
        let d = vec![
            f("f0", &[&a], 0),
            f("f1", &[&b], 0),
            f("f2", &[&a, &b], 5000), // two chunks and a hole
            f("f3empty", &[], 0),
            f("f4", &[&b, &a], 0),
            f("f5unlisted", &[&a], 0),
        ];
        let other = vec![f("r0", &[&a], 0), f("r1", &[&b], 0), f("r2", &[&a], 0)];
        vec![dir("d", w, d), dir("other", w, other)]
    });
    // The kernel holds what was looked up (listed); f5unlisted it does not.
    let ino = |path: &str| walk(&v, path).ino;
    let (i0, i1, i2, i4) = (ino("d/f0"), ino("d/f1"), ino("d/f2"), ino("d/f4"));
    ino("d/f3empty");
    let (j0, j1, j2) = (ino("other/r0"), ino("other/r1"), ino("other/r2"));

    // Out of order in `other` (r2 first, then r0): nothing pushed. Then the
    // first file of `d`: its next files, whole, holes as zeros.
    v.read(j2, 0, 10).unwrap();
    v.read(j0, 0, 10).unwrap();
    v.read(i0, 0, 4096).unwrap();
    let got = rec.exactly(3); // f1, f2 and f4
    let mut f2_bytes = [a.clone(), b.clone()].concat();
    f2_bytes.resize(f2_bytes.len() + 5000, 0);
    assert_eq!(got[&i1], b);
    assert_eq!(got[&i2], f2_bytes);
    assert_eq!(got[&i4], [b.clone(), a.clone()].concat());

    // r1 follows r0, the last file started in `other`: r2 comes next.
    v.read(j1, 0, 10).unwrap();
    let got = rec.wait_for(4);
    assert_eq!(got[&j2], a);
}

#[test]
fn a_hard_link_is_pushed_only_where_the_kernel_found_its_inode() {
    let (v, rec) = pushing(|w| {
        let f = |name: &str, content: &[u8]| file(name, w, &[content], 0).0;
        // Two links of one file, read at different moments of a backup:
        // they differ. The inode shows the link found first (a/h).
        let link = |content: &[u8]| {
            let mut e = f("h", content);
            (e.nlink, e.dev, e.ino) = (2, 9, 77);
            e
        };
        let a = vec![f("a0", b"a zero"), link(b"first version")];
        let b = vec![
            f("f0", b"zero"),
            link(b"second, longer version"),
            f("i2", b"two"),
        ];
        vec![dir("a", w, a), dir("b", w, b)]
    });
    let h = walk(&v, "a/h").ino;
    assert_eq!(walk(&v, "b/h").ino, h, "one inode for both links");
    let (a0, f0, i2) = (
        walk(&v, "a/a0").ino,
        walk(&v, "b/f0").ino,
        walk(&v, "b/i2").ino,
    );
    // In b the link is not the inode's own entry: skipped.
    v.read(f0, 0, 10).unwrap();
    let got = rec.exactly(1);
    assert_eq!(got[&i2], b"two");
    // In a it is: pushed with the bytes the inode shows.
    v.read(a0, 0, 10).unwrap();
    let got = rec.wait_for(2);
    assert_eq!(got[&h], b"first version");
    assert_eq!(v.read(h, 0, 100).unwrap(), b"first version");
}

#[test]
fn the_root_is_set_once() {
    let f = fixture();
    let v = Vfs::new(f.repo.clone(), Root::Repository, &opts()).unwrap();
    let again = Root::Snapshot {
        tree: tree_of(&f),
        time: Time::default(),
    };
    assert!(matches!(v.set_root(again), Err(Error::InvalidInput(_))));
    assert_eq!(
        names(&v, ROOT),
        [".", "..", "history", "hosts", "ids", "snapshots", "tags"]
    );
}
