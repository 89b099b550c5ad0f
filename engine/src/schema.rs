//! Physical table definitions as the engine sees them.
//!
//! The engine stores tables of rows with an Arrow schema. A table either has a
//! primary key (its `key_columns`) or gets a hidden 64-bit row id. Every stored
//! row version carries three hidden columns next to the user's columns:
//!
//! | column  | type   | meaning                                              |
//! |---------|--------|------------------------------------------------------|
//! | `_key`  | Binary | the row key: memcomparable primary key, or row id    |
//! | `_hash` | UInt64 | hash of the row's canonical bytes (conflict checks)  |
//! | `_seq`  | UInt64 | commit sequence of the version (segments only)       |
//!
//! Logical definitions (constraints, defaults, views, indexes) belong to the
//! catalog crate, which stores them in the catalog blob.

use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;

/// Name of the hidden row-key column.
pub const KEY_COLUMN: &str = "_key";
/// Name of the hidden content-hash column.
pub const HASH_COLUMN: &str = "_hash";
/// Name of the hidden commit-sequence column.
pub const SEQ_COLUMN: &str = "_seq";

/// A table's physical definition.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    /// Engine-wide unique id; never reused.
    pub id: u64,
    /// Table name (for messages; the catalog owns naming rules).
    pub name: String,
    /// The user's columns.
    pub schema: SchemaRef,
    /// Indexes of the primary-key columns; empty for a hidden row id.
    pub key_columns: Vec<usize>,
}

impl TableDef {
    /// Validates and builds a definition.
    pub fn new(id: u64, name: &str, schema: SchemaRef, key_columns: Vec<usize>) -> Result<Self> {
        if schema.fields().is_empty() {
            return Err(Error::InvalidArgument(format!(
                "table {name} has no columns"
            )));
        }
        for f in schema.fields() {
            if f.name().starts_with('_')
                && [KEY_COLUMN, HASH_COLUMN, SEQ_COLUMN].contains(&f.name().as_str())
            {
                return Err(Error::InvalidArgument(format!(
                    "column name {} is reserved",
                    f.name()
                )));
            }
        }
        for f in schema.fields() {
            crate::columnar::check_type(f.data_type())?;
        }
        if let Some(bad) = key_columns.iter().find(|i| **i >= schema.fields().len()) {
            return Err(Error::InvalidArgument(format!(
                "key column {bad} out of range"
            )));
        }
        Ok(Self {
            id,
            name: name.to_string(),
            schema,
            key_columns,
        })
    }

    /// Checks that `columns` name user columns of the table, and that there
    /// is at least one: index and constraint column sets come from callers.
    pub fn check_columns(&self, columns: &[usize]) -> Result<()> {
        if columns.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "an index or constraint on {} needs a column",
                self.name
            )));
        }
        let n = self.schema.fields().len();
        match columns.iter().find(|c| **c >= n) {
            Some(bad) => Err(Error::InvalidArgument(format!(
                "no column {bad} in {} (it has {n})",
                self.name
            ))),
            None => Ok(()),
        }
    }

    /// The name of user column `i` (`#i` when out of range).
    pub fn column_name(&self, i: usize) -> String {
        self.schema
            .fields()
            .get(i)
            .map_or_else(|| format!("#{i}"), |f| f.name().clone())
    }

    /// The schema of stored batches: user columns, `_key`, `_hash`.
    pub fn stored_schema(&self) -> SchemaRef {
        append_fields(
            &self.schema,
            [
                Field::new(KEY_COLUMN, DataType::Binary, false),
                Field::new(HASH_COLUMN, DataType::UInt64, false),
            ],
        )
    }

    /// Encodes the definition (see `table_def` in docs/format.md).
    pub fn encode(&self, e: &mut Encoder) -> Result<()> {
        e.u64(self.id).str(&self.name)?;
        crate::columnar::encode_schema(e, &self.schema)?;
        e.u32(self.key_columns.len() as u32);
        for k in &self.key_columns {
            e.u32(*k as u32);
        }
        Ok(())
    }

    /// Decodes a definition written by [`TableDef::encode`].
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self> {
        let id = d.u64()?;
        let name = d.str()?.to_string();
        let schema = crate::columnar::decode_schema(d)?;
        let n = d.count(4)?;
        let key_columns = (0..n)
            .map(|_| d.u32().map(|v| v as usize))
            .collect::<Result<Vec<_>>>()?;
        TableDef::new(id, &name, schema, key_columns)
            .map_err(|e| d.error(format!("invalid table definition: {e}")))
    }
}

/// `schema` followed by `extra` fields.
pub fn append_fields(schema: &Schema, extra: impl IntoIterator<Item = Field>) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(extra);
    Arc::new(Schema::new(fields))
}

/// Column `i` of `batch`: an error, never a panic, when it is missing
/// (`RecordBatch::column` panics; it is disallowed in engine code).
pub(crate) fn col(batch: &arrow::array::RecordBatch, i: usize) -> Result<&arrow::array::ArrayRef> {
    batch.columns().get(i).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "batch has {} columns, column {i} was asked for",
            batch.num_columns()
        ))
    })
}
