//! One entry against another, category by category. Pure: both sides are
//! [`Entry`] values, whether they come from a tree or from `stat`.

use super::{fmt_time, Category, CategorySet, Detail};
use crate::format::tree::{Entry, Extent, Kind, Xattr};

/// How to compare two entries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules {
    /// Categories not compared.
    pub ignore: CategorySet,
    /// Owners match by number only, not by name.
    pub numeric_owner: bool,
    /// Compare `nlink` (two snapshots; a live tree compares link groups instead).
    pub nlink: bool,
}

impl Rules {
    fn wants(&self, c: Category) -> bool {
        !self.ignore.contains(c)
    }
}

const ACL_PREFIX: &[u8] = b"system.posix_acl_";

/// Append the metadata differences between `a` and `b`, two entries of the
/// same kind: mode, owner, times, xattrs, ACLs, symlink target, device number
/// and (with [`Rules::nlink`]) the link count. File content and holes are
/// compared elsewhere: they need the bytes.
pub fn meta_details(a: &Entry, b: &Entry, rules: &Rules, out: &mut Vec<Detail>) {
    debug_assert_eq!(a.kind, b.kind);
    if rules.wants(Category::Mode) && a.mode != b.mode {
        out.push(Detail::new(
            Category::Mode,
            format!("{:04o}", a.mode),
            format!("{:04o}", b.mode),
        ));
    }
    if rules.wants(Category::Owner) && !same_owner(a, b, rules.numeric_owner) {
        out.push(Detail::new(Category::Owner, owner(a), owner(b)));
    }
    if rules.wants(Category::Mtime) && a.mtime != b.mtime {
        out.push(Detail::new(
            Category::Mtime,
            fmt_time(a.mtime),
            fmt_time(b.mtime),
        ));
    }
    if rules.wants(Category::Atime) && a.atime != b.atime {
        out.push(Detail::new(
            Category::Atime,
            fmt_time(a.atime),
            fmt_time(b.atime),
        ));
    }
    xattr_details(&a.xattrs, &b.xattrs, rules, out);
    if a.kind == Kind::Symlink && a.target != b.target {
        out.push(Detail::new(
            Category::Target,
            String::from_utf8_lossy(&a.target),
            String::from_utf8_lossy(&b.target),
        ));
    }
    if matches!(a.kind, Kind::CharDev | Kind::BlockDev) && a.rdev != b.rdev {
        out.push(Detail::new(Category::Rdev, dev(a.rdev), dev(b.rdev)));
    }
    if rules.nlink && rules.wants(Category::Links) && a.kind != Kind::Dir && a.nlink != b.nlink {
        out.push(Detail::new(
            Category::Links,
            format!("{} links", a.nlink),
            format!("{} links", b.nlink),
        ));
    }
}

/// uid and gid each match by number, or by the name the snapshot recorded
/// (what `restore` maps to a local id), unless `numeric`.
fn same_owner(a: &Entry, b: &Entry, numeric: bool) -> bool {
    let id =
        |x: u32, y: u32, nx: &str, ny: &str| x == y || (!numeric && !nx.is_empty() && nx == ny);
    id(a.uid, b.uid, &a.user, &b.user) && id(a.gid, b.gid, &a.group, &b.group)
}

fn owner(e: &Entry) -> String {
    if e.user.is_empty() && e.group.is_empty() {
        format!("{}:{}", e.uid, e.gid)
    } else {
        format!("{}:{} ({}:{})", e.uid, e.gid, e.user, e.group)
    }
}

fn dev(rdev: u64) -> String {
    format!("{}:{}", libc::major(rdev), libc::minor(rdev))
}

/// One detail per xattr name whose value differs or that exists on one side
/// only; ACLs under their own category.
fn xattr_details(a: &[Xattr], b: &[Xattr], rules: &Rules, out: &mut Vec<Detail>) {
    let (want_x, want_acl) = (rules.wants(Category::Xattr), rules.wants(Category::Acl));
    if (!want_x && !want_acl) || a == b {
        return;
    }
    let mut names: Vec<&[u8]> = a.iter().chain(b).map(|x| x.name.as_slice()).collect();
    names.sort();
    names.dedup();
    let find = |v: &'_ [Xattr], n: &[u8]| v.iter().find(|x| x.name == n).map(|x| x.value.clone());
    for name in names {
        let cat = if name.starts_with(ACL_PREFIX) {
            Category::Acl
        } else {
            Category::Xattr
        };
        if !rules.wants(cat) {
            continue;
        }
        let (va, vb) = (find(a, name), find(b, name));
        if va != vb {
            out.push(Detail {
                category: cat,
                item: String::from_utf8_lossy(name).into_owned(),
                a: value(va.as_deref()),
                b: value(vb.as_deref()),
            });
        }
    }
}

/// An xattr value for humans: quoted text, else hex (the first 32 bytes).
fn value(v: Option<&[u8]>) -> String {
    let Some(v) = v else {
        return "(absent)".into();
    };
    let text = v.strip_suffix(b"\0").unwrap_or(v);
    if text.len() <= 64 && text.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        return format!("{:?}", String::from_utf8_lossy(text));
    }
    let hex = crate::format::id::to_hex(&v[..v.len().min(32)]);
    let more = if v.len() > 32 { "…" } else { "" };
    format!("0x{hex}{more} ({} bytes)", v.len())
}

/// The holes of a file's extents as `(offset, length)`, neighbours merged,
/// empty ones dropped.
pub fn holes(extents: &[Extent]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0u64;
    for e in extents {
        if let Extent::Hole { len } = *e {
            if len > 0 {
                match out.last_mut() {
                    Some((off, l)) if *off + *l == pos => *l += len,
                    _ => out.push((pos, len)),
                }
            }
        }
        pos += e.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::BlobId;
    use crate::format::tree::Time;

    fn file() -> Entry {
        let mut e = Entry::new(b"f".to_vec(), Kind::File);
        e.mode = 0o644;
        e.uid = 1000;
        e.gid = 100;
        e.user = "alice".into();
        e.group = "users".into();
        e.mtime = Time { sec: 10, nsec: 1 };
        e.atime = Time { sec: 20, nsec: 2 };
        e
    }

    fn cats(a: &Entry, b: &Entry, rules: Rules) -> Vec<Category> {
        let mut out = Vec::new();
        meta_details(a, b, &rules, &mut out);
        out.iter().map(|d| d.category).collect()
    }

    #[test]
    fn one_category_at_a_time() {
        let a = file();
        let r = Rules::default();
        assert!(cats(&a, &a, r).is_empty());
        let mut b = a.clone();
        b.mode = 0o4644;
        assert_eq!(cats(&a, &b, r), [Category::Mode]);
        let mut b = a.clone();
        b.mtime.nsec += 1;
        assert_eq!(cats(&a, &b, r), [Category::Mtime]);
        let mut b = a.clone();
        b.atime.sec += 1;
        assert_eq!(cats(&a, &b, r), [Category::Atime]);
        let ignore_atime = Rules {
            ignore: CategorySet::of(&[Category::Atime]),
            ..r
        };
        assert!(cats(&a, &b, ignore_atime).is_empty());
        // ctime, dev and ino are not compared; nlink only when asked.
        let mut b = a.clone();
        b.ctime.sec += 5;
        b.ino += 1;
        b.dev += 1;
        b.nlink = 2;
        assert!(cats(&a, &b, r).is_empty());
        let nlink = Rules { nlink: true, ..r };
        assert_eq!(cats(&a, &b, nlink), [Category::Links]);
    }

    #[test]
    fn owners_match_by_number_or_by_name() {
        let a = file();
        let mut b = a.clone();
        b.uid = 1001; // alice has another uid here
        assert!(cats(&a, &b, Rules::default()).is_empty());
        let numeric = Rules {
            numeric_owner: true,
            ..Default::default()
        };
        assert_eq!(cats(&a, &b, numeric), [Category::Owner]);
        b.user = "bob".into();
        assert_eq!(cats(&a, &b, Rules::default()), [Category::Owner]);
        let mut c = a.clone();
        c.user.clear();
        c.gid = 7;
        c.group.clear();
        assert_eq!(cats(&a, &c, Rules::default()), [Category::Owner]);
    }

    #[test]
    fn xattrs_and_acls_are_named() {
        let x = |n: &str, v: &[u8]| Xattr {
            name: n.as_bytes().to_vec(),
            value: v.to_vec(),
        };
        let mut a = file();
        a.xattrs = vec![
            x("system.posix_acl_access", &[2, 0, 0, 0]),
            x("user.a", b"1"),
        ];
        let mut b = a.clone();
        b.xattrs[1].value = b"2".to_vec();
        b.xattrs.push(x("user.b", &[0xff; 40]));
        let mut out = Vec::new();
        meta_details(&a, &b, &Rules::default(), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].category, out[0].item.as_str()),
            (Category::Xattr, "user.a")
        );
        assert_eq!((out[0].a.as_str(), out[0].b.as_str()), ("\"1\"", "\"2\""));
        assert_eq!(out[1].item, "user.b");
        assert_eq!(out[1].a, "(absent)");
        assert!(out[1].b.ends_with("(40 bytes)"), "{}", out[1].b);
        let mut c = a.clone();
        c.xattrs[0].value = vec![2, 0, 0, 1];
        assert_eq!(cats(&a, &c, Rules::default()), [Category::Acl]);
        let no_acl = Rules {
            ignore: CategorySet::of(&[Category::Acl]),
            ..Default::default()
        };
        assert!(cats(&a, &c, no_acl).is_empty());
    }

    #[test]
    fn targets_and_devices_by_kind() {
        let mut a = Entry::new(b"l".to_vec(), Kind::Symlink);
        a.target = b"x".to_vec();
        let mut b = a.clone();
        b.target = b"y".to_vec();
        assert_eq!(cats(&a, &b, Rules::default()), [Category::Target]);
        let mut d = Entry::new(b"d".to_vec(), Kind::CharDev);
        d.rdev = libc::makedev(1, 3);
        let mut e = d.clone();
        e.rdev = libc::makedev(1, 5);
        let mut out = Vec::new();
        meta_details(&d, &e, &Rules::default(), &mut out);
        assert_eq!(out, [Detail::new(Category::Rdev, "1:3", "1:5")]);
    }

    #[test]
    fn holes_merge_and_skip_empty() {
        let data = |len| Extent::Data {
            id: BlobId([1; 32]),
            len,
        };
        let ext = [
            data(4),
            Extent::Hole { len: 6 },
            Extent::Hole { len: 0 },
            Extent::Hole { len: 2 },
            data(3),
            Extent::Hole { len: 0 },
            Extent::Hole { len: 5 },
        ];
        assert_eq!(holes(&ext), [(4, 8), (15, 5)]);
        assert!(holes(&[data(9)]).is_empty());
    }
}
