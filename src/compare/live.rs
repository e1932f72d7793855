//! The live side: an entry as `stat`, `getxattr` and `readlink` see it, a
//! file's bytes checked against the snapshot's blob ids, and its hole layout.

use super::entry::holes;
use crate::format::id::Hasher;
use crate::format::tree::{Entry, Extent};
use crate::meta::{self, cstr};
use std::io;
use std::os::fd::RawFd;

/// What a comparison wants to read beyond `stat`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Wanted {
    pub xattrs: bool,
}

/// The live entry `name` in `dir` (owner names not filled in): stat first,
/// then xattrs and the symlink target (reading a symlink sets its atime, so
/// the atime is taken before).
pub(super) fn live_entry(
    dir: RawFd,
    name: &[u8],
    want: Wanted,
) -> io::Result<(Entry, libc::stat64)> {
    let c = cstr(name)?;
    let st = meta::stat_at(dir, &c)?;
    let mut e = meta::entry_from_stat(name.to_vec(), &st)
        .ok_or_else(|| io::Error::other("unknown file type"))?;
    if want.xattrs {
        e.xattrs = meta::xattrs_at(dir, name)?;
    }
    if e.kind == crate::format::tree::Kind::Symlink {
        e.target = meta::read_link_at(dir, &c)?;
    }
    Ok((e, st))
}

/// The outcome of hashing a file against its extents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentCheck {
    /// Where the first extent that differs starts; `None` when every byte matches.
    pub differs_at: Option<u64>,
    /// Bytes read.
    pub bytes_read: u64,
}

/// Check the open file `fd` against `extents`: each data extent's bytes must
/// hash to its blob id, each hole must read as zeros (ranges the file has as
/// holes too are not read). The caller has checked the size. Stops at the
/// first difference.
pub fn check_content(
    fd: RawFd,
    extents: &[Extent],
    hasher: &Hasher,
    buf: &mut Vec<u8>,
    on_read: &dyn Fn(u64),
) -> io::Result<ContentCheck> {
    unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    let mut out = ContentCheck {
        differs_at: None,
        bytes_read: 0,
    };
    let mut pos = 0u64;
    for ext in extents {
        let same = match *ext {
            Extent::Data { id, len } => {
                buf.resize(len as usize, 0);
                let n = read_at(fd, buf, pos)?;
                out.bytes_read += n as u64;
                on_read(n as u64);
                n == buf.len() && hasher.blob(buf) == id
            }
            Extent::Hole { len } => {
                let (zero, n) = zeros_at(fd, pos, pos + len, buf)?;
                out.bytes_read += n;
                on_read(n);
                zero
            }
        };
        if !same {
            out.differs_at = Some(pos);
            break;
        }
        pos += ext.len();
    }
    Ok(out)
}

/// Whether `[start, end)` of `fd` reads as zeros, skipping what the file
/// system reports as holes. Returns the answer and the bytes read.
fn zeros_at(fd: RawFd, start: u64, end: u64, buf: &mut Vec<u8>) -> io::Result<(bool, u64)> {
    const WINDOW: u64 = 1 << 20;
    let mut read = 0u64;
    let mut pos = match seek(fd, start, libc::SEEK_DATA)? {
        Some(d) => d.max(start),
        None => return Ok((true, 0)),
    };
    while pos < end {
        let n = (end - pos).min(WINDOW) as usize;
        buf.resize(n, 0);
        let got = read_at(fd, buf, pos)?;
        read += got as u64;
        if got < n || buf.iter().any(|&b| b != 0) {
            return Ok((false, read));
        }
        pos += n as u64;
    }
    Ok((true, read))
}

/// Bytes allocated (data, as `SEEK_DATA` sees it) inside the snapshot's
/// holes, each hole first shrunk to whole `block`s: 0 when every hole the
/// snapshot has is a hole in the file.
pub fn filled_holes(fd: RawFd, extents: &[Extent], block: u64) -> io::Result<u64> {
    let block = block.max(512);
    let mut filled = 0;
    for (off, len) in holes(extents) {
        let (a, b) = (off.next_multiple_of(block), (off + len) / block * block);
        let mut pos = a;
        while pos < b {
            let Some(data) = seek(fd, pos, libc::SEEK_DATA)? else {
                break;
            };
            if data >= b {
                break;
            }
            let hole = seek(fd, data, libc::SEEK_HOLE)?.unwrap_or(b).min(b);
            filled += hole - data;
            pos = hole.max(data + 1);
        }
    }
    Ok(filled)
}

/// `lseek`; `None` for `ENXIO` (no data, or no hole, from `offset` on).
fn seek(fd: RawFd, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let r = unsafe { libc::lseek64(fd, offset as i64, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(e),
    }
}

/// `pread` until `buf` is full or the file ends. Returns bytes read.
fn read_at(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = unsafe {
            libc::pread64(
                fd,
                buf[n..].as_mut_ptr().cast(),
                buf.len() - n,
                (offset + n as u64) as i64,
            )
        };
        match r {
            0 => break,
            r if r > 0 => n += r as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;

    fn temp_file(data: &[(u64, &[u8])], size: u64) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(size).unwrap();
        for (off, d) in data {
            f.seek(SeekFrom::Start(*off)).unwrap();
            f.write_all(d).unwrap();
        }
        f.sync_all().unwrap();
        f
    }

    #[test]
    fn bytes_are_checked_by_hash_over_the_snapshot_extents() {
        let h = Hasher::new([7; 32]);
        let (a, b) = (vec![1u8; 5000], vec![2u8; 3000]);
        let ext = [
            Extent::Data {
                id: h.blob(&a),
                len: 5000,
            },
            Extent::Hole { len: 100 },
            Extent::Data {
                id: h.blob(&b),
                len: 3000,
            },
        ];
        let f = temp_file(&[(0, &a), (5100, &b)], 8100);
        let mut buf = Vec::new();
        let r = check_content(f.as_raw_fd(), &ext, &h, &mut buf, &|_| {}).unwrap();
        assert_eq!(r.differs_at, None);
        assert_eq!(
            r.bytes_read, 8100,
            "the small hole is data on disk, so read"
        );
        let g = temp_file(&[(0, &a), (5100, &b), (5050, b"x")], 8100);
        let r = check_content(g.as_raw_fd(), &ext, &h, &mut buf, &|_| {}).unwrap();
        assert_eq!(r.differs_at, Some(5000), "a byte in the hole");
        let k = temp_file(&[(0, &a), (5100, &b), (8000, b"x")], 8100);
        let r = check_content(k.as_raw_fd(), &ext, &h, &mut buf, &|_| {}).unwrap();
        assert_eq!(r.differs_at, Some(5100));
    }

    #[test]
    fn filled_holes_are_counted_and_kept_holes_are_not() {
        const MB: u64 = 1 << 20;
        let island = vec![9u8; 4096];
        let ext = [
            Extent::Data {
                id: Default::default(),
                len: 4096,
            },
            Extent::Hole { len: 4 * MB - 4096 },
        ];
        let sparse = temp_file(&[(0, &island)], 4 * MB);
        assert_eq!(filled_holes(sparse.as_raw_fd(), &ext, 4096).unwrap(), 0);
        let full = temp_file(&[(0, &island), (MB, &vec![0u8; MB as usize])], 4 * MB);
        assert_eq!(filled_holes(full.as_raw_fd(), &ext, 4096).unwrap(), MB);
        // A hole smaller than a block cannot be kept and is not asked for.
        let tiny = [Extent::Hole { len: 100 }];
        let f = temp_file(&[(0, &[0u8; 100])], 100);
        assert_eq!(filled_holes(f.as_raw_fd(), &tiny, 4096).unwrap(), 0);
    }
}
