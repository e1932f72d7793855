//! Inode numbers, and the table of the inodes the kernel currently knows.
//!
//! Numbers come from pure functions of what an inode *is*, so the same file
//! gets the same number on every lookup, after the kernel forgot it, and
//! in `readdir` before anyone looked it up:
//!
//! | inode                         | number from                                  |
//! |-------------------------------|----------------------------------------------|
//! | the mount's root              | `1`                                          |
//! | a virtual directory or link   | its path (`hosts/web1/latest`)               |
//! | a snapshot's root             | its path and the snapshot id                 |
//! | an entry in a snapshot        | its parent's number and its name             |
//! | a hard-linked entry           | the snapshot root's number and the source `(dev, ino)`, so every link of the group shares it |
//! | a directory of `history/`     | the layout path of its history's top and its path below it |
//! | a version in `history/`       | its directory's number and its name                          |
//!
//! Each number is 64 bits of a BLAKE3 hash; 64 more bits are kept as a check,
//! and the rare number that collides with a different inode moves to the next
//! free one. The table holds only what the kernel holds (one reference per
//! lookup, dropped by `forget`), so memory follows what was looked at.

use crate::error::{Error, Result};
use crate::format::id::{SnapshotId, TreeId};
use crate::format::tree::{Entry, Time, Tree};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An inode number as the kernel sees it.
pub type Ino = u64;

/// The mount's root directory (FUSE's fixed root id).
pub const ROOT: Ino = 1;

/// A computed inode number and the check that tells two hashes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub ino: Ino,
    pub check: u64,
}

fn key(domain: &[u8], parts: &[&[u8]]) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let out = h.finalize();
    let b = out.as_bytes();
    let ino = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let check = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    // 0 is invalid and 1 is the root.
    Key {
        ino: ino.max(2),
        check,
    }
}

/// The inode of a virtual directory or link at `path` (the root for `""`).
pub fn layout_key(path: &[u8]) -> Key {
    if path.is_empty() {
        return Key {
            ino: ROOT,
            check: 0,
        };
    }
    key(b"layout", &[path])
}

/// The root directory of snapshot `id` shown at `path`.
pub fn snapshot_key(path: &[u8], id: &SnapshotId) -> Key {
    if path.is_empty() {
        return Key {
            ino: ROOT,
            check: 0,
        };
    }
    key(b"snapshot", &[path, &id.0])
}

/// Entry `e` listed in directory `parent`, inside the snapshot whose root is
/// `view`.
pub fn entry_key(view: Ino, parent: Ino, e: &Entry) -> Key {
    match e.link_key() {
        Some((dev, ino)) => key(
            b"link",
            &[&view.to_le_bytes(), &dev.to_le_bytes(), &ino.to_le_bytes()],
        ),
        None => key(b"entry", &[&parent.to_le_bytes(), &e.name]),
    }
}

/// A directory of a history: `path` (below the snapshots' roots) in the
/// history whose top is at layout path `top`.
pub fn history_key(top: &[u8], path: &[u8]) -> Key {
    key(b"history", &[top, path])
}

/// Version `name` listed in history directory `dir`.
pub fn version_key(dir: Ino, name: &[u8]) -> Key {
    key(b"version", &[&dir.to_le_bytes(), name])
}

/// What an inode is.
#[derive(Clone, Debug)]
pub enum Node {
    /// A virtual directory or link; what is there now is asked of the layout.
    Layout { path: Vec<u8> },
    /// The root directory of a snapshot, shown at `path` (`""`: the mount's root).
    SnapRoot {
        path: Vec<u8>,
        tree: TreeId,
        time: Time,
    },
    /// An entry of a snapshot: its directory's tree and its place in it. The
    /// tree is shared by all its entries, so an inode costs a few words.
    Entry {
        view: Ino,
        dir: Arc<Tree>,
        index: usize,
    },
    /// A directory of `history/`: `path` (below the snapshots' roots, `""`
    /// for the top) across the snapshots of the history whose top is at
    /// layout path `top`. What it holds is asked of the history when looked at.
    History { top: Vec<u8>, path: Vec<u8> },
    /// One version of a path in `history/`: a stored entry (in its
    /// directory's tree), shown under `name`.
    Version {
        name: Vec<u8>,
        dir: Arc<Tree>,
        index: usize,
    },
}

impl Node {
    /// The stored entry, for inodes inside a snapshot.
    pub fn entry(&self) -> Option<&Entry> {
        match self {
            Node::Entry { dir, index, .. } | Node::Version { dir, index, .. } => {
                dir.entries.get(*index)
            }
            _ => None,
        }
    }
}

/// One inode: what it is and the directory it was first found in.
#[derive(Debug)]
pub struct Slot {
    pub node: Node,
    pub parent: Ino,
    check: u64,
}

struct Held {
    slot: Arc<Slot>,
    lookups: u64,
}

/// Where inode `key` is in `held`: `Ok` with its number if held, else `Err`
/// with the free number it would take (`key.ino`, or the next one free when
/// another inode has it).
fn probe(held: &HashMap<Ino, Held>, key: Key) -> std::result::Result<Ino, Ino> {
    let mut ino = key.ino;
    loop {
        match held.get(&ino) {
            Some(h) if h.slot.check == key.check => return Ok(ino),
            Some(_) => ino = ino.wrapping_add(1).max(2),
            None => return Err(ino),
        }
    }
}

/// The inodes the kernel holds references to.
pub struct Table {
    held: Mutex<HashMap<Ino, Held>>,
}

impl Table {
    /// A table holding only the root, which is never forgotten.
    pub fn new(root: Node) -> Table {
        let mut held = HashMap::new();
        let slot = Arc::new(Slot {
            node: root,
            parent: ROOT,
            check: 0,
        });
        held.insert(ROOT, Held { slot, lookups: 1 });
        Table {
            held: Mutex::new(held),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Ino, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inode `ino`; `NotFound` if the kernel asks for one it forgot (it
    /// never should).
    pub fn get(&self, ino: Ino) -> Result<Arc<Slot>> {
        self.lock()
            .get(&ino)
            .map(|h| h.slot.clone())
            .ok_or_else(|| Error::NotFound(format!("inode {ino}")))
    }

    /// Count one more kernel reference to the inode `key` names, creating it
    /// from `node` if needed. Returns the number in use: `key.ino` unless that
    /// number belongs to a different inode.
    pub fn remember(&self, key: Key, parent: Ino, node: impl FnOnce() -> Node) -> Ino {
        let mut held = self.lock();
        let ino = match probe(&held, key) {
            Ok(ino) => {
                held.get_mut(&ino).expect("just found").lookups += 1;
                return ino;
            }
            Err(free) => free,
        };
        let slot = Arc::new(Slot {
            node: node(),
            parent,
            check: key.check,
        });
        held.insert(ino, Held { slot, lookups: 1 });
        ino
    }

    /// Make `node` the root, before the kernel looks at it.
    pub fn set_root(&self, node: Node) {
        if let Some(h) = self.lock().get_mut(&ROOT) {
            h.slot = Arc::new(Slot {
                node,
                parent: ROOT,
                check: 0,
            });
        }
    }

    /// The inode `key` names, with its number, if the kernel holds it.
    pub fn held(&self, key: Key) -> Option<(Ino, Arc<Slot>)> {
        let held = self.lock();
        let ino = probe(&held, key).ok()?;
        Some((ino, held[&ino].slot.clone()))
    }

    /// Drop `n` kernel references; the inode goes when none are left.
    pub fn forget(&self, ino: Ino, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut held = self.lock();
        if let Some(h) = held.get_mut(&ino) {
            h.lookups = h.lookups.saturating_sub(n);
            if h.lookups == 0 {
                held.remove(&ino);
            }
        }
    }

    /// How many inodes are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Kind;

    #[test]
    fn numbers_are_pure_and_hard_links_share_one() {
        let a = Entry::new(b"a".to_vec(), Kind::File);
        assert_eq!(entry_key(5, 7, &a), entry_key(5, 7, &a));
        assert_ne!(entry_key(5, 7, &a).ino, entry_key(5, 8, &a).ino);
        let mut l1 = Entry::new(b"l1".to_vec(), Kind::File);
        l1.nlink = 2;
        l1.dev = 3;
        l1.ino = 4;
        let mut l2 = l1.clone();
        l2.name = b"l2".to_vec();
        assert_eq!(entry_key(5, 7, &l1), entry_key(5, 99, &l2));
        assert_ne!(
            entry_key(5, 7, &l1),
            entry_key(6, 7, &l1),
            "views keep their own groups"
        );
        assert_eq!(layout_key(b"").ino, ROOT);
        assert_ne!(layout_key(b"snapshots").ino, layout_key(b"ids").ino);
        assert_ne!(
            snapshot_key(b"ids/x", &SnapshotId([1; 32])),
            snapshot_key(b"ids/x", &SnapshotId([2; 32]))
        );
        assert_ne!(
            history_key(b"history", b"srv").ino,
            history_key(b"history/web1", b"srv").ino
        );
        assert_ne!(
            history_key(b"history", b"a/b").ino,
            history_key(b"history/a", b"b").ino,
            "parts are length-prefixed"
        );
        assert_ne!(version_key(5, b"v").ino, version_key(6, b"v").ino);
    }

    #[test]
    fn lookups_are_counted_and_forget_drops_the_inode() {
        let t = Table::new(Node::Layout { path: Vec::new() });
        let k = layout_key(b"snapshots");
        let node = || Node::Layout {
            path: b"snapshots".to_vec(),
        };
        assert_eq!(t.remember(k, ROOT, node), k.ino);
        assert_eq!(t.remember(k, ROOT, node), k.ino);
        t.forget(k.ino, 1);
        assert!(t.get(k.ino).is_ok());
        t.forget(k.ino, 1);
        assert!(matches!(t.get(k.ino), Err(Error::NotFound(_))));
        t.forget(ROOT, 10);
        assert!(t.get(ROOT).is_ok());
    }

    #[test]
    fn a_colliding_number_moves_to_the_next_free_one() {
        let t = Table::new(Node::Layout { path: Vec::new() });
        let a = Key { ino: 10, check: 1 };
        let b = Key { ino: 10, check: 2 };
        assert_eq!(
            t.remember(a, ROOT, || Node::Layout {
                path: b"a".to_vec()
            }),
            10
        );
        assert_eq!(
            t.remember(b, ROOT, || Node::Layout {
                path: b"b".to_vec()
            }),
            11
        );
        assert_eq!(t.remember(b, ROOT, || unreachable!()), 11);
        assert_eq!(t.len(), 3);
    }
}
