//! `rewind repair`.

use super::RepoArg;
use anyhow::{Context, Result};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Rebuild the index from the pack headers (after index files were lost or damaged)
    Index {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn run(repo_arg: &RepoArg, cmd: Command) -> Result<u8> {
    let Command::Index { json } = cmd;
    let (repo, _lock) = repo_arg.open_locked(true, "repair index")?;
    let report = crate::prune::repair_index(&repo, &super::output::Reporter::new("read", false))
        .context("rebuilding the index")?;
    if json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!(
            "indexed {} blobs in {} packs: {} index files written, {} old ones removed",
            report.blobs,
            report.packs,
            report.index_files_written,
            report.index_files_removed
        )?;
        for u in &report.unreadable {
            outln!(
                "unreadable pack header (old index files kept, so its blobs stay indexed): {u}"
            )?;
        }
    }
    Ok(if report.unreadable.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    })
}
