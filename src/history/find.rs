//! `rewind find`: every path whose name or path matches a pattern, with the
//! snapshots that hold it.
//!
//! # How it stays cheap across many snapshots
//!
//! Nightly snapshots share most of their trees: a directory that did not
//! change is the same tree blob (the same id) in every snapshot. The search
//! walks each tree id once ([`Search::node`], with an explicit stack: a
//! snapshot deeper than the thread's stack is searched like any other) and keeps what it found below
//! it as a [`MatchNode`]: the matching entries of that tree and, for each
//! subdirectory with matches somewhere below, its own node. A subtree with
//! no match is remembered as empty, so the next snapshot that holds it is
//! done with it at once. Trees are the unit of memoisation only where the
//! patterns look at names alone; a pattern with `/` depends on where a tree
//! sits, so then the key is the tree id and its path (a tree that stays in
//! one place across snapshots, the usual case, is still walked once).
//!
//! Trees are read ahead of the walk by a few threads ([`super::ahead`]),
//! so reading and decoding overlap.
//!
//! The results are then merged across snapshots directory by directory, in
//! name order ([`Search::emit`]): for each path, the snapshots that hold it
//! (oldest first), each with its entry and how it differs from the previous
//! snapshot of the same host that held the path ([`Change`]). Paths come out
//! in the order `find` would print them (a directory before what is in it),
//! one at a time, so output starts before the search ends and memory holds
//! only the matching trees, not the list of hits.

use super::ahead::{self, Ahead};
use super::Change;
use crate::backup::Excludes;
use crate::error::{Error, Result};
use crate::format::id::{SnapshotId, TreeId};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, Kind, Tree};
use crate::progress::Progress;
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

/// A tree being searched: its matching entries so far, and where it is.
struct Frame {
    key: (TreeId, Option<Vec<u8>>),
    tree: Arc<Tree>,
    /// The tree's directory path: this long a prefix of the search's buffer.
    path_len: usize,
    /// The next entry to look at.
    next: usize,
    /// Whether the entry before `next` matched, while the search is below it.
    matched: bool,
    items: Vec<Item>,
    any: bool,
}

impl Frame {
    /// Entry `index` matched (`matched`), or has a node below it (`below`).
    fn add(&mut self, index: usize, matched: bool, below: Option<Arc<MatchNode>>) {
        let below = below.filter(|n| !n.items.is_empty());
        if matched || below.is_some() {
            self.any |= matched;
            self.items.push(Item {
                name: self.tree.entries[index].name.clone(),
                index,
                matched,
                below,
            });
        }
    }
}

/// A tree met in the search: known already, or read and to be searched.
enum Met {
    Known(Arc<MatchNode>),
    Read(Box<Frame>),
}

impl Search<'_> {
    /// What matches below tree `root` (a snapshot's root), first met in
    /// snapshot `snap`. Depth-first with an explicit stack of the trees it
    /// is in, so a chain of trees as deep as memory allows never touches
    /// the thread's stack; each tree is read the first time its key is met
    /// and its node is memoised once everything below it is done.
    fn node(&mut self, root: TreeId, snap: usize) -> Result<Arc<MatchNode>> {
        let mut path = Vec::new();
        let mut stack = match self.meet(root, &path, snap)? {
            Met::Known(n) => return Ok(n),
            Met::Read(f) => vec![f],
        };
        loop {
            let top = stack.last_mut().expect("a tree being searched");
            path.truncate(top.path_len);
            let Some(e) = top.tree.entries.get(top.next) else {
                let done = stack.pop().expect("the top tree");
                let node = if done.items.is_empty() {
                    self.empty.clone()
                } else {
                    Arc::new(MatchNode {
                        tree: done.any.then_some(done.tree),
                        items: done.items,
                    })
                };
                self.memo.insert(done.key, node.clone());
                match stack.last_mut() {
                    Some(parent) => parent.add(parent.next - 1, parent.matched, Some(node)),
                    None => return Ok(node),
                }
                continue;
            };
            let index = top.next;
            top.next += 1;
            let matched = self.matcher.matches(&path, &e.name);
            let sub = match (e.kind, e.subtree) {
                (Kind::Dir, Some(sub)) => sub,
                _ => {
                    top.add(index, matched, None);
                    continue;
                }
            };
            path.push(b'/');
            path.extend_from_slice(&e.name);
            match self.meet(sub, &path, snap)? {
                Met::Known(n) => {
                    stack
                        .last_mut()
                        .expect("the top tree")
                        .add(index, matched, Some(n))
                }
                Met::Read(f) => {
                    stack.last_mut().expect("the top tree").matched = matched;
                    stack.push(f);
                }
            }
        }
    }

    /// Tree `id` at directory path `dir`: its node if its key was met
    /// before, else the tree read. A tree that cannot be read is reported
    /// (naming `dir` and snapshot `snap`) and known as empty from then on.
    fn meet(&mut self, id: TreeId, dir: &[u8], snap: usize) -> Result<Met> {
        let key = (id, self.matcher.by_path.then(|| dir.to_vec()));
        if let Some(n) = self.memo.get(&key) {
            return Ok(Met::Known(n.clone()));
        }
        crate::interrupt::check()?;
        match self.ahead.take(&id) {
            Ok(tree) => Ok(Met::Read(Box::new(Frame {
                key,
                tree: Arc::new(tree),
                path_len: dir.len(),
                next: 0,
                matched: false,
                items: Vec::new(),
                any: false,
            }))),
            Err(e) => {
                self.stats.errors += 1;
                let shown = if dir.is_empty() { b"/".as_slice() } else { dir };
                self.progress.warn(&Error::corrupt(
                    format!(
                        "{} in snapshot {}",
                        String::from_utf8_lossy(shown),
                        self.snaps[snap].0.short()
                    ),
                    format!("cannot search below it: {e}"),
                ));
                self.memo.insert(key, self.empty.clone());
                Ok(Met::Known(self.empty.clone()))
            }
        }
    }
}

/// One directory being reported: the snapshots that hold it, with their
/// nodes, and its names not yet reported.
struct Level<'r> {
    path_len: usize,
    group: Vec<(usize, &'r MatchNode)>,
    /// For each of `group`, its node's place among the distinct nodes.
    of_snap: Vec<usize>,
    names: std::collections::btree_map::IntoIter<&'r [u8], Vec<Option<&'r Item>>>,
}

impl<'r> Level<'r> {
    /// Directory `path_len` bytes of the buffer, held by `group` (each
    /// snapshot that holds it, in snapshot order, with its node).
    fn new(path_len: usize, group: Vec<(usize, &'r MatchNode)>) -> Level<'r> {
        // Nodes are shared by many snapshots: merge each distinct one once.
        let mut distinct: Vec<&MatchNode> = Vec::new();
        let mut of_snap = Vec::with_capacity(group.len());
        for (_, n) in &group {
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
        Level {
            path_len,
            group,
            of_snap,
            names: names.into_iter(),
        }
    }
}

/// Report the matches below the roots, where `group` gives each snapshot
/// (in snapshot order) with its root's node: directory by directory, a
/// directory's matches in name order, each followed by what is below it.
/// An explicit stack of the directories being reported keeps the depth off
/// the thread's stack.
fn emit(
    snaps: &[(SnapshotId, Snapshot)],
    stats: &mut Stats,
    group: Vec<(usize, &MatchNode)>,
    found: &mut Found<'_>,
) -> Result<()> {
    let mut path = Vec::new();
    let mut stack = vec![Level::new(0, group)];
    while let Some(top) = stack.last_mut() {
        path.truncate(top.path_len);
        let Some((name, by_node)) = top.names.next() else {
            stack.pop();
            continue;
        };
        crate::interrupt::check()?;
        path.push(b'/');
        path.extend_from_slice(name);
        let mut hits = Vec::new();
        let mut below = Vec::new();
        let mut last: HashMap<&str, &Entry> = HashMap::new();
        for (&(snap, node), &at) in top.group.iter().zip(&top.of_snap) {
            let Some(item) = by_node[at] else {
                continue;
            };
            if let (true, Some(tree)) = (item.matched, &node.tree) {
                let entry = &tree.entries[item.index];
                let host = snaps[snap].1.host.as_str();
                let change = Change::between(last.get(host).copied(), entry);
                last.insert(host, entry);
                hits.push(Hit {
                    snapshot: snap,
                    entry,
                    change,
                });
            }
            if let Some(b) = &item.below {
                below.push((snap, &**b));
            }
        }
        if !hits.is_empty() {
            stats.paths += 1;
            stats.hits += hits.len() as u64;
            found(&path, &hits)?;
        }
        if !below.is_empty() {
            stack.push(Level::new(path.len(), below));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
