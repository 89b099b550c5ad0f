//! In-memory state of one committed table.
//!
//! A table is a list of *chunks*, each an immutable set of row versions:
//!
//! ```text
//!   chunks:  [seg 12 (on disk)] [seg 31 (on disk)] [mem 40] [mem 41] …
//!             ▲ written by checkpoints               ▲ one per committed
//!                                                      transaction since
//! ```
//!
//! Rows are never changed in place. An update or delete marks the old row of
//! its chunk as *deleted at* the deleting commit (`deletes`), and an update
//! adds the new version to the committing transaction's mem chunk. A row is
//! visible to a snapshot `S` when `created_seq <= S < deleted_seq`.
//!
//! The key index maps every row key to its newest committed version (or a
//! tombstone): that is what commit-time conflict checks compare against and
//! what point lookups use. It is rebuilt from the segments' `_key`, `_hash`
//! and `_seq` columns on open.

use crate::error::{Error, Result};
use crate::keys::{tombstone_hash, version_hash};
use crate::schema::TableDef;
use crate::segment::SegmentReader;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Where a row version lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowLoc {
    /// Chunk id.
    pub chunk: u64,
    /// Row number inside the chunk.
    pub row: u32,
}

/// The rows of a chunk.
#[derive(Debug)]
pub enum ChunkData {
    /// Rows committed by one transaction since the last checkpoint (stored
    /// schema: user columns, `_key`, `_hash`).
    Mem {
        /// The rows.
        batch: RecordBatch,
        /// Commit sequence of every row.
        seq: u64,
    },
    /// Rows in a segment file.
    Segment(Arc<SegmentReader>),
}

/// An immutable set of row versions plus the commits that deleted some.
#[derive(Debug)]
pub struct Chunk {
    /// Unique id.
    pub id: u64,
    /// The rows.
    pub data: ChunkData,
    /// Row count.
    pub rows: u32,
    deletes: RwLock<BTreeMap<u32, u64>>,
}

fn lock_err() -> Error {
    Error::Poisoned {
        cause: "a lock was poisoned by a panicking thread".into(),
    }
}

pub(crate) fn read<T>(l: &RwLock<T>) -> Result<RwLockReadGuard<'_, T>> {
    l.read().map_err(|_| lock_err())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> Result<RwLockWriteGuard<'_, T>> {
    l.write().map_err(|_| lock_err())
}

impl Chunk {
    /// A chunk with known deletes.
    pub fn new(id: u64, data: ChunkData, deletes: BTreeMap<u32, u64>) -> Self {
        let rows = match &data {
            ChunkData::Mem { batch, .. } => batch.num_rows() as u32,
            ChunkData::Segment(s) => s.footer.rows as u32,
        };
        Self {
            id,
            data,
            rows,
            deletes: RwLock::new(deletes),
        }
    }

    /// Marks `row` deleted by commit `seq`.
    pub fn mark_deleted(&self, row: u32, seq: u64) -> Result<()> {
        write(&self.deletes)?.insert(row, seq);
        Ok(())
    }

    /// Deletes of rows in `range` that are visible at `snapshot` (their
    /// deleting commit is at or before it).
    pub fn deleted_in(&self, start: u32, end: u32, snapshot: u64) -> Result<Vec<u32>> {
        Ok(read(&self.deletes)?
            .range(start..end)
            .filter(|(_, seq)| **seq <= snapshot)
            .map(|(row, _)| *row)
            .collect())
    }

    /// All deletes, sorted by row.
    pub fn deletes(&self) -> Result<Vec<(u32, u64)>> {
        Ok(read(&self.deletes)?.iter().map(|(r, s)| (*r, *s)).collect())
    }
}

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

/// The chunks of a table, in order, with an id index.
#[derive(Debug, Default, Clone)]
pub struct ChunkList {
    /// Chunks, oldest first.
    pub chunks: Vec<Arc<Chunk>>,
    by_id: HashMap<u64, Arc<Chunk>>,
}

impl ChunkList {
    /// Builds a list.
    pub fn new(chunks: Vec<Arc<Chunk>>) -> Self {
        let by_id = chunks.iter().map(|c| (c.id, c.clone())).collect();
        Self { chunks, by_id }
    }

    /// Appends a chunk.
    pub fn push(&mut self, chunk: Arc<Chunk>) {
        self.by_id.insert(chunk.id, chunk.clone());
        self.chunks.push(chunk);
    }

    /// The chunk with `id`.
    pub fn get(&self, id: u64) -> Option<&Arc<Chunk>> {
        self.by_id.get(&id)
    }
}

/// A committed table.
#[derive(Debug)]
pub struct TableState {
    /// Physical definition.
    pub def: TableDef,
    /// Commit that created the table.
    pub created_seq: u64,
    /// Commit that dropped it, if any.
    pub dropped_seq: RwLock<Option<u64>>,
    /// Its chunks.
    pub chunks: RwLock<ChunkList>,
    /// Newest version per key.
    pub keys: RwLock<HashMap<Box<[u8]>, KeyEntry>>,
    /// Keys whose newest version is a tombstone (forgotten by checkpoints
    /// once no snapshot needs them).
    pub tombstones: RwLock<Vec<Box<[u8]>>>,
}

impl TableState {
    /// An empty table.
    pub fn new(def: TableDef, created_seq: u64) -> Self {
        Self {
            def,
            created_seq,
            dropped_seq: RwLock::new(None),
            chunks: RwLock::new(ChunkList::default()),
            keys: RwLock::new(HashMap::new()),
            tombstones: RwLock::new(Vec::new()),
        }
    }

    /// True when the table exists at `snapshot`.
    pub fn visible_at(&self, snapshot: u64) -> Result<bool> {
        Ok(self.created_seq <= snapshot && read(&self.dropped_seq)?.is_none_or(|d| d > snapshot))
    }

    /// Adds the rows of a segment to the key index (used on open).
    pub fn index_segment(&self, chunk: &Chunk) -> Result<()> {
        let ChunkData::Segment(seg) = &chunk.data else {
            return Ok(());
        };
        let ncols = seg.footer.columns as usize;
        let (key_col, hash_col, seq_col) = (ncols - 3, ncols - 2, ncols - 1);
        let deletes = read(&chunk.deletes)?;
        let mut keys = write(&self.keys)?;
        let mut row0 = 0u32;
        for (g, meta) in seg.footer.row_groups.iter().enumerate() {
            let key = seg.read_column_uncached(g, key_col)?;
            let hash = seg.read_column_uncached(g, hash_col)?;
            let seq = seg.read_column_uncached(g, seq_col)?;
            let corrupt = || Error::corruption(seg.name(), 0, "hidden column has the wrong type");
            let key = key.as_binary_opt::<i32>().ok_or_else(corrupt)?;
            let hash = hash.as_primitive_opt::<UInt64Type>().ok_or_else(corrupt)?;
            let seq = seq.as_primitive_opt::<UInt64Type>().ok_or_else(corrupt)?;
            for i in 0..meta.rows as usize {
                let row = row0 + i as u32;
                if deletes.contains_key(&row) || key.is_null(i) {
                    continue;
                }
                let seq = seq.value(i);
                keys.insert(
                    key.value(i).into(),
                    KeyEntry {
                        seq,
                        loc: Some(RowLoc {
                            chunk: chunk.id,
                            row,
                        }),
                        hash: version_hash(seq, hash.value(i)),
                    },
                );
            }
            row0 += meta.rows;
        }
        Ok(())
    }

    /// Applies one committed change: `deleted` keys become tombstones and the
    /// rows of `batch` (stored schema) become the newest versions, all at `seq`.
    pub fn apply(
        &self,
        seq: u64,
        chunk_id: u64,
        batch: Option<RecordBatch>,
        deleted: &[Box<[u8]>],
    ) -> Result<()> {
        let batch = batch.filter(|b| b.num_rows() > 0);
        if let Some(batch) = &batch {
            let data = ChunkData::Mem {
                batch: batch.clone(),
                seq,
            };
            write(&self.chunks)?.push(Arc::new(Chunk::new(chunk_id, data, BTreeMap::new())));
        }
        let chunks = read(&self.chunks)?;
        let mut keys = write(&self.keys)?;
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
        let Some(batch) = batch else {
            return Ok(());
        };
        let ncols = batch.num_columns();
        let bad = || Error::InvalidArgument("stored batch lacks _key/_hash".into());
        let key_arr = batch
            .column(ncols.saturating_sub(2))
            .as_binary_opt::<i32>()
            .ok_or_else(bad)?;
        let hash_arr = batch
            .column(ncols.saturating_sub(1))
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(bad)?;
        for i in 0..batch.num_rows() {
            let key: Box<[u8]> = key_arr.value(i).into();
            retire(&chunks, keys.get(&key), seq)?;
            let loc = RowLoc {
                chunk: chunk_id,
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

/// Marks the row of a superseded version deleted at `seq`.
fn retire(chunks: &ChunkList, entry: Option<&KeyEntry>, seq: u64) -> Result<()> {
    if let Some(loc) = entry.and_then(|e| e.loc)
        && let Some(chunk) = chunks.get(loc.chunk)
    {
        chunk.mark_deleted(loc.row, seq)?;
    }
    Ok(())
}
