//! Pushing small files into the kernel's page cache ahead of a reader that
//! goes through a directory in order (`cp -a`, `tar`, `rsync`,
//! `find | xargs cat`).
//!
//! Through FUSE every file a reader opens costs at least one round trip: the
//! reader sleeps while its `read` crosses to the mount and back. For small
//! files that wait, not the bytes, sets the pace, and the kernel's read-ahead
//! works within one file only. So when a reader starts the regular file that
//! follows, in listing order, the one it started last in the same directory
//! (or the directory's first file), the mount decodes the next files of that
//! directory in the background and stores them in the kernel's page cache
//! (FUSE `notify_store`). The reader then finds them there, with no round
//! trip.
//!
//! The window is bounded ([`WINDOW_FILES`] files, [`WINDOW_BYTES`] bytes;
//! files over [`MAX_FILE`] are left to the read-ahead within a file), and the
//! first file after it is not pushed: the reader's request for that one tells
//! the mount where the reader got to, and moves the window on.
//!
//! A push is only a hint. It is skipped when its queue is full, the kernel
//! ignores one for an inode it has dropped, and a file that cannot be read is
//! left for the reader's own request, which reports the damage.

use super::inode::Ino;
use super::read::Chunks;
use crate::error::{Error, Result};
use crate::format::tree::{Entry, Extent, Kind, Tree};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Most files pushed ahead of a reader at once.
pub const WINDOW_FILES: usize = 256;
/// Most bytes pushed ahead of a reader at once.
pub const WINDOW_BYTES: u64 = 16 << 20;
/// Larger files are not pushed: the kernel's read-ahead and the mount's own
/// serve them in large requests.
pub const MAX_FILE: u64 = 4 << 20;
/// Directories whose readers are followed; more and the record starts over.
const MAX_CURSORS: usize = 4096;
/// Files queued for pushing; more are skipped.
const QUEUE: usize = 2 * WINDOW_FILES;

/// Where pushed contents go: the kernel's page cache, in the mount.
pub trait Sink: Send + Sync {
    /// Put `data` into the kernel's cache of file `ino` at `offset`.
    fn store(&self, ino: Ino, offset: u64, data: &[u8]) -> std::io::Result<()>;
}

/// The non-empty regular file after entry `after` (from the first entry for
/// `None`), in listing order. Reads of empty files never reach the mount.
pub fn next_file(entries: &[Entry], after: Option<usize>) -> Option<usize> {
    let from = after.map_or(0, |i| i + 1);
    (from..entries.len()).find(|&i| entries[i].kind == Kind::File && entries[i].size > 0)
}

/// What to push once a reader started entry `started`: the files of the
/// window, and the file whose read moves the window on (`None` when the
/// directory ends within the window).
pub fn window(entries: &[Entry], started: usize) -> (Vec<usize>, Option<usize>) {
    let mut files = Vec::new();
    let mut bytes = 0u64;
    let mut at = Some(started);
    while let Some(i) = next_file(entries, at) {
        at = Some(i);
        let size = entries[i].size;
        if size > MAX_FILE || files.len() == WINDOW_FILES || bytes + size > WINDOW_BYTES {
            return (files, Some(i));
        }
        bytes += size;
        files.push(i);
    }
    (files, None)
}

/// Where the reader of a directory got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    /// The entry whose read set this cursor.
    from: usize,
    /// The file a reader going on in order starts next, unless it was pushed.
    next: Option<usize>,
}

/// The readers of each directory, to tell a pass in order from random reads.
#[derive(Default)]
pub struct Cursors {
    dirs: Mutex<HashMap<Ino, Cursor>>,
}

impl Cursors {
    /// A reader started entry `index` of directory `dir`, whose entries are
    /// `entries`. Returns the files to push: none unless the read goes on in
    /// listing order from the last one (or starts the directory's first
    /// file).
    pub fn started(&self, dir: Ino, entries: &[Entry], index: usize) -> Vec<usize> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let last = dirs.get(&dir).copied();
        let (files, next) = match last {
            Some(c) if c.next == Some(index) => window(entries, index),
            None if next_file(entries, None) == Some(index) => window(entries, index),
            // A read that overtook the push of its own file changes nothing.
            Some(c) if index > c.from && c.next.is_none_or(|n| index < n) => return Vec::new(),
            _ => (Vec::new(), next_file(entries, Some(index))),
        };
        // A new directory once the record is full starts it over.
        if last.is_none() && dirs.len() >= MAX_CURSORS {
            dirs.clear();
        }
        dirs.insert(dir, Cursor { from: index, next });
        files
    }

    /// Directories followed now.
    pub fn len(&self) -> usize {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One file to push: entry `index` of directory tree `dir`, inode `ino`.
pub struct Job {
    pub ino: Ino,
    pub dir: Arc<Tree>,
    pub index: usize,
}

/// The background workers that push files.
pub struct Pusher {
    tx: crossbeam_channel::Sender<Job>,
}

impl Pusher {
    /// Start `threads` workers storing into `sink`. They end when the pusher
    /// is dropped.
    pub fn start(chunks: &Arc<Chunks>, sink: Arc<dyn Sink>, threads: usize) -> Result<Pusher> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let sink = sink.clone();
            let chunks: Weak<Chunks> = Arc::downgrade(chunks);
            std::thread::Builder::new()
                .name(format!("rewind-push-{i}"))
                .spawn(move || {
                    for job in rx {
                        let Some(c) = chunks.upgrade() else { break };
                        let Some(e) = job.dir.entries.get(job.index) else {
                            continue;
                        };
                        // Damage is reported when the reader gets there.
                        if let Ok(data) = content(&c, e) {
                            let _ = sink.store(job.ino, 0, &data);
                        }
                    }
                })
                .map_err(|e| Error::io("push thread", e))?;
        }
        Ok(Pusher { tx })
    }

    /// Queue `job`; skipped when the queue is full.
    pub fn queue(&self, job: Job) {
        let _ = self.tx.try_send(job);
    }
}

/// The whole content of regular file `e`, holes as zeros. A file of one
/// chunk (most small files) is that chunk, not a copy.
pub fn content(chunks: &Chunks, e: &Entry) -> Result<Arc<Vec<u8>>> {
    if let [Extent::Data { id, len }] = e.extents[..] {
        if len as u64 == e.size {
            return chunks.fetch(&id, len);
        }
    }
    let damaged = || {
        Error::corrupt(
            format!("file {}", String::from_utf8_lossy(&e.name)),
            "its extents do not add up to its size",
        )
    };
    let mut out = Vec::with_capacity(e.size.min(MAX_FILE) as usize);
    for x in &e.extents {
        // Lengths come from a tree: check them before allocating.
        if out.len() as u64 + x.len() > e.size {
            return Err(damaged());
        }
        match *x {
            Extent::Data { id, len } => out.extend_from_slice(&chunks.fetch(&id, len)?),
            Extent::Hole { len } => out.resize(out.len() + len as usize, 0),
        }
    }
    if out.len() as u64 != e.size {
        return Err(damaged());
    }
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(sizes: &[(Kind, u64)]) -> Vec<Entry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &(kind, size))| {
                let mut e = Entry::new(format!("{i:03}").into_bytes(), kind);
                e.size = size;
                e
            })
            .collect()
    }

    #[test]
    fn next_file_skips_directories_links_and_empty_files() {
        let d = dir(&[
            (Kind::Dir, 0),
            (Kind::File, 0),
            (Kind::Symlink, 3),
            (Kind::File, 5),
            (Kind::File, 1),
        ]);
        assert_eq!(next_file(&d, None), Some(3));
        assert_eq!(next_file(&d, Some(3)), Some(4));
        assert_eq!(next_file(&d, Some(4)), None);
    }

    #[test]
    fn window_stops_at_a_large_file_and_at_its_limits() {
        let d = dir(&[
            (Kind::File, 10),
            (Kind::File, 10),
            (Kind::Dir, 0),
            (Kind::File, 10),
            (Kind::File, MAX_FILE + 1),
            (Kind::File, 10),
        ]);
        assert_eq!(window(&d, 0), (vec![1, 3], Some(4)));
        assert_eq!(window(&d, 4), (vec![5], None));

        let many = dir(&vec![(Kind::File, 1); WINDOW_FILES + 5]);
        let (files, next) = window(&many, 0);
        assert_eq!(files.len(), WINDOW_FILES);
        assert_eq!(next, Some(WINDOW_FILES + 1));

        let big = dir(&[(Kind::File, MAX_FILE); 10]);
        let (files, next) = window(&big, 0);
        assert_eq!(files.len() as u64, WINDOW_BYTES / MAX_FILE);
        assert_eq!(next, Some(files.len() + 1));
    }

    #[test]
    fn only_reads_in_listing_order_push() {
        let d = dir(&vec![(Kind::File, 1); WINDOW_FILES * 2 + 10]);
        let c = Cursors::default();
        // A random read in the middle pushes nothing; the next file does.
        assert!(c.started(7, &d, 40).is_empty());
        assert!(c.started(7, &d, 45).is_empty());
        let pushed = c.started(7, &d, 46);
        assert_eq!(pushed, (47..47 + WINDOW_FILES).collect::<Vec<_>>());
        // Reads that overtake the push change nothing; the file after the
        // window moves it on.
        assert!(c.started(7, &d, 50).is_empty());
        let more = c.started(7, &d, 47 + WINDOW_FILES);
        assert_eq!(more.first(), Some(&(48 + WINDOW_FILES)));
        // Another directory is followed apart; its first file pushes at once.
        assert_eq!(c.started(8, &d, 0).len(), WINDOW_FILES);
        // Random reads across many directories never hold more than the
        // bound.
        for dir in 100..100 + 3 * MAX_CURSORS as u64 {
            c.started(dir, &d, 5);
            assert!(c.len() <= MAX_CURSORS);
        }
    }
}
