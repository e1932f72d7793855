//! Lists of paths to back up (`--files-from`, `--files-from-raw`).

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The paths listed in file `list` (`-` is standard input).
///
/// Without `raw`, one path per line (as restic's `--files-from-verbatim`):
/// blank lines and lines starting with `#` are skipped, a `\r` before the
/// newline is dropped, and everything else is taken byte for byte (no
/// globs, no trimming). With `raw`, paths are separated by NUL bytes (as
/// `find -print0` writes them) and only empty ones are skipped, so any name
/// can be listed.
pub fn read_files_from(list: &Path, raw: bool) -> Result<Vec<PathBuf>> {
    let bytes = if list == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b)
            .map_err(|e| Error::io("standard input (--files-from -)", e))?;
        b
    } else {
        std::fs::read(list).map_err(|e| Error::io(list, e))?
    };
    let paths = if raw {
        bytes
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(OsStr::from_bytes(p)))
            .collect()
    } else {
        bytes
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
            .map(|l| PathBuf::from(OsStr::from_bytes(l)))
            .collect()
    };
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_nul_separated_lists() {
        let dir = tempfile::tempdir().unwrap();
        let lines = dir.path().join("lines");
        std::fs::write(&lines, b"# web\n/srv/www\n\n/etc/nginx\r\n /with space \n").unwrap();
        assert_eq!(
            read_files_from(&lines, false).unwrap(),
            [
                PathBuf::from("/srv/www"),
                PathBuf::from("/etc/nginx"),
                PathBuf::from(" /with space ")
            ]
        );
        let raw = dir.path().join("raw");
        std::fs::write(&raw, b"/a\nb\0\0#c\0/caf\xe9").unwrap();
        assert_eq!(
            read_files_from(&raw, true).unwrap(),
            [
                PathBuf::from("/a\nb"),
                PathBuf::from("#c"),
                PathBuf::from(OsStr::from_bytes(b"/caf\xe9"))
            ]
        );
        let missing = read_files_from(&dir.path().join("nope"), false).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
