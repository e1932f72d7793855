//! `restore-test.sh --db-kind mysql` against a real MariaDB server: a database
//! shaped like a WordPress site, dumped with mysqldump into snapshots, loaded
//! into throw-away databases and proven by rows, `CHECKSUM TABLE` and smoke
//! queries; dumps that must fail, a failing mysqldump, a killed run.

use super::mariadb_server::MariaDb;
use super::{
    assert_no_scratch_left, backup_stdin, restore_test, script_cmd, snapshot_count, verdict,
};
use crate::common::{stderr, stdout, TempRepo};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const TABLES: &str = "wp_posts, wp_options, wp_users";
const POSTS: usize = 120;
const BLOGNAME: &str = "Ünïcödé 🎉 blog";
const ADMIN: &str = "Zoë Ångström 👩‍💻";

#[test]
fn mariadb_site_dump_round_trip_and_failures() {
    let db = MariaDb::start();
    let t = TempRepo::new();
    wordpress_site(&db);
    let sums = checksums(&db, "site");
    let site = backup_stdin(&t, "/db/site.sql", &db.dump_command("site"));
    failing_mysqldump_writes_no_snapshot(&t, &db);
    round_trip_through_defaults_file(&t, &db, &sums, &site);
    let dumps = dump_files(&t, &db);
    let snap = t.backup(&dumps);
    compressed_dumps_through_my_cnf_and_mount(&t, &db, &sums, &dumps, &snap);
    dumps_that_fail(&t, &db, &dumps, &snap);
    assert_eq!(checksums(&db, "site"), sums, "the original is untouched");
    kept_and_killed_runs(&t, &db, &site);
}

/// Tables like WordPress's, utf8mb4 text with every kind of character a
/// dump must escape, and a blob column holding every byte value.
fn wordpress_site(db: &MariaDb) {
    let charset = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci";
    let mut sql = format!(
        "CREATE DATABASE site;
         USE site;
         CREATE TABLE wp_users (ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
           user_login varchar(60) NOT NULL, user_pass varchar(255) NOT NULL,
           user_email varchar(100) NOT NULL, display_name varchar(250) NOT NULL) {charset};
         CREATE TABLE wp_options (option_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
           option_name varchar(191) NOT NULL UNIQUE, option_value longtext NOT NULL,
           autoload varchar(20) NOT NULL DEFAULT 'yes') {charset};
         CREATE TABLE wp_posts (ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
           post_author bigint unsigned NOT NULL, post_date datetime NOT NULL,
           post_title text NOT NULL, post_content longtext NOT NULL,
           post_status varchar(20) NOT NULL DEFAULT 'publish', post_thumbnail mediumblob,
           KEY post_author (post_author)) {charset};\n"
    );
    let users = [
        ADMIN,
        "editor",
        "Łukasz Żółć",
        "作者",
        "O'Brien \\ \"the\" author",
    ];
    for (i, name) in users.iter().enumerate() {
        sql += &format!(
            "INSERT INTO wp_users VALUES ({}, 'user{i}', '$P$B{i}hash/.', 'user{i}@example.com', {});\n",
            i + 1,
            quote(name)
        );
    }
    sql += &format!(
        "INSERT INTO wp_options (option_name, option_value) VALUES ('blogname', {});\n",
        quote(BLOGNAME)
    );
    for i in 1..30 {
        let value = format!("a:2:{{s:4:\"key{i}\";s:5:\"v'a\\l\";i:1;s:3:\"→{i}\";}}");
        sql += &format!(
            "INSERT INTO wp_options (option_name, option_value, autoload) VALUES ('option_{i}', {}, 'no');\n",
            quote(&value)
        );
    }
    for i in 1..=POSTS {
        let content = format!(
            "<p>Post {i}: Grüße aus Köln — 日本語のテキスト, emoji 🎉🚀 and 𝄞.</p>\n\
             <p>It's \"quoted\", a back\\slash, a tab\tand a CR\r and a ^Z \u{1a}.</p>\n"
        )
        .repeat(1 + i % 7);
        let thumb: Vec<u8> = (0..256 + i * 13)
            .map(|j| ((j * 7 + i) % 256) as u8)
            .collect();
        sql += &format!(
            "INSERT INTO wp_posts VALUES ({i}, {}, '2024-0{}-1{} 12:34:56', {}, {}, 'publish', {});\n",
            1 + i % users.len(),
            1 + i % 9,
            i % 10,
            quote(&format!("Title {i} — «ça va?»")),
            quote(&content),
            if i % 10 == 0 { "NULL".to_string() } else { hex(&thumb) }
        );
    }
    db.sql("", &sql);
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("x'{digits}'")
}

/// `CHECKSUM TABLE` of the site's tables in `database`, by table name.
fn checksums(db: &MariaDb, database: &str) -> BTreeMap<String, String> {
    parse_checksums(&db.sql(database, &format!("CHECKSUM TABLE {TABLES}")))
}

/// Lines `DB.TABLE<tab>SUM` as TABLE => SUM; a missing table's NULL fails.
fn parse_checksums(text: &str) -> BTreeMap<String, String> {
    let sums: BTreeMap<_, _> = text
        .lines()
        .map(|l| {
            let (name, sum) = l.split_once('\t').expect("TABLE<tab>CHECKSUM");
            let table = name.rsplit_once('.').map_or(name, |(_, t)| t);
            assert!(sum.parse::<u64>().is_ok(), "checksum of {name}: {sum}");
            (table.to_string(), sum.to_string())
        })
        .collect();
    assert_eq!(sums.len(), 3, "{text}");
    sums
}

/// The throw-away databases left on the server.
fn leftovers(db: &MariaDb) -> String {
    db.sql(
        "",
        "SELECT count(*) FROM information_schema.schemata \
         WHERE schema_name LIKE 'rewind\\_restore\\_test\\_%'",
    )
}

/// The exit code must be `code`; `what` names the case when it is not.
fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}:\n{}\n{}",
        stdout(out),
        stderr(out)
    );
}

fn failing_mysqldump_writes_no_snapshot(t: &TempRepo, db: &MariaDb) {
    let wrong = db.path().join("wrong.cnf");
    let cnf = fs::read_to_string(db.defaults_file("dumper")).unwrap();
    fs::write(&wrong, cnf.replace("s3cret", "wrong")).unwrap();
    let down = db.path().join("no-server.sock");
    let before = snapshot_count(t);
    for (why, command) in [
        (
            "wrong password",
            format!("mysqldump --defaults-file={} site", wrong.display()),
        ),
        (
            "server down",
            format!("{} --socket={} site", db.dump_command(""), down.display()),
        ),
    ] {
        let out = t.rewind([
            "backup",
            "--stdin-name",
            "/db/site.sql",
            "--stdin-from-command",
            &command,
        ]);
        assert_code(&out, 1, why);
        assert!(
            stderr(&out).contains("no snapshot"),
            "{why}: {}",
            stderr(&out)
        );
        assert_eq!(snapshot_count(t), before, "{why}");
    }
}

fn round_trip_through_defaults_file(
    t: &TempRepo,
    db: &MariaDb,
    sums: &BTreeMap<String, String>,
    site: &str,
) {
    let cnf = db.defaults_file("tester");
    let sums_file = db.path().join("restored-sums");
    let smoke = format!(
        "set -e
         my() {{ mariadb --defaults-file=\"$RESTORE_DEFAULTS_FILE\" --default-character-set=utf8mb4 -N -B \"$RESTORE_DB\" -e \"$1\"; }}
         my 'CHECKSUM TABLE {TABLES}' >{sums}
         test \"$(my 'SELECT display_name FROM wp_users WHERE ID = 1')\" = '{ADMIN}'
         test \"$(my 'SELECT sum(length(post_thumbnail)) FROM wp_posts')\" -gt 0",
        sums = sums_file.display()
    );
    let blogname = format!(
        "SELECT count(*) = 1 FROM wp_options WHERE option_name = 'blogname' AND option_value = '{BLOGNAME}'"
    );
    let posts = format!("wp_posts={POSTS}");
    let args = [
        "--snapshot",
        site,
        "--db-kind",
        "mysql",
        "--db-dump",
        "/db/site.sql",
        "--defaults-file",
        cnf.to_str().unwrap(),
        "--expect-rows",
        &posts,
        "--expect-rows",
        "wp_users=5",
        "--expect-rows",
        "wp_options=30",
        "--min-rows",
        "wp_posts=100",
        "--db-check",
        &blogname,
        "--smoke",
        &smoke,
    ];
    let out = restore_test(t, &args, &[]);
    assert_code(&out, 0, "--defaults-file");
    let v = verdict(&out);
    assert!(v.starts_with("restore-test: PASS snapshot "), "{v}");
    assert!(
        v.contains("(restore; snapshot restore verify mysql smoke)"),
        "{v}"
    );
    let restored = parse_checksums(&fs::read_to_string(&sums_file).unwrap());
    assert_eq!(&restored, sums, "CHECKSUM TABLE after the round trip");
    assert_eq!(leftovers(db), "0", "the throw-away database is dropped");
}

/// The site's dump as files, compressed, and damaged in the ways a load
/// must catch; the directory to back up.
fn dump_files(t: &TempRepo, db: &MariaDb) -> PathBuf {
    let dir = t.join("dumps");
    fs::create_dir(&dir).unwrap();
    // Bytes, not text: the blob column is no UTF-8.
    let dump = |flags: &str| -> Vec<u8> {
        let out = crate::common::tool("sh")
            .arg("-c")
            .arg(db.dump_command(flags))
            .output()
            .unwrap();
        assert!(out.status.success(), "mysqldump {flags}: {}", stderr(&out));
        out.stdout
    };
    let find = |hay: &[u8], needle: &str| {
        hay.windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap_or_else(|| panic!("no {needle:?} in the dump"))
    };
    let full = dump("site");
    let sh = |script: &str| {
        let out = crate::common::tool("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", stderr(&out));
    };
    fs::write(dir.join("site.sql"), &full).unwrap();
    sh("gzip -k site.sql && zstd -q site.sql && rm site.sql");
    // Cut inside the posts' INSERT, and a compressed dump cut in half.
    let at = find(&full, "INSERT INTO `wp_posts`") + 3000;
    fs::write(dir.join("truncated.sql"), &full[..at]).unwrap();
    let gz = fs::read(dir.join("site.sql.gz")).unwrap();
    fs::write(dir.join("truncated.sql.gz"), &gz[..gz.len() / 2]).unwrap();
    fs::write(dir.join("broken.sql"), "CREATE TABLE broken (;\n").unwrap();
    fs::write(dir.join("empty.sql"), "").unwrap();
    // What `mysqldump … | gzip` leaves when mysqldump fails and sh has no pipefail.
    sh("gzip -c </dev/null >empty.sql.gz");
    // No CREATE TABLE for wp_users: its rows go to a table that does not exist.
    let start = find(&full, "CREATE TABLE `wp_users`");
    let end = start + find(&full[start..], ";\n") + 2;
    fs::write(
        dir.join("missing-table.sql"),
        [&full[..start], &full[end..]].concat(),
    )
    .unwrap();
    // One row a line, and one post left out: a dump that loads, one row short.
    let short: Vec<u8> = dump("--skip-extended-insert site")
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b"INSERT INTO `wp_posts` VALUES (7,"))
        .flatten()
        .copied()
        .collect();
    fs::write(dir.join("short.sql"), short).unwrap();
    fs::write(dir.join("databases.sql"), dump("--databases site")).unwrap();
    dir
}

fn compressed_dumps_through_my_cnf_and_mount(
    t: &TempRepo,
    db: &MariaDb,
    sums: &BTreeMap<String, String>,
    dumps: &Path,
    snap: &str,
) {
    let dir = dumps.to_str().unwrap();
    let sums_file = db.path().join("restored-sums");
    let posts = format!("wp_posts={POSTS}");
    // Through ~/.my.cnf (user and password) and MYSQL_HOST/MYSQL_TCP_PORT:
    // the client connects over TCP, which the processlist shows.
    let port = db.port.to_string();
    let env: [(&str, &Path); 3] = [
        ("HOME", &db.home()),
        ("MYSQL_HOST", Path::new("127.0.0.1")),
        ("MYSQL_TCP_PORT", Path::new(&port)),
    ];
    let over_tcp = "SELECT count(*) = 1 FROM information_schema.processlist \
                    WHERE id = connection_id() AND host LIKE '127.0.0.1:%'";
    let smoke = format!(
        "mariadb -N -B \"$RESTORE_DB\" -e 'CHECKSUM TABLE {TABLES}' >{}",
        sums_file.display()
    );
    let gz = format!("{dir}/site.sql.gz");
    let args = [
        "--snapshot",
        snap,
        "--path",
        dir,
        "--db-kind",
        "mariadb",
        "--db-dump",
        &gz,
        "--expect-rows",
        &posts,
        "--db-check",
        over_tcp,
        "--smoke",
        &smoke,
    ];
    fs::remove_file(&sums_file).unwrap();
    let out = restore_test(t, &args, &env);
    assert_code(&out, 0, "site.sql.gz through ~/.my.cnf");
    assert!(stdout(&out).contains("mysql: ok"), "{}", stdout(&out));
    let restored = parse_checksums(&fs::read_to_string(&sums_file).unwrap());
    assert_eq!(
        &restored, sums,
        "CHECKSUM TABLE after the .sql.gz round trip"
    );

    // zstd, read through the mount, with --defaults-file.
    let cnf = db.defaults_file("tester");
    let zst = format!("{dir}/site.sql.zst");
    let args = [
        "--snapshot",
        snap,
        "--mode",
        "mount",
        "--path",
        dir,
        "--db-kind",
        "mysql",
        "--db-dump",
        &zst,
        "--defaults-file",
        cnf.to_str().unwrap(),
        "--expect-rows",
        &posts,
        "--expect-rows",
        "wp_users=5",
    ];
    let out = restore_test(t, &args, &[]);
    assert_code(&out, 0, "site.sql.zst through the mount");
    assert!(
        verdict(&out).contains("(mount; snapshot mount verify mysql)"),
        "{}",
        verdict(&out)
    );
    assert_eq!(leftovers(db), "0");
}

/// Each bad dump fails the mysql step with the reason in the output, and
/// leaves no database behind.
fn dumps_that_fail(t: &TempRepo, db: &MariaDb, dumps: &Path, snap: &str) {
    let cnf = db.defaults_file("tester");
    let posts = format!("wp_posts={POSTS}");
    let cases: [(&str, &[&str]); 9] = [
        ("truncated.sql", &["truncated", "ERROR 1064"]),
        ("truncated.sql.gz", &["unexpected end of file"]),
        ("broken.sql", &["ERROR 1064 (42000) at line 1"]),
        (
            "missing-table.sql",
            &["ERROR 1146", "wp_users' doesn't exist"],
        ),
        ("short.sql", &["wp_posts: 119 rows (want 120)"]),
        (
            "databases.sql",
            &["acts on another database", "CREATE DATABASE"],
        ),
        ("empty.sql", &["the dump created no tables"]),
        ("empty.sql.gz", &["the dump created no tables"]),
        ("missing.sql", &["no file"]),
    ];
    for (file, messages) in cases {
        let path = format!("{}/{file}", dumps.display());
        let args = [
            "--snapshot",
            snap,
            "--path",
            dumps.to_str().unwrap(),
            "--db-kind",
            "mysql",
            "--db-dump",
            &path,
            "--defaults-file",
            cnf.to_str().unwrap(),
            "--expect-rows",
            &posts,
        ];
        let out = restore_test(t, &args, &[]);
        assert_code(&out, 1, file);
        let v = verdict(&out);
        assert!(
            v.contains("FAIL") && v.contains(": mysql failed"),
            "{file}: {v}"
        );
        for m in messages {
            assert!(
                stderr(&out).contains(m),
                "{file}: no {m:?} in\n{}",
                stderr(&out)
            );
        }
        assert!(
            !stderr(&out).contains("INSERT INTO `wp_posts` VALUES"),
            "{file}: the failing statement is not repeated: {}",
            stderr(&out)
        );
        assert_eq!(leftovers(db), "0", "{file}: the database is dropped");
    }
}

/// --keep leaves the database for a look; a run killed in its smoke step
/// still drops it and removes its scratch directory.
fn kept_and_killed_runs(t: &TempRepo, db: &MariaDb, site: &str) {
    let cnf = db.defaults_file("tester");
    let load = [
        "--snapshot",
        site,
        "--db-kind",
        "mysql",
        "--db-dump",
        "/db/site.sql",
        "--defaults-file",
        cnf.to_str().unwrap(),
    ];
    let mut args = load.to_vec();
    args.extend(["--keep", "--expect-rows", "wp_users=6"]);
    let out = script_cmd(t, &args, &[]).output().unwrap();
    assert_code(&out, 1, "--keep");
    assert!(
        stderr(&out).contains("and database rewind_restore_test_"),
        "{}",
        stderr(&out)
    );
    assert_eq!(leftovers(db), "1", "--keep keeps the database");
    let kept = db.sql(
        "",
        "SELECT schema_name FROM information_schema.schemata \
         WHERE schema_name LIKE 'rewind\\_restore\\_test\\_%'",
    );
    db.sql("", &format!("DROP DATABASE `{kept}`"));
    fs::remove_dir_all(t.join("work")).unwrap();

    let started = t.join("smoke-started");
    let smoke = format!("touch {} && sleep 600", started.display());
    let mut args = load.to_vec();
    args.extend(["--smoke", &smoke]);
    let mut child = script_cmd(t, &args, &[])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !started.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("restore-test.sh exited {status} before its smoke step");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no smoke step");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        leftovers(db),
        "1",
        "the database exists during the smoke step"
    );
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 1, "killed");
    assert_no_scratch_left(t, &out);
    assert_eq!(leftovers(db), "0", "a killed run drops its database");
}
