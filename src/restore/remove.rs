//! Removing entries of the target: what the snapshot does not have
//! (`--delete`), and what is in the way of an entry of another type
//! (`--overwrite`).
//!
//! Depth first over a [`Stack`], so open descriptors stay bounded whatever
//! the depth; every step is relative to a directory already open, never
//! following a symlink. A directory on another file system (a mount point)
//! is left with a warning, as is anything excluded: the directories above it
//! stay too.

use super::dirs::{identity, DirFd, DirNode, Id, Stack};
use super::select::{Filter, Pick};
use crate::error::Error;
use crate::format::tree::Kind;
use crate::meta::{self, cstr, DirName};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to remove, and whom to tell.
pub struct Remover<'a> {
    /// List what would go, remove nothing.
    pub dry: bool,
    /// `None`: everything goes. Else each entry is picked as the snapshot's
    /// are, by its path in the snapshot: excluded ones stay, and a directory
    /// that is not included itself is entered but stays.
    pub filter: Option<&'a Filter>,
    /// Told of each entry that went (or would).
    pub removed: &'a mut dyn FnMut(&Path, Kind),
    /// Directories that stay, with all in them (and so the ones above).
    pub protect: &'a [Id],
    pub warn: &'a dyn Fn(Error),
}

/// A directory being emptied.
struct Level {
    names: Vec<DirName>,
    next: usize,
    /// Picked [`Pick::In`]: it goes once empty, and so does all below it
    /// that is not excluded.
    goes: bool,
    /// Something below it stays (or, in a dry run, would).
    kept: bool,
}

/// What became of one entry.
enum Outcome {
    Gone,
    Kept,
    /// A directory to empty first: open, with its identity and names.
    Dir(OwnedFd, Id, Vec<DirName>),
}

impl Remover<'_> {
    /// Remove `name` in `dir` (node `node`) as picked, everything below it
    /// first. `path` is where it is, `snap` the snapshot directory it would
    /// be in. `tell_self`: report the entry itself too (not when it is being
    /// replaced). Returns whether it went (or would).
    #[allow(clippy::too_many_arguments)]
    pub fn remove(
        &mut self,
        dir: RawFd,
        node: &Arc<DirNode>,
        name: &[u8],
        pick: Pick,
        path: &Path,
        snap: &Path,
        tell_self: bool,
    ) -> bool {
        let (fd, id, names) = match self.entry(dir, node, name, pick, path, tell_self) {
            Ok(Outcome::Gone) => return true,
            Ok(Outcome::Kept) => return false,
            Ok(Outcome::Dir(fd, id, names)) => (fd, id, names),
            Err(e) => {
                (self.warn)(Error::io(path, e));
                return false;
            }
        };
        let level = Level {
            names,
            next: 0,
            goes: pick == Pick::In,
            kept: false,
        };
        let mut stack = Stack::new(node.child(name, id), Some(fd), level);
        let (mut path, mut snap) = (path.to_path_buf(), snap.join(OsStr::from_bytes(name)));
        loop {
            let top = stack.top_mut();
            if let DirFd::Lost(e) = &mut top.fd {
                if let Some(e) = e.take() {
                    (self.warn)(Error::io(&path, e));
                }
                top.data.kept = true;
                top.data.next = top.data.names.len();
            }
            if top.data.next < top.data.names.len() {
                self.step(&mut stack, &mut path, &mut snap);
            } else if stack.len() > 1 {
                let gone = self.finish(&mut stack, &path);
                path.pop();
                snap.pop();
                if !gone {
                    stack.top_mut().data.kept = true;
                }
            } else {
                break;
            }
        }
        let level = &stack.top().data;
        if !level.goes || level.kept {
            return false;
        }
        drop(stack);
        self.rmdir(dir, name, &path, tell_self)
    }

    /// One entry: gone if it is not a directory and picked, kept if not
    /// picked (or protected), else opened to be emptied first.
    fn entry(
        &mut self,
        dir: RawFd,
        node: &DirNode,
        name: &[u8],
        pick: Pick,
        path: &Path,
        tell: bool,
    ) -> io::Result<Outcome> {
        if pick == Pick::Skip {
            return Ok(Outcome::Kept);
        }
        let cname = cstr(name)?;
        let st = match meta::stat_at(dir, &cname) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Outcome::Gone),
            Err(e) => return Err(e),
        };
        let kind = meta::kind_of(st.st_mode).unwrap_or(Kind::File);
        if kind != Kind::Dir {
            if pick == Pick::Maybe {
                return Ok(Outcome::Kept);
            }
            if !self.dry {
                unlink(dir, &cname, 0)?;
            }
            if tell {
                (self.removed)(path, kind);
            }
            return Ok(Outcome::Gone);
        }
        if self.protect.contains(&identity(&st)) {
            return Ok(Outcome::Kept);
        }
        if st.st_dev != node.id().0 {
            return Err(io::Error::other(
                "another file system is mounted here; not removed",
            ));
        }
        let fd = meta::open_dir_at(dir, &cname)?;
        let id = identity(&meta::stat_fd(fd.as_raw_fd())?);
        if id != identity(&st) {
            return Err(io::Error::other("replaced while being removed"));
        }
        let names = meta::read_dir(fd.as_raw_fd())?;
        Ok(Outcome::Dir(fd, id, names))
    }

    /// The next name in the top directory: removed, entered, or kept.
    fn step(&mut self, stack: &mut Stack<Level>, path: &mut PathBuf, snap: &mut PathBuf) {
        let top = stack.top_mut();
        let i = top.data.next;
        top.data.next += 1;
        let name = std::mem::take(&mut top.data.names[i].name);
        let (goes, dir) = (top.data.goes, top.raw());
        let Some(dir) = dir.filter(|_| !crate::interrupt::requested()) else {
            // Stopping (or lost): the rest stays, and so does every
            // directory above.
            top.data.kept = true;
            top.data.next = top.data.names.len();
            return;
        };
        let pick = match self.filter {
            None => Pick::In,
            Some(f) => f.pick(snap, &name, goes),
        };
        let child = path.join(OsStr::from_bytes(&name));
        let node = stack.top().node.clone();
        match self.entry(dir, &node, &name, pick, &child, true) {
            Ok(Outcome::Gone) => {}
            Ok(Outcome::Kept) => stack.top_mut().data.kept = true,
            Ok(Outcome::Dir(fd, id, names)) => {
                let level = Level {
                    names,
                    next: 0,
                    goes: pick == Pick::In,
                    kept: false,
                };
                stack.push(node.child(&name, id), Some(fd), level);
                *path = child;
                snap.push(OsStr::from_bytes(&name));
            }
            Err(e) => {
                (self.warn)(Error::io(&child, e));
                stack.top_mut().data.kept = true;
            }
        }
    }

    /// The top directory is done: it goes if picked and empty. Returns
    /// whether it went (or would).
    fn finish(&mut self, stack: &mut Stack<Level>, path: &Path) -> bool {
        let done = stack.pop();
        if !done.data.goes || done.data.kept {
            return false;
        }
        match stack.top().raw() {
            Some(dir) => self.rmdir(dir, done.node.name(), path, true),
            None => false,
        }
    }

    /// Remove the emptied directory `name` in `dir` (unless dry). Returns
    /// whether it went (or would); something that appeared in it since keeps it.
    fn rmdir(&mut self, dir: RawFd, name: &[u8], path: &Path, tell: bool) -> bool {
        if !self.dry {
            match cstr(name).and_then(|c| unlink(dir, &c, libc::AT_REMOVEDIR)) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => return false,
                Err(e) => {
                    (self.warn)(Error::io(path, e));
                    return false;
                }
            }
        }
        if tell {
            (self.removed)(path, Kind::Dir);
        }
        true
    }
}

fn unlink(dir: RawFd, name: &std::ffi::CStr, flags: libc::c_int) -> io::Result<()> {
    if unsafe { libc::unlinkat(dir, name.as_ptr(), flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::dirs::WINDOW;
    use std::os::unix::fs::MetadataExt;

    fn id_of(p: &Path) -> Id {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    /// `junk/d/d/…` (`depth` levels), a file `f` at every level and a
    /// symlink to `outside` at the bottom; returns the entries made.
    fn junk(root: &Path, depth: usize, outside: &Path) -> usize {
        let mut dir = root.join("junk");
        for _ in 0..depth {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("f"), b"x").unwrap();
            dir.push("d");
        }
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(outside, dir.join("out")).unwrap();
        depth * 2 + 2
    }

    fn remove(root: &Path, filter: Option<&Filter>, dry: bool) -> (bool, Vec<PathBuf>, usize) {
        let fd = meta::open_dir_path(root).unwrap();
        let node = DirNode::root(id_of(root));
        let mut gone = Vec::new();
        let mut removed = |p: &Path, _: Kind| gone.push(p.to_path_buf());
        let errors = std::cell::Cell::new(0);
        let warn = |_: Error| errors.set(errors.get() + 1);
        let mut r = Remover {
            dry,
            filter,
            removed: &mut removed,
            protect: &[],
            warn: &warn,
        };
        let path = root.join("junk");
        let snap = Path::new("/snap");
        let went = r.remove(fd.as_raw_fd(), &node, b"junk", Pick::In, &path, snap, true);
        (went, gone, errors.get())
    }

    #[test]
    fn a_deep_tree_goes_entry_by_entry_and_a_symlink_out_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let made = junk(t.path(), WINDOW * 3, &outside);

        let (went, listed, errors) = remove(t.path(), None, true);
        assert!(went && errors == 0);
        assert_eq!(listed.len(), made, "a dry run lists every entry");
        assert!(
            t.path().join("junk/d/d/f").exists(),
            "a dry run removes nothing"
        );

        let (went, gone, errors) = remove(t.path(), None, false);
        assert!(went && errors == 0);
        assert_eq!(gone, listed, "what went is what the dry run listed");
        assert_eq!(gone.last().unwrap(), &t.path().join("junk"));
        assert!(!t.path().join("junk").exists());
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
    }

    #[test]
    fn an_excluded_entry_keeps_the_directories_above_it() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        junk(t.path(), 5, &outside);
        let filter = Filter::new(&[], &["out".to_string()]).unwrap();
        let (went, gone, errors) = remove(t.path(), Some(&filter), false);
        assert!(!went && errors == 0);
        assert_eq!(gone.len(), 5, "only the files: {gone:?}");
        let bottom = t.path().join("junk/d/d/d/d/d/out");
        assert!(std::fs::symlink_metadata(bottom).is_ok());
    }
}
