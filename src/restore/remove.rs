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
use std::os::fd::{AsRawFd, RawFd};
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

impl Remover<'_> {
    /// Remove `name` in `dir` (node `node`) as picked, everything below it
    /// first. `path` is where it is, `snap` where it would be in the
    /// snapshot. `tell_self`: report the entry itself too (not when it is
    /// being replaced). Returns whether it went (or would).
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
        let res = self.remove_one(dir, node, name, pick, path, snap, tell_self);
        res.unwrap_or_else(|e| {
            (self.warn)(Error::io(path, e));
            false
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn remove_one(
        &mut self,
        dir: RawFd,
        node: &Arc<DirNode>,
        name: &[u8],
        pick: Pick,
        path: &Path,
        snap: &Path,
        tell_self: bool,
    ) -> io::Result<bool> {
        if pick == Pick::Skip {
            return Ok(false);
        }
        let cname = cstr(name)?;
        let st = match meta::stat_at(dir, &cname) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
            Err(e) => return Err(e),
        };
        let kind = meta::kind_of(st.st_mode).unwrap_or(Kind::File);
        if kind != Kind::Dir {
            if pick == Pick::Maybe {
                return Ok(false);
            }
            if !self.dry {
                unlink(dir, &cname, 0)?;
            }
            if tell_self {
                (self.removed)(path, kind);
            }
            return Ok(true);
        }
        if self.protect.contains(&identity(&st)) {
            return Ok(false);
        }
        if st.st_dev != node.id().0 {
            return Err(mount_point());
        }
        let fd = meta::open_dir_at(dir, &cname)?;
        if identity(&meta::stat_fd(fd.as_raw_fd())?) != identity(&st) {
            return Err(io::Error::other("replaced while being removed"));
        }
        let names = meta::read_dir(fd.as_raw_fd())?;
        let level = Level {
            names,
            next: 0,
            goes: pick == Pick::In,
            kept: false,
        };
        let me = node.child(name, identity(&st));
        let mut stack = Stack::new(me, Some(fd), level);
        let (mut path, mut snap) = (path.to_path_buf(), snap.join(OsStr::from_bytes(name)));
        while stack.len() > 1 || stack.top().data.next < stack.top().data.names.len() {
            let top = stack.top_mut();
            if let DirFd::Lost(e) = &mut top.fd {
                if let Some(e) = e.take() {
                    (self.warn)(Error::io(&path, e));
                }
                top.data.kept = true;
                top.data.next = top.data.names.len();
            }
            if stack.top().data.next < stack.top().data.names.len() {
                self.step(&mut stack, &mut path, &mut snap);
            } else {
                let gone = self.finish(&mut stack, &path);
                path.pop();
                snap.pop();
                if !gone {
                    stack.top_mut().data.kept = true;
                }
            }
        }
        let top = stack.top().data.goes && !stack.top().data.kept;
        drop(stack);
        if !top {
            return Ok(false);
        }
        if !self.dry {
            match unlink(dir, &cname, libc::AT_REMOVEDIR) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => return Ok(false),
                r => r?,
            }
        }
        if tell_self {
            (self.removed)(&path, Kind::Dir);
        }
        Ok(true)
    }

    /// The next name in the top directory: removed, entered, or kept.
    fn step(&mut self, stack: &mut Stack<Level>, path: &mut PathBuf, snap: &mut PathBuf) {
        let top = stack.top_mut();
        let i = top.data.next;
        top.data.next += 1;
        let name = std::mem::take(&mut top.data.names[i].name);
        let goes = top.data.goes;
        if crate::interrupt::requested() {
            // Stop removing: the rest stays, and so does every directory above.
            top.data.kept = true;
            top.data.next = top.data.names.len();
            return;
        }
        let Some(dir) = top.raw() else {
            top.data.kept = true;
            top.data.next = top.data.names.len();
            return;
        };
        let pick = match self.filter {
            None => Pick::In,
            Some(f) => f.pick(snap, &name, goes),
        };
        let child = path.join(OsStr::from_bytes(&name));
        let entered = (|| -> io::Result<Option<bool>> {
            if pick == Pick::Skip {
                return Ok(Some(false));
            }
            let cname = cstr(&name)?;
            let st = match meta::stat_at(dir, &cname) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Some(true)),
                Err(e) => return Err(e),
            };
            let kind = meta::kind_of(st.st_mode).unwrap_or(Kind::File);
            if kind != Kind::Dir {
                if pick == Pick::Maybe {
                    return Ok(Some(false));
                }
                if !self.dry {
                    unlink(dir, &cname, 0)?;
                }
                (self.removed)(&child, kind);
                return Ok(Some(true));
            }
            if self.protect.contains(&identity(&st)) {
                return Ok(Some(false));
            }
            if st.st_dev != stack.top().node.id().0 {
                return Err(mount_point());
            }
            let fd = meta::open_dir_at(dir, &cname)?;
            let id = identity(&meta::stat_fd(fd.as_raw_fd())?);
            if id != identity(&st) {
                return Err(io::Error::other("replaced while being removed"));
            }
            let names = meta::read_dir(fd.as_raw_fd())?;
            let node = stack.top().node.child(&name, id);
            let level = Level {
                names,
                next: 0,
                goes: pick == Pick::In,
                kept: false,
            };
            stack.push(node, Some(fd), level);
            Ok(None)
        })();
        match entered {
            Ok(None) => {
                path.push(OsStr::from_bytes(&name));
                snap.push(OsStr::from_bytes(&name));
            }
            Ok(Some(true)) => {}
            Ok(Some(false)) => stack.top_mut().data.kept = true,
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
        let Some(dir) = stack.top().raw() else {
            return false;
        };
        if !self.dry {
            let res = cstr(done.node.name()).and_then(|c| unlink(dir, &c, libc::AT_REMOVEDIR));
            match res {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => return false,
                Err(e) => {
                    (self.warn)(Error::io(path, e));
                    return false;
                }
            }
        }
        (self.removed)(path, Kind::Dir);
        true
    }
}

fn mount_point() -> io::Error {
    io::Error::other("another file system is mounted here; not removed")
}

fn unlink(dir: RawFd, name: &std::ffi::CStr, flags: libc::c_int) -> io::Result<()> {
    if unsafe { libc::unlinkat(dir, name.as_ptr(), flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
