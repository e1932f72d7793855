//! The tree walker: one depth-first walk over a snapshot's trees, shared by
//! `restore`, `check`, `prune`, `stats`, `ls`, `copy`, `repair`, `find`,
//! `dump` and `diff`/`verify`. [`run`] is the walker itself, over any listings of
//! named entries ([`Walk`]); [`walk`] is its use over trees ([`Visit`]).
//! Merges of several listings walk with it too: `diff` of two snapshots
//! (a directory is a pair of trees, listed merged by name), `diff`/`verify`
//! against a live tree (a tree beside an open directory), and `find`'s
//! report across snapshots (a directory is the group of snapshots holding
//! it).
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
//!   naming the snapshot and path, `restore` warns and enters the directory
//!   as empty (it is made and gets its metadata). The walker has no policy
//!   of its own: it does not check for interrupts either (visitors that stop
//!   on a signal do so in `enter`, ending the walk with an error, or, like
//!   `restore`, answer [`Flow::Stop`]).
//! - **Entries are lent mutably**: [`Visit::entry`] gets the walker's own
//!   copy of each entry and may take what it keeps (`restore` moves a file's
//!   entry into its write job and a directory's into its own per-directory
//!   state, leaving the name for `--delete` to look up in the tree that
//!   [`Visit::leave`] gives back), so no visitor clones an entry to keep it.
//! - **Cutting a walk short**: [`Visit::entry`] answers a [`Flow`]: go on,
//!   leave this directory now (`restore`, when a directory's descriptor is
//!   lost), or stop. A walk cut short by a [`Flow`] still calls
//!   [`Visit::leave`] for every directory it entered, the deepest first (an
//!   interrupted `restore` sets the metadata of each directory it is in); a
//!   walk ended by an error does not.
//! - **State per directory** that is a visitor's own (`restore`'s directory
//!   descriptors, `check`'s damage count) is a stack of the visitor's,
//!   pushed in [`Visit::enter`] and popped in [`Visit::leave`], which the
//!   walker calls in pairs.
//!
//! `dump` walks on the content reader's thread and pushes each member into
//! it ([`crate::repo::content::Feed`]), so its walk is this one too.

use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Kind, Tree};

/// What the walk does after [`Visit::entry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on: into the entry if it is a directory with a tree, then to the
    /// next entry.
    Next,
    /// Leave the directory the entry is in now: the entry is not entered,
    /// the rest of the directory is not visited, [`Visit::leave`] is called.
    Leave,
    /// Visit nothing more: the entry is not entered, and every directory the
    /// walk is in is left ([`Visit::leave`]), the deepest first. [`walk`]
    /// then returns `Ok`.
    Stop,
}

/// What a walk does at each step. Every method may fail; an error ends the
/// walk at once (no more [`Visit::leave`] calls) and is returned by [`walk`].
pub trait Visit {
    type Error: From<Error>;

    /// Directory `path` (tree `id`) is reached: the root first, then each
    /// directory entry right after [`Visit::entry`] was called with it and
    /// returned [`Flow::Next`].
    /// Return its tree to go into it (its entries are visited, then
    /// [`Visit::leave`] is called), `None` to go on without it (seen before,
    /// not wanted, or damaged and recorded).
    fn enter(&mut self, path: &[u8], id: TreeId) -> std::result::Result<Option<Tree>, Self::Error>;

    /// One entry of a directory that was entered, at `path` (the
    /// directory's path, `/`, the entry's name), in name order.
    ///
    /// The entry is the walk's own copy, in the tree [`Visit::enter`]
    /// returned: a visitor may take what it keeps (`std::mem::take` of a
    /// field, or of the entry with its name put back) instead of cloning it.
    /// What the walk reads afterwards is the entry's `kind` and `subtree`
    /// (to go into a directory) and, in [`Visit::leave`], the tree handed
    /// back with whatever the visitor left in it.
    fn entry(&mut self, path: &[u8], e: &mut Entry) -> std::result::Result<Flow, Self::Error> {
        let _ = (path, e);
        Ok(Flow::Next)
    }

    /// Everything below directory `path` was visited (or the walk was cut
    /// short by [`Flow::Leave`] or [`Flow::Stop`]): `tree` is the one
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

/// A walk over any listings of named entries, not only trees: the walker
/// itself, which [`walk`] (a snapshot's trees) and the merges of several
/// listings (`diff` of two snapshots, `find`'s report across snapshots)
/// share. Same order, depth and cutting short as [`walk`]'s (see the module
/// docs); what a directory is, and how it lists, is the implementor's.
pub trait Walk {
    /// What names a directory to enter (a tree id; two of them side by side).
    type Dir;
    /// A directory's entries, in name order, as [`Walk::enter`] lists them.
    type List: AsMut<[Self::Node]>;
    /// One entry of a listing.
    type Node;
    type Error;

    /// An entry's name: its path component.
    fn name(node: &Self::Node) -> &[u8];
    /// The directory to go into below `node`, once [`Walk::entry`] answered
    /// [`Flow::Next`] (read after it, so it sees what `entry` left).
    fn below(node: &Self::Node) -> Option<Self::Dir>;
    /// Directory `path` is reached: its listing to go into it, `None` to go
    /// on without it. As [`Visit::enter`].
    fn enter(
        &mut self,
        path: &[u8],
        dir: &Self::Dir,
    ) -> std::result::Result<Option<Self::List>, Self::Error>;
    /// One entry, at `path`. As [`Visit::entry`].
    fn entry(
        &mut self,
        path: &[u8],
        node: &mut Self::Node,
    ) -> std::result::Result<Flow, Self::Error>;
    /// Everything below directory `path` was visited: its listing given
    /// back. As [`Visit::leave`].
    fn leave(
        &mut self,
        path: &[u8],
        dir: Self::Dir,
        list: Self::List,
    ) -> std::result::Result<(), Self::Error>;
}

/// A tree lists its entries (for [`walk`]).
impl AsMut<[Entry]> for Tree {
    fn as_mut(&mut self) -> &mut [Entry] {
        &mut self.entries
    }
}

/// One directory the walk is in.
struct Frame<D, L> {
    dir: D,
    list: L,
    /// The next entry to visit.
    next: usize,
    /// The directory's path length in the walk's buffer.
    path_len: usize,
}

/// Walk the listings below `root` (inclusive), whose path is `prefix` (no
/// trailing `/`): see the module docs for the order and the contract.
pub fn run<W: Walk>(root: W::Dir, prefix: &[u8], w: &mut W) -> std::result::Result<(), W::Error> {
    let mut path = prefix.to_vec();
    let Some(list) = w.enter(&path, &root)? else {
        return Ok(());
    };
    let mut stack = vec![Frame {
        dir: root,
        list,
        next: 0,
        path_len: path.len(),
    }];
    let mut stopped = false;
    while let Some(top) = stack.last_mut() {
        path.truncate(top.path_len);
        let nodes = top.list.as_mut();
        let len = nodes.len();
        let node = match nodes.get_mut(top.next) {
            Some(node) if !stopped => node,
            _ => {
                let done = stack.pop().expect("the top frame");
                w.leave(&path, done.dir, done.list)?;
                continue;
            }
        };
        top.next += 1;
        path.push(b'/');
        path.extend_from_slice(W::name(node));
        let sub = match w.entry(&path, node)? {
            Flow::Next => W::below(node),
            Flow::Leave => {
                top.next = len;
                continue;
            }
            Flow::Stop => {
                stopped = true;
                continue;
            }
        };
        let Some(sub) = sub else { continue };
        if let Some(list) = w.enter(&path, &sub)? {
            stack.push(Frame {
                dir: sub,
                list,
                next: 0,
                path_len: path.len(),
            });
        }
    }
    Ok(())
}

/// Walk the trees below `root` (inclusive), whose path is `prefix` (no
/// trailing `/`): see the module docs for the order and the contract.
pub fn walk<V: Visit>(root: TreeId, prefix: &[u8], v: &mut V) -> std::result::Result<(), V::Error> {
    struct Trees<'a, V>(&'a mut V);
    impl<V: Visit> Walk for Trees<'_, V> {
        type Dir = TreeId;
        type List = Tree;
        type Node = Entry;
        type Error = V::Error;
        fn name(e: &Entry) -> &[u8] {
            &e.name
        }
        fn below(e: &Entry) -> Option<TreeId> {
            e.subtree.filter(|_| e.kind == Kind::Dir)
        }
        fn enter(
            &mut self,
            path: &[u8],
            id: &TreeId,
        ) -> std::result::Result<Option<Tree>, V::Error> {
            self.0.enter(path, *id)
        }
        fn entry(&mut self, path: &[u8], e: &mut Entry) -> std::result::Result<Flow, V::Error> {
            self.0.entry(path, e)
        }
        fn leave(
            &mut self,
            path: &[u8],
            id: TreeId,
            tree: Tree,
        ) -> std::result::Result<(), V::Error> {
            self.0.leave(path, id, tree)
        }
    }
    run(root, prefix, &mut Trees(v))
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

    /// Records the events of a walk; refuses to enter `skip`, answers
    /// `flows` at their paths, fails on a tree the store lacks.
    struct Log<'a> {
        store: &'a Store,
        skip: Option<TreeId>,
        flows: Vec<(&'static str, Flow)>,
        events: Vec<String>,
    }

    impl<'a> Log<'a> {
        fn new(store: &'a Store) -> Self {
            Log {
                store,
                skip: None,
                flows: Vec::new(),
                events: Vec::new(),
            }
        }
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
        fn entry(&mut self, path: &[u8], _: &mut Entry) -> Result<Flow> {
            let p = String::from_utf8_lossy(path).into_owned();
            let flow = self.flows.iter().find(|(at, _)| *at == p);
            let flow = flow.map_or(Flow::Next, |(_, f)| *f);
            self.events.push(p);
            Ok(flow)
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

    /// The events of a walk of the sample down to `/b/c/x` and out of `/b/c`.
    const DOWN_TO_X: [&str; 8] = [
        "enter ",
        "/a",
        "/b",
        "enter /b",
        "/b/c",
        "enter /b/c",
        "/b/c/x",
        "leave /b/c",
    ];

    #[test]
    fn name_order_parents_first_leave_after_children() {
        let (s, root, _) = sample();
        let mut log = Log::new(&s);
        walk(root, b"", &mut log).unwrap();
        let want = [
            &DOWN_TO_X[..],
            &[
                "/b/y", "leave /b", "/e", "enter /e", "/e/x", "leave /e", "/z", "leave ",
            ],
        ]
        .concat();
        assert_eq!(log.events, want);
    }

    #[test]
    fn visitor_decides_descent_and_failure() {
        let (s, root, c) = sample();
        let mut log = Log {
            skip: Some(c),
            ..Log::new(&s)
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
        let mut log = Log::new(&broken);
        let err = walk(root, b"", &mut log).unwrap_err();
        assert!(err.to_string().contains("/b/c"), "{err}");
        assert_eq!(log.events.last().map(String::as_str), Some("enter /b/c"));
    }

    #[test]
    fn leave_ends_a_listing_and_stop_leaves_every_directory() {
        let (s, root, _) = sample();
        let mut log = Log {
            flows: vec![("/b/c/x", Flow::Leave), ("/e", Flow::Leave)],
            ..Log::new(&s)
        };
        walk(root, b"", &mut log).unwrap();
        let want = [&DOWN_TO_X[..], &["/b/y", "leave /b", "/e", "leave "]].concat();
        assert_eq!(log.events, want, "/e is not entered, /z not visited");

        let mut log = Log {
            flows: vec![("/b/c/x", Flow::Stop)],
            ..Log::new(&s)
        };
        walk(root, b"", &mut log).unwrap();
        let want = [&DOWN_TO_X[..], &["leave /b", "leave "]].concat();
        assert_eq!(log.events, want);

        let mut log = Log {
            flows: vec![("/b", Flow::Stop)],
            ..Log::new(&s)
        };
        walk(root, b"", &mut log).unwrap();
        assert_eq!(log.events, ["enter ", "/a", "/b", "leave "], "not entered");
    }

    #[test]
    fn a_visitor_takes_entries_and_gets_back_what_it_left() {
        /// Takes every entry, leaving its name, kind and subtree: `kept`
        /// holds the taken entries, `left` the trees given back.
        struct Taker<'a> {
            store: &'a Store,
            kept: Vec<Entry>,
            left: Vec<Tree>,
        }
        impl Visit for Taker<'_> {
            type Error = Error;
            fn enter(&mut self, _: &[u8], id: TreeId) -> Result<Option<Tree>> {
                Ok(self.store.0.get(&id).cloned())
            }
            fn entry(&mut self, _: &[u8], e: &mut Entry) -> Result<Flow> {
                let mut stub = Entry::new(e.name.clone(), e.kind);
                stub.subtree = e.subtree;
                self.kept.push(std::mem::replace(e, stub));
                Ok(Flow::Next)
            }
            fn leave(&mut self, _: &[u8], _: TreeId, tree: Tree) -> Result<()> {
                self.left.push(tree);
                Ok(())
            }
        }
        let (mut s, root, _) = sample();
        let root_tree = s.0.get_mut(&root).unwrap();
        root_tree.entries[0].mode = 0o640;
        let mut t = Taker {
            store: &s,
            kept: Vec::new(),
            left: Vec::new(),
        };
        walk(root, b"", &mut t).unwrap();
        assert_eq!(t.kept.len(), 8, "every entry, subtrees entered");
        assert_eq!(t.kept[0].mode, 0o640, "/a taken whole");
        let root_left = t.left.last().unwrap();
        let names: Vec<&[u8]> = root_left.entries.iter().map(|e| &e.name[..]).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"e", b"z"]);
        assert_eq!(root_left.entries[0].mode, 0, "what was left");

        // A directory entry taken whole (no subtree left) is not entered.
        struct Emptier(Store, Vec<String>);
        impl Visit for Emptier {
            type Error = Error;
            fn enter(&mut self, p: &[u8], id: TreeId) -> Result<Option<Tree>> {
                self.1.push(format!("enter {}", String::from_utf8_lossy(p)));
                Ok(self.0 .0.get(&id).cloned())
            }
            fn entry(&mut self, _: &[u8], e: &mut Entry) -> Result<Flow> {
                *e = Entry::new(std::mem::take(&mut e.name), e.kind);
                Ok(Flow::Next)
            }
        }
        let mut v = Emptier(s, Vec::new());
        walk(root, b"", &mut v).unwrap();
        assert_eq!(v.1, ["enter "]);
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
