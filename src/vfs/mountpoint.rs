//! The mount point: checks before mounting (with messages that say what to
//! do), and detaching afterwards, also of a dead mount whose process was
//! killed ("Transport endpoint is not connected").

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// The FUSE device.
pub const FUSE_DEVICE: &str = "/dev/fuse";

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// The mounted file system's device, `major:minor`.
    pub dev: String,
    pub point: PathBuf,
    pub fstype: String,
    /// What was mounted: `rewind:<repository>` for a rewind mount.
    pub source: String,
}

/// The start of the source of every rewind mount (`rewind:<repository>`).
pub const SOURCE_PREFIX: &str = "rewind:";

/// Check that `path` can be mounted on: an existing, empty directory that is
/// not already a mount point. Returns it as an absolute path, with symlinks
/// followed (as `mount` follows them).
pub fn check(path: &Path) -> Result<PathBuf> {
    let abs = followed(path)?;
    let shown = path.display();
    match std::fs::symlink_metadata(&abs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::InvalidInput(format!(
                "mount point {shown} is not a directory"
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::InvalidInput(format!(
                "mount point {shown} does not exist (create it with `mkdir -p {shown}`)"
            )))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(Error::InvalidInput(format!(
                "{shown} is a dead mount (its process ended); clear it with `rewind umount {shown}`"
            )))
        }
        Err(e) => return Err(Error::io(&abs, e)),
    }
    if find(&abs)?.is_some() {
        return Err(Error::InvalidInput(format!(
            "{shown} is already a mount point (unmount it with `rewind umount {shown}`)"
        )));
    }
    let mut entries = std::fs::read_dir(&abs).map_err(|e| Error::io(&abs, e))?;
    if entries.next().is_some() {
        return Err(Error::InvalidInput(format!(
            "mount point {shown} is not empty; mount on an empty directory so nothing is hidden"
        )));
    }
    Ok(abs)
}

/// Check that the FUSE device can be opened, with a message that says how
/// to get it.
pub fn check_fuse_device() -> Result<()> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(FUSE_DEVICE)
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let hint = match e.kind() {
                ErrorKind::NotFound => "load the fuse kernel module (`modprobe fuse`); in a container, pass the device in (`--device /dev/fuse`)",
                ErrorKind::PermissionDenied => "mount as root, or get access to the device",
                _ => "FUSE is not usable here",
            };
            Err(Error::InvalidInput(format!(
                "cannot open {FUSE_DEVICE}: {e}; {hint}"
            )))
        }
    }
}

/// Detach the FUSE mount at `path` (lazily: processes still inside keep
/// their open files until they close them). Works on dead mounts. Refuses
/// anything that is not a rewind mount.
pub fn detach(path: &Path) -> Result<()> {
    let abs = followed(path)?;
    detachable(path, find(&abs)?)?;
    match nix::mount::umount2(&abs, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        // Not root: the setuid helper may unmount what this user mounted.
        Err(nix::errno::Errno::EPERM) => fusermount_unmount(&abs),
        Err(e) => Err(Error::io(&abs, e.into())),
    }
}

/// Whether the mount found at `path` is one of rewind's, which alone
/// `rewind umount` takes down.
fn detachable(path: &Path, found: Option<MountInfo>) -> Result<()> {
    match found {
        Some(m) if !(m.fstype == "fuse" || m.fstype.starts_with("fuse.")) => {
            Err(Error::InvalidInput(format!(
                "{} is a {} mount, not a FUSE mount; not unmounting it",
                path.display(),
                m.fstype
            )))
        }
        Some(m) if !m.source.starts_with(SOURCE_PREFIX) => Err(Error::InvalidInput(format!(
            "{} is a FUSE mount of {:?}, not a rewind mount; not unmounting it (use `fusermount3 -u`)",
            path.display(),
            m.source
        ))),
        Some(_) => Ok(()),
        None => Err(Error::InvalidInput(format!(
            "{} is not mounted",
            path.display()
        ))),
    }
}

fn fusermount_unmount(path: &Path) -> Result<()> {
    let mut last = String::from("neither fusermount3 nor fusermount was found");
    for helper in ["fusermount3", "fusermount"] {
        let out = Command::new(helper)
            .args([
                OsStr::new("-u"),
                OsStr::new("-z"),
                OsStr::new("--"),
                path.as_os_str(),
            ])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => last = String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(_) => continue,
        }
    }
    Err(Error::InvalidInput(format!(
        "cannot unmount {}: {last}",
        path.display()
    )))
}

/// The mount at exactly `abs`, the last one if several are stacked.
pub fn find(abs: &Path) -> Result<Option<MountInfo>> {
    let text =
        std::fs::read("/proc/self/mountinfo").map_err(|e| Error::io("/proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.point == abs))
}

/// Parse `/proc/self/mountinfo`: `id parent major:minor root point options
/// [tags…] - fstype source super-options`, with `\040`-style escapes.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if fields.len() < 5 || sep + 1 >= fields.len() {
            continue;
        }
        out.push(MountInfo {
            dev: String::from_utf8_lossy(fields[2]).into_owned(),
            point: PathBuf::from(OsStr::from_bytes(&unescape(fields[4]))),
            fstype: String::from_utf8_lossy(fields[sep + 1]).into_owned(),
            source: fields
                .get(sep + 2)
                .map(|f| String::from_utf8_lossy(&unescape(f)).into_owned())
                .unwrap_or_default(),
        });
    }
    out
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// `path` made absolute without touching it (a dead mount cannot be
/// stat'ed): the parent is resolved, the last name kept.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(".", e))?
            .join(path)
    };
    let mut clean = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    match (clean.parent(), clean.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .unwrap_or_else(|_| parent.to_path_buf())
            .join(name)),
        _ => Ok(clean),
    }
}

/// [`absolute`], with symlinks in the last name followed (as `mount` and
/// `umount` follow them), without stat'ing what they lead to: that may be a
/// dead mount. A loop stops after 40 links, a dangling link at its target.
fn followed(path: &Path) -> Result<PathBuf> {
    let mut cur = absolute(path)?;
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&cur) else {
            break;
        };
        // `cur` is absolute, so it has a parent unless it is `/`.
        cur = absolute(&cur.parent().unwrap_or(Path::new("/")).join(target))?;
    }
    Ok(cur)
}

/// Raise the kernel's read-ahead for the mounted file system on device
/// `dev` (`major:minor`): sequential readers then get requests of up to a
/// MiB instead of 128 KiB. Needs root; best effort.
pub fn set_read_ahead(dev: &str, kib: u32) -> Result<()> {
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    std::fs::write(&path, kib.to_string()).map_err(|e| Error::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_with_escapes_and_optional_fields() {
        let text = b"22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n\
            90 30 0:52 / /tmp/with\\040space rw,nosuid,nodev,relatime shared:40 master:3 - fuse rewind:/r rw,user_id=0\n\
            bad line\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].point, Path::new("/tmp/with space"));
        assert_eq!(m[1].fstype, "fuse");
        assert_eq!(m[1].source, "rewind:/r");
        assert_eq!(m[1].dev, "0:52");
        assert_eq!(m[0].fstype, "proc");
    }

    #[test]
    fn only_rewind_mounts_are_unmounted() {
        let text = b"90 30 0:52 / /m/ours rw - fuse rewind:/r rw\n\
            91 30 0:53 / /m/sshfs rw - fuse.sshfs host:/home rw\n\
            92 30 0:54 / /m/tmp rw - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(text);
        let at = |i: usize| detachable(&m[i].point, Some(m[i].clone()));
        assert!(at(0).is_ok());
        let e = at(1).unwrap_err().to_string();
        assert!(
            e.contains("not a rewind mount") && e.contains("host:/home"),
            "{e}"
        );
        assert!(at(2).unwrap_err().to_string().contains("not a FUSE mount"));
        let e = detachable(Path::new("/m/x"), None).unwrap_err().to_string();
        assert!(e.contains("not mounted"), "{e}");
    }

    #[test]
    fn checks_say_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        let e = check(&missing).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let e = check(d.path()).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let e = check(&d.path().join("f")).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(
            check(&empty).unwrap(),
            std::fs::canonicalize(&empty).unwrap()
        );
        let e = detach(&empty).unwrap_err().to_string();
        assert!(e.contains("not mounted"), "{e}");
        // A symlink to an empty directory is followed, as `mount` does.
        let link = d.path().join("link");
        std::os::unix::fs::symlink("empty", &link).unwrap();
        assert_eq!(check(&link).unwrap(), check(&empty).unwrap());
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink("nope", &dangling).unwrap();
        let e = check(&dangling).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(detach(Path::new("/proc"))
            .unwrap_err()
            .to_string()
            .contains("not a FUSE mount"));
    }

    #[test]
    fn absolute_paths_are_cleaned_without_stat() {
        let cwd = std::fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
        assert_eq!(absolute(Path::new("x/../y")).unwrap(), cwd.join("y"));
        assert_eq!(absolute(Path::new("/a/./b")).unwrap(), Path::new("/a/b"));
    }
}
