//! The one reader of file content: a file's extents, in order, as data pieces
//! and holes, decoded ahead of the consumer by a pool of threads.
//!
//! ```text
//! caller's files ─> dispatcher ─ one slot per extent, in file order ─────────────> consumer
//!                       └─ data extents ─> workers: read_data (decode, id, length) ─┘ (waits on its slot)
//! ```
//!
//! A [`ContentStream`] takes the caller's files on a thread of its own, from
//! an iterator or pushed into a [`Feed`] by a producer that runs there (the
//! dump's walk, which loads trees there too), and queues a slot for each
//! file and each of its extents, in order.
//! Data extents also go to the workers, which read them through
//! [`Repository::read_data`]: decompressed, checked against their id and
//! against the length the tree gives. The consumer takes the slots in order
//! and waits only for the one it needs, so decoding the next chunks overlaps
//! its writing.
//!
//! Memory is bounded twice: a data extent is queued only while the bytes
//! queued but not yet taken by the consumer stay within the byte budget (one
//! extent is always let through, however large, so a file always makes
//! progress), and at most [`SLOTS`] slots wait (files without data, holes).
//!
//! A failed extent is an `Err` piece at its place in the order: everything
//! before it arrives first, and the consumer decides whether to go on.

use super::Repository;
use crate::error::{Error, Result};
use crate::format::tree::{Entry, Extent};
use crate::signal::Signal;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Slots (files, holes, data extents) queued ahead of the consumer at most.
pub const SLOTS: usize = 1024;

/// One run of a file's content.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes of a data blob, checked against its id and the tree's length.
    Data(Vec<u8>),
    /// This many bytes of hole (zeros).
    Hole(u64),
}

/// Anything with content to read: an entry, or its extents alone.
pub trait Extents {
    /// The content, in file order. Empty for what has none.
    fn extents(&self) -> &[Extent];
}

impl Extents for Entry {
    fn extents(&self) -> &[Extent] {
        &self.extents
    }
}

impl Extents for Vec<Extent> {
    fn extents(&self) -> &[Extent] {
        self
    }
}

/// How far and how wide to read ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAhead {
    /// Worker threads decoding data extents.
    pub threads: usize,
    /// Decoded bytes waiting for the consumer at most (plus one extent).
    pub budget: u64,
}

impl Default for ReadAhead {
    /// Two workers per core (a worker waits on the disk part of the time), at
    /// least two and at most eight; 16 MiB of decoded data, about 128 chunks
    /// of the default average size.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ReadAhead {
            threads: (cores * 2).clamp(2, 8),
            budget: 16 << 20,
        }
    }
}

/// What waits in the queue, in order.
enum Slot<T> {
    File(T),
    Hole(u64),
    Data {
        len: u32,
        result: Receiver<Result<Vec<u8>>>,
    },
}

/// A data extent for a worker; the answer goes to its slot.
struct Job {
    id: crate::format::id::BlobId,
    len: u32,
    reply: Sender<Result<Vec<u8>>>,
}

/// Bytes queued but not yet taken by the consumer, against the limit (also
/// what bounds the extents of the files a restore queues for its writers).
pub(crate) struct Budget {
    limit: u64,
    state: Mutex<BudgetState>,
    /// Bytes were released, or the stream closed (a restore releases every
    /// file: signalled only to waiters).
    changed: Signal,
    peak: AtomicU64,
    waits: AtomicU64,
}

#[derive(Default)]
struct BudgetState {
    used: u64,
    closed: bool,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Self {
        Budget {
            limit,
            state: Mutex::new(BudgetState::default()),
            changed: Signal::default(),
            peak: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until `n` more bytes fit (or nothing is queued), and count them.
    /// False once the stream is closed.
    pub(crate) fn acquire(&self, n: u64) -> bool {
        let mut st = self.lock();
        let mut waited = false;
        while !st.closed && st.used > 0 && st.used.saturating_add(n) > self.limit {
            if !waited {
                self.waits.fetch_add(1, Relaxed);
                waited = true;
            }
            st = self.changed.wait(st);
        }
        if st.closed {
            return false;
        }
        st.used = st.used.saturating_add(n);
        self.peak.fetch_max(st.used, Relaxed);
        true
    }

    pub(crate) fn release(&self, n: u64) {
        let mut st = self.lock();
        st.used = st.used.saturating_sub(n);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Files and their content, in the order the caller's iterator gave them,
/// read ahead. Take a file with [`ContentStream::next_file`], then its pieces
/// with [`ContentStream::next_piece`] until it returns `None`. Dropping the
/// stream stops and joins its threads.
pub struct ContentStream<T> {
    slots: Option<Receiver<Slot<T>>>,
    /// A file slot met while looking for pieces of the one before.
    peeked: Option<Slot<T>>,
    budget: Arc<Budget>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Extents + Send + 'static> ContentStream<T> {
    /// Start reading the content of `files` ahead.
    pub fn start<I>(repo: Arc<Repository>, files: I, opts: ReadAhead) -> Result<Self>
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        Self::start_with(repo, opts, move |feed| {
            for file in files {
                if !feed.send(file) {
                    return;
                }
            }
        })
    }

    /// Start reading ahead the content of the files `produce` sends, in
    /// order, on a thread of its own (the dump's walk runs there, pushing).
    pub fn start_with<P>(repo: Arc<Repository>, opts: ReadAhead, produce: P) -> Result<Self>
    where
        P: FnOnce(&mut Feed<'_, T>) + Send + 'static,
    {
        let budget = Arc::new(Budget::new(opts.budget));
        let (slot_tx, slot_rx) = crossbeam_channel::bounded(SLOTS);
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        let mut stream = ContentStream {
            slots: Some(slot_rx),
            peeked: None,
            budget: budget.clone(),
            threads: Vec::new(),
        };
        for i in 0..opts.threads.max(1) {
            let (jobs, repo, budget) = (job_rx.clone(), repo.clone(), budget.clone());
            let worker = std::thread::Builder::new()
                .name(format!("rewind-read-{i}"))
                .spawn(move || work(&repo, &jobs, &budget));
            match worker {
                Ok(w) => stream.threads.push(w),
                Err(e) => {
                    // The workers started end once no sender is left: drop
                    // it before the stream joins them.
                    drop(job_tx);
                    return Err(Error::io("content reader thread", e));
                }
            }
        }
        let dispatcher = std::thread::Builder::new()
            .name("rewind-content".into())
            .spawn(move || {
                produce(&mut Feed {
                    slots: &slot_tx,
                    jobs: &job_tx,
                    budget: &budget,
                })
            })
            .map_err(|e| Error::io("content reader thread", e))?;
        stream.threads.push(dispatcher);
        Ok(stream)
    }
}

impl<T> ContentStream<T> {
    fn take(&mut self) -> Option<Slot<T>> {
        match self.peeked.take() {
            Some(s) => Some(s),
            None => self.slots.as_ref()?.recv().ok(),
        }
    }

    /// The next file; pieces of the previous one not taken are dropped.
    /// `None` once the caller's iterator is done.
    pub fn next_file(&mut self) -> Option<T> {
        loop {
            match self.take()? {
                Slot::File(t) => return Some(t),
                Slot::Data { len, .. } => self.budget.release(len as u64),
                Slot::Hole(_) => {}
            }
        }
    }

    /// The next piece of the current file, `None` after its last.
    pub fn next_piece(&mut self) -> Option<Result<Piece>> {
        match self.take()? {
            file @ Slot::File(_) => {
                self.peeked = Some(file);
                None
            }
            Slot::Hole(n) => Some(Ok(Piece::Hole(n))),
            Slot::Data { len, result } => {
                let got = result.recv();
                self.budget.release(len as u64);
                Some(match got {
                    Ok(r) => r.map(Piece::Data),
                    Err(_) => Err(Error::io(
                        "content reader thread",
                        std::io::Error::other("a reader thread stopped"),
                    )),
                })
            }
        }
    }

    /// The most decoded bytes that waited for the consumer at once so far.
    pub fn peak_read_ahead(&self) -> u64 {
        self.budget.peak.load(Relaxed)
    }

    /// How many times reading ahead has had to wait for the consumer to take
    /// bytes (counted when the wait starts).
    pub fn budget_waits(&self) -> u64 {
        self.budget.waits.load(Relaxed)
    }
}

impl<T> Drop for ContentStream<T> {
    fn drop(&mut self) {
        self.budget.close();
        self.peeked = None;
        // The dispatcher's next send fails, or its budget wait ends; the
        // workers end when it drops the job queue.
        self.slots = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The dispatcher's side of a [`ContentStream`]: slots in file order, data
/// extents to the workers.
pub struct Feed<'a, T> {
    slots: &'a Sender<Slot<T>>,
    jobs: &'a Sender<Job>,
    budget: &'a Budget,
}

impl<T: Extents> Feed<'_, T> {
    /// Queue `file` and its extents (waiting while the byte budget is
    /// spent); `false` once the consumer is gone: send nothing more.
    pub fn send(&mut self, file: T) -> bool {
        let extents = file.extents().to_vec();
        if self.budget.is_closed() || self.slots.send(Slot::File(file)).is_err() {
            return false;
        }
        for ext in extents.iter().filter(|e| !e.is_empty()) {
            let slot = match *ext {
                Extent::Hole { len } => Slot::Hole(len),
                Extent::Data { id, len } => {
                    if !self.budget.acquire(len as u64) {
                        return false;
                    }
                    let (reply, result) = crossbeam_channel::bounded(1);
                    if self.jobs.send(Job { id, len, reply }).is_err() {
                        return false;
                    }
                    Slot::Data { len, result }
                }
            };
            if self.slots.send(slot).is_err() {
                return false;
            }
        }
        true
    }
}

/// A worker: decode data extents until the queue closes.
fn work(repo: &Repository, jobs: &Receiver<Job>, budget: &Budget) {
    for job in jobs {
        if budget.is_closed() {
            continue;
        }
        // The consumer may be gone (it stopped at an earlier error).
        let _ = job.reply.send(repo.read_data(&job.id, job.len));
    }
}

/// The content of one file, in order, read ahead.
pub struct Pieces(ContentStream<Vec<Extent>>);

impl Pieces {
    pub fn new(repo: Arc<Repository>, extents: Vec<Extent>, opts: ReadAhead) -> Result<Self> {
        let mut stream = ContentStream::start(repo, std::iter::once(extents), opts)?;
        stream.next_file();
        Ok(Pieces(stream))
    }
}

impl Iterator for Pieces {
    type Item = Result<Piece>;
    fn next(&mut self) -> Option<Result<Piece>> {
        self.0.next_piece()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::FileType;
    use crate::format::id::BlobId;
    use crate::repo::{writer::RepoWriter, InitOptions};

    struct Fixture {
        mem: Arc<MemoryBackend>,
        repo: Arc<Repository>,
    }

    fn fixture() -> Fixture {
        let mem = Arc::new(MemoryBackend::new());
        let repo = Arc::new(Repository::init(mem.clone(), &InitOptions::test()).unwrap());
        Fixture { mem, repo }
    }

    /// Store `blobs` and return their extents.
    fn store(repo: &Arc<Repository>, blobs: &[Vec<u8>]) -> Vec<Extent> {
        let w = RepoWriter::new(repo.clone(), 1, false).unwrap();
        let ext = blobs
            .iter()
            .map(|b| Extent::Data {
                id: w.add_data(b).unwrap(),
                len: b.len() as u32,
            })
            .collect();
        w.flush().unwrap();
        ext
    }

    fn blob(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j * 7 + j / 251) as u8).collect()
    }

    /// A file's content as the stream gives it: holes as zeros.
    fn drain_file<T>(s: &mut ContentStream<T>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(p) = s.next_piece() {
            match p? {
                Piece::Data(d) => out.extend_from_slice(&d),
                Piece::Hole(n) => out.resize(out.len() + n as usize, 0),
            }
        }
        Ok(out)
    }

    #[test]
    fn files_come_back_in_order_with_their_holes() {
        let f = fixture();
        let blobs: Vec<Vec<u8>> = (0..60).map(|i| blob(i, 1000 + i * 5000)).collect();
        let ext = store(&f.repo, &blobs);
        // Files of 0 to 5 extents, holes between, before and after.
        let mut files = Vec::new();
        let mut want = Vec::new();
        let mut next = ext.iter().zip(&blobs);
        for n in 0..20usize {
            let mut file = Vec::new();
            let mut bytes = Vec::new();
            for k in 0..n % 6 {
                if (n + k) % 3 == 0 {
                    file.push(Extent::Hole {
                        len: 4096 * k as u64,
                    });
                    bytes.resize(bytes.len() + 4096 * k, 0);
                }
                let Some((e, b)) = next.next() else { break };
                file.push(*e);
                bytes.extend_from_slice(b);
            }
            if n % 4 == 0 {
                file.push(Extent::Hole { len: 10 });
                bytes.extend_from_slice(&[0; 10]);
            }
            files.push(file);
            want.push(bytes);
        }
        let opts = ReadAhead {
            threads: 4,
            budget: 64 << 10,
        };
        let mut s = ContentStream::start(f.repo.clone(), files.clone().into_iter(), opts).unwrap();
        for (i, bytes) in want.iter().enumerate() {
            assert_eq!(s.next_file().as_ref(), Some(&files[i]), "file {i}");
            assert_eq!(&drain_file(&mut s).unwrap(), bytes, "file {i}");
        }
        assert!(s.next_file().is_none());
        // The budget, or one extent beyond it.
        let largest = blobs.iter().map(Vec::len).max().unwrap() as u64;
        assert!(s.peak_read_ahead() <= largest.max(64 << 10));
    }

    #[test]
    fn pieces_not_taken_are_skipped_with_their_file() {
        let f = fixture();
        let ext = store(&f.repo, &[blob(1, 9000), blob(2, 9000), blob(3, 70)]);
        let files = vec![vec![ext[0], ext[1]], vec![ext[2]]];
        let mut s =
            ContentStream::start(f.repo.clone(), files.into_iter(), ReadAhead::default()).unwrap();
        s.next_file().unwrap();
        assert_eq!(s.next_piece().unwrap().unwrap(), Piece::Data(blob(1, 9000)));
        assert_eq!(s.next_file().unwrap(), vec![ext[2]]);
        assert_eq!(drain_file(&mut s).unwrap(), blob(3, 70));
        assert!(s.next_file().is_none());
    }

    /// Reading ahead stops at the budget: the dispatcher has to wait for the
    /// consumer, and never holds more than the budget.
    #[test]
    fn read_ahead_stays_within_its_budget() {
        let f = fixture();
        let blobs: Vec<Vec<u8>> = (0..64).map(|i| blob(i, 256 << 10)).collect();
        let ext = store(&f.repo, &blobs);
        let opts = ReadAhead {
            threads: 3,
            budget: 1 << 20,
        };
        let mut s =
            ContentStream::start(f.repo.clone(), std::iter::once(ext.clone()), opts).unwrap();
        s.next_file().unwrap();
        // Take nothing until the dispatcher waits (or, were the budget
        // broken, has queued more than it).
        while s.budget_waits() == 0 && s.peak_read_ahead() <= 1 << 20 {
            std::thread::yield_now();
        }
        for b in &blobs {
            assert_eq!(s.next_piece().unwrap().unwrap(), Piece::Data(b.clone()));
        }
        assert!(s.next_piece().is_none());
        assert_eq!(s.peak_read_ahead(), 1 << 20, "4 blobs of 256 KiB at most");
        assert!(s.budget_waits() > 0);
    }

    /// One extent larger than the whole budget still goes through.
    #[test]
    fn an_extent_larger_than_the_budget_is_read_alone() {
        let f = fixture();
        let ext = store(&f.repo, &[blob(5, 300_000), blob(6, 300_000)]);
        let opts = ReadAhead {
            threads: 2,
            budget: 1000,
        };
        let got: Vec<Piece> = Pieces::new(f.repo.clone(), ext, opts)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            got,
            vec![Piece::Data(blob(5, 300_000)), Piece::Data(blob(6, 300_000))]
        );
    }

    /// A damaged blob is an error at its place: what comes before arrives
    /// intact, and the stream goes on after it.
    #[test]
    fn a_damaged_blob_fails_in_its_place() {
        let f = fixture();
        // Level-1 compression of distinct large blobs: one frame each.
        let blobs: Vec<Vec<u8>> = (0..3).map(|i| blob(i + 10, 200_000)).collect();
        let ext = store(&f.repo, &blobs);
        let Extent::Data { id, .. } = ext[1] else {
            unreachable!()
        };
        let loc = f.repo.lookup(&id).unwrap().unwrap();
        f.mem.tamper(FileType::Pack, &loc.pack.to_hex(), |b| {
            b[loc.frame.offset as usize + loc.frame.stored_len as usize / 2] ^= 0x10
        });
        let mut p = Pieces::new(f.repo.clone(), ext, ReadAhead::default()).unwrap();
        assert_eq!(p.next().unwrap().unwrap(), Piece::Data(blobs[0].clone()));
        let err = p.next().unwrap().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(p.next().unwrap().unwrap(), Piece::Data(blobs[2].clone()));
        assert!(p.next().is_none());
    }

    /// A tree that gives a blob the wrong length is refused, not trusted.
    #[test]
    fn a_length_the_tree_does_not_agree_with_is_an_error() {
        let f = fixture();
        let ext = store(&f.repo, &[blob(7, 500)]);
        let Extent::Data { id, .. } = ext[0] else {
            unreachable!()
        };
        for len in [499, 501] {
            let mut p = Pieces::new(
                f.repo.clone(),
                vec![Extent::Data { id, len }],
                ReadAhead::default(),
            )
            .unwrap();
            let err = p.next().unwrap().unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            assert!(
                err.to_string().contains(&format!("the tree {len}")),
                "{err}"
            );
        }
        let missing = Extent::Data {
            id: BlobId([9; 32]),
            len: 5,
        };
        let mut p = Pieces::new(f.repo.clone(), vec![missing], ReadAhead::default()).unwrap();
        assert!(matches!(p.next(), Some(Err(Error::Corrupt { .. }))));
    }

    /// Dropping a stream in the middle of endless input stops its threads.
    #[test]
    fn dropping_the_stream_stops_reading() {
        let f = fixture();
        let ext = store(&f.repo, &[blob(8, 100_000)]);
        let opts = ReadAhead {
            threads: 2,
            budget: 150_000,
        };
        let mut s =
            ContentStream::start(f.repo.clone(), std::iter::repeat(ext.clone()), opts).unwrap();
        for _ in 0..3 {
            s.next_file().unwrap();
            assert_eq!(drain_file(&mut s).unwrap(), blob(8, 100_000));
        }
        drop(s); // joins: the test ends only if every thread did
    }
}
