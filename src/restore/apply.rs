//! An entry's metadata, set through a descriptor of the file itself.

use super::Restorer;
use crate::error::Error;
use crate::format::tree::{Entry, Kind};
use crate::meta::{self, Handle};
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

/// `(uid_t)-1`: leave this id as it is.
const KEEP: u32 = u32::MAX;

impl Restorer<'_> {
    /// The uid and gid to give `e`: by name where this system knows the
    /// name, else the stored numbers.
    fn owner(&self, e: &Entry) -> (u32, u32) {
        if self.opts.numeric_owner {
            return (e.uid, e.gid);
        }
        (
            self.names.uid(&e.user).unwrap_or(e.uid),
            self.names.gid(&e.group).unwrap_or(e.gid),
        )
    }

    /// Owner, mode, xattrs, times of `e` onto the file behind `h`, which is
    /// at `path` (for messages). `now`, the file's status when the caller
    /// has it, spares the calls that would change nothing (an owner or mode
    /// it already has).
    pub(super) fn apply_meta(&self, h: Handle, e: &Entry, path: &Path, now: Option<&libc::stat64>) {
        let (uid, gid) = self.owner(e);
        let owned = now.is_some_and(|st| st.st_uid == uid && st.st_gid == gid);
        let set = if owned {
            Ok(())
        } else {
            meta::set_owner(h, uid, gid)
        };
        let (uid_set, gid_set) = match set {
            Ok(()) => (true, true),
            Err(err) => {
                if err.raw_os_error() == Some(libc::EPERM) && !self.root {
                    self.counts.owner_denied.fetch_add(1, Relaxed);
                } else {
                    self.warn(Error::io(path, err));
                }
                // Either may still be allowed alone (a user's own uid, or a
                // group they are in).
                (
                    meta::set_owner(h, uid, KEEP).is_ok(),
                    meta::set_owner(h, KEEP, gid).is_ok(),
                )
            }
        };
        let mode = setid_allowed(e, uid_set, gid_set);
        if mode != e.mode & 0o7777 {
            self.counts.setid_dropped.fetch_add(1, Relaxed);
        }
        // Linux gives every symlink mode 0777 and has no call to change it on
        // most file systems.
        // A chown clears setuid and setgid: `now`, taken before it, no
        // longer tells whether they are there.
        let same = now.is_some_and(|st| st.st_mode & 0o7777 == mode)
            && (owned || mode & (libc::S_ISUID | libc::S_ISGID) == 0);
        if !same && (e.kind != Kind::Symlink || mode != 0o777) {
            if let Err(err) = meta::set_mode(h, mode, e.kind == Kind::Symlink) {
                self.warn(Error::io(path, err));
            }
        }
        for x in &e.xattrs {
            let Err(err) = meta::set_xattr(h, x) else {
                continue;
            };
            match err.raw_os_error() {
                // Expected without root; as root it is a real loss.
                Some(libc::EPERM) | Some(libc::ENOTSUP) | Some(libc::EACCES) if !self.root => {
                    self.counts.xattr_denied.fetch_add(1, Relaxed);
                }
                _ => self.warn(Error::io(
                    path,
                    io::Error::new(
                        err.kind(),
                        format!("xattr {}: {err}", String::from_utf8_lossy(&x.name)),
                    ),
                )),
            }
        }
        if let Err(err) = meta::set_times(h, e.atime, e.mtime) {
            self.warn(Error::io(path, err));
        }
    }
}

/// The mode to give `e`: without setuid if its owner could not be set, and
/// without setgid if its group could not be set (on directories setgid
/// only passes the directory's group on to new entries, and stays).
fn setid_allowed(e: &Entry, uid_set: bool, gid_set: bool) -> u32 {
    let mut mode = e.mode & 0o7777;
    if e.kind != Kind::Dir {
        if !uid_set {
            mode &= !libc::S_ISUID;
        }
        if !gid_set {
            mode &= !libc::S_ISGID;
        }
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setid_bits_need_the_owner_and_group_they_came_with() {
        let mut e = Entry::new(b"tool".to_vec(), Kind::File);
        e.mode = 0o6755;
        assert_eq!(setid_allowed(&e, true, true), 0o6755);
        assert_eq!(setid_allowed(&e, false, true), 0o2755);
        assert_eq!(setid_allowed(&e, true, false), 0o4755);
        assert_eq!(setid_allowed(&e, false, false), 0o755);
        e.kind = Kind::Dir;
        e.mode = 0o2775;
        assert_eq!(setid_allowed(&e, false, false), 0o2775);
    }
}
