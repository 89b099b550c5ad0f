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
//! ADDED COLUMNS. `ALTER TABLE … ADD COLUMN` does not rewrite a table: the
//! definition gains trailing user columns, each with a *fill* — the one
//! value every row stored before the column existed reads for it
//! ([`TableDef::fills`]). A stored batch (a mem chunk, a segment, a WAL
//! `PUT`, a transaction's own rows) therefore has the user columns of the
//! definition it was written under, a prefix of today's: its *width* says
//! how many, and its hidden columns follow them. Readers locate hidden
//! columns by the batch's own width and read a user column at or beyond it
//! as the fill ([`TableDef::fill`]). Fills never change once a column is
//! added (a later ADD COLUMN appends another), so one definition serves
//! every older batch.
//!
//! Logical definitions (constraints, defaults, views, indexes) belong to the
//! catalog crate, which stores them in the catalog blob.

use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use arrow::array::{ArrayRef, RecordBatch};
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
    /// One-row arrays: the values rows stored before the last
    /// `fills.len()` user columns were added read for them (see the module
    /// doc). Empty for a table that never gained a column.
    pub fills: Vec<ArrayRef>,
    /// How many of the last columns an open transaction added (0 for every
    /// committed definition; never stored). Stored rows never hold those:
    /// a column a concurrent ALTER committed at the same position is
    /// another column, so readers take the fill.
    pub uncommitted: usize,
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
            fills: Vec::new(),
            uncommitted: 0,
        })
    }

    /// The number of user columns.
    pub fn width(&self) -> usize {
        self.schema.fields().len()
    }

    /// The user columns stored rows may hold: all but those an open
    /// transaction added.
    pub fn stored_width(&self) -> usize {
        self.width().saturating_sub(self.uncommitted)
    }

    /// The definition with `fields` appended as user columns, each read as
    /// its one-row `fill` by the rows stored before.
    pub fn with_added(&self, fields: Vec<Field>, fills: Vec<ArrayRef>) -> Result<Self> {
        if fields.is_empty() || fields.len() != fills.len() {
            return Err(Error::InvalidArgument(format!(
                "{} columns added to {} with {} fills",
                fields.len(),
                self.name,
                fills.len()
            )));
        }
        for (f, fill) in fields.iter().zip(&fills) {
            check_fill(&self.name, f, fill)?;
        }
        let schema = append_fields(&self.schema, fields);
        let mut def = TableDef::new(self.id, &self.name, schema, self.key_columns.clone())?;
        def.fills = self.fills.iter().cloned().chain(fills).collect();
        def.uncommitted = self.uncommitted;
        Ok(def)
    }

    /// The fill of user column `c`, which rows of `width` user columns lack
    /// (`c >= width`). An error when the column is not an added one: a
    /// batch narrower than the definition's original columns is damaged.
    pub fn fill(&self, c: usize) -> Result<&ArrayRef> {
        let first_added = self.width() - self.fills.len();
        c.checked_sub(first_added)
            .filter(|_| c < self.width())
            .and_then(|i| self.fills.get(i))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "rows of {} have no column {c}: no committed ALTER added it (an index \
                     over a column added in an open transaction needs the table rewritten)",
                    self.name
                ))
            })
    }

    /// Encodes the fills (after the definition in an `ALTER_TABLE` WAL record
    /// and a manifest table entry; see docs/format.md): a count, then, when
    /// non-zero, a one-row batch of the added columns.
    pub fn encode_fills(&self, e: &mut Encoder) -> Result<()> {
        e.u32(self.fills.len() as u32);
        if self.fills.is_empty() {
            return Ok(());
        }
        let first_added = self.width() - self.fills.len();
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .skip(first_added)
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), self.fills.clone())?;
        e.bytes(&crate::columnar::encode_batch(&batch)?)?;
        Ok(())
    }

    /// Decodes fills written by [`TableDef::encode_fills`] into `self`.
    pub fn decode_fills(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        let n = d.count(1)?;
        if n == 0 {
            self.fills.clear();
            return Ok(());
        }
        let bytes = d.bytes()?;
        let mut inner = Decoder::new(bytes, "fills", 0);
        let batch = crate::columnar::decode_batch(&mut inner)
            .and_then(|b| inner.finish().map(|()| b))
            .map_err(|e| d.error(format!("invalid fills: {e}")))?;
        let first_added = self.width().checked_sub(n);
        let fits = first_added.is_some_and(|first| {
            batch.num_rows() == 1
                && batch.num_columns() == n
                && self
                    .schema
                    .fields()
                    .iter()
                    .skip(first)
                    .zip(batch.columns())
                    .all(|(f, a)| f.data_type() == a.data_type())
        });
        if !fits {
            return Err(d.error(format!("fills do not match the columns of {}", self.name)));
        }
        let first = self.width() - n;
        for (f, fill) in self.schema.fields().iter().skip(first).zip(batch.columns()) {
            check_fill(&self.name, f, fill).map_err(|e| d.error(format!("invalid fill: {e}")))?;
        }
        self.fills = batch.columns().to_vec();
        Ok(())
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

/// A fill must be one value of its column's type, and not NULL for a NOT
/// NULL column.
fn check_fill(table: &str, field: &Field, fill: &ArrayRef) -> Result<()> {
    if fill.len() != 1 || fill.data_type() != field.data_type() {
        return Err(Error::InvalidArgument(format!(
            "the fill of column {} must be one {} value",
            field.name(),
            field.data_type()
        )));
    }
    if !field.is_nullable() && fill.null_count() > 0 {
        return Err(Error::NotNullViolation {
            table: table.to_string(),
            column: field.name().clone(),
        });
    }
    Ok(())
}

/// `schema` followed by `extra` fields.
pub fn append_fields(schema: &Schema, extra: impl IntoIterator<Item = Field>) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(extra);
    Arc::new(Schema::new(fields))
}

/// A stored batch (user columns, `_key`, `_hash`) with a `_seq` column of
/// `seq` on every row: the layout segments are written in.
pub(crate) fn with_seq_column(batch: &RecordBatch, seq: u64) -> Result<RecordBatch> {
    let schema = append_fields(
        &batch.schema(),
        [Field::new(SEQ_COLUMN, DataType::UInt64, false)],
    );
    let mut columns = batch.columns().to_vec();
    columns
        .push(Arc::new(arrow::array::UInt64Array::from(vec![seq; batch.num_rows()])) as ArrayRef);
    Ok(RecordBatch::try_new(schema, columns)?)
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
