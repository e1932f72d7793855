//! A MariaDB server of its own (Debian's `mariadb-server`): a data directory
//! made by `mariadb-install-db` in a temporary directory, a socket there and a
//! free loopback port, two users with passwords in option files. Killed and
//! waited for on drop, also when the test panics; killed by the kernel if the
//! test process dies first.

use crate::common::{stderr, stdout};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of both test users: a space and a `#` need the quotes an
/// option file allows.
const PASSWORD: &str = "s3cret #pw";

/// A database whose users are `dumper` (may read it with `mysqldump`) and
/// `tester` (may create and drop only `rewind_restore_test_%` databases),
/// and `root` through the socket without a password for the test itself.
pub struct MariaDb {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

impl MariaDb {
    pub fn start() -> Self {
        let dir = crate::common::socket_tempdir("rewind-mariadb-");
        let data = dir.path().join("data");
        let install = Command::new(tool("mariadb-install-db"))
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db");
        assert!(
            install.status.success(),
            "mariadb-install-db: {}{}",
            stdout(&install),
            stderr(&install)
        );
        // The port is free when chosen; another process may take it before
        // the server binds, so a bind failure picks another.
        let port = free_port();
        let child = spawn_server(dir.path(), port);
        let mut db = MariaDb { dir, child, port };
        let mut tries = 1;
        loop {
            match db.wait_ready() {
                Ok(()) => break,
                Err(log) if log.contains("Address already in use") && tries < 5 => {
                    db.stop();
                    db.port = free_port();
                    db.child = spawn_server(db.dir.path(), db.port);
                    tries += 1;
                }
                Err(log) => panic!("mariadbd did not start:\n{log}"),
            }
        }
        db.add_users();
        db
    }

    /// Wait until root can connect through the socket, or the server exits
    /// (then its error log is the error).
    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("mariadbd exited {status}:\n{}", self.log()));
            }
            let ping = self.root().arg("-e").arg("SELECT 1").output().unwrap();
            if ping.status.success() {
                return Ok(());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "mariadbd not ready after 120s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn add_users(&self) {
        let users = format!(
            "CREATE USER dumper@localhost IDENTIFIED BY '{PASSWORD}';
             GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES ON site.* TO dumper@localhost;
             CREATE USER tester@localhost IDENTIFIED BY '{PASSWORD}';
             CREATE USER tester@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
             GRANT ALL ON `rewind\\_restore\\_test\\_%`.* TO tester@localhost;
             GRANT ALL ON `rewind\\_restore\\_test\\_%`.* TO tester@'127.0.0.1';"
        );
        self.sql("", &users);
        // `force` for the client: the script must stop at a dump's first
        // error all the same.
        for (user, extra) in [("dumper", ""), ("tester", "[mysql]\nforce\n")] {
            let cnf = format!(
                "[client]\nuser={user}\npassword=\"{PASSWORD}\"\nsocket={}\n{extra}",
                self.socket().display()
            );
            fs::write(self.defaults_file(user), cnf).unwrap();
        }
        let home = self.home();
        fs::create_dir(&home).unwrap();
        let cnf = format!("[client]\nuser=tester\npassword=\"{PASSWORD}\"\n");
        fs::write(home.join(".my.cnf"), cnf).unwrap();
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    /// An option file naming `user`, its password and the socket.
    pub fn defaults_file(&self, user: &str) -> PathBuf {
        self.dir.path().join(format!("{user}.cnf"))
    }

    /// A home directory whose `~/.my.cnf` names `tester` and the password,
    /// not the server.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A scratch directory that goes with the server.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mysqldump` as `dumper`, as shell text for `--stdin-from-command`.
    pub fn dump_command(&self, flags: &str) -> String {
        format!(
            "mysqldump --defaults-file={} --single-transaction {flags}",
            self.defaults_file("dumper").display()
        )
    }

    fn root(&self) -> Command {
        let mut c = crate::common::tool("mariadb");
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["--user=root", "--default-character-set=utf8mb4"])
            .args(["--batch", "--skip-column-names"]);
        c
    }

    /// Run `sql` as root in database `db` ("" for none) and return its output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let mut child = self
            .root()
            .args((!db.is_empty()).then_some(db))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mariadb");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "mariadb {db}: {}\n{}",
            stderr(&out),
            &sql[..sql.len().min(2000)]
        );
        stdout(&out).trim_end().to_string()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// mariadbd as root on `port` and a socket in `dir`, with nothing from the
/// machine's option files.
fn spawn_server(dir: &Path, port: u16) -> Child {
    let at = |name: &str| dir.join(name).display().to_string();
    let mut c = Command::new(tool("mariadbd"));
    c.arg("--no-defaults")
        .arg("--user=root")
        .arg(format!("--datadir={}", at("data")))
        .arg(format!("--socket={}", at("mysqld.sock")))
        .arg(format!("--pid-file={}", at("mariadbd.pid")))
        .arg(format!("--log-error={}", at("error.log")))
        .args(["--skip-networking=0", "--bind-address=127.0.0.1"])
        .arg(format!("--port={port}"))
        .args(["--skip-name-resolve", "--skip-log-bin"])
        .args([
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ])
        .args([
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    c.spawn().expect("spawn mariadbd")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A MariaDB program from PATH or /usr/sbin (mariadbd lives there).
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: `apt-get install -y mariadb-server` \
                 (.ci/run does); this test does not skip"
            )
        })
}
