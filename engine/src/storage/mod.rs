//! Storage backends: every byte the engine reads or writes goes through the
//! [`Storage`] and [`StorageFile`] traits.
//!
//! A database is one flat directory of named files. The engine never calls
//! `std::fs` itself; it asks a backend, so the same code runs on real files
//! ([`FileStorage`]), purely in memory ([`MemStorage`]) and on a simulated
//! disk that can lose power and fail on command ([`SimDisk`], for tests).
//!
//! Durability contract the engine relies on (and that [`SimDisk`] enforces):
//! - bytes written to a file are durable only after [`StorageFile::sync`];
//! - a created, renamed or removed directory entry is durable only after
//!   [`Storage::sync_dir`];
//! - [`Storage::rename`] atomically replaces the target name.

pub mod crypto;
mod encrypted;
mod file;
mod memory;
mod sim;

pub use encrypted::{AuthFailure, ENC_MAGIC, EncryptedStorage, NonceObserver, NonceUse, Secret};
pub use file::FileStorage;
pub use memory::MemStorage;
pub use sim::{Fault, PowerLoss, SimDisk, TornFill};

use std::fmt;
use std::io;
use std::sync::Arc;

/// One open file of a backend. Offsets are bytes from the start of the file.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads exactly `buf.len()` bytes at `offset` (`UnexpectedEof` if short).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Writes `data` at the end of the file and returns the offset it starts at.
    fn append(&self, data: &[u8]) -> io::Result<u64>;
    /// Makes every write so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads the whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = vec![0u8; len];
        self.read_at(0, &mut buf)?;
        Ok(buf)
    }
}

/// A shared handle to an open file.
pub type FileHandle = Arc<dyn StorageFile>;

/// A directory of files plus the database lock.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Opens `name`, creating it empty when `create` is true and it is missing.
    fn open(&self, name: &str, create: bool) -> io::Result<FileHandle>;
    /// True when `name` exists.
    fn exists(&self, name: &str) -> io::Result<bool>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes `name`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Names of every file in the directory, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Makes directory entries (creates, renames, removes) durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Takes the exclusive database lock; `Ok(None)` when another holder has it.
    /// The lock is held until the returned guard is dropped.
    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>>;
    /// Human-readable location, for error messages.
    fn describe(&self) -> String;
    /// Verifies what the backend adds to the bytes of `name`, strictly (for
    /// `integrity_check`): an encrypting backend checks that both header
    /// slots and every chunk authenticate, tolerating no torn tail. Plain
    /// backends add nothing.
    fn verify(&self, name: &str) -> io::Result<()> {
        let _ = name;
        Ok(())
    }
}

/// Holds the database lock while alive.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// The error a backend returns for a simulated or real EIO.
pub fn eio(what: &str) -> io::Error {
    io::Error::other(format!("EIO: {what}"))
}
