//! Which entries a restore touches: `--include` and `--exclude`, by the same
//! pattern rules as backup's excludes ([`Excludes`]), matched against names
//! and absolute paths in the snapshot.

use crate::backup::Excludes;
use crate::error::Result;
use std::path::Path;

/// What becomes of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Excluded: neither restored nor deleted, nor anything below it.
    Skip,
    /// Restored (and, with `--delete`, deleted from the target when the
    /// snapshot does not have it), with everything below it not excluded.
    In,
    /// Not included itself: a directory is entered to look for included
    /// entries below it (and made only if one is found); anything else is left
    /// alone.
    Maybe,
}

/// Compiled `--include` and `--exclude` patterns.
pub struct Filter {
    includes: Option<Excludes>,
    excludes: Option<Excludes>,
}

impl Filter {
    pub fn new(includes: &[String], excludes: &[String]) -> Result<Self> {
        let compile = |p: &[String]| -> Result<Option<Excludes>> {
            Ok(if p.is_empty() {
                None
            } else {
                Some(Excludes::new(p)?)
            })
        };
        Ok(Filter {
            includes: compile(includes)?,
            excludes: compile(excludes)?,
        })
    }

    /// The pick for `name` in the snapshot directory `dir`; `matched` says
    /// that an ancestor was included.
    pub fn pick(&self, dir: &Path, name: &[u8], matched: bool) -> Pick {
        if self.excludes.as_ref().is_some_and(|x| x.matches(dir, name)) {
            return Pick::Skip;
        }
        let included = matched
            || self
                .includes
                .as_ref()
                .is_none_or(|inc| inc.matches(dir, name));
        if included {
            Pick::In
        } else {
            Pick::Maybe
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn excludes_win_over_includes_and_includes_cover_what_is_below() {
        let f = Filter::new(&strings(&["*.php", "/srv/www/conf"]), &strings(&["cache"])).unwrap();
        let www = Path::new("/srv/www");
        assert_eq!(f.pick(www, b"index.php", false), Pick::In);
        assert_eq!(f.pick(www, b"conf", false), Pick::In);
        assert_eq!(f.pick(www, b"style.css", false), Pick::Maybe);
        assert_eq!(f.pick(Path::new("/srv/www/conf"), b"x", true), Pick::In);
        assert_eq!(f.pick(www, b"cache", false), Pick::Skip);
        assert_eq!(
            f.pick(Path::new("/srv/www/conf"), b"cache", true),
            Pick::Skip
        );
        let all = Filter::new(&[], &strings(&["/srv/www/tmp"])).unwrap();
        assert_eq!(all.pick(www, b"style.css", false), Pick::In);
        assert_eq!(all.pick(www, b"tmp", false), Pick::Skip);
        assert_eq!(all.pick(Path::new("/srv"), b"tmp", false), Pick::In);
    }
}
