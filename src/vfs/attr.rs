//! What `stat` shows for each inode: the stored metadata for entries of a
//! snapshot, and fixed, read-only metadata for the virtual directories.

use super::file::blocks;
use super::inode::Ino;
use crate::format::tree::{Entry, Kind, Time};

/// The `st_blksize` reported: large, so copying programs use large buffers.
pub const BLKSIZE: u32 = 128 * 1024;

/// An inode's attributes, independent of fuser's types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky.
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks (holes excluded).
    pub blocks: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    /// Device number in the kernel's 32-bit encoding.
    pub rdev: u32,
    pub blksize: u32,
    /// Whether this never changes (everything inside a snapshot), so the
    /// kernel may cache it for long; virtual directories change as
    /// snapshots are added.
    pub stable: bool,
}

/// The attributes of a stored entry, as stored.
pub fn of_entry(ino: Ino, e: &Entry) -> Attr {
    Attr {
        ino,
        kind: e.kind,
        perm: (e.mode & 0o7777) as u16,
        nlink: e.nlink.clamp(1, u32::MAX as u64) as u32,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        blocks: if e.kind == Kind::File {
            blocks(e.data_bytes())
        } else {
            0
        },
        atime: e.atime,
        mtime: e.mtime,
        ctime: e.ctime,
        rdev: match e.kind {
            Kind::CharDev | Kind::BlockDev => kernel_rdev(e.rdev),
            _ => 0,
        },
        blksize: BLKSIZE,
        stable: true,
    }
}

/// A directory that is not stored: a virtual one (`perm` 0o555) or a
/// snapshot's root (0o755), owned by whoever mounted, dated `time`.
pub fn synthetic_dir(
    ino: Ino,
    perm: u16,
    nlink: u32,
    owner: (u32, u32),
    time: Time,
    stable: bool,
) -> Attr {
    Attr {
        ino,
        kind: Kind::Dir,
        perm,
        nlink,
        uid: owner.0,
        gid: owner.1,
        size: 0,
        blocks: 0,
        atime: time,
        mtime: time,
        ctime: time,
        rdev: 0,
        blksize: BLKSIZE,
        stable,
    }
}

/// A virtual symlink (`latest`) to `target_len` bytes of target.
pub fn synthetic_link(ino: Ino, target_len: usize, owner: (u32, u32), time: Time) -> Attr {
    Attr {
        kind: Kind::Symlink,
        perm: 0o777,
        nlink: 1,
        size: target_len as u64,
        ..synthetic_dir(ino, 0o777, 1, owner, time, false)
    }
}

/// A stored `st_rdev` (glibc's 64-bit `dev_t`) in the 32-bit encoding FUSE
/// passes to the kernel (`new_encode_dev`): major up to 4095, minor up to
/// 2^20 - 1, as every Linux device number is.
pub fn kernel_rdev(rdev: u64) -> u32 {
    let major = libc::major(rdev as libc::dev_t) as u64;
    let minor = libc::minor(rdev as libc::dev_t) as u64;
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::BlobId;
    use crate::format::tree::Extent;

    #[test]
    fn device_numbers_keep_major_and_minor() {
        let table = [(1, 3, 0x103), (7, 200, 0x7c8), (8, 0x12345, 0x12300845)];
        for (major, minor, want) in table {
            let dev = libc::makedev(major, minor);
            assert_eq!(kernel_rdev(dev), want, "{major}:{minor}");
        }
    }

    #[test]
    fn entries_show_their_stored_metadata() {
        let mut e = Entry::new(b"f".to_vec(), Kind::File);
        e.mode = 0o4755;
        e.uid = 7;
        e.gid = 8;
        e.size = 10_000;
        e.nlink = 3;
        e.ctime = Time { sec: -5, nsec: 9 };
        e.extents = vec![
            Extent::Data {
                id: BlobId([1; 32]),
                len: 100,
            },
            Extent::Hole { len: 9_900 },
        ];
        let a = of_entry(42, &e);
        assert_eq!(
            (a.ino, a.perm, a.uid, a.gid, a.size, a.nlink),
            (42, 0o4755, 7, 8, 10_000, 3)
        );
        assert_eq!(a.blocks, 8, "the hole takes no blocks");
        assert_eq!(a.ctime, Time { sec: -5, nsec: 9 });
        assert!(a.stable);
        let l = synthetic_link(3, 19, (0, 0), Time::default());
        assert_eq!((l.kind, l.size, l.stable), (Kind::Symlink, 19, false));
    }
}
