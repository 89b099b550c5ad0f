//! Chunks and row locations: where committed row versions live.
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
//! its chunk as *deleted at* the deleting commit (its delete map), and an
//! update adds the new version to the committing transaction's mem chunk. A
//! row is visible to a snapshot `S` when `created_seq <= S < deleted_seq`.
//!
//! A [`RowLoc`] (chunk id, row) names one version. Checkpoints rewrite chunks
//! into new segments under new ids, so a location is only meaningful under
//! the chunk list it was read from: the key index and the secondary indexes
//! are re-pointed in the same step that swaps the list (`checkpoint.rs`).
//!
//! This module depends on nothing above it: the table (`table.rs`) and its
//! indexes (`index.rs`) both build on it.

use crate::error::{Error, Result};
use crate::locks::{read, write};
use crate::schema::TableDef;
use crate::segment::SegmentReader;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{interleave, take};
use arrow::datatypes::UInt64Type;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};

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

    /// The delete map (row → deleting commit), read-locked.
    pub(crate) fn delete_map(&self) -> Result<RwLockReadGuard<'_, BTreeMap<u32, u64>>> {
        read(&self.deletes)
    }

    /// All deletes, sorted by row.
    pub fn deletes(&self) -> Result<Vec<(u32, u64)>> {
        Ok(read(&self.deletes)?.iter().map(|(r, s)| (*r, *s)).collect())
    }

    /// The commit that deleted `row`, if any.
    pub fn deleted_seq(&self, row: u32) -> Result<Option<u64>> {
        Ok(read(&self.deletes)?.get(&row).copied())
    }

    /// The row group holding `row` of a segment chunk: `(group, first_row)`.
    pub(crate) fn locate(&self, row: u32) -> Option<(usize, u32)> {
        let ChunkData::Segment(seg) = &self.data else {
            return None;
        };
        let mut first = 0u32;
        for (g, meta) in seg.footer.row_groups.iter().enumerate() {
            if row < first + meta.rows {
                return Some((g, first));
            }
            first += meta.rows;
        }
        None
    }

    /// The commit that created `row`.
    pub fn created_seq(&self, row: u32) -> Result<u64> {
        match &self.data {
            ChunkData::Mem { seq, .. } => Ok(*seq),
            ChunkData::Segment(seg) => {
                let (g, first) = self.locate(row).ok_or_else(|| self.no_row(row))?;
                let meta = seg
                    .footer
                    .row_groups
                    .get(g)
                    .ok_or_else(|| self.no_row(row))?;
                if meta.min_seq == meta.max_seq {
                    return Ok(meta.min_seq);
                }
                let seqs = seg.read_column(g, seg.footer.columns as usize - 1)?;
                let seqs = seqs
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(|| self.no_row(row))?;
                let i = (row - first) as usize;
                if i >= seqs.len() {
                    return Err(self.no_row(row));
                }
                Ok(seqs.value(i))
            }
        }
    }

    fn no_row(&self, row: u32) -> Error {
        Error::corruption(format!("chunk {}", self.id), 0, format!("no row {row}"))
    }

    /// How many user columns the chunk stores: those of the definition it
    /// was written under, a prefix of the table's (see `schema.rs`, ADDED
    /// COLUMNS). Its hidden columns follow them.
    pub fn width(&self) -> usize {
        match &self.data {
            ChunkData::Mem { batch, .. } => batch.num_columns().saturating_sub(2),
            ChunkData::Segment(seg) => (seg.footer.columns as usize).saturating_sub(3),
        }
    }

    /// Stored columns `cols` of the given rows (sorted ascending), for a
    /// reader of `def`: user columns `0..def.width()`, or [`KEY`]. A user
    /// column the chunk is too narrow for reads as its fill.
    pub fn read_rows(&self, def: &TableDef, cols: &[usize], rows: &[u32]) -> Result<Vec<ArrayRef>> {
        let width = self.width();
        let mut out: Vec<Option<ArrayRef>> = vec![None; cols.len()];
        let mut physical = Vec::with_capacity(cols.len());
        for (slot, c) in out.iter_mut().zip(cols) {
            match locate(def, width, *c)? {
                Stored::At(i) => physical.push(i),
                Stored::Fill(fill) => *slot = Some(repeat(fill, rows.len())?),
            }
        }
        let mut read = self.read_physical(&physical, rows)?.into_iter();
        out.into_iter()
            .map(|slot| match slot {
                Some(filled) => Ok(filled),
                None => read
                    .next()
                    .ok_or_else(|| Error::InvalidArgument("read_rows lost a column".into())),
            })
            .collect()
    }

    /// The rows of a mem chunk.
    pub(crate) fn mem_batch(&self) -> Option<&RecordBatch> {
        match &self.data {
            ChunkData::Mem { batch, .. } => Some(batch),
            ChunkData::Segment(_) => None,
        }
    }

    /// The `_key` and `_hash` columns of every row.
    pub(crate) fn read_key_and_hash(&self) -> Result<(ArrayRef, ArrayRef)> {
        let rows: Vec<u32> = (0..self.rows).collect();
        let width = self.width();
        let mut columns = self.read_physical(&[width, width + 1], &rows)?.into_iter();
        match (columns.next(), columns.next()) {
            (Some(key), Some(hash)) => Ok((key, hash)),
            _ => Err(self.no_row(0)),
        }
    }

    /// The `_key` of the given rows (sorted ascending).
    pub fn read_keys(&self, rows: &[u32]) -> Result<ArrayRef> {
        self.read_physical(&[self.width()], rows)?
            .pop()
            .ok_or_else(|| Error::InvalidArgument("no _key read".into()))
    }

    /// Physical columns `cols` of the given rows, which must be sorted.
    fn read_physical(&self, cols: &[usize], rows: &[u32]) -> Result<Vec<ArrayRef>> {
        match &self.data {
            ChunkData::Mem { batch, .. } => {
                let idx = UInt32Array::from(rows.to_vec());
                cols.iter()
                    .map(|c| Ok(take(crate::schema::col(batch, *c)?.as_ref(), &idx, None)?))
                    .collect()
            }
            ChunkData::Segment(seg) => {
                // One source array per (row group, column) touched, and one
                // interleave per column: scattered rows cost a gather each,
                // not a take and a concat per row group.
                let mut sources: Vec<Vec<ArrayRef>> = vec![Vec::new(); cols.len()];
                let mut picks: Vec<(usize, usize)> = Vec::with_capacity(rows.len());
                let mut i = 0;
                while let Some(&row) = rows.get(i) {
                    let (g, first) = self.locate(row).ok_or_else(|| self.no_row(row))?;
                    let end = first + seg.footer.row_groups.get(g).map_or(0, |m| m.rows);
                    let source = sources.first().map_or(0, Vec::len);
                    for (s, c) in sources.iter_mut().zip(cols) {
                        s.push(seg.read_column(g, *c)?);
                    }
                    while let Some(&r) = rows.get(i)
                        && r < end
                    {
                        picks.push((source, (r - first) as usize));
                        i += 1;
                    }
                }
                sources
                    .iter()
                    .map(|s| {
                        let refs: Vec<&dyn Array> = s.iter().map(|a| a.as_ref()).collect();
                        Ok(interleave(&refs, &picks)?)
                    })
                    .collect()
            }
        }
    }
}

/// The stored column number of `_key` in [`Chunk::read_rows`],
/// [`locate`] and [`batch_column`]: whatever the width of the batch, and of
/// the reader's definition (a user column number is never this large).
pub const KEY: usize = usize::MAX;

/// Where stored column `c` is in a batch of `width` user columns, for a
/// reader of `def` (user columns `0..def.width()`, or [`KEY`]).
pub(crate) enum Stored<'a> {
    /// Physical column `i` of the batch.
    At(usize),
    /// A user column the batch is too narrow for: its fill, one row.
    Fill(&'a ArrayRef),
}

/// See [`Stored`]. A reader's definition may be narrower than the batch (a
/// snapshot from before an ADD COLUMN reading rows a checkpoint widened):
/// its committed columns are still a prefix. Columns the reader's own open
/// transaction added are never stored (a concurrent ALTER may have
/// committed another column at that position): they read as fills. A user
/// column beyond both the batch and the definition's fills is an error,
/// never another column.
pub(crate) fn locate(def: &TableDef, width: usize, c: usize) -> Result<Stored<'_>> {
    if c == KEY {
        Ok(Stored::At(width))
    } else if c < width && c < def.stored_width() {
        Ok(Stored::At(c))
    } else {
        def.fill(c).map(Stored::Fill)
    }
}

/// Stored column `c` of `batch` (a stored batch: user columns, `_key`,
/// `_hash`) for a reader of `def`; see [`locate`].
pub(crate) fn batch_column(def: &TableDef, batch: &RecordBatch, c: usize) -> Result<ArrayRef> {
    let width = batch.num_columns().saturating_sub(2);
    match locate(def, width, c)? {
        Stored::At(i) => crate::schema::col(batch, i).cloned(),
        Stored::Fill(fill) => repeat(fill, batch.num_rows()),
    }
}

/// Stored column `c` (a user column or [`KEY`]) of one of a transaction's
/// own stored batches, which always have its definition's every column
/// (ADD COLUMN widens them), the ones it added included.
pub(crate) fn own_column(batch: &RecordBatch, c: usize) -> Result<ArrayRef> {
    let c = match c {
        KEY => batch.num_columns().saturating_sub(2),
        c => c,
    };
    crate::schema::col(batch, c).cloned()
}

/// `columns` of a stored batch of `width` user columns (then its hidden
/// columns) with the user columns `def` has beyond `width` inserted as
/// their fills, before the hidden ones.
pub(crate) fn with_fills(
    mut columns: Vec<ArrayRef>,
    width: usize,
    def: &TableDef,
    rows: usize,
) -> Result<Vec<ArrayRef>> {
    let hidden = columns.split_off(width.min(columns.len()));
    for c in width..def.width() {
        columns.push(repeat(def.fill(c)?, rows)?);
    }
    columns.extend(hidden);
    Ok(columns)
}

/// `fill` (one row) repeated `n` times.
pub(crate) fn repeat(fill: &ArrayRef, n: usize) -> Result<ArrayRef> {
    let idx = UInt32Array::from(vec![0u32; n]);
    Ok(take(fill.as_ref(), &idx, None)?)
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
