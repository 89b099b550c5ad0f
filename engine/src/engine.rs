//! The engine handle and the state it shares with its transactions.
//!
//! [`Engine`] is a cheap handle on one [`Inner`]; transactions hold the same
//! `Arc<Inner>`. How a commit runs is described in [`crate::commit`], how a
//! checkpoint runs in [`crate::checkpoint`], how a database is opened in
//! [`crate::recovery`].

use crate::checkpoint::Checkpointer;
use crate::error::{Error, Result};
use crate::locks::read;
use crate::mvcc::Snapshots;
use crate::segment::ChunkCache;
use crate::storage::{FileStorage, LockGuard, MemStorage, Storage};
use crate::table::TableState;
use crate::txn::Transaction;
use crate::wal::WalWriter;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Tunables of an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Checkpoint automatically once the WAL is larger than this many bytes.
    pub checkpoint_wal_bytes: u64,
    /// Bytes of decoded column chunks kept in memory for warm scans.
    pub cache_bytes: usize,
    /// When the last handle of the engine is dropped, checkpoint a non-empty
    /// WAL, so the next open replays nothing (SQLite and DuckDB do the same
    /// on close). A failure is ignored: the WAL is still there and recovery
    /// replays it. Off by default for the engine; the `entidb` facade turns
    /// it on.
    pub checkpoint_on_close: bool,
    /// Run threshold checkpoints (`checkpoint_wal_bytes`) on a background
    /// thread (the default). When off they run on the committing thread,
    /// after the commit is durable and visible: deterministic I/O order for
    /// tests. Either way a failed checkpoint never fails the commit that
    /// triggered it; it poisons the database and the next write reports it.
    pub background_checkpoints: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            checkpoint_wal_bytes: 64 << 20,
            cache_bytes: 1 << 30,
            checkpoint_on_close: false,
            background_checkpoints: true,
        }
    }
}

/// Versions of the catalog blob, oldest first (pruned at checkpoints).
#[derive(Debug, Default)]
pub(crate) struct CatalogHistory {
    pub versions: Vec<(u64, Arc<Vec<u8>>)>,
}

impl CatalogHistory {
    pub fn latest_seq(&self) -> u64 {
        self.versions.last().map_or(0, |(s, _)| *s)
    }

    /// The version a snapshot at `seq` reads: `(commit that wrote it, blob)`.
    pub fn at(&self, seq: u64) -> (u64, Arc<Vec<u8>>) {
        self.versions
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq)
            .cloned()
            .unwrap_or_default()
    }
}

/// State shared by the engine handle and its transactions.
#[derive(Debug)]
pub(crate) struct Inner {
    pub storage: Arc<dyn Storage>,
    pub options: EngineOptions,
    pub wal: WalWriter,
    /// Serialises validation, sequence assignment, apply and WAL append.
    pub commit_lock: Mutex<CommitState>,
    /// One checkpoint at a time; taken before the commit lock, never while
    /// holding it (see `checkpoint.rs`).
    pub checkpoint_lock: Mutex<()>,
    pub visible_seq: AtomicU64,
    pub next_id: AtomicU64,
    pub next_rowid: AtomicU64,
    pub next_txn: AtomicU64,
    pub tables: RwLock<BTreeMap<u64, Arc<TableState>>>,
    pub catalog: RwLock<CatalogHistory>,
    pub snapshots: Snapshots,
    pub checkpoint_seq: AtomicU64,
    pub encryption: Vec<u8>,
    pub cache: Arc<ChunkCache>,
    pub checkpointer: Checkpointer,
    /// Engine handles and transactions alive (a background checkpoint's
    /// reference does not count): the last one to go waits for that
    /// checkpoint, so the database is closed — its LOCK released — when the
    /// application's last handle is gone.
    pub handles: std::sync::atomic::AtomicUsize,
    pub _lock: Box<dyn LockGuard>,
}

#[derive(Debug, Default)]
pub(crate) struct CommitState {
    pub last_seq: u64,
}

/// An open database engine. Cheap to clone; all clones share one database.
#[derive(Debug)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Clone for Engine {
    fn clone(&self) -> Self {
        self.inner.acquire_handle();
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl Engine {
    /// Opens (or creates) the database in directory `path`.
    ///
    /// # Errors
    /// `Locked` if another process holds it, `Corruption` or
    /// `IncompatibleVersion` for bad files (nothing is modified then), `Io`.
    pub fn open_dir(path: impl AsRef<Path>, options: EngineOptions) -> Result<Self> {
        let dir = path.as_ref();
        let storage = FileStorage::new(dir).map_err(Error::io(&dir.display().to_string()))?;
        Self::open(Arc::new(storage), options)
    }

    /// A fresh in-memory database.
    pub fn open_memory() -> Result<Self> {
        Self::open(Arc::new(MemStorage::new()), EngineOptions::default())
    }

    /// Opens the database held by `storage`, running crash recovery.
    ///
    /// # Errors
    /// As [`Engine::open_dir`].
    pub fn open(storage: Arc<dyn Storage>, options: EngineOptions) -> Result<Self> {
        crate::recovery::open(storage, options).map(|inner| {
            inner.acquire_handle();
            Engine {
                inner: Arc::new(inner),
            }
        })
    }

    /// Starts a read-write transaction.
    pub fn begin(&self) -> Transaction {
        Transaction::new(self.inner.clone(), false)
    }

    /// Starts a read-only transaction.
    pub fn begin_read_only(&self) -> Transaction {
        Transaction::new(self.inner.clone(), true)
    }

    /// Writes all committed data to segments, saves the manifest and empties
    /// the WAL.
    ///
    /// # Errors
    /// I/O failures (which poison the database).
    pub fn checkpoint(&self) -> Result<()> {
        crate::checkpoint::run(&self.inner)
    }

    /// The newest visible commit sequence.
    pub fn visible_seq(&self) -> u64 {
        self.inner.visible_seq.load(Ordering::SeqCst)
    }

    /// Sequence of the last checkpoint.
    pub fn checkpoint_seq(&self) -> u64 {
        self.inner.checkpoint_seq.load(Ordering::SeqCst)
    }

    /// Current WAL size in bytes.
    pub fn wal_len(&self) -> u64 {
        self.inner.wal.len()
    }

    /// fdatasync calls made on the WAL since open.
    pub fn wal_sync_count(&self) -> u64 {
        self.inner.wal.sync_count()
    }

    /// Verifies every checksum of every file, the manifest against the
    /// files and the WAL, the key index and built secondary indexes against
    /// the data, and the `unique` column sets `(table id, columns)` — see
    /// `integrity.rs` for the list. Read-only; commits wait while it runs.
    /// Returns one line per problem, empty when the database is intact.
    ///
    /// # Errors
    /// Only when the check itself cannot run (a poisoned lock); damage is
    /// reported in the list, never as an error.
    pub fn integrity_check(&self, unique: &[(u64, Vec<usize>)]) -> Result<Vec<String>> {
        crate::integrity::check(&self.inner, unique)
    }

    /// Waits until a running background checkpoint (see
    /// [`EngineOptions::background_checkpoints`]) has finished; returns at
    /// once when none runs. Its outcome shows in [`Engine::check_healthy`].
    pub fn wait_for_background_checkpoint(&self) {
        self.inner.checkpointer.join();
    }

    /// Fails with `Poisoned` if an earlier I/O failure poisoned the database.
    pub fn check_healthy(&self) -> Result<()> {
        self.inner.wal.check()
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// Releases the memory of the index over `columns` of a table (after
    /// `DROP INDEX`). A later use rebuilds it.
    pub fn forget_index(&self, table_id: u64, columns: &[usize]) -> Result<()> {
        if let Some(t) = read(&self.inner.tables)?.get(&table_id) {
            t.indexes.remove(columns)?;
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.inner.release_handle();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.options.checkpoint_on_close && !self.wal.is_empty() && self.wal.check().is_ok() {
            // Nothing can report an error from here; a failed checkpoint
            // leaves the WAL for recovery, as after a crash.
            let _ = crate::checkpoint::run(self);
        }
    }
}

impl Inner {
    /// Counts a new engine handle or transaction.
    pub(crate) fn acquire_handle(&self) {
        self.handles.fetch_add(1, Ordering::SeqCst);
    }

    /// Uncounts one; the last waits for a running background checkpoint.
    pub(crate) fn release_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.checkpointer.join();
        }
    }

    /// The catalog blob at `snapshot`.
    pub fn catalog_at(&self, snapshot: u64) -> Result<Arc<Vec<u8>>> {
        Ok(read(&self.catalog)?.at(snapshot).1)
    }
}
