//! `rewind cat`.

use super::{select, FilterArgs, RepoArg};
use crate::format::tree::{Extent, Kind};
use anyhow::{bail, Context, Result};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAP[:PATH]: a snapshot (id, id prefix or `latest`: the newest holding PATH) and the file in it
    pub snapshot: String,
    /// Path of a file in the snapshot (or give it as SNAP:PATH)
    pub path: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let repo = repo.open()?;
    let (id, snap, path) = select::find_with_path(
        &repo,
        &args.snapshot,
        args.path.as_deref(),
        &args.filter.filter(),
    )?;
    let entry = repo
        .entry_at(&snap.tree, path.as_bytes())
        .with_context(|| format!("snapshot {}", id.short()))?;
    if entry.kind != Kind::File {
        bail!(
            "{path} in snapshot {} is a {}, not a regular file",
            id.short(),
            crate::compare::kind_name(entry.kind)
        );
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
    let zeros = vec![0u8; 1 << 16];
    for ext in &entry.extents {
        match ext {
            Extent::Data { id, len } => {
                let data = repo
                    .read_data(id, *len)
                    .with_context(|| format!("reading {path}"))?;
                out.write_all(&data)?;
            }
            Extent::Hole { len } => {
                let mut left = *len;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    out.write_all(&zeros[..n])?;
                    left -= n as u64;
                }
            }
        }
    }
    out.flush()?;
    Ok(super::EXIT_OK)
}
