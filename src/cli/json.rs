//! JSON output shared by every command: times, names, snapshots.
//!
//! - Every time is an RFC 3339 string in local time with its offset,
//!   nanoseconds where stored ([`crate::clock::rfc3339`]).
//! - Every snapshot carries `id` (64 hex digits) and `short_id` (8).
//! - A name (path, symlink target) that is UTF-8 is a plain string. One that
//!   is not is written losslessly three ways: `KEY` holds it with each byte
//!   that is not UTF-8 as `\xNN` and each backslash doubled, `KEY_escaped` is
//!   `true`, and `KEY_hex` holds the exact bytes in hex. Without
//!   `KEY_escaped`, `KEY` is the name as it is (a backslash is a backslash).

use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Time;
use serde_json::{json, Value};

/// A time as RFC 3339.
pub fn time(t: Time) -> Value {
    crate::clock::rfc3339(t).into()
}

/// Set `key` (and, for a name that is not UTF-8, `key_escaped` and
/// `key_hex`) on object `v`.
pub fn name(v: &mut Value, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => v[key] = s.into(),
        Err(_) => {
            v[key] = escape(bytes).into();
            v[format!("{key}_escaped")] = true.into();
            v[format!("{key}_hex")] = crate::format::id::to_hex(bytes).into();
        }
    }
}

/// Bytes that are not UTF-8 as `\xNN`, backslashes doubled.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A snapshot: its manifest's fields, with `id`, `short_id` and RFC 3339 time;
/// `original` is the source snapshot's id for a copy (`rewind copy`), else null.
pub fn snapshot(id: &SnapshotId, s: &Snapshot) -> Value {
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": time(s.time),
        "host": s.host,
        "username": s.username,
        "paths": s.paths,
        "tags": s.tags,
        "tree": s.tree.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()),
        "original": s.original.map(|o| o.to_hex()),
        "program": s.program,
        "summary": s.summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lossless() {
        let mut v = json!({});
        name(&mut v, "path", "/srv/café\\x".as_bytes());
        assert_eq!(v, json!({ "path": "/srv/café\\x" }));
        let mut v = json!({});
        name(&mut v, "path", b"/srv/caf\xe9\\x");
        assert_eq!(
            v,
            json!({
                "path": "/srv/caf\\xe9\\\\x",
                "path_escaped": true,
                "path_hex": "2f7372762f636166e95c78",
            })
        );
    }
}
