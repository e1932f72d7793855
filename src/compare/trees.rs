//! Two snapshots side by side. Trees are merged by name; a directory whose
//! subtree id is the same on both sides is skipped without being read, so the
//! cost follows the size of the change, not of the tree.

use super::entry::{holes, meta_details, Rules};
use super::{Category, CategorySet, Change, Detail, Report};
use crate::error::Result;
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Extent, Kind, Tree};
use crate::repo::Repository;

/// How to diff two snapshots.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiffOptions {
    /// Categories not reported (`diff` ignores atime unless asked).
    pub ignore: CategorySet,
}

/// Every change from entry `a` to entry `b` (found at `path` in their
/// snapshots) and below: `a` is the older side.
pub fn diff_snapshots(
    repo: &Repository,
    a: &Entry,
    b: &Entry,
    path: &[u8],
    opts: &DiffOptions,
) -> Result<Report> {
    let mut d = TreeDiff {
        repo,
        ignore: opts.ignore,
        rules: Rules {
            ignore: opts.ignore,
            numeric_owner: true,
            nlink: true,
        },
        report: Report::default(),
    };
    d.pair(a, b, path.to_vec())?;
    d.report.finish();
    Ok(d.report)
}

struct TreeDiff<'a> {
    repo: &'a Repository,
    ignore: CategorySet,
    rules: Rules,
    report: Report,
}

#[derive(Clone, Copy)]
enum Side {
    A,
    B,
}

impl TreeDiff<'_> {
    fn pair(&mut self, a: &Entry, b: &Entry, path: Vec<u8>) -> Result<()> {
        self.report.entries += 1;
        if a.kind != b.kind {
            self.push(&path, Some(a.kind), Some(b.kind), Vec::new());
            self.below(a, &path, Side::A)?;
            return self.below(b, &path, Side::B);
        }
        let mut details = Vec::new();
        meta_details(a, b, &self.rules, &mut details);
        if a.kind == Kind::File {
            self.content(a, b, &mut details)?;
        }
        self.push(&path, Some(a.kind), Some(b.kind), details);
        if a.kind == Kind::Dir && a.subtree != b.subtree {
            self.children(a.subtree, b.subtree, &path)?;
        }
        Ok(())
    }

    fn push(&mut self, path: &[u8], a: Option<Kind>, b: Option<Kind>, details: Vec<Detail>) {
        if details.is_empty() && a == b {
            return;
        }
        self.report.changes.push(Change {
            path: path.to_vec(),
            a,
            b,
            details,
        });
    }

    fn load(&mut self, id: Option<TreeId>) -> Result<Tree> {
        match id {
            Some(id) => {
                self.report.trees_read += 1;
                self.repo.load_tree(&id)
            }
            None => Ok(Tree::default()),
        }
    }

    /// Merge two directories' entries by name.
    fn children(&mut self, a: Option<TreeId>, b: Option<TreeId>, path: &[u8]) -> Result<()> {
        let (ta, tb) = (self.load(a)?, self.load(b)?);
        let (mut ia, mut ib) = (ta.entries.iter().peekable(), tb.entries.iter().peekable());
        loop {
            let order = match (ia.peek(), ib.peek()) {
                (None, None) => return Ok(()),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.name.cmp(&y.name),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let e = ia.next().expect("peeked");
                    self.one_side(e, super::join(path, &e.name), Side::A)?;
                }
                std::cmp::Ordering::Greater => {
                    let e = ib.next().expect("peeked");
                    self.one_side(e, super::join(path, &e.name), Side::B)?;
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (ia.next().expect("peeked"), ib.next().expect("peeked"));
                    self.pair(x, y, super::join(path, &x.name))?;
                }
            }
        }
    }

    /// An entry on one side only, and everything below it.
    fn one_side(&mut self, e: &Entry, path: Vec<u8>, side: Side) -> Result<()> {
        self.report.entries += 1;
        let (a, b) = match side {
            Side::A => (Some(e.kind), None),
            Side::B => (None, Some(e.kind)),
        };
        self.push(&path, a, b, Vec::new());
        self.below(e, &path, side)
    }

    fn below(&mut self, e: &Entry, path: &[u8], side: Side) -> Result<()> {
        if e.kind != Kind::Dir {
            return Ok(());
        }
        let tree = self.load(e.subtree)?;
        for child in &tree.entries {
            self.one_side(child, super::join(path, &child.name), side)?;
        }
        Ok(())
    }

    /// Content and holes of two files, by extents (see the module docs of
    /// [`super`] for why this is exact).
    fn content(&mut self, a: &Entry, b: &Entry, out: &mut Vec<Detail>) -> Result<()> {
        let (want_content, want_holes) = (
            !self.ignore.contains(Category::Content),
            !self.ignore.contains(Category::Holes),
        );
        if a.extents == b.extents && a.size == b.size {
            return Ok(());
        }
        if a.size != b.size {
            if want_content {
                out.push(size_detail(a.size, b.size));
            }
            return Ok(());
        }
        let (ha, hb) = (holes(&a.extents), holes(&b.extents));
        if ha == hb {
            if want_content {
                out.push(Detail::new(Category::Content, "bytes", "other bytes"));
            }
            return Ok(());
        }
        if want_holes {
            out.push(Detail::new(Category::Holes, hole_text(&ha), hole_text(&hb)));
        }
        if want_content && !self.same_bytes(&a.extents, &b.extents)? {
            out.push(Detail::new(Category::Content, "bytes", "other bytes"));
        }
        Ok(())
    }

    /// Whether two extent lists (of one size) hold the same bytes, holes
    /// reading as zeros: read from the repository.
    fn same_bytes(&mut self, a: &[Extent], b: &[Extent]) -> Result<bool> {
        let (mut x, mut y) = (Pieces::new(a), Pieces::new(b));
        loop {
            x.fill(self.repo)?;
            y.fill(self.repo)?;
            let (rx, ry) = (x.remaining(), y.remaining());
            if rx == 0 || ry == 0 {
                return Ok(rx == ry);
            }
            let n = rx.min(ry);
            let same = match (x.bytes(n), y.bytes(n)) {
                (None, None) => true,
                (Some(s), None) | (None, Some(s)) => s.iter().all(|&c| c == 0),
                (Some(s), Some(t)) => s == t,
            };
            self.report.bytes_hashed += n;
            if !same {
                return Ok(false);
            }
            x.used += n;
            y.used += n;
        }
    }
}

pub(super) fn size_detail(a: u64, b: u64) -> Detail {
    Detail::new(
        Category::Content,
        format!("{a} bytes"),
        format!("{b} bytes"),
    )
}

fn hole_text(h: &[(u64, u64)]) -> String {
    let bytes: u64 = h.iter().map(|x| x.1).sum();
    format!("{} holes, {bytes} bytes", h.len())
}

/// A file's bytes, one extent at a time: a data blob read from the
/// repository, or a run of zeros.
struct Pieces<'e> {
    rest: std::slice::Iter<'e, Extent>,
    data: Option<Vec<u8>>,
    len: u64,
    used: u64,
}

impl<'e> Pieces<'e> {
    fn new(extents: &'e [Extent]) -> Self {
        Pieces {
            rest: extents.iter(),
            data: None,
            len: 0,
            used: 0,
        }
    }

    /// Move to the next non-empty extent once the current one is used up.
    fn fill(&mut self, repo: &Repository) -> Result<()> {
        while self.used == self.len {
            let Some(e) = self.rest.next() else {
                return Ok(());
            };
            (self.data, self.len, self.used) = match *e {
                Extent::Data { id, len } => {
                    let d = repo.read_data(&id, len)?;
                    let n = d.len() as u64;
                    (Some(d), n, 0)
                }
                Extent::Hole { len } => (None, len, 0),
            };
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.len - self.used
    }

    /// The next `n` bytes, or `None` for zeros.
    fn bytes(&self, n: u64) -> Option<&[u8]> {
        let d = self.data.as_ref()?;
        Some(&d[self.used as usize..(self.used + n) as usize])
    }
}
