//! The effects of one committed transaction, as written to the WAL and as
//! applied to memory. Commit and recovery share this code: a transaction is
//! applied exactly the same way when it commits and when it is replayed.

use crate::codec::Decoder;
use crate::columnar;
use crate::error::{Error, Result};
use crate::schema::TableDef;
use crate::segment::SegmentReader;
use crate::wal::WalRecord;
use arrow::array::RecordBatch;
use std::sync::Arc;

/// Rows a transaction wrote straight into a segment file instead of the
/// WAL (a write-once load, see `commit.rs`).
#[derive(Debug, Clone)]
pub struct LoadedSegment {
    /// Segment id (file `seg-<id>.eseg`).
    pub id: u64,
    /// Its rows.
    pub rows: u64,
    /// CRC-32 of its footer, which binds every column chunk.
    pub footer_crc: u32,
    /// The open segment, as the load of its commit
    /// ([`SegmentReader::as_load_of`]); `None` in a replayed record until
    /// recovery opens it, and at commit until the sequence is known.
    pub reader: Option<Arc<SegmentReader>>,
}

/// What one transaction changed in one table.
#[derive(Debug, Clone, Default)]
pub struct TableChange {
    /// Table id.
    pub table_id: u64,
    /// Rows written (stored schema), the newest version of their keys. For
    /// a load ([`TableChange::loaded`]) the same rows, at commit only (for
    /// validation and index maintenance; replay reads the segment).
    pub rows: Option<RecordBatch>,
    /// Set when the rows are in a segment the transaction wrote, which the
    /// WAL names (PUT_SEGMENT) instead of holding the rows (PUT).
    pub loaded: Option<LoadedSegment>,
    /// Before-image hash per written row.
    pub before: Vec<u64>,
    /// Deleted keys with their before-image hashes.
    pub deleted: Vec<(Box<[u8]>, u64)>,
    /// Unique column sets to validate at commit (`true`: also check the
    /// existing rows). Not written to the WAL: validation only.
    pub unique: Vec<(Vec<usize>, bool)>,
}

/// Everything one transaction changed, in apply order.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Tables created.
    pub creates: Vec<TableDef>,
    /// Tables that gained columns: their new definitions (`ALTER_TABLE`).
    pub alters: Vec<TableDef>,
    /// New catalog blob.
    pub catalog: Option<Vec<u8>>,
    /// Row changes per table.
    pub tables: Vec<TableChange>,
    /// Tables dropped.
    pub drops: Vec<u64>,
    /// Tables whose indexes or constraints changed (validation only).
    pub touched: Vec<u64>,
    /// Tables no other commit may have written since the snapshot
    /// (validation only; see [`crate::Transaction::guard_rows`]).
    pub guarded: Vec<u64>,
    /// Committed keys whose rows must still exist at commit, per table
    /// (validation only; see [`crate::Transaction::guard_keys`]).
    pub key_guards: Vec<(u64, Vec<Box<[u8]>>)>,
}

impl Changes {
    /// True when the transaction changed nothing.
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty()
            && self.alters.is_empty()
            && self.catalog.is_none()
            && self.tables.is_empty()
            && self.drops.is_empty()
    }

    /// True when the catalog or the set of tables changes.
    pub fn has_ddl(&self) -> bool {
        !self.creates.is_empty()
            || !self.alters.is_empty()
            || self.catalog.is_some()
            || !self.drops.is_empty()
    }

    /// Encodes the transaction as framed WAL records, BEGIN to COMMIT.
    pub fn encode(&self, txn_id: u64, commit_seq: u64, out: &mut Vec<u8>) -> Result<()> {
        WalRecord::Begin { txn_id, commit_seq }.encode_into(out)?;
        for def in &self.creates {
            WalRecord::CreateTable(def.clone()).encode_into(out)?;
        }
        for def in &self.alters {
            WalRecord::AlterTable(def.clone()).encode_into(out)?;
        }
        if let Some(blob) = &self.catalog {
            WalRecord::Catalog(blob.clone()).encode_into(out)?;
        }
        for t in &self.tables {
            if !t.deleted.is_empty() {
                WalRecord::Delete {
                    table_id: t.table_id,
                    keys: t.deleted.iter().map(|(k, h)| (k.to_vec(), *h)).collect(),
                }
                .encode_into(out)?;
            }
            if let Some(load) = &t.loaded {
                let absent = t.before.iter().all(|b| *b == crate::keys::ABSENT);
                WalRecord::PutSegment {
                    table_id: t.table_id,
                    segment_id: load.id,
                    rows: load.rows,
                    footer_crc: load.footer_crc,
                    before: if absent { Vec::new() } else { t.before.clone() },
                }
                .encode_into(out)?;
            } else if let Some(rows) = &t.rows {
                WalRecord::Put {
                    table_id: t.table_id,
                    before: t.before.clone(),
                    batch: columnar::encode_batch(rows)?,
                }
                .encode_into(out)?;
            }
        }
        for table_id in &self.drops {
            WalRecord::DropTable {
                table_id: *table_id,
            }
            .encode_into(out)?;
        }
        WalRecord::Commit { txn_id, commit_seq }.encode_into(out)
    }

    /// Adds one replayed record (between BEGIN and COMMIT) to the changes.
    pub fn add_record(&mut self, rec: WalRecord, file: &str, offset: u64) -> Result<()> {
        match rec {
            WalRecord::CreateTable(def) => self.creates.push(def),
            WalRecord::AlterTable(def) => self.alters.push(def),
            WalRecord::Catalog(blob) => self.catalog = Some(blob),
            WalRecord::DropTable { table_id } => self.drops.push(table_id),
            WalRecord::Put {
                table_id,
                before,
                batch,
            } => {
                let mut d = Decoder::new(&batch, file, offset);
                let rows = columnar::decode_batch(&mut d)?;
                d.finish()?;
                if rows.num_rows() != before.len() {
                    return Err(Error::corruption(file, offset, "PUT row count mismatch"));
                }
                self.tables.push(TableChange {
                    table_id,
                    rows: Some(rows),
                    before,
                    ..TableChange::default()
                });
            }
            WalRecord::PutSegment {
                table_id,
                segment_id,
                rows,
                footer_crc,
                before,
            } => self.tables.push(TableChange {
                table_id,
                loaded: Some(LoadedSegment {
                    id: segment_id,
                    rows,
                    footer_crc,
                    reader: None,
                }),
                before,
                ..TableChange::default()
            }),
            WalRecord::Delete { table_id, keys } => self.tables.push(TableChange {
                table_id,
                rows: None,
                before: Vec::new(),
                deleted: keys.into_iter().map(|(k, h)| (k.into(), h)).collect(),
                ..TableChange::default()
            }),
            other => {
                return Err(Error::corruption(
                    file,
                    offset,
                    format!(
                        "unexpected {:?} record inside a transaction",
                        other.record_type()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn sample() -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("x"), None, Some("zz")])),
            ],
        )
        .unwrap();
        columnar::encode_batch(&batch).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The batch decoder behind PUT records, fed damaged bytes,
        /// returns an error instead of panicking.
        #[test]
        fn decode_batch_of_damaged_bytes(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
            let mut bytes = sample();
            for (i, v) in flips {
                let i = i.index(bytes.len());
                bytes[i] ^= v | 1;
            }
            let _ = columnar::decode_batch(&mut Decoder::new(&bytes, "t", 0));
        }

        #[test]
        fn decode_schema_of_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = columnar::decode_schema(&mut Decoder::new(&bytes, "t", 0));
            let _ = columnar::decode_batch(&mut Decoder::new(&bytes, "t", 0));
        }
    }
}
