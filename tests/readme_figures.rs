//! Every measured figure in README.md names the script that made it and the
//! date it was measured (issue 16, "Figures").
//!
//! A line outside code blocks looks like a figure when, with its inline code
//! spans left out, it holds a throughput (`MB/s`, `GiB/s`...), a ratio
//! (`1.7x`), a duration (`0.3 s`, `22 ms`), peak memory (`peak RSS`,
//! `peak memory`), or is a table row with a size (`42 MB`). Such a line needs,
//! within [`WINDOW`] lines and without crossing a heading, a reference to a
//! script that exists (`scripts/NAME` or `benches/NAME`) and a date
//! (`YYYY-MM-DD`): the script's own `measured:` line quoted beside the figure
//! gives both. A figure that is computed, not measured (a retry schedule),
//! carries `<!-- not measured -->` on its line.
//!
//! Its own binary, with no dependencies: it reads a file and runs in
//! milliseconds, so it needs neither the `it` binary nor a build of rewind.

use std::path::Path;

/// How far, in lines either side, a figure's script and date may be.
const WINDOW: usize = 15;

/// The marker for a computed figure.
const NOT_MEASURED: &str = "<!-- not measured -->";

#[test]
fn every_readme_figure_names_its_script_and_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let bad = unattributed(&readme, |p| root.join(p).is_file());
    assert!(
        bad.is_empty(),
        "README.md figures with no scripts/ file and date (YYYY-MM-DD) within {WINDOW} lines \
         in the same section (quote the script's measured: line beside them):\n{}",
        bad.iter()
            .map(|(n, l)| format!("  line {n}: {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The figure lines of `readme` (1-based number, text) with no script (one
/// `exists` accepts) and no date near them.
fn unattributed(readme: &str, exists: impl Fn(&str) -> bool) -> Vec<(usize, String)> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut in_code = false;
    let code: Vec<bool> = lines
        .iter()
        .map(|l| {
            if l.trim_start().starts_with("```") {
                in_code = !in_code;
                return true;
            }
            in_code
        })
        .collect();
    let heading = |i: usize| !code[i] && lines[i].starts_with('#');
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if code[i] || line.contains(NOT_MEASURED) || !is_figure(line) {
            continue;
        }
        let mut lo = i;
        while lo > 0 && i - lo < WINDOW && !heading(lo - 1) {
            lo -= 1;
        }
        let mut hi = i;
        while hi + 1 < lines.len() && hi - i < WINDOW && !heading(hi + 1) {
            hi += 1;
        }
        let near = &lines[lo..=hi];
        let script = near.iter().any(|l| names_script(l, &exists));
        let dated = near.iter().any(|l| has_date(l));
        if !(script && dated) {
            bad.push((i + 1, line.to_string()));
        }
    }
    bad
}

/// `line` without its inline code spans (commands and options, not figures).
fn prose(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

fn is_figure(line: &str) -> bool {
    let text = prose(line);
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || "(),;:|".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    let number = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_digit())
            && w.chars().all(|c| c.is_ascii_digit() || ".,-".contains(c))
    };
    // "0.12 s", or glued ("22ms"; not "30s", which prose does not write).
    let unit_after_number = |units: &[&str]| {
        let spaced = words
            .windows(2)
            .any(|p| number(p[0]) && units.contains(&p[1].trim_end_matches(['.', '*'])));
        let glued = words.iter().any(|w| {
            units.iter().any(|u| {
                *u != "s"
                    && *u != "B"
                    && w.strip_suffix(u)
                        .is_some_and(|n| !n.is_empty() && number(n))
            })
        });
        spaced || glued
    };
    let throughput = ["KB/s", "MB/s", "GB/s", "KiB/s", "MiB/s", "GiB/s"]
        .iter()
        .any(|u| text.contains(u));
    let ratio = words.iter().any(|w| {
        w.trim_end_matches(['.', '*'])
            .strip_suffix('x')
            .is_some_and(|n| !n.is_empty() && number(n))
    });
    let duration = unit_after_number(&["s", "ms", "µs"]);
    let memory = text.contains("peak RSS") || text.contains("peak memory");
    let sized_row = line.trim_start().starts_with('|')
        && unit_after_number(&["B", "KB", "MB", "GB", "KiB", "MiB", "GiB"]);
    throughput || ratio || duration || memory || sized_row
}

/// Whether `line` names `scripts/NAME` or `benches/NAME` for a file that exists.
fn names_script(line: &str, exists: &impl Fn(&str) -> bool) -> bool {
    ["scripts/", "benches/"].iter().any(|dir| {
        line.match_indices(dir).any(|(at, _)| {
            let name: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            exists(name.trim_end_matches('.'))
        })
    })
}

/// Whether `line` holds a date written YYYY-MM-DD.
fn has_date(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(10).any(|w| {
        w.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
    })
}

#[cfg(test)]
mod checker {
    use super::*;

    fn scripts(p: &str) -> bool {
        p == "scripts/bench-x.sh"
    }

    #[test]
    fn figures_are_recognised() {
        for line in [
            "a mount reads 1.3 to 2 times as fast (1.35x, 1.7x, 2.0x).",
            "| `rewind diff A B` | 0.12 s cold, 0.10 s warm |",
            "readable about 22 ms after the mount starts",
            "about 0.3 s on this class of machine",
            "2.5-3.2 s cold (about 420 MB/s)",
            "The mount's peak memory in those runs was 15-18 MiB.",
            "| restore | 42 MB |",
            "from 32ms to 107ms",
        ] {
            assert!(is_figure(line), "not taken for a figure: {line}");
        }
        for line in [
            "`--lock-wait`: `30s`, `10m`, `2h`",
            "content is decoded at most 16 MiB ahead",
            "an 8 GiB disk image with a few KiB of data",
            "| 0 | success; `diff`, `verify`: no difference |",
            "a 0x1f byte, 3 passes, 4 lanes",
            "Snapshots written while mounted appear within a second.",
        ] {
            assert!(!is_figure(line), "taken for a figure: {line}");
        }
    }

    #[test]
    fn a_figure_without_a_script_fails() {
        let readme = "## Speed\n\nText.\n\n| what | time |\n|---|---|\n| diff | 0.12 s |\n";
        assert_eq!(
            unattributed(readme, scripts),
            [(7, "| diff | 0.12 s |".into())]
        );
    }

    #[test]
    fn a_script_that_does_not_exist_does_not_count() {
        let readme = "`scripts/bench-y.sh` on 2026-12-04:\n\n| diff | 0.12 s |\n";
        assert_eq!(unattributed(readme, scripts).len(), 1);
    }

    #[test]
    fn a_figure_needs_a_date_too() {
        let readme = "`scripts/bench-x.sh`:\n\n| diff | 0.12 s |\n";
        assert_eq!(unattributed(readme, scripts).len(), 1);
        let dated = "`scripts/bench-x.sh`:\n\n| diff | 0.12 s |\n\nmeasured: 2026-12-04; 2 cores\n";
        assert!(unattributed(dated, scripts).is_empty());
    }

    #[test]
    fn the_reference_must_be_in_the_same_section_and_near() {
        let other_section = "`scripts/bench-x.sh`, 2026-12-04\n## Next\nit takes 3 s\n";
        assert_eq!(unattributed(other_section, scripts).len(), 1);
        let far = format!(
            "`scripts/bench-x.sh`, 2026-12-04\n{}it takes 3 s\n",
            "text\n".repeat(WINDOW)
        );
        assert_eq!(unattributed(&far, scripts).len(), 1);
    }

    #[test]
    fn code_blocks_and_computed_figures_are_left_alone() {
        let readme = "```text\nPASS in 41 s, 110 MB/s\n```\n\n\
                      about 25 s of waiting in all <!-- not measured -->\n";
        assert!(unattributed(readme, scripts).is_empty());
    }
}
