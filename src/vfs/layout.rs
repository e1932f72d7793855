//! The virtual directories above the snapshots: what the mount shows at its
//! root when no `--snapshot` is given.
//!
//! ```text
//! snapshots/<time>/…          one per snapshot, local time YYYY-MM-DDTHH:MM:SS;
//!                             `-<short id>` appended to every snapshot sharing a second
//! snapshots/latest -> <time>
//! ids/<short id>/…            8 hex digits (all 64 where two share the first 8)
//! hosts/<host>/<time>/…       hosts/<host>/latest -> <time>
//! tags/<tag>/<time>/…         tags/<tag>/latest -> <time>
//! ```
//!
//! A [`Layout`] is plain data built from the snapshot list by one pure function
//! ([`Layout::build`]); the mount rebuilds it when the list changes, and the
//! table test below pins every path. Host and tag names that are not safe file
//! names (empty, `.`, `..`, containing `/` or NUL) are made safe with `_`.

use crate::format::id::{SnapshotId, TreeId};
use crate::format::tree::{valid_name, Time};
use std::collections::{BTreeMap, HashMap};

/// What the layout needs to know about one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapInfo {
    pub id: SnapshotId,
    pub time: Time,
    pub host: String,
    pub tags: Vec<String>,
    pub tree: TreeId,
}

/// Directories being built: path to names to items.
type Dirs = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Item>>;

/// One name in a virtual directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Another virtual directory.
    Dir,
    /// The root directory of a snapshot.
    Snapshot(SnapshotId),
    /// A symlink (`latest`) with this target.
    Link(Vec<u8>),
}

/// The virtual tree: directory path (`""` is the root, `hosts/web1` …) to its
/// entries sorted by name.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    dirs: HashMap<Vec<u8>, Vec<(Vec<u8>, Item)>>,
    snaps: HashMap<SnapshotId, SnapInfo>,
    newest: Time,
}

impl Layout {
    /// Lay out `snaps`; `time_name` turns a snapshot time into its directory
    /// name (local time in the mount, fixed text in tests).
    pub fn build(mut snaps: Vec<SnapInfo>, time_name: impl Fn(Time) -> String) -> Layout {
        snaps.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        let names = unique_names(&snaps, &time_name);
        let mut dirs: Dirs = BTreeMap::new();
        for top in ["hosts", "ids", "snapshots", "tags"] {
            dirs.entry(Vec::new())
                .or_default()
                .insert(top.into(), Item::Dir);
            dirs.entry(top.into()).or_default();
        }
        let mut short_count: HashMap<String, usize> = HashMap::new();
        for s in &snaps {
            *short_count.entry(s.id.short()).or_default() += 1;
        }
        for (s, name) in snaps.iter().zip(&names) {
            let id_name = if short_count[&s.id.short()] > 1 {
                s.id.to_hex()
            } else {
                s.id.short()
            };
            add_snapshot(&mut dirs, b"snapshots", name, s.id);
            add_snapshot(&mut dirs, b"ids", id_name.as_bytes(), s.id);
            let host = join(b"hosts", &safe_name(&s.host));
            dirs.entry(b"hosts".to_vec())
                .or_default()
                .insert(safe_name(&s.host), Item::Dir);
            add_snapshot(&mut dirs, &host, name, s.id);
            for tag in &s.tags {
                let tag_dir = join(b"tags", &safe_name(tag));
                dirs.entry(b"tags".to_vec())
                    .or_default()
                    .insert(safe_name(tag), Item::Dir);
                add_snapshot(&mut dirs, &tag_dir, name, s.id);
            }
        }
        add_latest(&mut dirs, &snaps, &names);
        Layout {
            dirs: dirs
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            newest: snaps.last().map(|s| s.time).unwrap_or_default(),
            snaps: snaps.into_iter().map(|s| (s.id, s)).collect(),
        }
    }

    /// The entries of virtual directory `dir`, sorted by name.
    pub fn list(&self, dir: &[u8]) -> Option<&[(Vec<u8>, Item)]> {
        self.dirs.get(dir).map(Vec::as_slice)
    }

    /// The item called `name` in `dir`.
    pub fn get(&self, dir: &[u8], name: &[u8]) -> Option<&Item> {
        let list = self.list(dir)?;
        list.binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .ok()
            .map(|i| &list[i].1)
    }

    /// The item at a full virtual path (`None` for the root itself).
    pub fn at(&self, path: &[u8]) -> Option<&Item> {
        let (dir, name) = split(path);
        self.get(dir, name)
    }

    pub fn snapshot(&self, id: &SnapshotId) -> Option<&SnapInfo> {
        self.snaps.get(id)
    }

    /// When the newest snapshot was taken: the time the virtual directories show.
    pub fn newest(&self) -> Time {
        self.newest
    }

    /// Every path with its item, sorted: what the table test compares.
    pub fn dump(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (dir, entries) in &self.dirs {
            for (name, item) in entries {
                let path = String::from_utf8_lossy(&join(dir, name)).into_owned();
                out.push(match item {
                    Item::Dir => format!("{path}/"),
                    Item::Snapshot(id) => format!("{path}/ = {}", id.short()),
                    Item::Link(t) => format!("{path} -> {}", String::from_utf8_lossy(t)),
                });
            }
        }
        out.sort();
        out
    }
}

fn add_snapshot(dirs: &mut Dirs, dir: &[u8], name: &[u8], id: SnapshotId) {
    dirs.entry(dir.to_vec())
        .or_default()
        .insert(name.to_vec(), Item::Snapshot(id));
}

/// `latest` in every directory that lists snapshots by time, pointing at the
/// newest one there.
fn add_latest(dirs: &mut Dirs, snaps: &[SnapInfo], names: &[Vec<u8>]) {
    let mut latest: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (dir, entries) in dirs.iter() {
        let by_time = dir.as_slice() == b"snapshots"
            || dir.starts_with(b"hosts/")
            || dir.starts_with(b"tags/");
        if let Some(newest) = by_time
            .then(|| newest_name(entries, snaps, names))
            .flatten()
        {
            latest.push((dir.clone(), newest));
        }
    }
    for (dir, target) in latest {
        dirs.entry(dir)
            .or_default()
            .insert(b"latest".to_vec(), Item::Link(target));
    }
}

/// The name of the newest snapshot among `entries`.
fn newest_name(
    entries: &BTreeMap<Vec<u8>, Item>,
    snaps: &[SnapInfo],
    names: &[Vec<u8>],
) -> Option<Vec<u8>> {
    let present: std::collections::HashSet<&SnapshotId> = entries
        .values()
        .filter_map(|i| match i {
            Item::Snapshot(id) => Some(id),
            _ => None,
        })
        .collect();
    snaps
        .iter()
        .zip(names)
        .rev()
        .find(|(s, _)| present.contains(&s.id))
        .map(|(_, n)| n.clone())
}

/// Time names, with the short id appended to every snapshot whose second is
/// shared, so no name depends on which of them was listed first.
fn unique_names(snaps: &[SnapInfo], time_name: &impl Fn(Time) -> String) -> Vec<Vec<u8>> {
    let plain: Vec<String> = snaps.iter().map(|s| time_name(s.time)).collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for n in &plain {
        *count.entry(n.as_str()).or_default() += 1;
    }
    snaps
        .iter()
        .zip(&plain)
        .map(|(s, n)| {
            if count[n.as_str()] > 1 {
                format!("{n}-{}", s.id.short()).into_bytes()
            } else {
                n.clone().into_bytes()
            }
        })
        .collect()
}

/// `dir/name`, or `name` in the root.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// A path's directory and last name (`("", "")` for the root).
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// A host or tag as a file name.
fn safe_name(s: &str) -> Vec<u8> {
    let mut b: Vec<u8> = s
        .bytes()
        .map(|c| if c == b'/' || c == 0 { b'_' } else { c })
        .collect();
    if !valid_name(&b) {
        b.insert(0, b'_');
    }
    b
}

/// `YYYY-MM-DDTHH:MM:SS` in local time (as `rewind snapshots` shows it).
pub fn local_time_name(t: Time) -> String {
    crate::clock::stamp(t, 'T')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(n: u8, sec: i64, host: &str, tags: &[&str]) -> SnapInfo {
        SnapInfo {
            id: SnapshotId([n; 32]),
            time: Time {
                sec,
                nsec: n as u32,
            },
            host: host.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: TreeId([n; 32]),
        }
    }

    fn name(t: Time) -> String {
        format!("T{}", t.sec)
    }

    #[test]
    fn every_path_of_a_small_repository() {
        let snaps = vec![
            snap(0xbb, 20, "web1", &["nightly"]),
            snap(0xaa, 10, "web1", &[]),
            snap(0xcc, 20, "db", &["nightly", "a/b"]),
            snap(0xdd, 30, "", &[".."]),
        ];
        let l = Layout::build(snaps, name);
        let want = [
            "hosts/",
            "hosts/_/",
            "hosts/_/T30/ = dddddddd",
            "hosts/_/latest -> T30",
            "hosts/db/",
            "hosts/db/T20-cccccccc/ = cccccccc",
            "hosts/db/latest -> T20-cccccccc",
            "hosts/web1/",
            "hosts/web1/T10/ = aaaaaaaa",
            "hosts/web1/T20-bbbbbbbb/ = bbbbbbbb",
            "hosts/web1/latest -> T20-bbbbbbbb",
            "ids/",
            "ids/aaaaaaaa/ = aaaaaaaa",
            "ids/bbbbbbbb/ = bbbbbbbb",
            "ids/cccccccc/ = cccccccc",
            "ids/dddddddd/ = dddddddd",
            "snapshots/",
            "snapshots/T10/ = aaaaaaaa",
            "snapshots/T20-bbbbbbbb/ = bbbbbbbb",
            "snapshots/T20-cccccccc/ = cccccccc",
            "snapshots/T30/ = dddddddd",
            "snapshots/latest -> T30",
            "tags/",
            "tags/_../",
            "tags/_../T30/ = dddddddd",
            "tags/_../latest -> T30",
            "tags/a_b/",
            "tags/a_b/T20-cccccccc/ = cccccccc",
            "tags/a_b/latest -> T20-cccccccc",
            "tags/nightly/",
            "tags/nightly/T20-bbbbbbbb/ = bbbbbbbb",
            "tags/nightly/T20-cccccccc/ = cccccccc",
            "tags/nightly/latest -> T20-cccccccc",
        ];
        assert_eq!(l.dump(), want);
        assert_eq!(
            l.newest(),
            Time {
                sec: 30,
                nsec: 0xdd
            }
        );
    }

    #[test]
    fn an_empty_repository_has_the_four_directories_and_no_latest() {
        let l = Layout::build(Vec::new(), name);
        assert_eq!(l.dump(), ["hosts/", "ids/", "snapshots/", "tags/"]);
        assert!(l.list(b"snapshots").unwrap().is_empty());
    }

    #[test]
    fn short_ids_that_collide_use_the_full_id() {
        let mut a = snap(1, 1, "h", &[]);
        let mut b = snap(2, 2, "h", &[]);
        a.id.0[..4].copy_from_slice(&[9; 4]);
        b.id.0[..4].copy_from_slice(&[9; 4]);
        let l = Layout::build(vec![a.clone(), b], name);
        let ids: Vec<_> = l
            .list(b"ids")
            .unwrap()
            .iter()
            .map(|(n, _)| n.len())
            .collect();
        assert_eq!(ids, [64, 64]);
        assert_eq!(
            l.get(b"ids", a.id.to_hex().as_bytes()),
            Some(&Item::Snapshot(a.id))
        );
    }

    #[test]
    fn lookups_and_paths() {
        let l = Layout::build(vec![snap(1, 5, "h", &[])], name);
        assert_eq!(l.get(b"", b"snapshots"), Some(&Item::Dir));
        assert_eq!(l.at(b"hosts/h/latest"), Some(&Item::Link(b"T5".to_vec())));
        assert_eq!(
            l.at(b"hosts/h/T5"),
            Some(&Item::Snapshot(SnapshotId([1; 32])))
        );
        assert_eq!(l.at(b"hosts/nope"), None);
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"a"), (&b""[..], &b"a"[..]));
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a", b"b"), b"a/b");
        assert_eq!(local_time_name(Time { sec: 0, nsec: 0 }).len(), 19);
    }
}
