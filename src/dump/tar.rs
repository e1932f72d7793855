//! The tar archive `rewind dump` writes: POSIX.1-2001 pax, as GNU tar 1.34
//! (`--format=pax --xattrs --acls --sparse`) and bsdtar read and write it.
//!
//! # Members
//!
//! Each member is, in order: a pax extended header when one is needed
//! (typeflag `x`, its records as its data, padded to 512 bytes), a ustar
//! header (512 bytes), and the member's data padded to 512 bytes. The archive
//! ends with two zero blocks; an archive cut short by an error never gets
//! them (see [`TarWriter::abort`]).
//!
//! ustar header fields (numbers are octal, zero-padded, NUL-terminated):
//!
//! | offset | bytes | field      | written                                            |
//! |--------|-------|------------|----------------------------------------------------|
//! | 0      | 100   | `name`     | the path if it is ASCII and fits, else a stand-in  |
//! | 100    | 8     | `mode`     | permission bits with setuid, setgid, sticky        |
//! | 108    | 8     | `uid`      | 0 when it does not fit (the pax record has it)     |
//! | 116    | 8     | `gid`      | likewise                                           |
//! | 124    | 12    | `size`     | data bytes in the archive; 0 when ≥ 8 GiB          |
//! | 136    | 12    | `mtime`    | seconds; 0 when negative or beyond 2242            |
//! | 148    | 8     | `chksum`   | sum of the header's bytes, this field as spaces    |
//! | 156    | 1     | `typeflag` | `0` file, `1` hard link, `2` symlink, `3` char device, `4` block device, `5` directory, `6` FIFO, `x` pax header |
//! | 157    | 100   | `linkname` | symlink target or hard-link path, as `name`        |
//! | 257    | 8     | `magic`    | `ustar\0` `00`                                     |
//! | 265    | 32    | `uname`    | owner name if ASCII and shorter, else in pax       |
//! | 297    | 32    | `gname`    | likewise                                           |
//! | 329    | 16    | `devmajor`, `devminor` | device numbers                         |
//!
//! # Pax records
//!
//! `LEN KEY=VALUE\n`, `LEN` counting the whole record. Values are bytes; all
//! but paths are UTF-8.
//!
//! | key                 | when                                                      |
//! |---------------------|-----------------------------------------------------------|
//! | `hdrcharset=BINARY` | first, when a path is not UTF-8: paths are raw bytes       |
//! | `path`, `linkpath`  | paths that are not ASCII or longer than 100 bytes          |
//! | `size`              | data of 8 GiB or more                                      |
//! | `uid`, `gid`, `uname`, `gname` | values the ustar fields cannot hold            |
//! | `mtime`             | nanoseconds, or seconds out of the field's range           |
//! | `atime`, `ctime`    | always (`ctime` is informational: nothing can set it)      |
//! | `SCHILY.acl.access`, `SCHILY.acl.default` | POSIX ACLs in text form ([`super::acl`]) |
//! | `SCHILY.xattr.NAME` | every other extended attribute, its value as raw bytes     |
//!
//! Times are decimal seconds with nine digits of fraction when the
//! nanoseconds are not zero; a time before 1970 is written as its value
//! (`-86399.000000001` is 1969-12-31 00:00:00.999999999), as GNU tar does.
//!
//! # Sparse files
//!
//! A file with holes is a GNU sparse 1.0 member: pax records
//! `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.name` (the real
//! path, in place of `path`) and `GNU.sparse.realsize`; the ustar name is
//! `GNUSparseFile.0/NAME`. The data starts with the map: the number of data
//! regions, then each region's offset and length, each number a decimal
//! line, padded with NULs to 512 bytes; then the regions' bytes. A file that
//! ends in a hole gets a last region of length 0 at its end, so readers
//! extend the file to its full size.
//!
//! # Not written
//!
//! Sockets (tar has no type for them, GNU tar skips them too), and extended
//! attributes whose name holds `=`, which ends a pax key: [`Encoded::unwritable`]
//! names them so the caller can report the loss.

use super::acl;
use crate::error::{Error, Result};
use crate::format::tree::{Entry, Extent, Kind, Time};
use std::io::Write;
use std::path::PathBuf;

/// The unit of a tar archive.
pub const BLOCK: usize = 512;

/// The largest number an octal field of `len` bytes holds (one byte is NUL).
const fn octal_max(len: usize) -> u64 {
    (1u64 << (3 * (len - 1))) - 1
}

/// One member to write: where it goes in the archive and what it is.
pub struct Member<'a> {
    /// The path in the archive, relative, without a trailing slash.
    pub path: &'a [u8],
    pub entry: &'a Entry,
    /// A hard link to this earlier member's path instead of a copy.
    pub link: Option<&'a [u8]>,
}

/// A member's headers, ready to write.
#[derive(Debug)]
pub struct Encoded {
    /// The pax header, the ustar header, and a sparse file's map.
    pub head: Vec<u8>,
    /// Data bytes that must follow: the data extents of a regular file.
    pub content: u64,
    /// Extended attributes that tar cannot hold (names with `=`).
    pub unwritable: Vec<Vec<u8>>,
}

/// Encode the headers of `m`.
pub fn encode(m: &Member) -> Result<Encoded> {
    let e = m.entry;
    let object = String::from_utf8_lossy(m.path).into_owned();
    let mut h = Ustar::new();
    let mut pax = Pax::default();
    let (typeflag, content) = match (m.link, e.kind) {
        (Some(_), _) => (b'1', 0),
        (None, Kind::File) => (b'0', e.data_bytes()),
        (None, Kind::Dir) => (b'5', 0),
        (None, Kind::Symlink) => (b'2', 0),
        (None, Kind::CharDev) => (b'3', 0),
        (None, Kind::BlockDev) => (b'4', 0),
        (None, Kind::Fifo) => (b'6', 0),
        (None, Kind::Socket) => {
            return Err(Error::InvalidInput(format!(
                "{object}: tar cannot hold a socket"
            )))
        }
    };
    h.b[156] = typeflag;
    let sparse = match typeflag {
        b'0' => sparse_map(&e.extents, e.size),
        _ => None,
    };
    names(&mut h, &mut pax, m, sparse.is_some());
    let map_len = sparse.as_ref().map_or(0, |map| map.len() as u64);
    let size = map_len
        .checked_add(content)
        .ok_or_else(|| Error::corrupt(&object, "size out of range"))?;
    if !h.octal(124, 12, size) {
        pax.add(b"size", size.to_string().as_bytes());
    }
    owner_and_mode(&mut h, &mut pax, e);
    let (major, minor) = match typeflag {
        b'3' | b'4' => (libc::major(e.rdev), libc::minor(e.rdev)),
        _ => (0, 0),
    };
    if !h.octal(329, 8, major as u64) || !h.octal(337, 8, minor as u64) {
        return Err(Error::corrupt(&object, "device number out of range"));
    }
    let mut unwritable = Vec::new();
    if m.link.is_none() {
        times(&mut h, &mut pax, e, &object)?;
        xattrs(&mut pax, e, &mut unwritable);
    } else {
        // A link takes its metadata from the file it links to; the field
        // is informational (`tar -tv`).
        let sec = u64::try_from(e.mtime.sec).unwrap_or(0);
        if !h.octal(136, 12, sec) {
            h.octal(136, 12, 0);
        }
    }
    let mut head = pax_header(pax, m.path, h.mtime);
    head.extend_from_slice(&h.finish());
    head.extend_from_slice(sparse.as_deref().unwrap_or_default());
    Ok(Encoded {
        head,
        content,
        unwritable,
    })
}

/// The member's path (a sparse file's in `GNU.sparse.*` records) and its
/// link target, in the ustar fields when they fit, else in pax records.
fn names(h: &mut Ustar, pax: &mut Pax, m: &Member, sparse: bool) {
    let e = m.entry;
    let mut name = m.path.to_vec();
    if e.kind == Kind::Dir {
        name.push(b'/');
    }
    if sparse {
        pax.add(b"GNU.sparse.major", b"1");
        pax.add(b"GNU.sparse.minor", b"0");
        pax.add_path(b"GNU.sparse.name", &name);
        pax.add(b"GNU.sparse.realsize", e.size.to_string().as_bytes());
        let stand_in = [b"GNUSparseFile.0/", base_name(m.path)].concat();
        h.text(0, 100, &stand_in);
    } else if !h.text(0, 100, &name) {
        pax.add_path(b"path", &name);
    }
    let target = match (m.link, e.kind) {
        (Some(first), _) => Some(first),
        (None, Kind::Symlink) => Some(&e.target[..]),
        _ => None,
    };
    if let Some(target) = target {
        if !h.text(157, 100, target) {
            pax.add_path(b"linkpath", target);
        }
    }
}

/// Mode, numeric owners and owner names.
fn owner_and_mode(h: &mut Ustar, pax: &mut Pax, e: &Entry) {
    h.octal(100, 8, (e.mode & 0o7777) as u64);
    for (off, key, id) in [(108, &b"uid"[..], e.uid), (116, b"gid", e.gid)] {
        if !h.octal(off, 8, id as u64) {
            pax.add(key, id.to_string().as_bytes());
        }
    }
    for (off, key, owner) in [(265, &b"uname"[..], &e.user), (297, b"gname", &e.group)] {
        if !h.text(off, 31, owner.as_bytes()) {
            pax.add(key, owner.as_bytes());
        }
    }
}

/// The pax extended header that carries `pax`'s records, padded; empty when
/// there are none.
fn pax_header(pax: Pax, path: &[u8], mtime: u64) -> Vec<u8> {
    let mut head = Vec::with_capacity(3 * BLOCK);
    if pax.records.is_empty() {
        return head;
    }
    let records = pax.finish();
    let mut x = Ustar::new();
    x.text(0, 100, &[b"PaxHeaders/", base_name(path)].concat());
    x.octal(100, 8, 0o644);
    x.octal(108, 8, 0);
    x.octal(116, 8, 0);
    x.octal(124, 12, records.len() as u64);
    x.octal(136, 12, mtime);
    x.b[156] = b'x';
    head.extend_from_slice(&x.finish());
    head.extend_from_slice(&records);
    pad(&mut head);
    head
}

/// mtime in the ustar field where it fits; with nanoseconds, atime and ctime
/// in pax records.
fn times(h: &mut Ustar, pax: &mut Pax, e: &Entry, object: &str) -> Result<()> {
    for t in [e.mtime, e.atime, e.ctime] {
        if t.nsec >= 1_000_000_000 {
            return Err(Error::corrupt(
                object,
                "a time's nanoseconds are out of range",
            ));
        }
    }
    let field = u64::try_from(e.mtime.sec)
        .ok()
        .filter(|&s| s <= octal_max(12));
    h.octal(136, 12, field.unwrap_or(0));
    if field.is_none() || e.mtime.nsec != 0 {
        pax.add(b"mtime", pax_time(e.mtime).as_bytes());
    }
    pax.add(b"atime", pax_time(e.atime).as_bytes());
    pax.add(b"ctime", pax_time(e.ctime).as_bytes());
    Ok(())
}

/// ACLs as text, every other attribute as `SCHILY.xattr.NAME`.
fn xattrs(pax: &mut Pax, e: &Entry, unwritable: &mut Vec<Vec<u8>>) {
    for x in &e.xattrs {
        if let Some(key) = acl::keyword(&x.name) {
            if let Some(text) = acl::to_text(&x.value) {
                pax.add(key.as_bytes(), text.as_bytes());
                continue;
            }
        }
        if x.name.contains(&b'=') {
            unwritable.push(x.name.clone());
            continue;
        }
        pax.add(&[b"SCHILY.xattr.", &x.name[..]].concat(), &x.value);
    }
}

/// A time as pax writes it: decimal seconds, nine digits of fraction when
/// there is one; negative times as their value.
pub fn pax_time(t: Time) -> String {
    match (t.sec, t.nsec) {
        (s, 0) => s.to_string(),
        (s, n) if s >= 0 => format!("{s}.{n:09}"),
        // s + n/1e9 with s < 0 and 0 < n < 1e9 is -((-s - 1) + (1e9 - n)/1e9).
        (s, n) => format!("-{}.{:09}", -(s + 1), 1_000_000_000 - n),
    }
}

/// The sparse map block(s) of a file with holes, or `None` for a file without.
pub fn sparse_map(extents: &[Extent], size: u64) -> Option<Vec<u8>> {
    if !extents
        .iter()
        .any(|x| matches!(x, Extent::Hole { len } if *len > 0))
    {
        return None;
    }
    let mut regions: Vec<(u64, u64)> = Vec::new();
    let mut offset = 0u64;
    let mut ends_in_hole = false;
    for x in extents.iter().filter(|x| !x.is_empty()) {
        match x {
            Extent::Data { len, .. } => {
                match regions.last_mut() {
                    Some((start, n)) if *start + *n == offset => *n += *len as u64,
                    _ => regions.push((offset, *len as u64)),
                }
                ends_in_hole = false;
            }
            Extent::Hole { .. } => ends_in_hole = true,
        }
        offset = offset.saturating_add(x.len());
    }
    if ends_in_hole || regions.is_empty() {
        regions.push((size, 0));
    }
    let mut map = format!("{}\n", regions.len()).into_bytes();
    for (start, len) in regions {
        map.extend_from_slice(format!("{start}\n{len}\n").as_bytes());
    }
    pad(&mut map);
    Some(map)
}

/// The last component of `path`.
fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// Zero-fill `v` to a whole number of blocks.
fn pad(v: &mut Vec<u8>) {
    v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
}

/// Pax records being gathered for one member.
#[derive(Default)]
struct Pax {
    records: Vec<u8>,
    binary: bool,
}

impl Pax {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        // LEN counts its own digits: grow it until it does.
        let body = key.len() + value.len() + 3;
        let mut len = body + digits(body);
        while body + digits(len) != len {
            len = body + digits(len);
        }
        self.records.extend_from_slice(len.to_string().as_bytes());
        self.records.push(b' ');
        self.records.extend_from_slice(key);
        self.records.push(b'=');
        self.records.extend_from_slice(value);
        self.records.push(b'\n');
    }

    /// A path record; a path that is not UTF-8 makes the header binary.
    fn add_path(&mut self, key: &[u8], path: &[u8]) {
        self.binary |= std::str::from_utf8(path).is_err();
        self.add(key, path);
    }

    fn finish(self) -> Vec<u8> {
        if !self.binary {
            return self.records;
        }
        let mut first = Pax::default();
        first.add(b"hdrcharset", b"BINARY");
        first.records.extend_from_slice(&self.records);
        first.records
    }
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// A ustar header being filled in.
struct Ustar {
    b: [u8; BLOCK],
    mtime: u64,
}

impl Ustar {
    fn new() -> Self {
        let mut b = [0u8; BLOCK];
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        Ustar { b, mtime: 0 }
    }

    /// `v` as octal in the field at `off`; false (field left empty) when it
    /// does not fit.
    fn octal(&mut self, off: usize, len: usize, v: u64) -> bool {
        if v > octal_max(len) {
            return false;
        }
        let s = format!("{v:0width$o}", width = len - 1);
        self.b[off..off + len - 1].copy_from_slice(s.as_bytes());
        self.b[off + len - 1] = 0;
        if off == 136 {
            self.mtime = v;
        }
        true
    }

    /// `s` in the field at `off` if it is ASCII and fits; else a printable
    /// stand-in (readers take the pax record) and false.
    fn text(&mut self, off: usize, len: usize, s: &[u8]) -> bool {
        let fits = s.len() <= len && s.is_ascii();
        let n = s.len().min(len);
        for (dst, &c) in self.b[off..off + n].iter_mut().zip(s) {
            *dst = if fits || (0x20..0x7f).contains(&c) {
                c
            } else {
                b'_'
            };
        }
        fits
    }

    fn finish(mut self) -> [u8; BLOCK] {
        self.b[148..156].fill(b' ');
        let sum: u32 = self.b.iter().map(|&c| c as u32).sum();
        let s = format!("{sum:06o}\0 ");
        self.b[148..156].copy_from_slice(s.as_bytes());
        self.b
    }
}

/// Writes members to `out`, keeping count of the data each one still needs.
/// After a failed write it refuses all further use.
pub struct TarWriter<W: Write> {
    out: W,
    /// What `out` is, for errors (`standard output`).
    name: PathBuf,
    /// Content bytes the current member still needs.
    left: u64,
    /// Zeros that pad the current member's content to a block.
    pad: usize,
    failed: bool,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, name: impl Into<PathBuf>) -> Self {
        TarWriter {
            out,
            name: name.into(),
            left: 0,
            pad: 0,
            failed: false,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.failed {
            return Err(Error::io(
                &self.name,
                std::io::Error::other("an earlier write failed"),
            ));
        }
        self.out.write_all(bytes).map_err(|e| {
            self.failed = true;
            Error::io(&self.name, e)
        })
    }

    /// Start a member: its headers, then [`TarWriter::content`] must give
    /// exactly `m.content` bytes.
    pub fn begin(&mut self, m: &Encoded) -> Result<()> {
        if self.left > 0 {
            return Err(Error::InvalidInput(format!(
                "tar member started with {} bytes of the previous one missing",
                self.left
            )));
        }
        self.write(&m.head)?;
        self.left = m.content;
        self.pad = (BLOCK - (m.content % BLOCK as u64) as usize) % BLOCK;
        self.end_member()
    }

    /// Content of the current member; the padding follows its last byte.
    pub fn content(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > self.left {
            return Err(Error::InvalidInput(format!(
                "{} bytes of content for a tar member that needs {}",
                bytes.len(),
                self.left
            )));
        }
        self.write(bytes)?;
        self.left -= bytes.len() as u64;
        self.end_member()
    }

    fn end_member(&mut self) -> Result<()> {
        if self.left == 0 && self.pad > 0 {
            let zeros = [0u8; BLOCK];
            let n = std::mem::take(&mut self.pad);
            self.write(&zeros[..n])?;
        }
        Ok(())
    }

    /// End the archive (two zero blocks) and flush.
    pub fn finish(mut self) -> Result<W> {
        if self.left > 0 {
            return Err(Error::InvalidInput(format!(
                "tar archive finished with {} bytes of its last member missing",
                self.left
            )));
        }
        self.write(&[0u8; 2 * BLOCK])?;
        self.out.flush().map_err(|e| Error::io(&self.name, e))?;
        Ok(self.out)
    }

    /// End an archive that cannot be completed so that every reader fails on
    /// it: in the middle of a member's content it just stops (the member is
    /// short); between members it adds a pax header whose records never come.
    /// Either way there is no end-of-archive marker, and `tar` reports an
    /// unexpected end of the archive and exits non-zero.
    pub fn abort(mut self) -> Result<W> {
        if self.left == 0 && !self.failed {
            let mut x = Ustar::new();
            x.text(0, 100, b"rewind-dump-failed/PaxHeaders");
            x.octal(100, 8, 0o644);
            x.octal(124, 12, BLOCK as u64);
            x.b[156] = b'x';
            self.write(&x.finish())?;
        }
        self.out.flush().map_err(|e| Error::io(&self.name, e))?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests;
