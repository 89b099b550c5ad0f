//! Row keys and version hashes.
//!
//! A row key is the primary key encoded with Arrow's row format, which is
//! memcomparable (byte order equals the columns' sort order, negative numbers
//! before positive, NULLs first), or, for tables without a primary key, an
//! 8-byte big-endian row id. The content hash of a row is xxh3-64 of the
//! row-format encoding of all its columns; the *version hash* combines it with
//! the commit sequence that created the version, so a value changed A→B→A still
//! has a new hash. Version hash 0 means "the key had no version"; tombstones
//! hash their deleting sequence with a marker.

use crate::error::Result;
use arrow::array::{Array, ArrayRef, BinaryArray, BinaryBuilder, RecordBatch, UInt64Array};
use arrow::row::{RowConverter, SortField};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// Before-image hash of a key that had no version.
pub const ABSENT: u64 = 0;

/// Encodes the given columns of `batch` as memcomparable keys.
pub fn encode_keys(columns: &[ArrayRef]) -> Result<BinaryArray> {
    let fields = columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(columns)?;
    let bytes: usize = rows.iter().map(|r| r.as_ref().len()).sum();
    let mut out = BinaryBuilder::with_capacity(rows.num_rows(), bytes);
    for r in rows.iter() {
        out.append_value(r.as_ref());
    }
    Ok(out.finish())
}

/// Keys for `n` new row ids starting at `first`.
pub fn rowid_keys(first: u64, n: usize) -> BinaryArray {
    BinaryArray::from_iter_values((0..n as u64).map(|i| (first + i).to_be_bytes()))
}

/// Content hash of every row of `batch`.
pub fn content_hashes(batch: &RecordBatch) -> Result<UInt64Array> {
    let rows = encode_keys(batch.columns())?;
    Ok(UInt64Array::from_iter_values(
        rows.iter().map(|r| xxh3_64(r.unwrap_or_default())),
    ))
}

/// Hash of a committed version: its sequence and content.
pub fn version_hash(seq: u64, content: u64) -> u64 {
    let mut buf = [0u8; 17];
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&content.to_le_bytes());
    buf[16] = 1;
    nonzero(xxh3_64(&buf))
}

/// Hash of a tombstone written at `seq`.
pub fn tombstone_hash(seq: u64) -> u64 {
    let mut buf = [0u8; 9];
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8] = 2;
    nonzero(xxh3_64(&buf))
}

fn nonzero(h: u64) -> u64 {
    if h == ABSENT { 1 } else { h }
}

/// Printable form of a key for error messages.
pub fn display_key(key: &[u8]) -> String {
    let hex: String = key.iter().take(32).map(|b| format!("{b:02x}")).collect();
    if key.len() > 32 {
        format!("{hex}…")
    } else {
        hex
    }
}

/// An `Arc`ed array of keys.
pub fn keys_ref(keys: BinaryArray) -> ArrayRef {
    Arc::new(keys)
}
