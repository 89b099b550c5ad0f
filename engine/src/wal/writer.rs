//! Appending to the WAL with group commit and fsync poisoning.

use crate::error::{Error, Result};
use crate::storage::{FileHandle, Storage};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::{WAL_FILE, WAL_TMP};

#[derive(Debug, Default)]
struct State {
    /// Bytes appended since the writer was opened: a *logical* position
    /// that only grows. The file holds the bytes after `base`.
    appended: u64,
    /// Logical position of the file's first byte after its base record
    /// (moved by [`WalWriter::reset`]): logical position `p` is at file
    /// offset `header_len + (p - base)`. Positions never go back, so a
    /// committer that appended before a checkpoint replaced the file still
    /// finds its bytes counted as durable.
    base: u64,
    /// Bytes of the base record at the start of the current file.
    header_len: u64,
    /// Highest commit sequence whose records end at or before `appended`.
    appended_seq: u64,
    /// Bytes known durable.
    durable: u64,
    /// Highest commit sequence known durable.
    durable_seq: u64,
    /// A sync leader is running fdatasync.
    syncing: bool,
    /// Set by the first failed write or sync; never cleared.
    poisoned: Option<String>,
    /// fdatasync calls made (for tests and benchmarks).
    syncs: u64,
}

/// The WAL appender. Appends are serialised by the caller (the engine's
/// commit lock); waiting for durability is concurrent.
#[derive(Debug)]
pub struct WalWriter {
    /// The log file; replaced whole by [`WalWriter::reset`].
    file: RwLock<FileHandle>,
    state: Mutex<State>,
    synced: Condvar,
    /// Committers between the start of their commit and their append.
    in_flight: AtomicUsize,
}

/// How long a sync leader waits for in-flight committers to append, so that
/// one fdatasync covers them too.
const GATHER_WINDOW: Duration = Duration::from_micros(100);

/// Marks a committer in flight until dropped (see [`WalWriter::announce`]).
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WalWriter {
    /// A writer appending to `file`, which holds `len` durable bytes, the
    /// first `header_len` of them its base record, covering commits up to
    /// `seq`.
    pub fn new(file: FileHandle, len: u64, header_len: u64, seq: u64) -> Self {
        Self {
            file: RwLock::new(file),
            state: Mutex::new(State {
                appended: len,
                base: header_len.min(len),
                header_len: header_len.min(len),
                appended_seq: seq,
                durable: len,
                durable_seq: seq,
                ..State::default()
            }),
            synced: Condvar::new(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Announces a committer that will append soon; drop the guard after its
    /// append (or failure). A sync leader briefly waits for announced
    /// committers so that they share its fdatasync.
    pub fn announce(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| Error::Poisoned {
            cause: "WAL state lock poisoned by a panicking thread".into(),
        })
    }

    /// Fails with [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn check(&self) -> Result<()> {
        match &self.lock()?.poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the failure that poisons the database.
    pub fn poison(&self, cause: String) {
        if let Ok(mut st) = self.state.lock() {
            st.poisoned.get_or_insert(cause);
        }
        self.synced.notify_all();
    }

    /// Appends `bytes` holding commits up to `seq` (not yet durable) and
    /// returns the end offset to wait for. Callers serialise appends.
    pub fn append(&self, bytes: &[u8], seq: u64) -> Result<u64> {
        self.check()?;
        if let Err(e) = self.file()?.append(bytes) {
            let err = Error::io(WAL_FILE)(e);
            self.poison(err.to_string());
            return Err(err);
        }
        let mut st = self.lock()?;
        st.appended += bytes.len() as u64;
        st.appended_seq = st.appended_seq.max(seq);
        Ok(st.appended)
    }

    /// Blocks until every byte before `end` is durable and returns the highest
    /// durable commit sequence. The first waiter syncs for everyone.
    pub fn wait_durable(&self, end: u64) -> Result<u64> {
        let mut st = self.lock()?;
        loop {
            // Durability first: bytes a successful fdatasync covered are
            // acknowledged even if something failed since (a checkpoint, a
            // later append); only bytes no sync covered fail.
            if st.durable >= end {
                return Ok(st.durable_seq);
            }
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if st.syncing {
                st = self.synced.wait(st).map_err(|_| Error::Poisoned {
                    cause: "WAL state lock poisoned".into(),
                })?;
                continue;
            }
            st.syncing = true;
            drop(st);
            let started = Instant::now();
            while self.in_flight.load(Ordering::SeqCst) > 0 && started.elapsed() < GATHER_WINDOW {
                std::thread::yield_now();
            }
            st = self.lock()?;
            let (target, target_seq) = (st.appended, st.appended_seq);
            drop(st);
            // Bytes synced before a reset are durable already: syncing the
            // replaced file is harmless.
            let synced = self
                .file()
                .and_then(|f| f.sync().map_err(Error::io(WAL_FILE)));
            st = self.lock()?;
            st.syncing = false;
            match synced {
                Ok(()) => {
                    st.syncs += 1;
                    st.durable = st.durable.max(target);
                    st.durable_seq = st.durable_seq.max(target_seq);
                }
                Err(err) => {
                    st.poisoned
                        .get_or_insert(format!("fdatasync failed: {err}"));
                }
            }
            self.synced.notify_all();
        }
    }

    /// Makes everything appended so far durable.
    pub fn sync_all(&self) -> Result<u64> {
        let end = self.lock()?.appended;
        self.wait_durable(end)
    }

    /// The current logical end of the log: a checkpoint taken now covers
    /// what lies before it (see [`WalWriter::reset`]).
    pub fn mark(&self) -> Result<u64> {
        Ok(self.lock()?.appended)
    }

    /// Replaces the log after a checkpoint made everything but the logical
    /// range `keep_from..keep_until` redundant: a new log holding the base
    /// record `header` and then those bytes (commits made while the
    /// checkpoint wrote its segments) is written to `WAL.tmp`,
    /// fdatasync'ed, renamed over `WAL` and the directory fsync'ed. A crash
    /// leaves the old log or the new one, never an empty or half-written one
    /// (recovery relies on every WAL starting with its base record). The
    /// caller holds the commit lock, so nothing is appended meanwhile; the
    /// kept bytes are durable once this returns.
    pub fn reset(
        &self,
        storage: &dyn Storage,
        header: &[u8],
        keep_from: u64,
        keep_until: u64,
    ) -> Result<()> {
        self.check()?;
        let result = self.replace_file(storage, header, keep_from, keep_until);
        match result {
            Ok(kept) => {
                let mut st = self.lock()?;
                st.base = st.appended - kept;
                st.header_len = header.len() as u64;
                st.durable = st.appended;
                st.durable_seq = st.appended_seq;
                drop(st);
                self.synced.notify_all();
                Ok(())
            }
            Err(e) => {
                self.poison(e.to_string());
                Err(e)
            }
        }
    }

    /// Writes and installs the new log; returns how many bytes it kept.
    fn replace_file(
        &self,
        storage: &dyn Storage,
        header: &[u8],
        keep_from: u64,
        keep_until: u64,
    ) -> Result<u64> {
        let (from, to) = {
            let st = self.lock()?;
            let until = keep_until.clamp(st.base, st.appended);
            let start = keep_from.clamp(st.base, until);
            let phys = |p: u64| st.header_len + (p - st.base);
            (phys(start), phys(until))
        };
        let mut kept = vec![0u8; (to - from) as usize];
        if !kept.is_empty() {
            self.file()?
                .read_at(from, &mut kept)
                .map_err(Error::io(WAL_FILE))?;
        }
        let fresh = storage
            .open(WAL_TMP, true)
            .and_then(|f| {
                f.truncate(0)?;
                f.append(header)?;
                if !kept.is_empty() {
                    f.append(&kept)?;
                }
                f.sync()?;
                Ok(f)
            })
            .map_err(Error::io(WAL_TMP))?;
        storage
            .rename(WAL_TMP, WAL_FILE)
            .and_then(|()| storage.sync_dir())
            .map_err(Error::io(WAL_FILE))?;
        *self.file.write().map_err(|_| self.lock_poisoned())? = fresh;
        Ok(kept.len() as u64)
    }

    fn file(&self) -> Result<FileHandle> {
        Ok(self.file.read().map_err(|_| self.lock_poisoned())?.clone())
    }

    fn lock_poisoned(&self) -> Error {
        Error::Poisoned {
            cause: "WAL file lock poisoned".into(),
        }
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.lock()
            .map(|st| st.appended.saturating_sub(st.base))
            .unwrap_or(0)
    }

    /// True when the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// fdatasync calls made so far.
    pub fn sync_count(&self) -> u64 {
        self.lock().map(|st| st.syncs).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemStorage, Storage};
    use std::sync::Arc;
    use std::time::Duration;

    /// A committer appends, then a checkpoint empties the log before the
    /// committer waits for durability: the wait must see its bytes as
    /// durable (it once looped forever, comparing its old end offset with
    /// positions that had restarted at zero).
    #[test]
    fn a_wait_after_a_reset_returns() {
        let storage = MemStorage::new();
        let wal = Arc::new(WalWriter::new(storage.open("WAL", true).unwrap(), 0, 0, 0));
        let end = wal.append(b"commit one", 1).unwrap();
        wal.sync_all().unwrap();
        let mark = wal.mark().unwrap();
        wal.reset(&storage, &[], mark, mark).unwrap();
        assert_eq!(wal.len(), 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = wal.clone();
        std::thread::spawn(move || tx.send(waiter.wait_durable(end)).unwrap());
        let seq = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("wait_durable hung after a reset");
        assert_eq!(seq.unwrap(), 1);
        // Appends after the reset are counted from the new start.
        let end2 = wal.append(b"two", 2).unwrap();
        assert_eq!(wal.wait_durable(end2).unwrap(), 2);
        assert_eq!(wal.len(), 3);
    }

    /// A checkpoint keeps the commits appended after its mark: the new file
    /// is the base record then exactly those bytes, all durable.
    #[test]
    fn a_reset_keeps_the_bytes_after_the_mark() {
        let storage = MemStorage::new();
        let wal = WalWriter::new(storage.open("WAL", true).unwrap(), 0, 0, 0);
        wal.append(b"one", 1).unwrap();
        let mark = wal.mark().unwrap();
        let end = wal.append(b"two", 2).unwrap();
        wal.append(b"CKPT", 2).unwrap();
        wal.reset(&storage, b"BASE", mark, end).unwrap();
        assert_eq!(wal.len(), 3);
        assert_eq!(
            storage.open("WAL", false).unwrap().read_all().unwrap(),
            b"BASEtwo"
        );
        assert_eq!(wal.wait_durable(end).unwrap(), 2);
        let end = wal.append(b"three", 3).unwrap();
        assert_eq!(wal.wait_durable(end).unwrap(), 3);
        assert_eq!(
            storage.open("WAL", false).unwrap().read_all().unwrap(),
            b"BASEtwothree"
        );
        // A second checkpoint keeps nothing.
        let mark = wal.mark().unwrap();
        wal.reset(&storage, b"B2", mark, mark).unwrap();
        assert!(wal.is_empty());
        assert_eq!(
            storage.open("WAL", false).unwrap().read_all().unwrap(),
            b"B2"
        );
    }
}
