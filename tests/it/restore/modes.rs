//! Every permission bit and owner comes back whatever the restoring
//! process's umask, for files in directories the restore makes and in a
//! target that was already there (each file is made private, then given its
//! owner and mode unless an fstat shows it has them).

use super::restore_args;
use crate::common::{stderr, TempRepo};
use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

const MODES: [u32; 15] = [
    0o000, 0o400, 0o444, 0o600, 0o640, 0o644, 0o664, 0o666, 0o755, 0o777, 0o070, 0o1755, 0o2755,
    0o4755, 0o6777,
];
const OWNERS: [(u32, u32); 3] = [(0, 0), (1234, 0), (0, 5678)];

/// `dir/m<mode>-<uid>-<gid>` for every mode and owner.
fn make_files(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for mode in MODES {
        for (uid, gid) in OWNERS {
            let p = dir.join(format!("m{mode:o}-{uid}-{gid}"));
            fs::write(&p, format!("{mode:o}")).unwrap();
            chown(&p, Some(uid), Some(gid)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

fn assert_files(dir: &Path, umask: u32) {
    for mode in MODES {
        for (uid, gid) in OWNERS {
            let p = dir.join(format!("m{mode:o}-{uid}-{gid}"));
            let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let what = format!("{} under umask {umask:o}", p.display());
            assert_eq!(m.mode() & 0o7777, mode, "{what}");
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{what}");
            assert_eq!(
                fs::read_to_string(&p).unwrap(),
                format!("{mode:o}"),
                "{what}"
            );
        }
    }
}

#[test]
fn permission_bits_and_owners_come_back_under_any_umask() {
    let t = TempRepo::new();
    let src = t.join("src");
    make_files(&src);
    make_files(&src.join("sub"));
    make_files(&src.join("sub/deeper"));
    t.backup(&src);
    let spec = format!("latest:{}", src.display());
    for umask in [0o000, 0o022, 0o077, 0o777] {
        // The target exists (files at its top are made private first); sub/
        // and sub/deeper are made by the restore.
        let target = t.join(format!("out-{umask:o}"));
        fs::create_dir(&target).unwrap();
        let mut cmd = t.cmd(restore_args(&spec, &target, &[]));
        // SAFETY: umask is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            })
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "umask {umask:o}: {}", stderr(&out));
        assert_files(&target, umask);
        assert_files(&target.join("sub"), umask);
        assert_files(&target.join("sub/deeper"), umask);
    }
}
