//! POSIX ACLs from their stored form (the `system.posix_acl_access` and
//! `system.posix_acl_default` extended attributes, as the kernel gives them)
//! to the text GNU tar writes in `SCHILY.acl.access` and `SCHILY.acl.default`.
//!
//! The kernel's form, little-endian:
//!
//! | bytes | field     | meaning                                           |
//! |-------|-----------|---------------------------------------------------|
//! | 4     | `version` | `2`                                               |
//! | 8 × n | entries   | `tag` u16, `perm` u16 (`rwx` = 4, 2, 1), `id` u32 |
//!
//! Tags: 1 `user::` (owner), 2 `user:ID:`, 4 `group::` (owning group),
//! 8 `group:ID:`, 16 `mask::`, 32 `other::`.
//!
//! The text is one entry a line, each line ending in a newline:
//! `user::rw-\nuser:1234:r--\ngroup::r--\nmask::rw-\nother::r--\n`. Named
//! entries keep the stored numeric id, not a name looked up on this machine:
//! the snapshot holds only the number, and both GNU tar (libacl's
//! `acl_from_text`) and bsdtar take a number where a name may stand.

/// The stored attribute names and the PAX keywords they become.
pub const ACCESS: (&[u8], &str) = (b"system.posix_acl_access", "SCHILY.acl.access");
pub const DEFAULT: (&[u8], &str) = (b"system.posix_acl_default", "SCHILY.acl.default");

/// The PAX keyword for ACL attribute `name`, if it is one.
pub fn keyword(name: &[u8]) -> Option<&'static str> {
    [ACCESS, DEFAULT]
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

/// The text form of a stored ACL, or `None` when the bytes are not one
/// (the caller then keeps the attribute as it is).
pub fn to_text(value: &[u8]) -> Option<String> {
    let (version, entries) = value.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*version) != 2 || entries.is_empty() || entries.len() % 8 != 0 {
        return None;
    }
    let mut text = String::new();
    for e in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        if perm > 7 {
            return None;
        }
        let (kind, qualifier) = match tag {
            1 => ("user", None),
            2 => ("user", Some(id)),
            4 => ("group", None),
            8 => ("group", Some(id)),
            16 => ("mask", None),
            32 => ("other", None),
            _ => return None,
        };
        let bit = |mask: u16, c: char| if perm & mask != 0 { c } else { '-' };
        text.push_str(kind);
        text.push(':');
        if let Some(id) = qualifier {
            text.push_str(&id.to_string());
        }
        text.push(':');
        text.extend([bit(4, 'r'), bit(2, 'w'), bit(1, 'x')]);
        text.push('\n');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    /// The text GNU tar 1.34 wrote for the same ACL (`setfacl -m
    /// u:1234:r,g:5678:rw f; tar --acls --format=pax -c f`).
    #[test]
    fn access_acl_reads_as_gnu_tar_writes_it() {
        let none = u32::MAX;
        let v = acl(&[
            (1, 6, none),
            (2, 4, 1234),
            (4, 4, none),
            (8, 6, 5678),
            (16, 6, none),
            (32, 4, none),
        ]);
        assert_eq!(
            to_text(&v).unwrap(),
            "user::rw-\nuser:1234:r--\ngroup::r--\ngroup:5678:rw-\nmask::rw-\nother::r--\n"
        );
        let d = acl(&[(1, 7, none), (4, 5, none), (32, 0, none)]);
        assert_eq!(to_text(&d).unwrap(), "user::rwx\ngroup::r-x\nother::---\n");
    }

    #[test]
    fn bytes_that_are_not_an_acl_are_refused() {
        let none = u32::MAX;
        assert!(to_text(b"").is_none());
        assert!(to_text(&[2, 0, 0]).is_none());
        let mut v = acl(&[(1, 6, none)]);
        v[0] = 1;
        assert!(to_text(&v).is_none(), "version 1");
        assert!(to_text(&acl(&[(3, 6, none)])).is_none(), "unknown tag");
        assert!(to_text(&acl(&[(1, 8, none)])).is_none(), "perm beyond rwx");
        let mut short = acl(&[(1, 6, none)]);
        short.pop();
        assert!(to_text(&short).is_none());
        assert!(to_text(&acl(&[])).is_none(), "no entries");
    }

    #[test]
    fn only_the_two_acl_attributes_have_keywords() {
        assert_eq!(
            keyword(b"system.posix_acl_access"),
            Some("SCHILY.acl.access")
        );
        assert_eq!(
            keyword(b"system.posix_acl_default"),
            Some("SCHILY.acl.default")
        );
        assert_eq!(keyword(b"system.posix_acl_other"), None);
        assert_eq!(keyword(b"user.acl"), None);
    }
}
