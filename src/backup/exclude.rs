//! Exclude patterns, with restic's rules.
//!
//! - A pattern without `/` matches an entry's name anywhere (`*.log`,
//!   `node_modules`).
//! - A pattern starting with `/` matches the entry's absolute path
//!   (`/var/cache/*`, `/srv/**/tmp`).
//! - A pattern with `/` that does not start with `/` matches the end of the
//!   path at any depth: `cache/*.tmp` excludes `/srv/www/cache/x.tmp` and
//!   `/home/a/cache/y.tmp`.
//! - `*` does not cross `/`, `**` does; a trailing `/` is ignored.

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
            let trimmed = p.trim_end_matches('/');
            if trimmed.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "exclude pattern {p:?} would exclude everything"
                )));
            }
            let anchored = if trimmed.contains('/') && !trimmed.starts_with('/') {
                format!("/**/{trimmed}")
            } else {
                trimmed.to_string()
            };
            let glob = GlobBuilder::new(&anchored)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("exclude pattern {p:?}: {e}")))?;
            if anchored.contains('/') {
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
        assert!(Excludes::new(&["/".into()]).is_err());
    }

    /// A pattern with `/` that does not start with `/` matches at any depth.
    #[test]
    fn relative_patterns_match_at_any_depth() {
        let ex = Excludes::new(&["cache/*.tmp".into(), "a/**/z".into()]).unwrap();
        assert!(ex.matches(Path::new("/srv/www/cache"), b"x.tmp"));
        assert!(ex.matches(Path::new("/cache"), b"y.tmp"));
        assert!(!ex.matches(Path::new("/srv/mycache"), b"x.tmp"));
        assert!(!ex.matches(Path::new("/srv/cache/sub"), b"x.tmp"));
        assert!(ex.matches(Path::new("/h/a/b/c"), b"z"));
        assert!(ex.matches(Path::new("/a"), b"z"));
    }
}
