//! Poison-aware lock helpers.
//!
//! A lock is poisoned when a thread panicked while holding it. The engine
//! never panics by design, so a poisoned lock means the in-memory state can
//! no longer be trusted: every helper here turns it into
//! [`Error::Poisoned`] instead of propagating the panic. Which lock guards
//! what, and the order they are taken in, is written down once, on
//! `Inner` (`engine.rs`).

use crate::error::{Error, Result};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

fn lock_err() -> Error {
    Error::Poisoned {
        cause: "a lock was poisoned by a panicking thread".into(),
    }
}

/// Read-locks `l`.
pub(crate) fn read<T>(l: &RwLock<T>) -> Result<RwLockReadGuard<'_, T>> {
    l.read().map_err(|_| lock_err())
}

/// Write-locks `l`.
pub(crate) fn write<T>(l: &RwLock<T>) -> Result<RwLockWriteGuard<'_, T>> {
    l.write().map_err(|_| lock_err())
}

/// Locks `m`.
pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| lock_err())
}
