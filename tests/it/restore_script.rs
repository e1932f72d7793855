//! `scripts/restore-test.sh` for real: a private PostgreSQL server (Debian's
//! packages) and SQLite, plain and compressed dumps streamed into snapshots,
//! restored into throw-away databases and checked; verdicts, exit codes and
//! clean-up. MariaDB in `mariadb` (tests) and `mariadb_server` (the server).

use crate::common::{bin, stderr, stdout, tree, TempRepo};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod mariadb;
mod mariadb_server;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/restore-test.sh")
}

/// The script on `t`'s repository with scratch space in `t/work`.
fn script_cmd(t: &TempRepo, args: &[&str], env: &[(&str, &Path)]) -> Command {
    let mut c = crate::common::tool("bash");
    c.arg(script())
        .arg("--repo")
        .arg(t.repo())
        .arg("--work")
        .arg(t.join("work"))
        .args(args)
        .env("REWIND_BIN", bin())
        .env_remove("REWIND_REPO");
    crate::common::test_env(&mut c);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Panic if a run left anything in `t/work`.
fn assert_no_scratch_left(t: &TempRepo, out: &Output) {
    let left: Vec<_> = fs::read_dir(t.join("work"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "scratch space left behind: {left:?}\n{}",
        stderr(out)
    );
}

/// Run the script on `t`'s repository with scratch space in `t/work`.
pub(crate) fn restore_test(t: &TempRepo, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let out = script_cmd(t, args, env)
        .output()
        .expect("run restore-test.sh");
    assert_no_scratch_left(t, &out);
    out
}

fn verdict(out: &Output) -> String {
    stdout(out).lines().last().unwrap_or_default().to_string()
}

/// A PostgreSQL server of its own: a cluster in a temporary directory owned by
/// `postgres`, listening only on a unix socket in that directory. Stopped on drop.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    ids: (u32, u32),
}

impl Postgres {
    fn start() -> Self {
        let bin = postgres_bin().unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
                 `apt-get install -y postgresql` (.ci/run does); this test does not skip"
            )
        });
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("the postgresql package creates user postgres");
        let ids = (user.uid.as_raw(), user.gid.as_raw());
        let dir = crate::common::socket_tempdir("rewind-pg-");
        tree::chown(dir.path(), ids.0, ids.1);
        let pg = Postgres { dir, bin, ids };
        let data = pg.data();
        pg.run_as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            ],
        );
        let opts = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c full_page_writes=off",
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("log");
        pg.run_as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-o",
                &opts,
                "start",
            ],
        );
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_as_postgres(&self, tool: &str, args: &[&str]) {
        let out = Command::new(self.bin.join(tool))
            .args(args)
            .uid(self.ids.0)
            .gid(self.ids.1)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        let log = fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}\n{log}",
            stdout(&out),
            stderr(&out)
        );
    }

    /// libpq's environment for this server.
    fn env(&self) -> Vec<(&'static str, &Path)> {
        vec![
            ("PGHOST", self.dir.path()),
            ("PGUSER", Path::new("postgres")),
        ]
    }

    /// A client command (psql, pg_dump) against this server, as shell text.
    fn client(&self, tool: &str) -> String {
        format!("{} -h {} -U postgres", tool, self.dir.path().display())
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = crate::common::tool("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-h"])
            .arg(self.dir.path())
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .uid(self.ids.0)
            .gid(self.ids.1)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest installed PostgreSQL's binaries.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn snapshot_count(t: &TempRepo) -> usize {
    let v: serde_json::Value = serde_json::from_str(&t.ok(["snapshots", "--json"])).unwrap();
    v.as_array().unwrap().len()
}

/// Back up `command`'s output as `name`; the snapshot's id.
fn backup_stdin(t: &TempRepo, name: &str, command: &str) -> String {
    let out = t.ok([
        "backup",
        "--json",
        "--stdin-name",
        name,
        "--stdin-from-command",
        command,
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("backup json");
    v["id"].as_str().expect("id").to_string()
}

#[test]
fn postgres_dump_through_a_snapshot_into_a_fresh_database() {
    let pg = Postgres::start();
    let t = TempRepo::new();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 37) i;
         CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, amount int);
         INSERT INTO orders SELECT i, 1 + i % 37, i FROM generate_series(1, 1000) i;",
    );
    let dump = |name: &str, flags: &str| {
        t.ok([
            "backup",
            "--tag",
            "db",
            "--stdin-name",
            name,
            "--stdin-from-command",
            &format!("{} {flags} shop", pg.client("pg_dump")),
        ])
    };
    dump("/db/shop.sql", "");
    // A failing pg_dump writes no snapshot.
    let before = snapshot_count(&t);
    let failed = t.rewind([
        "backup",
        "--stdin-name",
        "/db/shop.sql",
        "--stdin-from-command",
        &format!("{} no_such_database", pg.client("pg_dump")),
    ]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("no snapshot"),
        "{}",
        stderr(&failed)
    );
    assert_eq!(snapshot_count(&t), before);

    let env = pg.env();
    let smoke = "test \"$(psql -X -tAc 'SELECT sum(amount) FROM orders')\" = 500500 \
                 && test \"$PGDATABASE\" = \"$RESTORE_DB\" && test -s \"$RESTORE_DIR/db/shop.sql\"";
    let args = [
        "--db-kind",
        "postgres",
        "--db-dump",
        "/db/shop.sql",
        "--expect-rows",
        "orders=1000",
        "--expect-rows",
        "customers=37",
        "--min-rows",
        "orders=10",
        "--db-check",
        "SELECT count(*) = 0 FROM orders WHERE customer IS NULL",
        "--smoke",
        smoke,
    ];
    let out = restore_test(&t, &args, &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let v = verdict(&out);
    assert!(v.starts_with("restore-test: PASS snapshot "), "{v}");
    assert!(v.contains("verify postgres smoke"), "{v}");
    let leftover = "SELECT count(*) FROM pg_database WHERE datname LIKE 'rewind_restore_test%'";
    assert_eq!(
        pg.psql("postgres", leftover),
        "0",
        "the throw-away database is dropped"
    );

    // Wrong row counts fail, and still clean up.
    let out = restore_test(
        &t,
        &[
            "--db-kind",
            "postgres",
            "--db-dump",
            "/db/shop.sql",
            "--expect-rows",
            "orders=999",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        verdict(&out).contains("FAIL") && verdict(&out).contains("postgres failed"),
        "{}",
        verdict(&out)
    );
    assert!(
        stderr(&out).contains("orders: 1000 rows (want 999)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(pg.psql("postgres", leftover), "0");

    // pg_dump's custom format goes through pg_restore.
    dump("/db/shop.dump", "-Fc");
    let out = restore_test(
        &t,
        &[
            "--db-kind",
            "postgres",
            "--db-dump",
            "/db/shop.dump",
            "--expect-rows",
            "customers=37",
        ],
        &env,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    // Compressed plain and tar dumps load; a --create dump is refused, also compressed.
    let piped = |name: &str, flags: &str, filter: &str| {
        let command = format!("{} {flags} shop | {filter}", pg.client("pg_dump"));
        backup_stdin(&t, name, &command)
    };
    let zst = piped("/db/shop.sql.zst", "", "zstd -q");
    let tar = piped("/db/shop.tar.gz", "-Ft", "gzip");
    let create = piped("/db/create.sql.gz", "--create", "gzip");
    for (snap, file) in [(&zst, "/db/shop.sql.zst"), (&tar, "/db/shop.tar.gz")] {
        let out = restore_test(
            &t,
            &[
                "--snapshot",
                snap,
                "--db-kind",
                "postgres",
                "--db-dump",
                file,
                "--expect-rows",
                "orders=1000",
                "--expect-rows",
                "customers=37",
            ],
            &env,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("postgres: ok"), "{}", stdout(&out));
    }
    let out = restore_test(
        &t,
        &[
            "--snapshot",
            &create,
            "--db-kind",
            "postgres",
            "--db-dump",
            "/db/create.sql.gz",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("switches databases (line ") && stderr(&out).contains("\\connect"),
        "{}",
        stderr(&out)
    );
    assert_eq!(pg.psql("postgres", leftover), "0");

    // A dump that does not load is a failure, not a pass.
    let mut c = t.cmd(["backup", "--stdin-name", "/db/bad.sql"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"CREATE TABLE broken (;\n",
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let out = restore_test(
        &t,
        &["--db-kind", "postgres", "--db-dump", "/db/bad.sql"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(pg.psql("postgres", leftover), "0");
}

/// A site and an SQLite dump in the repository.
fn sqlite_repo(t: &TempRepo) -> PathBuf {
    let has_sqlite = crate::common::tool("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_sqlite,
        "sqlite3 is not installed: `apt-get install -y sqlite3` (.ci/run does)"
    );
    let site = t.join("site");
    fs::create_dir_all(site.join("assets")).unwrap();
    tree::file(&site.join("index.php"), b"<?php echo 'ok';\n");
    tree::file(&site.join("assets/logo.bin"), &tree::noise(300_000, 9));
    let db = t.join("app.db");
    let sql = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
               WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 250)
               INSERT INTO users SELECT i, 'user ' || i FROM c;";
    let out = crate::common::tool("sqlite3")
        .arg(&db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    t.backup(&site);
    t.ok([
        "backup",
        "--stdin-name",
        "/db/app.sql",
        "--stdin-from-command",
        &format!("sqlite3 {} .dump", db.display()),
    ]);
    site
}

#[test]
fn sqlite_dump_restore_and_mount_modes_and_failures() {
    let t = TempRepo::new();
    sqlite_repo(&t);
    let db = [
        "--db-kind",
        "sqlite",
        "--db-dump",
        "/db/app.sql",
        "--expect-rows",
        "users=250",
    ];
    let smoke =
        "test \"$(sqlite3 \"$RESTORE_DB\" 'SELECT name FROM users WHERE id = 7')\" = 'user 7'";
    for mode in ["restore", "mount"] {
        let mut args = db.to_vec();
        args.extend(["--mode", mode, "--smoke", smoke]);
        let out = restore_test(&t, &args, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{mode}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            verdict(&out).contains("PASS snapshot "),
            "{}",
            verdict(&out)
        );
        assert!(
            verdict(&out).contains(&format!("({mode}; snapshot {mode} verify sqlite smoke)")),
            "{}",
            verdict(&out)
        );
    }
    // Only a path of the snapshot, quietly.
    let out = restore_test(
        &t,
        &[
            "--path",
            "/db",
            "-q",
            "--db-kind",
            "sqlite",
            "--db-dump",
            "/db/app.sql",
            "--min-rows",
            "users=100",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "quiet: the verdict only: {}",
        stdout(&out)
    );
    // A failing smoke command fails the run (and its output is shown).
    let out = restore_test(&t, &["--smoke", "echo the site is down; exit 3"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        verdict(&out).starts_with("restore-test: FAIL snapshot "),
        "{}",
        verdict(&out)
    );
    assert!(
        stderr(&out).contains("| the site is down"),
        "{}",
        stderr(&out)
    );
    // Usage errors are exit 2, and a missing snapshot is a failure.
    for args in [
        &["--db-kind", "oracle", "--db-dump", "/x"][..],
        &[
            "--db-kind",
            "sqlite",
            "--db-dump",
            "/x",
            "--defaults-file",
            "/dev/null",
        ],
        &[
            "--db-kind",
            "mysql",
            "--db-dump",
            "/x",
            "--defaults-file",
            "/no/such.cnf",
        ],
    ] {
        let out = restore_test(&t, args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = restore_test(
        &t,
        &[
            "--path",
            "/srv",
            "--db-kind",
            "sqlite",
            "--db-dump",
            "/db/app.sql",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = restore_test(&t, &["--snapshot", "ffff0000"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        verdict(&out).contains("snapshot failed"),
        "{}",
        verdict(&out)
    );
    // Damaged data fails the test through the mount, and the mount's log of
    // read errors (it runs as a daemon) names the file.
    {
        let repo = crate::common::fault::open(&t);
        let dump = crate::common::fault::entry(&repo, "latest", Path::new("/db/app.sql"));
        let loc = crate::common::fault::data_locations(&repo, &dump)[0];
        let pack = crate::common::fault::pack_file(&t, &loc);
        crate::common::fault::flip_byte(&pack, loc.frame.offset as u64 + 20);
    }
    let mut args = db.to_vec();
    args.extend(["--mode", "mount"]);
    let out = restore_test(&t, &args, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the mount logged read errors") && stderr(&out).contains("app.sql"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sqlite_compressed_dumps_and_database_files() {
    let t = TempRepo::new();
    sqlite_repo(&t);
    let app_db = t.join("app.db");
    let zstd = format!("zstd -qc {}", app_db.display());
    let cases = [
        (
            "/db/app.sql.gz",
            format!("sqlite3 {} .dump | gzip", app_db.display()),
            None,
        ),
        ("/db/app.db.zst", zstd.clone(), None),
        (
            "/db/cut.db.zst",
            format!("{zstd} | head -c 300"),
            Some("premature end"),
        ),
    ];
    for (name, command, error) in cases {
        let snap = backup_stdin(&t, name, &command);
        let args = [
            "--snapshot",
            &snap,
            "--db-kind",
            "sqlite",
            "--db-dump",
            name,
            "--expect-rows",
            "users=250",
        ];
        let out = restore_test(&t, &args, &[]);
        let Some(error) = error else {
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name}: {}\n{}",
                stdout(&out),
                stderr(&out)
            );
            assert!(stdout(&out).contains("sqlite: ok"), "{}", stdout(&out));
            continue;
        };
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stderr(&out).contains(error) && verdict(&out).contains("sqlite failed"),
            "{name}: {}",
            stderr(&out)
        );
    }
}
