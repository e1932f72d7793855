//! Human output: sizes, times, modes, and the terminal progress reporter.

use crate::error::Error;
use crate::format::tree::{Entry, Kind, Time};
use crate::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Local time as `YYYY-MM-DD HH:MM:SS`.
pub fn time(t: Time) -> String {
    crate::clock::stamp(t, ' ')
}

/// `drwxr-sr-t` style.
pub fn mode(e: &Entry) -> String {
    let t = match e.kind {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Fifo => 'p',
        Kind::Socket => 's',
        Kind::CharDev => 'c',
        Kind::BlockDev => 'b',
    };
    let m = e.mode;
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let special = |x: u32, s: u32, lower: char, upper: char| match (m & x != 0, m & s != 0) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        t,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// Warnings to stderr; a byte counter on a terminal.
pub struct Reporter {
    bar: Option<ProgressBar>,
    files: AtomicU64,
}

impl Reporter {
    /// `verb` is what the bar says (`read`, `restored`); `show` enables the bar.
    pub fn new(verb: &str, show: bool) -> Self {
        let bar = show.then(|| {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template(&format!(
                "{{spinner}} {{elapsed}} {{msg}} {verb} {{bytes}} ({{bytes_per_sec}})"
            ))
            .expect("valid template");
            bar.set_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Reporter {
            bar,
            files: AtomicU64::new(0),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Reporter {
    fn warn(&self, err: &Error) {
        let line = format!("warning: {err}");
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
    fn bytes_read(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn file_done(&self, _path: &Path, _bytes: u64) {
        let n = self.files.fetch_add(1, Relaxed) + 1;
        if let Some(b) = &self.bar {
            if n.is_multiple_of(64) {
                b.set_message(format!("{n} files,"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_sizes() {
        let mut e = Entry::new(b"x".to_vec(), Kind::Dir);
        e.mode = 0o1777;
        assert_eq!(mode(&e), "drwxrwxrwt");
        e.kind = Kind::File;
        e.mode = 0o4644;
        assert_eq!(mode(&e), "-rwSr--r--");
        e.mode = 0o2755;
        assert_eq!(mode(&e), "-rwxr-sr-x");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
