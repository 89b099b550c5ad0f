//! Streaming a table's rows at a snapshot.
//!
//! A [`TableScan`] is an iterator of Arrow batches. It walks the table's
//! chunks in order — one segment row group or one mem chunk at a time — and
//! then the transaction's own inserted rows. For each piece it reads only the
//! projected columns, skips row groups created entirely after the snapshot
//! (`min_seq > snapshot`) or rejected by the caller's statistics filter, and
//! hides rows that are not visible: created after the snapshot, deleted at or
//! before it, or deleted by the transaction itself. Memory stays bounded by
//! one row group, whatever the table size.

use crate::chunk::{Chunk, ChunkData, Stored, batch_column, locate, own_column, repeat};
use crate::error::{Error, Result};
use crate::hidden::HiddenView;
use crate::schema::{KEY_COLUMN, TableDef};
use crate::segment::RowGroupMeta;
use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// Decides from a row group's statistics whether it may hold matching rows.
pub type RowGroupFilter = Arc<dyn Fn(&RowGroupMeta) -> bool + Send + Sync>;

/// What to read.
#[derive(Clone, Default)]
pub struct ScanRequest {
    /// User columns to return, by index; `None` for all.
    pub projection: Option<Vec<usize>>,
    /// Also return the row key as a trailing `_key` Binary column.
    pub include_key: bool,
    /// Optional statistics filter; `false` skips the row group.
    pub row_group_filter: Option<RowGroupFilter>,
}

impl fmt::Debug for ScanRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanRequest")
            .field("projection", &self.projection)
            .field("include_key", &self.include_key)
            .field("row_group_filter", &self.row_group_filter.is_some())
            .finish()
    }
}

enum Piece {
    Group {
        chunk: Arc<Chunk>,
        group: usize,
        first_row: u32,
    },
    Mem(Arc<Chunk>),
    Local(RecordBatch),
}

/// Statistics of a scan, for EXPLAIN ANALYZE and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    /// Row groups read from segments.
    pub groups_read: u64,
    /// Row groups skipped by sequence range or statistics.
    pub groups_skipped: u64,
}

/// An iterator of visible rows (see the module docs).
pub struct TableScan {
    pieces: VecDeque<Piece>,
    /// The reader's definition: the columns it sees and their fills.
    def: TableDef,
    columns: Vec<usize>,
    include_key: bool,
    snapshot: u64,
    hidden: HiddenView,
    schema: SchemaRef,
    /// Counters.
    pub stats: ScanStats,
}

impl fmt::Debug for TableScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableScan")
            .field("pieces", &self.pieces.len())
            .field("snapshot", &self.snapshot)
            .finish()
    }
}

impl TableScan {
    pub(crate) fn new(
        def: &TableDef,
        request: ScanRequest,
        snapshot: u64,
        committed: Vec<Arc<Chunk>>,
        hidden: HiddenView,
        local: Vec<RecordBatch>,
    ) -> Result<Self> {
        let nuser = def.schema.fields().len();
        let columns = request.projection.unwrap_or_else(|| (0..nuser).collect());
        if let Some(bad) = columns.iter().find(|c| **c >= nuser) {
            return Err(Error::InvalidArgument(format!(
                "no column {bad} in {}",
                def.name
            )));
        }
        let mut fields: Vec<Field> = columns
            .iter()
            .filter_map(|c| def.schema.fields().get(*c).map(|f| f.as_ref().clone()))
            .collect();
        if request.include_key {
            fields.push(Field::new(KEY_COLUMN, DataType::Binary, false));
        }
        let mut stats = ScanStats::default();
        let mut pieces = VecDeque::new();
        for chunk in committed {
            match &chunk.data {
                ChunkData::Mem { seq, .. } => {
                    if *seq <= snapshot {
                        pieces.push_back(Piece::Mem(chunk.clone()));
                    }
                }
                ChunkData::Segment(seg) => {
                    // The statistics filter reads column statistics by user
                    // column: a segment narrower than the table has none for
                    // the added columns, so it is not filtered.
                    let filter = request
                        .row_group_filter
                        .as_ref()
                        .filter(|_| chunk.width() >= nuser && def.uncommitted == 0);
                    let mut first_row = 0;
                    for (group, meta) in seg.footer.row_groups.iter().enumerate() {
                        let wanted = meta.min_seq <= snapshot && filter.is_none_or(|f| f(meta));
                        if wanted {
                            pieces.push_back(Piece::Group {
                                chunk: chunk.clone(),
                                group,
                                first_row,
                            });
                        } else {
                            stats.groups_skipped += 1;
                        }
                        first_row += meta.rows;
                    }
                }
            }
        }
        pieces.extend(local.into_iter().map(Piece::Local));
        Ok(Self {
            pieces,
            def: def.clone(),
            columns,
            include_key: request.include_key,
            snapshot,
            hidden,
            schema: Arc::new(Schema::new(fields)),
            stats,
        })
    }

    /// Schema of the returned batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The stored columns to read, as [`crate::chunk::locate`] numbers them.
    fn wanted_columns(&self) -> Vec<usize> {
        let mut cols = self.columns.clone();
        if self.include_key {
            cols.push(crate::chunk::KEY);
        }
        cols
    }

    fn read_piece(&mut self, piece: Piece) -> Result<Option<RecordBatch>> {
        let cols = self.wanted_columns();
        let (arrays, mask, rows) = match piece {
            Piece::Local(batch) => {
                let arrays = cols
                    .iter()
                    .map(|c| own_column(&batch, *c))
                    .collect::<Result<Vec<_>>>()?;
                (arrays, None, batch.num_rows())
            }
            Piece::Mem(chunk) => {
                let ChunkData::Mem { batch, .. } = &chunk.data else {
                    return Ok(None);
                };
                let keys = batch.columns().get(chunk.width());
                let mask = self.mask(&chunk, 0, chunk.rows, None, keys)?;
                (self.pick(batch, &cols)?, mask, batch.num_rows())
            }
            Piece::Group {
                chunk,
                group,
                first_row,
            } => {
                let ChunkData::Segment(seg) = &chunk.data else {
                    return Ok(None);
                };
                let Some(meta) = seg.footer.row_groups.get(group) else {
                    return Ok(None);
                };
                self.stats.groups_read += 1;
                let width = chunk.width();
                let arrays = cols
                    .iter()
                    .map(|c| match locate(&self.def, width, *c)? {
                        Stored::At(i) => seg.read_column(group, i),
                        Stored::Fill(fill) => repeat(fill, meta.rows as usize),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let seqs = if meta.max_seq > self.snapshot {
                    let seq_col = seg.footer.columns as usize - 1;
                    Some(seg.read_column(group, seq_col)?)
                } else {
                    None
                };
                let keys = if self.hidden.by_key(chunk.id) {
                    Some(seg.read_column(group, width)?)
                } else {
                    None
                };
                let mask = self.mask(&chunk, first_row, meta.rows, seqs.as_ref(), keys.as_ref())?;
                (arrays, mask, meta.rows as usize)
            }
        };
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)?;
        let batch = match mask {
            Some(mask) => filter_record_batch(&batch, &mask)?,
            None => batch,
        };
        Ok((batch.num_rows() > 0).then_some(batch))
    }

    /// Stored columns `cols` of a committed stored batch (see
    /// [`crate::chunk::locate`]).
    fn pick(&self, batch: &RecordBatch, cols: &[usize]) -> Result<Vec<ArrayRef>> {
        cols.iter()
            .map(|c| batch_column(&self.def, batch, *c))
            .collect()
    }

    /// Visibility mask for `rows` rows of `chunk` starting at `first`, or
    /// `None` when all are visible. `keys` are the rows' `_key` values,
    /// needed when the transaction's hidden rows moved into this chunk.
    fn mask(
        &self,
        chunk: &Chunk,
        first: u32,
        rows: u32,
        seqs: Option<&ArrayRef>,
        keys: Option<&ArrayRef>,
    ) -> Result<Option<BooleanArray>> {
        let end = first + rows;
        let mut hide: Vec<u32> = chunk.deleted_in(first, end, self.snapshot)?;
        if let Some(own) = self.hidden.located(chunk.id) {
            hide.extend(own.range(first..end));
        }
        if self.hidden.by_key(chunk.id) {
            let keys = keys
                .and_then(|k| k.as_binary_opt::<i32>())
                .ok_or_else(|| Error::corruption(format!("chunk {}", chunk.id), 0, "no _key"))?;
            for (i, key) in keys.iter().enumerate() {
                if self.hidden.hides_key(key.unwrap_or_default()) {
                    hide.push(first + i as u32);
                }
            }
        }
        let seqs = seqs.and_then(|s| s.as_primitive_opt::<UInt64Type>());
        if hide.is_empty() && seqs.is_none() {
            return Ok(None);
        }
        let mut visible = vec![true; rows as usize];
        for row in hide {
            if let Some(v) = visible.get_mut((row - first) as usize) {
                *v = false;
            }
        }
        if let Some(seqs) = seqs {
            for (v, seq) in visible.iter_mut().zip(seqs.values().iter()) {
                *v = *v && *seq <= self.snapshot;
            }
        }
        Ok(Some(BooleanArray::from(visible)))
    }
}

impl Iterator for TableScan {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(piece) = self.pieces.pop_front() {
            match self.read_piece(piece) {
                Ok(Some(batch)) => return Some(Ok(batch)),
                Ok(None) => continue,
                Err(e) => {
                    self.pieces.clear();
                    return Some(Err(e));
                }
            }
        }
        None
    }
}
