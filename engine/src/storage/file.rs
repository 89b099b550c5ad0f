//! Real files in a directory, through `std::fs`.
//!
//! Reads and writes use positional I/O (`pread`/`pwrite`), `sync` is
//! `fdatasync`, `sync_dir` fsyncs the directory itself, and the database lock
//! is an exclusive advisory `flock` on the `LOCK` file (std's `File::try_lock`),
//! which the kernel releases when the process dies.
//!
//! READ-ONLY. [`FileStorage::open_read_only`] opens every file for reading
//! only and refuses to create, write, rename or remove one (`PermissionDenied`,
//! "opened read-only"): what a database on a read-only file system, or in a
//! directory the user may not write, can still do. Its lock is a *shared*
//! `flock` on `LOCK` (`try_lock_shared`), so any number of read-only opens
//! coexist and a writer is refused while one is open (and the other way
//! round); without a `LOCK` file (it is created by the first writer) there
//! is nothing to lock and nothing else can be writing there either.

use super::{FileHandle, LockGuard, Storage, StorageFile};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Name of the lock file in the database directory.
pub const LOCK_FILE: &str = "LOCK";

/// A database directory on the real file system.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
    read_only: bool,
}

impl FileStorage {
    /// Uses `dir`, creating it if missing.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            read_only: false,
        })
    }

    /// Uses the existing directory `dir` for reading only (see the module
    /// docs).
    pub fn open_read_only(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Self {
            dir,
            read_only: true,
        })
    }

    /// True for a storage opened with [`FileStorage::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The shared lock of a read-only open (see the module docs).
    fn lock_shared(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        let file = match File::open(self.path(LOCK_FILE)?) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Some(Box::new(FileLock { _file: None })));
            }
            Err(e) => return Err(e),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(Box::new(FileLock { _file: Some(file) }))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Fails when the storage is read-only.
    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the database was opened read-only",
            ));
        }
        Ok(())
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad file name {name:?}"),
            ));
        }
        Ok(self.dir.join(name))
    }
}

#[derive(Debug)]
struct PlainFile {
    file: File,
    /// Serialises appends so that each one gets a distinct offset.
    append_lock: Mutex<()>,
}

impl StorageFile for PlainFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let _guard = self
            .append_lock
            .lock()
            .map_err(|_| io::Error::other("append lock poisoned"))?;
        let offset = self.file.metadata()?.len();
        self.file.write_all_at(data, offset)?;
        Ok(offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

#[derive(Debug)]
struct FileLock {
    /// The locked `LOCK` file; `None` for a read-only open without one.
    _file: Option<File>,
}

impl LockGuard for FileLock {}

impl Storage for FileStorage {
    fn open(&self, name: &str, create: bool) -> io::Result<FileHandle> {
        if create {
            self.writable()?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!self.read_only)
            .create(create)
            .truncate(false)
            .open(self.path(name)?)?;
        Ok(Arc::new(PlainFile {
            file,
            append_lock: Mutex::new(()),
        }))
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        self.path(name)?.try_exists()
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.writable()?;
        fs::rename(self.path(from)?, self.path(to)?)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.writable()?;
        fs::remove_file(self.path(name)?)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.writable()?;
        File::open(&self.dir)?.sync_all()
    }

    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        if self.read_only {
            return self.lock_shared();
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(LOCK_FILE)?)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(FileLock { _file: Some(file) }))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}
