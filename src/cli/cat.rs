//! `rewind cat`.

use super::{FilterArgs, RepoArg};
use crate::format::tree::{Extent, Kind};
use anyhow::{bail, Context, Result};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot: id, id prefix or `latest`
    pub snapshot: String,
    /// Path of a file in the snapshot
    pub path: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let repo = repo.open()?;
    let (_, snap) = repo
        .find_snapshot(&args.snapshot, &args.filter.filter())
        .with_context(|| format!("finding snapshot {}", args.snapshot))?;
    let entry = repo
        .entry_at(&snap.tree, args.path.as_bytes())
        .with_context(|| format!("snapshot {}", args.snapshot))?;
    if entry.kind != Kind::File {
        bail!("{} is a {:?}, not a regular file", args.path, entry.kind);
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let zeros = vec![0u8; 1 << 16];
    for ext in &entry.extents {
        match ext {
            Extent::Data { id, len } => {
                let data = repo
                    .read_data(id, *len)
                    .with_context(|| format!("reading {}", args.path))?;
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
