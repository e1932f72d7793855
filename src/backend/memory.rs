//! An in-memory backend for tests.

use super::{check_name, not_found, Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

type Files = BTreeMap<(FileType, String), (Vec<u8>, SystemTime)>;

/// Objects in a map. Durable until dropped.
#[derive(Default, Clone)]
pub struct MemoryBackend {
    files: Arc<Mutex<Files>>,
    /// Seen as remote storage ([`MemoryBackend::remote`]).
    remote: bool,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// One that says it is not local, as a bucket does: a repository on it
    /// plans its reads, for a read-ahead over it to serve.
    pub fn remote() -> Self {
        MemoryBackend {
            remote: true,
            ..Self::default()
        }
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change an object's bytes, for damage tests.
    pub fn tamper(&self, t: FileType, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some((v, _)) = self.files().get_mut(&(t, name.to_string())) {
            f(v)
        }
    }

    /// Every object's type and name.
    pub fn names(&self) -> Vec<(FileType, String)> {
        self.files().keys().cloned().collect()
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".into()
    }

    fn create(&self) -> Result<()> {
        if self
            .files()
            .contains_key(&(FileType::Config, "config".into()))
        {
            return Err(Error::InvalidInput(
                "memory already holds a repository".into(),
            ));
        }
        Ok(())
    }

    fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        check_name(t, name)?;
        self.files()
            .insert((t, name.to_string()), (data.to_vec(), SystemTime::now()));
        Ok(())
    }

    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        check_name(t, name)?;
        self.files()
            .get(&(t, name.to_string()))
            .map(|(v, _)| v.clone())
            .ok_or_else(|| not_found(t, name))
    }

    fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        check_name(t, name)?;
        let files = self.files();
        let (f, _) = files
            .get(&(t, name.to_string()))
            .ok_or_else(|| not_found(t, name))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        start
            .checked_add(len)
            .and_then(|end| f.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::corrupt(t.describe(name), "object shorter than expected"))
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .files()
            .iter()
            .filter(|((ft, _), _)| *ft == t)
            .map(|((_, name), (v, time))| ObjectInfo {
                name: name.clone(),
                size: v.len() as u64,
                modified: Some(*time),
            })
            .collect())
    }

    fn stat(&self, t: FileType, name: &str) -> Result<ObjectInfo> {
        check_name(t, name)?;
        self.files()
            .get(&(t, name.to_string()))
            .map(|(v, time)| ObjectInfo {
                name: name.to_string(),
                size: v.len() as u64,
                modified: Some(*time),
            })
            .ok_or_else(|| not_found(t, name))
    }

    fn delete(&self, t: FileType, name: &str) -> Result<()> {
        check_name(t, name)?;
        self.files().remove(&(t, name.to_string()));
        Ok(())
    }

    fn is_local(&self) -> bool {
        !self.remote
    }
}
