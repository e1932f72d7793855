//! Real servers on loopback for the remote-repository tests: an S3 server
//! (s3s-fs, which `.ci/run` installs) and an OpenSSH `sshd` with generated
//! host and user keys.
//!
//! Every server is started with `PR_SET_PDEATHSIG`, so it dies with the
//! thread that started it: a test's own server when the test ends (also
//! when it fails), the shared one when the test binary exits. Dropping a
//! server stops it too.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The access key every test S3 server accepts.
pub const ACCESS_KEY: &str = "rewindtestkey";
/// Its secret.
pub const SECRET_KEY: &str = "rewind-test-secret-do-not-use";

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts connections on `port`.
fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited {status} before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} not listening on port {port} after 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start `cmd` so that it dies with the calling thread.
fn spawn_tied(cmd: &mut Command) -> Child {
    // SAFETY: prctl in the child between fork and exec: async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

/// The s3s-fs binary: on the PATH, or where `cargo install` puts it.
fn s3s_fs() -> PathBuf {
    if let Some(p) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    }) {
        return p;
    }
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let p = home.join(".cargo/bin/s3s-fs");
    assert!(
        p.is_file(),
        "s3s-fs is not installed: run .ci/run, or `cargo install s3s-fs --version 0.14.1 --features binary --locked`"
    );
    p
}

/// An S3 server on loopback storing objects under a directory of its own.
pub struct S3Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl S3Server {
    /// A server of the calling thread's (stopped when it ends).
    pub fn start() -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("rewind-s3-")
            .tempdir()
            .unwrap();
        let mut s = S3Server {
            port: free_port(),
            dir,
            child: None,
        };
        s.launch();
        s
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn launch(&mut self) {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut child = spawn_tied(
            Command::new(s3s_fs())
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&data)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        wait_listening(self.port, &mut child, "s3s-fs", &self.log());
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Where the server keeps `bucket`'s objects.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.path().join("data").join(bucket)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The S3 server the tests share, started once (by a thread that lives as
/// long as the test binary).
pub fn shared_s3() -> &'static S3Server {
    static SHARED: OnceLock<S3Server> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("s3-server-owner".into())
            .spawn(move || {
                tx.send(S3Server::start()).unwrap();
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        rx.recv().unwrap()
    })
}

/// A bucket name no other test uses.
pub fn unique_bucket(prefix: &str) -> String {
    static N: Mutex<u32> = Mutex::new(0);
    let mut n = N.lock().unwrap();
    *n += 1;
    format!("{prefix}-{}-{}", std::process::id(), *n)
}

/// An OpenSSH server on loopback that lets root in with a generated key.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Sshd {
    /// Start one for the calling thread.
    pub fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.is_file(),
            "sshd is not installed: run .ci/run (Debian's openssh-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("rewind-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for key in ["host_key", "id"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key)));
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPidFile {}\n\
                 Subsystem sftp internal-sftp\nLogLevel ERROR\n",
                d.join("host_key").display(),
                d.join("authorized_keys").display(),
                d.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host rewind-test\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
                d.join("id").display(),
                d.join("known_hosts").display()
            ),
        )
        .unwrap();
        let mut s = Sshd {
            port,
            dir,
            child: None,
        };
        s.launch();
        s
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut child = spawn_tied(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(self.dir.path().join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        wait_listening(self.port, &mut child, "sshd", &self.log());
        self.child = Some(child);
    }

    /// What `REWIND_SFTP_COMMAND` says to reach this server.
    pub fn command(&self) -> String {
        format!(
            "ssh -F {} rewind-test -s sftp",
            self.dir.path().join("ssh_config").display()
        )
    }

    /// Stop the server (SIGKILL; sessions in progress keep their own process).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What sshd logged.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
