//! An in-memory backend for tests.

use super::{Backend, Upload};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Files in a map. Durable until dropped.
#[derive(Default)]
pub struct MemoryBackend {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

/// An upload into a [`MemoryBackend`].
struct MemoryUpload {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    buf: Vec<u8>,
}

impl std::io::Write for MemoryUpload {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Upload for MemoryUpload {
    fn commit(self: Box<Self>, name: &str) -> Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.insert(name.to_string(), self.buf);
        Ok(())
    }
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replace a file's bytes, for damage tests.
    pub fn tamper(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(v) = self.files().get_mut(name) {
            f(v)
        }
    }
}

impl Backend for MemoryBackend {
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.files().insert(name.to_string(), data.to_vec());
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.files()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    fn get_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let files = self.files();
        let f = files
            .get(name)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let start = offset as usize;
        f.get(start..start + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::corrupt(name, "file shorter than expected"))
    }

    fn size(&self, name: &str) -> Result<u64> {
        self.files()
            .get(name)
            .map(|f| f.len() as u64)
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = format!("{dir}/");
        Ok(self
            .files()
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.files().remove(name);
        Ok(())
    }

    fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.files().contains_key(name))
    }

    fn upload(&self, _dir: &str) -> Result<Box<dyn Upload>> {
        Ok(Box::new(MemoryUpload {
            files: self.files.clone(),
            buf: Vec::new(),
        }))
    }

    fn location(&self) -> String {
        "memory".into()
    }
}
