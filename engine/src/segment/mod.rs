//! Segments: immutable, columnar files of committed row versions.
//!
//! A checkpoint turns the versions committed since the previous checkpoint
//! into one segment per table; compaction rewrites segments whose rows are
//! mostly deleted. A segment is never modified after it is synced; which of
//! its rows are deleted (and at which commit) lives in the manifest.
//!
//! LAYOUT (little-endian; full table in `docs/format.md`):
//!
//! ```text
//!   header   "ESEG" | major u16 | minor u16 | segment_id u64          (16 B)
//!   chunks   one encoded array (see `crate::columnar`) per (row group,
//!            column), back to back
//!   footer   table_id u64, rows u64, columns u32,
//!            row groups: rows u32, min_seq u64, max_seq u64,
//!                        per column: offset u64, len u32, crc32 u32,
//!                                    null_count u32, min stat, max stat
//!   trailer  footer_offset u64 | footer_len u32 | footer_crc u32
//!            | major u16 | minor u16 | "ESEG"                          (24 B)
//! ```
//!
//! Columns are the table's user columns followed by `_key`, `_hash` and
//! `_seq` (see [`crate::schema`]). A scan reads only the chunks of the columns
//! it projects, checks each chunk's CRC, and skips whole row groups using
//! `min_seq`/`max_seq` (MVCC visibility) and the per-chunk min/max statistics
//! (filter pushdown). Any checksum or decoding failure is
//! [`crate::Error::Corruption`] naming the file and offset.

mod cache;
mod format;
mod reader;
mod stats;
mod writer;

pub use cache::ChunkCache;
pub use format::{ChunkMeta, Footer, RowGroupMeta, SEGMENT_MAGIC};
pub use reader::SegmentReader;
pub use stats::StatValue;
pub use writer::write_segment;

/// File name of segment `id`.
pub fn segment_file_name(id: u64) -> String {
    format!("seg-{id:016x}.eseg")
}

/// Rows per row group written by checkpoints and compaction.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
