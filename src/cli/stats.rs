//! `rewind stats`.

use super::output::{self, bytes, quote};
use super::{select, FilterArgs, RepoArg};
use crate::format::id::{BlobId, TreeId};
use crate::format::tree::{Entry, Extent, Kind, Tree};
use crate::repo::walk::{walk, Flow, Visit};
use crate::repo::Repository;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One snapshot (id, prefix, `latest` or `latest:PATH`) [default: all]
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Totals {
    snapshots: u64,
    files: u64,
    logical: u64,
    unique_raw: u64,
    unique_stored: u64,
    blobs: u64,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let repo = repo.open()?;
    let filter = args.filter.filter();
    let snaps = match &args.snapshot {
        Some(spec) => {
            let (id, s, _) = select::find_with_path(&repo, spec, None, &filter)?;
            vec![(id, s)]
        }
        None => repo
            .snapshots()?
            .0
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect(),
    };
    let mut t = Totals::default();
    let mut blobs: HashSet<BlobId> = HashSet::new();
    for (id, s) in &snaps {
        t.snapshots += 1;
        let mut counter = Counter {
            repo: &repo,
            blobs: &mut blobs,
            t: &mut t,
        };
        walk(s.tree, b"", &mut counter).with_context(|| format!("snapshot {}", id.short()))?;
    }
    let repo_bytes: u64 = repo.list_packs()?.iter().map(|(_, o)| o.size).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut out = output::stdout();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "snapshots": t.snapshots, "files": t.files, "logical_bytes": t.logical,
                "unique_blobs": t.blobs, "unique_raw_bytes": t.unique_raw, "unique_stored_bytes": t.unique_stored,
                "dedup_ratio": ratio(t.logical, t.unique_raw), "compression_ratio": ratio(t.unique_raw, t.unique_stored),
                "repository_pack_bytes": repo_bytes,
                "encrypted": repo.is_encrypted(), "format": repo.config().format,
            })
        )?;
    } else {
        writeln!(
            out,
            "repository:          {}",
            if repo.is_encrypted() {
                "encrypted (format 2)"
            } else {
                "UNENCRYPTED (format 1): anyone who can read its files can read the backups"
            }
        )?;
        writeln!(out, "snapshots:           {}", t.snapshots)?;
        writeln!(out, "files:               {}", t.files)?;
        writeln!(out, "logical size:        {}", bytes(t.logical))?;
        writeln!(
            out,
            "unique data:         {} in {} blobs",
            bytes(t.unique_raw),
            t.blobs
        )?;
        writeln!(out, "stored size:         {}", bytes(t.unique_stored))?;
        writeln!(
            out,
            "deduplication ratio: {:.2}x",
            ratio(t.logical, t.unique_raw)
        )?;
        writeln!(
            out,
            "compression ratio:   {:.2}x",
            ratio(t.unique_raw, t.unique_stored)
        )?;
        writeln!(out, "repository packs:    {}", bytes(repo_bytes))?;
    }
    out.flush()?;
    Ok(super::EXIT_OK)
}

/// Counts per appearance: a tree shared inside one snapshot (or by several)
/// is walked each time it appears, so hard-linked and repeated content add to
/// the logical size; each blob's stored bytes are counted once.
struct Counter<'a> {
    repo: &'a Repository,
    blobs: &'a mut HashSet<BlobId>,
    t: &'a mut Totals,
}

impl Visit for Counter<'_> {
    type Error = anyhow::Error;

    fn enter(&mut self, path: &[u8], id: TreeId) -> Result<Option<Tree>> {
        let tree = self
            .repo
            .load_tree(&id)
            .with_context(|| format!("reading directory {}", quote(shown(path))))?;
        Ok(Some(tree))
    }

    fn entry(&mut self, _: &[u8], e: &mut Entry) -> Result<Flow> {
        if e.kind != Kind::File {
            return Ok(Flow::Next);
        }
        let t = &mut *self.t;
        t.files += 1;
        t.logical += e.size;
        for x in &e.extents {
            let Extent::Data { id, .. } = x else { continue };
            if !self.blobs.insert(*id) {
                continue;
            }
            if let Some(loc) = self.repo.lookup(id)? {
                t.blobs += 1;
                t.unique_raw += loc.raw_len as u64;
                // A bundled blob's share of its frame.
                t.unique_stored += loc.frame.stored_len as u64 * loc.raw_len as u64
                    / loc.frame.raw_len.max(1) as u64;
            }
        }
        Ok(Flow::Next)
    }
}

/// A walk path as shown: the snapshot root is `/`.
fn shown(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        b"/"
    } else {
        path
    }
}
