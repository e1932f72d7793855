//! Crafted repositories under tests/data/crafted: each holds one snapshot
//! of a small tree (`/crafted` with `good.txt`, `good/kept.txt` and `bad/`)
//! and one object made hostile: what bit rot or a compromised host with
//! write access could leave. `check` on a copy of each exits 1 naming the
//! object; `ls` and `restore` end with an error, never a crash; the mount
//! answers EIO for what needs the damaged object, and serves the rest.
//!
//! They were made by `make_crafted` below (an ignored test: see
//! tests/data/README.md); each one's `what` file says what was done to it.

use crate::common::{stderr, stdout, TempRepo};
use crate::mount::guard::MountGuard;
use rewind::backend::local::LocalBackend;
use rewind::format::codec::{Codec, FileKind, ENVELOPE_LEN};
use rewind::format::config::Config;
use rewind::format::id::{file_hash, to_hex, Hasher, PackId};
use rewind::format::index;
use rewind::format::key::KdfParams;
use rewind::format::pack::{self, BlobKind};
use rewind::format::snapshot::{Snapshot, Summary};
use rewind::format::tree::{Entry, Extent, Kind, Time, Tree};
use rewind::repo::writer::RepoWriter;
use rewind::repo::{InitOptions, Repository};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

/// The crafted repositories, with the object `check` must name and whether
/// the damage is in a tree below `bad/` (then the rest of the snapshot
/// lists and restores).
const CASES: [(&str, &str, bool); 6] = [
    ("extents-wrap", "tree ", true),
    ("billion-entries", "tree ", true),
    ("huge-frame", "pack ", false),
    ("snapshot-time-edited", "snapshot ", false),
    ("index-count-overflow", "index ", false),
    ("sealed-extents-wrap", "tree ", true),
];

fn crafted() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/crafted")
}

/// A writable copy of crafted repository `name`, and its password (the
/// file beside a format-2 one).
fn copy_of(name: &str) -> (TempRepo, Option<String>) {
    let t = TempRepo::uninit();
    crate::common::cp_a(&crafted().join(name).join("repo"), &t.repo());
    let password = fs::read_to_string(crafted().join(name).join("password")).ok();
    (t, password.map(|p| p.trim_end().to_string()))
}

fn run(t: &TempRepo, password: &Option<String>, args: &[&OsStr]) -> Output {
    let mut c = t.cmd(args);
    if let Some(p) = password {
        c.env("REWIND_PASSWORD", p);
    }
    c.output().unwrap()
}

/// Exited (not killed by a signal: a panic in a release build aborts) with
/// one of `codes`.
fn assert_exit(out: &Output, codes: &[i32], what: &str) {
    assert!(
        out.status.signal().is_none(),
        "{what}: killed by signal {:?}\n{}",
        out.status.signal(),
        stderr(out)
    );
    let code = out.status.code().unwrap();
    assert!(
        codes.contains(&code),
        "{what}: exit {code}, wanted one of {codes:?}\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

#[test]
fn check_names_the_damaged_object() {
    for (name, object, _) in CASES {
        let (t, pw) = copy_of(name);
        // A pack's header is read by --read-data (which reads packs whole),
        // not by the check of the index and the trees.
        let modes: &[&[&str]] = match name {
            "huge-frame" => &[&["check", "--read-data"]],
            _ => &[&["check"], &["check", "--read-data"]],
        };
        for args in modes {
            let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
            let out = run(&t, &pw, &args);
            let what = format!("{name}: {args:?}");
            assert_exit(&out, &[1], &what);
            let err = stderr(&out) + &stdout(&out);
            assert!(
                err.contains(object),
                "{what} does not name the {object}object:\n{err}"
            );
            assert!(!err.contains("panicked"), "{what}: {err}");
        }
    }
}

#[test]
fn ls_and_restore_fail_cleanly() {
    for (name, _, below_bad) in CASES {
        let (t, pw) = copy_of(name);
        let snaps = run(&t, &pw, &["snapshots".as_ref()]);
        assert_exit(&snaps, &[0, 1], &format!("{name}: snapshots"));
        let ls = run(&t, &pw, &["ls".as_ref(), "latest".as_ref()]);
        let target = t.join("out");
        let restore = run(
            &t,
            &pw,
            &[
                "restore".as_ref(),
                "latest".as_ref(),
                "--target".as_ref(),
                target.as_os_str(),
            ],
        );
        for (what, out) in [("ls", &ls), ("restore", &restore)] {
            assert!(
                !stderr(out).contains("panicked"),
                "{name}: {what}: {}",
                stderr(out)
            );
        }
        match name {
            // The damage is in a tree below bad/: the listing stops there
            // and the restore gives back everything else, exit 3 (partial).
            _ if below_bad => {
                assert_exit(&ls, &[1], &format!("{name}: ls"));
                assert_exit(&restore, &[3], &format!("{name}: restore"));
                let at = target.join("crafted");
                assert_eq!(fs::read(at.join("good.txt")).unwrap(), b"good\n", "{name}");
                assert_eq!(
                    fs::read(at.join("good/kept.txt")).unwrap(),
                    b"kept\n",
                    "{name}"
                );
                assert!(!at.join("bad/wrap").exists(), "{name}");
                assert!(
                    stderr(&restore).contains("tree "),
                    "{name}: {}",
                    stderr(&restore)
                );
            }
            // The header of a pack the index still describes: blobs read
            // through the index, so ls and restore are whole.
            "huge-frame" => {
                assert_exit(&ls, &[0], &format!("{name}: ls"));
                assert_exit(&restore, &[0], &format!("{name}: restore"));
                let at = target.join("crafted");
                assert_eq!(
                    fs::read(at.join("bad/data.bin")).unwrap(),
                    b"data in a pack\n"
                );
            }
            // No snapshot (1), or no index to find its root tree (3: the
            // root is named as not restored): nothing listed or restored.
            _ => {
                assert_exit(&ls, &[1], &format!("{name}: ls"));
                assert_exit(&restore, &[1, 3], &format!("{name}: restore"));
                assert!(!target.join("crafted/good.txt").exists(), "{name}");
            }
        }
    }
}

/// The mount of a snapshot whose `bad/` tree wraps its extents: everything
/// else reads, `bad/` is EIO (the mount used to abort on this tree).
#[test]
fn mount_answers_eio_for_the_damaged_tree_only() {
    let (t, _) = copy_of("extents-wrap");
    let m = MountGuard::start(&t, "mnt", &[]);
    let ids: Vec<_> = fs::read_dir(m.join("ids"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let root = ids[0].join("crafted");
    assert_eq!(fs::read(root.join("good.txt")).unwrap(), b"good\n");
    assert_eq!(fs::read(root.join("good/kept.txt")).unwrap(), b"kept\n");
    let err = fs::read_dir(root.join("bad"))
        .and_then(|d| d.collect::<Result<Vec<_>, _>>())
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // Still serving after the error.
    assert_eq!(fs::read(root.join("good.txt")).unwrap(), b"good\n");
    drop(m);
}

// --- making them -------------------------------------------------------------

fn entry(name: &str, kind: Kind) -> Entry {
    let mut e = Entry::new(name.as_bytes().to_vec(), kind);
    (e.mode, e.nlink) = (if kind == Kind::Dir { 0o755 } else { 0o644 }, 1);
    (e.user, e.group) = ("root".into(), "root".into());
    e.mtime = Time {
        sec: 1_700_000_000,
        nsec: 0,
    };
    e.ctime = e.mtime;
    e.atime = e.mtime;
    e
}

fn file(w: &RepoWriter, name: &str, content: &[u8]) -> Entry {
    let mut e = entry(name, Kind::File);
    e.extents = vec![Extent::Data {
        id: w.add_data(content).unwrap(),
        len: content.len() as u32,
    }];
    e.size = content.len() as u64;
    e
}

fn dir(w: &RepoWriter, name: &str, tree: &[u8]) -> Entry {
    let mut e = entry(name, Kind::Dir);
    e.subtree = Some(w.add_tree(tree).unwrap());
    e
}

/// The tree below `bad/` of each case (a valid one where the damage is
/// elsewhere).
fn bad_tree(w: &RepoWriter, case: &str) -> Vec<u8> {
    match case {
        // 2^63 + 2^63 + 1 wraps to 1: a sum that wrapped agreed with the size.
        "extents-wrap" | "sealed-extents-wrap" => {
            let mut e = entry("wrap", Kind::File);
            e.extents = vec![
                Extent::Hole { len: 1 << 63 },
                Extent::Hole { len: 1 << 63 },
                Extent::Data {
                    id: w.add_data(b"x").unwrap(),
                    len: 1,
                },
            ];
            e.size = 1;
            Tree::new(vec![e]).encode()
        }
        // Version 1, then a count of 10^9 entries as a bincode varint (252,
        // u32 LE), and nothing else.
        "billion-entries" => [&[1u8, 252][..], &1_000_000_000u32.to_le_bytes()].concat(),
        _ => Tree::new(vec![file(w, "data.bin", b"data in a pack\n")]).encode(),
    }
}

fn write_repo(dir_path: &Path, case: &str) {
    let backend = Arc::new(LocalBackend::new(dir_path));
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let opts = match case.starts_with("sealed") {
        true => InitOptions::encrypted(b"crafted", kdf),
        false => InitOptions::plain(),
    };
    let repo = Arc::new(Repository::init(backend, &opts).unwrap());
    let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
    let good = Tree::new(vec![file(&w, "kept.txt", b"kept\n")]).encode();
    let bad = bad_tree(&w, case);
    let top = Tree::new(vec![
        dir(&w, "bad", &bad),
        dir(&w, "good", &good),
        file(&w, "good.txt", b"good\n"),
    ])
    .encode();
    let root = Tree::new(vec![dir(&w, "crafted", &top)]).encode();
    let root = w.add_tree(&root).unwrap();
    w.commit(&Snapshot {
        time: Time {
            sec: 1_700_000_000,
            nsec: 0,
        },
        host: "crafted".into(),
        username: "root".into(),
        paths: vec!["/crafted".into()],
        tags: vec![],
        tree: root,
        parent: None,
        program: format!("rewind crafted {case}"),
        summary: Summary::default(),
        original: None,
    })
    .unwrap();
}

/// The only file under `repo/<dir>` (at any depth).
fn only(repo: &Path, dir: &str) -> PathBuf {
    let mut found = Vec::new();
    let mut stack = vec![repo.join(dir)];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            match p.is_dir() {
                true => stack.push(p),
                false => found.push(p),
            }
        }
    }
    assert_eq!(found.len(), 1, "{dir}: {found:?}");
    found.remove(0)
}

/// Rename a format-1 object to the hash of its (new) bytes.
fn rename_to_hash(path: &Path, bytes: &[u8]) -> PathBuf {
    let name = to_hex(&file_hash(bytes));
    let to = match path.parent().unwrap().file_name().unwrap().len() {
        // data/<2 hex>/<id>
        2 => path
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join(&name[..2])
            .join(&name),
        _ => path.parent().unwrap().join(&name),
    };
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::remove_file(path).unwrap();
    fs::write(&to, bytes).unwrap();
    if let Ok(mut d) = fs::read_dir(path.parent().unwrap()) {
        if d.next().is_none() {
            fs::remove_dir(path.parent().unwrap()).unwrap();
        }
    }
    to
}

/// Make the damage of cases whose objects are edited after writing.
fn damage(repo: &Path, case: &str) -> String {
    let codec = Codec::new(3);
    match case {
        "huge-frame" => {
            // The pack holding bad/data.bin's blob: its header's entry for
            // it claims a frame of 4 GiB; the pack is renamed to its new
            // hash and the index names the new pack (with the true entries).
            let index_path = only(repo, "index");
            let idx_bytes = fs::read(&index_path).unwrap();
            let idx = index::IndexFile::open(Arc::new(idx_bytes), "i", false).unwrap();
            let config = Config::decode_plain(&fs::read(repo.join("config")).unwrap()).unwrap();
            let target = Hasher::new(config.key().unwrap()).blob(b"data in a pack\n");
            let loc = idx.get(&target).unwrap().expect("the blob is indexed");
            let pack_dir = repo.join("data").join(&to_hex(&loc.pack.0)[..2]);
            let pack_path = pack_dir.join(to_hex(&loc.pack.0));
            let bytes = fs::read(&pack_path).unwrap();
            let mut entries = pack::read_header(&bytes, &codec, loc.pack.0, "p").unwrap();
            let (start, hlen) = pack::header_range(
                bytes.len() as u64,
                &bytes[bytes.len() - pack::TRAILER_LEN..],
                "p",
            )
            .unwrap();
            assert_eq!(start as usize + hlen + pack::TRAILER_LEN, bytes.len());
            let true_entries = entries.clone();
            for e in entries.iter_mut().filter(|e| e.id == target) {
                assert_eq!(e.kind, BlobKind::Data);
                e.frame.raw_len = u32::MAX;
            }
            let header = codec.encode(
                &pack::encode_header(&entries),
                &pack::frame_aad(loc.pack.0, start as u32),
            );
            let mut out = bytes[..start as usize].to_vec();
            out.extend_from_slice(&header);
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes[bytes.len() - 8..]);
            let new_pack = rename_to_hash(&pack_path, &out);
            let new_id = PackId::from_hex(new_pack.file_name().unwrap().to_str().unwrap()).unwrap();
            // Every pack with its true entries, the damaged one renamed.
            let mut packs: Vec<(PackId, Vec<pack::PackEntry>)> = Vec::new();
            for p in idx.packs() {
                let entries = match p == loc.pack {
                    true => true_entries.clone(),
                    false => {
                        let path = repo
                            .join("data")
                            .join(&to_hex(&p.0)[..2])
                            .join(to_hex(&p.0));
                        pack::read_header(&fs::read(path).unwrap(), &codec, p.0, "p").unwrap()
                    }
                };
                packs.push((if p == loc.pack { new_id } else { p }, entries));
            }
            packs.sort_by_key(|(p, _)| p.0);
            let new_index = index::encode(&packs);
            rename_to_hash(&index_path, &new_index);
            format!(
                "The header of pack {} claims a 4 GiB frame (raw_len 0xffffffff) for the data blob \
                 of /crafted/bad/data.bin; the pack was renamed to its new hash, and the index \
                 rewritten with the true entries under the new pack's name.",
                to_hex(&new_id.0)
            )
        }
        "snapshot-time-edited" => {
            // The manifest's time moved back a day, stored under the old name.
            let path = only(repo, "snapshots");
            let bytes = fs::read(&path).unwrap();
            let body = codec.open(&bytes, FileKind::Snapshot, "s").unwrap();
            let aad = rewind::format::codec::Aad::whole(FileKind::Snapshot, [0; 32]);
            let json = codec.decode(body, None, &aad, "s").unwrap();
            let text = String::from_utf8(json).unwrap();
            let edited = text.replace("1700000000", "1699913600");
            assert_ne!(text, edited);
            let mut out = codec.envelope(FileKind::Snapshot).to_vec();
            codec.encode_into(edited.as_bytes(), &aad, &mut out);
            fs::write(&path, out).unwrap();
            "The snapshot's time was moved back one day (1700000000 to 1699913600) and the \
             manifest stored again under its old name."
                .into()
        }
        "index-count-overflow" => {
            // Both counts at u32::MAX; the file renamed to its new hash so
            // that the counts, not the name, are what is wrong.
            let path = only(repo, "index");
            let mut bytes = fs::read(&path).unwrap();
            // After the envelope and the raw frame's scheme byte.
            let at = ENVELOPE_LEN + 1;
            bytes[at..at + 8].copy_from_slice(&[0xff; 8]);
            rename_to_hash(&path, &bytes);
            "The index file's pack and record counts were set to 0xffffffff and the file \
             renamed to its new hash."
                .into()
        }
        "extents-wrap" => "The tree of /crafted/bad holds a file whose extents (holes of 2^63 \
                           and 2^63 bytes, 1 byte of data) wrap past 2^64 to its size, 1."
            .into(),
        "sealed-extents-wrap" => "extents-wrap in a format-2 (encrypted) repository, password \
                                  in `password`."
            .into(),
        "billion-entries" => "The tree of /crafted/bad is 6 bytes: version 1 and a count of \
                              1,000,000,000 entries."
            .into(),
        _ => unreachable!("{case}"),
    }
}

/// Make tests/data/crafted again: `cargo test --release --test it
/// crafted::make_crafted -- --ignored`.
#[test]
#[ignore]
fn make_crafted() {
    for (case, _, _) in CASES {
        let at = crafted().join(case);
        let _ = fs::remove_dir_all(&at);
        fs::create_dir_all(&at).unwrap();
        let repo = at.join("repo");
        write_repo(&repo, case);
        let what = damage(&repo, case);
        fs::write(at.join("what"), what + "\n").unwrap();
        if case.starts_with("sealed") {
            fs::write(at.join("password"), "crafted\n").unwrap();
        }
    }
}
