//! Files read by queries: `SELECT * FROM 'data.parquet'`, the table
//! functions `read_csv`, `read_parquet` and `read_json`, and `CREATE
//! EXTERNAL TABLE … STORED AS … LOCATION …`.
//!
//! All three are DataFusion's `ListingTable` over a local file, so scans are
//! streaming, parallel and push projections and filters into Parquet:
//!
//! - a quoted path as a table name is DataFusion's URL table
//!   (`SessionContext::enable_url_table`), the format chosen by the file's
//!   extension (`.csv`, `.parquet`, `.json` for newline-delimited JSON);
//! - `read_csv(path [, header [, delimiter]])`, `read_parquet(path)` and
//!   `read_json(path)` name the format whatever the extension is; their
//!   schema is inferred when the statement is planned (the first 1,000
//!   records of a CSV or JSON file; a Parquet file's footer);
//! - an external table belongs to the session that created it: it is not
//!   stored in the database and disappears with the connection.
//!
//! ACCESS. Reading files follows the policy of `limits.rs`: refused
//! (42501) when file access is off and for files inside the directory of a
//! database open in this process. [`check_reads`] applies it to every file a
//! plan scans, views included, so no spelling bypasses it.

use crate::error::{ErrorKind, Result, sql_to_df};
use crate::limits;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{TableProvider, ViewTable, source_as_provider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

/// Records read to infer a CSV or JSON file's schema.
const INFER_RECORDS: usize = 1000;

/// A file format EntiDB reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Comma-separated values (RFC 4180 quoting).
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Newline-delimited JSON: one object per line.
    Json,
}

impl FileKind {
    /// The format a path's extension names (`.csv`, `.tsv`, `.parquet`,
    /// `.json`, `.jsonl`, `.ndjson`).
    pub fn from_path(path: &str) -> Option<Self> {
        let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
        Self::from_name(&ext)
    }

    /// The format called `name` (`FORMAT csv`, `STORED AS parquet`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "csv" | "tsv" => Some(Self::Csv),
            "parquet" => Some(Self::Parquet),
            "json" | "jsonl" | "ndjson" => Some(Self::Json),
            _ => None,
        }
    }
}

/// CSV dialect options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvDialect {
    /// Whether the first record names the columns.
    pub header: bool,
    /// Field separator.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
    /// Escape character inside quotes (`None`: quotes are doubled).
    pub escape: Option<u8>,
}

impl Default for CsvDialect {
    fn default() -> Self {
        Self {
            header: true,
            delimiter: b',',
            quote: b'"',
            escape: None,
        }
    }
}

/// Enables the file readers of this module on a new session context.
pub fn install(ctx: SessionContext) -> SessionContext {
    let ctx = ctx.enable_url_table();
    for (name, kind) in [
        ("read_csv", FileKind::Csv),
        ("read_parquet", FileKind::Parquet),
        ("read_json", FileKind::Json),
        ("read_ndjson", FileKind::Json),
    ] {
        ctx.register_udtf(name, Arc::new(ReadFile { kind }));
    }
    ctx
}

/// Refuses a plan that reads files when the session may not (module docs).
pub fn check_reads(plan: &LogicalPlan, external_access: bool) -> Result<()> {
    let mut paths = Vec::new();
    collect_files(plan, &mut paths)?;
    for path in &paths {
        limits::check_read(path, external_access)?;
    }
    Ok(())
}

fn collect_files(plan: &LogicalPlan, out: &mut Vec<String>) -> Result<()> {
    let mut views = Vec::new();
    plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && let Ok(provider) = source_as_provider(&scan.source)
        {
            if let Some(listing) = provider.downcast_ref::<ListingTable>() {
                out.extend(listing.table_paths().iter().map(|u| u.as_str().to_string()));
            } else if let Some(view) = provider.downcast_ref::<ViewTable>() {
                views.push(view.logical_plan().clone());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    for view in &views {
        collect_files(view, out)?;
    }
    Ok(())
}

/// `read_csv`, `read_parquet`, `read_json`: a file of a named format.
#[derive(Debug)]
struct ReadFile {
    kind: FileKind,
}

impl TableFunctionImpl for ReadFile {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let usage = || {
            sql_to_df(
                ErrorKind::InvalidArgument(
                    match self.kind {
                        FileKind::Csv => {
                            "usage: read_csv('path' [, header boolean [, 'delimiter']])"
                        }
                        FileKind::Parquet => "usage: read_parquet('path')",
                        FileKind::Json => "usage: read_json('path')",
                    }
                    .into(),
                )
                .into(),
            )
        };
        let Some(path) = exprs.first().and_then(string_literal) else {
            return Err(usage());
        };
        let mut dialect = CsvDialect::default();
        match (self.kind, exprs.get(1), exprs.get(2)) {
            (_, None, None) => {}
            (FileKind::Csv, Some(header), delimiter) => {
                dialect.header = bool_literal(header).ok_or_else(usage)?;
                if let Some(d) = delimiter {
                    dialect.delimiter = string_literal(d)
                        .and_then(|s| single_byte(&s))
                        .ok_or_else(usage)?;
                }
            }
            _ => return Err(usage()),
        }
        if exprs.len() > 3 {
            return Err(usage());
        }
        Ok(Arc::new(
            listing_table(&path, self.kind, &dialect).map_err(sql_to_df)?,
        ))
    }
}

fn string_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

fn bool_literal(e: &Expr) -> Option<bool> {
    match e {
        Expr::Literal(ScalarValue::Boolean(Some(b)), _) => Some(*b),
        _ => None,
    }
}

/// The byte of a one-character ASCII string.
pub fn single_byte(s: &str) -> Option<u8> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Some(*b),
        _ => None,
    }
}

/// A `ListingTable` over the local file `path`, its schema inferred now.
pub fn listing_table(path: &str, kind: FileKind, dialect: &CsvDialect) -> Result<ListingTable> {
    let schema = infer_schema(path, kind, dialect)?;
    let format: Arc<dyn FileFormat> = match kind {
        FileKind::Csv => Arc::new(
            CsvFormat::default()
                .with_has_header(dialect.header)
                .with_delimiter(dialect.delimiter)
                .with_quote(dialect.quote)
                .with_escape(dialect.escape),
        ),
        FileKind::Parquet => Arc::new(ParquetFormat::default()),
        FileKind::Json => Arc::new(JsonFormat::default()),
    };
    let url = ListingTableUrl::parse(path)?;
    // Any extension: the format is named, not guessed.
    let options = ListingOptions::new(format).with_file_extension("");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(ListingTable::try_new(config)?)
}

fn open(path: &str) -> Result<File> {
    File::open(path).map_err(|e| ErrorKind::Io(format!("{path}: {e}")).into())
}

fn malformed(path: &str, e: impl std::fmt::Display) -> crate::Error {
    ErrorKind::BadCopyFileFormat(format!("{path}: {e}")).into()
}

/// The schema of the file at `path`, read synchronously: table functions
/// are resolved while a statement is planned.
pub fn infer_schema(path: &str, kind: FileKind, dialect: &CsvDialect) -> Result<SchemaRef> {
    let file = open(path)?;
    let schema: Schema = match kind {
        FileKind::Csv => {
            let mut format = arrow::csv::reader::Format::default()
                .with_header(dialect.header)
                .with_delimiter(dialect.delimiter)
                .with_quote(dialect.quote);
            if let Some(escape) = dialect.escape {
                format = format.with_escape(escape);
            }
            format
                .infer_schema(file, Some(INFER_RECORDS))
                .map_err(|e| malformed(path, e))?
                .0
        }
        FileKind::Json => {
            arrow::json::reader::infer_json_schema(BufReader::new(file), Some(INFER_RECORDS))
                .map_err(|e| malformed(path, e))?
                .0
        }
        FileKind::Parquet => {
            let metadata =
                parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, Default::default())
                    .map_err(|e| malformed(path, e))?;
            metadata.schema().as_ref().clone()
        }
    };
    Ok(Arc::new(schema))
}

/// `CREATE EXTERNAL TABLE`: a file table registered in this session only
/// (module docs), after the access check.
pub(crate) async fn create_external(
    session: &mut crate::session::Session,
    create: Box<datafusion::logical_expr::CreateExternalTable>,
) -> Result<()> {
    for location in &create.locations {
        limits::check_read(location, session.external_access())?;
    }
    let plan = LogicalPlan::Ddl(datafusion::logical_expr::DdlStatement::CreateExternalTable(
        create,
    ));
    session.context().execute_logical_plan(plan).await?;
    Ok(())
}
