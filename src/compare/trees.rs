//! Two snapshots side by side. Trees are merged by name; a directory whose
//! subtree id is the same on both sides is skipped without being read, so the
//! cost follows the size of the change, not of the tree.
//!
//! The merge is a walk of the tree walker ([`crate::repo::walk::run`]) over
//! pairs of listings: a directory of the walk is a pair of trees (either
//! side may be absent: a directory on one side only, or one that changed
//! type, is walked against nothing), and its listing is the two trees'
//! entries merged by name. So the order, the depth bound (an explicit
//! stack, one path buffer) and the reading order (a directory's pair when
//! its entry is met) are the walker's.

use super::entry::{holes, meta_details, Rules};
use super::{Category, CategorySet, Change, Detail, Report};
use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Extent, Kind, Tree};
use crate::repo::content::{Piece, Pieces, ReadAhead};
use crate::repo::walk::{self, Flow, Walk};
use crate::repo::Repository;
use std::sync::Arc;

/// How to diff two snapshots.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiffOptions {
    /// Categories not reported (`diff` ignores atime unless asked).
    pub ignore: CategorySet,
}

/// Every change from entry `a` to entry `b` (found at `path` in their
/// snapshots) and below: `a` is the older side.
pub fn diff_snapshots(
    repo: &Arc<Repository>,
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
    d.pair(path, a, b)?;
    if let Some(below) = below(Some(a), Some(b)) {
        // The walk joins names with `/`: the root's own path is "".
        let prefix = path.strip_suffix(b"/").unwrap_or(path);
        walk::run(below, prefix, &mut d)?;
    }
    d.report.finish();
    Ok(d.report)
}

struct TreeDiff<'a> {
    repo: &'a Arc<Repository>,
    ignore: CategorySet,
    rules: Rules,
    report: Report,
}

/// One name of a merged listing: its entry on each side that has it.
struct Pair {
    name: Vec<u8>,
    a: Option<Entry>,
    b: Option<Entry>,
}

/// The trees to merge below entries `a` and `b` (one may be absent): the
/// directory's on each side that has one, unless both are the same tree.
/// A side with no directory (absent, another type, or stored without a
/// tree) lists as empty.
fn below(a: Option<&Entry>, b: Option<&Entry>) -> Option<(Option<TreeId>, Option<TreeId>)> {
    let dir = |e: Option<&Entry>| e.filter(|e| e.kind == Kind::Dir).map(|e| e.subtree);
    match (dir(a), dir(b)) {
        (None, None) => None,
        (Some(x), Some(y)) if x == y => None,
        (x, y) => {
            let (x, y) = (x.flatten(), y.flatten());
            (x.is_some() || y.is_some()).then_some((x, y))
        }
    }
}

impl Walk for TreeDiff<'_> {
    type Dir = (Option<TreeId>, Option<TreeId>);
    type List = Vec<Pair>;
    type Node = Pair;
    type Error = Error;

    fn name(p: &Pair) -> &[u8] {
        &p.name
    }

    fn below(p: &Pair) -> Option<Self::Dir> {
        below(p.a.as_ref(), p.b.as_ref())
    }

    fn enter(&mut self, _: &[u8], &(a, b): &Self::Dir) -> Result<Option<Vec<Pair>>> {
        let (a, b) = (self.load(a)?, self.load(b)?);
        Ok(Some(merge(a, b)))
    }

    fn entry(&mut self, path: &[u8], p: &mut Pair) -> Result<Flow> {
        match (&p.a, &p.b) {
            (Some(a), Some(b)) => self.pair(path, a, b)?,
            (a, b) => {
                self.report.entries += 1;
                let kind = |e: &Option<Entry>| e.as_ref().map(|e| e.kind);
                self.push(path, kind(a), kind(b), Vec::new());
            }
        }
        Ok(Flow::Next)
    }

    fn leave(&mut self, _: &[u8], _: Self::Dir, _: Vec<Pair>) -> Result<()> {
        Ok(())
    }
}

/// Two listings merged by name.
fn merge(a: Tree, b: Tree) -> Vec<Pair> {
    use std::cmp::Ordering;
    let mut out = Vec::with_capacity(a.entries.len().max(b.entries.len()));
    let (mut a, mut b) = (
        a.entries.into_iter().peekable(),
        b.entries.into_iter().peekable(),
    );
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return out,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
        };
        let (x, y) = match order {
            Ordering::Less => (a.next(), None),
            Ordering::Greater => (None, b.next()),
            Ordering::Equal => (a.next(), b.next()),
        };
        let name = x.as_ref().or(y.as_ref()).expect("peeked").name.clone();
        out.push(Pair { name, a: x, b: y });
    }
}

impl TreeDiff<'_> {
    /// Entries `a` and `b`, both at `path`.
    fn pair(&mut self, path: &[u8], a: &Entry, b: &Entry) -> Result<()> {
        self.report.entries += 1;
        if a.kind != b.kind {
            self.push(path, Some(a.kind), Some(b.kind), Vec::new());
            return Ok(());
        }
        let mut details = Vec::new();
        meta_details(a, b, &self.rules, &mut details);
        if a.kind == Kind::File {
            self.content(a, b, &mut details)?;
        }
        self.push(path, Some(a.kind), Some(b.kind), details);
        Ok(())
    }

    /// A change at `path`, unless there is none.
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
    /// reading as zeros: read from the repository by the content reader.
    fn same_bytes(&mut self, a: &[Extent], b: &[Extent]) -> Result<bool> {
        let read = |e: &[Extent]| {
            let opts = ReadAhead {
                threads: 2,
                budget: 8 << 20,
            };
            Pieces::new(self.repo.clone(), e.to_vec(), opts).map(Cursor::new)
        };
        let (mut x, mut y) = (read(a)?, read(b)?);
        loop {
            x.fill()?;
            y.fill()?;
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

/// A place in a file's pieces: the piece at hand (bytes, or `None` for a
/// hole) and how much of it is used.
struct Cursor {
    pieces: Pieces,
    data: Option<Vec<u8>>,
    len: u64,
    used: u64,
}

impl Cursor {
    fn new(pieces: Pieces) -> Self {
        Cursor {
            pieces,
            data: None,
            len: 0,
            used: 0,
        }
    }

    /// Move to the next non-empty piece once the current one is used up.
    fn fill(&mut self) -> Result<()> {
        while self.used == self.len {
            let Some(piece) = self.pieces.next() else {
                return Ok(());
            };
            (self.data, self.len, self.used) = match piece? {
                Piece::Data(d) => {
                    let n = d.len() as u64;
                    (Some(d), n, 0)
                }
                Piece::Hole(len) => (None, len, 0),
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
