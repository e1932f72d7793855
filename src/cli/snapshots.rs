//! `rewind snapshots`.

use super::output::{self, bytes, time};
use super::{json, select, FilterArgs, RepoArg};
use anyhow::Result;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only these snapshots: ids, id prefixes, `latest` or `latest:PATH` (the newest holding PATH) [default: all]
    #[arg(value_name = "SNAP")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print JSON: an array of snapshots, oldest first
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let repo = repo.open()?;
    let (all, bad) = repo.snapshots()?;
    for e in &bad {
        errln!("warning: {e}");
    }
    let filter = args.filter.filter();
    let list: Vec<_> = if args.snapshots.is_empty() {
        all.into_iter().filter(|(_, s)| filter.matches(s)).collect()
    } else {
        let mut chosen = Vec::new();
        for spec in &args.snapshots {
            let (id, s, _) = select::find_with_path(&repo, spec, None, &filter)?;
            if !chosen.iter().any(|(c, _)| c == &id) {
                chosen.push((id, s));
            }
        }
        chosen.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        chosen
    };
    let code = if bad.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    };
    let mut out = output::stdout();
    let printed = (|| -> Result<()> {
        if args.json {
            let v: Vec<serde_json::Value> =
                list.iter().map(|(id, s)| json::snapshot(id, s)).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        } else {
            writeln!(
                out,
                "{:<8}  {:<19}  {:<16}  {:>10}  {:<12}  paths",
                "id", "time", "host", "size", "tags"
            )?;
            // Names are quoted where they hold control characters (diff's quoting).
            let q = |v: &[String], sep: &str| {
                v.iter()
                    .map(|p| output::quote(p.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(sep)
            };
            for (id, s) in &list {
                writeln!(
                    out,
                    "{:<8}  {:<19}  {:<16}  {:>10}  {:<12}  {}",
                    id.short(),
                    time(s.time),
                    output::quote(s.host.as_bytes()),
                    bytes(s.summary.total_bytes),
                    q(&s.tags, ","),
                    q(&s.paths, " ")
                )?;
            }
            writeln!(
                out,
                "{}",
                output::count(list.len() as u64, "snapshot", "snapshots")
            )?;
            if !repo.is_encrypted() {
                writeln!(out, "(repository {} is not encrypted)", repo.location())?;
            }
        }
        out.flush()?;
        Ok(())
    })();
    output::finish(code, printed)
}
