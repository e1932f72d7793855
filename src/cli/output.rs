//! Human output: where it goes (stdout through a writer that returns errors,
//! `-q` and `-v`), sizes, times, modes, and the terminal progress reporter.

use crate::error::Error;
use crate::format::tree::{Entry, Kind, Time};
use crate::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::borrow::Cow;
use std::io::{BufWriter, Stdout};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// How much to say: `-q`, default, `-v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet = 0,
    Normal = 1,
    Verbose = 2,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Relaxed);
}

pub fn level() -> Level {
    match LEVEL.load(Relaxed) {
        0 => Level::Quiet,
        1 => Level::Normal,
        _ => Level::Verbose,
    }
}

/// Whether reports and summaries are printed (not with `-q`).
pub fn chatty() -> bool {
    level() >= Level::Normal
}

/// Standard output, buffered. Writes return errors (a closed pipe is
/// `BrokenPipe`) instead of panicking as `println!` does; call `flush`
/// before returning so that a late error is seen.
pub fn stdout() -> BufWriter<Stdout> {
    BufWriter::with_capacity(64 << 10, std::io::stdout())
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    // SAFETY: isatty only looks at the descriptor.
    unsafe { libc::isatty(1) == 1 }
}

/// Whether `err` comes from writing to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code of a command whose outcome is known before it prints:
/// `code`, also when the reader of stdout went away (`rewind diff … | head`
/// must not turn "different" into success). Other print errors stand.
pub fn finish(code: u8, printed: anyhow::Result<()>) -> anyhow::Result<u8> {
    match printed {
        Ok(()) => Ok(code),
        Err(e) if is_broken_pipe(&e) => Ok(code),
        Err(e) => Err(e),
    }
}

/// A line of a command's report on stdout, for commands whose outcome is
/// decided before they report it (see [`outln!`](crate::cli)): a closed
/// stdout is ignored, so the exit code stays the outcome's; other write
/// errors are returned.
pub fn report(args: std::fmt::Arguments) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let res = out
        .write_fmt(args)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    match res {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// `1 snapshot`, `2 snapshots`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

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

/// A path for one line of output: as it is when it is printable UTF-8, else
/// in double quotes with C escapes (`\n`, `\t`, `\"`, `\\`, `\ooo` for other
/// bytes), as git quotes names.
pub fn quote(path: &[u8]) -> Cow<'_, str> {
    let plain = |s: &str| !s.chars().any(|c| c.is_control() || c == '"' || c == '\\');
    if let Ok(s) = std::str::from_utf8(path) {
        if plain(s) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::from("\"");
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).as_bytes() {
                        out.push_str(&format!("\\{byte:03o}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\{byte:03o}"));
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// Warnings to stderr; a byte counter on a terminal.
pub struct Reporter {
    bar: Option<ProgressBar>,
    files: AtomicU64,
    verb: String,
}

impl Reporter {
    /// `verb` is what the bar says (`read`, `restored`); `show` enables the
    /// bar (never with `-q`). With `-v`, each file with bytes read or
    /// written is named on stderr.
    pub fn new(verb: &str, show: bool) -> Self {
        let bar = (show && chatty()).then(|| {
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
            verb: verb.to_string(),
        }
    }

    /// Print a line on stderr without tearing the bar.
    fn line(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| errln!("{line}")),
            None => errln!("{line}"),
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
        self.line(&format!("warning: {err}"));
    }
    fn bytes_read(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn file_done(&self, path: &Path, bytes: u64) {
        if bytes > 0 && level() == Level::Verbose {
            use std::os::unix::ffi::OsStrExt;
            self.line(&format!(
                "{} {}",
                self.verb,
                quote(path.as_os_str().as_bytes())
            ));
        }
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
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(quote(b"/srv/www/caf\xc3\xa9 x"), "/srv/www/café x");
        assert_eq!(quote(b"/a\nb\t\"c\\"), r#""/a\nb\t\"c\\""#);
        assert_eq!(quote(b"/caf\xe9\x01"), r#""/caf\351\001""#);
    }

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
