//! A purely in-memory backend: files are byte vectors in a map and every
//! operation is durable at once (there is no power to lose). Used by
//! `Database::open_in_memory`.

use super::{FileHandle, LockGuard, Storage, StorageFile};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};

/// Files held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    files: Arc<Mutex<BTreeMap<String, Arc<MemFile>>>>,
    locked: Arc<Mutex<bool>>,
}

impl MemStorage {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn files(&self) -> io::Result<std::sync::MutexGuard<'_, BTreeMap<String, Arc<MemFile>>>> {
        self.files
            .lock()
            .map_err(|_| io::Error::other("memory storage lock poisoned"))
    }
}

#[derive(Debug, Default)]
struct MemFile {
    data: RwLock<Vec<u8>>,
}

fn poisoned() -> io::Error {
    io::Error::other("memory file lock poisoned")
}

fn to_usize(v: u64) -> io::Result<usize> {
    usize::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

/// Writes `data` at `offset` of `buf`, zero-extending it first if needed.
pub(crate) fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) -> io::Result<()> {
    let start = to_usize(offset)?;
    let end = start + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    if let Some(dst) = buf.get_mut(start..end) {
        dst.copy_from_slice(data);
    }
    Ok(())
}

/// Copies `out.len()` bytes at `offset` of `buf` into `out`.
pub(crate) fn read_from(buf: &[u8], offset: u64, out: &mut [u8]) -> io::Result<()> {
    let start = to_usize(offset)?;
    let src = start
        .checked_add(out.len())
        .and_then(|end| buf.get(start..end))
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"))?;
    out.copy_from_slice(src);
    Ok(())
}

impl StorageFile for MemFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_from(&self.data.read().map_err(|_| poisoned())?, offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut buf = self.data.write().map_err(|_| poisoned())?;
        write_into(&mut buf, offset, data)
    }

    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let mut buf = self.data.write().map_err(|_| poisoned())?;
        let offset = buf.len() as u64;
        buf.extend_from_slice(data);
        Ok(offset)
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.data
            .write()
            .map_err(|_| poisoned())?
            .resize(to_usize(len)?, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.read().map_err(|_| poisoned())?.len() as u64)
    }
}

#[derive(Debug)]
struct MemLock {
    locked: Arc<Mutex<bool>>,
}

impl LockGuard for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        if let Ok(mut locked) = self.locked.lock() {
            *locked = false;
        }
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name} not found"))
}

impl Storage for MemStorage {
    fn open(&self, name: &str, create: bool) -> io::Result<FileHandle> {
        let mut files = self.files()?;
        if let Some(file) = files.get(name) {
            return Ok(file.clone());
        }
        if !create {
            return Err(not_found(name));
        }
        let file = Arc::new(MemFile::default());
        files.insert(name.to_string(), file.clone());
        Ok(file)
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        Ok(self.files()?.contains_key(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files()?;
        let file = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_string(), file);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.files()?
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files()?.keys().cloned().collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        let mut locked = self
            .locked
            .lock()
            .map_err(|_| io::Error::other("lock poisoned"))?;
        if *locked {
            return Ok(None);
        }
        *locked = true;
        Ok(Some(Box::new(MemLock {
            locked: self.locked.clone(),
        })))
    }

    fn describe(&self) -> String {
        "in-memory database".to_string()
    }
}
