//! `rewind snapshots`.

use super::output::{bytes, time};
use super::{FilterArgs, RepoArg};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let repo = repo.open()?;
    let (all, bad) = repo.snapshots()?;
    for e in &bad {
        eprintln!("warning: {e}");
    }
    let filter = args.filter.filter();
    let list: Vec<_> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    if args.json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).expect("snapshots serialize");
                v["id"] = serde_json::Value::String(id.to_hex());
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<8}  {:<19}  {:<16}  {:>10}  {:<12}  paths",
            "id", "time", "host", "size", "tags"
        );
        for (id, s) in &list {
            println!(
                "{:<8}  {:<19}  {:<16}  {:>10}  {:<12}  {}",
                id.short(),
                time(s.time),
                s.host,
                bytes(s.summary.total_bytes),
                s.tags.join(","),
                s.paths.join(" ")
            );
        }
        println!("{} snapshots", list.len());
        if !repo.is_encrypted() {
            println!("(repository {} is not encrypted)", repo.location());
        }
    }
    Ok(if bad.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    })
}
