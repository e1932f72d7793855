//! Reading one regular file into extents: holes skipped with SEEK_DATA and
//! SEEK_HOLE, data cut by the chunker and handed to the writer.

use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::format::tree::Extent;
use crate::repo::writer::RepoWriter;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

/// How much to ask `read` for at once.
const READ_SIZE: usize = 1 << 20;

/// The content of a file as read.
pub struct FileContent {
    pub extents: Vec<Extent>,
    /// Logical length (holes included).
    pub size: u64,
    /// Bytes actually read.
    pub bytes_read: u64,
}

/// A data region `[start, end)`; `end == None` reads to end of file.
type Region = (u64, Option<u64>);

/// Data regions of an open file of length `size`, or `None` when the file is
/// to be read whole: it uses as many blocks as its length, or the file system
/// cannot tell holes.
fn data_regions(fd: RawFd, size: u64, blocks: u64) -> Option<Vec<Region>> {
    if blocks * 512 >= size {
        return None;
    }
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = unsafe { libc::lseek64(fd, pos as i64, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return None;
        }
        let hole = unsafe { libc::lseek64(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 {
            size
        } else {
            (hole as u64).min(size)
        };
        if end > data as u64 {
            out.push((data as u64, Some(end)));
        }
        pos = end.max(data as u64 + 1);
    }
    Some(out)
}

/// Read `fd` (of `size` bytes and `blocks` 512-byte blocks) into extents.
pub fn read_file(
    fd: RawFd,
    size: u64,
    blocks: u64,
    chunker: &Chunker,
    writer: &RepoWriter,
    path: &Path,
    on_read: &dyn Fn(u64),
) -> Result<FileContent> {
    unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    // One read buffer per worker thread, zeroed once: a fresh 2 MiB buffer
    // per file cost a memset of it for each of tens of thousands of files.
    READ_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        read_regions(fd, size, blocks, &mut buf, chunker, writer, path, on_read)
    })
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[allow(clippy::too_many_arguments)]
fn read_regions(
    fd: RawFd,
    size: u64,
    blocks: u64,
    buf: &mut Vec<u8>,
    chunker: &Chunker,
    writer: &RepoWriter,
    path: &Path,
    on_read: &dyn Fn(u64),
) -> Result<FileContent> {
    let mut out = FileContent {
        extents: Vec::new(),
        size: 0,
        bytes_read: 0,
    };
    let sparse = data_regions(fd, size, blocks);
    let regions = sparse.clone().unwrap_or_else(|| vec![(0, None)]);
    for (start, end) in regions {
        if start > out.size {
            push_hole(&mut out.extents, start - out.size);
            out.size = start;
        }
        let n = read_region(
            fd,
            start,
            end,
            buf,
            chunker,
            writer,
            &mut out.extents,
            path,
            on_read,
        )?;
        out.size += n;
        out.bytes_read += n;
    }
    if sparse.is_some() && size > out.size {
        push_hole(&mut out.extents, size - out.size);
        out.size = size;
    }
    Ok(out)
}

fn push_hole(extents: &mut Vec<Extent>, len: u64) {
    if let Some(Extent::Hole { len: prev }) = extents.last_mut() {
        *prev += len;
    } else {
        extents.push(Extent::Hole { len });
    }
}

/// Read one region with `pread`, cut it into chunks and store them.
/// Returns bytes read.
#[allow(clippy::too_many_arguments)]
fn read_region(
    fd: RawFd,
    start: u64,
    end: Option<u64>,
    buf: &mut Vec<u8>,
    chunker: &Chunker,
    writer: &RepoWriter,
    extents: &mut Vec<Extent>,
    path: &Path,
    on_read: &dyn Fn(u64),
) -> Result<u64> {
    let mut pos = start;
    let read = |dst: &mut [u8]| -> io::Result<usize> {
        let want = match end {
            Some(e) => ((e - pos) as usize).min(dst.len()),
            None => dst.len(),
        };
        let r = unsafe { libc::pread64(fd, dst.as_mut_ptr().cast(), want, pos as i64) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        pos += r as u64;
        Ok(r as usize)
    };
    chunk_source(read, buf, chunker, writer, extents, on_read).map_err(|e| match e {
        ChunkError::Read(e) => Error::io(path, e),
        ChunkError::Store(e) => e,
    })
}

/// A failure of [`chunk_source`]: reading the source, or storing a chunk.
pub(super) enum ChunkError {
    Read(io::Error),
    Store(Error),
}

/// Fill `buf` from `read` (which returns 0 at the end), cut it into chunks,
/// store them and append their extents. Returns bytes read. A stop request
/// ([`crate::interrupt`]) ends it between reads with `Store(Interrupted)`.
pub(super) fn chunk_source(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    buf: &mut Vec<u8>,
    chunker: &Chunker,
    writer: &RepoWriter,
    extents: &mut Vec<Extent>,
    on_read: &dyn Fn(u64),
) -> Result<u64, ChunkError> {
    // The buffer is zeroed once; `len` says how much of it holds data.
    let size = chunker.max_size() + READ_SIZE;
    if buf.len() < size {
        buf.resize(size, 0);
    }
    let mut len = 0usize;
    let mut total = 0u64;
    let mut eof = false;
    loop {
        while !eof && len < chunker.max_size() {
            crate::interrupt::check().map_err(ChunkError::Store)?;
            let n = loop {
                match read(&mut buf[len..len + READ_SIZE]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        crate::interrupt::check().map_err(ChunkError::Store)?;
                    }
                    Err(e) => return Err(ChunkError::Read(e)),
                }
            };
            len += n;
            total += n as u64;
            on_read(n as u64);
            eof = n == 0;
        }
        let mut at = 0;
        while let Some(n) = chunker.next_cut(&buf[at..len], eof) {
            let id = writer
                .add_data(&buf[at..at + n])
                .map_err(ChunkError::Store)?;
            extents.push(Extent::Data { id, len: n as u32 });
            at += n;
        }
        buf.copy_within(at..len, 0);
        len -= at;
        if eof {
            return Ok(total);
        }
    }
}
