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
//! history/…                   every path of the snapshots of one host, a file's versions side by side
//! history/<host>/…            the same per host, when the repository held several at mount time
//! ```
//!
//! Below `history/` the directories are not laid out here: [`super::history`]
//! merges them from the snapshots' trees when looked at. The layout says
//! where each history starts ([`Item::History`]) and which snapshots it
//! covers ([`Layout::history`]).
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
    /// The top of a history (`history/`, or `history/<host>/`).
    History,
}

/// Whose snapshots `history/` shows: decided once per mount, from the hosts
/// in the repository then ([`HistoryHosts::of`]), so that paths below
/// `history/` do not move while mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryHosts {
    /// No snapshot yet: `history/` is empty until there is one.
    Undecided,
    /// One host: its paths right in `history/`. Snapshots of other hosts
    /// written while mounted are not in it (they are in `hosts/`).
    One(String),
    /// Several: `history/<host>/…`, a host that appears while mounted included.
    Each,
}

impl HistoryHosts {
    /// The choice for `snaps`.
    pub fn of(snaps: &[SnapInfo]) -> HistoryHosts {
        let mut hosts = snaps.iter().map(|s| &s.host);
        match hosts.next() {
            None => HistoryHosts::Undecided,
            Some(h) if snaps.iter().all(|s| &s.host == h) => HistoryHosts::One(h.clone()),
            Some(_) => HistoryHosts::Each,
        }
    }
}

/// The snapshots one history covers, oldest first.
#[derive(Clone, Debug)]
pub struct History {
    pub snaps: Vec<SnapInfo>,
    /// Differs whenever the snapshots do: cached history directories are
    /// keyed by it, so a new snapshot makes them be merged afresh.
    pub stamp: [u8; 16],
}

/// The virtual tree: directory path (`""` is the root, `hosts/web1` …) to its
/// entries sorted by name.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    dirs: HashMap<Vec<u8>, Vec<(Vec<u8>, Item)>>,
    snaps: HashMap<SnapshotId, SnapInfo>,
    /// Layout path of each history's top to its snapshots.
    histories: HashMap<Vec<u8>, History>,
    newest: Time,
}

impl Layout {
    /// Lay out `snaps`; `time_name` turns a snapshot time into its directory
    /// name (local time in the mount, fixed text in tests); `hosts` says
    /// whose snapshots `history/` shows.
    pub fn build(
        mut snaps: Vec<SnapInfo>,
        time_name: impl Fn(Time) -> String,
        hosts: &HistoryHosts,
    ) -> Layout {
        snaps.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        let names = unique_names(&snaps, &time_name);
        let mut dirs: Dirs = BTreeMap::new();
        for top in ["history", "hosts", "ids", "snapshots", "tags"] {
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
        let histories = histories(&mut dirs, &snaps, hosts);
        Layout {
            dirs: dirs
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            histories,
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

    /// The history whose top is at layout path `top`.
    pub fn history(&self, top: &[u8]) -> Option<&History> {
        self.histories.get(top)
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
                    Item::History => {
                        let h = &self.histories[&join(dir, name)];
                        let ids: Vec<String> = h.snaps.iter().map(|s| s.id.short()).collect();
                        format!("{path}/ = history of {}", ids.join(" "))
                    }
                });
            }
        }
        out.sort();
        out
    }
}

/// The histories `hosts` asks for, as items of `dirs`, with their snapshots.
fn histories(
    dirs: &mut Dirs,
    snaps: &[SnapInfo],
    hosts: &HistoryHosts,
) -> HashMap<Vec<u8>, History> {
    let mut tops: BTreeMap<Vec<u8>, Vec<SnapInfo>> = BTreeMap::new();
    match hosts {
        HistoryHosts::Undecided => {}
        HistoryHosts::One(host) => {
            let mine = snaps.iter().filter(|s| &s.host == host).cloned();
            tops.insert(b"history".to_vec(), mine.collect());
            dirs.entry(Vec::new())
                .or_default()
                .insert(b"history".to_vec(), Item::History);
            dirs.remove(b"history".as_slice());
        }
        HistoryHosts::Each => {
            for s in snaps {
                let name = safe_name(&s.host);
                dirs.entry(b"history".to_vec())
                    .or_default()
                    .insert(name.clone(), Item::History);
                tops.entry(join(b"history", &name))
                    .or_default()
                    .push(s.clone());
            }
        }
    }
    tops.into_iter()
        .map(|(top, snaps)| {
            let mut h = blake3::Hasher::new();
            h.update(&top);
            for s in &snaps {
                h.update(&s.id.0);
            }
            let stamp = h.finalize().as_bytes()[..16].try_into().expect("16 bytes");
            (top, History { snaps, stamp })
        })
        .collect()
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
        let hosts = HistoryHosts::of(&snaps);
        assert_eq!(hosts, HistoryHosts::Each);
        let l = Layout::build(snaps, name, &hosts);
        let want = [
            "history/",
            "history/_/ = history of dddddddd",
            "history/db/ = history of cccccccc",
            "history/web1/ = history of aaaaaaaa bbbbbbbb",
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
        let l = Layout::build(Vec::new(), name, &HistoryHosts::of(&[]));
        assert_eq!(
            l.dump(),
            ["history/", "hosts/", "ids/", "snapshots/", "tags/"]
        );
        assert!(l.list(b"snapshots").unwrap().is_empty());
    }

    #[test]
    fn short_ids_that_collide_use_the_full_id() {
        let mut a = snap(1, 1, "h", &[]);
        let mut b = snap(2, 2, "h", &[]);
        a.id.0[..4].copy_from_slice(&[9; 4]);
        b.id.0[..4].copy_from_slice(&[9; 4]);
        let l = Layout::build(vec![a.clone(), b], name, &HistoryHosts::Undecided);
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
        let l = Layout::build(vec![snap(1, 5, "h", &[])], name, &HistoryHosts::Undecided);
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

    #[test]
    fn one_host_has_its_history_right_in_history_and_keeps_it() {
        let first = vec![snap(1, 10, "web1", &[]), snap(2, 20, "web1", &[])];
        let hosts = HistoryHosts::of(&first);
        assert_eq!(hosts, HistoryHosts::One("web1".into()));
        let l = Layout::build(first.clone(), name, &hosts);
        let history: Vec<String> = l
            .dump()
            .into_iter()
            .filter(|p| p.starts_with("history"))
            .collect();
        assert_eq!(history, ["history/ = history of 01010101 02020202"]);
        assert_eq!(l.at(b"history"), Some(&Item::History));
        assert!(l.list(b"history").is_none(), "not a layout directory");
        // A second host written while mounted: history/ stays web1's.
        let mut more = first.clone();
        more.push(snap(3, 30, "db", &[]));
        more.push(snap(4, 40, "web1", &[]));
        let l2 = Layout::build(more, name, &hosts);
        let h2 = l2.history(b"history").unwrap();
        let ids: Vec<u8> = h2.snaps.iter().map(|s| s.id.0[0]).collect();
        assert_eq!(ids, [1, 2, 4]);
        assert_ne!(
            h2.stamp,
            l.history(b"history").unwrap().stamp,
            "a new snapshot, a new stamp"
        );
        let again = Layout::build(first, name, &hosts);
        assert_eq!(
            again.history(b"history").unwrap().stamp,
            l.history(b"history").unwrap().stamp
        );
    }
}
