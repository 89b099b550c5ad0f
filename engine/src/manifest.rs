//! The manifest: the root of a database's durable state.
//!
//! It names the live segments of every table (with the rows deleted from each
//! and the commit that deleted them), the catalog blob, the checkpoint
//! sequence up to which the WAL is redundant, id counters, and encryption
//! metadata (never keys). It is small and rewritten whole at every checkpoint:
//!
//! 1. write `MANIFEST.tmp`, fdatasync it;
//! 2. rename it over `MANIFEST`;
//! 3. fsync the directory.
//!
//! A crash leaves either the old or the new manifest in place, never a mix;
//! a stray `MANIFEST.tmp` is removed on the next open.
//!
//! LAYOUT: `"EMAN" | major u16 | minor u16 | payload_len u32 | payload | crc32`
//! where the CRC covers everything before it; the payload is described in
//! `docs/format.md`. The checksum is verified first: any checksum or
//! decoding failure is [`Error::Corruption`]; a checksummed manifest of a
//! major version other than [`MAJOR`] refuses to open with
//! [`Error::IncompatibleVersion`], and so does a minor version newer than
//! this build's. Minor 1 added each table's fills (after its definition),
//! minor 2 each segment's `created_seq` (after its deletes); each is written
//! only when some table needs it, and older minors are read without them.
//! (Builds from before minor 2 did not check the minor: they misread a
//! minor-2 manifest. Downgrading after a load is not supported.)
#![deny(clippy::indexing_slicing)]

use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::storage::Storage;

/// Manifest file name.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Temporary name used while writing.
pub const MANIFEST_TMP: &str = "MANIFEST.tmp";
const MAGIC: [u8; 4] = *b"EMAN";
/// Major format version.
pub const MAJOR: u16 = 1;
/// The newest minor version, written only when it is needed, so a database
/// that does not use a feature stays readable by older builds: minor 1 when
/// some table has fills, minor 2 when some segment was loaded (its entry
/// then records the loading commit). A newer minor is refused.
const MINOR: u16 = 2;

/// One live segment of a table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SegmentEntry {
    /// Segment id (file `seg-<id>.eseg`).
    pub id: u64,
    /// Rows in the segment.
    pub rows: u64,
    /// `(row, deleting commit_seq)` sorted by row.
    pub deletes: Vec<(u32, u64)>,
    /// For a segment a transaction loaded (`load.rs`): the commit that
    /// created all its rows, whose `_seq` holds the placeholder 0. Zero for
    /// a segment a checkpoint wrote (its rows carry their commits).
    pub created_seq: u64,
}

/// One table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableEntry {
    /// Physical definition.
    pub def: TableDef,
    /// Commit that created it.
    pub created_seq: u64,
    /// Its segments, oldest first.
    pub segments: Vec<SegmentEntry>,
}

/// The decoded manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    /// Every commit up to this one is in segments.
    pub checkpoint_seq: u64,
    /// Next id for tables, segments and chunks.
    pub next_id: u64,
    /// Next hidden row id.
    pub next_rowid: u64,
    /// Commit that last changed the catalog.
    pub catalog_seq: u64,
    /// The catalog blob (owned by the catalog crate).
    pub catalog: Vec<u8>,
    /// Encryption metadata (salt, key check; never keys).
    pub encryption: Vec<u8>,
    /// Live tables.
    pub tables: Vec<TableEntry>,
}

impl Manifest {
    /// Encodes the whole file.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let loads = self
            .tables
            .iter()
            .any(|t| t.segments.iter().any(|s| s.created_seq != 0));
        let minor = if loads {
            MINOR
        } else if self.tables.iter().any(|t| !t.def.fills.is_empty()) {
            1
        } else {
            0
        };
        let mut p = Encoder::new();
        p.u64(self.checkpoint_seq)
            .u64(self.next_id)
            .u64(self.next_rowid)
            .u64(self.catalog_seq);
        p.bytes(&self.catalog)?.bytes(&self.encryption)?;
        p.u32(self.tables.len() as u32);
        for t in &self.tables {
            p.u64(t.created_seq);
            t.def.encode(&mut p)?;
            if minor >= 1 {
                t.def.encode_fills(&mut p)?;
            }
            p.u32(t.segments.len() as u32);
            for s in &t.segments {
                p.u64(s.id).u64(s.rows).u32(s.deletes.len() as u32);
                for (row, seq) in &s.deletes {
                    p.u32(*row).u64(*seq);
                }
                if minor >= 2 {
                    p.u64(s.created_seq);
                }
            }
        }
        let payload = p.finish();
        let mut out = Encoder::new();
        out.raw(&MAGIC).u16(MAJOR).u16(minor).bytes(&payload)?;
        let mut out = out.finish();
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Decodes and verifies a manifest file image.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let file = MANIFEST_FILE;
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or_else(|| Error::corruption(file, 0, "manifest too short"))?;
        let (body, crc) = bytes.split_at(body_len);
        if bytes.starts_with(&crate::storage::ENC_MAGIC) {
            return Err(Error::EncryptionRequired);
        }
        let mut d = Decoder::new(body, file, 0);
        if d.take(4)? != MAGIC {
            return Err(Error::corruption(file, 0, "bad manifest magic"));
        }
        let (major, minor) = (d.u16()?, d.u16()?);
        // Checksum first, version second: a flipped version byte is damage,
        // not a file from a newer EntiDB.
        let stored = u32::from_le_bytes(crc.try_into().unwrap_or_default());
        if crc32fast::hash(body) != stored {
            return Err(Error::corruption(
                file,
                body_len as u64,
                "manifest checksum mismatch",
            ));
        }
        if major != MAJOR || minor > MINOR {
            return Err(Error::IncompatibleVersion {
                file: file.into(),
                found: format!("{major}.{minor}"),
                supported: MAJOR,
            });
        }
        let payload = d.bytes()?;
        d.finish()?;
        Self::decode_payload(&mut Decoder::new(payload, file, 12), minor)
    }

    fn decode_payload(d: &mut Decoder<'_>, minor: u16) -> Result<Self> {
        let mut m = Manifest {
            checkpoint_seq: d.u64()?,
            next_id: d.u64()?,
            next_rowid: d.u64()?,
            catalog_seq: d.u64()?,
            catalog: d.bytes()?.to_vec(),
            encryption: d.bytes()?.to_vec(),
            tables: Vec::new(),
        };
        let tables = d.count(16)?;
        for _ in 0..tables {
            let created_seq = d.u64()?;
            let mut def = TableDef::decode(d)?;
            // Fills (columns added without a rewrite) since minor 1.
            if minor >= 1 {
                def.decode_fills(d)?;
            }
            let n = d.count(20)?;
            let mut segments = Vec::with_capacity(n);
            for _ in 0..n {
                let (id, rows) = (d.u64()?, d.u64()?);
                let k = d.count(12)?;
                let deletes = (0..k)
                    .map(|_| Ok((d.u32()?, d.u64()?)))
                    .collect::<Result<Vec<_>>>()?;
                // Loaded segments' commits since minor 2.
                let created_seq = if minor >= 2 { d.u64()? } else { 0 };
                segments.push(SegmentEntry {
                    id,
                    rows,
                    deletes,
                    created_seq,
                });
            }
            m.tables.push(TableEntry {
                def,
                created_seq,
                segments,
            });
        }
        d.finish()?;
        Ok(m)
    }

    /// Reads the manifest, or `None` when the database has none yet.
    pub fn load(storage: &dyn Storage) -> Result<Option<Self>> {
        if !storage
            .exists(MANIFEST_FILE)
            .map_err(Error::io(MANIFEST_FILE))?
        {
            return Ok(None);
        }
        let file = storage
            .open(MANIFEST_FILE, false)
            .map_err(Error::io(MANIFEST_FILE))?;
        let bytes = file.read_all().map_err(Error::io(MANIFEST_FILE))?;
        Self::decode(&bytes).map(Some)
    }

    /// Writes the manifest atomically (temp file, fdatasync, rename, fsync dir).
    pub fn save(&self, storage: &dyn Storage) -> Result<()> {
        let bytes = self.encode()?;
        let tmp = storage
            .open(MANIFEST_TMP, true)
            .map_err(Error::io(MANIFEST_TMP))?;
        tmp.truncate(0).map_err(Error::io(MANIFEST_TMP))?;
        tmp.write_at(0, &bytes).map_err(Error::io(MANIFEST_TMP))?;
        tmp.sync().map_err(Error::io(MANIFEST_TMP))?;
        storage
            .rename(MANIFEST_TMP, MANIFEST_FILE)
            .map_err(Error::io(MANIFEST_FILE))?;
        storage.sync_dir().map_err(Error::io("."))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn with_segment(created_seq: u64) -> Manifest {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        Manifest {
            checkpoint_seq: 9,
            next_id: 5,
            next_rowid: 1,
            tables: vec![TableEntry {
                def: TableDef::new(3, "t", schema, vec![0]).unwrap(),
                created_seq: 1,
                segments: vec![SegmentEntry {
                    id: 4,
                    rows: 10,
                    deletes: vec![(2, 8)],
                    created_seq,
                }],
            }],
            ..Manifest::default()
        }
    }

    fn minor_of(bytes: &[u8]) -> u16 {
        u16::from_le_bytes([bytes[6], bytes[7]])
    }

    #[test]
    fn a_loaded_segment_is_written_as_minor_2_and_read_back() {
        let m = with_segment(7);
        let bytes = m.encode().unwrap();
        assert_eq!(minor_of(&bytes), 2);
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        // Without loads (or fills), older builds can still read it.
        let plain = with_segment(0).encode().unwrap();
        assert_eq!(minor_of(&plain), 0);
        assert_eq!(Manifest::decode(&plain).unwrap(), with_segment(0));
    }

    #[test]
    fn a_newer_minor_is_refused() {
        let mut bytes = with_segment(7).encode().unwrap();
        bytes[6] = 3;
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]).to_le_bytes();
        bytes[body..].copy_from_slice(&crc);
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(Error::IncompatibleVersion { .. })
        ));
    }
}
