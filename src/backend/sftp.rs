//! A repository in a directory on another server, over SFTP.
//!
//! The connection is the system's `ssh` (its configuration, keys and
//! agent, its known hosts) running the `sftp` subsystem, spoken to by
//! `openssh-sftp-client`:
//!
//! ```text
//! ssh -o BatchMode=yes [-p PORT] [-l USER] HOST -s sftp
//! ```
//!
//! `BatchMode` because nobody may be there to answer a prompt (cron): the
//! key must be in the agent or without a passphrase, and the host already
//! known. `REWIND_SFTP_COMMAND` replaces the whole command (split at
//! spaces, no quoting), as restic's `sftp.command` does. `ssh` runs in its
//! own process group, so a Ctrl-C at the terminal reaches rewind (which
//! stops cleanly, removing its lock through the connection) and not `ssh`.
//!
//! The layout is the local backend's (`data/<ab>/<id>`, …). Objects are
//! written under a temporary name (`.tmp-…`) in their directory, made
//! 0600, fsynced where the server has the `fsync@openssh.com` extension,
//! and renamed into place (`posix-rename@openssh.com`, which replaces;
//! without it an existing object of an id is the same bytes and kept, and
//! a lock is removed first). A reader never sees part of an object, and a
//! killed upload leaves only a temporary file that listings skip and
//! `remove_stale_temp` removes.
//!
//! Sizes and modification times come from the server's `stat` (times by
//! its clock, to the second: what the lock protocol needs). Only regular
//! files are objects: listings skip the rest, and reads refuse them.
//!
//! A connection that breaks (the server restarted, the network dropped)
//! is opened again by the next try of the request ([`super::retry`]).

use super::location::SftpLocation;
use super::retry::{self, Outcome};
use super::s3::Limit;
use super::{
    check_name, ends_before, not_found, object_path, runtime, valid_name, Backend, FileType,
    ObjectInfo,
};
use crate::error::{Error, Result};
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::metadata::{MetaData, Permissions};
use openssh_sftp_client::{Error as SftpError, Sftp, SftpOptions};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;

/// What the backend was asked to reach, and how.
#[derive(Clone, Debug)]
pub struct SftpOptionsArg {
    /// Requests in flight at once.
    pub connections: usize,
    pub retry: retry::Policy,
    /// `REWIND_SFTP_COMMAND`, split at spaces.
    pub command: Option<Vec<String>>,
}

/// One `ssh` and the SFTP session over it.
struct Session {
    generation: u32,
    sftp: Sftp,
    /// What `ssh` said on stderr (the last 4 KiB).
    stderr: Arc<Mutex<String>>,
    /// The descriptors of the pipes to `ssh`, closed in a forked child.
    fds: Vec<i32>,
    /// A request failed below the SFTP protocol: open another.
    broken: AtomicBool,
    /// Kept so that `ssh` is killed when the session goes.
    _child: tokio::process::Child,
}

/// A directory on an SFTP server as a repository.
pub struct SftpBackend {
    loc: SftpLocation,
    command: Vec<String>,
    policy: retry::Policy,
    limit: Limit,
    session: Mutex<Option<Arc<Session>>>,
    tmp_counter: AtomicU64,
    settle: Duration,
}

/// How a request failed.
enum Fail {
    /// The server answered with an SFTP status.
    Status(SftpErrorKind, String),
    /// The connection failed (ssh, the network); `transient` if another
    /// connection may do better.
    Link {
        text: String,
        transient: bool,
    },
    Rewind(Error),
}

/// The default command for `loc`.
fn default_command(loc: &SftpLocation) -> Vec<String> {
    let mut c: Vec<String> = ["ssh", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=30"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(p) = loc.port {
        c.extend(["-p".into(), p.to_string()]);
    }
    if let Some(u) = &loc.user {
        c.extend(["-l".into(), u.clone()]);
    }
    // `--` so that a host can never be taken for an option.
    c.extend(["--".into(), loc.host.clone(), "-s".into(), "sftp".into()]);
    c
}

/// Failures of `ssh` that another try may not have (the server is
/// restarting, the network flapped), by what `ssh` says.
fn link_is_transient(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    let lasting = [
        "permission denied",
        "host key verification failed",
        "could not resolve hostname",
        "no such file",
        "bad configuration",
        "subsystem request failed",
    ];
    !lasting.iter().any(|l| s.contains(l))
}

impl SftpBackend {
    /// The directory `loc` names (nothing is contacted yet).
    pub fn new(loc: SftpLocation, opts: &SftpOptionsArg) -> Self {
        let command = opts
            .command
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| default_command(&loc));
        SftpBackend {
            loc,
            command,
            policy: opts.retry,
            limit: Limit::new(opts.connections),
            session: Mutex::new(None),
            tmp_counter: AtomicU64::new(0),
            settle: super::remote_settle(),
        }
    }

    /// `rel` below the repository's directory.
    fn path(&self, rel: &str) -> String {
        match (self.loc.path.as_str(), rel) {
            (root, "") => root.to_string(),
            ("/", rel) => format!("/{rel}"),
            (root, rel) => format!("{root}/{rel}"),
        }
    }

    /// The session of this process, opened if need be.
    fn session(&self) -> std::result::Result<Arc<Session>, Fail> {
        let generation = runtime::generation();
        let mut slot = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.take() {
            if s.generation == generation && !s.broken.load(Ordering::SeqCst) {
                *slot = Some(s.clone());
                return Ok(s);
            }
            if s.generation != generation {
                // A parent's session (before `fork`): its tasks do not run
                // here. Close our copies of its pipes, so that its `ssh`
                // ends with the parent, and never touch the rest.
                for fd in &s.fds {
                    // SAFETY: closing descriptors this process inherited
                    // and that nothing here uses any more.
                    unsafe { libc::close(*fd) };
                }
                std::mem::forget(s);
            }
        }
        let s = Arc::new(self.connect(generation)?);
        *slot = Some(s.clone());
        Ok(s)
    }

    fn connect(&self, generation: u32) -> std::result::Result<Session, Fail> {
        use std::os::fd::AsRawFd;
        let (program, args) = self.command.split_first().expect("not empty");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let stderr = Arc::new(Mutex::new(String::new()));
        let said = stderr.clone();
        let opened = runtime::block_on(async move {
            let mut child = cmd.spawn().map_err(|e| Fail::Link {
                text: format!("starting `{program}`: {e}"),
                transient: false,
            })?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let mut err = child.stderr.take().expect("piped");
            let fds = vec![stdin.as_raw_fd(), stdout.as_raw_fd(), err.as_raw_fd()];
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut s = said.lock().unwrap_or_else(|e| e.into_inner());
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > 4096 {
                        let cut = s.len() - 4096;
                        let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                        s.drain(..cut);
                    }
                }
            });
            let opts = SftpOptions::new();
            let sftp =
                tokio::time::timeout(Duration::from_secs(60), Sftp::new(stdin, stdout, opts)).await;
            Ok::<_, Fail>((child, fds, sftp))
        });
        let (child, fds, sftp) = match opened {
            Err(e) => return Err(Fail::Rewind(e)),
            Ok(Err(f)) => return Err(f),
            Ok(Ok(v)) => v,
        };
        let sftp = match sftp {
            Ok(Ok(s)) => s,
            other => {
                // Let ssh finish its complaint before quoting it.
                std::thread::sleep(Duration::from_millis(100));
                let said = stderr
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .trim()
                    .to_string();
                let why = match other {
                    Err(_) => "no SFTP session within 60 s".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => unreachable!(),
                };
                let text = if said.is_empty() {
                    format!("`{}` failed: {why}", self.command.join(" "))
                } else {
                    format!("`{}` failed: {said}", self.command.join(" "))
                };
                return Err(Fail::Link {
                    transient: link_is_transient(&said),
                    text,
                });
            }
        };
        Ok(Session {
            generation,
            sftp,
            stderr,
            fds,
            broken: AtomicBool::new(false),
            _child: child,
        })
    }

    /// Run one request on the session, tried again (on a new session, if
    /// the connection broke) while it fails transiently.
    fn request<T, F, Fut>(&self, f: F) -> (std::result::Result<T, Fail>, u32)
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, SftpError>> + Send + 'static,
        T: Send + 'static,
    {
        let _slot = self.limit.acquire();
        retry::run(&self.policy, || {
            let s = match self.session() {
                Ok(s) => s,
                Err(
                    f @ Fail::Link {
                        transient: true, ..
                    },
                ) => return Outcome::Transient(f),
                Err(f) => return Outcome::Failed(f),
            };
            let fut = f(s.clone());
            let res =
                runtime::run(
                    async move { tokio::time::timeout(Duration::from_secs(300), fut).await },
                );
            match res {
                Err(e) => Outcome::Failed(Fail::Rewind(e)),
                Ok(Ok(Ok(v))) => Outcome::Done(v),
                Ok(Ok(Err(SftpError::SftpError(kind, msg)))) => {
                    Outcome::Failed(Fail::Status(kind, msg.to_string()))
                }
                Ok(other) => {
                    s.broken.store(true, Ordering::SeqCst);
                    let said = s
                        .stderr
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .trim()
                        .to_string();
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer within 300 s".into(),
                    };
                    let text = if said.is_empty() {
                        why
                    } else {
                        format!("{why} ({said})")
                    };
                    Outcome::Transient(Fail::Link {
                        text,
                        transient: true,
                    })
                }
            }
        })
    }

    /// The library's error for a failed request on `rel`.
    fn error(&self, rel: &str, t: FileType, name: &str, f: Fail, tries: u32) -> Error {
        let (kind, text) = match f {
            Fail::Rewind(e) => return e,
            Fail::Status(SftpErrorKind::NoSuchFile, _) => return not_found(t, name),
            Fail::Status(SftpErrorKind::PermDenied, m) => (
                ErrorKind::PermissionDenied,
                format!("permission denied: {m}"),
            ),
            Fail::Status(k, m) => (ErrorKind::Other, format!("{k:?}: {m}")),
            Fail::Link { text, .. } => (ErrorKind::Other, text),
        };
        let text = if tries > 1 {
            format!("{text} (gave up after {tries} tries)")
        } else {
            text
        };
        Error::io(
            format!("{}/{rel}", self.loc),
            std::io::Error::new(kind, text),
        )
    }

    /// `mkdir -p` of `rel` (0700 for the directories made).
    async fn make_dirs(s: &Session, root: &str, rel: &str) -> std::result::Result<(), SftpError> {
        let mut fs = s.sftp.fs();
        let mut path = String::new();
        let full = if rel.is_empty() {
            root.to_string()
        } else if root == "/" {
            format!("/{rel}")
        } else {
            format!("{root}/{rel}")
        };
        for (i, comp) in full.split('/').enumerate() {
            if i > 0 || full.starts_with('/') {
                path.push('/');
            }
            if comp.is_empty() {
                continue;
            }
            path.push_str(comp);
            if fs
                .metadata(&path)
                .await
                .is_ok_and(|m| m.file_type().is_some_and(|t| t.is_dir()))
            {
                continue;
            }
            match fs
                .dir_builder()
                .permissions(Permissions::from(0o700u16))
                .create(&path)
                .await
            {
                Ok(()) => {}
                // Made meanwhile by another writer: fine if it is a directory.
                Err(e) => match fs.metadata(&path).await {
                    Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => {}
                    _ => return Err(e),
                },
            }
        }
        Ok(())
    }

    /// Write `data` as `rel`: temporary name, (fsync,) rename.
    async fn write_object(
        s: Arc<Session>,
        root: String,
        dir: String,
        tmp: String,
        target: String,
        data: Arc<Vec<u8>>,
        lock: bool,
    ) -> std::result::Result<(), SftpError> {
        let open = |s: &Session| {
            let mut o = s.sftp.options();
            o.write(true).create_new(true);
            let tmp = tmp.clone();
            async move { o.open(&tmp).await }
        };
        let mut file = match open(&s).await {
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {
                Self::make_dirs(&s, &root, &dir).await?;
                open(&s).await?
            }
            other => other?,
        };
        let written = async {
            file.set_permissions(Permissions::from(0o600u16)).await?;
            file.write_all(&data).await?;
            if !lock && s.sftp.support_fsync() {
                file.sync_all().await?;
            }
            file.close().await
        }
        .await;
        let mut fs = s.sftp.fs();
        if let Err(e) = written {
            let _ = fs.remove_file(&tmp).await;
            return Err(e);
        }
        match fs.rename(&tmp, &target).await {
            Ok(()) => Ok(()),
            // No posix-rename: the target exists. An object named by its
            // id holds the same bytes; a lock is rewritten by its holder.
            Err(e) if !s.sftp.support_posix_rename() => {
                if fs.symlink_metadata(&target).await.is_err() {
                    let _ = fs.remove_file(&tmp).await;
                    return Err(e);
                }
                if lock {
                    let _ = fs.remove_file(&target).await;
                    let r = fs.rename(&tmp, &target).await;
                    if r.is_err() {
                        let _ = fs.remove_file(&tmp).await;
                    }
                    r
                } else {
                    let _ = fs.remove_file(&tmp).await;
                    Ok(())
                }
            }
            Err(e) => {
                let _ = fs.remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// `len` bytes of open `path` from `offset` (fewer at its end).
    async fn read_at(
        s: &Session,
        path: &str,
        offset: u64,
        len: u64,
        max: u64,
    ) -> std::result::Result<(Vec<u8>, MetaData), SftpError> {
        use tokio::io::AsyncSeek;
        let mut file = s.sftp.open(path).await?;
        let meta = file.metadata().await?;
        let is_file = meta.file_type().is_some_and(|t| t.is_file());
        if !is_file || meta.len().unwrap_or(0) > max {
            file.close().await?;
            return Ok((Vec::new(), meta));
        }
        let mut out = Vec::with_capacity(len.min(max).min(64 << 20) as usize);
        while (out.len() as u64) < len {
            let at = offset + out.len() as u64;
            std::pin::Pin::new(&mut file).start_seek(std::io::SeekFrom::Start(at))?;
            let want = (len - out.len() as u64).min(u32::MAX as u64) as u32;
            match file.read(want, bytes::BytesMut::new()).await? {
                Some(b) if !b.is_empty() => out.extend_from_slice(&b),
                _ => break,
            }
        }
        file.close().await?;
        Ok((out, meta))
    }

    fn info(name: &str, meta: &MetaData) -> ObjectInfo {
        ObjectInfo {
            name: name.to_string(),
            size: meta.len().unwrap_or(0),
            modified: meta.modified().map(|t| t.as_system_time()),
        }
    }

    /// The regular files of directory `rel` with valid names for `t`
    /// (`None` when the directory does not exist).
    async fn list_dir(
        s: &Session,
        path: String,
        t: FileType,
        subdirs: bool,
    ) -> std::result::Result<Option<Vec<(String, MetaData)>>, SftpError> {
        use futures::TryStreamExt;
        let mut fs = s.sftp.fs();
        let dir = match fs.open_dir(&path).await {
            Ok(d) => d,
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let entries: Vec<_> = dir.read_dir().try_collect().await?;
        let mut out = Vec::new();
        for e in entries {
            let Some(name) = e.filename().to_str() else {
                continue;
            };
            let kind = e.file_type();
            let wanted = if subdirs {
                kind.is_some_and(|k| k.is_dir())
                    && name.len() == 2
                    && valid_name(FileType::Pack, name)
            } else {
                kind.is_some_and(|k| k.is_file()) && valid_name(t, name)
            };
            if wanted {
                out.push((name.to_string(), e.metadata()));
            }
        }
        Ok(Some(out))
    }
}

impl Backend for SftpBackend {
    fn location(&self) -> String {
        self.loc.to_string()
    }

    fn create(&self) -> Result<()> {
        let root = self.loc.path.clone();
        let (r, tries) = self.request(|s| {
            let root = root.clone();
            async move {
                Self::make_dirs(&s, &root, "").await?;
                let listed = Self::list_dir(&s, root.clone(), FileType::Config, false).await?;
                let mut fs = s.sftp.fs();
                let dir = fs.open_dir(&root).await?;
                use futures::TryStreamExt;
                let names: Vec<String> = dir
                    .read_dir()
                    .try_collect::<Vec<_>>()
                    .await?
                    .into_iter()
                    .filter_map(|e| e.filename().to_str().map(str::to_string))
                    .filter(|n| n != "." && n != "..")
                    .collect();
                let has_config = listed.is_some_and(|l| !l.is_empty());
                Ok((has_config, names.is_empty()))
            }
        });
        let (has_config, empty) =
            r.map_err(|f| self.error("", FileType::Config, "config", f, tries))?;
        if has_config {
            return Err(Error::InvalidInput(format!(
                "{} already holds a repository",
                self.loc
            )));
        }
        if !empty {
            return Err(Error::InvalidInput(format!(
                "{} is not empty; a repository needs an empty directory",
                self.loc
            )));
        }
        for t in FileType::ALL {
            if t.dir().is_empty() {
                continue;
            }
            let (r, tries) = self.request(|s| {
                let root = root.clone();
                async move { Self::make_dirs(&s, &root, t.dir()).await }
            });
            r.map_err(|f| self.error(t.dir(), t, "", f, tries))?;
        }
        Ok(())
    }

    fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let dir = rel
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".tmp-{}-{n}-{:08x}", std::process::id(), rand32());
        let tmp = self.path(&if dir.is_empty() {
            tmp_name
        } else {
            format!("{dir}/{tmp_name}")
        });
        let target = self.path(&rel);
        let data = Arc::new(data.to_vec());
        let root = self.loc.path.clone();
        let (r, tries) = self.request(|s| {
            Self::write_object(
                s,
                root.clone(),
                dir.clone(),
                tmp.clone(),
                target.clone(),
                data.clone(),
                t == FileType::Lock,
            )
        });
        r.map_err(|f| self.error(&rel, t, name, f, tries))
    }

    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let path = self.path(&rel);
        let max = t.max_size();
        let (r, tries) = self.request(|s| {
            let path = path.clone();
            async move { Self::read_at(&s, &path, 0, max, max).await }
        });
        let (data, meta) = r.map_err(|f| self.error(&rel, t, name, f, tries))?;
        if !meta.file_type().is_some_and(|k| k.is_file()) {
            return Err(Error::corrupt(
                t.describe(name),
                format!("{path} is not a regular file"),
            ));
        }
        let size = meta.len().unwrap_or(0);
        if size > max {
            return Err(Error::corrupt(
                t.describe(name),
                format!("{size} bytes, more than a {t:?} object may hold"),
            ));
        }
        Ok(data)
    }

    fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let path = self.path(&rel);
        let short = || ends_before(t, name, offset.saturating_add(len as u64));
        offset.checked_add(len as u64).ok_or_else(short)?;
        let max = t.max_size();
        let (r, tries) = self.request(|s| {
            let path = path.clone();
            async move { Self::read_at(&s, &path, offset, len as u64, max).await }
        });
        let (data, meta) = r.map_err(|f| self.error(&rel, t, name, f, tries))?;
        if !meta.file_type().is_some_and(|k| k.is_file()) {
            return Err(Error::corrupt(
                t.describe(name),
                format!("{path} is not a regular file"),
            ));
        }
        if data.len() != len {
            return Err(short());
        }
        Ok(data)
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        if t == FileType::Config {
            return match self.stat(t, "config") {
                Ok(info) => Ok(vec![info]),
                Err(Error::NotFound(_)) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir = self.path(t.dir());
        let (r, tries) = self.request(|s| {
            let dir = dir.clone();
            async move {
                if t != FileType::Pack {
                    return Ok(Self::list_dir(&s, dir, t, false).await?.unwrap_or_default());
                }
                // data/<ab>/: the subdirectories, listed side by side.
                let subs = Self::list_dir(&s, dir.clone(), t, true)
                    .await?
                    .unwrap_or_default();
                let lists = futures::future::join_all(subs.iter().map(|(sub, _)| {
                    let path = format!("{dir}/{sub}");
                    let s = &s;
                    async move { (sub.clone(), Self::list_dir(s, path, t, false).await) }
                }))
                .await;
                let mut out = Vec::new();
                for (sub, listed) in lists {
                    for (name, meta) in listed?.unwrap_or_default() {
                        // A pack belongs in the directory of its first two digits.
                        if name.starts_with(&sub) {
                            out.push((name, meta));
                        }
                    }
                }
                Ok(out)
            }
        });
        let listed = r.map_err(|f| self.error(t.dir(), t, "", f, tries))?;
        Ok(listed
            .into_iter()
            .filter(|(_, m)| m.len().unwrap_or(0) <= t.max_size())
            .map(|(n, m)| Self::info(&n, &m))
            .collect())
    }

    fn stat(&self, t: FileType, name: &str) -> Result<ObjectInfo> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let path = self.path(&rel);
        let (r, tries) = self.request(|s| {
            let path = path.clone();
            async move { s.sftp.fs().symlink_metadata(&path).await }
        });
        let meta = r.map_err(|f| self.error(&rel, t, name, f, tries))?;
        if !meta.file_type().is_some_and(|k| k.is_file()) {
            return Err(Error::corrupt(
                t.describe(name),
                format!("{path} is not a regular file"),
            ));
        }
        Ok(Self::info(name, &meta))
    }

    fn delete(&self, t: FileType, name: &str) -> Result<()> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let path = self.path(&rel);
        let (r, tries) = self.request(|s| {
            let path = path.clone();
            async move {
                match s.sftp.fs().remove_file(&path).await {
                    Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => Ok(()),
                    other => other,
                }
            }
        });
        r.map_err(|f| self.error(&rel, t, name, f, tries))
    }

    fn remove_stale_temp(&self, max_age: Duration) -> Result<u64> {
        let mut dirs: Vec<String> = vec![String::new()];
        dirs.extend(
            FileType::ALL
                .iter()
                .filter(|t| !t.dir().is_empty())
                .map(|t| t.dir().to_string()),
        );
        let data = self.path("data");
        let (r, _) = self.request(|s| {
            let data = data.clone();
            async move { Self::list_dir(&s, data, FileType::Pack, true).await }
        });
        if let Ok(Some(subs)) = r {
            dirs.extend(subs.into_iter().map(|(sub, _)| format!("data/{sub}")));
        }
        let now = SystemTime::now();
        let mut removed = 0;
        for rel in dirs {
            let path = self.path(&rel);
            let (r, _) = self.request(|s| {
                let path = path.clone();
                async move {
                    use futures::TryStreamExt;
                    let mut fs = s.sftp.fs();
                    let dir = match fs.open_dir(&path).await {
                        Ok(d) => d,
                        Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {
                            return Ok(Vec::new())
                        }
                        Err(e) => return Err(e),
                    };
                    let entries: Vec<_> = dir.read_dir().try_collect().await?;
                    Ok(entries
                        .into_iter()
                        .filter_map(|e| {
                            let name = e.filename().to_str()?.to_string();
                            let old = e
                                .metadata()
                                .modified()
                                .and_then(|m| now.duration_since(m.as_system_time()).ok())
                                .is_some_and(|age| age > max_age);
                            (name.starts_with(".tmp-") && old && e.file_type()?.is_file())
                                .then_some(name)
                        })
                        .collect::<Vec<_>>())
                }
            });
            for name in r.unwrap_or_default() {
                let file = format!("{path}/{name}");
                let (r, tries) = self.request(|s| {
                    let file = file.clone();
                    async move { s.sftp.fs().remove_file(&file).await }
                });
                match r {
                    Ok(()) => removed += 1,
                    Err(Fail::Status(SftpErrorKind::NoSuchFile, _)) => {}
                    Err(f) => {
                        return Err(self.error(
                            &format!("{rel}/{name}"),
                            FileType::Lock,
                            &name,
                            f,
                            tries,
                        ))
                    }
                }
            }
        }
        Ok(removed)
    }

    fn is_local(&self) -> bool {
        false
    }

    fn settle(&self) -> Duration {
        self.settle
    }
}

/// A random number for temporary names (not for secrets).
fn rand32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_command_uses_ssh_in_batch_mode() {
        let loc = SftpLocation {
            user: Some("backup".into()),
            host: "example.com".into(),
            port: Some(2222),
            path: "/srv/r".into(),
        };
        assert_eq!(
            default_command(&loc).join(" "),
            "ssh -o BatchMode=yes -o ServerAliveInterval=30 -p 2222 -l backup -- example.com -s sftp"
        );
        let plain = SftpLocation {
            user: None,
            port: None,
            ..loc
        };
        assert_eq!(
            default_command(&plain).join(" "),
            "ssh -o BatchMode=yes -o ServerAliveInterval=30 -- example.com -s sftp"
        );
    }

    #[test]
    fn lasting_ssh_failures_are_not_retried() {
        assert!(!link_is_transient(
            "backup@h: Permission denied (publickey)."
        ));
        assert!(!link_is_transient("Host key verification failed."));
        assert!(link_is_transient(
            "ssh: connect to host 127.0.0.1 port 22: Connection refused"
        ));
        assert!(link_is_transient("Connection reset by peer"));
    }

    #[test]
    fn paths_join_below_the_root() {
        let b = |path: &str| {
            SftpBackend::new(
                SftpLocation {
                    user: None,
                    host: "h".into(),
                    port: None,
                    path: path.into(),
                },
                &SftpOptionsArg {
                    connections: 1,
                    retry: retry::Policy::default(),
                    command: None,
                },
            )
        };
        assert_eq!(b("/srv/r").path("data/ab/ab12"), "/srv/r/data/ab/ab12");
        assert_eq!(b("/").path("config"), "/config");
        assert_eq!(b("rel").path(""), "rel");
    }
}
