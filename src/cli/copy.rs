//! `rewind copy --from-repo SRC [SNAP…]`.

use super::output::bytes;
use super::password::FromPasswordArgs;
use super::{FilterArgs, RepoArg};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The repository to copy from (its password: --from-password-file,
    /// --from-password-command, REWIND_FROM_PASSWORD or the terminal)
    #[arg(long, value_name = "REPO")]
    pub from_repo: PathBuf,
    #[command(flatten)]
    pub from: FromPasswordArgs,
    /// Snapshots to copy (ids, prefixes or `latest`) [default: every one the filters let through]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let src = super::open_other(&args.from_repo, &args.from)?;
    let _src_lock = repo_arg.lock_unindexed(&src, false, "copy (source)")?;
    src.reload_index()?;
    let (dst, _lock) = repo_arg.open_locked(false, "copy")?;
    let filter = args.filter.filter();
    let mut chosen = Vec::new();
    if args.snapshots.is_empty() {
        chosen = src
            .snapshots()?
            .0
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect();
    } else {
        for spec in &args.snapshots {
            chosen.push(
                src.find_snapshot(spec, &filter)
                    .with_context(|| format!("finding snapshot {spec} in {}", src.location()))?,
            );
        }
        chosen.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        chosen.dedup_by_key(|(id, _)| *id);
    }
    let report = crate::copy::copy(
        &src,
        &dst,
        &chosen,
        repo_arg.connections(),
        &crate::progress::Silent,
    )
    .with_context(|| format!("copying from {} to {}", src.location(), dst.location()))?;
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        for (from, to) in &report.copied {
            outln!("copied {} -> {}", &from[..8], &to[..8])?;
        }
        outln!(
            "{} copied, {} already there; read {}, added {} ({} data blobs, {} trees)",
            report.copied.len(),
            report.skipped.len(),
            bytes(report.bytes_read),
            bytes(report.bytes_added),
            report.data_blobs,
            report.tree_blobs
        )?;
    }
    Ok(super::EXIT_OK)
}
