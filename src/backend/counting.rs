//! Counting the requests a backend serves: object stores bill them.
//!
//! [`Counting`] wraps any backend and counts each call by operation and
//! object type, with the bytes moved. One call is one request, except that
//! a `list` of more than 1000 objects takes a request per 1000 on S3 (the
//! counts give the objects listed), and retries are counted apart
//! ([`super::retry::retried`]). Failed calls count: they are billed too.
//!
//! The command line wraps every remote repository in one and reports the
//! counts (see the README's "Off-site" section): `backup --json` includes
//! them, and `REWIND_REQUEST_STATS=1` prints them to stderr when any
//! command ends.

use super::{Backend, FileType, ObjectInfo, Parts};
use crate::error::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a request did, named as S3 bills it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Put,
    Get,
    List,
    Head,
    Delete,
}

impl Op {
    const ALL: [Op; 5] = [Op::Put, Op::Get, Op::List, Op::Head, Op::Delete];

    fn name(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::List => "LIST",
            Op::Head => "HEAD",
            Op::Delete => "DELETE",
        }
    }
}

/// Calls and bytes of one operation on one object type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub requests: u64,
    /// Bytes sent (put) or received (get); objects listed (list).
    pub bytes: u64,
}

/// The counts so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    table: BTreeMap<(FileType, Op), Tally>,
    /// Requests tried again after a transient failure.
    pub retried: u64,
}

impl Requests {
    /// Every request of operation `op`.
    pub fn total(&self, op: Op) -> Tally {
        let mut t = Tally::default();
        for ((_, o), v) in &self.table {
            if *o == op {
                t.requests += v.requests;
                t.bytes += v.bytes;
            }
        }
        t
    }

    /// Every request.
    pub fn requests(&self) -> u64 {
        self.table.values().map(|t| t.requests).sum()
    }

    /// One type's count of one operation.
    pub fn get(&self, t: FileType, op: Op) -> Tally {
        self.table.get(&(t, op)).copied().unwrap_or_default()
    }

    /// `{"requests": N, "put": {...}, ..., "retried": N, "by_type": {"pack": {"put": {...}}}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "requests": self.requests(), "retried": self.retried });
        for op in Op::ALL {
            v[op.name().to_ascii_lowercase()] =
                serde_json::to_value(self.total(op)).expect("plain");
        }
        let mut by_type = serde_json::Map::new();
        for ((t, op), tally) in &self.table {
            let entry = by_type
                .entry(t.name())
                .or_insert_with(|| serde_json::json!({}));
            entry[op.name().to_ascii_lowercase()] = serde_json::to_value(tally).expect("plain");
        }
        v["by_type"] = serde_json::Value::Object(by_type);
        v
    }

    /// Two lines for people: totals, then by object type.
    pub fn summary(&self) -> String {
        let mut ops = Vec::new();
        for op in Op::ALL {
            let t = self.total(op);
            if t.requests > 0 {
                ops.push(format!("{} {}", op.name(), t.requests));
            }
        }
        let up = self.total(Op::Put).bytes;
        let down = self.total(Op::Get).bytes;
        let mut out = format!(
            "requests: {} ({}), {} up, {} down, {} retried",
            self.requests(),
            if ops.is_empty() {
                "none".into()
            } else {
                ops.join(", ")
            },
            human(up),
            human(down),
            self.retried
        );
        let mut types: Vec<String> = Vec::new();
        for t in FileType::ALL {
            let parts: Vec<String> = Op::ALL
                .iter()
                .filter_map(|&op| {
                    let n = self.get(t, op).requests;
                    (n > 0).then(|| format!("{} {n}", op.name()))
                })
                .collect();
            if !parts.is_empty() {
                types.push(format!("{}: {}", t.name(), parts.join(" ")));
            }
        }
        if !types.is_empty() {
            out.push_str("\n  ");
            out.push_str(&types.join("; "));
        }
        out
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A shared tally, for the command line to read while the backend is used.
#[derive(Clone, Default)]
pub struct Counter(Arc<Mutex<BTreeMap<(FileType, Op), Tally>>>);

impl Counter {
    fn add(&self, t: FileType, op: Op, bytes: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry((t, op)).or_default();
        e.requests += 1;
        e.bytes += bytes;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Requests {
        Requests {
            table: self.0.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            retried: super::retry::retried(),
        }
    }
}

/// A backend whose calls are counted.
pub struct Counting {
    inner: Arc<dyn Backend>,
    counter: Counter,
}

impl Counting {
    pub fn new(inner: Arc<dyn Backend>, counter: Counter) -> Self {
        Counting { inner, counter }
    }
}

impl Backend for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.counter.add(t, Op::Put, data.len() as u64);
        self.inner.put(t, name, data)
    }

    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let r = self.inner.get(t, name);
        let n = r.as_ref().map_or(0, |v| v.len() as u64);
        self.counter.add(t, Op::Get, n);
        r
    }

    fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let r = self.inner.get_range(t, name, offset, len);
        let n = r.as_ref().map_or(0, |v| v.len() as u64);
        self.counter.add(t, Op::Get, n);
        r
    }

    fn get_range_parts(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Parts> {
        let r = self.inner.get_range_parts(t, name, offset, len);
        let n = r.as_ref().map_or(0, |v| v.len() as u64);
        self.counter.add(t, Op::Get, n);
        r
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        let r = self.inner.list(t);
        let n = r.as_ref().map_or(0, |v| v.len() as u64);
        self.counter.add(t, Op::List, n);
        r
    }

    fn stat(&self, t: FileType, name: &str) -> Result<ObjectInfo> {
        self.counter.add(t, Op::Head, 0);
        self.inner.stat(t, name)
    }

    fn delete(&self, t: FileType, name: &str) -> Result<()> {
        self.counter.add(t, Op::Delete, 0);
        self.inner.delete(t, name)
    }

    fn remove_stale_temp(&self, max_age: Duration) -> Result<u64> {
        self.inner.remove_stale_temp(max_age)
    }

    fn is_local(&self) -> bool {
        self.inner.is_local()
    }

    fn settle(&self) -> Duration {
        self.inner.settle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    #[test]
    fn calls_are_counted_by_operation_and_type() {
        let counter = Counter::default();
        let b = Counting::new(Arc::new(MemoryBackend::new()), counter.clone());
        b.put(FileType::Pack, "ab01", &[0; 100]).unwrap();
        b.put(FileType::Lock, "cd", b"l").unwrap();
        b.get(FileType::Pack, "ab01").unwrap();
        b.get_range(FileType::Pack, "ab01", 10, 20).unwrap();
        assert!(b.get(FileType::Snapshot, "ee").is_err());
        b.list(FileType::Pack).unwrap();
        b.stat(FileType::Lock, "cd").unwrap();
        b.delete(FileType::Lock, "cd").unwrap();
        let r = counter.snapshot();
        assert_eq!(r.requests(), 8);
        assert_eq!(
            r.total(Op::Put),
            Tally {
                requests: 2,
                bytes: 101
            }
        );
        assert_eq!(
            r.get(FileType::Pack, Op::Get),
            Tally {
                requests: 2,
                bytes: 120
            }
        );
        assert_eq!(
            r.get(FileType::Snapshot, Op::Get),
            Tally {
                requests: 1,
                bytes: 0
            }
        );
        assert_eq!(
            r.get(FileType::Pack, Op::List),
            Tally {
                requests: 1,
                bytes: 1
            }
        );
        let j = r.to_json();
        assert_eq!(j["requests"], 8);
        assert_eq!(j["put"]["bytes"], 101);
        assert_eq!(j["by_type"]["lock"]["delete"]["requests"], 1);
        let s = r.summary();
        assert!(
            s.starts_with("requests: 8 (PUT 2, GET 3, LIST 1, HEAD 1, DELETE 1)"),
            "{s}"
        );
        assert!(s.contains("pack: PUT 1 GET 2 LIST 1"), "{s}");
    }
}
