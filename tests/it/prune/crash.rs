//! Prune killed mid-way, always from the same starting repository: whatever
//! it had written or deleted, the repository checks clean, every kept
//! snapshot restores exactly, and a prune run again finishes the job. Which
//! phase each kill landed in is read from the repository's files, and each
//! phase (writing packs, writing the index, deleting) must see kills.

use super::{json, mutate};
use crate::common::fault::Rng;
use crate::common::{compare, stdout, tree, TempRepo};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How far a prune got, from its files: each phase leaves a mark the one
/// before does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Nothing written: reading snapshots, trees and the index.
    Reading,
    /// New packs (or a pack's temporary file), no new index file.
    Packs,
    /// A new index file (or one's temporary file), nothing deleted.
    Index,
    /// Some of the old index files and packs that go are gone, not all.
    Deleting,
    /// All that goes is gone; the process had not exited yet.
    Cleanup,
    /// The prune exited by itself before the kill.
    Finished,
}

/// The repository's packs and index files by name; temporary files apart.
#[derive(Debug, Default)]
struct Files {
    packs: BTreeSet<String>,
    index: BTreeSet<String>,
    pack_temps: usize,
    index_temps: usize,
}

fn names_in(dir: &Path, names: &mut BTreeSet<String>, temps: &mut usize) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let Ok(e) = e else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            names_in(&e.path(), names, temps);
        } else if name.starts_with(".tmp-") {
            *temps += 1;
        } else {
            names.insert(name);
        }
    }
}

/// The index files only: cheap enough to poll while a prune runs.
fn index_files(repo: &Path) -> Files {
    let mut f = Files::default();
    names_in(&repo.join("index"), &mut f.index, &mut f.index_temps);
    f
}

fn files(repo: &Path) -> Files {
    let mut f = index_files(repo);
    names_in(&repo.join("data"), &mut f.packs, &mut f.pack_temps);
    f
}

/// Where a prune that started from `start` stands at `now`, given what a
/// whole prune from `start` left (`done`).
fn phase(start: &Files, done: &Files, now: &Files) -> Phase {
    let gone = |a: &Files, b: &Files| {
        a.packs.difference(&b.packs).count() + a.index.difference(&b.index).count()
    };
    let (to_go, gone_now) = (gone(start, done), gone(start, now));
    if gone_now > 0 {
        return if gone_now < to_go {
            Phase::Deleting
        } else {
            Phase::Cleanup
        };
    }
    if now.index_temps > 0 || now.index.difference(&start.index).next().is_some() {
        Phase::Index
    } else if now.pack_temps > 0 || now.packs.difference(&start.packs).next().is_some() {
        Phase::Packs
    } else {
        Phase::Reading
    }
}

/// The test's repository, its pristine copy, and the snapshots it keeps
/// with a copy of the source as each saw it.
struct Setup {
    t: TempRepo,
    src: PathBuf,
    pristine: PathBuf,
    kept: Vec<(String, PathBuf)>,
}

impl Setup {
    fn new() -> Self {
        let t = TempRepo::new();
        let src = t.join("src");
        fs::create_dir_all(&src).unwrap();
        tree::file(&src.join("base.bin"), &tree::noise(6 << 20, 99));
        // Many small files: many index records, so writing the index takes a
        // while even where fsync costs nothing (tmpfs).
        let small = src.join("small");
        fs::create_dir_all(&small).unwrap();
        for i in 0..1000u32 {
            fs::write(small.join(format!("f{i}")), format!("small file {i}\n")).unwrap();
        }
        let mut kept = Vec::new();
        for day in 0..8u64 {
            mutate(&src, day);
            // Each day rewrites its own small files: their blobs sit in the
            // bundled frames of packs that prune repacks (a share of under a
            // byte each: see prune_bundles).
            for i in day * 125..day * 125 + 125 {
                fs::write(
                    small.join(format!("f{i}")),
                    format!("small file {i} day {day}\n"),
                )
                .unwrap();
            }
            let id = json(&t.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]))
                ["id"]
                .as_str()
                .unwrap()
                .to_string();
            if day >= 6 {
                let copy = t.join(format!("copy-{day}"));
                crate::common::cp_a(&src, &copy);
                kept.push((id, copy));
            }
        }
        t.ok(["forget", "--keep-last", "2"]);
        let pristine = t.join("pristine");
        crate::common::cp_a(&t.repo(), &pristine);
        // Packs no index names go only once older than the stale age (they
        // might be a running backup's; at least 3 s). A rerun right after a
        // kill must find the old packs old, however fast this machine made
        // them: an hour, as on a repository pruned a night after its backup.
        backdate(&pristine, 3600);
        Setup {
            t,
            src,
            pristine,
            kept,
        }
    }

    /// Put the repository (and the cache) back as prune found it.
    fn reset(&self) {
        fs::remove_dir_all(self.t.repo()).unwrap();
        let _ = fs::remove_dir_all(self.t.join("cache"));
        crate::common::cp_a(&self.pristine, &self.t.repo());
    }

    fn prune(&self) -> Child {
        self.t
            .cmd(["prune", "--max-unused", "0%"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The repository checks clean (data read) and every kept snapshot
    /// restores to exactly what it saw.
    fn assert_whole(&self, what: &str) {
        let check = self.t.rewind(["check", "--read-data"]);
        assert!(
            check.status.success(),
            "{what}: check failed:\n{}",
            stdout(&check)
        );
        for (id, copy) in &self.kept {
            let out = self.t.join("restored");
            let _ = fs::remove_dir_all(&out);
            self.t
                .restore(&format!("{id}:{}", self.src.display()), &out);
            let opts = compare::Options {
                atime: false,
                ..Default::default()
            };
            compare::assert_same(copy, &out, opts);
            fs::remove_dir_all(&out).unwrap();
        }
    }
}

/// Set the times of every file under `dir` to `secs` seconds ago.
fn backdate(dir: &Path, secs: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            backdate(&e.path(), secs);
        } else {
            tree::set_times(&e.path(), (now - secs, 0), (now - secs, 0));
        }
    }
}

/// Kill `child` unless it has exited; whether it had.
fn kill(child: &mut Child) -> bool {
    if child.try_wait().unwrap().is_some() {
        return true;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    false
}

#[test]
fn prune_killed_in_every_phase_never_loses_a_kept_byte() {
    let s = Setup::new();
    let repo = s.t.repo();
    let start = files(&repo);

    // A whole prune first, to time one and see what it leaves.
    let started = Instant::now();
    assert!(s.prune().wait().unwrap().success());
    let span = started.elapsed().as_micros() as u64 * 11 / 10 + 1;
    let done = files(&repo);
    let to_go = start.packs.difference(&done.packs).count();
    assert!(
        to_go >= 2 && start.index.difference(&done.index).count() >= 2,
        "too little to delete: {start:?} -> {done:?}"
    );
    s.assert_whole("after a whole prune");

    let mut landed: BTreeMap<Phase, u32> = BTreeMap::new();
    let ctx = (&s, &start, &done);
    // Kills at random moments of a prune's measured length.
    let mut rng = Rng::from_env_or_clock();
    for _ in 0..6 {
        let at = Duration::from_micros(rng.below(span));
        let p = round(ctx, &format!("after {at:?} of {span} µs"), &mut |_| {
            std::thread::sleep(at);
            false
        });
        *landed.entry(p).or_default() += 1;
    }
    // Then kills the moment each phase shows in the repository, for the
    // phases no random kill found (a short phase on a fast disk).
    for want in [Phase::Packs, Phase::Index, Phase::Deleting] {
        for _ in 0..10 {
            if landed.contains_key(&want) {
                break;
            }
            let poll = |repo: &Path| match want {
                Phase::Packs => files(repo),
                _ => index_files(repo),
            };
            let (start_seen, done_seen) = (poll_view(&start, want), poll_view(&done, want));
            let deadline = Instant::now() + Duration::from_secs(60);
            let p = round(ctx, &format!("on entering {want:?}"), &mut |child| loop {
                if child.try_wait().unwrap().is_some() {
                    return true;
                }
                if phase(&start_seen, &done_seen, &poll(&repo)) >= want {
                    return false;
                }
                assert!(Instant::now() < deadline, "prune ran for a minute");
            });
            *landed.entry(p).or_default() += 1;
        }
    }
    eprintln!("kills landed: {landed:?} (a prune takes {span} µs)");
    for want in [Phase::Packs, Phase::Index, Phase::Deleting] {
        assert!(
            landed.contains_key(&want),
            "no kill landed in phase {want:?}: {landed:?} (a prune takes {span} µs)"
        );
    }
}

/// One prune from the pristine repository, killed when `kill_at` returns
/// (true: it found the prune exited); then the repository is checked and the
/// kept snapshots restored, and a prune run again must finish the job and
/// leave a repository that checks clean.
fn round(
    (s, start, done): (&Setup, &Files, &Files),
    how: &str,
    kill_at: &mut dyn FnMut(&mut Child) -> bool,
) -> Phase {
    let repo = s.t.repo();
    s.reset();
    let mut child = s.prune();
    let exited = kill_at(&mut child) || kill(&mut child);
    let left = files(&repo);
    let p = match exited {
        true => Phase::Finished,
        false => phase(start, done, &left),
    };
    let what = format!("killed {how}, in phase {p:?}");
    s.t.ok(["unlock"]);
    s.assert_whole(&what);
    if p > Phase::Reading && p < Phase::Finished {
        // Run again, prune finishes what the killed one began. Packs that
        // no index names any more go only once older than the stale age
        // (they might be a running backup's): the old ones are an hour old
        // (see `Setup::new`); the killed prune's own new packs are named by
        // its index or are temporary files.
        let out =
            s.t.cmd(["prune", "--max-unused", "0%"])
                .env("REWIND_LOCK_STALE_AFTER", "1")
                .output()
                .unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            crate::common::stderr(&out)
        );
        let after = files(&repo);
        let to_go = start.packs.difference(&done.packs).count();
        assert!(
            start.packs.difference(&after.packs).count() >= to_go,
            "{what}: the rerun left packs that go: {after:?}"
        );
        // The killed prune's temporary files stay until they are stale (a
        // writer may still be running); the second prune leaves none.
        assert!(
            after.pack_temps + after.index_temps <= left.pack_temps + left.index_temps,
            "{what}: temporary files added: {after:?}"
        );
        let check = s.t.rewind(["check", "--read-data"]);
        assert!(
            check.status.success(),
            "{what}, then pruned again: check failed:\n{}",
            stdout(&check)
        );
    }
    p
}

/// What polling for `want` sees of `f`: only the index files unless packs
/// are polled.
fn poll_view(f: &Files, want: Phase) -> Files {
    Files {
        packs: match want {
            Phase::Packs => f.packs.clone(),
            _ => BTreeSet::new(),
        },
        index: f.index.clone(),
        pack_temps: 0,
        index_temps: 0,
    }
}
