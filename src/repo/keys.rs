//! Opening a repository: its config, and for an encrypted one a key file
//! that the password unwraps. Also `init` and the key files of `rewind key`.

use super::{prefix_error, Repository};
use crate::backend::{Backend, FileType};
use crate::error::{Error, Result};
use crate::format::codec::Codec;
use crate::format::config::Config;
use crate::format::crypto::{wipe, MasterKey, Subkeys};
use crate::format::id::{to_hex, Hasher};
use crate::format::key::{KdfParams, KeyFile};
use std::path::PathBuf;
use std::sync::Arc;

/// A password or other secret; its bytes are wiped when dropped.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Asks for the password, at most once per open, and only for an encrypted
/// repository.
pub type PasswordSource<'a> = &'a (dyn Fn() -> Result<Secret> + Sync);

/// How to open a repository.
pub struct OpenOptions<'a> {
    pub password: PasswordSource<'a>,
    /// The cache root (`$XDG_CACHE_HOME/rewind`); `None`: no local cache,
    /// index files are held in memory.
    pub cache_root: Option<PathBuf>,
}

fn env_password() -> Result<Secret> {
    if let Some(p) = std::env::var_os("REWIND_PASSWORD") {
        return Ok(Secret::new(p.into_encoded_bytes()));
    }
    if let Some(f) = std::env::var_os("REWIND_PASSWORD_FILE") {
        let mut bytes = std::fs::read(&f).map_err(|e| Error::io(&f, e))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        return Ok(Secret::new(bytes));
    }
    Err(Error::InvalidInput(
        "the repository is encrypted: set REWIND_PASSWORD or REWIND_PASSWORD_FILE".into(),
    ))
}

impl OpenOptions<'static> {
    /// Password from `REWIND_PASSWORD` or `REWIND_PASSWORD_FILE`; no cache.
    pub fn from_env() -> Self {
        OpenOptions {
            password: &env_password,
            cache_root: None,
        }
    }
}

/// How to create a repository.
pub struct InitOptions<'a> {
    /// `None`: an unencrypted (format 1) repository.
    pub password: Option<&'a [u8]>,
    pub kdf: KdfParams,
    /// Take the chunker (parameters and, when both are encrypted, key) of
    /// another repository, so that copies between them deduplicate.
    pub chunker_from: Option<&'a Repository>,
    pub cache_root: Option<PathBuf>,
}

impl<'a> InitOptions<'a> {
    /// An unencrypted repository.
    pub fn plain() -> Self {
        InitOptions {
            password: None,
            kdf: KdfParams::default(),
            chunker_from: None,
            cache_root: None,
        }
    }

    /// An encrypted repository with `password`.
    pub fn encrypted(password: &'a [u8], kdf: KdfParams) -> Self {
        InitOptions {
            password: Some(password),
            ..Self::plain()
        }
        .with_kdf(kdf)
    }

    fn with_kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    /// An encrypted repository with a fixed password and a fast key
    /// derivation: for tests and benchmarks only.
    pub fn test() -> Self {
        Self::encrypted(
            b"test password",
            KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
        )
    }
}

/// What opening found: the codec and hasher, and the keys behind them.
pub(super) struct Opened {
    pub codec: Codec,
    pub hasher: Hasher,
    pub master: Option<MasterKey>,
    pub chunker_key: Option<[u8; 32]>,
    pub key_name: Option<String>,
}

impl Opened {
    fn plain(config: &Config) -> Result<Self> {
        Ok(Opened {
            codec: Codec::new(config.compression),
            hasher: Hasher::new(config.key()?),
            master: None,
            chunker_key: None,
            key_name: None,
        })
    }

    /// The keys of `master`, with the copied keys `config` names.
    fn sealed(config: &Config, master: MasterKey, key_name: String) -> Result<Self> {
        let keys = Subkeys::derive(&master);
        let copied = |hex: &str| -> Result<Option<[u8; 32]>> {
            if hex.is_empty() {
                return Ok(None);
            }
            crate::format::id::BlobId::from_hex(hex)
                .map(|id| Some(id.0))
                .map_err(|_| Error::corrupt("config", "a copied key is malformed"))
        };
        let blob_key = copied(&config.blob_key)?.unwrap_or(keys.blob_id);
        let chunker_key = match (config.unkeyed_chunker, copied(&config.chunker_key)?) {
            (true, _) => None,
            (false, k) => Some(k.unwrap_or(keys.chunker)),
        };
        Ok(Opened {
            codec: Codec::encrypted(config.compression, &keys),
            hasher: Hasher::keyed(blob_key, keys.object_id),
            chunker_key,
            master: Some(master),
            key_name: Some(key_name),
        })
    }
}

/// What `rewind key list` shows of a key file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub created: String,
    pub host: String,
    pub username: String,
    pub current: bool,
}

fn random_name() -> Result<String> {
    let mut rnd = [0u8; 16];
    crate::format::config::getrandom(&mut rnd)?;
    Ok(to_hex(&rnd))
}

fn key_file(master: &MasterKey, password: &[u8], kdf: KdfParams, repo_id: &str) -> Result<KeyFile> {
    KeyFile::wrap(
        master,
        password,
        kdf,
        repo_id,
        crate::clock::rfc3339_now(),
        crate::clock::hostname(),
        crate::meta::Names::default().user(unsafe { libc::getuid() }),
    )
}

impl Repository {
    /// Create a repository in an empty backend.
    pub fn init(backend: Arc<dyn Backend>, opts: &InitOptions) -> Result<Self> {
        let mut config = Config::generate(opts.password.is_some())?;
        if let Some(from) = opts.chunker_from {
            config.chunker = from.config.chunker;
            match (opts.password.is_some(), from.is_encrypted()) {
                (false, false) => config.hash_key = from.config.hash_key.clone(),
                (false, true) => {
                    return Err(Error::InvalidInput(
                        "an unencrypted repository cannot take the chunker of an encrypted one (its keys would be stored in plaintext)".into(),
                    ))
                }
                (true, _) => {
                    config.blob_key = to_hex(from.hasher.blob_key());
                    match &from.chunker_key {
                        Some(k) => config.chunker_key = to_hex(k),
                        None => config.unkeyed_chunker = true,
                    }
                    config.candidate_bits = from.config.candidate_bits;
                }
            }
        }
        backend.create()?;
        let opened = match opts.password {
            None => Opened::plain(&config)?,
            Some(password) => {
                let master = MasterKey::generate()?;
                let key = key_file(&master, password, opts.kdf, &config.id)?;
                let name = random_name()?;
                let opened = Opened::sealed(&config, master, name.clone())?;
                backend.put(FileType::Key, &name, &key.encode())?;
                opened
            }
        };
        backend.put(FileType::Config, "config", &config.encode(&opened.codec)?)?;
        Self::assemble(backend, config, opened, opts.cache_root.as_deref())
    }

    /// Open an existing repository (its index is not read yet: see
    /// [`Repository::reload_index`]).
    pub fn open(backend: Arc<dyn Backend>, opts: &OpenOptions) -> Result<Self> {
        let bytes = match backend.get(FileType::Config, "config") {
            Ok(b) => b,
            Err(Error::NotFound(_)) => {
                return Err(Error::InvalidInput(format!(
                    "{} is not a rewind repository (it has no config file; create one with `rewind init`)",
                    backend.location()
                )))
            }
            Err(e) => return Err(e),
        };
        let prefix = format!("{}/", backend.location());
        let version = Config::stored_version(&bytes).map_err(|e| prefix_error(e, &prefix))?;
        let (config, opened) = if version == 1 {
            let config = Config::decode_plain(&bytes).map_err(|e| prefix_error(e, &prefix))?;
            let opened = Opened::plain(&config)?;
            (config, opened)
        } else {
            Self::open_with_key(&*backend, &bytes, opts)?
        };
        Self::assemble(backend, config, opened, opts.cache_root.as_deref())
    }

    /// Find the key the password opens, and with it the config.
    fn open_with_key(
        backend: &dyn Backend,
        config: &[u8],
        opts: &OpenOptions,
    ) -> Result<(Config, Opened)> {
        let mut names: Vec<String> = backend
            .list(FileType::Key)?
            .into_iter()
            .map(|o| o.name)
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(Error::corrupt(
                format!("repository {}", backend.location()),
                "it is encrypted but has no key file",
            ));
        }
        let password = (opts.password)()?;
        let mut damaged = Vec::new();
        for name in names {
            let object = format!("key {name}");
            let key = match backend
                .get(FileType::Key, &name)
                .and_then(|b| KeyFile::decode(&b, &object))
            {
                Ok(k) => k,
                Err(e) => {
                    damaged.push(e);
                    continue;
                }
            };
            let master = match key.unwrap(password.bytes(), &object) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    damaged.push(e);
                    continue;
                }
            };
            let probe = Codec::encrypted(0, &Subkeys::derive(&master));
            let config = Config::decode_sealed(config, &probe, &key.repository).map_err(|e| {
                match e {
                    Error::Corrupt { reason, .. } => Error::corrupt(
                        format!("{}/config", backend.location()),
                        format!("{reason} (with {object}: a key of another repository, or a damaged config)"),
                    ),
                    e => e,
                }
            })?;
            let opened = Opened::sealed(&config, master, name.clone())?;
            return Ok((config, opened));
        }
        if let Some(e) = damaged.into_iter().next() {
            return Err(Error::InvalidInput(format!(
                "wrong password or no key (and {e})"
            )));
        }
        Err(Error::InvalidInput("wrong password or no key".into()))
    }

    /// Every key file, with the one that opened the repository marked.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for o in self.backend.list(FileType::Key)? {
            let object = format!("key {}", o.name);
            let k = KeyFile::decode(&self.backend.get(FileType::Key, &o.name)?, &object)?;
            out.push(KeyInfo {
                current: self.key_name.as_deref() == Some(&o.name),
                id: o.name,
                created: k.created,
                host: k.host,
                username: k.username,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The key file that opened the repository.
    pub fn current_key(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// Add a key file for `password`; returns its name.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<String> {
        let master = self.master.as_ref().ok_or_else(|| {
            Error::InvalidInput("the repository is not encrypted: it has no keys".into())
        })?;
        let key = key_file(master, password, kdf, &self.config.id)?;
        let name = random_name()?;
        self.backend.put(FileType::Key, &name, &key.encode())?;
        Ok(name)
    }

    /// Remove key file `name` after a password change replaced it with a new
    /// one: the one in use, but never the last.
    pub fn remove_old_key(&self, name: &str) -> Result<()> {
        if self.keys()?.len() < 2 {
            return Err(Error::InvalidInput(format!("key {name} is the last key")));
        }
        self.backend.delete(FileType::Key, name)
    }

    /// Remove key file `name`: never the last one, never the one in use.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        let keys = self.keys()?;
        if !keys.iter().any(|k| k.id == name) {
            return Err(Error::NotFound(format!("key {name}")));
        }
        if self.key_name.as_deref() == Some(name) {
            return Err(Error::InvalidInput(format!(
                "key {name} is the one in use; open the repository with another key to remove it"
            )));
        }
        if keys.len() < 2 {
            return Err(Error::InvalidInput(format!("key {name} is the last key")));
        }
        self.backend.delete(FileType::Key, name)
    }
}
