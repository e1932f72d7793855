//! Hard-link groups: every entry that shares a source `(dev, ino)` becomes a
//! link to the first one restored, whatever its type (regular files,
//! symlinks, FIFOs, sockets, devices; `linkat` links the entry itself).
//!
//! A regular file's later members are linked before its content is written;
//! if that write fails they are taken back, so no link is left holding part
//! of a file. Groups keep the first member as a [`DirNode`] and a name, not a
//! descriptor, so any number of groups costs no open files.

use super::dirs::{DirNode, Id, Place};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A group's source identity, [`crate::format::tree::Entry::link_key`].
pub type Key = (u64, u64);

/// Where later members link to.
pub struct First {
    pub node: Arc<DirNode>,
    pub name: Box<[u8]>,
    /// The inode restore made, which a new link must turn out to be.
    pub id: Id,
}

/// A hard-link group as restored so far.
pub enum Group {
    /// The first member is a regular file whose content is being written:
    /// links made to it so far.
    Writing(First, Vec<Place>),
    /// The first member is complete: later members just link to it.
    Done(First),
    /// The first member's content failed: later members get their own copy
    /// (which fails, by name, the same way).
    Failed,
}

impl Group {
    /// The member to link to, unless the group failed.
    pub fn first(&self) -> Option<&First> {
        match self {
            Group::Writing(f, _) | Group::Done(f) => Some(f),
            Group::Failed => None,
        }
    }
}

/// Every group met so far.
#[derive(Default)]
pub struct Links(Mutex<HashMap<Key, Group>>);

impl Links {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<Key, Group>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record `first` as the member of `key` to link to, unless the group
    /// has one (or failed); `writing`: a regular file whose content is yet
    /// to be written. Returns whether it was recorded.
    pub fn add_first(&self, key: Key, first: First, writing: bool) -> bool {
        let mut groups = self.lock();
        if groups.contains_key(&key) {
            return false;
        }
        let group = if writing {
            Group::Writing(first, Vec::new())
        } else {
            Group::Done(first)
        };
        groups.insert(key, group);
        true
    }

    /// The first member of `key` (a regular file) is complete.
    pub fn written(&self, key: Key) {
        if let Some(g) = self.lock().get_mut(&key) {
            *g = match std::mem::replace(g, Group::Failed) {
                Group::Writing(first, _) => Group::Done(first),
                other => other,
            };
        }
    }

    /// The first member of `key` failed: the links made to it, to take back.
    pub fn failed(&self, key: Key) -> Vec<Place> {
        match self.lock().insert(key, Group::Failed) {
            Some(Group::Writing(_, linked)) => linked,
            _ => Vec::new(),
        }
    }
}
