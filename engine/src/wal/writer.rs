//! Appending to the WAL with group commit and fsync poisoning.

use crate::error::{Error, Result};
use crate::storage::FileHandle;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::WAL_FILE;

#[derive(Debug, Default)]
struct State {
    /// Bytes appended so far (the file length).
    appended: u64,
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
    file: FileHandle,
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
    /// A writer for `file`, which currently holds `len` durable bytes covering
    /// commits up to `seq`.
    pub fn new(file: FileHandle, len: u64, seq: u64) -> Self {
        Self {
            file,
            state: Mutex::new(State {
                appended: len,
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
        if let Err(e) = self.file.append(bytes) {
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
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if st.durable >= end {
                return Ok(st.durable_seq);
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
            let synced = self.file.sync();
            st = self.lock()?;
            st.syncing = false;
            match synced {
                Ok(()) => {
                    st.syncs += 1;
                    st.durable = st.durable.max(target);
                    st.durable_seq = st.durable_seq.max(target_seq);
                }
                Err(e) => {
                    let err = Error::io(WAL_FILE)(e);
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

    /// Empties the log (after a checkpoint made its contents redundant) and
    /// makes the truncation durable.
    pub fn reset(&self) -> Result<()> {
        self.check()?;
        let result = self.file.truncate(0).and_then(|()| self.file.sync());
        if let Err(e) = result {
            let err = Error::io(WAL_FILE)(e);
            self.poison(err.to_string());
            return Err(err);
        }
        let mut st = self.lock()?;
        st.appended = 0;
        st.durable = 0;
        Ok(())
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.lock().map(|st| st.appended).unwrap_or(0)
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
