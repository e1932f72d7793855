//! Read-ahead for packs in remote storage: small range reads become reads of
//! whole windows, kept for the next reads near them.
//!
//! A restore or the mount reads a pack a frame at a time (tens of KiB),
//! mostly in the order the backup wrote them. On object storage each read
//! is a request with a round trip and a price; [`ReadAhead`] turns a read of
//! less than a window that no kept window holds into a read of the
//! [`WINDOW`] bytes from its offset on (clipped at the pack's end, learnt
//! once per pack by `stat`), and keeps the last [`KEPT`] windows in memory.
//! Only forward: a read of a pack's trailer (check) downloads the trailer.
//! Threads whose reads fall in a window being downloaded wait for it. A failed download is not kept: the
//! next read tries again.
//!
//! Windows are also fetched before they are read, on threads of their own,
//! so that downloads overlap with decoding and with each other: a new window
//! has the one after it fetched; a window read after the one before it (a
//! reader going forward through the pack) or fetched ahead has the next
//! [`AHEAD`] fetched, each starting where the one before ends. A reader
//! that comes to a window still downloading waits for it; one that comes to
//! a window whose download failed downloads it itself. Objects are write-once, so a kept window never
//! goes stale. Everything but small pack range reads passes straight
//! through, and so do all reads of a local backend (never wrapped).

use super::{Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The size of a window.
pub const WINDOW: u64 = 2 << 20;
/// Windows kept in memory.
pub const KEPT: usize = 32;
/// Windows fetched ahead of a reader going forward through a pack.
pub const AHEAD: usize = 4;

/// A window: filled once by its first reader, `None` until then (or after
/// a failed download).
type Slot = Arc<Mutex<Option<Arc<Vec<u8>>>>>;

/// Bytes `start..end` of pack `name`.
struct Window {
    name: String,
    start: u64,
    end: u64,
    slot: Slot,
    /// Fetched ahead of its first reader.
    ahead: bool,
}

/// A backend whose small pack reads are served from whole windows.
pub struct ReadAhead {
    inner: Arc<dyn Backend>,
    /// Fetches ahead that have not ended yet (see [`ReadAhead::quiesce`]).
    pending: Arc<(Mutex<usize>, std::sync::Condvar)>,
    sizes: Mutex<HashMap<String, Arc<Mutex<Option<u64>>>>>,
    /// Least recently used first.
    windows: Mutex<VecDeque<Window>>,
}

impl ReadAhead {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        ReadAhead {
            inner,
            pending: Arc::default(),
            sizes: Mutex::new(HashMap::new()),
            windows: Mutex::new(VecDeque::new()),
        }
    }

    /// Pack `name`'s size, asked for once (threads that want it together
    /// wait for one `stat`).
    fn size(&self, name: &str) -> Result<u64> {
        let slot = {
            let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
            if sizes.len() >= 4096 {
                sizes.clear();
            }
            sizes.entry(name.to_string()).or_default().clone()
        };
        let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = *held {
            return Ok(n);
        }
        let n = self.inner.stat(FileType::Pack, name)?.size;
        *held = Some(n);
        Ok(n)
    }

    /// A kept window holding `offset..end` of `name`, made most recently
    /// used, or a new one from `offset` on; with the windows to fetch ahead
    /// of it (see the module docs), already entered as kept.
    fn slot(&self, name: &str, offset: u64, end: u64, size: u64) -> (Slot, u64, Vec<Window>) {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let found = w
            .iter()
            .position(|x| x.name == name && x.start <= offset && end <= x.end);
        let (window, ahead) = match found {
            Some(pos) => {
                let mut window = w.remove(pos).expect("position is in range");
                let ahead = if window.ahead { AHEAD } else { 0 };
                window.ahead = false;
                (window, ahead)
            }
            None => {
                let forward = w
                    .iter()
                    .any(|x| x.name == name && x.start < offset && offset <= x.end);
                let window = Window {
                    name: name.to_string(),
                    start: offset,
                    end: size.min(offset.saturating_add(WINDOW)),
                    slot: Slot::default(),
                    ahead: false,
                };
                (window, if forward { AHEAD } else { 1 })
            }
        };
        let out = (window.slot.clone(), window.start);
        let mut next = window.end;
        w.push_back(window);
        let mut fetch = Vec::new();
        for _ in 0..ahead {
            if next >= size {
                break;
            }
            let covered = w
                .iter()
                .find(|x| x.name == name && x.start <= next && next < x.end);
            if let Some(x) = covered {
                next = x.end;
                continue;
            }
            let window = Window {
                name: name.to_string(),
                start: next,
                end: size.min(next.saturating_add(WINDOW)),
                slot: Slot::default(),
                ahead: true,
            };
            next = window.end;
            fetch.push(Window {
                name: window.name.clone(),
                slot: window.slot.clone(),
                ..window
            });
            w.push_back(window);
        }
        while w.len() > KEPT {
            w.pop_front();
        }
        (out.0, out.1, fetch)
    }

    /// The end of a kept window of `name` that holds `offset` but ends
    /// before `end`, unless a kept window holds all of `offset..end`.
    fn boundary(&self, name: &str, offset: u64, end: u64) -> Option<u64> {
        let w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mine = w.iter().filter(|x| x.name == name);
        if mine.clone().any(|x| x.start <= offset && end <= x.end) {
            return None;
        }
        mine.filter(|x| x.start <= offset && offset < x.end && x.end < end)
            .map(|x| x.end)
            .max()
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
                    let _ = fill(&*inner, &x.slot, &x.name, x.start, x.end);
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

/// The bytes of the window `slot` (from `start` to `end` of `name`),
/// downloaded once.
fn fill(
    inner: &dyn Backend,
    slot: &Slot,
    name: &str,
    start: u64,
    end: u64,
) -> Result<Arc<Vec<u8>>> {
    let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bytes) = held.as_ref() {
        return Ok(bytes.clone());
    }
    let len = end.saturating_sub(start) as usize;
    let bytes = Arc::new(inner.get_range(FileType::Pack, name, start, len)?);
    *held = Some(bytes.clone());
    Ok(bytes)
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
        let size = self.size(name)?;
        if end > size {
            return Err(Self::short(name, end));
        }
        if let Some(mid) = self.boundary(name, offset, end) {
            // Across the end of a kept window: its part, then the rest from
            // the window after it, so each byte is downloaded once.
            let mut bytes = self.get_range(t, name, offset, (mid - offset) as usize)?;
            bytes.extend(self.get_range(t, name, mid, (end - mid) as usize)?);
            return Ok(bytes);
        }
        let (slot, start, ahead) = self.slot(name, offset, end, size);
        self.fetch_ahead(ahead);
        let window_end = size.min(start.saturating_add(WINDOW));
        let bytes = fill(&*self.inner, &slot, name, start, window_end)?;
        let from = (offset - start) as usize;
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

    /// Reads forward through a pack come from windows (one download per
    /// window, plus one `stat`); a trailer read downloads only the
    /// trailer; reads past the end are Corrupt; large reads and other
    /// types pass through.
    #[test]
    fn small_reads_come_from_windows() {
        let counter = Counter::default();
        let mem: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let counted: Arc<dyn Backend> = Arc::new(Counting::new(mem, counter.clone()));
        let ra = ReadAhead::new(counted);
        let name = pack_name(1);
        let size = (2 * WINDOW + 12345) as usize;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        ra.put(FileType::Pack, &name, &data).unwrap();
        let requests = || counter.snapshot().requests();
        let read = |off: u64, len: usize| {
            let got = ra.get_range(FileType::Pack, &name, off, len).unwrap();
            assert_eq!(got, &data[off as usize..off as usize + len], "{off}+{len}");
        };
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
        let counter = Counter::default();
        let mem: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let counted: Arc<dyn Backend> = Arc::new(Counting::new(mem, counter.clone()));
        let ra = ReadAhead::new(counted);
        let name = pack_name(2);
        let size = (8 * WINDOW + 777) as usize;
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 253) as u8).collect();
        ra.put(FileType::Pack, &name, &data).unwrap();
        let gets = || counter.snapshot().requests() - 2; // the put, one stat
        let read = |off: u64, len: usize| {
            let got = ra.get_range(FileType::Pack, &name, off, len).unwrap();
            assert_eq!(got, &data[off as usize..off as usize + len], "{off}+{len}");
        };
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
}
