//! Where a repository is: what `--repo` and `REWIND_REPO` say, parsed.
//!
//! ```text
//! /var/backups/rewind                       a local directory (any path)
//! s3:https://HOST[:PORT]/BUCKET[/PREFIX]    S3-compatible object storage
//! s3:http://127.0.0.1:3900/BUCKET           plain HTTP, for a server on loopback only
//! s3:HOST[:PORT]/BUCKET[/PREFIX]            https, as restic writes it
//! sftp:[USER@]HOST:/ABSOLUTE/PATH           a directory on another server
//! sftp:[USER@]HOST:RELATIVE/PATH            ... relative to the login's home
//! sftp://[USER@]HOST[:PORT]//ABSOLUTE/PATH  with a port (restic's URL form:
//! sftp://[USER@]HOST[:PORT]/RELATIVE/PATH   one slash: relative to home)
//! ```
//!
//! A location never holds a secret: S3 credentials come from the
//! environment (`AWS_ACCESS_KEY_ID`, …) or `~/.aws/credentials`, SSH keys
//! from the SSH configuration and agent. A location with a password in it
//! (`https://KEY:SECRET@host/…`) is refused, and the refusal does not repeat
//! it. A local directory whose name starts with `s3:` or `sftp:` is written
//! `./s3:…`.

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A parsed repository location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
    Sftp(SftpLocation),
}

/// A bucket (and a prefix in it) on an S3-compatible server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// `http` or `https`.
    pub scheme: String,
    /// A host name, an IPv4 address, or an IPv6 address in brackets.
    pub host: String,
    pub port: Option<u16>,
    pub bucket: String,
    /// Path components below the bucket, joined by `/` (`""`: the bucket's root).
    pub prefix: String,
}

/// A directory on a server reached by SSH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftpLocation {
    pub user: Option<String>,
    /// A host name or address (IPv6 without brackets), or a `Host` alias of
    /// the SSH configuration.
    pub host: String,
    pub port: Option<u16>,
    /// Absolute (`/srv/backup`) or relative to the login's home directory.
    pub path: String,
}

impl Location {
    /// Parse what `--repo` says.
    pub fn parse(arg: &OsStr) -> Result<Location> {
        let bytes = arg.as_bytes();
        if bytes.starts_with(b"s3:") || bytes.starts_with(b"sftp:") {
            let s = std::str::from_utf8(bytes).map_err(|_| {
                Error::InvalidInput("a repository location must be UTF-8 text".into())
            })?;
            return match s.split_once(':') {
                Some(("s3", rest)) => S3Location::parse(rest).map(Location::S3),
                Some((_, rest)) => SftpLocation::parse(rest).map(Location::Sftp),
                None => unreachable!("starts with a scheme and a colon"),
            };
        }
        if bytes.is_empty() {
            return Err(Error::InvalidInput(
                "the repository location is empty".into(),
            ));
        }
        Ok(Location::Local(PathBuf::from(arg)))
    }

    /// The local directory, if the repository is one.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            Location::Local(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3(s) => s.fmt(f),
            Location::Sftp(s) => s.fmt(f),
        }
    }
}

fn invalid(what: &str, why: impl fmt::Display) -> Error {
    Error::InvalidInput(format!("repository location {what}: {why}"))
}

/// Whether `host` (as written in a URL) is this machine's loopback.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Split `HOST[:PORT]` (with `[v6]` hosts) and check both.
fn host_port(authority: &str, what: &str) -> Result<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid(what, "an IPv6 address needs its closing `]`"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(what, format!("[{v6}] is not an IPv6 address")));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid(what, "expected `:PORT` after the IPv6 address"))?,
            ),
        };
        (format!("[{v6}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| invalid(what, format!("{p:?} is not a port number")))?,
        ),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if !ok {
        return Err(invalid(what, format!("{host:?} is not a host name")));
    }
    Ok((host, port))
}

/// Refuse credentials in the authority without repeating them.
fn no_userinfo(authority: &str, what: &str, hint: &str) -> Result<()> {
    if authority.contains('@') {
        return Err(invalid(
            what,
            format!("it must not hold a user name or password ({hint}); the location was not printed, as it may hold a secret"),
        ));
    }
    Ok(())
}

impl S3Location {
    fn parse(rest: &str) -> Result<S3Location> {
        let what = "s3:…";
        let (scheme, after) = match rest.split_once("://") {
            Some((s, a)) if s.eq_ignore_ascii_case("https") => ("https", a),
            Some((s, a)) if s.eq_ignore_ascii_case("http") => ("http", a),
            Some((s, _)) => {
                return Err(invalid(
                    what,
                    format!("scheme {s:?}: use s3:https://HOST/BUCKET"),
                ))
            }
            None => ("https", rest),
        };
        let (authority, path) = after.split_once('/').unwrap_or((after, ""));
        no_userinfo(
            authority,
            what,
            "credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
        )?;
        let (host, port) = host_port(authority, what)?;
        if scheme == "http" && !is_loopback(&host) {
            return Err(invalid(
                &format!("s3:http://{host}/…"),
                "plain http is accepted only for a server on this machine's loopback; use https",
            ));
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let bucket = parts
            .next()
            .ok_or_else(|| {
                invalid(
                    &format!("s3:{scheme}://{host}"),
                    "no bucket: write s3:https://HOST/BUCKET[/PREFIX]",
                )
            })?
            .to_string();
        check_bucket(&bucket)?;
        let mut prefix = Vec::new();
        for p in parts {
            if p == "." || p == ".." || p.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
                return Err(invalid(
                    &format!("s3:{scheme}://{host}/{bucket}/…"),
                    format!("{p:?} cannot be part of a prefix"),
                ));
            }
            prefix.push(p);
        }
        Ok(S3Location {
            scheme: scheme.to_string(),
            host,
            port,
            bucket,
            prefix: prefix.join("/"),
        })
    }

    /// `scheme://host[:port]`.
    pub fn endpoint(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

/// Bucket names as S3 allows them (3 to 63 of `a-z 0-9 . -`, starting and
/// ending with a letter or digit).
fn check_bucket(b: &str) -> Result<()> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(invalid(
            &format!("bucket {b:?}"),
            "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens",
        ))
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3:{}/{}", self.endpoint(), self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl SftpLocation {
    fn parse(rest: &str) -> Result<SftpLocation> {
        let what = "sftp:…";
        let (user_host, port, path) = if let Some(url) = rest.strip_prefix("//") {
            // sftp://[USER@]HOST[:PORT]/PATH: one slash after the host is a
            // path relative to home, two an absolute path.
            let (authority, path) = url.split_once('/').ok_or_else(|| {
                invalid(
                    what,
                    "no path: write sftp://[USER@]HOST[:PORT]//ABSOLUTE/PATH",
                )
            })?;
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            let (host, port) = host_port(hostport, what)?;
            ((user, host), port, path.to_string())
        } else {
            // [USER@]HOST:PATH, the host possibly `[v6]`.
            let (user, after) = match rest.split_once('@') {
                Some((u, h)) if !u.contains('/') => (Some(u), h),
                _ => (None, rest),
            };
            let (host, path) = if let Some(v6) = after.strip_prefix('[') {
                let (h, p) = v6
                    .split_once("]:")
                    .ok_or_else(|| invalid(what, "write sftp:[USER@][IPv6]:PATH"))?;
                (format!("[{h}]"), p)
            } else {
                let (h, p) = after
                    .split_once(':')
                    .ok_or_else(|| invalid(what, "no path: write sftp:[USER@]HOST:/PATH"))?;
                (h.to_string(), p)
            };
            let (host, _) = host_port(&host, what)?;
            ((user, host), None, path.to_string())
        };
        let (user, host) = user_host;
        if let Some(u) = user {
            if u.contains(':') {
                return Err(invalid(
                    what,
                    "it must not hold a password (SSH keys and the agent log in); the location was not printed, as it may hold a secret",
                ));
            }
            let ok = !u.is_empty()
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !ok {
                return Err(invalid(what, format!("{u:?} is not a user name")));
            }
        }
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() && path.starts_with('/') {
            "/".to_string()
        } else {
            trimmed.to_string()
        };
        if path.is_empty() {
            return Err(invalid(
                what,
                "no path: write sftp:[USER@]HOST:/PATH (the repository's own directory, not the home directory)",
            ));
        }
        if path.bytes().any(|b| b.is_ascii_control()) || path.split('/').any(|c| c == "..") {
            return Err(invalid(what, format!("{path:?} is not a usable path")));
        }
        Ok(SftpLocation {
            user: user.map(str::to_string),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            path,
        })
    }
}

impl fmt::Display for SftpLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => {
                let slash = if self.path.starts_with('/') { "/" } else { "" };
                write!(
                    f,
                    "sftp://{user}{host}:{p}/{slash}{}",
                    self.path.trim_start_matches('/')
                )?;
                if self.path == "/" {
                    write!(f, "/")?;
                }
                Ok(())
            }
            None => write!(f, "sftp:{user}{host}:{}", self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Location> {
        Location::parse(OsStr::new(s))
    }

    fn s3(s: &str) -> S3Location {
        match parse(s).unwrap() {
            Location::S3(l) => l,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn sftp(s: &str) -> SftpLocation {
        match parse(s).unwrap() {
            Location::Sftp(l) => l,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn local_paths_stay_paths() {
        for p in [
            "/var/backups/r",
            "relative",
            "./s3:bucket",
            "a:b",
            "/x/sftp:y",
        ] {
            assert_eq!(parse(p).unwrap(), Location::Local(p.into()), "{p}");
        }
        assert!(parse("").is_err());
    }

    #[test]
    fn s3_locations() {
        let l = s3("s3:https://s3.example.com/bucket/a/b/");
        assert_eq!(
            (
                l.scheme.as_str(),
                l.host.as_str(),
                l.port,
                l.bucket.as_str(),
                l.prefix.as_str()
            ),
            ("https", "s3.example.com", None, "bucket", "a/b")
        );
        assert_eq!(l.to_string(), "s3:https://s3.example.com/bucket/a/b");
        let l = s3("s3:http://127.0.0.1:9000/bkt");
        assert_eq!((l.port, l.prefix.as_str()), (Some(9000), ""));
        assert_eq!(l.endpoint(), "http://127.0.0.1:9000");
        assert_eq!(l.to_string(), "s3:http://127.0.0.1:9000/bkt");
        let l = s3("s3:http://[::1]:3900/bkt/p");
        assert_eq!(l.endpoint(), "http://[::1]:3900");
        let l = s3("s3:fra1.digitaloceanspaces.com/my-space/host1");
        assert_eq!(l.endpoint(), "https://fra1.digitaloceanspaces.com");
        assert_eq!(s3("s3:http://localhost:1/abc").host, "localhost");
    }

    #[test]
    fn bad_s3_locations_are_refused_without_repeating_secrets() {
        for (bad, says) in [
            ("s3:http://s3.example.com/bucket", "loopback"),
            ("s3:http://10.0.0.1:9000/bucket", "loopback"),
            ("s3:https://s3.example.com", "no bucket"),
            ("s3:https://s3.example.com/", "no bucket"),
            ("s3:https://s3.example.com/UPPER", "bucket name"),
            ("s3:https://s3.example.com/ab", "bucket name"),
            ("s3:https://s3.example.com/-ab", "bucket name"),
            ("s3:https://s3.example.com/bucket/../x", "prefix"),
            ("s3:ftp://s3.example.com/bucket", "scheme"),
            ("s3:https://host:99999/bucket", "port"),
            ("s3:https://host:/bucket", "port"),
            ("s3:https://ho st/bucket", "host name"),
            ("s3:https://[::1/bucket", "closing"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = parse("s3:https://AKIDEXAMPLE:wJalrXUtnFEMI@s3.example.com/bucket")
            .unwrap_err()
            .to_string();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
        assert!(!e.contains("wJalr") && !e.contains("AKID"), "{e}");
    }

    #[test]
    fn sftp_locations() {
        let l = sftp("sftp:backup@example.com:/srv/rewind/");
        assert_eq!(
            (l.user.as_deref(), l.host.as_str(), l.port, l.path.as_str()),
            (Some("backup"), "example.com", None, "/srv/rewind")
        );
        assert_eq!(l.to_string(), "sftp:backup@example.com:/srv/rewind");
        let l = sftp("sftp:host:repo");
        assert_eq!((l.user, l.path.as_str()), (None, "repo"));
        let l = sftp("sftp:u@[::1]:/r");
        assert_eq!((l.host.as_str(), l.path.as_str()), ("::1", "/r"));
        assert_eq!(l.to_string(), "sftp:u@[::1]:/r");
        let l = sftp("sftp://u@127.0.0.1:2222//srv/r");
        assert_eq!((l.port, l.path.as_str()), (Some(2222), "/srv/r"));
        assert_eq!(l.to_string(), "sftp://u@127.0.0.1:2222//srv/r");
        let l = sftp("sftp://host:22/rel/r");
        assert_eq!((l.port, l.path.as_str()), (Some(22), "rel/r"));
        assert_eq!(l.to_string(), "sftp://host:22/rel/r");
        assert_eq!(sftp("sftp:h:/").path, "/");
    }

    #[test]
    fn bad_sftp_locations() {
        for (bad, says) in [
            ("sftp:host", "no path"),
            ("sftp:host:", "no path"),
            ("sftp://host", "no path"),
            ("sftp:u@host:/a/../b", "usable path"),
            ("sftp:bad user@host:/x", "user name"),
            ("sftp://u@host:0//x", "port"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for bad in ["sftp://u:hunter2@host//x", "sftp:u:hunter2@host:/x"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
        }
    }
}
