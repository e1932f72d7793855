//! Trees read ahead of a depth-first walk by a few threads, so that reading
//! and decoding trees overlaps the walk (and each other).
//!
//! A tree that was read has its subdirectories queued, first child on top
//! of a stack, so the readers run ahead in the order a depth-first walk
//! asks. Each tree id is queued once. The walk [`Ahead::take`]s the trees it
//! needs: one read already, or being read (it waits), or else it reads the
//! tree itself. What was read and not yet taken is bounded
//! ([`READY_ENTRIES`], give or take the tree each reader has in hand); past
//! that the readers wait, and the walk goes on alone. [`with_readers`]
//! stops the readers when the walk ends.

use crate::error::Result;
use crate::format::id::TreeId;
use crate::format::tree::{Kind, Tree};
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Entries of trees read and not yet taken, at most (a few MiB decoded).
pub const READY_ENTRIES: usize = 1 << 16;

#[derive(Default)]
struct State {
    /// To read, the next on top.
    stack: Vec<TreeId>,
    /// Ever queued or taken: never queued again.
    known: HashSet<TreeId>,
    reading: HashSet<TreeId>,
    ready: HashMap<TreeId, Result<Tree>>,
    /// Entries in `ready`.
    ready_entries: usize,
    stop: bool,
}

/// Run `walk` with `readers` threads reading the trees below `roots`
/// ahead of it. The readers stop when `walk` returns (or panics).
pub fn with_readers<T>(
    repo: &Repository,
    roots: &[TreeId],
    readers: usize,
    walk: impl FnOnce(&Ahead) -> T,
) -> T {
    let ahead = Ahead::new(repo, roots);
    std::thread::scope(|s| {
        for _ in 0..readers {
            // Without readers the walk reads every tree itself.
            let _ = std::thread::Builder::new().spawn_scoped(s, || ahead.read());
        }
        let _stop = Stop(&ahead);
        walk(&ahead)
    })
}

/// Stops the readers when dropped, so that the scope holding them can end
/// however the walk ended.
struct Stop<'a, 'r>(&'a Ahead<'r>);

impl Drop for Stop<'_, '_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Read-ahead state shared by the walk and the readers.
pub struct Ahead<'r> {
    repo: &'r Repository,
    state: Mutex<State>,
    /// A tree became ready, or a reader stopped.
    done: Condvar,
    /// Work was queued, room was made, or it is time to stop.
    work: Condvar,
    /// Trees read (and decoded) so far, by the walk and the readers.
    reads: AtomicU64,
}

impl<'r> Ahead<'r> {
    /// Read-ahead of the trees below `roots` (queued in this order).
    fn new(repo: &'r Repository, roots: &[TreeId]) -> Ahead<'r> {
        let a = Ahead {
            repo,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            work: Condvar::new(),
            reads: AtomicU64::new(0),
        };
        a.queue(&mut a.lock(), roots.iter().copied());
        a
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `ids` so that the first is read first.
    fn queue(&self, st: &mut State, ids: impl DoubleEndedIterator<Item = TreeId>) {
        let mut added = false;
        for id in ids.rev() {
            if st.known.insert(id) {
                st.stack.push(id);
                added = true;
            }
        }
        if added {
            self.work.notify_all();
        }
    }

    /// Tree `id`, read ahead or read now; then its subdirectories are queued.
    pub fn take(&self, id: &TreeId) -> Result<Tree> {
        let mut st = self.lock();
        loop {
            if let Some(t) = st.ready.remove(id) {
                st.ready_entries -= t.as_ref().map_or(0, |t| t.entries.len());
                self.work.notify_all();
                return t;
            }
            if !st.reading.contains(id) {
                break;
            }
            st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        // Not read by anyone: read it here, and let nobody else.
        st.known.insert(*id);
        st.stack.retain(|s| s != id);
        drop(st);
        let t = self.load(id);
        if let Ok(tree) = &t {
            self.queue(&mut self.lock(), subdirs(tree));
        }
        t
    }

    fn load(&self, id: &TreeId) -> Result<Tree> {
        let t = self.repo.load_tree(id);
        if t.is_ok() {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        t
    }

    /// Trees read so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// A reader: read from the top of the stack until told to stop.
    fn read(&self) {
        let mut st = self.lock();
        loop {
            if st.stop {
                return;
            }
            let room = st.ready_entries < READY_ENTRIES;
            let Some(id) = room.then(|| st.stack.pop()).flatten() else {
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            st.reading.insert(id);
            drop(st);
            let t = self.load(&id);
            st = self.lock();
            if let Ok(tree) = &t {
                self.queue(&mut st, subdirs(tree));
                st.ready_entries += tree.entries.len();
            }
            st.reading.remove(&id);
            st.ready.insert(id, t);
            self.done.notify_all();
        }
    }

    /// Stop the readers (each finishes the tree in hand).
    fn stop(&self) {
        self.lock().stop = true;
        self.work.notify_all();
    }
}

/// The trees of `tree`'s subdirectories, in order.
fn subdirs(tree: &Tree) -> impl DoubleEndedIterator<Item = TreeId> + '_ {
    tree.entries
        .iter()
        .filter_map(|e| match (e.kind, e.subtree) {
            (Kind::Dir, Some(sub)) => Some(sub),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::format::tree::Entry;
    use crate::repo::writer::RepoWriter;
    use std::sync::Arc;

    /// What the readers hold, once they have nothing left they may do.
    fn settled(a: &Ahead) -> (usize, usize) {
        for _ in 0..10_000 {
            let st = a.lock();
            let idle =
                st.reading.is_empty() && (st.stack.is_empty() || st.ready_entries >= READY_ENTRIES);
            if idle {
                return (st.ready_entries, st.stack.len());
            }
            drop(st);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("the readers never settled");
    }

    #[test]
    fn readers_stop_at_the_bound_and_the_walk_gets_every_tree() {
        let repo = Arc::new(
            Repository::init(
                Arc::new(MemoryBackend::new()),
                &crate::repo::InitOptions::test(),
            )
            .unwrap(),
        );
        let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
        let per_dir = 401;
        let dirs: Vec<Entry> = (0..200)
            .map(|i| {
                let files = (0..per_dir)
                    .map(|j| Entry::new(format!("{i}-{j}").into_bytes(), Kind::File))
                    .collect();
                let mut d = Entry::new(format!("d{i:03}").into_bytes(), Kind::Dir);
                d.subtree = Some(w.add_tree(&Tree::new(files).encode()).unwrap());
                d
            })
            .collect();
        let root = w.add_tree(&Tree::new(dirs.clone()).encode()).unwrap();
        w.flush().unwrap();
        let reads = with_readers(&repo, &[root], 2, |a| {
            let (ready, queued) = settled(a);
            assert!(ready <= READY_ENTRIES + 2 * per_dir, "{ready} entries held");
            assert!(queued > 0, "the bound held the readers back");
            let root_tree = a.take(&root).unwrap();
            assert_eq!(root_tree.entries.len(), 200);
            for d in &dirs {
                let t = a.take(&d.subtree.unwrap()).unwrap();
                assert_eq!(t.entries.len(), per_dir);
            }
            assert!(a.lock().ready.is_empty());
            a.reads()
        });
        assert_eq!(reads, 201, "each tree read once");
    }
}
