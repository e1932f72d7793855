//! `rewind find`: every path whose name or path matches a pattern, with the
//! snapshots that hold it.
//!
//! # How it stays cheap across many snapshots
//!
//! Nightly snapshots share most of their trees: a directory that did not
//! change is the same tree blob (the same id) in every snapshot. The search
//! walks each tree id once (a walk of the tree walker, [`crate::repo::walk`]:
//! a snapshot deeper than the thread's stack is searched like any other)
//! and keeps what it found below it as a `MatchNode`: the matching entries
//! of that tree and, for each subdirectory with matches somewhere below,
//! its own node. A subtree with no match is remembered as empty, so the
//! next snapshot that holds it is done with it at once. Trees are the unit
//! of memoisation only where the patterns look at names alone; a pattern
//! with `/` depends on where a tree sits, so then the key is the tree id
//! and its path (a tree that stays in one place across snapshots, the usual
//! case, is still walked once).
//!
//! Trees are read ahead of the walk by a few threads (`history::ahead`),
//! so reading and decoding overlap.
//!
//! The results are then merged across snapshots directory by directory, in
//! name order (`emit`, a walk of the walker too): for each path, the
//! snapshots that hold it (oldest first), each with its entry and how it
//! differs from the previous snapshot of the same host that held the path
//! ([`Change`]). Paths come out in the order `find` would print them (a
//! directory before what is in it), one at a time, so output starts before
//! the search ends and memory holds only the matching trees, not the list
//! of hits.

use super::ahead::{self, Ahead};
use super::Change;
use crate::backup::Excludes;
use crate::error::{Error, Result};
use crate::format::id::{SnapshotId, TreeId};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, Kind, Tree};
use crate::progress::Progress;
use crate::repo::walk::{self, Flow, Visit};
use crate::repo::Repository;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// Compiled patterns, with the rules of `backup --exclude`.
pub struct Matcher {
    excludes: Excludes,
    /// Whether some pattern looks at the path, not only at the name.
    by_path: bool,
}

impl Matcher {
    pub fn new(patterns: &[String]) -> Result<Matcher> {
        if patterns.is_empty() {
            return Err(Error::InvalidInput("find needs a pattern".into()));
        }
        let excludes = Excludes::new(patterns).map_err(|e| {
            Error::InvalidInput(format!("{e} (find takes the patterns of backup --exclude)"))
        })?;
        Ok(Matcher {
            excludes,
            by_path: patterns
                .iter()
                .any(|p| p.trim_end_matches('/').contains('/')),
        })
    }

    /// Whether entry `name` in directory `dir` (absolute, `/` for the root)
    /// matches. The one place that asks the exclude rules.
    pub fn matches(&self, dir: &[u8], name: &[u8]) -> bool {
        let dir = if dir.is_empty() { b"/".as_slice() } else { dir };
        self.excludes
            .matches(Path::new(OsStr::from_bytes(dir)), name)
    }
}

/// One snapshot holding a matching path.
#[derive(Clone, Copy, Debug)]
pub struct Hit<'a> {
    /// Index into the snapshots searched.
    pub snapshot: usize,
    pub entry: &'a Entry,
    /// Against the previous snapshot of the same host that held the path.
    pub change: Change,
}

/// Receives each matching path with its hits, in path order.
pub type Found<'f> = dyn FnMut(&[u8], &[Hit<'_>]) -> Result<()> + 'f;

/// What a search did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tree blobs read: each distinct tree once (once per path it sits at,
    /// when a pattern has `/`).
    pub trees_read: u64,
    /// Matching paths.
    pub paths: u64,
    /// Snapshot entries listed (a path in N snapshots counts N).
    pub hits: u64,
    /// Trees that could not be read (each reported through the progress).
    pub errors: u64,
}

/// Find every path below the roots of `snaps` (oldest first, as
/// [`Repository::snapshots`] lists them) that `matcher` matches, and give
/// each, in path order, to `found` with its hits in snapshot order. A tree
/// that cannot be read is reported to `progress` (naming its path and a
/// snapshot that holds it) and searched no further; the rest goes on.
pub fn find(
    repo: &Repository,
    snaps: &[(SnapshotId, Snapshot)],
    matcher: &Matcher,
    progress: &dyn Progress,
    found: &mut Found<'_>,
) -> Result<Stats> {
    let trees: Vec<TreeId> = snaps.iter().map(|(_, s)| s.tree).collect();
    let (roots, mut stats) = ahead::with_readers(repo, &trees, READERS, |ahead| {
        let mut s = Search {
            ahead,
            snaps,
            matcher,
            progress,
            memo: HashMap::new(),
            empty: Arc::new(MatchNode::default()),
            stats: Stats::default(),
        };
        let mut roots = Vec::with_capacity(snaps.len());
        for (i, (_, snap)) in snaps.iter().enumerate() {
            roots.push((i, s.node(snap.tree, i)?));
        }
        s.stats.trees_read = ahead.reads();
        Ok::<_, Error>((roots, s.stats))
    })?;
    let group: Vec<(usize, &MatchNode)> = roots.iter().map(|(i, n)| (*i, &**n)).collect();
    emit(snaps, &mut stats, group, found)?;
    Ok(stats)
}

/// Threads reading trees ahead of the walk.
const READERS: usize = 3;

/// What lies below one tree: its entries that match or lead to a match.
#[derive(Default)]
struct MatchNode {
    /// The tree, kept only when some of its entries match.
    tree: Option<Arc<Tree>>,
    items: Vec<Item>,
}

struct Item {
    name: Vec<u8>,
    /// Its place in the tree's entries.
    index: usize,
    matched: bool,
    /// A directory with matches below it.
    below: Option<Arc<MatchNode>>,
}

struct Search<'a> {
    ahead: &'a Ahead<'a>,
    snaps: &'a [(SnapshotId, Snapshot)],
    matcher: &'a Matcher,
    progress: &'a dyn Progress,
    /// Tree id (and its path, when patterns look at paths) to what is below.
    memo: HashMap<(TreeId, Option<Vec<u8>>), Arc<MatchNode>>,
    empty: Arc<MatchNode>,
    stats: Stats,
}

/// A tree being searched: its matching entries so far.
struct Frame {
    key: (TreeId, Option<Vec<u8>>),
    /// The next entry's place in the tree.
    next: usize,
    /// The directory entry being entered: its place, name, and whether it
    /// matched (it is added once what is below it is known).
    entering: (usize, Vec<u8>, bool),
    items: Vec<Item>,
    any: bool,
}

impl Frame {
    /// Entry `index` matched (`matched`), or has a node below it (`below`).
    fn add(&mut self, index: usize, name: Vec<u8>, matched: bool, below: Option<Arc<MatchNode>>) {
        let below = below.filter(|n| !n.items.is_empty());
        if matched || below.is_some() {
            self.any |= matched;
            self.items.push(Item {
                name,
                index,
                matched,
                below,
            });
        }
    }
}

/// One snapshot's search, a walk of the tree walker: each tree is read the
/// first time its key is met and its node memoised once everything below
/// it is done ([`Visit::leave`]); a tree met again is not entered.
struct Walk<'s, 'a> {
    search: &'s mut Search<'a>,
    snap: usize,
    /// The trees being searched, innermost last (the walker's own stack
    /// holds the trees themselves).
    frames: Vec<Frame>,
    /// The root's node, once known.
    root: Option<Arc<MatchNode>>,
}

impl Walk<'_, '_> {
    /// The node below the entry being entered is known: add it to its
    /// directory's frame, or it is the root's.
    fn found(&mut self, node: Arc<MatchNode>) {
        match self.frames.last_mut() {
            Some(parent) => {
                let (index, name, matched) = std::mem::take(&mut parent.entering);
                parent.add(index, name, matched, Some(node));
            }
            None => self.root = Some(node),
        }
    }
}

impl Visit for Walk<'_, '_> {
    type Error = Error;

    /// Tree `id` at directory path `dir`: known (added at once, not
    /// entered), or read. A tree that cannot be read is reported (naming
    /// `dir` and the snapshot) and known as empty from then on.
    fn enter(&mut self, dir: &[u8], id: TreeId) -> Result<Option<Tree>> {
        let key = (id, self.search.matcher.by_path.then(|| dir.to_vec()));
        if let Some(n) = self.search.memo.get(&key) {
            let n = n.clone();
            self.found(n);
            return Ok(None);
        }
        crate::interrupt::check()?;
        match self.search.ahead.take(&id) {
            Ok(tree) => {
                self.frames.push(Frame {
                    key,
                    next: 0,
                    entering: (0, Vec::new(), false),
                    items: Vec::new(),
                    any: false,
                });
                Ok(Some(tree))
            }
            Err(e) => {
                let s = &mut *self.search;
                s.stats.errors += 1;
                let shown = if dir.is_empty() { b"/".as_slice() } else { dir };
                s.progress.warn(&Error::corrupt(
                    format!(
                        "{} in snapshot {}",
                        String::from_utf8_lossy(shown),
                        s.snaps[self.snap].0.short()
                    ),
                    format!("cannot search below it: {e}"),
                ));
                s.memo.insert(key, s.empty.clone());
                let n = s.empty.clone();
                self.found(n);
                Ok(None)
            }
        }
    }

    fn entry(&mut self, path: &[u8], e: &mut Entry) -> Result<Flow> {
        let top = self.frames.last_mut().expect("a tree being searched");
        let index = top.next;
        top.next += 1;
        let dir = &path[..path.len() - e.name.len() - 1];
        let matched = self.search.matcher.matches(dir, &e.name);
        match (e.kind, e.subtree) {
            // The walk enters it next: added with what is below it.
            (Kind::Dir, Some(_)) => top.entering = (index, e.name.clone(), matched),
            _ => top.add(index, e.name.clone(), matched, None),
        }
        Ok(Flow::Next)
    }

    fn leave(&mut self, _: &[u8], _: TreeId, tree: Tree) -> Result<()> {
        let done = self.frames.pop().expect("a tree being searched");
        let s = &mut *self.search;
        let node = if done.items.is_empty() {
            s.empty.clone()
        } else {
            Arc::new(MatchNode {
                tree: done.any.then(|| Arc::new(tree)),
                items: done.items,
            })
        };
        s.memo.insert(done.key, node.clone());
        self.found(node);
        Ok(())
    }
}

impl Search<'_> {
    /// What matches below tree `root` (a snapshot's root), first met in
    /// snapshot `snap`: a walk of the tree walker (depth bounded by memory,
    /// not by the thread's stack).
    fn node(&mut self, root: TreeId, snap: usize) -> Result<Arc<MatchNode>> {
        let mut w = Walk {
            search: self,
            snap,
            frames: Vec::new(),
            root: None,
        };
        walk::walk(root, b"", &mut w)?;
        Ok(w.root.expect("the walk reached its root"))
    }
}

/// The snapshots that hold a directory being reported, each (in snapshot
/// order) with its node.
type Group<'r> = Vec<(usize, &'r MatchNode)>;

/// One name of a directory being reported: its item in each distinct node
/// of the directory's group that has it, and, once reported, the group of
/// what is below it.
struct Name<'r> {
    name: &'r [u8],
    by_node: Vec<Option<&'r Item>>,
    below: Group<'r>,
}

/// The report, merged across snapshots: a walk of the walker over the
/// matches' nodes, where a directory is the group of snapshots holding it.
struct Emit<'r, 'f, 'g> {
    snaps: &'r [(SnapshotId, Snapshot)],
    stats: &'g mut Stats,
    found: &'g mut Found<'f>,
    /// For each directory being reported, innermost last: its group, and
    /// for each of it, its node's place among the distinct nodes.
    levels: Vec<(Group<'r>, Vec<usize>)>,
}

impl<'r> walk::Walk for Emit<'r, '_, '_> {
    type Dir = Group<'r>;
    type List = Vec<Name<'r>>;
    type Node = Name<'r>;
    type Error = Error;

    fn name<'n>(n: &'n Name<'r>) -> &'n [u8] {
        n.name
    }

    fn below(n: &Name<'r>) -> Option<Group<'r>> {
        (!n.below.is_empty()).then(|| n.below.clone())
    }

    /// The names of the directory held by `group`, merged in name order;
    /// nodes are shared by many snapshots, so each distinct one is merged
    /// once.
    fn enter(&mut self, _: &[u8], group: &Group<'r>) -> Result<Option<Vec<Name<'r>>>> {
        let mut distinct: Vec<&MatchNode> = Vec::new();
        let mut of_snap = Vec::with_capacity(group.len());
        for (_, n) in group {
            let at = match distinct.iter().position(|d| std::ptr::eq(*d, *n)) {
                Some(at) => at,
                None => {
                    distinct.push(n);
                    distinct.len() - 1
                }
            };
            of_snap.push(at);
        }
        let mut names: BTreeMap<&[u8], Vec<Option<&Item>>> = BTreeMap::new();
        for (at, n) in distinct.iter().enumerate() {
            for item in &n.items {
                names
                    .entry(&item.name)
                    .or_insert_with(|| vec![None; distinct.len()])[at] = Some(item);
            }
        }
        self.levels.push((group.clone(), of_snap));
        let list = names.into_iter().map(|(name, by_node)| Name {
            name,
            by_node,
            below: Vec::new(),
        });
        Ok(Some(list.collect()))
    }

    /// A name: its hits reported (a snapshot's entry where it matched,
    /// with how it differs from the previous snapshot of the same host),
    /// and the snapshots with matches below it kept for the walk to enter.
    fn entry(&mut self, path: &[u8], n: &mut Name<'r>) -> Result<Flow> {
        crate::interrupt::check()?;
        let (group, of_snap) = self.levels.last().expect("a directory being reported");
        let mut hits = Vec::new();
        let mut last: HashMap<&str, &Entry> = HashMap::new();
        for (&(snap, node), &at) in group.iter().zip(of_snap) {
            let Some(item) = n.by_node[at] else {
                continue;
            };
            if let (true, Some(tree)) = (item.matched, &node.tree) {
                let entry = &tree.entries[item.index];
                let host = self.snaps[snap].1.host.as_str();
                let change = Change::between(last.get(host).copied(), entry);
                last.insert(host, entry);
                hits.push(Hit {
                    snapshot: snap,
                    entry,
                    change,
                });
            }
            if let Some(b) = &item.below {
                n.below.push((snap, &**b));
            }
        }
        if !hits.is_empty() {
            self.stats.paths += 1;
            self.stats.hits += hits.len() as u64;
            (self.found)(path, &hits)?;
        }
        Ok(Flow::Next)
    }

    fn leave(&mut self, _: &[u8], _: Group<'r>, _: Vec<Name<'r>>) -> Result<()> {
        self.levels.pop();
        Ok(())
    }
}

/// Report the matches below the roots, where `group` gives each snapshot
/// (in snapshot order) with its root's node: directory by directory, a
/// directory's matches in name order, each followed by what is below it.
fn emit(
    snaps: &[(SnapshotId, Snapshot)],
    stats: &mut Stats,
    group: Group<'_>,
    found: &mut Found<'_>,
) -> Result<()> {
    let mut e = Emit {
        snaps,
        stats,
        found,
        levels: Vec::new(),
    };
    walk::run(group, b"", &mut e)
}

#[cfg(test)]
mod tests;
