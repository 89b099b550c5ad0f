//! Index scans: the rows of a snapshot whose leading indexed column falls in
//! some [`KeyRange`]s, found through a [`crate::index`] instead of a scan.
//!
//! Committed rows come from the index: candidate versions are filtered by the
//! snapshot exactly as [`crate::TableScan`] filters them (created at or before
//! it, not deleted at or before it, not deleted by the transaction), then the
//! requested columns are read row group by row group. The transaction's own
//! inserted rows are not in any index; they are matched by encoding their
//! leading column and testing the ranges. The result is exact: every visible
//! row in the ranges, no other.

use crate::chunk::{Chunk, ChunkData, RowLoc};
use crate::error::Result;
use crate::hidden::{HiddenRows, HiddenView};
use crate::index::{KeyRange, in_ranges, index_keys};
use crate::locks::read;
use crate::schema::{KEY_COLUMN, TableDef};
use crate::table::TableState;
use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What an index scan reads.
#[derive(Debug, Clone, Default)]
pub struct IndexScanRequest {
    /// The index: its user columns, leading column first.
    pub index: Vec<usize>,
    /// Ranges of the leading column's encoded value (union).
    pub ranges: Vec<KeyRange>,
    /// User columns to return; `None` for all.
    pub projection: Option<Vec<usize>>,
    /// Also return the row key as a trailing `_key` column.
    pub include_key: bool,
    /// Give up (return `None`) when the index finds more candidate versions
    /// than this: a scan is cheaper then.
    pub max_candidates: Option<usize>,
    /// Build the index if it was not built yet (since open). Without this
    /// an unbuilt index gives up (`None`): worth it for point lookups, not
    /// for a range that may cover much of the table.
    pub build: bool,
}

/// The projected output schema of a request.
pub(crate) fn output_schema(def: &TableDef, columns: &[usize], include_key: bool) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .iter()
        .filter_map(|c| def.schema.fields().get(*c).map(|f| f.as_ref().clone()))
        .collect();
    if include_key {
        fields.push(Field::new(KEY_COLUMN, DataType::Binary, false));
    }
    Arc::new(Schema::new(fields))
}

/// The visible committed rows in the request's ranges, or `None` when there
/// are more than `max_candidates` candidates.
/// `def` is the reader's definition (its columns, with fills for them).
pub(crate) fn committed(
    table: &TableState,
    def: &TableDef,
    req: &IndexScanRequest,
    snapshot: u64,
    hidden: &HiddenRows,
    schema: &SchemaRef,
    stored_cols: &[usize],
) -> Result<Option<Vec<RecordBatch>>> {
    let index = table.indexes.get_or_create(&req.index)?;
    // The index list is held (read) from here to the end of the lookup, and
    // the index must still be on it: a checkpoint remaps only listed
    // indexes, so an index that DROP INDEX forgot meanwhile would resolve
    // its stale locations against rewritten chunks and find nothing. While
    // the list is held, a forget waits; a forgotten index means a scan.
    let listed = table.indexes.list()?;
    if !listed.iter().any(|i| Arc::ptr_eq(i, &index)) {
        return Ok(None);
    }
    fail::fail_point!("lookup::listed");
    if !req.build && !index.is_built()? {
        return Ok(None);
    }
    index.ensure_built(&table.chunks, &table.latest_def()?)?;
    let max = req.max_candidates.unwrap_or(usize::MAX);
    // Resolve locations to chunks while the index is read-locked, so a
    // concurrent checkpoint cannot swap the chunks under them.
    // The transaction's hidden rows are resolved against the same list.
    let resolved = index.lookup_then(&req.ranges, max, |locs| {
        let mut by_chunk: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for RowLoc { chunk, row } in locs {
            by_chunk.entry(chunk).or_default().push(row);
        }
        fail::fail_point!("lookup::resolve");
        let list = read(&table.chunks)?;
        let own = hidden.view(|id| list.get(id).is_some());
        // Every location of a listed index names a chunk of the list (a
        // checkpoint remaps them under this lock); one that does not means
        // the index is stale, and a scan answers instead of a short result.
        let chunks = by_chunk
            .into_iter()
            .map(|(id, rows)| list.get(id).map(|c| (c.clone(), rows)))
            .collect::<Option<Vec<(Arc<Chunk>, Vec<u32>)>>>();
        Ok(chunks.map(|chunks| (chunks, own)))
    })?;
    drop(listed);
    let Some(Some((chunks, own))) = resolved else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (chunk, mut rows) in chunks {
        rows.sort_unstable();
        rows.dedup();
        let rows = visible(&chunk, rows, snapshot, &own)?;
        if rows.is_empty() {
            continue;
        }
        let arrays = chunk.read_rows(def, stored_cols, &rows)?;
        out.push(batch_of(schema, arrays, rows.len())?);
    }
    Ok(Some(out))
}

/// The rows of `rows` (sorted) visible at `snapshot` and not hidden by the
/// transaction (`own`; `key_column` is the stored `_key` column, read only
/// when hidden rows must be matched by key).
pub(crate) fn visible(
    chunk: &Chunk,
    rows: Vec<u32>,
    snapshot: u64,
    own: &HiddenView,
) -> Result<Vec<u32>> {
    let own_deletes = own.located(chunk.id);
    let mut keep = Vec::with_capacity(rows.len());
    let mut seqs: Option<(usize, u32, ArrayRef)> = None;
    for row in rows {
        if own_deletes.is_some_and(|d| d.contains(&row))
            || chunk.deleted_seq(row)?.is_some_and(|d| d <= snapshot)
        {
            continue;
        }
        let created = match &chunk.data {
            ChunkData::Mem { seq, .. } => *seq,
            ChunkData::Segment(seg) => {
                let Some((g, first)) = chunk.locate(row) else {
                    continue;
                };
                let Some(meta) = seg.footer.row_groups.get(g) else {
                    continue;
                };
                if meta.max_seq <= snapshot {
                    meta.max_seq
                } else {
                    if seqs.as_ref().is_none_or(|(sg, _, _)| *sg != g) {
                        let col = seg.read_column(g, seg.footer.columns as usize - 1)?;
                        seqs = Some((g, first, col));
                    }
                    seqs.as_ref()
                        .and_then(|(_, first, col)| {
                            let col = col.as_primitive_opt::<UInt64Type>()?;
                            let i = (row - first) as usize;
                            (i < col.len()).then(|| col.value(i))
                        })
                        .unwrap_or(u64::MAX)
                }
            }
        };
        if created <= snapshot {
            keep.push(row);
        }
    }
    if own.by_key(chunk.id) && !keep.is_empty() {
        let keys = chunk.read_keys(&keep)?;
        let keys = keys.as_binary_opt::<i32>().ok_or_else(|| {
            crate::Error::corruption(format!("chunk {}", chunk.id), 0, "no _key column")
        })?;
        let hidden: Vec<bool> = keys
            .iter()
            .map(|k| own.hides_key(k.unwrap_or_default()))
            .collect();
        keep = keep
            .into_iter()
            .zip(hidden)
            .filter_map(|(row, h)| (!h).then_some(row))
            .collect();
    }
    Ok(keep)
}

/// The rows of the transaction's own `batches` (stored layout) whose
/// leading indexed column is in `ranges`, projected to `stored_cols`.
pub(crate) fn local(
    batches: &[RecordBatch],
    leading: usize,
    ranges: &[KeyRange],
    schema: &SchemaRef,
    stored_cols: &[usize],
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for batch in batches {
        let (keys, has_null) = index_keys(&[crate::schema::col(batch, leading)?.clone()])?;
        let mask: BooleanArray = keys
            .iter()
            .zip(&has_null)
            .map(|(k, null)| Some(!null && in_ranges(ranges, k.unwrap_or_default())))
            .collect();
        let picked = filter_record_batch(batch, &mask)?;
        if picked.num_rows() == 0 {
            continue;
        }
        let arrays = stored_cols
            .iter()
            .map(|c| crate::chunk::own_column(&picked, *c))
            .collect::<Result<Vec<_>>>()?;
        out.push(batch_of(schema, arrays, picked.num_rows())?);
    }
    Ok(out)
}

/// A batch of `schema` from `arrays` holding `rows` rows (also for zero
/// columns).
fn batch_of(schema: &SchemaRef, arrays: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &options,
    )?)
}
