//! WAL record framing and payloads.
//!
//! [`frame`] wraps a payload in the header and CRC described in the module
//! docs of [`crate::wal`]; [`unframe`] checks one record at an offset and
//! classifies what it finds. [`WalRecord`] is the typed payload.
//!
//! Payloads (all integers little-endian, `bytes` = u32 length + bytes):
//!
//! ```text
//!   BEGIN        txn_id u64, commit_seq u64
//!   PUT          table_id u64, rows u32, before_hash u64 × rows,
//!                batch bytes (columnar batch: user columns + _key + _hash)
//!   DELETE       table_id u64, rows u32, (key bytes, before_hash u64) × rows
//!   COMMIT       txn_id u64, commit_seq u64
//!   ABORT        txn_id u64
//!   CHECKPOINT   checkpoint_seq u64
//!   CREATE_TABLE table definition (see `table_def` in docs/format.md)
//!   DROP_TABLE   table_id u64
//!   CATALOG      catalog blob bytes
//!   ALTER_TABLE  table definition, then its fills (columns added without a
//!                rewrite; see `table_def` and `fills` in docs/format.md)
//!   PUT_SEGMENT  table_id u64, segment_id u64, rows u64, footer_crc u32,
//!                absent u8 (1: every row's before-image is "absent"),
//!                [rows u32, before_hash u64 × rows] when absent = 0
//! ```
//!
//! PUT_SEGMENT is a PUT whose rows were written straight into a segment
//! file before the commit (a write-once load, see `commit.rs`): the record
//! names the file and binds it by row count and footer checksum, and the
//! rows' `_seq` is the commit's. Like ALTER_TABLE it came without a minor
//! bump, so that an older build refuses the record rather than skip rows.
//!
//! ALTER_TABLE is new in format 1.0 without a minor bump on purpose: an
//! older build refuses the WAL ("unknown record type 10") instead of
//! skipping the record and replaying wider rows into the old definition.
#![deny(clippy::indexing_slicing)]

use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::schema::TableDef;

/// First four bytes of every record ("EWAL" read little-endian).
pub const MAGIC: u32 = u32::from_le_bytes(*b"EWAL");
/// Major format version written and accepted.
pub const MAJOR: u8 = 1;
/// Minor format version written; records of unknown type from a newer minor
/// version are skipped on replay.
pub const MINOR: u8 = 0;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 12;
/// Bytes after the payload.
pub const TRAILER_LEN: usize = 4;
/// Largest payload accepted (a larger length is treated as damage).
pub const MAX_PAYLOAD: u32 = 1 << 30;

/// Record type tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// Start of a committed transaction's records.
    Begin = 1,
    /// Insert or replace rows.
    Put = 2,
    /// Delete rows by key.
    Delete = 3,
    /// End of a transaction: it is committed.
    Commit = 4,
    /// End of a transaction: it is discarded.
    Abort = 5,
    /// A checkpoint covered everything up to a commit sequence.
    Checkpoint = 6,
    /// Create a table.
    CreateTable = 7,
    /// Drop a table.
    DropTable = 8,
    /// Replace the catalog blob.
    Catalog = 9,
    /// A table gained columns.
    AlterTable = 10,
    /// Rows written straight into a segment file.
    PutSegment = 11,
}

impl RecordType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Begin,
            2 => Self::Put,
            3 => Self::Delete,
            4 => Self::Commit,
            5 => Self::Abort,
            6 => Self::Checkpoint,
            7 => Self::CreateTable,
            8 => Self::DropTable,
            9 => Self::Catalog,
            10 => Self::AlterTable,
            11 => Self::PutSegment,
            _ => return None,
        })
    }
}

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum WalRecord {
    /// Start of a transaction.
    Begin {
        /// Transaction id.
        txn_id: u64,
        /// The sequence number the transaction commits at.
        commit_seq: u64,
    },
    /// Rows written (inserted or replaced) in one table.
    Put {
        /// Table id.
        table_id: u64,
        /// Before-image hash per row (0 = key was absent).
        before: Vec<u64>,
        /// The rows, in the columnar batch encoding.
        batch: Vec<u8>,
    },
    /// Rows deleted from one table.
    Delete {
        /// Table id.
        table_id: u64,
        /// `(key, before_hash)` per deleted row.
        keys: Vec<(Vec<u8>, u64)>,
    },
    /// The transaction committed.
    Commit {
        /// Transaction id.
        txn_id: u64,
        /// Its commit sequence number.
        commit_seq: u64,
    },
    /// The transaction is discarded.
    Abort {
        /// Transaction id.
        txn_id: u64,
    },
    /// Everything up to `checkpoint_seq` is in segments.
    Checkpoint {
        /// Last commit covered by the checkpoint.
        checkpoint_seq: u64,
    },
    /// A table was created.
    CreateTable(TableDef),
    /// A table was dropped.
    DropTable {
        /// Table id.
        table_id: u64,
    },
    /// The catalog blob was replaced.
    Catalog(Vec<u8>),
    /// A table gained columns: its new definition, fills included.
    AlterTable(TableDef),
    /// Rows written (inserted or replaced) in one table, stored in a
    /// segment file the transaction wrote before it committed.
    PutSegment {
        /// Table id.
        table_id: u64,
        /// The segment (file `seg-<id>.eseg`).
        segment_id: u64,
        /// Its row count.
        rows: u64,
        /// CRC-32 of its footer (which holds every column chunk's CRC).
        footer_crc: u32,
        /// Before-image hash per row; empty when every one is absent.
        before: Vec<u64>,
    },
}

impl WalRecord {
    /// The record's type tag.
    pub fn record_type(&self) -> RecordType {
        match self {
            WalRecord::Begin { .. } => RecordType::Begin,
            WalRecord::Put { .. } => RecordType::Put,
            WalRecord::Delete { .. } => RecordType::Delete,
            WalRecord::Commit { .. } => RecordType::Commit,
            WalRecord::Abort { .. } => RecordType::Abort,
            WalRecord::Checkpoint { .. } => RecordType::Checkpoint,
            WalRecord::CreateTable(_) => RecordType::CreateTable,
            WalRecord::AlterTable(_) => RecordType::AlterTable,
            WalRecord::DropTable { .. } => RecordType::DropTable,
            WalRecord::Catalog(_) => RecordType::Catalog,
            WalRecord::PutSegment { .. } => RecordType::PutSegment,
        }
    }

    /// Encodes the record, framed, onto `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut p = Encoder::new();
        match self {
            WalRecord::Begin { txn_id, commit_seq } | WalRecord::Commit { txn_id, commit_seq } => {
                p.u64(*txn_id).u64(*commit_seq);
            }
            WalRecord::Put {
                table_id,
                before,
                batch,
            } => {
                p.u64(*table_id).u32(count(before.len())?);
                for h in before {
                    p.u64(*h);
                }
                p.bytes(batch)?;
            }
            WalRecord::Delete { table_id, keys } => {
                p.u64(*table_id).u32(count(keys.len())?);
                for (key, h) in keys {
                    p.bytes(key)?.u64(*h);
                }
            }
            WalRecord::Abort { txn_id } => {
                p.u64(*txn_id);
            }
            WalRecord::Checkpoint { checkpoint_seq } => {
                p.u64(*checkpoint_seq);
            }
            WalRecord::CreateTable(def) => def.encode(&mut p)?,
            WalRecord::AlterTable(def) => {
                def.encode(&mut p)?;
                def.encode_fills(&mut p)?;
            }
            WalRecord::DropTable { table_id } => {
                p.u64(*table_id);
            }
            WalRecord::Catalog(blob) => {
                p.bytes(blob)?;
            }
            WalRecord::PutSegment {
                table_id,
                segment_id,
                rows,
                footer_crc,
                before,
            } => {
                p.u64(*table_id)
                    .u64(*segment_id)
                    .u64(*rows)
                    .u32(*footer_crc)
                    .u8(u8::from(before.is_empty()));
                if !before.is_empty() {
                    p.u32(count(before.len())?);
                    for h in before {
                        p.u64(*h);
                    }
                }
            }
        }
        frame(self.record_type() as u8, &p.finish(), out)
    }

    /// Decodes a payload of a known record type.
    pub fn decode(kind: RecordType, payload: &[u8], file: &str, base: u64) -> Result<Self> {
        let mut d = Decoder::new(payload, file, base);
        let rec = match kind {
            RecordType::Begin => WalRecord::Begin {
                txn_id: d.u64()?,
                commit_seq: d.u64()?,
            },
            RecordType::Commit => WalRecord::Commit {
                txn_id: d.u64()?,
                commit_seq: d.u64()?,
            },
            RecordType::Put => {
                let table_id = d.u64()?;
                let n = d.count(8)?;
                let before = (0..n).map(|_| d.u64()).collect::<Result<Vec<_>>>()?;
                let batch = d.bytes()?.to_vec();
                WalRecord::Put {
                    table_id,
                    before,
                    batch,
                }
            }
            RecordType::Delete => {
                let table_id = d.u64()?;
                let n = d.count(12)?;
                let keys = (0..n)
                    .map(|_| Ok((d.bytes()?.to_vec(), d.u64()?)))
                    .collect::<Result<Vec<_>>>()?;
                WalRecord::Delete { table_id, keys }
            }
            RecordType::Abort => WalRecord::Abort { txn_id: d.u64()? },
            RecordType::Checkpoint => WalRecord::Checkpoint {
                checkpoint_seq: d.u64()?,
            },
            RecordType::CreateTable => WalRecord::CreateTable(TableDef::decode(&mut d)?),
            RecordType::AlterTable => {
                let mut def = TableDef::decode(&mut d)?;
                def.decode_fills(&mut d)?;
                WalRecord::AlterTable(def)
            }
            RecordType::DropTable => WalRecord::DropTable { table_id: d.u64()? },
            RecordType::Catalog => WalRecord::Catalog(d.bytes()?.to_vec()),
            RecordType::PutSegment => {
                let (table_id, segment_id, rows, footer_crc) =
                    (d.u64()?, d.u64()?, d.u64()?, d.u32()?);
                let before = match d.u8()? {
                    1 => Vec::new(),
                    0 => {
                        let n = d.count(8)?;
                        if n as u64 != rows || n == 0 {
                            return Err(d.error("PUT_SEGMENT before-images do not match its rows"));
                        }
                        (0..n).map(|_| d.u64()).collect::<Result<Vec<_>>>()?
                    }
                    other => return Err(d.error(format!("bad PUT_SEGMENT flag {other}"))),
                };
                WalRecord::PutSegment {
                    table_id,
                    segment_id,
                    rows,
                    footer_crc,
                    before,
                }
            }
        };
        d.finish()?;
        Ok(rec)
    }
}

fn count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::InvalidArgument(format!("{n} rows in one WAL record")))
}

/// Appends a framed record (header, payload, CRC) to `out`.
pub fn frame(kind: u8, payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "WAL record of {} bytes exceeds the 1 GiB limit; split the transaction",
                payload.len()
            ))
        })?;
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[MAJOR, MINOR, kind, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What [`unframe`] found at an offset.
#[derive(Debug, PartialEq)]
pub enum Framed<'a> {
    /// A record with a valid CRC.
    Record {
        /// Type byte (may be unknown).
        kind: u8,
        /// Minor version of the writer.
        minor: u8,
        /// The payload.
        payload: &'a [u8],
        /// Total framed length.
        len: usize,
    },
    /// Fewer bytes than a header, or a length running past the end.
    Truncated,
    /// A full-length record whose bytes are wrong.
    Damaged(String),
    /// A record of a major version this build cannot read.
    UnknownMajor(u8),
}

/// Reads the header at the start of `buf` and checks the record's CRC.
pub fn unframe(buf: &[u8]) -> Framed<'_> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Framed::Truncated;
    };
    let word = |i: usize| {
        header
            .get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or_default()
    };
    let byte = |i: usize| header.get(i).copied().unwrap_or_default();
    if word(0) != MAGIC {
        return Framed::Damaged("bad record magic".into());
    }
    // The checksum is checked before the version: a header torn by a crash
    // (magic written, the rest zeros) is damage, not a newer format.
    let len = word(8);
    if len > MAX_PAYLOAD {
        return Framed::Damaged(format!("record length {len} too large"));
    }
    let total = HEADER_LEN + len as usize + TRAILER_LEN;
    let Some(record) = buf.get(..total) else {
        return Framed::Truncated;
    };
    let body_len = total - TRAILER_LEN;
    let stored = record
        .get(body_len..)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or_default();
    let body = record.get(..body_len).unwrap_or_default();
    if crc32fast::hash(body) != stored {
        return Framed::Damaged("record checksum mismatch".into());
    }
    if byte(4) != MAJOR {
        return Framed::UnknownMajor(byte(4));
    }
    Framed::Record {
        kind: byte(6),
        minor: byte(5),
        payload: body.get(HEADER_LEN..).unwrap_or_default(),
        len: total,
    }
}

/// Maps a type byte to a [`RecordType`], or `None` for one to skip (unknown
/// type written by a newer minor version).
pub fn known_type(kind: u8, minor: u8) -> Result<Option<RecordType>, String> {
    match RecordType::from_u8(kind) {
        Some(t) => Ok(Some(t)),
        None if minor > MINOR => Ok(None),
        None => Err(format!("unknown record type {kind}")),
    }
}
