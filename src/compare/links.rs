//! Hard-link groups: the partition of paths into sets that are one inode, in
//! the snapshot (by the source's `(dev, ino)`) and in the live tree (by
//! `(st_dev, st_ino)`), compared path by path.

use super::{Category, Detail};
use std::collections::HashMap;

/// A path present on both sides, with its link key on each (`None` when it
/// has a single link there).
pub(super) struct Member {
    pub path: Vec<u8>,
    pub snap: Option<(u64, u64)>,
    pub live: Option<(u64, u64)>,
}

/// The members (by index) whose group differs, with what each side links
/// them to. Only
/// the paths given count: a link to a path outside the comparison (or present
/// on one side only) is not a difference here.
pub(super) fn differences(members: &[Member]) -> Vec<(usize, Detail)> {
    let group = |key: fn(&Member) -> Option<(u64, u64)>| {
        let mut g: HashMap<(u64, u64), Vec<&[u8]>> = HashMap::new();
        for m in members {
            if let Some(k) = key(m) {
                g.entry(k).or_default().push(&m.path);
            }
        }
        for v in g.values_mut() {
            v.sort();
        }
        g
    };
    let (snap, live) = (group(|m| m.snap), group(|m| m.live));
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let (a, b) = (
            others(&snap, m.snap, &m.path),
            others(&live, m.live, &m.path),
        );
        if a != b {
            out.push((i, Detail::new(Category::Links, describe(&a), describe(&b))));
        }
    }
    out
}

/// The other members of the group `k` in `g`.
fn others<'p>(
    g: &HashMap<(u64, u64), Vec<&'p [u8]>>,
    k: Option<(u64, u64)>,
    me: &[u8],
) -> Vec<&'p [u8]> {
    k.and_then(|k| g.get(&k))
        .map(|v| v.iter().filter(|p| **p != me).copied().collect())
        .unwrap_or_default()
}

fn describe(others: &[&[u8]]) -> String {
    const SHOWN: usize = 4;
    if others.is_empty() {
        return "not linked".into();
    }
    let mut s = String::from("linked with ");
    for (i, p) in others.iter().take(SHOWN).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&String::from_utf8_lossy(p));
    }
    if others.len() > SHOWN {
        s.push_str(&format!(" and {} more", others.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(path: &str, snap: Option<u64>, live: Option<u64>) -> Member {
        Member {
            path: path.as_bytes().to_vec(),
            snap: snap.map(|i| (1, i)),
            live: live.map(|i| (9, i)),
        }
    }

    #[test]
    fn same_partition_under_other_inode_numbers_is_no_difference() {
        let ms = [
            m("/a", Some(5), Some(70)),
            m("/b", Some(5), Some(70)),
            m("/c", Some(6), Some(71)),
            m("/d", Some(6), Some(71)),
        ];
        assert!(differences(&ms).is_empty());
    }

    #[test]
    fn a_broken_link_is_named_on_every_member() {
        let ms = [
            m("/a", Some(5), Some(70)),
            m("/b", Some(5), Some(70)),
            m("/c", Some(5), None),
        ];
        let d = differences(&ms);
        let which: Vec<usize> = d.iter().map(|(i, _)| *i).collect();
        assert_eq!(which, [0, 1, 2]);
        assert_eq!(d[0].1.a, "linked with /b, /c");
        assert_eq!(d[0].1.b, "linked with /b");
        assert_eq!(d[2].1.b, "not linked");
    }

    #[test]
    fn regrouped_links_differ_and_lone_keys_do_not() {
        // A group whose other member is outside the comparison is a single path.
        assert!(differences(&[m("/x", Some(1), None)]).is_empty());
        let ms = [
            m("/a", Some(1), Some(1)),
            m("/b", Some(1), Some(2)),
            m("/c", Some(2), Some(1)),
            m("/d", Some(2), Some(2)),
        ];
        assert_eq!(differences(&ms).len(), 4);
    }
}
