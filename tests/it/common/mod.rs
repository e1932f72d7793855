//! Test support: a temporary repository, the `rewind` binary, tree builders
//! and the entry-by-entry comparer.

#![allow(dead_code)]

pub mod compare;
pub mod fault;
pub mod proxy;
pub mod servers;
pub mod tree;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `rewind` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rewind"))
}

/// An external program (cat, diff, getfacl, sh…) in the C locale, so that
/// the messages a test matches read the same on every machine.
pub fn tool(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("LC_ALL", "C").env_remove("LANGUAGE");
    c
}

/// `cp -a from to`: a copy keeping modes, owners, times and links.
pub fn cp_a(from: &Path, to: &Path) {
    let out = tool("cp").arg("-a").arg(from).arg(to).output().unwrap();
    assert!(
        out.status.success(),
        "cp -a {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository at `path`, opened through the library with the test
/// password, its index read.
pub fn open_repo(path: &Path) -> rewind::repo::Repository {
    let password = || Ok(rewind::repo::Secret::new(PASSWORD.as_bytes().to_vec()));
    let opts = rewind::repo::OpenOptions {
        password: &password,
        cache_root: None,
    };
    let backend = std::sync::Arc::new(rewind::backend::local::LocalBackend::new(path));
    let repo = rewind::repo::Repository::open(backend, &opts).expect("open repository");
    repo.reload_index().expect("read the index");
    repo
}

/// `t`'s repository (local or remote), opened through the library with the
/// test password, its index read.
pub fn open_at(t: &TempRepo) -> rewind::repo::Repository {
    use rewind::backend::location::Location;
    let Some(remote) = &t.remote else {
        return open_repo(&t.repo());
    };
    let env = |k: &str| {
        remote
            .env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let backend: std::sync::Arc<dyn rewind::backend::Backend> =
        match Location::parse(remote.location.as_ref()).expect("a location") {
            Location::S3(loc) => std::sync::Arc::new(rewind::backend::s3::S3Backend::new(
                loc,
                &rewind::backend::s3::S3Options {
                    connections: 4,
                    retry: rewind::backend::retry::Policy::default(),
                    credentials: Some((
                        env("AWS_ACCESS_KEY_ID").expect("a key"),
                        env("AWS_SECRET_ACCESS_KEY").expect("a secret"),
                    )),
                },
            )),
            Location::Sftp(loc) => std::sync::Arc::new(rewind::backend::sftp::SftpBackend::new(
                loc,
                &rewind::backend::sftp::SftpOptionsArg {
                    connections: 4,
                    retry: rewind::backend::retry::Policy::default(),
                    command: env("REWIND_SFTP_COMMAND")
                        .map(|c| c.split_whitespace().map(str::to_string).collect()),
                },
            )),
            Location::Local(p) => return open_repo(&p),
        };
    let password = || Ok(rewind::repo::Secret::new(PASSWORD.as_bytes().to_vec()));
    let opts = rewind::repo::OpenOptions {
        password: &password,
        cache_root: None,
    };
    let repo = rewind::repo::Repository::open(backend, &opts).expect("open repository");
    repo.reload_index().expect("read the index");
    repo
}

/// The password every test repository has.
pub const PASSWORD: &str = "correct horse battery staple";

/// The environment every `rewind` a test starts runs in: the test password
/// (repositories are encrypted by default), a cheap key derivation (every
/// command derives the key once: the default costs 64 MiB and a few tenths
/// of a second), no inherited repository.
pub fn test_env(c: &mut Command) -> &mut Command {
    c.env("REWIND_PASSWORD", PASSWORD)
        .env("REWIND_KDF_PARAMS", "m=64K,t=1,p=1")
        .env_remove("REWIND_REPO")
        .env_remove("REWIND_PASSWORD_FILE")
        .env_remove("REWIND_PASSWORD_COMMAND")
        .env_remove("REWIND_CONNECTIONS")
        .env_remove("REWIND_REQUEST_STATS")
        .env_remove("REWIND_SFTP_COMMAND")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
}

/// A scratch directory with a repository in `repo/` (not yet initialised),
/// or at a remote location.
pub struct TempRepo {
    pub dir: tempfile::TempDir,
    /// Where the repository is when it is not `repo/`, and the environment
    /// that reaches it (credentials, the ssh command).
    pub remote: Option<Remote>,
}

/// A remote repository's location and what reaches it.
#[derive(Clone, Debug)]
pub struct Remote {
    pub location: String,
    pub env: Vec<(String, String)>,
}

impl Remote {
    /// Bucket `bucket` on the S3 server at `endpoint`, with the test key.
    pub fn s3(endpoint: &str, bucket: &str) -> Remote {
        Remote {
            location: format!("s3:{endpoint}/{bucket}"),
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), servers::ACCESS_KEY.into()),
                ("AWS_SECRET_ACCESS_KEY".into(), servers::SECRET_KEY.into()),
                ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ],
        }
    }
}

impl TempRepo {
    /// A scratch directory and an initialised repository.
    pub fn new() -> Self {
        let t = Self::uninit();
        let out = t.rewind(["init"]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        t
    }

    /// A scratch directory and an unencrypted (format 1) repository.
    pub fn plain() -> Self {
        let t = Self::uninit();
        let out = t.rewind(["init", "--insecure-no-encryption"]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        t
    }

    /// A scratch directory, repository not created.
    pub fn uninit() -> Self {
        TempRepo {
            dir: tempfile::Builder::new()
                .prefix("rewind-it-")
                .tempdir()
                .expect("tempdir"),
            remote: None,
        }
    }

    /// A scratch directory and a repository at `remote` (not yet created).
    pub fn at(remote: Remote) -> Self {
        TempRepo {
            remote: Some(remote),
            ..Self::uninit()
        }
    }

    /// What `--repo` says.
    pub fn location(&self) -> std::ffi::OsString {
        match &self.remote {
            Some(r) => r.location.clone().into(),
            None => self.repo().into_os_string(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn repo(&self) -> PathBuf {
        self.path().join("repo")
    }

    /// A path inside the scratch directory.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path().join(p)
    }

    /// `src` here, holding [`tree::full`]: every kind of entry and metadata.
    pub fn full_src(&self) -> PathBuf {
        let src = self.join("src");
        tree::full(&src);
        src
    }

    /// Run `rewind --repo REPO ARGS…`.
    pub fn rewind<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(args).output().expect("run rewind")
    }

    /// The command, for tweaks (stdin, env).
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(bin());
        c.arg("--repo").arg(self.location()).args(args);
        test_env(&mut c).env("REWIND_CACHE_DIR", self.join("cache"));
        for (k, v) in self.remote.iter().flat_map(|r| &r.env) {
            c.env(k, v);
        }
        c
    }

    /// The command started, its stdout and stderr piped (for
    /// `wait_with_output`).
    pub fn spawn<I, S>(&self, args: I) -> std::process::Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start rewind")
    }

    /// [`TempRepo::cmd`] in a mount namespace of its own where `passwd` is
    /// /etc/passwd: the names it records are not this machine's.
    pub fn cmd_with_passwd<I, S>(&self, passwd: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let inner = self.cmd(args);
        let mut c = tool("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/passwd && exec "$@""#)
            .arg(passwd)
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// Run and insist on exit code 0; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.rewind(&args);
        assert!(
            out.status.success(),
            "rewind {:?} exited {:?}\nstdout: {}\nstderr: {}",
            args,
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Back up `src` and return the snapshot id (from `--json`).
    pub fn backup(&self, src: &Path) -> String {
        let out = self.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("backup json");
        v["id"].as_str().expect("id").to_string()
    }

    /// Restore `spec` (SNAP[:PATH]) into `target`.
    pub fn restore(&self, spec: &str, target: &Path) {
        self.ok([
            OsStr::new("restore"),
            OsStr::new(spec),
            OsStr::new("--target"),
            target.as_os_str(),
        ]);
    }
}

impl Default for TempRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// `s` parsed as JSON; the text shown if it is not.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The ids of the snapshots `t` lists, oldest first.
pub fn snapshot_ids(t: &TempRepo) -> Vec<String> {
    json(&t.ok(["snapshots", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Assert the exit code, showing both streams when it differs.
pub fn expect_code(o: &Output, want: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "{what}: exit code\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Where the tree backed up from absolute path `src` lies inside a full restore
/// into `target` (snapshots keep absolute paths).
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute"))
}

/// Commit a snapshot of `/deep/d/d/…/d/leaf` (`levels` directories named
/// `d`, `leaf` holding `payload`), taken at `sec`, written through the
/// library (a backup this deep is a test of backup). `dir(level, entry)`
/// sets each `d`'s metadata, level 1 the topmost; `deep` is 0755.
pub fn deep_chain_snapshot(
    t: &TempRepo,
    payload: &[u8],
    sec: i64,
    levels: usize,
    dir: &dyn Fn(usize, &mut rewind::format::tree::Entry),
) {
    use rewind::format::snapshot::Snapshot;
    use rewind::format::tree::{Entry, Extent, Kind, Time, Tree};
    let repo = std::sync::Arc::new(fault::open(t));
    let w = rewind::repo::writer::RepoWriter::new(repo, 3, false).unwrap();
    let id = w.add_data(payload).unwrap();
    let mut leaf = Entry::new(b"leaf".to_vec(), Kind::File);
    leaf.mode = 0o640;
    leaf.size = payload.len() as u64;
    leaf.extents = vec![Extent::Data {
        id,
        len: payload.len() as u32,
    }];
    let mut tree = Tree::new(vec![leaf]);
    for level in (0..=levels).rev() {
        let name = if level == 0 { &b"deep"[..] } else { b"d" };
        let mut d = Entry::new(name.to_vec(), Kind::Dir);
        d.mode = 0o755;
        if level > 0 {
            dir(level, &mut d);
        }
        d.subtree = Some(w.add_tree(&tree.encode()).unwrap());
        tree = Tree::new(vec![d]);
    }
    let root = w.add_tree(&tree.encode()).unwrap();
    w.commit(&Snapshot {
        time: Time { sec, nsec: 0 },
        host: "deep".into(),
        username: "root".into(),
        paths: vec!["/deep".into()],
        tags: vec![],
        tree: root,
        parent: None,
        program: "deep test".into(),
        summary: Default::default(),
        original: None,
    })
    .unwrap();
}

/// Wait for `child`; its exit status and its peak resident memory in KiB:
/// its `VmHWM`, polled every millisecond until it exits. Not wait4's
/// `ru_maxrss`: a child started by fork or vfork counts its parent's
/// memory (this test harness's, hundreds of MB while the whole suite runs)
/// in its own maximum, carried across exec.
pub fn wait_peak_rss(child: &mut std::process::Child) -> (std::process::ExitStatus, u64) {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(done) = child.try_wait().unwrap() {
            assert!(peak > 0, "no VmHWM seen before the child exited");
            return (done, peak);
        }
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        let hwm = text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        peak = peak.max(hwm.unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A temporary directory for a server that listens on a unix socket in it.
/// A socket's path holds 107 bytes at most, so under a deep `$TMPDIR` (a
/// per-user one, or a CI workspace) the directory is made in `/tmp`.
pub fn socket_tempdir(prefix: &str) -> tempfile::TempDir {
    let base = std::env::temp_dir();
    // prefix, 6 random characters, and a socket name of up to 24 bytes.
    let room = base.as_os_str().len() + prefix.len() + 6 + 24;
    let base = if room < 100 {
        base
    } else {
        PathBuf::from("/tmp")
    };
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("a directory for a socket in {}: {e}", base.display()))
}
