//! Which snapshot a command line names: `SNAP[:PATH]`, where SNAP is an id,
//! a unique id prefix of 4 or more hex digits, or `latest`, narrowed by
//! `--host`, `--path` and `--tag`.
//!
//! `latest:PATH` (or `latest` with a PATH argument) is the newest snapshot
//! that holds PATH, so with files and a database dump backed up as two
//! snapshots, `restore latest:/srv/www` finds the files, not the dump.

use crate::error::Error;
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::repo::{Repository, SnapshotFilter};
use anyhow::{bail, Context, Result};

/// Split `SNAP[:PATH]` (ids never hold a `:`).
pub fn split(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) => (s, Some(p)),
        None => (spec, None),
    }
}

/// The snapshot `spec` (without `:PATH`) names among those `filter` lets
/// through; `latest` is the newest that holds `holding` when given.
pub fn find(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
    holding: Option<&str>,
) -> Result<(SnapshotId, Snapshot)> {
    let (all, bad) = repo.snapshots()?;
    let candidates: Vec<_> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    let narrowed = describe(filter);
    if spec == "latest" {
        let Some(path) = holding else {
            return candidates.into_iter().next_back().with_context(|| {
                let damaged = damaged_note(&bad);
                format!("there is no snapshot{narrowed} (`latest` names none){damaged}")
            });
        };
        for (id, s) in candidates.into_iter().rev() {
            if holds(repo, &s, path)
                .with_context(|| format!("looking for {path} in snapshot {}", id.short()))?
            {
                return Ok((id, s));
            }
        }
        let damaged = damaged_note(&bad);
        bail!("no snapshot{narrowed} holds {path} (`latest:{path}` names none){damaged}");
    }
    if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{spec:?} is not a snapshot id, an id prefix of 4 or more hex digits, or `latest`"
        ))
        .into());
    }
    let prefix = spec.to_ascii_lowercase();
    let mut matching: Vec<_> = candidates
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&prefix))
        .collect();
    match matching.len() {
        0 => Err(Error::NotFound(format!("snapshot {spec}{narrowed}")).into()),
        1 => Ok(matching.pop().expect("one")),
        n => {
            let list: Vec<String> = matching
                .iter()
                .rev()
                .map(|(id, s)| {
                    format!(
                        "  {}  {}  {}  {}",
                        id.to_hex(),
                        super::output::time(s.time),
                        s.host,
                        s.paths.join(" ")
                    )
                })
                .collect();
            Err(Error::InvalidInput(format!(
                "snapshot prefix {spec} is ambiguous: {n} snapshots match; give more digits of one of\n{}",
                list.join("\n")
            ))
            .into())
        }
    }
}

/// `SNAP[:PATH]` resolved: the snapshot and the path in it (`/` if none).
/// `extra_path` is a path given as a separate argument (`ls SNAP PATH`).
pub fn find_with_path(
    repo: &Repository,
    spec: &str,
    extra_path: Option<&str>,
    filter: &SnapshotFilter,
) -> Result<(SnapshotId, Snapshot, String)> {
    let (snap, path) = split(spec);
    let path = match (path, extra_path) {
        (Some(_), Some(_)) => {
            usage!("give the path once: as SNAP:PATH or as a separate argument")
        }
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => "/",
    };
    let path = absolute(path);
    let holding = (path != "/").then_some(path.as_str());
    let (id, s) =
        find(repo, snap, filter, holding).with_context(|| format!("finding snapshot {spec}"))?;
    Ok((id, s, path))
}

/// `path` with a leading `/` and no trailing one.
pub fn absolute(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    format!("/{trimmed}")
}

/// Whether snapshot `s` holds `path`: one of its backed-up paths is `path`,
/// above it or below it, and the tree has the entry.
fn holds(repo: &Repository, s: &Snapshot, path: &str) -> Result<bool> {
    let inside =
        |a: &str, b: &str| a == b || a.starts_with(&format!("{}/", b.trim_end_matches('/')));
    if !s.paths.iter().any(|p| inside(path, p) || inside(p, path)) {
        return Ok(false);
    }
    match repo.entry_at(&s.tree, path.as_bytes()) {
        Ok(_) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// ` (host web1, tag nightly)` for the filters in force, else ``.
fn describe(f: &SnapshotFilter) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &f.host {
        parts.push(format!("host {h}"));
    }
    parts.extend(f.paths.iter().map(|p| format!("path {p}")));
    parts.extend(f.tags.iter().map(|t| format!("tag {t}")));
    if parts.is_empty() {
        String::new()
    } else {
        format!(" with {}", parts.join(", "))
    }
}

fn damaged_note(bad: &[Error]) -> String {
    if bad.is_empty() {
        String::new()
    } else {
        format!(
            "; {} could not be read (see `rewind snapshots`)",
            super::output::count(bad.len() as u64, "snapshot", "snapshots")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_and_paths_normalize() {
        assert_eq!(split("latest:/srv/www"), ("latest", Some("/srv/www")));
        assert_eq!(split("1a2b"), ("1a2b", None));
        assert_eq!(absolute("srv/www/"), "/srv/www");
        assert_eq!(absolute("/"), "/");
        assert_eq!(absolute(""), "/");
    }
}
