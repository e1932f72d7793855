//! `rewind completion SHELL` and `rewind man`: generated from the same clap
//! definition as the parser, so they never disagree with it.

use anyhow::{Context, Result};
use clap_complete::Shell;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write rewind.1 and one page per command (rewind-backup.1, …) into this directory instead
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completion(args: CompletionArgs) -> Result<u8> {
    let mut cmd = super::command();
    // Into memory first: the generators panic on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "rewind", &mut script);
    let mut out = super::output::stdout();
    out.write_all(&script)?;
    out.flush()?;
    Ok(super::EXIT_OK)
}

pub fn man(args: ManArgs) -> Result<u8> {
    let cmd = super::command();
    match &args.dir {
        None => {
            let mut out = super::output::stdout();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            outln!("wrote man pages into {}", dir.display())?;
        }
    }
    Ok(super::EXIT_OK)
}
