//! The tree walker: one depth-first walk over a snapshot's trees, shared by
//! `check`, `prune`, `stats`, `ls`, `copy` and `repair`.
//!
//! [`walk`] visits the entries below a root tree in name order, each
//! directory's entry before what is below it (the order `ls` prints and a
//! restore creates), and tells the visitor when a directory is left, after
//! everything below it (when `restore` sets directory times, and when `copy`
//! and `repair` rewrite a tree whose subtrees are done: [`bottom_up`]).
//!
//! - **Depth**: the walk keeps an explicit stack of the directories it is in
//!   (one loaded [`Tree`] and a cursor each), so a tree chain as deep as
//!   memory allows never touches the thread's stack. Recursion would abort a
//!   release build on a crafted (or merely very deep) snapshot.
//! - **Paths**: one byte buffer, a name pushed on the way down and cut off on
//!   the way back, so each entry's path costs its name, not its depth. Paths
//!   are `prefix/name/...` as bytes (names are raw bytes, not UTF-8); the
//!   prefix is the caller's (`""` for a snapshot root, whose entries are
//!   then `/name`).
//! - **Descent and failure**: [`Visit::enter`] loads the tree itself, so
//!   each command keeps its own policy: a seen-before set (prune's bounded
//!   `recent`, check's "each distinct tree once"), counting every appearance
//!   (stats), and what a tree that does not load means: `check` records it
//!   and returns `None` (the walk goes on with the next sibling), `prune`
//!   refuses (returns the error, which ends the walk), `ls` and `stats` fail
//!   naming the snapshot and path. The walker has no policy of its own: it
//!   does not check for interrupts either (visitors that stop on a signal
//!   do so in `enter`).
//!
//! Not every walk goes through here, and why:
//! - `restore` (`restore/walk.rs`) keeps its own loop over the same shape: its
//!   stack holds each directory's descriptor (a directory whose descriptor is
//!   lost ends its listing early), it moves entries into write jobs instead
//!   of lending them, and on an interrupt it stops descending but still
//!   leaves every directory it is in, setting their metadata. A visitor that
//!   can only be lent entries and cannot end a listing early would need a
//!   clone per file and a second stack beside this one.
//! - `dump` is a pull iterator feeding a tar writer and a read-ahead of
//!   file content; this walk pushes. It is iterative already.
//! - `diff` of two snapshots and `diff`/`verify` against a live directory
//!   merge two listings by name; the merge stays in `compare`.
//! - `find` computes, once per distinct tree, what matches below it, and
//!   then merges those results across snapshots.

use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Kind, Tree};

/// What a walk does at each step. Every method may fail; an error ends the
/// walk and is returned by [`walk`].
pub trait Visit {
    type Error: From<Error>;

    /// Directory `path` (tree `id`) is reached: the root first, then each
    /// directory entry right after [`Visit::entry`] was called with it.
    /// Return its tree to go into it (its entries are visited, then
    /// [`Visit::leave`] is called), `None` to go on without it (seen before,
    /// not wanted, or damaged and recorded).
    fn enter(&mut self, path: &[u8], id: TreeId) -> std::result::Result<Option<Tree>, Self::Error>;

    /// One entry of a directory that was entered, at `path` (the
    /// directory's path, `/`, the entry's name), in name order.
    fn entry(&mut self, path: &[u8], e: &Entry) -> std::result::Result<(), Self::Error> {
        let _ = (path, e);
        Ok(())
    }

    /// Everything below directory `path` was visited: `tree` is the one
    /// [`Visit::enter`] returned for it, given back.
    fn leave(
        &mut self,
        path: &[u8],
        id: TreeId,
        tree: Tree,
    ) -> std::result::Result<(), Self::Error> {
        let _ = (path, id, tree);
        Ok(())
    }
}

/// One directory the walk is in.
struct Frame {
    id: TreeId,
    tree: Tree,
    /// The next entry to visit.
    next: usize,
    /// The directory's path length in the walk's buffer.
    path_len: usize,
}

/// Walk the trees below `root` (inclusive), whose path is `prefix` (no
/// trailing `/`): see the module docs for the order and the contract.
pub fn walk<V: Visit>(root: TreeId, prefix: &[u8], v: &mut V) -> std::result::Result<(), V::Error> {
    let mut path = prefix.to_vec();
    let Some(tree) = v.enter(&path, root)? else {
        return Ok(());
    };
    let mut stack = vec![Frame {
        id: root,
        tree,
        next: 0,
        path_len: path.len(),
    }];
    while let Some(top) = stack.last_mut() {
        path.truncate(top.path_len);
        let Some(e) = top.tree.entries.get(top.next) else {
            let done = stack.pop().expect("the top frame");
            v.leave(&path, done.id, done.tree)?;
            continue;
        };
        top.next += 1;
        path.push(b'/');
        path.extend_from_slice(&e.name);
        v.entry(&path, e)?;
        let sub = match (e.kind, e.subtree) {
            (Kind::Dir, Some(sub)) => sub,
            _ => continue,
        };
        if let Some(tree) = v.enter(&path, sub)? {
            stack.push(Frame {
                id: sub,
                tree,
                next: 0,
                path_len: path.len(),
            });
        }
    }
    Ok(())
}

/// A walk over trees, children before parents: see [`bottom_up`].
pub trait BottomUp {
    /// Tree `id` is reached: `Some(tree)` to go below it (its subtrees are
    /// entered, then [`BottomUp::leave`] is called with it), `None` to
    /// skip it (done before, or handled without its children).
    fn enter(&mut self, id: TreeId) -> Result<Option<Tree>>;
    /// Every subtree of `tree` (the one `enter` returned for `id`) was
    /// entered and, where `enter` went below it, left.
    fn leave(&mut self, id: TreeId, tree: Tree) -> Result<()>;
}

/// Walk the trees below `root` (inclusive) children first: [`walk`] without
/// paths or entries, for rewriting a tree once its subtrees are rewritten.
pub fn bottom_up(root: TreeId, v: &mut impl BottomUp) -> Result<()> {
    struct Adapter<'a, B>(&'a mut B);
    impl<B: BottomUp> Visit for Adapter<'_, B> {
        type Error = Error;
        fn enter(&mut self, _: &[u8], id: TreeId) -> Result<Option<Tree>> {
            self.0.enter(id)
        }
        fn leave(&mut self, _: &[u8], id: TreeId, tree: Tree) -> Result<()> {
            self.0.leave(id, tree)
        }
    }
    walk(root, b"", &mut Adapter(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Trees by id, as a repository would load them.
    struct Store(HashMap<TreeId, Tree>);

    impl Store {
        fn add(&mut self, n: u8, entries: Vec<Entry>) -> TreeId {
            let id = TreeId([n; 32]);
            self.0.insert(id, Tree::new(entries));
            id
        }
    }

    fn dir(name: &str, sub: TreeId) -> Entry {
        let mut e = Entry::new(name.as_bytes().to_vec(), Kind::Dir);
        e.subtree = Some(sub);
        e
    }

    fn file(name: &str) -> Entry {
        Entry::new(name.as_bytes().to_vec(), Kind::File)
    }

    /// Records the events of a walk; refuses to enter `skip`, fails on `bad`.
    struct Log<'a> {
        store: &'a Store,
        skip: Option<TreeId>,
        events: Vec<String>,
    }

    impl Visit for Log<'_> {
        type Error = Error;
        fn enter(&mut self, path: &[u8], id: TreeId) -> Result<Option<Tree>> {
            let p = String::from_utf8_lossy(path);
            if Some(id) == self.skip {
                self.events.push(format!("skip {p}"));
                return Ok(None);
            }
            self.events.push(format!("enter {p}"));
            let tree = self.store.0.get(&id).cloned();
            tree.map(Some)
                .ok_or_else(|| Error::corrupt(p, "no such tree"))
        }
        fn entry(&mut self, path: &[u8], _: &Entry) -> Result<()> {
            self.events.push(String::from_utf8_lossy(path).into_owned());
            Ok(())
        }
        fn leave(&mut self, path: &[u8], id: TreeId, tree: Tree) -> Result<()> {
            assert_eq!(self.store.0.get(&id), Some(&tree), "its own tree back");
            self.events
                .push(format!("leave {}", String::from_utf8_lossy(path)));
            Ok(())
        }
    }

    fn sample() -> (Store, TreeId, TreeId) {
        let mut s = Store(HashMap::new());
        let c = s.add(3, vec![file("x")]);
        let b = s.add(2, vec![file("y"), dir("c", c)]);
        let root = s.add(1, vec![file("z"), dir("b", b), file("a"), dir("e", c)]);
        (s, root, c)
    }

    #[test]
    fn name_order_parents_first_leave_after_children() {
        let (s, root, _) = sample();
        let mut log = Log {
            store: &s,
            skip: None,
            events: Vec::new(),
        };
        walk(root, b"", &mut log).unwrap();
        let want = [
            "enter ",
            "/a",
            "/b",
            "enter /b",
            "/b/c",
            "enter /b/c",
            "/b/c/x",
            "leave /b/c",
            "/b/y",
            "leave /b",
            "/e",
            "enter /e",
            "/e/x",
            "leave /e",
            "/z",
            "leave ",
        ];
        assert_eq!(log.events, want);
    }

    #[test]
    fn visitor_decides_descent_and_failure() {
        let (s, root, c) = sample();
        let mut log = Log {
            store: &s,
            skip: Some(c),
            events: Vec::new(),
        };
        walk(root, b"/srv", &mut log).unwrap();
        assert!(log.events.contains(&"skip /srv/b/c".to_string()));
        assert!(
            !log.events.iter().any(|e| e.ends_with("/x")),
            "{:?}",
            log.events
        );
        assert_eq!(log.events.last().map(String::as_str), Some("leave /srv"));

        let mut broken = Store(s.0.clone());
        broken.0.remove(&c);
        let mut log = Log {
            store: &broken,
            skip: None,
            events: Vec::new(),
        };
        let err = walk(root, b"", &mut log).unwrap_err();
        assert!(err.to_string().contains("/b/c"), "{err}");
        assert_eq!(log.events.last().map(String::as_str), Some("enter /b/c"));
    }

    #[test]
    fn deeper_than_any_stack() {
        // A chain of 200,000 directories: recursion would need far more
        // than a test thread's 2 MiB of stack.
        const DEPTH: u32 = 200_000;
        struct Chain {
            entered: u32,
            left: u32,
            longest: usize,
        }
        impl Visit for Chain {
            type Error = Error;
            fn enter(&mut self, path: &[u8], _: TreeId) -> Result<Option<Tree>> {
                self.entered += 1;
                self.longest = self.longest.max(path.len());
                let mut next = dir("d", TreeId([0; 32]));
                if self.entered == DEPTH {
                    next = file("f");
                }
                Ok(Some(Tree::new(vec![next])))
            }
            fn leave(&mut self, _: &[u8], _: TreeId, _: Tree) -> Result<()> {
                self.left += 1;
                Ok(())
            }
        }
        let mut c = Chain {
            entered: 0,
            left: 0,
            longest: 0,
        };
        walk(TreeId([0; 32]), b"", &mut c).unwrap();
        assert_eq!((c.entered, c.left), (DEPTH, DEPTH));
        assert_eq!(c.longest, 2 * (DEPTH as usize - 1));
    }

    #[test]
    fn bottom_up_leaves_children_first() {
        struct Order<'a>(&'a Store, Vec<u8>);
        impl BottomUp for Order<'_> {
            fn enter(&mut self, id: TreeId) -> Result<Option<Tree>> {
                Ok(self.0 .0.get(&id).cloned())
            }
            fn leave(&mut self, id: TreeId, _: Tree) -> Result<()> {
                self.1.push(id.0[0]);
                Ok(())
            }
        }
        let (s, root, _) = sample();
        let mut o = Order(&s, Vec::new());
        bottom_up(root, &mut o).unwrap();
        assert_eq!(o.1, [3, 2, 3, 1]);
    }
}
