//! A bounded cache of decoded blobs (file chunks, trees) shared by the mount's
//! request threads.
//!
//! Values are evicted least recently used first once their total weight passes
//! the budget. A value is loaded once even when several threads ask for it at
//! the same moment (a reader and the read-ahead, or two readers of one file):
//! the others wait for the first load instead of repeating it. Failed loads are
//! not cached, so a blob that appears later (a backup finishing its index) can
//! still be read.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

type Loaded<V> = Result<Arc<V>, Arc<Error>>;

struct Cached<V> {
    cell: Arc<OnceLock<Loaded<V>>>,
    tick: u64,
    weight: u64,
}

struct Inner<K, V> {
    map: HashMap<K, Cached<V>>,
    /// Use order: tick -> key; the smallest tick is the least recently used.
    order: BTreeMap<u64, K>,
    tick: u64,
    weight: u64,
}

/// Key to shared value, bounded by total weight.
pub struct Cache<K, V> {
    inner: Mutex<Inner<K, V>>,
    budget: u64,
}

impl<K: Hash + Eq + Clone, V> Cache<K, V> {
    /// A cache holding up to `budget` weight (bytes, for the mount's caches).
    pub fn new(budget: u64) -> Self {
        Cache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
                weight: 0,
            }),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value for `key`, loading it with `load` unless it is cached or
    /// being loaded by another thread (then this one waits for that load).
    pub fn get_or_load(
        &self,
        key: &K,
        weight: impl Fn(&V) -> u64,
        load: impl FnOnce() -> Result<V>,
    ) -> Result<Arc<V>> {
        let cell = self.cell(key);
        let mut loaded = false;
        let res = cell.get_or_init(|| {
            loaded = true;
            load().map(Arc::new).map_err(Arc::new)
        });
        match res {
            Ok(v) => {
                if loaded {
                    self.account(key, &cell, weight(v));
                }
                Ok(v.clone())
            }
            Err(e) => {
                let mut inner = self.lock();
                if inner
                    .map
                    .get(key)
                    .is_some_and(|c| Arc::ptr_eq(&c.cell, &cell))
                {
                    remove(&mut inner, key);
                }
                Err(copy_error(e))
            }
        }
    }

    /// The cell for `key`, created empty if missing, and marked as just used.
    fn cell(&self, key: &K) -> Arc<OnceLock<Loaded<V>>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let cell = match inner.map.get_mut(key) {
            Some(c) => {
                let old = std::mem::replace(&mut c.tick, tick);
                let cell = c.cell.clone();
                inner.order.remove(&old);
                cell
            }
            None => {
                let cell = Arc::new(OnceLock::new());
                inner.map.insert(
                    key.clone(),
                    Cached {
                        cell: cell.clone(),
                        tick,
                        weight: 0,
                    },
                );
                cell
            }
        };
        inner.order.insert(tick, key.clone());
        cell
    }

    /// Count a freshly loaded value's weight and evict down to the budget.
    fn account(&self, key: &K, cell: &Arc<OnceLock<Loaded<V>>>, weight: u64) {
        let mut inner = self.lock();
        match inner.map.get_mut(key) {
            Some(c) if Arc::ptr_eq(&c.cell, cell) => c.weight = weight,
            _ => return, // evicted or replaced while loading
        }
        inner.weight += weight;
        while inner.weight > self.budget {
            let Some((tick, victim)) = inner.order.pop_first() else {
                break;
            };
            if &victim == key {
                // The value just loaded stays even when it alone passes the
                // budget (the extent map of a huge file): evicting it would
                // make every read rebuild it.
                inner.order.insert(tick, victim);
                break;
            }
            if let Some(c) = inner.map.remove(&victim) {
                inner.weight -= c.weight;
            }
        }
    }

    /// The value for `key` if it is loaded, without loading it or marking
    /// it used.
    pub fn peek(&self, key: &K) -> Option<Arc<V>> {
        let cell = self.lock().map.get(key)?.cell.clone();
        match cell.get() {
            Some(Ok(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// Drop `key` now: its bytes are with the kernel and will not be asked for
    /// again soon.
    pub fn discard(&self, key: &K) {
        remove(&mut self.lock(), key);
    }

    /// Total weight held.
    pub fn weight(&self) -> u64 {
        self.lock().weight
    }

    /// Number of values held (or being loaded).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn remove<K: Hash + Eq, V>(inner: &mut Inner<K, V>, key: &K) {
    if let Some(c) = inner.map.remove(key) {
        inner.order.remove(&c.tick);
        inner.weight -= c.weight;
    }
}

/// An error shared by every waiter of a failed load, as a value of its own.
pub fn copy_error(e: &Error) -> Error {
    match e {
        Error::Io { path, source } => Error::Io {
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(source.kind(), source.to_string()),
            },
        },
        Error::Corrupt { object, reason } => Error::Corrupt {
            object: object.clone(),
            reason: reason.clone(),
        },
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::InvalidInput(m) => Error::InvalidInput(m.clone()),
        Error::UnsupportedVersion(m) => Error::UnsupportedVersion(m.clone()),
        Error::Locked(m) => Error::Locked(m.clone()),
        Error::ReadOnly(m) => Error::ReadOnly(m.clone()),
        Error::Interrupted(s) => Error::Interrupted(*s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[allow(clippy::ptr_arg)] // the cache's weight function takes &V
    fn len(v: &Vec<u8>) -> u64 {
        v.len() as u64
    }

    #[test]
    fn least_recently_used_goes_first_when_over_budget() {
        let c: Cache<u32, Vec<u8>> = Cache::new(10);
        c.get_or_load(&1, len, || Ok(vec![1; 4])).unwrap();
        c.get_or_load(&2, len, || Ok(vec![2; 4])).unwrap();
        c.get_or_load(&1, len, || unreachable!()).unwrap(); // 1 is now the newest
        c.get_or_load(&3, len, || Ok(vec![3; 4])).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.weight(), 8);
        c.get_or_load(&1, len, || unreachable!()).unwrap();
        let reloaded = AtomicUsize::new(0);
        c.get_or_load(&2, len, || {
            reloaded.fetch_add(1, Ordering::Relaxed);
            Ok(vec![2; 4])
        })
        .unwrap();
        assert_eq!(reloaded.into_inner(), 1);
        c.discard(&2);
        assert_eq!(c.weight(), 4);
    }

    #[test]
    fn failures_are_returned_and_not_kept() {
        let c: Cache<u32, Vec<u8>> = Cache::new(10);
        let e = c
            .get_or_load(&1, len, || Err(Error::corrupt("blob x", "bad")))
            .unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }));
        assert!(c.is_empty());
        assert_eq!(*c.get_or_load(&1, len, || Ok(vec![7])).unwrap(), vec![7]);
    }

    #[test]
    fn concurrent_askers_share_one_load() {
        let c: Arc<Cache<u32, Vec<u8>>> = Arc::new(Cache::new(1 << 20));
        let loads = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, loads) = (c.clone(), loads.clone());
                std::thread::spawn(move || {
                    c.get_or_load(&9, len, || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(vec![9; 100])
                    })
                    .unwrap()
                    .len()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 100);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
