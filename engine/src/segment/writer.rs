//! Writing a segment file.

use super::format::{ChunkMeta, Footer, HEADER_LEN, RowGroupMeta, encode_header, encode_trailer};
use super::stats::min_max;
use super::{ROW_GROUP_ROWS, segment_file_name};
use crate::codec::Encoder;
use crate::columnar::encode_array;
use crate::error::{Error, Result};
use crate::storage::{FileHandle, Storage};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Schema, UInt64Type};
use std::sync::Arc;

/// Writes `batches` (stored columns plus a trailing `_seq` UInt64 column) as
/// segment `id` of table `table_id`, fsyncs it, and returns its footer. The
/// caller makes the directory entry durable.
pub fn write_segment(
    storage: &dyn Storage,
    id: u64,
    table_id: u64,
    batches: &[RecordBatch],
) -> Result<Footer> {
    let name = segment_file_name(id);
    let file = storage.open(&name, true).map_err(Error::io(&name))?;
    file.truncate(0).map_err(Error::io(&name))?;
    let mut w = SegmentWriter {
        file,
        name: &name,
        offset: 0,
    };
    w.put(&encode_header(id))?;
    debug_assert_eq!(w.offset, HEADER_LEN);
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => return Err(Error::InvalidArgument("segment with no rows".into())),
    };
    let mut footer = Footer {
        table_id,
        rows: 0,
        columns: schema.fields().len() as u32,
        row_groups: Vec::new(),
    };
    for group in row_groups(&schema, batches)? {
        footer.rows += group.num_rows() as u64;
        let meta = w.row_group(&group)?;
        footer.row_groups.push(meta);
    }
    let footer_bytes = footer.encode()?;
    let footer_offset = w.offset;
    w.put(&footer_bytes)?;
    w.put(&encode_trailer(footer_offset, &footer_bytes))?;
    w.file.sync().map_err(Error::io(&name))?;
    Ok(footer)
}

/// Regroups batches into row groups of at most [`ROW_GROUP_ROWS`] rows.
fn row_groups(schema: &Arc<Schema>, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let mut groups = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    for batch in batches {
        let mut start = 0;
        while start < batch.num_rows() {
            let take = (ROW_GROUP_ROWS - pending_rows).min(batch.num_rows() - start);
            pending.push(batch.slice(start, take));
            pending_rows += take;
            start += take;
            if pending_rows == ROW_GROUP_ROWS {
                groups.push(concat_batches(schema, &pending)?);
                pending.clear();
                pending_rows = 0;
            }
        }
    }
    if pending_rows > 0 {
        groups.push(concat_batches(schema, &pending)?);
    }
    Ok(groups)
}

struct SegmentWriter<'a> {
    file: FileHandle,
    name: &'a str,
    offset: u64,
}

impl SegmentWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_at(self.offset, bytes)
            .map_err(Error::io(self.name))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn row_group(&mut self, group: &RecordBatch) -> Result<RowGroupMeta> {
        let seq = group
            .columns()
            .last()
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| Error::InvalidArgument("segment batch lacks _seq".into()))?;
        let (min_seq, max_seq) = (
            arrow::compute::min(seq).unwrap_or_default(),
            arrow::compute::max(seq).unwrap_or_default(),
        );
        let mut chunks = Vec::with_capacity(group.num_columns());
        for column in group.columns() {
            let mut e = Encoder::new();
            encode_array(&mut e, column.as_ref())?;
            let bytes = e.finish();
            let (min, max) = min_max(column.as_ref());
            chunks.push(ChunkMeta {
                offset: self.offset,
                len: u32::try_from(bytes.len())
                    .map_err(|_| Error::InvalidArgument("column chunk over 4 GiB".into()))?,
                crc: crc32fast::hash(&bytes),
                null_count: column.null_count() as u32,
                min,
                max,
            });
            self.put(&bytes)?;
        }
        Ok(RowGroupMeta {
            rows: group.num_rows() as u32,
            min_seq,
            max_seq,
            chunks,
        })
    }
}
