//! `rewind unlock`.

use super::RepoArg;
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, live ones too (only when you know no rewind runs)
    #[arg(long)]
    pub all: bool,
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let repo = repo_arg.open()?;
    let removed = repo.unlock(args.all)?;
    for l in &removed {
        outln!("removed {}", l.describe())?;
    }
    let left = repo.locks()?;
    for l in &left {
        outln!("still held: {}", l.info.describe())?;
    }
    outln!(
        "{} removed, {} remain",
        super::output::count(removed.len() as u64, "lock", "locks"),
        left.len()
    )?;
    Ok(super::EXIT_OK)
}
