//! In-memory state of one committed table.
//!
//! A table is its chunk list (see [`crate::chunk`]: immutable sets of row
//! versions, on disk or in memory), its secondary indexes (see
//! [`crate::index`]) and its key index.
//!
//! The key index maps every row key to its newest committed version (or a
//! tombstone): that is what commit-time conflict checks compare against and
//! what point lookups use. It is built from the chunks' `_key`, `_hash` and
//! `_seq` columns the first time a table is written or looked up by key (not
//! on open, so reopening a large database and scanning it stays cheap).

use crate::chunk::{Chunk, ChunkData, ChunkList, RowLoc};
use crate::error::{Error, Result};
use crate::index::{RunStore, TableIndexes, add_rows};
use crate::keys::{ABSENT, tombstone_hash, version_hash};
use crate::locks::{read, write};
use crate::schema::TableDef;
use crate::segment::SegmentReader;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The newest committed version of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEntry {
    /// Commit that wrote it.
    pub seq: u64,
    /// Where the row is; `None` for a tombstone.
    pub loc: Option<RowLoc>,
    /// Version hash (see [`crate::keys`]).
    pub hash: u64,
}

impl KeyEntry {
    /// The before-image hash this entry stands for, as a transaction with
    /// `snapshot` sees it: a tombstone at or before the snapshot is
    /// "absent". Checkpoints forget such tombstones once no snapshot is
    /// older (the key map then has no entry: also absent), so the two must
    /// compare equal, or a re-insert of a deleted key would conflict with
    /// nothing. A tombstone *after* the snapshot keeps its own hash: a
    /// concurrent insert-and-delete of the key is still a conflict, and it
    /// cannot be forgotten while the snapshot is open.
    pub fn before_image(&self, snapshot: u64) -> u64 {
        if self.loc.is_none() && self.seq <= snapshot {
            ABSENT
        } else {
            self.hash
        }
    }
}

/// A committed table.
#[derive(Debug)]
pub struct TableState {
    /// Physical definition as the table was created (or loaded from the
    /// manifest). Its id, name and key columns never change; columns added
    /// since are in [`TableState::latest_def`] and [`TableState::def_at`].
    pub def: TableDef,
    /// Definitions after each committed ADD COLUMN, with the commit that
    /// made them, oldest first (see `schema.rs`, ADDED COLUMNS).
    added: RwLock<Vec<(u64, TableDef)>>,
    /// Commit that created the table.
    pub created_seq: u64,
    /// Commit that dropped it, if any.
    pub dropped_seq: RwLock<Option<u64>>,
    /// Its chunks.
    pub chunks: RwLock<ChunkList>,
    /// Newest version per key; built on first use (see [`TableState::keys`]).
    keys: RwLock<Option<KeyMap>>,
    /// Keys whose newest version is a tombstone (forgotten by checkpoints
    /// once no snapshot needs them).
    pub tombstones: RwLock<Vec<Box<[u8]>>>,
    /// Secondary indexes (see [`crate::index`]).
    pub(crate) indexes: TableIndexes,
    /// Last commit that changed the table's indexes or constraints; a writer
    /// whose snapshot is older conflicts.
    pub schema_seq: AtomicU64,
    /// Last commit that inserted or deleted rows of the table; a
    /// transaction that guarded the table ([`crate::Transaction::guard_rows`])
    /// and whose snapshot is older conflicts.
    pub write_seq: AtomicU64,
}

impl TableState {
    /// An empty table whose index runs are kept in `runs`.
    pub(crate) fn new(def: TableDef, created_seq: u64, runs: Arc<RunStore>) -> Self {
        Self {
            def,
            added: RwLock::new(Vec::new()),
            created_seq,
            dropped_seq: RwLock::new(None),
            chunks: RwLock::new(ChunkList::default()),
            keys: RwLock::new(None),
            tombstones: RwLock::new(Vec::new()),
            indexes: TableIndexes::new(runs),
            schema_seq: AtomicU64::new(0),
            write_seq: AtomicU64::new(0),
        }
    }

    /// The newest definition: the one new rows have, and whose fills serve
    /// every older chunk.
    pub fn latest_def(&self) -> Result<TableDef> {
        Ok(read(&self.added)?
            .last()
            .map_or_else(|| self.def.clone(), |(_, d)| d.clone()))
    }

    /// The definition a snapshot sees: the columns added at or before it.
    pub fn def_at(&self, snapshot: u64) -> Result<TableDef> {
        Ok(read(&self.added)?
            .iter()
            .rev()
            .find(|(seq, _)| *seq <= snapshot)
            .map_or_else(|| self.def.clone(), |(_, d)| d.clone()))
    }

    /// Makes `def` (the table's definition with columns added) the newest,
    /// from commit `seq` on. It must extend the newest one: the same id and
    /// key, its columns and fills a prefix.
    pub(crate) fn add_columns(&self, seq: u64, mut def: TableDef) -> Result<()> {
        // Committed now: stored rows may hold every column.
        def.uncommitted = 0;
        let latest = self.latest_def()?;
        let width = latest.width();
        let extends = def.id == latest.id
            && def.key_columns == latest.key_columns
            && def.width() > width
            && def
                .schema
                .fields()
                .iter()
                .take(width)
                .eq(latest.schema.fields().iter())
            && def.fills.len() >= latest.fills.len()
            && def.fills.iter().zip(&latest.fills).all(|(a, b)| a == b);
        if !extends {
            return Err(Error::InvalidArgument(format!(
                "ADD COLUMN of {} does not extend its definition",
                latest.name
            )));
        }
        write(&self.added)?.push((seq, def));
        Ok(())
    }

    /// True when the table exists at `snapshot`.
    pub fn visible_at(&self, snapshot: u64) -> Result<bool> {
        Ok(self.created_seq <= snapshot && read(&self.dropped_seq)?.is_none_or(|d| d > snapshot))
    }

    /// The key index, built from the chunks on first use. Opening a database
    /// does not read any key: a table that is only scanned never pays for it.
    pub fn keys(&self) -> Result<KeysRead<'_>> {
        self.ensure_index()?;
        Ok(KeysRead(read(&self.keys)?))
    }

    /// The index over `columns`, built if it was not.
    pub(crate) fn index(&self, columns: &[usize]) -> Result<Arc<crate::index::ColumnIndex>> {
        let index = self.indexes.get_or_create(columns)?;
        index.ensure_built(&self.chunks, &self.latest_def()?)?;
        Ok(index)
    }

    /// True once the key index exists.
    pub fn keys_built(&self) -> Result<bool> {
        Ok(read(&self.keys)?.is_some())
    }

    /// The key index if it was built, for maintenance that can skip it.
    pub fn keys_if_built(&self) -> Result<RwLockWriteGuard<'_, Option<KeyMap>>> {
        write(&self.keys)
    }

    fn ensure_index(&self) -> Result<()> {
        if read(&self.keys)?.is_some() {
            return Ok(());
        }
        let mut slot = write(&self.keys)?;
        if slot.is_none() {
            let mut map = KeyMap::new();
            for chunk in &read(&self.chunks)?.chunks {
                index_chunk(chunk, &mut map)?;
            }
            *slot = Some(map);
        }
        Ok(())
    }

    /// Applies one committed change: `deleted` keys become tombstones and
    /// `rows` become the newest versions of their keys, all at `seq`. A mem
    /// chunk takes its id from `new_id`; a loaded segment keeps its own.
    pub(crate) fn apply(
        &self,
        seq: u64,
        new_id: impl FnOnce() -> u64,
        rows: NewRows,
        deleted: &[Box<[u8]>],
        before: &[u64],
    ) -> Result<()> {
        // Rows of keys that had no version retire nothing: when the key
        // index is not built yet they need not build it (it is built from
        // the chunks, this one included, at its first use). That keeps bulk
        // loads and WAL replay of fresh rows free of key-index work.
        let fresh_only = deleted.is_empty() && before.iter().all(|b| *b == ABSENT);
        if !fresh_only {
            self.ensure_index()?;
        }
        let chunk = match rows {
            NewRows::None => None,
            NewRows::Mem(batch) if batch.num_rows() == 0 => None,
            NewRows::Mem(batch) => {
                let data = ChunkData::Mem { batch, seq };
                Some((Arc::new(Chunk::new(new_id(), data, BTreeMap::new())), None))
            }
            NewRows::Loaded { reader, batch } => {
                let id = reader.id;
                let data = ChunkData::Segment(reader);
                Some((Arc::new(Chunk::new(id, data, BTreeMap::new())), batch))
            }
        };
        // Lock order (see `Inner`): indexes, keys, chunks. Holding every index
        // and the key index while the chunk appears keeps a concurrent build
        // from indexing the chunk a second time.
        let def = self.latest_def()?;
        let indexes = self.indexes.list()?;
        let mut guards = indexes
            .iter()
            .map(|i| Ok((i, i.lock()?)))
            .collect::<Result<Vec<_>>>()?;
        let mut keys_slot = write(&self.keys)?;
        if let Some((chunk, batch)) = &chunk {
            for (index, guard) in &mut guards {
                let Some(entries) = guard.as_mut() else {
                    continue;
                };
                // A loaded segment's run was written before the commit
                // (`load.rs`): opened, never written, under the commit lock.
                let run = match chunk.data {
                    ChunkData::Segment(_) => {
                        self.indexes
                            .store()
                            .open_or_build(chunk, &index.columns, &def, false)?
                    }
                    ChunkData::Mem { .. } => None,
                };
                match (run, batch.as_ref().or(chunk.mem_batch())) {
                    (Some(run), _) => {
                        entries.runs.insert(chunk.id, run);
                    }
                    (None, Some(batch)) => {
                        add_rows(&mut entries.map, &index.columns, chunk.id, batch, &def)?;
                    }
                    (None, None) => entries.add_chunk(&index.columns, chunk, &def)?,
                }
            }
            write(&self.chunks)?.push(chunk.clone());
        }
        drop(guards);
        let Some(keys) = keys_slot.as_mut() else {
            return Ok(());
        };
        let chunks = read(&self.chunks)?;
        write(&self.tombstones)?.extend(deleted.iter().cloned());
        for key in deleted {
            retire(&chunks, keys.get(key), seq)?;
            keys.insert(
                key.clone(),
                KeyEntry {
                    seq,
                    loc: None,
                    hash: tombstone_hash(seq),
                },
            );
        }
        let Some((chunk, batch)) = chunk else {
            return Ok(());
        };
        let (key_arr, hash_arr) = match batch.as_ref().or(chunk.mem_batch()) {
            Some(batch) => {
                let n = batch.num_columns();
                (
                    crate::schema::col(batch, n.saturating_sub(2))?.clone(),
                    crate::schema::col(batch, n.saturating_sub(1))?.clone(),
                )
            }
            None => chunk.read_key_and_hash()?,
        };
        let bad = || Error::InvalidArgument("stored batch lacks _key/_hash".into());
        let key_arr = key_arr.as_binary_opt::<i32>().ok_or_else(bad)?;
        let hash_arr = hash_arr.as_primitive_opt::<UInt64Type>().ok_or_else(bad)?;
        for i in 0..key_arr.len() {
            let key: Box<[u8]> = key_arr.value(i).into();
            retire(&chunks, keys.get(&key), seq)?;
            let loc = RowLoc {
                chunk: chunk.id,
                row: i as u32,
            };
            keys.insert(
                key,
                KeyEntry {
                    seq,
                    loc: Some(loc),
                    hash: version_hash(seq, hash_arr.value(i)),
                },
            );
        }
        Ok(())
    }
}

/// The rows one committed change adds to a table (see [`TableState::apply`]).
pub(crate) enum NewRows {
    /// None.
    None,
    /// These rows (stored schema), as a mem chunk.
    Mem(RecordBatch),
    /// A segment the transaction wrote (`load.rs`); `batch` its rows while
    /// they are still in memory (at commit, not at replay).
    Loaded {
        reader: Arc<SegmentReader>,
        batch: Option<RecordBatch>,
    },
}

impl NewRows {
    /// The `_key` arrays of the rows.
    pub(crate) fn keys(&self) -> Result<Vec<ArrayRef>> {
        let of_batch = |b: &RecordBatch| -> Result<Vec<ArrayRef>> {
            Ok(vec![
                crate::schema::col(b, b.num_columns().saturating_sub(2))?.clone(),
            ])
        };
        match self {
            NewRows::None => Ok(Vec::new()),
            NewRows::Mem(batch)
            | NewRows::Loaded {
                batch: Some(batch), ..
            } => of_batch(batch),
            NewRows::Loaded {
                reader,
                batch: None,
            } => {
                let key_col = (reader.footer.columns as usize).saturating_sub(3);
                (0..reader.footer.row_groups.len())
                    .map(|g| reader.read_column_uncached(g, key_col))
                    .collect()
            }
        }
    }
}

/// The key index of a table: row key → newest version.
pub type KeyMap = ahash::AHashMap<Box<[u8]>, KeyEntry>;

static EMPTY_KEYS: LazyLock<KeyMap> = LazyLock::new(KeyMap::new);

/// Read access to a built key index.
pub struct KeysRead<'a>(RwLockReadGuard<'a, Option<KeyMap>>);

impl Deref for KeysRead<'_> {
    type Target = KeyMap;
    fn deref(&self) -> &KeyMap {
        self.0.as_ref().unwrap_or(&EMPTY_KEYS)
    }
}

/// Adds the live rows of one chunk to `map`.
fn index_chunk(chunk: &Chunk, map: &mut KeyMap) -> Result<()> {
    let deletes = chunk.delete_map()?;
    let mut add = |row: u32, key: &[u8], seq: u64, content: u64| {
        if !deletes.contains_key(&row) {
            let loc = RowLoc {
                chunk: chunk.id,
                row,
            };
            map.insert(
                key.into(),
                KeyEntry {
                    seq,
                    loc: Some(loc),
                    hash: version_hash(seq, content),
                },
            );
        }
    };
    let corrupt = || {
        Error::corruption(
            format!("chunk {}", chunk.id),
            0,
            "hidden column has the wrong type",
        )
    };
    match &chunk.data {
        ChunkData::Mem { batch, seq } => {
            let n = batch.num_columns();
            let key = crate::schema::col(batch, n.saturating_sub(2))?
                .as_binary_opt::<i32>()
                .ok_or_else(corrupt)?;
            let hash = crate::schema::col(batch, n.saturating_sub(1))?
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(corrupt)?;
            for i in 0..batch.num_rows() {
                add(i as u32, key.value(i), *seq, hash.value(i));
            }
        }
        ChunkData::Segment(seg) => {
            let ncols = seg.footer.columns as usize;
            let mut row0 = 0u32;
            for (g, meta) in seg.footer.row_groups.iter().enumerate() {
                let key = seg.read_column_uncached(g, ncols - 3)?;
                let hash = seg.read_column_uncached(g, ncols - 2)?;
                let seq = seg.read_column_uncached(g, ncols - 1)?;
                let key = key.as_binary_opt::<i32>().ok_or_else(corrupt)?;
                let hash = hash.as_primitive_opt::<UInt64Type>().ok_or_else(corrupt)?;
                let seq = seq.as_primitive_opt::<UInt64Type>().ok_or_else(corrupt)?;
                for i in 0..meta.rows as usize {
                    if !key.is_null(i) {
                        add(row0 + i as u32, key.value(i), seq.value(i), hash.value(i));
                    }
                }
                row0 += meta.rows;
            }
        }
    }
    Ok(())
}

/// Marks the row of a superseded version deleted at `seq`.
fn retire(chunks: &ChunkList, entry: Option<&KeyEntry>, seq: u64) -> Result<()> {
    if let Some(loc) = entry.and_then(|e| e.loc)
        && let Some(chunk) = chunks.get(loc.chunk)
    {
        chunk.mark_deleted(loc.row, seq)?;
    }
    Ok(())
}
