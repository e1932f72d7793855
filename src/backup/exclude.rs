//! Exclude patterns.
//!
//! A pattern without `/` matches an entry's name anywhere (`*.log`,
//! `node_modules`). A pattern with `/` matches the entry's absolute path
//! (`/var/cache/*`, `/srv/**/tmp`); `*` does not cross `/`, `**` does.

use crate::error::{Error, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Compiled patterns.
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
    empty: bool,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p.trim_end_matches('/'))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("exclude pattern {p:?}: {e}")))?;
            if p.trim_end_matches('/').contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::InvalidInput(e.to_string()));
        Ok(Excludes {
            names: build(names)?,
            paths: build(paths)?,
            empty: patterns.is_empty(),
        })
    }

    /// Read patterns from a file: one per line, `#` comments and blank lines skipped.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    /// Whether `name` inside directory `dir` is excluded.
    pub fn matches(&self, dir: &Path, name: &[u8]) -> bool {
        if self.empty {
            return false;
        }
        let os = std::ffi::OsStr::from_bytes(name);
        self.names.is_match(os) || (!self.paths.is_empty() && self.paths.is_match(dir.join(os)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let ex = Excludes::new(&[
            "*.log".into(),
            "/srv/www/cache/*".into(),
            "node_modules".into(),
        ])
        .unwrap();
        assert!(ex.matches(Path::new("/a/b"), b"x.log"));
        assert!(ex.matches(Path::new("/srv/www/cache"), b"f"));
        assert!(!ex.matches(Path::new("/srv/www/cache/f"), b"g"));
        assert!(ex.matches(Path::new("/srv/x"), b"node_modules"));
        assert!(!ex.matches(Path::new("/srv/www"), b"cache"));
        assert!(!ex.matches(Path::new("/a"), b"x.logs"));
        assert!(Excludes::new(&["[".into()]).is_err());
    }
}
