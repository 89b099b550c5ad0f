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
//! [`Error::IncompatibleVersion`]. Minor 1 added each table's fills (after
//! its definition); it is written only when some table has fills, and a
//! minor-0 manifest is read without them.
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
/// Written only when some table has fills (so a database that never gained
/// a column in place stays readable by builds of minor 0).
const MINOR: u16 = 1;

/// One live segment of a table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SegmentEntry {
    /// Segment id (file `seg-<id>.eseg`).
    pub id: u64,
    /// Rows in the segment.
    pub rows: u64,
    /// `(row, deleting commit_seq)` sorted by row.
    pub deletes: Vec<(u32, u64)>,
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
        let minor = if self.tables.iter().any(|t| !t.def.fills.is_empty()) {
            MINOR
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
        if major != MAJOR {
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
                segments.push(SegmentEntry { id, rows, deletes });
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
