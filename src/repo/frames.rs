//! A small byte-bounded cache of decoded frames, evicting the oldest first.

use crate::format::id::PackId;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

type Key = (PackId, u32);

pub(crate) struct FrameCache {
    map: HashMap<Key, Arc<Vec<u8>>>,
    order: VecDeque<Key>,
    bytes: usize,
    limit: usize,
}

impl FrameCache {
    pub fn new(limit: usize) -> Self {
        FrameCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Vec<u8>>> {
        self.map.get(key).cloned()
    }

    pub fn insert(&mut self, key: Key, value: Arc<Vec<u8>>) {
        if value.len() > self.limit || self.map.contains_key(&key) {
            return;
        }
        self.bytes += value.len();
        self.map.insert(key, value);
        self.order.push_back(key);
        while self.bytes > self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.map.remove(&old) {
                self.bytes -= v.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_beyond_the_limit() {
        let mut c = FrameCache::new(10);
        c.insert((PackId([1; 32]), 0), Arc::new(vec![0; 6]));
        c.insert((PackId([1; 32]), 1), Arc::new(vec![0; 6]));
        assert!(c.get(&(PackId([1; 32]), 0)).is_none());
        assert!(c.get(&(PackId([1; 32]), 1)).is_some());
        c.insert((PackId([1; 32]), 2), Arc::new(vec![0; 11]));
        assert!(c.get(&(PackId([1; 32]), 2)).is_none());
    }
}
