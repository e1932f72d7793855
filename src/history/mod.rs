//! A path across snapshots: when an entry is "the same" from one snapshot to
//! the next, and `rewind find` ([`find`]), which lists every snapshot that
//! holds a path. The mount's `history/` ([`crate::vfs::history`]) shows a
//! file's distinct versions by the same rules.
//!
//! # What counts as a change
//!
//! | part      | compared                                                                  |
//! |-----------|---------------------------------------------------------------------------|
//! | content   | the type, and a file's extents (data blob ids, lengths, holes), a symlink's target, a device's number, a directory's tree id |
//! | metadata  | the permission bits (setuid, setgid, sticky included), uid and gid, mtime to the nanosecond, every xattr (ACLs included) |
//! | left out  | atime and ctime (reading a file or a backup's own look changes them), nlink, the source's device and inode numbers, user and group names |
//!
//! So a file that a deploy rewrote with the same bytes and mtime (a new inode)
//! is the same version, and so is a file whose hard links came and went; a
//! `chmod` or a `touch` is a new version.

mod ahead;
pub mod find;

use crate::format::tree::{Entry, Extent, Kind};

/// How an entry differs from the same path in the previous snapshot that
/// held it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// No earlier snapshot held the path.
    New,
    /// The content differs (type, bytes, target, device, a directory's tree).
    Content,
    /// Same content, other metadata (mode, owner, mtime, xattrs).
    Metadata,
    /// Nothing a version shows differs.
    Same,
}

impl Change {
    /// From the entry at the same path before (`None`: there was none) to `e`.
    pub fn between(before: Option<&Entry>, e: &Entry) -> Change {
        match before {
            None => Change::New,
            Some(b) if !same_content(b, e) => Change::Content,
            Some(b) if !same_metadata(b, e) => Change::Metadata,
            Some(_) => Change::Same,
        }
    }

    /// The word `find` prints.
    pub fn name(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Content => "changed",
            Change::Metadata => "metadata",
            Change::Same => "same",
        }
    }
}

/// Whether `a` and `b` have the same type and content.
pub fn same_content(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && match a.kind {
            Kind::File => a.size == b.size && a.extents == b.extents,
            Kind::Symlink => a.target == b.target,
            Kind::CharDev | Kind::BlockDev => a.rdev == b.rdev,
            Kind::Dir => a.subtree == b.subtree,
            Kind::Fifo | Kind::Socket => true,
        }
}

/// Whether `a` and `b` show the same metadata: mode, owner, mtime, xattrs.
pub fn same_metadata(a: &Entry, b: &Entry) -> bool {
    a.mode & 0o7777 == b.mode & 0o7777
        && (a.uid, a.gid) == (b.uid, b.gid)
        && a.mtime == b.mtime
        && a.xattrs == b.xattrs
}

/// A digest of what [`same_content`] and [`same_metadata`] compare: two
/// entries have the same fingerprint exactly when both say they are the same
/// (up to a 128-bit hash collision). Lets a history keep 16 bytes per
/// version instead of the entry.
pub fn fingerprint(e: &Entry) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    let kind: u8 = match e.kind {
        Kind::File => 0,
        Kind::Dir => 1,
        Kind::Symlink => 2,
        Kind::Fifo => 3,
        Kind::Socket => 4,
        Kind::CharDev => 5,
        Kind::BlockDev => 6,
    };
    h.update(&[kind]);
    h.update(&(e.mode & 0o7777).to_le_bytes());
    h.update(&e.uid.to_le_bytes());
    h.update(&e.gid.to_le_bytes());
    h.update(&e.mtime.sec.to_le_bytes());
    h.update(&e.mtime.nsec.to_le_bytes());
    let bytes = |h: &mut blake3::Hasher, b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    h.update(&(e.xattrs.len() as u64).to_le_bytes());
    for x in &e.xattrs {
        bytes(&mut h, &x.name);
        bytes(&mut h, &x.value);
    }
    match e.kind {
        Kind::File => {
            h.update(&e.size.to_le_bytes());
            h.update(&(e.extents.len() as u64).to_le_bytes());
            for x in &e.extents {
                match x {
                    Extent::Data { id, len } => {
                        h.update(&[0]);
                        h.update(&id.0);
                        h.update(&len.to_le_bytes());
                    }
                    Extent::Hole { len } => {
                        h.update(&[1]);
                        h.update(&len.to_le_bytes());
                    }
                }
            }
        }
        Kind::Symlink => bytes(&mut h, &e.target),
        Kind::CharDev | Kind::BlockDev => {
            h.update(&e.rdev.to_le_bytes());
        }
        Kind::Dir => {
            if let Some(t) = e.subtree {
                h.update(&t.0);
            }
        }
        Kind::Fifo | Kind::Socket => {}
    }
    let out = h.finalize();
    out.as_bytes()[..16].try_into().expect("16 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::{BlobId, TreeId};
    use crate::format::tree::{Time, Xattr};

    fn file() -> Entry {
        let mut e = Entry::new(b"config.php".to_vec(), Kind::File);
        e.mode = 0o640;
        (e.uid, e.gid) = (33, 33);
        e.mtime = Time {
            sec: 1_700_000_000,
            nsec: 5,
        };
        e.size = 4096 + 100;
        e.extents = vec![
            Extent::Data {
                id: BlobId([1; 32]),
                len: 100,
            },
            Extent::Hole { len: 4096 },
        ];
        e.xattrs = vec![Xattr {
            name: b"user.a".to_vec(),
            value: b"1".to_vec(),
        }];
        e
    }

    /// One change to an entry, and what it counts as.
    type Case = (&'static str, fn(&mut Entry), Change);

    const CASES: &[Case] = &[
        ("nothing", |_| {}, Change::Same),
        ("atime", |e| e.atime.sec += 1, Change::Same),
        ("ctime", |e| e.ctime.nsec += 1, Change::Same),
        ("nlink", |e| e.nlink = 3, Change::Same),
        ("inode", |e| (e.dev, e.ino) = (9, 99), Change::Same),
        ("user name", |e| e.user = "www-data".into(), Change::Same),
        ("mode", |e| e.mode = 0o644, Change::Metadata),
        ("setuid", |e| e.mode |= 0o4000, Change::Metadata),
        ("uid", |e| e.uid = 0, Change::Metadata),
        ("gid", |e| e.gid = 0, Change::Metadata),
        ("mtime", |e| e.mtime.nsec += 1, Change::Metadata),
        (
            "xattr value",
            |e| e.xattrs[0].value = b"2".to_vec(),
            Change::Metadata,
        ),
        ("xattr gone", |e| e.xattrs.clear(), Change::Metadata),
        (
            "bytes",
            |e| {
                e.extents[0] = Extent::Data {
                    id: BlobId([2; 32]),
                    len: 100,
                }
            },
            Change::Content,
        ),
        (
            "holes",
            |e| {
                e.extents[1] = Extent::Hole { len: 4095 };
                e.extents.push(Extent::Hole { len: 1 });
            },
            Change::Content,
        ),
        (
            "type",
            |e| {
                e.kind = Kind::Symlink;
                e.extents.clear();
            },
            Change::Content,
        ),
    ];

    #[test]
    fn each_part_of_an_entry_counts_as_the_table_says() {
        let a = file();
        assert_eq!(Change::between(None, &a), Change::New);
        for (name, mutate, want) in CASES {
            let mut b = a.clone();
            mutate(&mut b);
            assert_eq!(Change::between(Some(&a), &b), *want, "{name}");
            let same = *want == Change::Same;
            assert_eq!(
                fingerprint(&a) == fingerprint(&b),
                same,
                "fingerprint, {name}"
            );
        }
    }

    #[test]
    fn symlinks_devices_and_directories_compare_their_own_content() {
        let mut l = Entry::new(b"l".to_vec(), Kind::Symlink);
        l.target = b"a".to_vec();
        let mut l2 = l.clone();
        l2.target = b"b".to_vec();
        let mut d = Entry::new(b"d".to_vec(), Kind::CharDev);
        d.rdev = 0x103;
        let mut d2 = d.clone();
        d2.rdev = 0x104;
        let mut t = Entry::new(b"t".to_vec(), Kind::Dir);
        t.subtree = Some(TreeId([1; 32]));
        let mut t2 = t.clone();
        t2.subtree = Some(TreeId([2; 32]));
        for (a, b) in [(&l, &l2), (&d, &d2), (&t, &t2)] {
            assert_eq!(Change::between(Some(a), b), Change::Content, "{:?}", a.kind);
            assert_ne!(fingerprint(a), fingerprint(b));
            assert_eq!(Change::between(Some(a), a), Change::Same);
        }
        let fifo = Entry::new(b"p".to_vec(), Kind::Fifo);
        let mut sock = fifo.clone();
        sock.kind = Kind::Socket;
        assert_eq!(Change::between(Some(&fifo), &sock), Change::Content);
    }
}
