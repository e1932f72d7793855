//! `rewind stats`.

use super::output::{self, bytes};
use super::{select, FilterArgs, RepoArg};
use crate::format::id::{BlobId, TreeId};
use crate::format::tree::{Extent, Kind};
use crate::repo::Repository;
use anyhow::Result;
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
    for (_, s) in &snaps {
        t.snapshots += 1;
        walk(&repo, s.tree, &mut blobs, &mut t)?;
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

fn walk(repo: &Repository, id: TreeId, blobs: &mut HashSet<BlobId>, t: &mut Totals) -> Result<()> {
    // Counting per snapshot: a tree shared inside one snapshot is counted once
    // per appearance, so hard-linked and repeated content add to the logical size.
    let tree = repo.load_tree(&id)?;
    for e in &tree.entries {
        match e.kind {
            Kind::Dir => {
                if let Some(sub) = e.subtree {
                    walk(repo, sub, blobs, t)?;
                }
            }
            Kind::File => {
                t.files += 1;
                t.logical += e.size;
                for x in &e.extents {
                    if let Extent::Data { id, .. } = x {
                        if blobs.insert(*id) {
                            if let Some(loc) = repo.lookup(id)? {
                                t.blobs += 1;
                                t.unique_raw += loc.raw_len as u64;
                                // A bundled blob's share of its frame.
                                t.unique_stored += loc.frame.stored_len as u64 * loc.raw_len as u64
                                    / loc.frame.raw_len.max(1) as u64;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
