//! Read-ahead for packs in remote storage: small range reads become reads of
//! whole windows, kept for the next reads near them.
//!
//! A restore or the mount reads a pack a frame at a time (tens of KiB),
//! mostly in the order the backup wrote them. On object storage each read
//! is a request with a round trip and a price; [`ReadAhead`] cuts each pack
//! into aligned windows of [`WINDOW`] bytes (the last one clipped at the
//! pack's end, learnt once per pack by `stat`) and turns a small read that
//! no kept window holds into a download of its window; the last [`KEPT`]
//! windows stay in memory. Windows never overlap, so readers that enter a
//! pack at different places (a restore's threads, each on its own files)
//! never download a byte twice while it is kept; a read across a window's
//! end takes from both. A read that ends at the pack's end and no kept
//! window holds (a trailer, for check and repair) downloads only its bytes.
//! Threads whose reads fall in a window being downloaded wait for it. A
//! failed download is not kept: the next read tries again.
//!
//! Windows are also fetched before they are read, on threads of their own,
//! so that downloads overlap with decoding and with each other: a new window
//! has the one after it fetched; a window read after the one before it (a
//! reader going forward through the pack) or fetched ahead has the next
//! [`AHEAD`] fetched. A reader that comes to a window still downloading
//! waits for it; one that comes to a window whose download failed downloads
//! it itself. Objects are write-once, so a kept window never goes stale.
//! Everything but small pack range reads passes straight through, and so do
//! all reads of a local backend (never wrapped).

use super::{Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The size of a window.
pub const WINDOW: u64 = 2 << 20;
/// Windows kept in memory, at most (64 MiB).
pub const KEPT: usize = 32;
/// Windows fetched ahead of a reader going forward through a pack.
pub const AHEAD: usize = 4;

/// A window: filled once by its first reader, `None` until then (or after
/// a failed download).
type Slot = Arc<Mutex<Option<Arc<Vec<u8>>>>>;

/// Bytes `start..end` of pack `name` (window `start / WINDOW`; the last
/// one ends at the pack's end).
struct Window {
    name: String,
    start: u64,
    end: u64,
    slot: Slot,
    /// Fetched ahead of its first reader.
    ahead: bool,
}

impl Window {
    fn new(name: &str, k: u64, pack_size: u64, ahead: bool) -> Window {
        let start = k * WINDOW;
        Window {
            name: name.to_string(),
            start,
            end: pack_size.min(start.saturating_add(WINDOW)),
            slot: Slot::default(),
            ahead,
        }
    }

    /// Another handle on the same window (for the thread that fills it).
    fn handle(&self) -> Window {
        Window {
            name: self.name.clone(),
            slot: self.slot.clone(),
            ..*self
        }
    }
}

/// The kept windows.
#[derive(Default)]
struct State {
    /// Least recently used first.
    windows: VecDeque<Window>,
}

impl State {
    fn find(&self, name: &str, k: u64) -> Option<usize> {
        let start = k * WINDOW;
        self.windows
            .iter()
            .position(|x| x.start == start && x.name == name)
    }

    /// Enter `w` as the most recently used window, dropping the least
    /// recently used ones beyond [`KEPT`].
    fn push(&mut self, w: Window) {
        self.windows.push_back(w);
        while self.windows.len() > KEPT {
            self.windows.pop_front();
        }
    }

    /// Window `k` of `name`, made most recently used (or a new one, for a
    /// pack of `size` bytes); with the windows to fetch ahead of it (see
    /// the module docs), already entered as kept.
    fn slot(&mut self, name: &str, k: u64, size: u64) -> (Window, Vec<Window>) {
        let (window, ahead) = match self.find(name, k) {
            Some(pos) => {
                let mut window = self.windows.remove(pos).expect("position is in range");
                let ahead = if window.ahead { AHEAD } else { 0 };
                window.ahead = false;
                (window, ahead)
            }
            None => {
                let forward = k > 0 && self.find(name, k - 1).is_some();
                let window = Window::new(name, k, size, false);
                (window, if forward { AHEAD } else { 1 })
            }
        };
        let mut fetch = Vec::new();
        let out = window.handle();
        self.push(window);
        for j in k + 1..=k + ahead as u64 {
            if j.saturating_mul(WINDOW) >= size {
                break;
            }
            if self.find(name, j).is_some() {
                continue;
            }
            let w = Window::new(name, j, size, true);
            fetch.push(w.handle());
            self.push(w);
        }
        (out, fetch)
    }
}

/// Pack sizes, each asked for once.
type Sizes = Mutex<HashMap<String, Arc<Mutex<Option<u64>>>>>;

/// A backend whose small pack reads are served from whole windows.
pub struct ReadAhead {
    inner: Arc<dyn Backend>,
    /// Fetches ahead that have not ended yet (see [`ReadAhead::quiesce`]).
    pending: Arc<(Mutex<usize>, std::sync::Condvar)>,
    sizes: Sizes,
    state: Mutex<State>,
}

/// Pack `name`'s size, asked for once (threads that want it together wait
/// for one `stat`).
fn pack_size(inner: &dyn Backend, sizes: &Sizes, name: &str) -> Result<u64> {
    let slot = {
        let mut sizes = sizes.lock().unwrap_or_else(|e| e.into_inner());
        if sizes.len() >= 4096 {
            sizes.clear();
        }
        sizes.entry(name.to_string()).or_default().clone()
    };
    let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = *held {
        return Ok(n);
    }
    let n = inner.stat(FileType::Pack, name)?.size;
    *held = Some(n);
    Ok(n)
}

/// The bytes of window `w`, downloaded once.
fn fill(inner: &dyn Backend, w: &Window) -> Result<Arc<Vec<u8>>> {
    let mut held = w.slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bytes) = held.as_ref() {
        return Ok(bytes.clone());
    }
    let len = w.end.saturating_sub(w.start) as usize;
    let bytes = Arc::new(inner.get_range(FileType::Pack, &w.name, w.start, len)?);
    *held = Some(bytes.clone());
    Ok(bytes)
}

impl ReadAhead {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        ReadAhead {
            inner,
            pending: Arc::default(),
            sizes: Sizes::default(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a kept window holds byte `offset` of `name`.
    fn kept(&self, name: &str, offset: u64) -> bool {
        self.state()
            .windows
            .iter()
            .any(|x| x.name == name && x.start <= offset && offset < x.end)
    }

    /// Download `windows` on threads of their own (a failed download is
    /// left for the reader to try again).
    fn fetch_ahead(&self, windows: Vec<Window>) {
        for x in windows {
            let (inner, pending) = (self.inner.clone(), self.pending.clone());
            *pending.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let spawned = std::thread::Builder::new()
                .name("read-ahead".into())
                .spawn(move || {
                    let _ = fill(&*inner, &x);
                    let mut n = pending.0.lock().unwrap_or_else(|e| e.into_inner());
                    *n -= 1;
                    pending.1.notify_all();
                });
            if spawned.is_err() {
                *self.pending.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            }
        }
    }

    /// Wait until no fetch ahead is running (tests count requests).
    #[cfg(test)]
    fn quiesce(&self) {
        let mut n = self.pending.0.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            n = self.pending.1.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn short(name: &str, end: u64) -> Error {
        Error::corrupt(
            FileType::Pack.describe(name),
            format!("object ends before byte {end}"),
        )
    }
}

impl Backend for ReadAhead {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.inner.put(t, name, data)
    }

    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.inner.get(t, name)
    }

    fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        if t != FileType::Pack || len == 0 || len as u64 >= WINDOW {
            return self.inner.get_range(t, name, offset, len);
        }
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| Self::short(name, u64::MAX))?;
        let size = pack_size(&*self.inner, &self.sizes, name)?;
        if end > size {
            return Err(Self::short(name, end));
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
            return self.inner.get_range(t, name, offset, len);
        }
        let (w, ahead) = self.state().slot(name, k, size);
        self.fetch_ahead(ahead);
        let bytes = fill(&*self.inner, &w)?;
        let from = (offset - w.start) as usize;
        bytes
            .get(from..from + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Self::short(name, end))
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

    fn is_local(&self) -> bool {
        self.inner.is_local()
    }

    fn settle(&self) -> std::time::Duration {
        self.inner.settle()
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
        let ra = ReadAhead::new(counted);
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
}
