//! The pool: file contents, then metadata, through the descriptor the walk
//! created each file with; files that failed or were cut short, removed.

use super::dirs::DirNode;
use super::{cvt, with_path, Restorer};
use crate::backend::Planned;
use crate::error::Error;
use crate::format::id::BlobId;
use crate::format::index::Location;
use crate::format::tree::{Entry, Extent};
use crate::meta::{self, cstr, Handle};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Stored bytes of a file planned when it is queued, at most.
const PLAN_BYTES: u64 = 8 << 20;

/// A file whose content the pool writes.
pub struct Job {
    /// Created empty by the walk, open for writing.
    pub fd: OwnedFd,
    /// The directory it is in.
    pub dir: Arc<DirNode>,
    pub entry: Entry,
    /// What it holds of the queue's budget ([`super::QUEUED_EXTENTS`]):
    /// its extents, and two for each planned location.
    pub queued: usize,
    pub path: PathBuf,
    /// The first member of a hard-link group: others may be linked to it.
    pub first_link: bool,
    /// Its first reads, announced to the backend ([`Restorer::plan`]), and
    /// where the data extents they cover are (found once, read by
    /// location): dropped once those are read (or the file has failed); a
    /// bigger file's writer plans the rest itself ([`Stretches`]) in the
    /// read-ahead's budget for plans made while reading, not in the
    /// queued files'.
    pub plan: Option<(Planned, Vec<Option<Location>>)>,
    /// Its status when made, if the walk took it (a hard link's first
    /// member): nothing but its content changes it before its metadata is
    /// set.
    pub made: Option<libc::stat64>,
}

/// Why a file is not finished.
enum Stop {
    Failed(Error),
    Interrupted,
}

impl Restorer<'_> {
    /// Content, then metadata through the descriptor; a file that is not
    /// complete is removed (at the end), with the links made to it.
    pub(super) fn write_file(&self, mut job: Job) {
        self.dequeue_extents(job.queued);
        let plan = job.plan.take();
        let written = self.write_content(&job, plan);
        match written {
            Ok(n) => {
                self.counts.files.fetch_add(1, Relaxed);
                self.counts.bytes.fetch_add(n, Relaxed);
                self.progress.file_done(&job.path, n);
                // Made by this restore: owner and mode may be right already.
                let fd = job.fd.as_raw_fd();
                let now = job.made.or_else(|| meta::stat_fd(fd).ok());
                self.apply_meta(Handle::Open(fd), &job.entry, &job.path, now.as_ref());
                if let (true, Some(key)) = (job.first_link, job.entry.link_key()) {
                    self.links.written(key);
                }
            }
            Err(stop) => {
                // Never leave a file that looks restored but holds wrong bytes.
                self.defer_unlink(&job.dir, &job.entry.name);
                match stop {
                    Stop::Failed(e) => self.warn(with_path(e, &job.path)),
                    Stop::Interrupted => self.interrupted.store(true, Relaxed),
                }
                if let (true, Some(key)) = (job.first_link, job.entry.link_key()) {
                    self.take_back_links(key, &job);
                }
            }
        }
    }

    /// The first member of a hard-link group failed: take back the links
    /// made to it, naming each (unless the restore is being stopped).
    fn take_back_links(&self, key: (u64, u64), job: &Job) {
        for (dir, name) in self.links.failed(key) {
            self.defer_unlink(&dir, &name);
            self.counts.files.fetch_sub(1, Relaxed);
            if crate::interrupt::requested() {
                continue;
            }
            let path = dir
                .path(&self.opts.target)
                .join(std::ffi::OsStr::from_bytes(&name));
            let why = format!(
                "not restored: a hard link of {}, which failed",
                job.path.display()
            );
            self.warn(Error::io(&path, io::Error::other(why)));
        }
    }

    /// Announce the first [`PLAN_BYTES`] of a file's data to the backend,
    /// before the file is queued: a remote one downloads them while the
    /// pool works on the files queued before.
    pub(super) fn plan(&self, extents: &[Extent]) -> Option<(Planned, Vec<Option<Location>>)> {
        let ids = extents.iter().filter_map(|x| match x {
            Extent::Data { id, .. } => Some(id),
            Extent::Hole { .. } => None,
        });
        self.repo.plan_data(ids, PLAN_BYTES)
    }

    /// The file's data, extent by extent; `plan` (its first reads, see
    /// [`Job::plan`]) is dropped once the extents it covers are read. From
    /// a remote repository, the rest of a file is planned a stretch at a
    /// time ([`Stretches`]).
    fn write_content(
        &self,
        job: &Job,
        plan: Option<(Planned, Vec<Option<Location>>)>,
    ) -> std::result::Result<u64, Stop> {
        let fd = job.fd.as_raw_fd();
        let mut offset = 0u64;
        let mut written = 0u64;
        let mut data_end = 0u64;
        let mut data_read = 0usize;
        let failed = |e| Stop::Failed(Error::io(&job.path, e));
        let mut stretches = Stretches::new(self, &job.entry.extents, plan);
        for ext in &job.entry.extents {
            if crate::interrupt::requested() {
                return Err(Stop::Interrupted);
            }
            if let Extent::Data { id, len } = ext {
                let found = stretches.at(data_read);
                let data = match found {
                    Some(loc) => self.repo.read_data_at(id, *len, loc),
                    None => self.repo.read_data(id, *len),
                }
                .map_err(Stop::Failed)?;
                data_read += 1;
                write_all_at(fd, &data, offset).map_err(failed)?;
                written += data.len() as u64;
                if !data.is_empty() {
                    data_end = offset + data.len() as u64;
                }
                self.progress.bytes_read(data.len() as u64);
            }
            offset = offset.checked_add(ext.len()).ok_or_else(|| {
                Stop::Failed(Error::corrupt(job.path.display(), "extents overflow"))
            })?;
        }
        if crate::interrupt::requested() {
            return Err(Stop::Interrupted);
        }
        let size = i64::try_from(job.entry.size)
            .map_err(|_| Stop::Failed(Error::corrupt(job.path.display(), "size out of range")))?;
        // The file was made empty (O_EXCL): its length is where its last
        // data ends, unless it ends in a hole.
        if data_end != job.entry.size {
            cvt(unsafe { libc::ftruncate64(fd, size) }).map_err(failed)?;
        }
        Ok(written)
    }

    /// Remove a file once every directory's metadata is in place (the pool
    /// runs behind the walk, which may already have set the directory's
    /// times and a read-only mode).
    pub(super) fn defer_unlink(&self, dir: &Arc<DirNode>, name: &[u8]) {
        self.doomed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((dir.clone(), name.into()));
    }

    /// The deferred removals, each directory opened again from `target` and
    /// keeping its restored mode and times.
    pub(super) fn unlink_doomed(&self, target: RawFd) {
        let doomed = std::mem::take(&mut *self.doomed.lock().unwrap_or_else(|p| p.into_inner()));
        let mut open: HashMap<*const DirNode, Option<OwnedFd>> = HashMap::new();
        for (dir, name) in &doomed {
            let fd = open
                .entry(Arc::as_ptr(dir))
                .or_insert_with(|| dir.reopen(target).ok());
            let Some(fd) = fd else {
                let path = dir.path(&self.opts.target);
                let e = io::Error::other("could not remove a failed file: directory changed");
                self.warn(Error::io(path.join(std::ffi::OsStr::from_bytes(name)), e));
                continue;
            };
            if let Ok(name) = cstr(name) {
                unlink_keeping_times(fd.as_raw_fd(), &name);
            }
        }
    }
}

/// A file's planned reads: the first stretch, planned when the walk queued
/// it, then, from a remote repository, each next one planned while the
/// one before is half read, so that its downloads run while this one is
/// decoded and written. A next stretch is planned only when the read-ahead
/// has room for it at once, in a budget of its own
/// ([`Repository::plan_data_now`]): writers never wait for room (the queued
/// files' plans, which writers release, wait for theirs). Without a plan, a
/// read downloads its window when it comes to it (and has the windows
/// after it in the pack fetched ahead, blind).
struct Stretches<'a> {
    repo: &'a crate::repo::Repository,
    extents: &'a [Extent],
    /// The data extents of the file.
    data: usize,
    /// Their blobs, listed when a stretch is first planned here.
    ids: Vec<&'a BlobId>,
    /// Planned stretches, in order: (first data extent, plan, where its
    /// blobs are); at most two.
    plans: std::collections::VecDeque<(usize, Planned, Vec<Option<Location>>)>,
    /// The first data extent no plan covers.
    end: usize,
    /// Not before this data extent does a refused plan try again.
    retry: usize,
}

/// Data extents read before a plan the read-ahead had no room for is tried
/// again.
const RETRY_AFTER: usize = 8;

impl<'a> Stretches<'a> {
    fn new(
        r: &'a Restorer<'_>,
        extents: &'a [Extent],
        first: Option<(Planned, Vec<Option<Location>>)>,
    ) -> Self {
        let remote = !r.repo.is_local();
        let data = match remote {
            true => extents
                .iter()
                .filter(|x| matches!(x, Extent::Data { .. }))
                .count(),
            false => 0,
        };
        let mut plans = std::collections::VecDeque::new();
        let mut end = 0;
        if let Some((plan, locs)) = first {
            end = locs.len();
            plans.push_back((0, plan, locs));
        }
        Stretches {
            repo: r.repo,
            extents,
            data,
            ids: Vec::new(),
            plans,
            end,
            retry: 0,
        }
    }

    /// Where data extent `i` is, if a plan found it; plans done with are
    /// dropped, and the next stretch planned when it is time.
    fn at(&mut self, i: usize) -> Option<Location> {
        while self.plans.front().is_some_and(|p| i >= p.0 + p.2.len()) {
            self.plans.pop_front();
        }
        let half = self.plans.back().map_or(0, |p| p.0 + p.2.len() / 2);
        if self.plans.len() < 2 && self.end < self.data && i >= half && i >= self.retry {
            self.plan_next(i);
        }
        let p = self.plans.front().filter(|p| i >= p.0)?;
        p.2.get(i - p.0).copied().flatten()
    }

    /// Plan the stretch after the last one planned (from data extent `i` if
    /// reads have passed it).
    fn plan_next(&mut self, i: usize) {
        let from = self.end.max(i);
        if self.ids.is_empty() {
            self.ids = self
                .extents
                .iter()
                .filter_map(|x| match x {
                    Extent::Data { id, .. } => Some(id),
                    Extent::Hole { .. } => None,
                })
                .collect();
        }
        let ids = self.ids.get(from..).unwrap_or_default().iter().copied();
        match self.repo.plan_data_now(ids, PLAN_BYTES) {
            Some((plan, locs)) if !locs.is_empty() => {
                self.end = from + locs.len();
                self.plans.push_back((from, plan, locs));
            }
            _ => self.retry = i + RETRY_AFTER,
        }
    }
}

/// Remove `name` in `dir`, keeping the directory's mode and times.
fn unlink_keeping_times(d: RawFd, name: &std::ffi::CStr) {
    let Ok(st) = meta::stat_fd(d) else { return };
    if unsafe { libc::unlinkat(d, name.as_ptr(), 0) } < 0 {
        // A read-only directory of our own: open it up for a moment.
        unsafe { libc::fchmod(d, (st.st_mode & 0o7777) | 0o300) };
        unsafe { libc::unlinkat(d, name.as_ptr(), 0) };
        unsafe { libc::fchmod(d, st.st_mode & 0o7777) };
    }
    let ts = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    unsafe { libc::futimens(d, ts.as_ptr()) };
}

fn write_all_at(fd: RawFd, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        let off = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let n = unsafe { libc::pwrite64(fd, data.as_ptr().cast(), data.len(), off) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{restore, NoChanges, RestoreOptions};
    use crate::backend::memory::MemoryBackend;
    use crate::format::tree::{Entry, Extent, Kind};
    use crate::repo::writer::RepoWriter;
    use crate::repo::{InitOptions, Repository};
    use crate::testing::noise;
    use std::path::Path;
    use std::sync::Arc;

    /// A plain restore into `target` with `threads` writers.
    fn options(target: &Path, threads: usize) -> RestoreOptions {
        RestoreOptions {
            target: target.to_path_buf(),
            includes: vec![],
            excludes: vec![],
            overwrite: false,
            delete: false,
            dry_run: false,
            protect: vec![],
            numeric_owner: true,
            threads,
        }
    }

    /// A file whose data lies in short runs between other data, restored
    /// from remote storage, downloads the windows its runs are in and no
    /// others: the rest of the file is planned as it is read, not fetched
    /// ahead blind (which brought 8 MiB after each run).
    #[test]
    fn a_file_in_runs_among_other_data_downloads_only_its_windows() {
        use crate::backend::counting::{Counter, Counting, Op};
        use crate::backend::readahead::{ReadAhead, WINDOW};
        use crate::backend::Backend;
        let counter = Counter::default();
        let mem: Arc<dyn Backend> = Arc::new(MemoryBackend::remote());
        let counted = Arc::new(Counting::new(mem, counter.clone()));
        let backend = Arc::new(ReadAhead::new(counted, 8));
        let repo = Arc::new(Repository::init(backend, &InitOptions::plain()).unwrap());
        let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
        let (runs, per_run, chunk) = (12u64, 4u64, 100_000usize);
        let mut e = Entry::new(b"dump".to_vec(), Kind::File);
        let mut content = Vec::new();
        for run in 0..runs {
            for c in 0..per_run {
                let bytes = noise(chunk, run * 100 + c + 1);
                let id = w.add_data(&bytes).unwrap();
                e.extents.push(Extent::Data {
                    id,
                    len: chunk as u32,
                });
                content.extend_from_slice(&bytes);
            }
            // Another file's data between two runs of this one.
            for o in 0..10 {
                w.add_data(&noise(1 << 20, 10_000 + run * 100 + o)).unwrap();
            }
        }
        w.flush().unwrap();
        e.mode = 0o644;
        e.nlink = 1;
        e.size = content.len() as u64;
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 2);
        let before = counter.snapshot().total(Op::Get).bytes;
        let silent = crate::progress::Silent;
        let out = restore(&repo, &e, Path::new("/dump"), &opts, &silent, &NoChanges).unwrap();
        assert_eq!(out.errors, 0);
        assert!(std::fs::read(dir.path().join("dump")).unwrap() == content);
        let down = counter.snapshot().total(Op::Get).bytes - before;
        // The windows the file's frames lie in (a run in one, or across two).
        let mut windows = std::collections::BTreeSet::new();
        for x in &e.extents {
            let Extent::Data { id, .. } = x else { continue };
            let loc = repo.lookup(id).unwrap().unwrap();
            let start = loc.frame.offset as u64;
            let end = start + loc.frame.stored_len as u64 - 1;
            windows.insert((loc.pack, start / WINDOW));
            windows.insert((loc.pack, end / WINDOW));
        }
        assert!(windows.len() as u64 <= 2 * runs);
        assert!(
            down <= windows.len() as u64 * WINDOW,
            "{down} bytes downloaded for {} bytes in {} windows",
            content.len(),
            windows.len()
        );
    }

    /// A file of more extents than the queue of files holds (a big sparse
    /// image) is queued alone and restored, from a local repository and
    /// from a remote one (whose plan of its first reads counts too),
    /// rather than wait for room it can never have.
    #[test]
    fn a_file_of_more_extents_than_the_queue_holds_is_restored() {
        for remote in [false, true] {
            let mem = match remote {
                true => MemoryBackend::remote(),
                false => MemoryBackend::new(),
            };
            let repo = Arc::new(Repository::init(Arc::new(mem), &InitOptions::plain()).unwrap());
            let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
            let data = w.add_data(&[5u8; 64]).unwrap();
            w.flush().unwrap();
            let holes = super::super::QUEUED_EXTENTS as usize + 10;
            let mut e = Entry::new(b"image".to_vec(), Kind::File);
            e.mode = 0o644;
            e.nlink = 1;
            e.extents = vec![Extent::Data { id: data, len: 64 }];
            e.extents
                .extend((0..holes).map(|_| Extent::Hole { len: 1 }));
            e.extents.push(Extent::Data { id: data, len: 64 });
            e.size = 128 + holes as u64;
            let dir = tempfile::tempdir().unwrap();
            let opts = options(dir.path(), 2);
            let (tx, rx) = std::sync::mpsc::channel();
            let run = {
                let repo = repo.clone();
                std::thread::spawn(move || {
                    let silent = crate::progress::Silent;
                    let out = restore(&repo, &e, Path::new("/image"), &opts, &silent, &NoChanges);
                    let _ = tx.send(out.map(|o| o.errors));
                })
            };
            let out = rx.recv_timeout(std::time::Duration::from_secs(120));
            assert_eq!(
                out.expect("the restore waits for room it never gets")
                    .unwrap(),
                0
            );
            run.join().unwrap();
            let bytes = std::fs::read(dir.path().join("image")).unwrap();
            assert_eq!(bytes.len(), 128 + holes, "remote: {remote}");
            assert!(bytes[..64].iter().all(|&b| b == 5) && bytes[bytes.len() - 64..] == [5u8; 64]);
            assert!(bytes[64..bytes.len() - 64].iter().all(|&b| b == 0));
        }
    }

    /// A file's length is its entry's size whatever its last extent is: a
    /// hole, or (a tree that allows it) an empty data extent after a hole,
    /// which leaves the last byte written short of the size.
    #[test]
    fn a_file_ending_in_a_hole_or_an_empty_extent_has_its_full_size() {
        let repo = Arc::new(
            Repository::init(Arc::new(MemoryBackend::new()), &InitOptions::plain()).unwrap(),
        );
        let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
        let head = w.add_data(&[7u8; 100]).unwrap();
        let empty = w.add_data(b"").unwrap();
        w.flush().unwrap();
        let tails = [
            vec![Extent::Hole { len: 50 }],
            vec![Extent::Hole { len: 50 }, Extent::Data { id: empty, len: 0 }],
        ];
        for (i, tail) in tails.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let mut e = Entry::new(b"f".to_vec(), Kind::File);
            e.mode = 0o644;
            e.nlink = 1;
            e.extents = vec![Extent::Data { id: head, len: 100 }];
            e.extents.extend(tail);
            e.size = 150;
            let opts = options(dir.path(), 1);
            let silent = crate::progress::Silent;
            let out = restore(&repo, &e, Path::new("/f"), &opts, &silent, &NoChanges).unwrap();
            assert_eq!(out.errors, 0, "case {i}");
            let bytes = std::fs::read(dir.path().join("f")).unwrap();
            assert_eq!(bytes.len(), 150, "case {i}: the file is cut short");
            assert!(bytes[..100].iter().all(|&b| b == 7) && bytes[100..].iter().all(|&b| b == 0));
        }
    }
}
