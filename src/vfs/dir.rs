//! Directories of the [`Vfs`]: finding a child by name, listing, and the
//! attributes of virtual directories. Trees load here, on first look.

use super::attr::{self, Attr};
use super::inode::{entry_key, history_key, layout_key, snapshot_key, Ino, Key, Node};
use super::layout::{join, Item};
use super::read::read_blob;
use super::{subtree_of, DirItem, Vfs};
use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Kind, Tree};
use std::sync::Arc;

impl Vfs {
    /// The inode key and node of `name` in directory `parent`.
    pub(super) fn child(&self, parent: Ino, node: &Node, name: &[u8]) -> Result<(Key, Node)> {
        match node {
            Node::Layout { path } => self.layout_child(path, name),
            Node::SnapRoot { tree, .. } => self.tree_child(parent, parent, tree, name),
            Node::Entry { view, .. } => self.tree_child(*view, parent, &subtree_of(node)?, name),
            Node::History { top, path } => self.history_child(parent, top, path, name),
            Node::Version { .. } => Err(Error::InvalidInput("not a directory".into())),
        }
    }

    fn layout_child(&self, dir: &[u8], name: &[u8]) -> Result<(Key, Node)> {
        let layout = self.catalog()?.layout();
        let path = join(dir, name);
        match layout.get(dir, name) {
            Some(Item::Dir) | Some(Item::Link(_)) => Ok((layout_key(&path), Node::Layout { path })),
            Some(Item::History) => Ok((
                history_key(&path, b""),
                Node::History {
                    top: path,
                    path: Vec::new(),
                },
            )),
            Some(Item::Snapshot(id)) => {
                let info = layout.snapshot(id).ok_or_else(|| not_found(&path))?;
                let key = snapshot_key(&path, id);
                Ok((
                    key,
                    Node::SnapRoot {
                        path,
                        tree: info.tree,
                        time: info.time,
                    },
                ))
            }
            None => Err(not_found(&path)),
        }
    }

    fn tree_child(
        &self,
        view: Ino,
        parent: Ino,
        tree: &TreeId,
        name: &[u8],
    ) -> Result<(Key, Node)> {
        let dir = self.tree(tree)?;
        let index = dir
            .entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .map_err(|_| not_found(name))?;
        let key = entry_key(view, parent, &dir.entries[index]);
        Ok((key, Node::Entry { view, dir, index }))
    }

    /// A tree, from the cache or the repository.
    pub(super) fn tree(&self, id: &TreeId) -> Result<Arc<Tree>> {
        self.trees.get_or_load(id, tree_weight, || {
            let bytes = read_blob(&self.repo, &id.blob())?;
            Tree::decode(&bytes, &format!("tree {}", id.short()))
        })
    }

    /// Names of stored directory `tree` from position `skip`.
    pub(super) fn list_tree(
        &self,
        view: Ino,
        dir: Ino,
        tree: &TreeId,
        skip: usize,
        add: &mut dyn FnMut(DirItem<'_>) -> bool,
    ) -> Result<()> {
        let t = self.tree(tree)?;
        for (i, e) in t.entries.iter().enumerate().skip(skip) {
            let item = DirItem {
                ino: entry_key(view, dir, e).ino,
                kind: e.kind,
                name: &e.name,
                next: i as u64 + 3,
            };
            if add(item) {
                break;
            }
        }
        Ok(())
    }

    /// Names of virtual directory `path` from position `skip`.
    pub(super) fn list_layout(
        &self,
        path: &[u8],
        skip: usize,
        add: &mut dyn FnMut(DirItem<'_>) -> bool,
    ) -> Result<()> {
        let layout = self.catalog()?.layout();
        let list = layout.list(path).ok_or_else(|| not_found(path))?;
        for (i, (name, item)) in list.iter().enumerate().skip(skip) {
            let child = join(path, name);
            let (ino, kind) = match item {
                Item::Dir => (layout_key(&child).ino, Kind::Dir),
                Item::Link(_) => (layout_key(&child).ino, Kind::Symlink),
                Item::Snapshot(id) => (snapshot_key(&child, id).ino, Kind::Dir),
                Item::History => (history_key(&child, b"").ino, Kind::Dir),
            };
            if add(DirItem {
                ino,
                kind,
                name,
                next: i as u64 + 3,
            }) {
                break;
            }
        }
        Ok(())
    }

    /// Attributes of a virtual directory or link, dated by the newest snapshot.
    pub(super) fn layout_attr(&self, ino: Ino, path: &[u8]) -> Result<Attr> {
        let layout = self.catalog()?.layout();
        let time = if layout.newest() == Default::default() {
            self.mounted
        } else {
            layout.newest()
        };
        let item = if path.is_empty() {
            Some(&Item::Dir)
        } else {
            layout.at(path)
        };
        match item {
            Some(Item::Dir) => {
                let subdirs = layout
                    .list(path)
                    .map(|l| {
                        l.iter()
                            .filter(|(_, i)| !matches!(i, Item::Link(_)))
                            .count()
                    })
                    .unwrap_or(0);
                let nlink = (2 + subdirs).min(u32::MAX as usize) as u32;
                Ok(attr::synthetic_dir(
                    ino, 0o555, nlink, self.owner, time, false,
                ))
            }
            Some(Item::Link(t)) => Ok(attr::synthetic_link(ino, t.len(), self.owner, time)),
            Some(Item::Snapshot(_)) | Some(Item::History) | None => Err(not_found(path)),
        }
    }
}

fn not_found(name: &[u8]) -> Error {
    Error::NotFound(String::from_utf8_lossy(name).into_owned())
}

/// Roughly the bytes a decoded tree takes.
fn tree_weight(t: &Tree) -> u64 {
    let per_entry = |e: &Entry| {
        std::mem::size_of::<Entry>()
            + e.name.len()
            + e.target.len()
            + e.user.len()
            + e.group.len()
            + e.extents.len() * std::mem::size_of::<crate::format::tree::Extent>()
            + e.xattrs
                .iter()
                .map(|x| x.name.len() + x.value.len() + 48)
                .sum::<usize>()
    };
    t.entries.iter().map(per_entry).sum::<usize>() as u64 + 64
}
