//! Read-ahead for packs in remote storage: small range reads become reads of
//! whole windows, kept for the next reads near them, and reads announced
//! ahead ([`Backend::plan`]) are downloaded before they are made.
//!
//! A restore or the mount reads a pack a frame at a time (tens of KiB),
//! mostly in the order the backup wrote them. On object storage each read
//! is a request with a round trip and a price; [`ReadAhead`] cuts each pack
//! into aligned windows of [`WINDOW`] bytes (the last one clipped at the
//! pack's end, learnt once per pack by `stat`) and turns a small read that
//! no kept window holds into a download of its window. Windows never
//! overlap, so readers that enter a pack at different places (a restore's
//! threads, each on its own files) never download a byte twice while it is
//! kept; a read across a window's end takes from both. A read that ends at
//! the pack's end and no kept window holds (a trailer, for check and
//! repair) downloads only its bytes. Threads whose reads fall in a window
//! being downloaded wait for it. A failed download is not kept: the next
//! read tries again. Objects are write-once, so a kept window never goes
//! stale. Everything but small pack range reads passes straight through,
//! and so do all reads of a local backend (never wrapped).
//!
//! # Planned windows
//!
//! A reader that knows what it will read next (a restore, for each file it
//! queues) plans it: the windows its small reads fall in, at most
//! [`PLAN_MAX`] per plan, are *pinned* in the plan's order, and up to
//! `connections - READERS_SHARE` threads download pinned windows in that order, so that the
//! connections stay busy while readers decode and write. A window stays as
//! long as one plan that pinned it is alive (counted once per plan, however
//! many reads of it the plan makes), then is an ordinary kept window. At
//! most [`PLANNED`] windows are pinned by plans made ahead
//! ([`Backend::plan`]): one that would pin more waits until plans are
//! dropped (a plan made when none is alive never waits, so a lone plan
//! cannot wait for itself). A pinned window no longer pinned by
//! the time its turn comes is not downloaded. A reader that comes to a
//! pinned window still queued downloads it itself, and one whose download
//! failed is left for the reader too.
//!
//! # Fetching ahead
//!
//! Windows not planned are also fetched before they are read, on threads
//! of their own: a new window has the one after it fetched; a window read
//! after the one before it (a reader going forward through the pack), or
//! one fetched ahead, has the next [`AHEAD`] fetched. A plan holds the
//! first of its reads whose windows fit [`PLAN_MAX`] and says how many
//! those are; a reader that knows what it reads after them (a restore's
//! writer, through a file's extents) plans that next, before it gets
//! there ([`Backend::plan_now`], which never waits), rather than leave it
//! to this blind guess: the frames of a file changed since an earlier
//! backup sit in short runs among other files' data, and each run would
//! have 8 MiB after it fetched for nothing.
//!
//! Plans made while reading ([`Backend::plan_now`]) have a budget of their
//! own, [`LATER`] windows: a writer planning the rest of a big file takes
//! nothing from the plans of the files queued behind it, nor they from it.
//!
//! # Memory
//!
//! At most [`KEPT`] windows not pinned, [`PLANNED`] pinned by plans and
//! [`LATER`] by plans made while reading are held (`(KEPT + PLANNED +
//! LATER) * WINDOW`, 176 MiB), besides the reads being copied out of them.

use super::{Backend, FileType, ObjectInfo, Parts, Planned};
use crate::error::{Error, Result};
use crate::signal::Signal;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The size of a window.
pub const WINDOW: u64 = 2 << 20;
/// Windows kept in memory that no plan pins, at most (64 MiB).
pub const KEPT: usize = 32;
/// Windows fetched ahead of a reader going forward through a pack.
pub const AHEAD: usize = 4;
/// Windows pinned by plans, at most (64 MiB).
pub const PLANNED: usize = 32;
/// Windows pinned by plans made while reading, at most (48 MiB).
pub const LATER: usize = 24;
/// Windows one plan pins, at most (the reader plans what follows).
pub const PLAN_MAX: usize = 4;
const _: () = assert!(PLAN_MAX <= PLANNED, "a plan alone must fit the budget");

/// Connections left to readers' own downloads when planned windows are
/// fetched: the fetchers are the rest (14 of a bucket's default 16).
pub const READERS_SHARE: usize = 2;

/// A window's bytes: filled once by its first reader, `None` until then
/// (or after a failed download).
type Slot = Arc<Mutex<Option<Arc<Parts>>>>;

/// Window `k` of pack `name`: bytes from `k * WINDOW` to the next window's
/// start or the pack's end.
struct Window {
    name: String,
    k: u64,
    slot: Slot,
    /// Its first read has the windows after it fetched ahead.
    ahead: bool,
    /// The live plans that pinned it.
    pins: usize,
    /// Of those, plans made while reading ([`Backend::plan_now`]).
    later: usize,
    /// In the queue of planned downloads.
    queued: bool,
}

impl Window {
    fn new(name: &str, k: u64, ahead: bool) -> Window {
        Window {
            name: name.to_string(),
            k,
            slot: Slot::default(),
            ahead,
            pins: 0,
            later: 0,
            queued: false,
        }
    }

    fn handle(&self) -> Handle {
        Handle {
            name: self.name.clone(),
            k: self.k,
            slot: self.slot.clone(),
        }
    }
}

/// What a download of a window needs.
struct Handle {
    name: String,
    k: u64,
    slot: Slot,
}

/// The kept windows and the planned downloads.
#[derive(Default)]
struct State {
    /// Least recently used first.
    windows: VecDeque<Window>,
    /// Windows with `pins > 0`.
    pinned: usize,
    /// Windows pinned by plans made ahead ([`Backend::plan`]), and by
    /// plans made while reading ([`Backend::plan_now`]): each budget's
    /// count.
    first: usize,
    later: usize,
    /// Pinned windows to download, in the order they were planned.
    queue: VecDeque<Handle>,
    /// Threads downloading from `queue`.
    fetchers: usize,
}

impl State {
    fn find(&self, name: &str, k: u64) -> Option<usize> {
        self.windows.iter().position(|x| x.k == k && x.name == name)
    }

    /// How many of `windows` a new plan would add to the budget of plans
    /// made while reading (`later`), or of the others: those not pinned
    /// by a plan of that kind yet.
    fn unpinned(&self, windows: &[(String, u64)], later: bool) -> usize {
        let pinned = |name: &str, k: u64| {
            self.find(name, k).is_some_and(|p| {
                let w = &self.windows[p];
                match later {
                    true => w.later > 0,
                    false => w.pins > w.later,
                }
            })
        };
        windows.iter().filter(|(n, k)| !pinned(n, *k)).count()
    }

    /// Enter `w` as the most recently used window.
    fn push(&mut self, w: Window) {
        self.windows.push_back(w);
        self.evict();
    }

    /// Drop the least recently used windows not pinned beyond [`KEPT`].
    fn evict(&mut self) {
        let mut free = self.windows.len() - self.pinned;
        let mut i = 0;
        while free > KEPT && i < self.windows.len() {
            if self.windows[i].pins == 0 {
                self.windows.remove(i);
                free -= 1;
            } else {
                i += 1;
            }
        }
    }

    /// Window `k` of `name`, made most recently used (or a new one); with
    /// the windows to fetch ahead of it (see the module docs), already
    /// entered as kept.
    fn slot(&mut self, name: &str, k: u64, size: u64) -> (Handle, Vec<Handle>) {
        let (mut window, ahead) = match self.find(name, k) {
            Some(pos) => {
                let window = self.windows.remove(pos).expect("position is in range");
                let ahead = if window.ahead { AHEAD } else { 0 };
                (window, ahead)
            }
            None => {
                let forward = k > 0 && self.find(name, k - 1).is_some();
                (Window::new(name, k, false), if forward { AHEAD } else { 1 })
            }
        };
        window.ahead = false;
        let out = window.handle();
        self.push(window);
        let mut fetch = Vec::new();
        for j in k + 1..=k + ahead as u64 {
            if j.saturating_mul(WINDOW) >= size {
                break;
            }
            if self.find(name, j).is_some() {
                continue;
            }
            let w = Window::new(name, j, true);
            fetch.push(w.handle());
            self.push(w);
        }
        (out, fetch)
    }

    /// Pin window `k` of `name` for one more plan; the window to download,
    /// when it is new, or holds nothing and is neither queued nor being
    /// downloaded.
    fn pin(&mut self, name: &str, k: u64, later: bool) -> Option<Handle> {
        let pos = match self.find(name, k) {
            Some(pos) => pos,
            None => {
                self.windows.push_back(Window::new(name, k, false));
                self.windows.len() - 1
            }
        };
        let w = &mut self.windows[pos];
        w.pins += 1;
        if w.pins == 1 {
            self.pinned += 1;
        }
        if later {
            w.later += 1;
            if w.later == 1 {
                self.later += 1;
            }
        } else if w.pins - w.later == 1 {
            self.first += 1;
        }
        let empty = matches!(w.slot.try_lock().as_deref(), Ok(None));
        if !empty || w.queued {
            return None;
        }
        w.queued = true;
        Some(w.handle())
    }

    /// A plan that pinned window `k` of `name` is gone.
    fn unpin(&mut self, name: &str, k: u64, later: bool) {
        if let Some(pos) = self.find(name, k) {
            let w = &mut self.windows[pos];
            let mine = match later {
                true => w.later,
                false => w.pins - w.later,
            };
            if mine == 0 {
                return;
            }
            w.pins -= 1;
            if w.pins == 0 {
                self.pinned -= 1;
            }
            if later {
                w.later -= 1;
                if w.later == 0 {
                    self.later -= 1;
                }
            } else if w.pins == w.later {
                self.first -= 1;
            }
        }
    }

    /// The next queued window still pinned (the very window, not one made
    /// again since), or `None` when the queue is empty.
    fn next_planned(&mut self) -> Option<Handle> {
        while let Some(h) = self.queue.pop_front() {
            let Some(p) = self.find(&h.name, h.k) else {
                continue;
            };
            let w = &mut self.windows[p];
            if Arc::ptr_eq(&w.slot, &h.slot) {
                w.queued = false;
                if w.pins > 0 {
                    return Some(h);
                }
            }
        }
        None
    }
}

/// Pack sizes, each asked for once.
type Sizes = Mutex<HashMap<String, Arc<Mutex<Option<u64>>>>>;

/// What the read-ahead, its threads and its plans share.
struct Shared {
    inner: Arc<dyn Backend>,
    sizes: Sizes,
    state: Mutex<State>,
    /// Signalled when a plan is dropped.
    released: Signal,
    /// Downloads ahead that have not ended yet (see [`ReadAhead::quiesce`]).
    pending: (Mutex<usize>, Condvar),
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pack `name`'s size, asked for once (threads that want it together
    /// wait for one `stat`).
    fn pack_size(&self, name: &str) -> Result<u64> {
        let slot = {
            let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
            match sizes.get(name) {
                Some(slot) => slot.clone(),
                None => {
                    if sizes.len() >= 4096 {
                        sizes.clear();
                    }
                    sizes.entry(name.to_string()).or_default().clone()
                }
            }
        };
        let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = *held {
            return Ok(n);
        }
        let n = self.inner.stat(FileType::Pack, name)?.size;
        *held = Some(n);
        Ok(n)
    }

    /// Download window `w` of a pack of `size` bytes unless it is filled or
    /// being downloaded (a failure is left for its reader).
    fn fill_free(&self, w: &Handle, size: u64) {
        let Ok(mut held) = w.slot.try_lock() else {
            return;
        };
        if held.is_none() {
            let _ = self.download(w, size).map(|bytes| *held = Some(bytes));
        }
    }

    fn download(&self, w: &Handle, size: u64) -> Result<Arc<Parts>> {
        let start = w.k.saturating_mul(WINDOW);
        let end = size.min(start.saturating_add(WINDOW));
        if end <= start {
            return Err(short(&w.name, start.saturating_add(1)));
        }
        let len = (end - start) as usize;
        let bytes = self
            .inner
            .get_range_parts(FileType::Pack, &w.name, start, len)?;
        if bytes.len() != len {
            return Err(short(&w.name, end));
        }
        Ok(Arc::new(bytes))
    }

    /// The bytes of window `w` of a pack of `size` bytes, downloaded once.
    fn fill(&self, w: &Handle, size: u64) -> Result<Arc<Parts>> {
        let mut held = w.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = held.as_ref() {
            return Ok(bytes.clone());
        }
        let bytes = self.download(w, size)?;
        *held = Some(bytes.clone());
        Ok(bytes)
    }

    fn pending(&self, delta: isize) {
        let mut n = self.pending.0.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.pending.1.notify_all();
        }
    }

    /// A fetcher: download planned windows until none is queued (a failed
    /// download is left for the reader to try again).
    fn fetch_planned(&self) {
        loop {
            let next = {
                let mut st = self.state();
                let next = st.next_planned();
                if next.is_none() {
                    st.fetchers -= 1;
                }
                next
            };
            let Some(w) = next else { break };
            if let Ok(size) = self.pack_size(&w.name) {
                self.fill_free(&w, size);
            }
        }
    }
}

fn short(name: &str, end: u64) -> Error {
    super::ends_before(FileType::Pack, name, end)
}

/// Windows pinned by one plan, released when it is dropped.
struct Plan {
    shared: Arc<Shared>,
    windows: Vec<(String, u64)>,
    /// Made while reading ([`Backend::plan_now`]).
    later: bool,
}

impl Drop for Plan {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state();
            for (name, k) in &self.windows {
                st.unpin(name, *k, self.later);
            }
            st.evict();
        }
        // A restore drops a plan for every file: signalled only to waiters.
        self.shared.released.notify_all();
    }
}

/// The distinct windows of the first of `reads` whose windows fit one
/// plan ([`PLAN_MAX`]), and how many reads those are. Reads that pass
/// through (empty, or a window or more) need none.
fn windows_covering(reads: &[(String, u64, u64)]) -> (Vec<(String, u64)>, usize) {
    let mut want: Vec<(String, u64)> = Vec::new();
    for (i, (name, offset, len)) in reads.iter().enumerate() {
        if !fit_windows(&mut want, name, *offset, *len) {
            return (want, i);
        }
    }
    (want, reads.len())
}

/// Add the windows that reading `len` bytes at `offset` of pack `pack`
/// takes to `held`, the windows of one plan so far; `false` (adding none)
/// when they would make more than [`PLAN_MAX`]. A read that passes
/// through (empty, or a window or more) takes none. Generic over how a
/// pack is named, so that a repository counts by pack id what the plan will
/// pin by name.
pub(crate) fn fit_windows<P: PartialEq + Clone>(
    held: &mut Vec<(P, u64)>,
    pack: &P,
    offset: u64,
    len: u64,
) -> bool {
    let end = offset.saturating_add(len);
    if len == 0 || len >= WINDOW || end == u64::MAX {
        return true;
    }
    let mut new: Vec<(P, u64)> = Vec::new();
    for k in offset / WINDOW..=(end - 1) / WINDOW {
        if !held.iter().chain(&new).any(|(p, j)| *j == k && p == pack) {
            new.push((pack.clone(), k));
        }
    }
    if held.len() + new.len() > PLAN_MAX {
        return false;
    }
    held.extend(new);
    true
}

/// A backend whose small pack reads are served from whole windows.
pub struct ReadAhead {
    shared: Arc<Shared>,
    /// Threads fetching planned windows, at most.
    fetchers: usize,
}

impl ReadAhead {
    /// A read-ahead over `inner`, which makes `connections` requests at
    /// once: planned windows are fetched on all but [`READERS_SHARE`] of
    /// them (one at least).
    pub fn new(inner: Arc<dyn Backend>, connections: usize) -> Self {
        ReadAhead {
            fetchers: connections.saturating_sub(READERS_SHARE).max(1),
            shared: Arc::new(Shared {
                inner,
                sizes: Sizes::default(),
                state: Mutex::default(),
                released: Signal::default(),
                pending: Default::default(),
            }),
        }
    }

    fn inner(&self) -> &dyn Backend {
        &*self.shared.inner
    }

    /// Whether a kept window holds byte `offset` of `name`.
    fn kept(&self, name: &str, offset: u64) -> bool {
        self.shared.state().find(name, offset / WINDOW).is_some()
    }

    /// Pin `windows` for a new plan (made while reading: `later`), queue
    /// those to download, and start fetchers for them.
    fn pin_all(
        &self,
        mut st: MutexGuard<'_, State>,
        windows: Vec<(String, u64)>,
        later: bool,
    ) -> Planned {
        for (name, k) in &windows {
            if let Some(h) = st.pin(name, *k, later) {
                st.queue.push_back(h);
            }
        }
        self.start_fetchers(&mut st);
        drop(st);
        Box::new(Plan {
            shared: self.shared.clone(),
            windows,
            later,
        })
    }

    /// Run `f` on a thread of its own, counted as pending while it runs;
    /// `false` when no thread could be started.
    fn spawn(&self, name: &str, f: impl FnOnce(&Shared) + Send + 'static) -> bool {
        let shared = self.shared.clone();
        shared.pending(1);
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                f(&shared);
                shared.pending(-1);
            });
        if spawned.is_err() {
            self.shared.pending(-1);
        }
        spawned.is_ok()
    }

    /// Download `windows` of a pack of `size` bytes on threads of their own
    /// (a failed download is left for the reader to try again).
    fn fetch_ahead(&self, windows: Vec<Handle>, size: u64) {
        for w in windows {
            self.spawn("read-ahead", move |shared| {
                let _ = shared.fill(&w, size);
            });
        }
    }

    /// Start fetchers for the queued planned windows, up to `fetchers`.
    fn start_fetchers(&self, st: &mut State) {
        while st.fetchers < self.fetchers && st.fetchers < st.queue.len() {
            // Readers download what is left themselves when none starts.
            if !self.spawn("fetch-planned", Shared::fetch_planned) {
                break;
            }
            st.fetchers += 1;
        }
    }

    /// Wait until no download ahead is running (tests count requests).
    #[cfg(test)]
    fn quiesce(&self) {
        let p = &self.shared.pending;
        let mut n = p.0.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            n = p.1.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Windows pinned now.
    #[cfg(test)]
    fn pinned(&self) -> usize {
        let st = self.shared.state();
        assert_eq!(
            st.pinned,
            st.windows.iter().filter(|w| w.pins > 0).count(),
            "pinned count agrees with the windows"
        );
        st.pinned
    }
}

impl Backend for ReadAhead {
    fn location(&self) -> String {
        self.inner().location()
    }

    fn create(&self) -> Result<()> {
        self.inner().create()
    }

    fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.inner().put(t, name, data)
    }

    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.inner().get(t, name)
    }

    fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        if t != FileType::Pack || len == 0 || len as u64 >= WINDOW {
            return self.inner().get_range(t, name, offset, len);
        }
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| short(name, u64::MAX))?;
        let size = self.shared.pack_size(name)?;
        if end > size {
            return Err(short(name, end));
        }
        let k = offset / WINDOW;
        let mid = (k + 1) * WINDOW;
        if end > mid {
            // Across the end of a window: its part, then the rest from the
            // window after it, so each byte is downloaded once.
            let mut bytes = self.get_range(t, name, offset, (mid - offset) as usize)?;
            bytes.extend(self.get_range(t, name, mid, (end - mid) as usize)?);
            return Ok(bytes);
        }
        if end == size && !self.kept(name, offset) {
            // A pack's trailer (check, repair), or its last frame read
            // alone: those bytes only.
            return self.inner().get_range(t, name, offset, len);
        }
        let (w, ahead) = self.shared.state().slot(name, k, size);
        self.fetch_ahead(ahead, size);
        let bytes = self.shared.fill(&w, size)?;
        let from = (offset - k * WINDOW) as usize;
        bytes.copy(from, len).ok_or_else(|| short(name, end))
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        self.inner().list(t)
    }

    fn stat(&self, t: FileType, name: &str) -> Result<ObjectInfo> {
        self.inner().stat(t, name)
    }

    fn delete(&self, t: FileType, name: &str) -> Result<()> {
        self.inner().delete(t, name)
    }

    fn is_local(&self) -> bool {
        self.inner().is_local()
    }

    fn settle(&self) -> std::time::Duration {
        self.inner().settle()
    }

    /// Pins the windows of the first of `reads` that one plan holds (see
    /// the module docs), waiting while plans made ahead pin [`PLANNED`]
    /// windows.
    fn plan(&self, t: FileType, reads: &[(String, u64, u64)]) -> Option<(Planned, usize)> {
        if t != FileType::Pack {
            return None;
        }
        let (want, covered) = windows_covering(reads);
        if want.is_empty() {
            return None;
        }
        let mut st = self.shared.state();
        loop {
            // One plan alone always fits: PLAN_MAX <= PLANNED.
            if st.first + st.unpinned(&want, false) <= PLANNED {
                break;
            }
            st = self.shared.released.wait(st);
        }
        Some((self.pin_all(st, want, false), covered))
    }

    /// Pins the windows of the first of `reads` that one plan holds, at
    /// once or not at all.
    fn plan_now(&self, t: FileType, reads: &[(String, u64, u64)]) -> Option<(Planned, usize)> {
        if t != FileType::Pack || reads.is_empty() {
            return None;
        }
        let (want, covered) = windows_covering(reads);
        let st = self.shared.state();
        if st.later + st.unpinned(&want, true) > LATER {
            return None;
        }
        Some((self.pin_all(st, want, true), covered.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::counting::{Counter, Counting};
    use crate::backend::memory::MemoryBackend;

    fn pack_name(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// Bytes `off..off + len` of `name` read through `ra` are `data`'s.
    fn read_ok(ra: &ReadAhead, name: &str, data: &[u8], off: u64, len: usize) {
        let got = ra.get_range(FileType::Pack, name, off, len).unwrap();
        assert_eq!(got, &data[off as usize..off as usize + len], "{off}+{len}");
    }

    /// A read-ahead over counted memory holding pack `n` of `size` bytes
    /// (byte `i` is `i * mul % modulus`); its name and bytes.
    fn fixture(
        n: u8,
        size: u64,
        mul: usize,
        modulus: usize,
    ) -> (Counter, ReadAhead, String, Vec<u8>) {
        let counter = Counter::default();
        let mem: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let counted: Arc<dyn Backend> = Arc::new(Counting::new(mem, counter.clone()));
        let ra = ReadAhead::new(counted, 8);
        let name = pack_name(n);
        let data: Vec<u8> = (0..size as usize)
            .map(|i| (i * mul % modulus) as u8)
            .collect();
        ra.put(FileType::Pack, &name, &data).unwrap();
        (counter, ra, name, data)
    }

    /// Reads forward through a pack come from windows (one download per
    /// window, plus one `stat`); a trailer read downloads only the
    /// trailer; reads past the end are Corrupt; large reads and other
    /// types pass through.
    #[test]
    fn small_reads_come_from_windows() {
        let size = (2 * WINDOW + 12345) as usize;
        let (counter, ra, name, data) = fixture(1, size as u64, 7, 251);
        let requests = || counter.snapshot().requests();
        let read = |off: u64, len: usize| read_ok(&ra, &name, &data, off, len);
        read(size as u64 - 40, 40);
        ra.quiesce();
        assert_eq!(requests(), 1 + 1 + 1, "put, stat, the trailer");
        // Forward in small steps: a download per window.
        let mut off = 0;
        while off + 50_000 <= size as u64 {
            read(off, 50_000);
            off += 50_000;
        }
        ra.quiesce();
        let windows = (size as u64).div_ceil(WINDOW - 50_000);
        assert!(
            requests() - 3 <= windows + 1,
            "{} requests: {}",
            requests(),
            counter.snapshot().summary()
        );
        let before = requests();
        read(1000, 10);
        read(WINDOW - 5, 10);
        ra.quiesce();
        assert!(requests() - before <= 2);
        assert!(matches!(
            ra.get_range(FileType::Pack, &name, size as u64 - 3, 10),
            Err(Error::Corrupt { .. })
        ));
        let before = requests();
        let whole = ra
            .get_range(FileType::Pack, &name, 0, WINDOW as usize)
            .unwrap();
        assert_eq!(whole, &data[..WINDOW as usize]);
        assert_eq!(requests(), before + 1);
    }

    /// A reader going forward finds its windows fetched ahead, each byte
    /// downloaded once (reads across a window's end come from both
    /// windows); a single read fetches only the window after its own.
    #[test]
    fn windows_are_fetched_ahead_once() {
        let size = (8 * WINDOW + 777) as usize;
        let (counter, ra, name, data) = fixture(2, size as u64, 13, 253);
        let gets = || counter.snapshot().requests() - 2; // the put, one stat
        let read = |off: u64, len: usize| read_ok(&ra, &name, &data, off, len);
        read(0, 10);
        ra.quiesce();
        assert_eq!(gets(), 2, "its window and the next");
        read(WINDOW + 3, 10);
        ra.quiesce();
        assert_eq!(
            gets(),
            2 + AHEAD as u64,
            "a window fetched ahead fetches more"
        );
        let mut off = 0;
        while off + 70_001 <= size as u64 {
            read(off, 70_001);
            off += 70_001;
        }
        read(off, size - off as usize);
        ra.quiesce();
        assert_eq!(
            gets(),
            9,
            "each window once: {}",
            counter.snapshot().summary()
        );
    }

    /// Windows are aligned: readers entering a pack at different places
    /// inside one window share it (no overlapping download).
    #[test]
    fn readers_entering_a_window_anywhere_share_it() {
        let (counter, ra, name, data) = fixture(3, 3 * WINDOW, 1, 249);
        let gets = || counter.snapshot().requests() - 2; // the put, one stat
        let read = |off: u64, len: usize| read_ok(&ra, &name, &data, off, len);
        read(WINDOW / 2 + 1000, 5000);
        ra.quiesce();
        assert_eq!(gets(), 2, "its window and the next");
        read(WINDOW / 4, 5000);
        read(WINDOW + 17, 5000);
        read(WINDOW - 100, 200);
        ra.quiesce();
        let s = counter.snapshot();
        assert_eq!(s.requests(), 2 + 3, "each window once: {}", s.summary());
    }

    /// A backend whose pack range reads fail while `fail` is above zero.
    struct Flaky {
        inner: MemoryBackend,
        fail: std::sync::atomic::AtomicUsize,
    }

    impl Backend for Flaky {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn create(&self) -> Result<()> {
            Ok(())
        }
        fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
            self.inner.put(t, name, data)
        }
        fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
            self.inner.get(t, name)
        }
        fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
            use std::sync::atomic::Ordering::SeqCst;
            let failing = self
                .fail
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(Error::io(
                    "flaky",
                    std::io::Error::other("connection reset"),
                ));
            }
            self.inner.get_range(t, name, offset, len)
        }
        fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
            self.inner.list(t)
        }
        fn stat(&self, t: FileType, name: &str) -> Result<ObjectInfo> {
            self.inner.stat(t, name)
        }
        fn delete(&self, t: FileType, name: &str) -> Result<()> {
            self.inner.delete(t, name)
        }
    }

    /// A plan of the frames `frames` (offset, length) of `name`.
    fn plan(ra: &ReadAhead, name: &str, frames: &[(u64, u64)]) -> Planned {
        let reads: Vec<_> = frames
            .iter()
            .map(|&(o, l)| (name.to_string(), o, l))
            .collect();
        ra.plan(FileType::Pack, &reads).expect("windows to plan").0
    }

    /// Planned windows are downloaded before they are read, each once, and
    /// serve the reads without a request; they stay while a plan holds
    /// them and are no longer pinned once every plan is dropped. A plan
    /// pins at most PLAN_MAX windows; reads that pass through plan nothing.
    #[test]
    fn planned_windows_come_ahead_and_go_when_their_plans_do() {
        let size = 12 * WINDOW + 999;
        let (counter, ra, name, data) = fixture(4, size, 11, 241);
        let gets = || counter.snapshot().requests() - 1; // the put
        let a = plan(&ra, &name, &[(10, 5000), (WINDOW - 100, 300)]);
        let b = plan(&ra, &name, &[(WINDOW + 7, 10), (3 * WINDOW, 10)]);
        ra.quiesce();
        assert_eq!(ra.pinned(), 3, "windows 0, 1 and 3");
        assert_eq!(gets(), 1 + 3, "a stat and each window once");
        read_ok(&ra, &name, &data, 10, 5000);
        read_ok(&ra, &name, &data, WINDOW - 100, 300);
        read_ok(&ra, &name, &data, 3 * WINDOW, 10);
        ra.quiesce();
        assert_eq!(gets(), 4, "{}", counter.snapshot().summary());
        drop(a);
        assert_eq!(ra.pinned(), 2, "window 1 is b's too");
        drop(b);
        assert_eq!(ra.pinned(), 0);
        let many: Vec<(u64, u64)> = (0..10).map(|k| (k * WINDOW + 1, 100)).collect();
        let c = plan(&ra, &name, &many);
        assert_eq!(ra.pinned(), PLAN_MAX);
        drop(c);
        assert!(ra
            .plan(FileType::Pack, &[(name.clone(), 0, WINDOW), (name, 5, 0)])
            .is_none());
        assert_eq!(ra.pinned(), 0);
    }

    /// Plans made while reading have a budget of their own: they are made
    /// while the other plans' budget is full, refused (never waited for)
    /// when their own is, and take nothing from the other plans' budget;
    /// each holds the first reads whose windows fit one plan.
    #[test]
    fn plans_made_while_reading_have_their_own_budget() {
        let size = (PLANNED + LATER + 8) as u64 * WINDOW;
        let (_counter, ra, name, _data) = fixture(6, size, 3, 233);
        let frames = |from: usize, n: usize| -> Vec<(String, u64, u64)> {
            (from..from + n)
                .map(|k| (name.clone(), k as u64 * WINDOW + 5, 64))
                .collect()
        };
        let first: Vec<Planned> = (0..PLANNED / PLAN_MAX)
            .map(|p| {
                ra.plan(FileType::Pack, &frames(p * PLAN_MAX, PLAN_MAX))
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(ra.pinned(), PLANNED);
        let mut later = Vec::new();
        for p in 0..LATER / PLAN_MAX {
            let reads = frames(PLANNED + p * PLAN_MAX, 2 * PLAN_MAX);
            let (plan, n) = ra
                .plan_now(FileType::Pack, &reads)
                .expect("room of its own");
            assert_eq!(n, PLAN_MAX, "the reads one plan holds");
            later.push(plan);
        }
        assert_eq!(ra.pinned(), PLANNED + LATER);
        assert!(
            ra.plan_now(FileType::Pack, &frames(0, 1)).is_none(),
            "its budget is full"
        );
        drop(first);
        assert_eq!(ra.pinned(), LATER);
        // The other plans' budget is whole again, whatever the later ones pin.
        let again: Vec<Planned> = (0..PLANNED / PLAN_MAX)
            .map(|p| {
                ra.plan(FileType::Pack, &frames(PLANNED + p * PLAN_MAX, PLAN_MAX))
                    .unwrap()
                    .0
            })
            .collect();
        // Windows PLANNED.. 2 * PLANNED, the later plans' among them.
        assert_eq!(ra.pinned(), PLANNED);
        drop(later);
        drop(again);
        ra.quiesce();
        assert_eq!(ra.pinned(), 0);
        let st = ra.shared.state();
        assert_eq!((st.first, st.later), (0, 0));
    }

    /// Plans wait while PLANNED windows are pinned, and go on when a plan
    /// is dropped; a plan of windows already pinned, or one made while
    /// none is, never waits.
    #[test]
    fn a_full_budget_holds_plans_until_one_is_dropped() {
        let size = (PLANNED as u64 + 8) * WINDOW;
        let (_counter, ra, name, _data) = fixture(5, size, 3, 239);
        let ra = Arc::new(ra);
        let mut held = Vec::new();
        for p in 0..PLANNED / PLAN_MAX {
            let frames: Vec<(u64, u64)> = (0..PLAN_MAX as u64)
                .map(|i| ((p * PLAN_MAX) as u64 * WINDOW + i * WINDOW, 64))
                .collect();
            held.push(plan(&ra, &name, &frames));
        }
        assert_eq!(ra.pinned(), PLANNED);
        // Windows already pinned: no wait.
        drop(plan(&ra, &name, &[(0, 64), (WINDOW, 64)]));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = {
            let (ra, name) = (ra.clone(), name.clone());
            std::thread::spawn(move || {
                let p = plan(&ra, &name, &[(PLANNED as u64 * WINDOW, 64)]);
                tx.send(()).unwrap();
                p
            })
        };
        let wait = std::time::Duration::from_millis(300);
        assert!(rx.recv_timeout(wait).is_err(), "the plan waits");
        held.pop();
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("the plan goes on once another is dropped");
        let late = waiting.join().unwrap();
        assert_eq!(ra.pinned(), PLANNED - PLAN_MAX + 1);
        drop(held);
        drop(late);
        assert_eq!(ra.pinned(), 0);
    }

    /// A planned window whose download failed is not kept as failed: its
    /// reader downloads it itself.
    #[test]
    fn a_failed_planned_download_is_left_to_the_reader() {
        let counter = Counter::default();
        let flaky = Arc::new(Flaky {
            inner: MemoryBackend::new(),
            fail: 0.into(),
        });
        let counted: Arc<dyn Backend> = Arc::new(Counting::new(flaky.clone(), counter.clone()));
        let ra = ReadAhead::new(counted, 8);
        let name = pack_name(6);
        let data: Vec<u8> = (0..3 * WINDOW as usize).map(|i| (i % 233) as u8).collect();
        ra.put(FileType::Pack, &name, &data).unwrap();
        flaky.fail.store(2, std::sync::atomic::Ordering::SeqCst);
        let p = plan(&ra, &name, &[(100, 50), (WINDOW + 100, 50)]);
        ra.quiesce();
        assert_eq!(
            flaky.fail.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "both planned downloads failed"
        );
        let before = counter.snapshot().requests();
        read_ok(&ra, &name, &data, 100, 50);
        read_ok(&ra, &name, &data, WINDOW + 100, 50);
        ra.quiesce();
        assert_eq!(
            counter.snapshot().requests() - before,
            2,
            "each reader downloads its window again"
        );
        drop(p);
        assert_eq!(ra.pinned(), 0);
    }

    /// Pins are counted per plan, not per read: blobs of one bundled frame
    /// (the same range listed again), frames across a window's end, and
    /// reads made many times leave nothing pinned once the plans are gone.
    #[test]
    fn bundled_frames_and_repeated_reads_leak_no_pin() {
        let (_counter, ra, name, data) = fixture(7, 4 * WINDOW, 5, 227);
        let bundle = (WINDOW - 1000, 3000);
        let frames = [bundle, bundle, bundle, (30, 40), bundle, (30, 40)];
        let plans: Vec<Planned> = (0..5).map(|_| plan(&ra, &name, &frames)).collect();
        assert_eq!(ra.pinned(), 2, "windows 0 and 1");
        for _ in 0..7 {
            read_ok(&ra, &name, &data, bundle.0, bundle.1 as usize);
            read_ok(&ra, &name, &data, 30, 40);
        }
        let (want, covered) = windows_covering(&vec![(name.clone(), bundle.0, bundle.1); 3]);
        assert_eq!((want.len(), covered), (2, 3));
        drop(plans);
        ra.quiesce();
        assert_eq!(ra.pinned(), 0);
        let st = ra.shared.state();
        assert!(st.windows.iter().all(|w| w.pins == 0 && !w.queued));
    }
}
