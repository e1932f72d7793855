//! Comparing a snapshot with another snapshot or with a live directory tree:
//! the logic of `rewind diff` and `rewind verify`.
//!
//! ```text
//! diff A B:      trees.rs  two trees side by side (the tree walker over pairs of trees);
//!                          equal subtree ids are skipped unread
//! diff A LIVE:   walk.rs   a tree beside a directory (the tree walker over a tree and an
//!                          open directory; a pool stats and reads): metadata first,
//!                          content when stat says so
//! verify A DIR:  walk.rs   the same walk, every file's bytes hashed, every category checked
//!                entry.rs  the pure part: one entry against another, category by category
//!                live.rs   the live side: an entry from stat, content by hash, hole layout
//!                links.rs  hard-link groups: the partition of paths, compared
//! ```
//!
//! # Categories
//!
//! Every difference has a [`Category`]. They are what a snapshot keeps:
//!
//! | category  | compared                                                                    |
//! |-----------|-----------------------------------------------------------------------------|
//! | `type`    | file, dir, symlink, fifo, socket, chardev, blockdev                         |
//! | `mode`    | the 12 permission bits, setuid, setgid and sticky included                  |
//! | `owner`   | uid and gid; a live owner also matches by the stored user or group name (what `restore` maps), unless numeric |
//! | `mtime`   | to the nanosecond                                                           |
//! | `atime`   | to the nanosecond (see below)                                               |
//! | `xattr`   | every extended attribute except ACLs, by name and value                    |
//! | `acl`     | `system.posix_acl_access` and `system.posix_acl_default`                    |
//! | `target`  | a symlink's target, as bytes                                                |
//! | `rdev`    | the device number of a char or block device                                 |
//! | `links`   | hard-link groups: which paths are one inode                                 |
//! | `holes`   | the holes of a sparse file                                                  |
//! | `content` | size and bytes of a regular file                                            |
//! | `missing`, `extra` | an entry only in the snapshot, only in the directory              |
//! | `error`   | the live entry could not be read (the comparison is not proven)             |
//!
//! ctime is never compared: no program can set it, so a restore always differs.
//! A directory's own size is not compared either (file systems disagree).
//!
//! # What counts as the same
//!
//! - **Content** is compared by blob id. Two snapshots: equal extents mean equal
//!   bytes; when extents differ, equal hole layouts mean different bytes (one
//!   repository chunks the same data region the same way), and only when the hole
//!   layouts differ too are the bytes read from the repository and compared. A
//!   live file is hashed over the snapshot's own extent boundaries with the
//!   repository's keyed hash ([`crate::format::id::Hasher::blob`]): no repository
//!   reads, one sequential read of the file, and exact (not re-chunked, so the
//!   result cannot depend on how the file's data regions happen to be split).
//!   Snapshot holes must read as zeros.
//! - **Holes**, two snapshots: the hole layouts (offset and length of every hole)
//!   must be equal. A live file: every hole of the snapshot, shrunk to whole
//!   blocks of the live file system (`st_blksize`), must be a hole there
//!   (`SEEK_DATA`), so a restore that filled holes with zeros is caught. Extra
//!   holes in the live file (zeros a copy made sparse) are not a difference: the
//!   bytes are checked by hash. A file system that cannot report holes shows
//!   every hole as filled; `--ignore holes` is for that.
//! - **Hard links**, live: the snapshot's partition of the compared paths into
//!   groups of equal `(dev, ino)` (entries with `nlink > 1`) against the live
//!   partition by `(st_dev, st_ino)`, both restricted to paths present on both
//!   sides. Two snapshots: a changed `nlink`, so that the diff never needs
//!   the whole tree. Known gap: links regrouped with every count unchanged
//!   ({a,b},{c,d} becoming {a,c},{b,d}) are not seen between two snapshots;
//!   `verify` of a restore of each does see it.
//! - **atime**: files are read with `O_NOATIME` and directories listed through
//!   `O_NOATIME` descriptors, so comparing leaves their atimes alone; each
//!   entry is stat'ed before it is read. `readlink` has no `O_NOATIME`: a
//!   symlink's atime is compared as found, before this comparison reads it, but
//!   any earlier reader of the link (a backup, an earlier verify, `ls -l`) has
//!   changed it. `diff` ignores atime unless asked.
//! - **Owners**: the uid (gid) matches when the numbers are equal, or when the
//!   snapshot's user (group) name is the live one's name on this machine.

mod entry;
mod links;
mod live;
mod queue;
mod trees;
mod walk;

pub use entry::{holes, meta_details, Rules};
pub use live::{check_content, filled_holes};
pub use trees::{diff_snapshots, DiffOptions};
pub use walk::{compare_live, ContentCheck, LiveOptions};

use crate::format::tree::{Kind, Time};
use std::cmp::Ordering;
use std::fmt;

/// What kind of difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Type,
    Mode,
    Owner,
    Mtime,
    Atime,
    Xattr,
    Acl,
    Target,
    Rdev,
    Links,
    Holes,
    Content,
    Missing,
    Extra,
    Error,
}

impl Category {
    pub const ALL: [Category; 15] = [
        Category::Type,
        Category::Mode,
        Category::Owner,
        Category::Mtime,
        Category::Atime,
        Category::Xattr,
        Category::Acl,
        Category::Target,
        Category::Rdev,
        Category::Links,
        Category::Holes,
        Category::Content,
        Category::Missing,
        Category::Extra,
        Category::Error,
    ];

    /// The categories a caller may ignore: what a setup may be unable to keep,
    /// and `content` (a metadata-only pass). Differences in kind, existence
    /// and errors are never ignored.
    pub const IGNORABLE: [Category; 9] = [
        Category::Mode,
        Category::Owner,
        Category::Mtime,
        Category::Atime,
        Category::Xattr,
        Category::Acl,
        Category::Links,
        Category::Holes,
        Category::Content,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Type => "type",
            Category::Mode => "mode",
            Category::Owner => "owner",
            Category::Mtime => "mtime",
            Category::Atime => "atime",
            Category::Xattr => "xattr",
            Category::Acl => "acl",
            Category::Target => "target",
            Category::Rdev => "rdev",
            Category::Links => "links",
            Category::Holes => "holes",
            Category::Content => "content",
            Category::Missing => "missing",
            Category::Extra => "extra",
            Category::Error => "error",
        }
    }

    /// Parse a category name (`xattrs` and `acls` are accepted too).
    pub fn parse(s: &str) -> Option<Category> {
        let s = match s {
            "xattrs" => "xattr",
            "acls" => "acl",
            other => other,
        };
        Category::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Whether a difference of this category is one of content (the entry is
    /// "modified") rather than of metadata.
    pub fn is_content(self) -> bool {
        matches!(self, Category::Content | Category::Target | Category::Rdev)
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of categories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CategorySet(u32);

impl CategorySet {
    pub fn of(cats: &[Category]) -> Self {
        let mut s = CategorySet::default();
        for c in cats {
            s.insert(*c);
        }
        s
    }
    pub fn insert(&mut self, c: Category) {
        self.0 |= c.bit();
    }
    pub fn contains(self, c: Category) -> bool {
        self.0 & c.bit() != 0
    }
}

/// One difference on one entry. `a` is the snapshot (or the older snapshot),
/// `b` the live tree (or the newer snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    pub category: Category,
    /// What exactly, where a category has parts: the xattr's name; else empty.
    pub item: String,
    pub a: String,
    pub b: String,
}

impl Detail {
    pub fn new(category: Category, a: impl Into<String>, b: impl Into<String>) -> Self {
        Detail {
            category,
            item: String::new(),
            a: a.into(),
            b: b.into(),
        }
    }
}

/// What happened to an entry, as `git diff --name-status` letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `A`: only in `b`.
    Added,
    /// `D`: only in `a`.
    Removed,
    /// `T`: a different kind of entry.
    TypeChanged,
    /// `M`: content changed (file bytes, symlink target, device number).
    Modified,
    /// `m`: metadata only.
    Metadata,
    /// `E`: the live entry could not be read.
    Error,
}

impl Status {
    pub fn letter(self) -> char {
        match self {
            Status::Added => 'A',
            Status::Removed => 'D',
            Status::TypeChanged => 'T',
            Status::Modified => 'M',
            Status::Metadata => 'm',
            Status::Error => 'E',
        }
    }
}

/// One entry that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Absolute path in the snapshot, raw bytes.
    pub path: Vec<u8>,
    pub a: Option<Kind>,
    pub b: Option<Kind>,
    pub details: Vec<Detail>,
}

impl Change {
    pub fn status(&self) -> Status {
        match (self.a, self.b) {
            (None, _) => Status::Added,
            (_, None) => Status::Removed,
            (Some(a), Some(b)) if a != b => Status::TypeChanged,
            _ if self.has(Category::Error) => Status::Error,
            _ if self.details.iter().any(|d| d.category.is_content()) => Status::Modified,
            _ => Status::Metadata,
        }
    }

    fn has(&self, c: Category) -> bool {
        self.details.iter().any(|d| d.category == c)
    }

    /// The categories of this change, once each, in order. Added and removed
    /// entries are `extra` and `missing`, a changed kind is `type`.
    pub fn categories(&self) -> Vec<Category> {
        let mut cats: Vec<Category> = match self.status() {
            Status::Added => vec![Category::Extra],
            Status::Removed => vec![Category::Missing],
            Status::TypeChanged => vec![Category::Type],
            _ => self.details.iter().map(|d| d.category).collect(),
        };
        cats.sort();
        cats.dedup();
        cats
    }
}

/// The outcome of a comparison: every change, sorted by path (a directory
/// before its contents), and what it cost.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
    /// Entries looked at (both sides).
    pub entries: u64,
    /// Tree blobs read from the repository.
    pub trees_read: u64,
    /// Regular files whose bytes were read and hashed.
    pub files_hashed: u64,
    /// Bytes read from the live tree (or from the repository, for two snapshots).
    pub bytes_hashed: u64,
}

impl Report {
    /// Sort changes by path and merge changes of the same path. Their
    /// kinds are the ones that differ, if any does (a type change found by
    /// one thread and an error found by another at the same path are one
    /// type change, whichever came first).
    pub(crate) fn finish(&mut self) {
        self.changes.sort_by(|x, y| path_order(&x.path, &y.path));
        let mut merged: Vec<Change> = Vec::with_capacity(self.changes.len());
        for c in std::mem::take(&mut self.changes) {
            match merged.last_mut() {
                Some(last) if last.path == c.path => {
                    if last.a == last.b && c.a != c.b {
                        (last.a, last.b) = (c.a, c.b);
                    }
                    last.details.extend(c.details)
                }
                _ => merged.push(c),
            }
        }
        self.changes = merged;
    }

    /// How many changes of each status.
    pub fn count(&self, status: Status) -> usize {
        self.changes.iter().filter(|c| c.status() == status).count()
    }
}

/// Paths in tree order: by components, so `/a/b` comes right after `/a` and
/// before `/a-b`.
pub fn path_order(x: &[u8], y: &[u8]) -> Ordering {
    let cx = x.split(|&b| b == b'/');
    let cy = y.split(|&b| b == b'/');
    cx.cmp(cy)
}

/// `base/name`, where `base` is an absolute path (`/` for the root).
pub fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The name of a kind, as in JSON output.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::Fifo => "fifo",
        Kind::Socket => "socket",
        Kind::CharDev => "chardev",
        Kind::BlockDev => "blockdev",
    }
}

/// A time as RFC 3339 in local time with its offset, as every output gives
/// times ([`crate::clock::rfc3339`]).
pub fn fmt_time(t: Time) -> String {
    crate::clock::rfc3339(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error found at a path (by the walk) and a type change found there
    /// (by the pool, later or sooner) are one type change with the error's
    /// detail, in either order.
    #[test]
    fn a_type_change_and_an_error_at_one_path_merge_as_the_type_change() {
        let error = || Change {
            path: b"/x".to_vec(),
            a: Some(Kind::Dir),
            b: Some(Kind::Dir),
            details: vec![Detail::new(Category::Error, "", "cannot open")],
        };
        let typed = || Change {
            path: b"/x".to_vec(),
            a: Some(Kind::File),
            b: Some(Kind::Dir),
            details: Vec::new(),
        };
        for changes in [vec![error(), typed()], vec![typed(), error()]] {
            let mut r = Report {
                changes,
                ..Report::default()
            };
            r.finish();
            assert_eq!(r.changes.len(), 1);
            assert_eq!(r.changes[0].status(), Status::TypeChanged);
            assert_eq!(
                (r.changes[0].a, r.changes[0].b),
                (Some(Kind::File), Some(Kind::Dir))
            );
            assert_eq!(r.changes[0].details.len(), 1);
        }
    }

    #[test]
    fn category_names_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.name()), Some(c));
        }
        assert_eq!(Category::parse("xattrs"), Some(Category::Xattr));
        assert_eq!(Category::parse("bogus"), None);
        let s = CategorySet::of(&[Category::Atime, Category::Owner]);
        assert!(s.contains(Category::Atime) && s.contains(Category::Owner));
        assert!(!s.contains(Category::Mode));
    }

    #[test]
    fn paths_sort_in_tree_order() {
        let mut p: Vec<&[u8]> = vec![b"/a-b", b"/a/b", b"/a", b"/", b"/a/b/c", b"/B"];
        p.sort_by(|x, y| path_order(x, y));
        assert_eq!(p, [&b"/"[..], b"/B", b"/a", b"/a/b", b"/a/b/c", b"/a-b"]);
        assert_eq!(join(b"/", b"x"), b"/x");
        assert_eq!(join(b"/srv", b"x"), b"/srv/x");
    }

    #[test]
    fn status_follows_kinds_and_categories() {
        let ch = |a, b, cats: &[Category]| Change {
            path: b"/x".to_vec(),
            a,
            b,
            details: cats.iter().map(|c| Detail::new(*c, "", "")).collect(),
        };
        let f = Some(Kind::File);
        assert_eq!(ch(None, f, &[]).status(), Status::Added);
        assert_eq!(ch(f, None, &[]).status(), Status::Removed);
        assert_eq!(ch(f, Some(Kind::Dir), &[]).status(), Status::TypeChanged);
        let m = ch(f, f, &[Category::Mode, Category::Content]);
        assert_eq!(m.status(), Status::Modified);
        assert_eq!(m.categories(), [Category::Mode, Category::Content]);
        assert_eq!(
            ch(f, f, &[Category::Xattr, Category::Xattr]).categories(),
            [Category::Xattr]
        );
        assert_eq!(ch(f, f, &[Category::Mtime]).status(), Status::Metadata);
        assert_eq!(ch(f, f, &[Category::Error]).status(), Status::Error);
    }

    #[test]
    fn report_merges_changes_of_one_path() {
        let mut r = Report::default();
        for (p, c) in [
            (&b"/b"[..], Category::Mode),
            (b"/a", Category::Links),
            (b"/b", Category::Links),
        ] {
            r.changes.push(Change {
                path: p.to_vec(),
                a: Some(Kind::File),
                b: Some(Kind::File),
                details: vec![Detail::new(c, "", "")],
            });
        }
        r.finish();
        assert_eq!(r.changes.len(), 2);
        assert_eq!(r.changes[1].categories(), [Category::Mode, Category::Links]);
    }
}
