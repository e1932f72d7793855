//! Two snapshots side by side. Trees are merged by name; a directory whose
//! subtree id is the same on both sides is skipped without being read, so the
//! cost follows the size of the change, not of the tree.
//!
//! The merge keeps an explicit stack of the directory pairs it is in (each
//! side's remaining entries), and one path buffer, so a pair of snapshots
//! deeper than the thread's stack is compared like any other. Trees are read
//! in the order a recursive merge would read them: a directory's pair when
//! it is met, and for a directory that changed type, the old side's listing
//! first, the new side's once everything below the old one is reported.

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
        path: path.to_vec(),
        stack: Vec::new(),
    };
    d.pair(a, b)?;
    d.run()?;
    d.report.finish();
    Ok(d.report)
}

struct TreeDiff<'a> {
    repo: &'a Repository,
    ignore: CategorySet,
    rules: Rules,
    report: Report,
    /// The path of the entry at hand; each step's directory is a prefix.
    path: Vec<u8>,
    /// The directories the merge is in, innermost last.
    stack: Vec<Step>,
}

#[derive(Clone, Copy)]
enum Side {
    A,
    B,
}

/// A listing's remaining entries (boxed: a peeked entry is large).
type Entries = Box<std::iter::Peekable<std::vec::IntoIter<Entry>>>;

/// One directory of the merge, at `path_len` bytes of the path buffer.
enum Step {
    /// Two listings merged by name: an entry on one side only is reported
    /// with everything below it (the other listing is then empty).
    Merge {
        a: Entries,
        b: Entries,
        path_len: usize,
    },
    /// A directory on one side only, not read yet.
    Below {
        id: Option<TreeId>,
        side: Side,
        path_len: usize,
    },
}

impl TreeDiff<'_> {
    /// Entries `a` and `b`, both at the path buffer.
    fn pair(&mut self, a: &Entry, b: &Entry) -> Result<()> {
        self.report.entries += 1;
        if a.kind != b.kind {
            self.push(Some(a.kind), Some(b.kind), Vec::new());
            if b.kind == Kind::Dir {
                self.stack.push(Step::Below {
                    id: b.subtree,
                    side: Side::B,
                    path_len: self.path.len(),
                });
            }
            return self.below(a, Side::A);
        }
        let mut details = Vec::new();
        meta_details(a, b, &self.rules, &mut details);
        if a.kind == Kind::File {
            self.content(a, b, &mut details)?;
        }
        self.push(Some(a.kind), Some(b.kind), details);
        if a.kind == Kind::Dir && a.subtree != b.subtree {
            let (ta, tb) = (self.load(a.subtree)?, self.load(b.subtree)?);
            self.merge(ta, tb);
        }
        Ok(())
    }

    /// Merge two listings of the directory at the path buffer.
    fn merge(&mut self, a: Tree, b: Tree) {
        self.stack.push(Step::Merge {
            a: Box::new(a.entries.into_iter().peekable()),
            b: Box::new(b.entries.into_iter().peekable()),
            path_len: self.path.len(),
        });
    }

    /// Run the merge until the stack is empty: each step's next entry, in
    /// name order, the innermost directory first.
    fn run(&mut self) -> Result<()> {
        use std::cmp::Ordering;
        while let Some(top) = self.stack.last_mut() {
            let (a, b, path_len) = match top {
                Step::Merge { a, b, path_len } => (a, b, *path_len),
                &mut Step::Below { id, side, path_len } => {
                    self.stack.pop();
                    self.path.truncate(path_len);
                    let tree = self.load(id)?;
                    match side {
                        Side::A => self.merge(tree, Tree::default()),
                        Side::B => self.merge(Tree::default(), tree),
                    }
                    continue;
                }
            };
            let order = match (a.peek(), b.peek()) {
                (None, None) => {
                    self.stack.pop();
                    continue;
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => x.name.cmp(&y.name),
            };
            let (x, y) = match order {
                Ordering::Less => (a.next(), None),
                Ordering::Greater => (None, b.next()),
                Ordering::Equal => (a.next(), b.next()),
            };
            self.path.truncate(path_len);
            let name = &x.as_ref().or(y.as_ref()).expect("peeked").name;
            if !self.path.ends_with(b"/") {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(name);
            match (x, y) {
                (Some(x), Some(y)) => self.pair(&x, &y)?,
                (Some(x), None) => self.one_side(&x, Side::A)?,
                (None, Some(y)) => self.one_side(&y, Side::B)?,
                (None, None) => unreachable!("an entry was peeked"),
            }
        }
        Ok(())
    }

    /// A change at the path buffer, unless there is none.
    fn push(&mut self, a: Option<Kind>, b: Option<Kind>, details: Vec<Detail>) {
        if details.is_empty() && a == b {
            return;
        }
        self.report.changes.push(Change {
            path: self.path.clone(),
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

    /// An entry on one side only (at the path buffer), and everything
    /// below it.
    fn one_side(&mut self, e: &Entry, side: Side) -> Result<()> {
        self.report.entries += 1;
        let (a, b) = match side {
            Side::A => (Some(e.kind), None),
            Side::B => (None, Some(e.kind)),
        };
        self.push(a, b, Vec::new());
        self.below(e, side)
    }

    /// What is below `e` (at the path buffer), on one side only.
    fn below(&mut self, e: &Entry, side: Side) -> Result<()> {
        if e.kind != Kind::Dir {
            return Ok(());
        }
        let tree = self.load(e.subtree)?;
        match side {
            Side::A => self.merge(tree, Tree::default()),
            Side::B => self.merge(Tree::default(), tree),
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
