use super::read::{members, Read};
use super::tar::BLOCK;
use super::*;
use crate::backend::memory::MemoryBackend;
use crate::backend::FileType;
use crate::format::id::TreeId;
use crate::format::tree::{Extent, Tree};
use crate::progress::{Collect, Silent};
use crate::repo::writer::RepoWriter;
use crate::repo::InitOptions;

struct Fixture {
    mem: Arc<MemoryBackend>,
    repo: Arc<Repository>,
    root: TreeId,
}

fn content(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u8).wrapping_mul(i) ^ (j >> 9) as u8)
        .collect()
}

fn file(w: &RepoWriter, name: &str, bytes: &[u8]) -> Entry {
    let mut e = Entry::new(name.as_bytes().to_vec(), Kind::File);
    e.mode = 0o640;
    e.size = bytes.len() as u64;
    e.extents = bytes
        .chunks(100_000)
        .map(|c| Extent::Data {
            id: w.add_data(c).unwrap(),
            len: c.len() as u32,
        })
        .collect();
    e
}

fn dir(w: &RepoWriter, name: &str, entries: Vec<Entry>) -> Entry {
    let mut e = Entry::new(name.as_bytes().to_vec(), Kind::Dir);
    e.mode = 0o755;
    e.subtree = Some(w.add_tree(&Tree::new(entries).encode()).unwrap());
    e
}

/// `/srv/www/{a, b (a hard link of a), sock, sub/{c, holes}}`.
fn fixture() -> Fixture {
    let mem = Arc::new(MemoryBackend::new());
    let repo = Arc::new(Repository::init(mem.clone(), &InitOptions::test()).unwrap());
    let w = RepoWriter::new(repo.clone(), 1, false).unwrap();
    let mut a = file(&w, "a", &content(3, 250_000));
    (a.dev, a.ino, a.nlink) = (1, 77, 2);
    let b = Entry {
        name: b"b".to_vec(),
        ..a.clone()
    };
    let c = file(&w, "c", &content(5, 300_000));
    let mut holes = file(&w, "holes", &content(7, 10));
    holes.extents.insert(0, Extent::Hole { len: 1 << 40 });
    holes.size += 1 << 40;
    let sock = Entry::new(b"sock".to_vec(), Kind::Socket);
    let sub = dir(&w, "sub", vec![c, holes]);
    // sub's tree in a frame of its own, so it can be damaged alone.
    w.flush().unwrap();
    let www = dir(&w, "www", vec![a, b, sock, sub]);
    let srv = dir(&w, "srv", vec![www]);
    let root = w.add_tree(&Tree::new(vec![srv]).encode()).unwrap();
    w.flush().unwrap();
    Fixture { mem, repo, root }
}

impl Fixture {
    /// Dump `path` as tar: the outcome (or error) and the bytes written.
    fn dump(&self, path: &str, progress: &dyn Progress) -> (Result<DumpOutcome>, Vec<u8>) {
        let entry = self.repo.entry_at(&self.root, path.as_bytes()).unwrap();
        let mut out = Vec::new();
        let opts = ReadAhead {
            threads: 3,
            budget: 256 << 10,
        };
        let res = write_tar(
            &self.repo,
            &entry,
            Path::new(path),
            &mut out,
            opts,
            progress,
        );
        (res, out)
    }

    /// Flip a byte in the middle of the frame that holds blob `id`.
    fn damage(&self, id: &crate::format::id::BlobId) {
        let loc = self.repo.lookup(id).unwrap().unwrap();
        self.mem.tamper(FileType::Pack, &loc.pack.to_hex(), |b| {
            b[loc.frame.offset as usize + loc.frame.stored_len as usize / 2] ^= 0x01
        });
    }
}

fn names(got: &[Read]) -> Vec<String> {
    got.iter()
        .map(|r| String::from_utf8_lossy(&r.name).into_owned())
        .collect()
}

#[test]
fn members_are_named_under_the_dumped_entry_directories_first() {
    let f = fixture();
    let (res, out) = f.dump("/srv/www", &Silent);
    let outcome = res.unwrap();
    let (got, ended) = members(&out);
    assert!(ended);
    assert_eq!(
        names(&got),
        [
            "www/",
            "www/a",
            "www/b",
            "www/sub/",
            "www/sub/c",
            "www/sub/holes"
        ]
    );
    assert_eq!(got[1].data, content(3, 250_000));
    assert_eq!(
        (got[2].typeflag, &got[2].linkname[..]),
        (b'1', &b"www/a"[..])
    );
    assert!(got[2].data.is_empty());
    assert_eq!(got[4].data, content(5, 300_000));
    assert_eq!(
        got[5].record("GNU.sparse.realsize").unwrap(),
        b"1099511627786"
    );
    assert_eq!(
        got[5].data.len(),
        512 + 10,
        "the map and ten bytes, no hole"
    );
    assert_eq!(
        outcome,
        DumpOutcome {
            members: 6,
            files: 3,
            bytes: 550_010,
            sockets: 1,
            lost_xattrs: 0,
        }
    );
}

#[test]
fn the_snapshot_root_gives_its_children_and_a_file_its_name() {
    let f = fixture();
    let (res, out) = f.dump("/", &Silent);
    res.unwrap();
    let (got, _) = members(&out);
    assert_eq!(names(&got)[..3], ["srv/", "srv/www/", "srv/www/a"]);
    assert_eq!(got[3].linkname, b"srv/www/a");
    let (res, out) = f.dump("/srv/www/sub/c", &Silent);
    res.unwrap();
    let (got, ended) = members(&out);
    assert!(ended);
    assert_eq!(names(&got), ["c"]);
    assert_eq!(got[0].data, content(5, 300_000));
}

#[test]
fn sockets_are_left_out_with_a_warning() {
    let f = fixture();
    let warnings = Collect::default();
    f.dump("/srv", &warnings).0.unwrap();
    let w = warnings.warnings.lock().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("/srv/www/sock: socket not dumped"), "{w:?}");
}

/// A damaged chunk: the error names the file, and the archive stops inside
/// that file's member, with everything before it intact.
#[test]
fn a_damaged_chunk_names_the_file_and_cuts_the_archive_short() {
    let f = fixture();
    let c = f.repo.entry_at(&f.root, b"/srv/www/sub/c").unwrap();
    let Extent::Data { id, .. } = c.extents[2] else {
        unreachable!()
    };
    f.damage(&id);
    let (res, out) = f.dump("/srv/www", &Silent);
    let err = res.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().starts_with("/srv/www/sub/c ("), "{err}");
    assert!(out.len() % BLOCK != 0 || !out.ends_with(&[0; 2 * BLOCK]));
    let whole = std::panic::catch_unwind(|| members(&out));
    assert!(whole.is_err(), "the archive reads as complete");
    // Up to the damage: the members before, and c's first two chunks.
    let c_start = out
        .windows(9)
        .position(|w| w == b"www/sub/c")
        .expect("c's header was written");
    assert!(out.len() > c_start + 200_000);
    assert!(out.len() < c_start + 300_000 + 2 * BLOCK);
}

/// A tree that does not load: the error names the directory, and the
/// archive ends in a header whose data never comes.
#[test]
fn a_damaged_tree_names_the_directory_and_leaves_the_archive_unfinished() {
    let f = fixture();
    let sub = f.repo.entry_at(&f.root, b"/srv/www/sub").unwrap();
    f.damage(&sub.subtree.unwrap().blob());
    let (res, out) = f.dump("/srv/www", &Silent);
    let err = res.unwrap_err();
    assert!(err.to_string().contains("/srv/www/sub"), "{err}");
    assert_eq!(out.len() % BLOCK, 0);
    assert_eq!(out[out.len() - BLOCK + 156], b'x', "a dangling pax header");
    let whole = std::panic::catch_unwind(|| members(&out));
    assert!(whole.is_err(), "the archive reads as complete");
}

#[test]
fn a_single_file_streams_its_bytes_with_holes_as_zeros() {
    let f = fixture();
    let mut e = f.repo.entry_at(&f.root, b"/srv/www/sub/c").unwrap();
    e.extents.insert(1, Extent::Hole { len: 5000 });
    e.size += 5000;
    let mut out = Vec::new();
    let n = write_content(&f.repo, &e, Path::new("/c"), &mut out, ReadAhead::default()).unwrap();
    assert_eq!(n, 305_000);
    let mut want = content(5, 300_000);
    want.splice(100_000..100_000, vec![0; 5000]);
    assert_eq!(out, want);
}
