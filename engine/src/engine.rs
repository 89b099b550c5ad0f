//! The engine handle and the commit pipeline.
//!
//! COMMIT, step by step (see also [`crate::wal`] and [`crate::mvcc`]):
//!
//! 1. Under the commit lock: validate every written key's before-image hash
//!    against the newest committed version (`Conflict` on mismatch), validate
//!    DDL against the catalog sequence, assign `seq = last_seq + 1`.
//! 2. Still under the lock: encode BEGIN … COMMIT, apply the changes to memory
//!    (invisible: readers only see versions up to `visible_seq`), append the
//!    bytes to the WAL. Release the lock: the next committer may start.
//! 3. Wait until a (shared) fdatasync covers the bytes — group commit.
//! 4. Publish: `visible_seq = max(visible_seq, durable_seq)`. Because appends
//!    happen in sequence order, everything up to `durable_seq` is applied.
//! 5. If the WAL has grown past the configured size, start a checkpoint on
//!    the background thread (see [`EngineOptions::background_checkpoints`]).
//!    The commit is already durable and visible: it succeeds whatever
//!    happens to that checkpoint, whose failure poisons the database for
//!    later writes instead.
//!
//! A failure in step 2 or 3 poisons the database (the WAL writer remembers
//! it): the commit returns the error, nothing more is written, and the caller
//! must re-open, letting recovery decide from what is on disk.

use crate::changes::Changes;
use crate::error::{Error, Result};
use crate::keys::{ABSENT, display_key};
use crate::locks::{read, write};
use crate::mvcc::Snapshots;
use crate::segment::ChunkCache;
use crate::storage::{FileStorage, LockGuard, MemStorage, Storage};
use crate::table::TableState;
use crate::txn::Transaction;
use crate::wal::WalWriter;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

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

/// The background thread of threshold checkpoints: at most one at a time.
#[derive(Debug, Default)]
pub(crate) struct Checkpointer {
    running: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Waits for a running background checkpoint to finish.
    fn join(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            // A panicking checkpoint thread has nothing left to report.
            let _ = handle.join();
        }
    }
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

    /// Runs the commit pipeline described in the module docs.
    pub fn commit(self: &Arc<Self>, txn_id: u64, snapshot: u64, changes: Changes) -> Result<u64> {
        self.wal.check()?;
        let in_flight = self.wal.announce();
        let (seq, end) = {
            let mut state = self.commit_lock.lock().map_err(|_| Error::Poisoned {
                cause: "commit lock poisoned".into(),
            })?;
            self.validate(snapshot, &changes)?;
            let seq = state.last_seq + 1;
            let mut bytes = Vec::new();
            changes.encode(txn_id, seq, &mut bytes)?;
            if let Err(e) = self.apply(seq, changes) {
                self.wal
                    .poison(format!("applying commit {seq} failed: {e}"));
                return Err(e);
            }
            let end = self.wal.append(&bytes, seq)?;
            state.last_seq = seq;
            (seq, end)
        };
        drop(in_flight);
        let durable = self.wal.wait_durable(end)?;
        self.visible_seq.fetch_max(durable, Ordering::SeqCst);
        // The commit is durable and visible: nothing below may fail it.
        if self.wal.len() > self.options.checkpoint_wal_bytes {
            self.threshold_checkpoint();
        }
        Ok(seq)
    }

    /// Starts the checkpoint the WAL size asks for (step 5 of the module
    /// docs). Its failure poisons the database (see `checkpoint::run`) and
    /// is reported by the next write; it is never the committer's error.
    fn threshold_checkpoint(self: &Arc<Self>) {
        if !self.options.background_checkpoints {
            let _ = crate::checkpoint::run(self);
            return;
        }
        // The slot lock orders spawning against a finishing thread: a
        // thread clears `running` under it, so the handle stored here is
        // always the running thread's.
        let Ok(mut slot) = self.checkpointer.thread.lock() else {
            return;
        };
        if self.checkpointer.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("entidb-checkpoint".into())
            .spawn(move || {
                if let Some(inner) = weak.upgrade() {
                    let _ = crate::checkpoint::run(&inner);
                    let _slot = inner.checkpointer.thread.lock();
                    inner.checkpointer.running.store(false, Ordering::SeqCst);
                }
            });
        match spawned {
            Ok(handle) => *slot = Some(handle),
            // No thread to be had: checkpoint here, still after the commit.
            Err(_) => {
                drop(slot);
                let _ = crate::checkpoint::run(self);
                self.checkpointer.running.store(false, Ordering::SeqCst);
            }
        }
    }

    /// First-committer-wins validation (see [`crate::mvcc`]).
    fn validate(&self, snapshot: u64, changes: &Changes) -> Result<()> {
        if changes.has_ddl() && read(&self.catalog)?.latest_seq() > snapshot {
            return Err(Error::Conflict {
                table: "<catalog>".into(),
                key: "schema changed concurrently".into(),
            });
        }
        let tables = read(&self.tables)?;
        for change in &changes.tables {
            let created_here = changes.creates.iter().any(|d| d.id == change.table_id);
            let table = match tables.get(&change.table_id) {
                Some(t) if read(&t.dropped_seq)?.is_none() => t,
                _ if created_here => continue,
                _ => {
                    return Err(Error::Conflict {
                        table: format!("#{}", change.table_id),
                        key: "table was dropped concurrently".into(),
                    });
                }
            };
            let writes = change.rows.is_some() || !change.deleted.is_empty();
            if writes
                && table.schema_seq.load(Ordering::SeqCst) > snapshot
                && !changes.touched.contains(&change.table_id)
            {
                return Err(Error::Conflict {
                    table: table.def.name.clone(),
                    key: "its indexes or constraints changed concurrently".into(),
                });
            }
            crate::unique::check_commit(table, change, snapshot)?;
            if !table.keys_built()? && read(&table.chunks)?.chunks.is_empty() {
                // No committed version of any key: every before-image must
                // say "absent". The key index stays unbuilt (see apply).
                if change.deleted.iter().any(|(_, b)| *b != ABSENT)
                    || change.before.iter().any(|b| *b != ABSENT)
                {
                    return Err(Error::Conflict {
                        table: table.def.name.clone(),
                        key: "rows changed concurrently".into(),
                    });
                }
                continue;
            }
            let keys = table.keys()?;
            let current = |key: &[u8]| keys.get(key).map_or(ABSENT, |e| e.before_image(snapshot));
            let conflict = |key: &[u8]| Error::Conflict {
                table: table.def.name.clone(),
                key: display_key(key),
            };
            for (key, before) in &change.deleted {
                if current(key) != *before {
                    return Err(conflict(key));
                }
            }
            if let Some(rows) = &change.rows {
                let key_col = rows.num_columns().saturating_sub(2);
                let key_arr = crate::schema::col(rows, key_col)?
                    .as_any()
                    .downcast_ref::<arrow::array::BinaryArray>()
                    .ok_or_else(|| Error::InvalidArgument("stored batch lacks _key".into()))?;
                for (key, before) in key_arr.iter().flatten().zip(&change.before) {
                    if current(key) != *before {
                        return Err(conflict(key));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a transaction's changes to memory at `seq` (commit and replay).
    pub fn apply(&self, seq: u64, changes: Changes) -> Result<()> {
        if changes.has_ddl() {
            let mut history = write(&self.catalog)?;
            let blob = match &changes.catalog {
                Some(blob) => Arc::new(blob.clone()),
                None => history
                    .versions
                    .last()
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
            };
            history.versions.push((seq, blob));
        }
        let mut tables = write(&self.tables)?;
        for def in changes.creates {
            self.next_id.fetch_max(def.id + 1, Ordering::SeqCst);
            tables.insert(def.id, Arc::new(TableState::new(def, seq)));
        }
        for change in changes.tables {
            let table = tables
                .get(&change.table_id)
                .ok_or_else(|| Error::TableNotFound {
                    name: format!("#{}", change.table_id),
                })?;
            let deleted: Vec<Box<[u8]>> = change.deleted.into_iter().map(|(k, _)| k).collect();
            let chunk_id = self.next_id.fetch_add(1, Ordering::SeqCst);
            if table.def.key_columns.is_empty() {
                self.bump_rowid(change.rows.as_ref());
            }
            table.apply(seq, chunk_id, change.rows, &deleted, &change.before)?;
        }
        for id in &changes.drops {
            if let Some(t) = tables.get(id) {
                *write(&t.dropped_seq)? = Some(seq);
            }
        }
        for id in &changes.touched {
            if let Some(t) = tables.get(id) {
                t.schema_seq.store(seq, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Keeps the row-id counter above every replayed row id.
    fn bump_rowid(&self, rows: Option<&arrow::array::RecordBatch>) {
        let Some(rows) = rows else { return };
        let Some(keys) = crate::schema::col(rows, rows.num_columns().saturating_sub(2))
            .ok()
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::BinaryArray>())
        else {
            return;
        };
        let max = keys
            .iter()
            .flatten()
            .filter_map(|k| <[u8; 8]>::try_from(k).ok())
            .map(u64::from_be_bytes)
            .max();
        if let Some(max) = max {
            self.next_rowid.fetch_max(max + 1, Ordering::SeqCst);
        }
    }
}
