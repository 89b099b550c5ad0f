//! The engine handle and the state it shares with its transactions.
//!
//! [`Engine`] is a cheap handle on one [`Inner`]; transactions hold the same
//! `Arc<Inner>`. How a commit runs is described in [`crate::commit`], how a
//! checkpoint runs in [`crate::checkpoint`], how a database is opened in
//! [`crate::recovery`].

use crate::checkpoint::Checkpointer;
use crate::error::{CheckpointError, Error, OpenError, Result};
use crate::index::RunStore;
use crate::locks::{read, write};
use crate::manifest::Manifest;
use crate::mvcc::Snapshots;
use crate::segment::ChunkCache;
use crate::storage::{FileStorage, LockGuard, MemStorage, Storage};
use crate::table::TableState;
use crate::txn::Transaction;
use crate::wal::WalWriter;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Tunables of an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Checkpoint automatically once the WAL, plus the segments loaded since
    /// the last checkpoint (`load.rs`), is larger than this many bytes.
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
    /// Open for reading only (with a read-only storage, e.g.
    /// [`crate::storage::FileStorage::open_read_only`]): nothing on disk is
    /// written — recovery repairs nothing (a torn WAL tail is skipped in
    /// memory, unreferenced files stay), there is no checkpoint — and every
    /// write fails with `ReadOnly`. A new database cannot be created so.
    pub read_only: bool,
    /// A committing transaction that wrote at least this many rows to one
    /// table writes them straight into a new segment, which its WAL record
    /// only names (write-once loads, see `load.rs`); smaller ones go into
    /// the WAL and reach a segment at the next checkpoint.
    pub direct_load_rows: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            checkpoint_wal_bytes: 64 << 20,
            cache_bytes: 1 << 30,
            checkpoint_on_close: false,
            background_checkpoints: true,
            read_only: false,
            direct_load_rows: 256 * 1024,
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

/// The table map: every committed table by id, dropped ones included until
/// no snapshot can see them.
pub(crate) type Tables = BTreeMap<u64, Arc<TableState>>;

/// State shared by the engine handle and its transactions.
///
/// Fields are private: other modules reach them through the methods below,
/// which take the right lock and name what they do. Recovery builds it with
/// [`Inner::new`] from what it read on disk.
///
/// WHO GUARDS WHAT
///
/// | field / state                         | guarded by                         | written by                  |
/// |---------------------------------------|------------------------------------|-----------------------------|
/// | `checkpoint_lock` (`()`)              | itself: one checkpoint at a time   | checkpoint, integrity check |
/// | `commit_lock` → `CommitState.last_seq`| the commit lock                    | commit (checkpoint A/C read it) |
/// | `tables` (the map)                    | its `RwLock`; changed only under the commit lock | apply (CREATE), checkpoint C (gone tables) |
/// | `catalog` (versions)                  | its `RwLock`; changed only under the commit lock | apply (DDL), checkpoint C (prune) |
/// | per table: `dropped_seq`, `schema_seq`, `write_seq` | their lock / atomic; changed only under the commit lock | apply |
/// | per table: index list, each index, key index, chunk list, tombstones, each chunk's delete map | their own `RwLock`s; changed under the commit lock, except the index list, which `Engine::forget_index` and first-use builds also change | apply, checkpoint C.4; builds on first use |
/// | `wal`                                 | its own locks (leaf)               | commit, checkpoint          |
/// | `snapshots`                           | its own lock (leaf)                | transactions, checkpoint A  |
/// | `visible_seq`                         | atomic, only grows ([`Inner::publish`]) | commit, checkpoint A   |
/// | `checkpoint_seq`                      | atomic; stored under the commit lock | checkpoint C              |
/// | `next_id`, `next_rowid`, `next_txn`   | atomic counters                    | anyone allocating           |
/// | `checkpointer` (thread slot)          | its own lock (leaf)                | threshold checkpoints       |
/// | `loading` (segments of uncommitted loads) | its own lock (leaf)            | loads (`load.rs`)           |
/// | `loaded_bytes`                        | atomic counter                     | commit (adds), checkpoint C (subtracts what phase A counted) |
/// | `storage`, `options`, `encryption`, `cache`, `runs` | immutable after open (the cache and the run store's counters lock themselves, as leaves) | recovery  |
///
/// LOCK ORDER (a thread holding one lock only takes locks further down):
///
/// 1. checkpoint lock — never taken while holding the commit lock;
/// 2. commit lock;
/// 3. the table map;
/// 4. per table: index list (read), each index (list order), key index,
///    chunk list, tombstones, a chunk's delete map. Apply and checkpoint
///    hold the index list while they change chunks, so an index created
///    concurrently is built after the change (`index.rs`). One exception:
///    integrity's index check holds the chunk list while it locks each
///    index, which is safe only because it holds the commit lock, which
///    every writer of a chunk list needs;
/// 5. leaves, which take nothing while held: the catalog history, a
///    table's `dropped_seq`, the WAL writer's locks, the snapshot registry,
///    the checkpointer's thread slot, the chunk cache, the set of
///    segments being loaded.
///
/// Readers (scans, lookups, integrity's table walk) take only levels 3–5, in
/// the same order.
#[derive(Debug)]
pub(crate) struct Inner {
    storage: Arc<dyn Storage>,
    options: EngineOptions,
    wal: WalWriter,
    commit_lock: Mutex<CommitState>,
    checkpoint_lock: Mutex<()>,
    visible_seq: AtomicU64,
    next_id: AtomicU64,
    next_rowid: AtomicU64,
    next_txn: AtomicU64,
    tables: RwLock<Tables>,
    catalog: RwLock<CatalogHistory>,
    snapshots: Snapshots,
    checkpoint_seq: AtomicU64,
    encryption: Vec<u8>,
    cache: Arc<ChunkCache>,
    runs: Arc<RunStore>,
    checkpointer: Checkpointer,
    /// Segments being written by loads that have not committed yet
    /// (`load.rs`): not orphans, though nothing names them yet.
    loading: Mutex<BTreeSet<u64>>,
    /// Bytes of segments loaded since the last checkpoint (`load.rs`):
    /// counted with the WAL against `checkpoint_wal_bytes`.
    loaded_bytes: AtomicU64,
    /// Engine handles and transactions alive (a background checkpoint's
    /// reference does not count): the last one to go waits for that
    /// checkpoint, so the database is closed — its LOCK released — when the
    /// application's last handle is gone.
    handles: AtomicUsize,
    _lock: Box<dyn LockGuard>,
}

/// What the commit lock guards.
#[derive(Debug, Default)]
pub(crate) struct CommitState {
    /// Sequence of the last commit appended to the WAL (it may not be
    /// durable or visible yet).
    pub last_seq: u64,
}

/// The durable state recovery found, from which an [`Inner`] starts.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The manifest: checkpoint sequence, id counters, catalog, key check.
    pub manifest: Manifest,
    /// Tables with the chunk lists of their live segments.
    pub tables: Tables,
    /// The chunk cache the segments were opened with.
    pub cache: Arc<ChunkCache>,
    /// Where the tables' index runs are kept.
    pub runs: Arc<RunStore>,
    /// Last commit in the WAL (the manifest's when it holds none).
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
    /// `Locked` if another process holds it, `IncompatibleVersion` or
    /// `Storage(Corruption)` for bad files (nothing is modified then),
    /// `Storage(Io)`.
    pub fn open_dir(path: impl AsRef<Path>, options: EngineOptions) -> Result<Self, OpenError> {
        let dir = path.as_ref();
        let storage = FileStorage::new(dir).map_err(Error::io(&dir.display().to_string()))?;
        Self::open(Arc::new(storage), options)
    }

    /// A fresh in-memory database.
    ///
    /// # Errors
    /// Only if the in-memory storage cannot be set up (a bug).
    pub fn open_memory() -> Result<Self, OpenError> {
        Self::open(Arc::new(MemStorage::new()), EngineOptions::default())
    }

    /// Opens the database held by `storage`, running crash recovery.
    ///
    /// # Errors
    /// As [`Engine::open_dir`].
    pub fn open(storage: Arc<dyn Storage>, options: EngineOptions) -> Result<Self, OpenError> {
        let inner = crate::recovery::open(storage, options)?;
        inner.acquire_handle();
        Ok(Engine {
            inner: Arc::new(inner),
        })
    }

    /// Starts a read-write transaction (read-only on a read-only open).
    pub fn begin(&self) -> Transaction {
        Transaction::new(self.inner.clone(), self.is_read_only())
    }

    /// True when the database was opened read-only
    /// ([`EngineOptions::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.inner.options().read_only
    }

    /// Starts a read-only transaction.
    pub fn begin_read_only(&self) -> Transaction {
        Transaction::new(self.inner.clone(), true)
    }

    /// Writes all committed data to segments, saves the manifest and empties
    /// the WAL.
    ///
    /// # Errors
    /// `Storage`: I/O failures (which poison the database for writes; the
    /// committed data stays intact), or the database was poisoned already.
    pub fn checkpoint(&self) -> Result<(), CheckpointError> {
        if self.is_read_only() {
            return Err(CheckpointError::ReadOnly);
        }
        Ok(crate::checkpoint::run(&self.inner)?)
    }

    /// The newest visible commit sequence.
    pub fn visible_seq(&self) -> u64 {
        self.inner.visible_seq()
    }

    /// Sequence of the last checkpoint.
    pub fn checkpoint_seq(&self) -> u64 {
        self.inner.checkpoint_seq()
    }

    /// Current WAL size in bytes.
    pub fn wal_len(&self) -> u64 {
        self.inner.wal().len()
    }

    /// fdatasync calls made on the WAL since open.
    pub fn wal_sync_count(&self) -> u64 {
        self.inner.wal().sync_count()
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
        self.inner.checkpointer().join();
    }

    /// Fails with `Poisoned` if an earlier I/O failure poisoned the database.
    pub fn check_healthy(&self) -> Result<()> {
        self.inner.wal().check()
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        self.inner.storage()
    }

    /// Releases the memory of the index over `columns` of a table and
    /// removes its runs (after `DROP INDEX`). A later use rebuilds it.
    pub fn forget_index(&self, table_id: u64, columns: &[usize]) -> Result<()> {
        if let Some(t) = self.inner.tables()?.get(&table_id) {
            t.indexes.remove(columns)?;
            let segments: Vec<u64> = read(&t.chunks)?
                .chunks
                .iter()
                .filter(|c| matches!(c.data, crate::chunk::ChunkData::Segment(_)))
                .map(|c| c.id)
                .collect();
            self.inner.runs().remove_index_runs(&segments, columns)?;
        }
        Ok(())
    }

    /// Declares that the catalog has an index over `columns` of a
    /// committed table, without building it: checkpoints then write its
    /// runs for the segments they write (`index_run.rs`), so its first use
    /// after a reopen opens runs instead of rebuilding. Returns false (and
    /// does nothing) when the table is not committed or the columns are not
    /// among its committed ones (an open transaction's CREATE TABLE or ADD
    /// COLUMN).
    pub fn declare_index(&self, table_id: u64, columns: &[usize]) -> Result<bool> {
        let Some(table) = self.inner.table(table_id)? else {
            return Ok(false);
        };
        if table.latest_def()?.check_columns(columns).is_err() {
            return Ok(false);
        }
        table.indexes.get_or_create(columns)?;
        Ok(true)
    }

    /// `(entries, resident bytes)` of every built secondary index: what
    /// indexes cost in memory (runs keep their block fences resident, plus
    /// the blocks lookups read, in a cache bounded at 64 MiB; rows
    /// committed since the last checkpoint are in memory maps).
    pub fn index_memory(&self) -> Result<(u64, u64)> {
        let mut total = (0, 0);
        for table in self.inner.tables()?.values() {
            for index in table.indexes.list()?.iter() {
                let (n, b) = index.memory()?;
                total.0 += n;
                total.1 += b;
            }
        }
        // Plus the blocks cached for lookups (bounded, shared).
        total.1 += self.inner.runs().cached_bytes() as u64;
        Ok(total)
    }

    /// What the persisted index runs did since open: opened from their
    /// files, written, rebuilt because they were damaged or stale.
    pub fn index_run_stats(&self) -> crate::IndexRunStats {
        self.inner.runs().stats()
    }

    /// Warnings since open, oldest first: damaged index runs rebuilt from
    /// their segments, runs that could not be written. Nothing here is an
    /// error: every answer was still right.
    pub fn warnings(&self) -> Vec<String> {
        self.inner.runs().warnings()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.inner.release_handle();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.options().checkpoint_on_close
            && !self.wal().is_empty()
            && self.wal().check().is_ok()
        {
            // Nothing can report an error from here; a failed checkpoint
            // leaves the WAL for recovery, as after a crash.
            let _ = crate::checkpoint::run(self);
        }
    }
}

impl Inner {
    /// The state of an engine opened on `storage` (its LOCK held by `lock`)
    /// at the recovered state, before WAL replay: commits up to `last_seq`
    /// count as applied and visible once replay has applied them.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        lock: Box<dyn LockGuard>,
        options: EngineOptions,
        wal: WalWriter,
        recovered: Recovered,
    ) -> Self {
        let Recovered {
            manifest,
            tables,
            cache,
            runs,
            last_seq,
        } = recovered;
        let mut catalog = CatalogHistory::default();
        catalog
            .versions
            .push((manifest.catalog_seq, Arc::new(manifest.catalog)));
        Self {
            storage,
            options,
            wal,
            commit_lock: Mutex::new(CommitState { last_seq }),
            checkpoint_lock: Mutex::new(()),
            visible_seq: AtomicU64::new(last_seq),
            next_id: AtomicU64::new(manifest.next_id.max(1)),
            next_rowid: AtomicU64::new(manifest.next_rowid.max(1)),
            next_txn: AtomicU64::new(1),
            tables: RwLock::new(tables),
            catalog: RwLock::new(catalog),
            snapshots: Snapshots::default(),
            checkpoint_seq: AtomicU64::new(manifest.checkpoint_seq),
            encryption: manifest.encryption,
            cache,
            runs,
            checkpointer: Checkpointer::default(),
            loading: Mutex::new(BTreeSet::new()),
            loaded_bytes: AtomicU64::new(0),
            handles: AtomicUsize::new(0),
            _lock: lock,
        }
    }

    /// Turns checkpoint-on-close on or off; recovery turns it on only once
    /// the open has fully succeeded, so dropping a half-opened engine leaves
    /// the files as they are.
    pub(crate) fn set_checkpoint_on_close(&mut self, on: bool) {
        self.options.checkpoint_on_close = on;
    }

    /// The storage backend.
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Where the tables' index runs are kept (`index_run.rs`).
    pub(crate) fn runs(&self) -> &Arc<RunStore> {
        &self.runs
    }

    /// The options the engine was opened with.
    pub(crate) fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The WAL writer.
    pub(crate) fn wal(&self) -> &WalWriter {
        &self.wal
    }

    /// Takes the commit lock (level 2 of the lock order).
    pub(crate) fn lock_commits(&self) -> Result<MutexGuard<'_, CommitState>> {
        self.commit_lock.lock().map_err(|_| Error::Poisoned {
            cause: "commit lock poisoned".into(),
        })
    }

    /// Takes the checkpoint lock (level 1: never while holding the commit
    /// lock).
    pub(crate) fn lock_checkpoints(&self) -> Result<MutexGuard<'_, ()>> {
        self.checkpoint_lock.lock().map_err(|_| Error::Poisoned {
            cause: "checkpoint lock poisoned".into(),
        })
    }

    /// The newest visible commit.
    pub(crate) fn visible_seq(&self) -> u64 {
        self.visible_seq.load(Ordering::SeqCst)
    }

    /// Makes every commit up to `durable` visible (never moves back).
    pub(crate) fn publish(&self, durable: u64) {
        self.visible_seq.fetch_max(durable, Ordering::SeqCst);
    }

    /// Registers and returns a snapshot at the newest visible commit (see
    /// [`Snapshots::take`]).
    pub(crate) fn take_snapshot(&self) -> u64 {
        self.snapshots.take(&self.visible_seq)
    }

    /// The registry of open snapshots.
    pub(crate) fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// A fresh table or chunk id.
    pub(crate) fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Keeps the id counter above `id` (replay of a CREATE).
    pub(crate) fn reserve_id(&self, id: u64) {
        self.next_id.fetch_max(id + 1, Ordering::SeqCst);
    }

    /// The next id to be allocated (saved in the manifest).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst)
    }

    /// `n` consecutive row ids for a table without a primary key; returns
    /// the first.
    pub(crate) fn allocate_rowids(&self, n: u64) -> u64 {
        self.next_rowid.fetch_add(n, Ordering::SeqCst)
    }

    /// Keeps the row-id counter above `rowid` (replay).
    pub(crate) fn reserve_rowid(&self, rowid: u64) {
        self.next_rowid.fetch_max(rowid + 1, Ordering::SeqCst);
    }

    /// The next row id to be allocated (saved in the manifest).
    pub(crate) fn next_rowid(&self) -> u64 {
        self.next_rowid.load(Ordering::SeqCst)
    }

    /// A fresh transaction id.
    pub(crate) fn allocate_txn_id(&self) -> u64 {
        self.next_txn.fetch_add(1, Ordering::SeqCst)
    }

    /// The table map, read-locked (level 3).
    pub(crate) fn tables(&self) -> Result<RwLockReadGuard<'_, Tables>> {
        read(&self.tables)
    }

    /// The table map, write-locked: only under the commit lock.
    pub(crate) fn tables_mut(&self) -> Result<RwLockWriteGuard<'_, Tables>> {
        write(&self.tables)
    }

    /// The committed table with `id`, if any (dropped ones included).
    pub(crate) fn table(&self, id: u64) -> Result<Option<Arc<TableState>>> {
        Ok(self.tables()?.get(&id).cloned())
    }

    /// The catalog history, read-locked (a leaf of the lock order).
    pub(crate) fn catalog(&self) -> Result<RwLockReadGuard<'_, CatalogHistory>> {
        read(&self.catalog)
    }

    /// The catalog history, write-locked: only under the commit lock.
    pub(crate) fn catalog_mut(&self) -> Result<RwLockWriteGuard<'_, CatalogHistory>> {
        write(&self.catalog)
    }

    /// The catalog blob at `snapshot`.
    pub fn catalog_at(&self, snapshot: u64) -> Result<Arc<Vec<u8>>> {
        Ok(self.catalog()?.at(snapshot).1)
    }

    /// Sequence of the last checkpoint.
    pub(crate) fn checkpoint_seq(&self) -> u64 {
        self.checkpoint_seq.load(Ordering::SeqCst)
    }

    /// Records a finished checkpoint (phase C, under the commit lock).
    pub(crate) fn set_checkpoint_seq(&self, seq: u64) {
        self.checkpoint_seq.store(seq, Ordering::SeqCst);
    }

    /// The encryption key check saved in the manifest (empty: plaintext).
    pub(crate) fn encryption(&self) -> &[u8] {
        &self.encryption
    }

    /// The decoded-chunk cache segments are opened with.
    pub(crate) fn cache(&self) -> &Arc<ChunkCache> {
        &self.cache
    }

    /// The background checkpoint thread.
    pub(crate) fn checkpointer(&self) -> &Checkpointer {
        &self.checkpointer
    }

    /// Counts `bytes` more loaded since the last checkpoint.
    pub(crate) fn add_loaded_bytes(&self, bytes: u64) {
        self.loaded_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Bytes loaded since the last checkpoint.
    pub(crate) fn loaded_bytes(&self) -> u64 {
        self.loaded_bytes.load(Ordering::SeqCst)
    }

    /// A checkpoint covered `bytes` of the loaded bytes (those counted when
    /// it started).
    pub(crate) fn checkpointed_loaded_bytes(&self, bytes: u64) {
        let _ = self
            .loaded_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// What a threshold checkpoint is measured by: the WAL's length plus
    /// the bytes loaded since the last checkpoint.
    pub(crate) fn uncheckpointed_bytes(&self) -> u64 {
        self.wal.len().saturating_add(self.loaded_bytes())
    }

    /// Segments being written by loads not committed yet (see `load.rs`).
    pub(crate) fn loading(&self) -> Result<MutexGuard<'_, BTreeSet<u64>>> {
        crate::locks::lock(&self.loading)
    }

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
}
