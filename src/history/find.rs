//! `rewind find`: every path whose name or path matches a pattern, with the
//! snapshots that hold it.
//!
//! # How it stays cheap across many snapshots
//!
//! Nightly snapshots share most of their trees: a directory that did not
//! change is the same tree blob (the same id) in every snapshot. The search
//! walks each tree id once ([`Search::node`]) and keeps what it found below
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
            roots.push((i, s.node(snap.tree, b"", i)?));
        }
        s.stats.trees_read = ahead.reads();
        Ok::<_, Error>((roots, s.stats))
    })?;
    let group: Vec<(usize, &MatchNode)> = roots.iter().map(|(i, n)| (*i, &**n)).collect();
    emit(snaps, &mut stats, b"", &group, found)?;
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

impl Search<'_> {
    /// What matches below tree `id` at directory path `dir`, first met in
    /// snapshot `snap`.
    fn node(&mut self, id: TreeId, dir: &[u8], snap: usize) -> Result<Arc<MatchNode>> {
        let key = (id, self.matcher.by_path.then(|| dir.to_vec()));
        if let Some(n) = self.memo.get(&key) {
            return Ok(n.clone());
        }
        crate::interrupt::check()?;
        let node = match self.ahead.take(&id) {
            Ok(tree) => self.walk(Arc::new(tree), dir, snap)?,
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
                self.empty.clone()
            }
        };
        self.memo.insert(key, node.clone());
        Ok(node)
    }

    fn walk(&mut self, tree: Arc<Tree>, dir: &[u8], snap: usize) -> Result<Arc<MatchNode>> {
        let mut items = Vec::new();
        let mut any = false;
        for (index, e) in tree.entries.iter().enumerate() {
            let matched = self.matcher.matches(dir, &e.name);
            let below = match (e.kind, e.subtree) {
                (Kind::Dir, Some(sub)) => {
                    let n = self.node(sub, &child(dir, &e.name), snap)?;
                    (!n.items.is_empty()).then_some(n)
                }
                _ => None,
            };
            if matched || below.is_some() {
                any |= matched;
                items.push(Item {
                    name: e.name.clone(),
                    index,
                    matched,
                    below,
                });
            }
        }
        if items.is_empty() {
            return Ok(self.empty.clone());
        }
        Ok(Arc::new(MatchNode {
            tree: any.then_some(tree),
            items,
        }))
    }
}

/// Report the matches in directory `dir`, where `group` gives each snapshot
/// that holds it (in snapshot order) with its node, then go on below.
fn emit(
    snaps: &[(SnapshotId, Snapshot)],
    stats: &mut Stats,
    dir: &[u8],
    group: &[(usize, &MatchNode)],
    found: &mut Found<'_>,
) -> Result<()> {
    // Nodes are shared by many snapshots: merge each distinct one once.
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
    for (name, by_node) in names {
        crate::interrupt::check()?;
        let path = child(dir, name);
        let mut hits = Vec::new();
        let mut below = Vec::new();
        let mut last: HashMap<&str, &Entry> = HashMap::new();
        for (&(snap, node), &at) in group.iter().zip(&of_snap) {
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
            emit(snaps, stats, &path, &below, found)?;
        }
    }
    Ok(())
}

/// `dir/name` as an absolute path (`/name` in the root).
fn child(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

#[cfg(test)]
mod tests;
