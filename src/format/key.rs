//! Key files: `keys/<id>`, the master secret wrapped with a password.
//!
//! | part     | content                                  |
//! |----------|------------------------------------------|
//! | envelope | `RWND` `K` version 1                     |
//! | body     | UTF-8 JSON of [`KeyFile`], in plaintext  |
//!
//! A key file's name is 32 random hex digits; it is at most [`MAX_LEN`]
//! bytes. Its fields:
//!
//! | field        | meaning                                                          |
//! |--------------|------------------------------------------------------------------|
//! | `created`    | RFC 3339 time the key was made                                    |
//! | `host`, `username` | where and by whom (informational)                          |
//! | `repository` | the repository id the key opens                                   |
//! | `kdf`        | `argon2id`, version 19, `memory_kib`, `iterations`, `parallelism`, `salt` (hex, 16 bytes) |
//! | `wrapped`    | hex: 24-byte nonce, XChaCha20-Poly1305 ciphertext of the 64-byte master secret, 16-byte tag |
//!
//! The wrapping key is Argon2id (RFC 9106) of the password with the key's salt
//! and parameters, 32 bytes; the associated data is `rewind key v1` followed
//! by the repository id's 32 bytes, so a key file copied from another
//! repository does not open this one. The defaults are RFC 9106's second
//! recommended option (m = 64 MiB, t = 3, p = 4). Readers refuse parameters
//! beyond [`MAX_MEMORY_KIB`], [`MAX_ITERATIONS`] and [`MAX_PARALLELISM`]: a
//! planted key file must not make `rewind` allocate more than 1 GiB or spin
//! for hours before it can say the password is wrong.
//!
//! Changing a password writes a new key file and removes the old one; no
//! other object changes.

use super::aead::XChaCha;
use super::codec::{envelope, open_envelope, FileKind, NONCE_LEN, TAG_LEN};
use super::config::Config;
use super::crypto::{wipe, MasterKey, MASTER_LEN};
use super::id::to_hex;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The longest key file a reader accepts.
pub const MAX_LEN: usize = 64 << 10;

/// The most memory a key file may ask of Argon2id (1 GiB: sixteen times the
/// default).
pub const MAX_MEMORY_KIB: u32 = 1 << 20;
/// The most passes a key file may ask of Argon2id.
pub const MAX_ITERATIONS: u32 = 64;
/// The most lanes a key file may ask of Argon2id.
pub const MAX_PARALLELISM: u32 = 64;

/// Argon2id's cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 << 10,
            iterations: 3,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    fn check(&self, object: &str) -> Result<()> {
        if !(8..=MAX_MEMORY_KIB).contains(&self.memory_kib)
            || !(1..=MAX_ITERATIONS).contains(&self.iterations)
            || !(1..=MAX_PARALLELISM).contains(&self.parallelism)
            || self.memory_kib < 8 * self.parallelism
        {
            return Err(Error::corrupt(
                object,
                "key derivation parameters out of range",
            ));
        }
        Ok(())
    }

    /// Parse `m=64M,t=3,p=4` (any subset; sizes in K, M or G).
    pub fn parse(s: &str) -> Result<Self> {
        let mut p = KdfParams::default();
        for part in s.split(',').filter(|x| !x.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::InvalidInput(format!("KDF parameter {part:?}: expected k=v"))
            })?;
            let num = |v: &str| -> Result<u32> {
                let (digits, unit) =
                    v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
                let n: u64 = digits.parse().map_err(|_| {
                    Error::InvalidInput(format!("KDF parameter {part:?}: not a number"))
                })?;
                let mult = match unit {
                    "" | "K" | "k" => 1,
                    "M" | "m" => 1 << 10,
                    "G" | "g" => 1 << 20,
                    _ => {
                        return Err(Error::InvalidInput(format!(
                            "KDF parameter {part:?}: unknown unit"
                        )))
                    }
                };
                n.checked_mul(mult)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::InvalidInput(format!("KDF parameter {part:?}: too large"))
                    })
            };
            match k {
                "m" => p.memory_kib = num(v)?,
                "t" => p.iterations = num(v)?,
                "p" => p.parallelism = num(v)?,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "KDF parameter {part:?}: unknown (use m, t, p)"
                    )))
                }
            }
        }
        p.check("KDF parameters")
            .map_err(|_| Error::InvalidInput(format!("KDF parameters {s:?} out of range")))?;
        Ok(p)
    }
}

/// The key derivation as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kdf {
    pub algorithm: String,
    pub version: u32,
    #[serde(flatten)]
    pub params: KdfParams,
    pub salt: String,
}

/// A key file's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub created: String,
    pub host: String,
    pub username: String,
    pub repository: String,
    pub kdf: Kdf,
    pub wrapped: String,
}

const AD_PREFIX: &[u8] = b"rewind key v1";

fn wrap_ad(repository: &str) -> Result<Vec<u8>> {
    let mut ad = AD_PREFIX.to_vec();
    ad.extend_from_slice(&Config::id_bytes(repository)?);
    Ok(ad)
}

fn derive(password: &[u8], salt: &[u8], p: KdfParams, object: &str) -> Result<[u8; 32]> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::corrupt(object, format!("key derivation parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    // The lanes run on as many threads as there are cores (4 lanes on 2
    // cores: half the wait), in a pool of threads that are joined before
    // this returns: `mount --daemon` forks after opening and must then be
    // the only thread, and `mount` blocks its shutdown signals for a
    // watcher thread that must be the only one to take them. (rayon's
    // `build_scoped` only waits for the threads' work, not for them to end.)
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, p.parallelism.max(1) as usize);
    let started = std::sync::Mutex::new(Vec::new());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .spawn_handler(|thread| {
            let h = std::thread::Builder::new()
                .name("rewind-kdf".into())
                .spawn(move || thread.run())?;
            started.lock().unwrap_or_else(|e| e.into_inner()).push(h);
            Ok(())
        })
        .build();
    let derived = match &pool {
        Ok(pool) => Ok(pool.install(|| argon.hash_password_into(password, salt, &mut out))),
        Err(e) => Err(e.to_string()),
    };
    drop(pool);
    for h in started.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let _ = h.join();
    }
    derived
        .map_err(|e| {
            let e = std::io::Error::other(format!("starting key derivation threads: {e}"));
            Error::io(object, e)
        })?
        .map_err(|e| Error::corrupt(object, format!("key derivation: {e}")))?;
    Ok(out)
}

impl KeyFile {
    /// Wrap `master` for repository `repository` with `password`.
    pub fn wrap(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        repository: &str,
        created: String,
        host: String,
        username: String,
    ) -> Result<Self> {
        params.check("new key")?;
        let mut salt = [0u8; 16];
        super::config::getrandom(&mut salt)?;
        let mut kek = derive(password, &salt, params, "new key")?;
        let mut nonce = [0u8; NONCE_LEN];
        super::config::getrandom(&mut nonce)?;
        let aead = XChaCha::new(&kek);
        wipe(&mut kek);
        let mut body = master.0.to_vec();
        let tag = aead.seal(&nonce, &wrap_ad(repository)?, &mut body);
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&body);
        wrapped.extend_from_slice(&tag);
        Ok(KeyFile {
            created,
            host,
            username,
            repository: repository.to_string(),
            kdf: Kdf {
                algorithm: "argon2id".into(),
                version: 19,
                params,
                salt: to_hex(&salt),
            },
            wrapped: to_hex(&wrapped),
        })
    }

    /// The master secret, when `password` is this key's. `Ok(None)` for a
    /// wrong password (or a key file that was changed: the two cannot be
    /// told apart); `Err` when the file breaks the format.
    pub fn unwrap(&self, password: &[u8], object: &str) -> Result<Option<MasterKey>> {
        if self.kdf.algorithm != "argon2id" || self.kdf.version != 19 {
            return Err(Error::UnsupportedVersion(format!(
                "{object}: unknown key derivation {} version {}",
                self.kdf.algorithm, self.kdf.version
            )));
        }
        self.kdf.params.check(object)?;
        let salt = from_hex(&self.kdf.salt).filter(|s| (8..=64).contains(&s.len()));
        let salt = salt.ok_or_else(|| Error::corrupt(object, "salt is malformed"))?;
        let wrapped = from_hex(&self.wrapped)
            .filter(|w| w.len() == NONCE_LEN + MASTER_LEN + TAG_LEN)
            .ok_or_else(|| Error::corrupt(object, "wrapped key is malformed"))?;
        let ad = wrap_ad(&self.repository)
            .map_err(|_| Error::corrupt(object, "repository id is malformed"))?;
        let mut kek = derive(password, &salt, self.kdf.params, object)?;
        let aead = XChaCha::new(&kek);
        wipe(&mut kek);
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(MASTER_LEN);
        let mut master = [0u8; MASTER_LEN];
        master.copy_from_slice(body);
        let ok = aead
            .open(
                nonce.try_into().expect("24 bytes"),
                &ad,
                &mut master,
                tag.try_into().expect("16 bytes"),
            )
            .is_ok();
        let key = MasterKey(master);
        Ok(ok.then_some(key))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = envelope(FileKind::Key, 1).to_vec();
        out.extend_from_slice(&serde_json::to_vec_pretty(self).expect("key serializes"));
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        if bytes.len() > MAX_LEN {
            return Err(Error::corrupt(object, "longer than any key file"));
        }
        let (version, body) = open_envelope(bytes, FileKind::Key, object)?;
        if version != 1 {
            return Err(Error::UnsupportedVersion(format!(
                "{object}: unknown key file version {version}"
            )));
        }
        serde_json::from_slice(body).map_err(|e| Error::corrupt(object, e))
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn wraps_and_unwraps_only_with_the_password_and_repository() {
        let master = MasterKey([5; MASTER_LEN]);
        let repo = "ab".repeat(32);
        let k = KeyFile::wrap(
            &master,
            b"pw",
            weak(),
            &repo,
            "t".into(),
            "h".into(),
            "u".into(),
        )
        .unwrap();
        let back = KeyFile::decode(&k.encode(), "key x").unwrap();
        assert_eq!(back, k);
        assert_eq!(back.unwrap(b"pw", "key x").unwrap().unwrap().0, master.0);
        assert!(back.unwrap(b"wrong", "key x").unwrap().is_none());
        let moved = KeyFile {
            repository: "cd".repeat(32),
            ..back.clone()
        };
        assert!(moved.unwrap(b"pw", "key x").unwrap().is_none());
    }

    #[test]
    fn hostile_parameters_are_refused_before_any_work() {
        let master = MasterKey([5; MASTER_LEN]);
        let k = KeyFile::wrap(
            &master,
            b"pw",
            weak(),
            &"ab".repeat(32),
            "t".into(),
            "h".into(),
            "u".into(),
        )
        .unwrap();
        for (m, t, p) in [(u32::MAX, 1, 1), (64, u32::MAX, 1), (64, 1, 0), (0, 1, 1)] {
            let mut bad = k.clone();
            bad.kdf.params = KdfParams {
                memory_kib: m,
                iterations: t,
                parallelism: p,
            };
            let e = bad.unwrap(b"pw", "key x").err().expect("refused");
            assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        }
        let mut bad = k;
        bad.wrapped.truncate(10);
        assert!(bad.unwrap(b"pw", "key x").is_err());
    }

    #[test]
    fn kdf_parameters_parse() {
        assert_eq!(
            KdfParams::parse("m=8M,t=1,p=2").unwrap(),
            KdfParams {
                memory_kib: 8 << 10,
                iterations: 1,
                parallelism: 2
            }
        );
        for bad in ["m=99999999G", "x=1", "t=0", "m", "m=12Q"] {
            assert!(KdfParams::parse(bad).is_err(), "{bad}");
        }
    }

    /// When derive() returns, its threads are gone, not only idle or
    /// exiting: `mount --daemon` forks right after. Run in a child process
    /// of its own (this test binary, this test alone), where no other test
    /// starts threads.
    #[test]
    fn key_derivation_leaves_no_thread_behind() {
        fn tasks() -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .map(|t| {
                    std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap_or_default()
                })
                .collect()
        }
        const CHILD: &str = "REWIND_KDF_THREAD_TEST_CHILD";
        let name = "format::key::tests::key_derivation_leaves_no_thread_behind";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([name, "--exact", "--test-threads=1", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("1 passed"), "the child ran no test: {text}");
            return;
        }
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 4,
        };
        let base = tasks().len();
        for round in 0..200 {
            derive(b"pw", b"saltsalt", p, "test").unwrap();
            let now = tasks();
            assert_eq!(
                now.len(),
                base,
                "round {round}: threads left behind: {now:?}"
            );
        }
    }
}
