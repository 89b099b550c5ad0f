//! Reading a file for `COPY … FROM`: a stream of batches in the target
//! columns' types, every bad value reported with where it is.
//!
//! Each format is read in batches of [`BATCH_ROWS`] rows, never whole:
//!
//! - CSV with Arrow's reader, every column as text; a record with the wrong
//!   number of fields is `BadCopyFileFormat` (22P04) at its line;
//! - JSON line by line into Arrow's JSON decoder (scalars as text), so a
//!   malformed object is reported at its line;
//! - Parquet with the parquet crate's batch reader, columns picked by name.
//!
//! Text (and any value of another type) is then cast to the column's type
//! with Arrow's cast (the one INSERT uses); a value that does not convert is
//! `InvalidTextRepresentation` (22P02) or `DatatypeMismatch` (42804), a
//! NULL for a NOT NULL column `NotNullViolation` (23502), each with the
//! context `COPY t FROM 'file', line N, column c` (for CSV, N counts
//! records, header included: a quoted field spanning lines counts once;
//! for Parquet it is `row N`).
//!
//! The reads are synchronous: COPY runs on the statement's own task, and a
//! local file read blocks no more than the engine's own I/O does.

use super::{ErrorKind, Result};
use crate::error::{Error, sql_to_df};
use crate::files::{CsvDialect, FileKind};
use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::scalar::ScalarValue;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::Arc;

/// Rows per batch read from a file.
pub const BATCH_ROWS: usize = 8192;

/// One column being loaded.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name and type (nullable: NOT NULL is checked with a location).
    pub field: Field,
    /// Whether the table column accepts NULL.
    pub nullable: bool,
}

/// What to read and into which columns.
#[derive(Debug)]
pub struct Spec {
    /// File path.
    pub path: String,
    /// Its format.
    pub kind: FileKind,
    /// CSV options.
    pub dialect: CsvDialect,
    /// The CSV text that means NULL (default: the empty field).
    pub null: Option<String>,
    /// Table name (for errors).
    pub table: String,
    /// The columns loaded, in the order of the file's fields (CSV) or by
    /// name (JSON, Parquet).
    pub targets: Vec<Target>,
}

impl Spec {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.targets
                .iter()
                .map(|t| t.field.clone())
                .collect::<Vec<_>>(),
        ))
    }

    /// Where a row is, as an error context.
    fn at(&self, place: &str, column: Option<&str>) -> String {
        let mut s = format!("COPY {} FROM '{}', {place}", self.table, self.path);
        if let Some(c) = column {
            s.push_str(", column ");
            s.push_str(c);
        }
        s
    }

    fn io(&self, e: impl std::fmt::Display) -> Error {
        ErrorKind::Io(format!("{}: {e}", self.path)).into()
    }
}

/// The file as a DataFusion partition stream.
#[derive(Debug)]
pub struct FileSource {
    spec: Arc<Spec>,
    schema: SchemaRef,
}

impl FileSource {
    /// A source for `spec`; fails now if the file cannot be opened.
    pub fn new(spec: Spec) -> Result<Self> {
        File::open(&spec.path).map_err(|e| spec.io(e))?;
        Ok(Self {
            schema: spec.schema(),
            spec: Arc::new(spec),
        })
    }

    /// The loaded columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl PartitionStream for FileSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches: Box<dyn Iterator<Item = Result<RecordBatch>> + Send> =
            match open(self.spec.clone()) {
                Ok(b) => b,
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
        let stream = futures::stream::iter(batches.map(|b| b.map_err(sql_to_df)));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

fn open(spec: Arc<Spec>) -> Result<Batches> {
    let file = File::open(&spec.path).map_err(|e| spec.io(e))?;
    Ok(match spec.kind {
        FileKind::Csv => Box::new(Fused::new(CsvBatches::open(spec, file)?)),
        FileKind::Json => Box::new(Fused::new(JsonBatches::open(spec, file)?)),
        FileKind::Parquet => Box::new(Fused::new(ParquetBatches::open(spec, file)?)),
    })
}

/// Ends an iterator after its first error.
struct Fused<I> {
    inner: I,
    failed: bool,
}

impl<I> Fused<I> {
    fn new(inner: I) -> Self {
        Self {
            inner,
            failed: false,
        }
    }
}

impl<I: Iterator<Item = Result<RecordBatch>>> Iterator for Fused<I> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.inner.next();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

/// A text column for every target (the JSON decoder keeps nested types).
fn text_schema(spec: &Spec, keep_nested: bool) -> SchemaRef {
    Arc::new(Schema::new(
        spec.targets
            .iter()
            .map(|t| {
                let nested = t.field.data_type().is_nested();
                let ty = if keep_nested && nested {
                    t.field.data_type().clone()
                } else {
                    DataType::Utf8
                };
                Field::new(t.field.name(), ty, true)
            })
            .collect::<Vec<_>>(),
    ))
}

// ---------------------------------------------------------------------------
// CSV

struct CsvBatches {
    spec: Arc<Spec>,
    reader: arrow::csv::Reader<File>,
    /// Records consumed so far, header included.
    records: usize,
}

impl CsvBatches {
    fn open(spec: Arc<Spec>, file: File) -> Result<Self> {
        let d = &spec.dialect;
        let mut builder = arrow::csv::ReaderBuilder::new(text_schema(&spec, false))
            .with_header(d.header)
            .with_delimiter(d.delimiter)
            .with_quote(d.quote)
            .with_batch_size(BATCH_ROWS);
        if let Some(escape) = d.escape {
            builder = builder.with_escape(escape);
        }
        if let Some(null) = &spec.null {
            let regex = regex::Regex::new(&format!("^{}$", regex::escape(null)))
                .map_err(|e| ErrorKind::InvalidArgument(format!("COPY NULL marker: {e}")))?;
            builder = builder.with_null_regex(regex);
        }
        let reader = builder
            .build(file)
            .map_err(|e| ErrorKind::BadCopyFileFormat(e.to_string()))?;
        Ok(Self {
            records: usize::from(d.header),
            reader,
            spec,
        })
    }

    /// A reader error (wrong field count, invalid UTF-8), at the line it
    /// names or else after the last good record.
    fn failure(&self, e: arrow::error::ArrowError) -> Error {
        let message = match &e {
            arrow::error::ArrowError::CsvError(m) => m.clone(),
            other => other.to_string(),
        };
        let line = line_in(&message).unwrap_or(self.records + 1);
        Error::from(ErrorKind::BadCopyFileFormat(message))
            .with_context(self.spec.at(&format!("line {line}"), None))
    }
}

/// The number after "line " in an Arrow CSV error.
fn line_in(message: &str) -> Option<usize> {
    let rest = message.split("line ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Iterator for CsvBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.reader.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(self.failure(e))),
        };
        let first = self.records + 1;
        self.records += batch.num_rows();
        Some(convert(
            &self.spec,
            batch.columns(),
            batch.num_rows(),
            |i| format!("line {}", first + i),
        ))
    }
}

// ---------------------------------------------------------------------------
// JSON

struct JsonBatches {
    spec: Arc<Spec>,
    lines: std::io::Lines<BufReader<File>>,
    decoder: arrow::json::reader::Decoder,
    /// Lines read so far.
    line: usize,
    /// The line each decoded row started on.
    row_lines: Vec<usize>,
}

impl JsonBatches {
    fn open(spec: Arc<Spec>, file: File) -> Result<Self> {
        let decoder = arrow::json::ReaderBuilder::new(text_schema(&spec, true))
            .with_coerce_primitive(true)
            .with_batch_size(BATCH_ROWS * 2)
            .build_decoder()
            .map_err(|e| ErrorKind::BadCopyFileFormat(e.to_string()))?;
        Ok(Self {
            lines: BufReader::new(file).lines(),
            decoder,
            line: 0,
            row_lines: Vec::new(),
            spec,
        })
    }

    fn bad(&self, e: impl std::fmt::Display) -> Error {
        Error::from(ErrorKind::BadCopyFileFormat(e.to_string()))
            .with_context(self.spec.at(&format!("line {}", self.line), None))
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>> {
        let Some(batch) = self.decoder.flush().map_err(|e| self.bad(e))? else {
            return Ok(None);
        };
        let lines = std::mem::take(&mut self.row_lines);
        convert(&self.spec, batch.columns(), batch.num_rows(), |i| {
            format!("line {}", lines.get(i).copied().unwrap_or_default())
        })
        .map(Some)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.decoder.len() >= BATCH_ROWS {
                return self.flush();
            }
            let Some(line) = self.lines.next() else {
                return self.flush();
            };
            self.line += 1;
            let line = line.map_err(|e| self.bad(e))?;
            let before = self.decoder.len();
            let consumed = self
                .decoder
                .decode(line.as_bytes())
                .map_err(|e| self.bad(e))?;
            if consumed < line.len() {
                return Err(self.bad(format!("more than {BATCH_ROWS} JSON values on one line")));
            }
            let after = self.decoder.len();
            self.row_lines
                .extend(std::iter::repeat_n(self.line, after.saturating_sub(before)));
        }
    }
}

impl Iterator for JsonBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

// ---------------------------------------------------------------------------
// Parquet

struct ParquetBatches {
    spec: Arc<Spec>,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    /// The file column of each target.
    columns: Vec<usize>,
    rows: usize,
}

impl ParquetBatches {
    fn open(spec: Arc<Spec>, file: File) -> Result<Self> {
        let bad = |e: parquet::errors::ParquetError| -> Error {
            Error::from(ErrorKind::BadCopyFileFormat(e.to_string()))
                .with_context(format!("COPY {} FROM '{}'", spec.table, spec.path))
        };
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(bad)?;
        let schema = builder.schema().clone();
        let mut columns = Vec::with_capacity(spec.targets.len());
        for t in &spec.targets {
            let name = t.field.name();
            let found = schema.index_of(name).ok().or_else(|| {
                schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(name))
            });
            let Some(i) = found else {
                return Err(ErrorKind::BadCopyFileFormat(format!(
                    "{} has no column {name}",
                    spec.path
                ))
                .into());
            };
            columns.push(i);
        }
        let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(bad)?;
        Ok(Self {
            spec,
            reader,
            columns,
            rows: 0,
        })
    }
}

impl Iterator for ParquetBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.reader.next()? {
            Ok(b) => b,
            Err(e) => {
                return Some(Err(Error::from(ErrorKind::BadCopyFileFormat(
                    e.to_string(),
                ))
                .with_context(self.spec.at(&format!("after row {}", self.rows), None))));
            }
        };
        let mut picked = Vec::with_capacity(self.columns.len());
        for &i in &self.columns {
            match batch.columns().get(i) {
                Some(c) => picked.push(c.clone()),
                None => {
                    return Some(Err(ErrorKind::BadCopyFileFormat(format!(
                        "{}: column {i} missing from a row group",
                        self.spec.path
                    ))
                    .into()));
                }
            }
        }
        let first = self.rows + 1;
        self.rows += batch.num_rows();
        Some(convert(&self.spec, &picked, batch.num_rows(), |i| {
            format!("row {}", first + i)
        }))
    }
}

// ---------------------------------------------------------------------------
// Conversion

/// `columns` (one per target) cast to the targets' types, NOT NULL checked.
fn convert(
    spec: &Spec,
    columns: &[ArrayRef],
    rows: usize,
    place: impl Fn(usize) -> String,
) -> Result<RecordBatch> {
    let mut out = Vec::with_capacity(columns.len());
    for (target, column) in spec.targets.iter().zip(columns) {
        let name = target.field.name();
        let cast = cast_column(column, target.field.data_type()).map_err(|(row, kind)| {
            let at = row.map_or_else(|| "all rows".to_string(), &place);
            Error::from(kind).with_context(spec.at(&at, Some(name)))
        })?;
        if !target.nullable && cast.null_count() > 0 {
            let row = (0..cast.len()).find(|&i| cast.is_null(i)).unwrap_or(0);
            return Err(Error::from(ErrorKind::NotNullViolation {
                table: spec.table.clone(),
                column: name.clone(),
            })
            .with_context(spec.at(&place(row), Some(name))));
        }
        out.push(cast);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(spec.schema(), out, &options)
        .map_err(|e| ErrorKind::Execution(e.to_string()).into())
}

/// `column` cast to `to`; on failure the first row whose value does not
/// convert (`None`: the types do not convert at all).
fn cast_column(column: &ArrayRef, to: &DataType) -> Result<ArrayRef, (Option<usize>, ErrorKind)> {
    if column.data_type() == to {
        return Ok(column.clone());
    }
    let from = column.data_type();
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    let cast = arrow::compute::cast_with_options(column, to, &options).map_err(|e| {
        (
            None,
            ErrorKind::DatatypeMismatch(format!("cannot load {from} values into type {to}: {e}")),
        )
    })?;
    if cast.null_count() == column.null_count() {
        return Ok(cast);
    }
    let Some(row) = (0..column.len()).find(|&i| column.is_valid(i) && cast.is_null(i)) else {
        return Ok(cast);
    };
    let value = ScalarValue::try_from_array(column, row)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let kind = if matches!(
        from,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        ErrorKind::InvalidTextRepresentation(format!("\"{value}\" is not a valid {to}"))
    } else {
        ErrorKind::DatatypeMismatch(format!("{value} ({from}) does not fit type {to}"))
    };
    Err((Some(row), kind))
}
