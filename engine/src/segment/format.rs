//! Segment footer and trailer encoding.
#![deny(clippy::indexing_slicing)]

use super::stats::StatValue;
use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};

/// Magic bytes at both ends of a segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"ESEG";
/// Major format version.
pub const MAJOR: u16 = 1;
/// Minor format version.
pub const MINOR: u16 = 0;
/// Header length.
pub const HEADER_LEN: u64 = 16;
/// Trailer length.
pub const TRAILER_LEN: u64 = 24;

/// Where one column chunk lives and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMeta {
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length.
    pub len: u32,
    /// CRC-32 of the chunk bytes.
    pub crc: u32,
    /// Number of nulls.
    pub null_count: u32,
    /// Smallest non-null value, if known.
    pub min: StatValue,
    /// Largest non-null value, if known.
    pub max: StatValue,
}

/// One row group.
#[derive(Debug, Clone, PartialEq)]
pub struct RowGroupMeta {
    /// Rows in the group.
    pub rows: u32,
    /// Smallest `_seq` in the group.
    pub min_seq: u64,
    /// Largest `_seq` in the group.
    pub max_seq: u64,
    /// One entry per stored column.
    pub chunks: Vec<ChunkMeta>,
}

/// The segment footer.
#[derive(Debug, Clone, PartialEq)]
pub struct Footer {
    /// Table the rows belong to.
    pub table_id: u64,
    /// Total rows.
    pub rows: u64,
    /// Stored columns (user columns + `_key`, `_hash`, `_seq`).
    pub columns: u32,
    /// Row groups in file order.
    pub row_groups: Vec<RowGroupMeta>,
}

impl Footer {
    /// Bytes of column data (every column chunk) in the segment.
    pub fn data_bytes(&self) -> u64 {
        self.row_groups
            .iter()
            .flat_map(|g| g.chunks.iter())
            .map(|c| u64::from(c.len))
            .sum()
    }

    /// Encodes the footer.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut e = Encoder::new();
        e.u64(self.table_id).u64(self.rows).u32(self.columns);
        e.u32(self.row_groups.len() as u32);
        for rg in &self.row_groups {
            e.u32(rg.rows).u64(rg.min_seq).u64(rg.max_seq);
            for c in &rg.chunks {
                e.u64(c.offset).u32(c.len).u32(c.crc).u32(c.null_count);
                c.min.encode(&mut e)?;
                c.max.encode(&mut e)?;
            }
        }
        Ok(e.finish())
    }

    /// Decodes and validates a footer; `file_len` bounds every chunk.
    pub fn decode(bytes: &[u8], file: &str, base: u64, file_len: u64) -> Result<Self> {
        let mut d = Decoder::new(bytes, file, base);
        let table_id = d.u64()?;
        let rows = d.u64()?;
        let columns = d.u32()?;
        let groups = d.count(20)?;
        let mut row_groups = Vec::with_capacity(groups);
        let mut total = 0u64;
        for _ in 0..groups {
            let (rg_rows, min_seq, max_seq) = (d.u32()?, d.u64()?, d.u64()?);
            if (columns as usize).saturating_mul(22) > d.remaining() {
                return Err(d.error("column count exceeds footer"));
            }
            let mut chunks = Vec::with_capacity(columns as usize);
            for _ in 0..columns {
                let at = d.offset();
                let c = ChunkMeta {
                    offset: d.u64()?,
                    len: d.u32()?,
                    crc: d.u32()?,
                    null_count: d.u32()?,
                    min: StatValue::decode(&mut d)?,
                    max: StatValue::decode(&mut d)?,
                };
                let end = c.offset.checked_add(u64::from(c.len));
                if c.offset < HEADER_LEN || end.is_none_or(|end| end > file_len) {
                    return Err(Error::corruption(file, at, "column chunk outside the file"));
                }
                chunks.push(c);
            }
            total += u64::from(rg_rows);
            row_groups.push(RowGroupMeta {
                rows: rg_rows,
                min_seq,
                max_seq,
                chunks,
            });
        }
        d.finish()?;
        if total != rows {
            return Err(Error::corruption(
                file,
                base,
                "row groups do not add up to the row count",
            ));
        }
        Ok(Footer {
            table_id,
            rows,
            columns,
            row_groups,
        })
    }
}

/// Encodes the fixed-size trailer.
pub fn encode_trailer(footer_offset: u64, footer: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u64(footer_offset)
        .u32(footer.len() as u32)
        .u32(crc32fast::hash(footer))
        .u16(MAJOR)
        .u16(MINOR)
        .raw(&SEGMENT_MAGIC);
    e.finish()
}

/// A format version as found in a header or trailer: `(major, minor)`.
pub type Version = (u16, u16);

/// Decoded trailer: `(footer_offset, footer_len, footer_crc, version)`.
/// The version is checked by [`check_versions`], against the header's.
pub fn decode_trailer(bytes: &[u8], file: &str, base: u64) -> Result<(u64, u32, u32, Version)> {
    let mut d = Decoder::new(bytes, file, base);
    let (offset, len, crc) = (d.u64()?, d.u32()?, d.u32()?);
    let version = (d.u16()?, d.u16()?);
    if d.take(4)? != SEGMENT_MAGIC {
        return Err(Error::corruption(file, base, "bad segment trailer magic"));
    }
    Ok((offset, len, crc, version))
}

/// Header and trailer carry no checksum of their own, but each states the
/// format version: a segment of another major version has the same one in
/// both (`IncompatibleVersion`); versions that disagree are a damaged byte
/// (`Corruption`), never a reason to ask for a newer EntiDB.
pub fn check_versions(
    header: Version,
    trailer: Version,
    file: &str,
    trailer_at: u64,
) -> Result<()> {
    if header != trailer {
        return Err(Error::corruption(
            file,
            if header.0 == MAJOR {
                trailer_at + 16
            } else {
                4
            },
            format!(
                "format version {}.{} in the header but {}.{} in the trailer",
                header.0, header.1, trailer.0, trailer.1
            ),
        ));
    }
    if header.0 != MAJOR {
        return Err(Error::IncompatibleVersion {
            file: file.to_string(),
            found: format!("{}.{}", header.0, header.1),
            supported: MAJOR,
        });
    }
    Ok(())
}

/// Encodes the header.
pub fn encode_header(segment_id: u64) -> Vec<u8> {
    let mut e = Encoder::new();
    e.raw(&SEGMENT_MAGIC).u16(MAJOR).u16(MINOR).u64(segment_id);
    e.finish()
}

/// Checks the header's magic and returns `(segment id, version)`; the
/// version is checked by [`check_versions`].
pub fn decode_header(bytes: &[u8], file: &str) -> Result<(u64, Version)> {
    let mut d = Decoder::new(bytes, file, 0);
    if d.take(4)? != SEGMENT_MAGIC {
        return Err(Error::corruption(file, 0, "bad segment header magic"));
    }
    let version = (d.u16()?, d.u16()?);
    Ok((d.u64()?, version))
}
