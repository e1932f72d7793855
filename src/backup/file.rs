//! Reading one regular file into extents: holes skipped with SEEK_DATA and
//! SEEK_HOLE, data cut by the chunker and handed to the writer.

use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::format::id::BlobId;
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
    // Read buffers per worker thread, zeroed once: a fresh 2 MiB buffer
    // per file cost a memset of it for each of tens of thousands of files.
    READ_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        read_regions(fd, size, blocks, &mut buf, chunker, writer, path, on_read)
    })
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Buffers> =
        const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

#[allow(clippy::too_many_arguments)]
fn read_regions(
    fd: RawFd,
    size: u64,
    blocks: u64,
    buf: &mut Buffers,
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
    buf: &mut Buffers,
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

/// One read's chunks are stored on [`pool`] while the next read is cut
/// when they are at least this many bytes (and on the pool, after the
/// read, when they are two or more). A big file (a database dump, a stream
/// from stdin) is read by one worker, but its chunks are hashed, compressed
/// and sealed on every core: at the end of a backup the biggest file is
/// often the last one running, alone.
const PARALLEL_BYTES: usize = 512 * 1024;

/// The pool big files' chunks are stored on: one thread per core, each
/// keeping its compression context. Built at first use; `None` when no
/// thread could be started (chunks are then stored by the worker that read
/// them, where rayon's global pool would abort the process).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("rewind-chunks-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Store the chunks `cuts` (offset and length in `buf`); their ids, in
/// order: on [`pool`] when `big` and there is one, else on this thread.
fn store(
    buf: &[u8],
    cuts: &[(usize, usize)],
    writer: &RepoWriter,
    big: bool,
) -> Result<Vec<BlobId>> {
    let one = |&(at, n): &(usize, usize)| writer.add_data(&buf[at..at + n]);
    match pool().filter(|_| big) {
        Some(pool) => {
            use rayon::prelude::*;
            pool.install(|| cuts.par_iter().map(one).collect())
        }
        None => cuts.iter().map(one).collect(),
    }
}

/// A failure of [`chunk_source`]: reading the source, or storing a chunk.
pub(super) enum ChunkError {
    Read(io::Error),
    Store(Error),
}

/// The two buffers [`chunk_source`] alternates between: one is stored while
/// the other is read into. Each is zeroed once; a worker keeps its pair.
pub(super) type Buffers = [Vec<u8>; 2];

/// Fill buffers from `read` (which returns 0 at the end), cut them into
/// chunks, store them and append their extents. Returns bytes read. A stop
/// request ([`crate::interrupt`]) ends it between reads with
/// `Store(Interrupted)`.
///
/// The chunks of one buffer are stored (on [`pool`], see
/// [`PARALLEL_BYTES`]) while the next buffer is read and cut: the reading
/// and the chunker, which must run in order, overlap with the hashing and
/// compression, which need not.
pub(super) fn chunk_source(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    bufs: &mut Buffers,
    chunker: &Chunker,
    writer: &RepoWriter,
    extents: &mut Vec<Extent>,
    on_read: &dyn Fn(u64),
) -> Result<u64, ChunkError> {
    let size = chunker.max_size() + READ_SIZE;
    for b in bufs.iter_mut() {
        if b.len() < size {
            b.resize(size, 0);
        }
    }
    let [cur, next] = bufs;
    let (mut cur, mut next) = (&mut cur[..], &mut next[..]);
    let mut total = 0u64;
    let mut eof = false;
    // Read into `buf` after its first `len` bytes until it holds a
    // largest chunk or the source ends; then cut it. Returns the new
    // length and where the last cut ends.
    let mut fill_and_cut = |buf: &mut [u8],
                            mut len: usize,
                            cuts: &mut Vec<(usize, usize)>,
                            eof: &mut bool|
     -> Result<(usize, usize), ChunkError> {
        while !*eof && len < chunker.max_size() {
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
            *eof = n == 0;
        }
        cuts.clear();
        let mut at = 0;
        while let Some(n) = chunker.next_cut(&buf[at..len], *eof) {
            cuts.push((at, n));
            at += n;
        }
        Ok((len, at))
    };
    let (mut cuts, mut next_cuts) = (Vec::new(), Vec::new());
    let (mut len, mut at) = fill_and_cut(cur, 0, &mut cuts, &mut eof)?;
    loop {
        let bytes: usize = cuts.iter().map(|&(_, n)| n).sum();
        if eof || bytes < PARALLEL_BYTES {
            // Two chunks or more go to the pool too: stored on the workers,
            // encrypted backups took 1-2 CPU-seconds more on the bench
            // corpus (every worker sealing into the pack under the
            // writer's lock at once, against the pool's two threads).
            let big = cuts.len() >= 2;
            let ids = store(cur, &cuts, writer, big).map_err(ChunkError::Store)?;
            push_data(extents, &ids, &cuts);
            if eof {
                return Ok(total);
            }
            cur.copy_within(at..len, 0);
            (len, at) = fill_and_cut(cur, len - at, &mut cuts, &mut eof)?;
            continue;
        }
        // The rest of this buffer starts the next one.
        next[..len - at].copy_from_slice(&cur[at..len]);
        let (stored, filled) = match pool() {
            // Stored by a job on the pool while this thread reads on.
            Some(pool) => {
                let mut stored = None;
                let filled = pool.in_place_scope(|s| {
                    let (cur, cuts, stored) = (&*cur, &cuts, &mut stored);
                    s.spawn(move |_| *stored = Some(store(cur, cuts, writer, true)));
                    fill_and_cut(next, len - at, &mut next_cuts, &mut eof)
                });
                (stored.expect("a scope waits for its jobs"), filled)
            }
            // No pool: one after the other.
            None => {
                let stored = store(cur, &cuts, writer, false);
                let filled = match stored {
                    Ok(_) => fill_and_cut(next, len - at, &mut next_cuts, &mut eof),
                    Err(_) => Ok((0, 0)),
                };
                (stored, filled)
            }
        };
        let ids = stored.map_err(ChunkError::Store)?;
        push_data(extents, &ids, &cuts);
        (len, at) = filled?;
        std::mem::swap(&mut cur, &mut next);
        std::mem::swap(&mut cuts, &mut next_cuts);
    }
}

fn push_data(extents: &mut Vec<Extent>, ids: &[BlobId], cuts: &[(usize, usize)]) {
    for (&id, &(_, n)) in ids.iter().zip(cuts) {
        extents.push(Extent::Data { id, len: n as u32 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::repo::{InitOptions, Repository};
    use std::sync::Arc;

    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Runs of text among noise: some chunks compress, some not.
                if (i / 100_000) % 3 == 0 {
                    b"INSERT INTO t VALUES (1, 'x');\n"[i % 31]
                } else {
                    x as u8
                }
            })
            .collect()
    }

    /// Chunk what `read` gives (all of `data`), check the byte counts, and
    /// read the chunks back from the repository: the same bytes, in order.
    /// Returns the chunk lengths.
    fn chunk_and_read_back(
        repo: &Repository,
        writer: &RepoWriter,
        bufs: &mut Buffers,
        data: &[u8],
        read: impl FnMut(&mut [u8]) -> io::Result<usize>,
        what: &str,
    ) -> Vec<usize> {
        let seen = std::sync::atomic::AtomicU64::new(0);
        let on_read = |n: u64| {
            seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        };
        let mut extents = Vec::new();
        let total = chunk_source(read, bufs, &repo.chunker(), writer, &mut extents, &on_read)
            .unwrap_or_else(|_| panic!("{what}: chunking failed"));
        assert_eq!(total, data.len() as u64, "{what}");
        assert_eq!(seen.into_inner(), data.len() as u64, "{what}");
        writer.flush().unwrap();
        let mut back = Vec::new();
        let mut cuts = Vec::new();
        for e in &extents {
            let Extent::Data { id, len } = e else {
                panic!("{what}: a hole in a stream")
            };
            back.extend(repo.read_blob(id, Some(*len)).unwrap());
            cuts.push(*len as usize);
        }
        assert!(back == data, "{what}: the bytes came back changed");
        cuts
    }

    /// A source read in uneven pieces (a pipe's), many buffers long, comes
    /// back byte for byte in order from the extents, whichever buffers were
    /// stored in parallel with the next read; the progress count is exact.
    #[test]
    fn a_long_source_read_in_uneven_pieces_round_trips() {
        for o in [InitOptions::plain(), InitOptions::test()] {
            let repo = Arc::new(Repository::init(Arc::new(MemoryBackend::new()), &o).unwrap());
            let writer = RepoWriter::new(repo.clone(), 3, false).unwrap();
            let mut bufs = [Vec::new(), Vec::new()];
            for len in [0usize, 1, 70_000, 3 << 20, (9 << 20) + 12_345] {
                let data = noise(len, len as u64 + 1);
                let mut pos = 0;
                let mut piece = 1usize;
                let read = |dst: &mut [u8]| -> io::Result<usize> {
                    piece = (piece * 7919 + 13) % 300_000 + 1;
                    let n = piece.min(dst.len()).min(data.len() - pos);
                    dst[..n].copy_from_slice(&data[pos..pos + n]);
                    pos += n;
                    Ok(n)
                };
                chunk_and_read_back(&repo, &writer, &mut bufs, &data, read, &format!("{len} B"));
            }
        }
    }

    /// A read error after several buffers is the error returned, not a
    /// shorter file.
    #[test]
    fn a_read_error_mid_source_is_returned() {
        let repo = Arc::new(
            Repository::init(Arc::new(MemoryBackend::new()), &InitOptions::test()).unwrap(),
        );
        let writer = RepoWriter::new(repo.clone(), 3, false).unwrap();
        let data = noise(6 << 20, 5);
        let mut pos = 0;
        let read = |dst: &mut [u8]| -> io::Result<usize> {
            if pos >= 5 << 20 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let n = dst.len().min(data.len() - pos);
            dst[..n].copy_from_slice(&data[pos..pos + n]);
            pos += n;
            Ok(n)
        };
        let mut bufs = [Vec::new(), Vec::new()];
        let mut extents = Vec::new();
        let res = chunk_source(
            read,
            &mut bufs,
            &repo.chunker(),
            &writer,
            &mut extents,
            &|_| {},
        );
        match res {
            Err(ChunkError::Read(e)) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
            _ => panic!("the read error was lost"),
        }
    }

    /// Sources ending on and around buffer and chunk boundaries, read
    /// whole, with an EINTR every third read, and in uneven pieces: the
    /// cuts are exactly the chunker's over the whole input, the bytes come
    /// back, and the counts are exact.
    #[test]
    fn boundaries_interruptions_and_short_reads_cut_as_the_whole() {
        let repo = Arc::new(
            Repository::init(Arc::new(MemoryBackend::new()), &InitOptions::test()).unwrap(),
        );
        let writer = RepoWriter::new(repo.clone(), 1, false).unwrap();
        let m = repo.chunker().max_size();
        let mut bufs = [Vec::new(), Vec::new()];
        let lens = [
            m - 1,
            m,
            m + 1,
            2 * m,
            3 * m,
            4 * m + READ_SIZE,
            5 * m - 1,
            READ_SIZE,
            2 * READ_SIZE,
        ];
        for len in lens {
            for mode in 0..3u64 {
                let data = noise(len, len as u64 * 3 + mode);
                let (mut pos, mut k) = (0, 0usize);
                let read = |dst: &mut [u8]| -> io::Result<usize> {
                    k += 1;
                    if mode == 1 && k % 3 == 0 {
                        return Err(io::Error::from_raw_os_error(libc::EINTR));
                    }
                    let want = match mode {
                        2 => (k * 4099) % dst.len() + 1,
                        _ => dst.len(),
                    };
                    let n = want.min(data.len() - pos);
                    dst[..n].copy_from_slice(&data[pos..pos + n]);
                    pos += n;
                    Ok(n)
                };
                let what = format!("len {len}, mode {mode}");
                let cuts = chunk_and_read_back(&repo, &writer, &mut bufs, &data, read, &what);
                assert_eq!(cuts, repo.chunker().split(&data), "{what}");
            }
        }
    }
}
