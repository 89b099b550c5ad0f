//! `COPY`: files into tables and query results into files.
//!
//! ```text
//! COPY t [(col, …)] FROM 'file.csv' | 'file.parquet' | 'file.json'
//!      [WITH (FORMAT csv|parquet|json, HEADER [bool], DELIMITER 'c',
//!             QUOTE 'c', ESCAPE 'c', NULL 'text')]
//! COPY t | (query) TO 'file.csv' | 'file.parquet' | 'file.json' [WITH (…)]
//! ```
//!
//! LOADING (`COPY … FROM`, [`copy_from`]). The file is read as a stream of
//! Arrow batches ([`read::FileSource`]) and inserted through the same plan
//! as `INSERT INTO t (cols) SELECT …`: column defaults, casts and the
//! constraint checks of INSERT (NOT NULL, PRIMARY KEY, UNIQUE) apply, rows
//! go through the bulk (Arrow append) path of the sink, batch by batch —
//! the file is never read whole. The COPY is one statement of the session's
//! transaction (its own autocommit transaction outside `BEGIN`): the first
//! bad row fails it and nothing of the file is loaded. Errors about a
//! row name the file, the line (CSV, JSON) or row (Parquet), and the column
//! in their context (`Error::context`).
//!
//! CSV has a header line by default (as `COPY … TO` writes it); `HEADER
//! false` for files without. Empty fields are NULL (Arrow's CSV reader does
//! not distinguish `""` from nothing); `NULL 'text'` names another marker.
//! CSV and JSON columns are matched by position and name respectively,
//! Parquet columns by name (case-insensitively). JSON is
//! newline-delimited: one object per line.
//!
//! WRITING (`COPY … TO`) is DataFusion's: `COPY t TO 'f.parquet'` and
//! `COPY (query) TO …` parse natively (format from `STORED AS` or the
//! extension, options as `OPTIONS ('format.has_header' 'false')`);
//! PostgreSQL's `WITH (FORMAT …, HEADER …, DELIMITER …)` spelling is
//! translated here ([`parse`]) into DataFusion's statement. Either returns
//! the number of rows written.
//!
//! File access follows `limits.rs` (42501 when it is off, or for files
//! inside an open database's directory).

mod read;

use crate::error::{Error, ErrorKind, Result};
use crate::files::{CsvDialect, FileKind};
use crate::session::{Output, Parsed, Session};
use datafusion::sql::parser::{CopyToSource, CopyToStatement, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, ObjectName,
    Statement, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::sync::Arc;

/// Name under which the file being loaded is visible to the INSERT plan.
const SOURCE_TABLE: &str = "__entidb_copy_source";

/// A parsed `COPY … FROM`.
#[derive(Debug, Clone)]
pub struct CopyFrom {
    /// Statement text (for errors).
    pub text: String,
    /// The table as written (resolved against the catalog when it runs).
    table_name: ObjectName,
    columns: Vec<String>,
    path: String,
    kind: FileKind,
    dialect: CsvDialect,
    null: Option<String>,
}

/// Recognises the COPY statements DataFusion's parser does not take:
/// `COPY … FROM` and `COPY … TO … WITH (…)`. `None` when `text` is no
/// such statement.
pub(crate) fn parse(text: &str) -> Option<Result<Parsed>> {
    let starts_with_copy = text
        .trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("copy"));
    if !starts_with_copy {
        return None;
    }
    let mut statements = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements())
        .ok()?;
    let (Some(statement), true) = (statements.pop(), statements.is_empty()) else {
        return None;
    };
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        values: _,
    } = statement
    else {
        return None;
    };
    Some(translate(text, source, to, target, options, legacy_options))
}

fn translate(
    text: &str,
    source: CopySource,
    to: bool,
    target: CopyTarget,
    options: Vec<CopyOption>,
    legacy: Vec<CopyLegacyOption>,
) -> Result<Parsed> {
    let CopyTarget::File { filename: path } = target else {
        return Err(ErrorKind::NotSupported(
            "COPY from standard input or to standard output, or through a program; name a file"
                .into(),
        )
        .into());
    };
    let options = Options::collect(options, legacy)?;
    if to {
        return Ok(Parsed::Sql(Box::new(copy_to(source, path, &options))));
    }
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(ErrorKind::Syntax(
            "COPY (query) FROM is not valid; COPY a table FROM a file".into(),
        )
        .into());
    };
    let kind = match &options.format {
        Some(name) => FileKind::from_name(name).ok_or_else(|| unknown_format(name))?,
        None => FileKind::from_path(&path).ok_or_else(|| {
            Error::from(ErrorKind::InvalidArgument(format!(
                "cannot tell the format of {path} from its extension; add WITH (FORMAT csv|parquet|json)"
            )))
        })?,
    };
    Ok(Parsed::CopyFrom(Box::new(CopyFrom {
        text: text.trim().to_string(),
        table_name,
        columns: columns.iter().map(crate::ddl::normalize).collect(),
        path,
        kind,
        dialect: options.dialect,
        null: options.null,
    })))
}

fn unknown_format(name: &str) -> Error {
    ErrorKind::InvalidArgument(format!(
        "unknown file format {name}; expected csv, parquet or json"
    ))
    .into()
}

/// The options of a COPY statement, in either spelling.
#[derive(Default)]
struct Options {
    format: Option<String>,
    dialect: CsvDialect,
    /// Set explicitly (`COPY … TO` passes only what was given).
    header: Option<bool>,
    delimiter: Option<u8>,
    quote: Option<u8>,
    escape: Option<u8>,
    null: Option<String>,
}

impl Options {
    fn collect(options: Vec<CopyOption>, legacy: Vec<CopyLegacyOption>) -> Result<Self> {
        let mut out = Options::default();
        for option in options {
            match option {
                CopyOption::Format(name) => out.format = Some(name.value),
                CopyOption::Header(on) => out.header = Some(on),
                CopyOption::Delimiter(c) => out.delimiter = Some(byte(c, "DELIMITER")?),
                CopyOption::Quote(c) => out.quote = Some(byte(c, "QUOTE")?),
                CopyOption::Escape(c) => out.escape = Some(byte(c, "ESCAPE")?),
                CopyOption::Null(s) => out.null = Some(s),
                other => return Err(unsupported_option(&other.to_string())),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Csv(csv) => {
                    out.format = Some("csv".into());
                    for o in csv {
                        match o {
                            CopyLegacyCsvOption::Header => out.header = Some(true),
                            CopyLegacyCsvOption::Quote(c) => out.quote = Some(byte(c, "QUOTE")?),
                            CopyLegacyCsvOption::Escape(c) => {
                                out.escape = Some(byte(c, "ESCAPE")?);
                            }
                            other => return Err(unsupported_option(&other.to_string())),
                        }
                    }
                }
                CopyLegacyOption::Header => out.header = Some(true),
                CopyLegacyOption::Delimiter(c) => out.delimiter = Some(byte(c, "DELIMITER")?),
                CopyLegacyOption::Null(s) => out.null = Some(s),
                CopyLegacyOption::Parquet => out.format = Some("parquet".into()),
                CopyLegacyOption::Json(None) => out.format = Some("json".into()),
                other => return Err(unsupported_option(&other.to_string())),
            }
        }
        out.dialect = CsvDialect {
            header: out.header.unwrap_or(true),
            delimiter: out.delimiter.unwrap_or(b','),
            quote: out.quote.unwrap_or(b'"'),
            escape: out.escape,
        };
        Ok(out)
    }
}

fn byte(c: char, what: &str) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        ErrorKind::InvalidArgument(format!("COPY {what} must be a single ASCII character")).into()
    })
}

fn unsupported_option(option: &str) -> Error {
    ErrorKind::NotSupported(format!("COPY option {option}")).into()
}

/// DataFusion's `COPY … TO` for PostgreSQL's spelling.
fn copy_to(source: CopySource, target: String, o: &Options) -> DFStatement {
    let source = match source {
        CopySource::Query(q) => CopyToSource::Query(q),
        CopySource::Table { table_name, .. } => CopyToSource::Relation(table_name),
    };
    let text = |s: String| Value::SingleQuotedString(s);
    let mut options = Vec::new();
    if let Some(h) = o.header {
        options.push(("format.has_header".to_string(), text(h.to_string())));
    }
    for (key, c) in [
        ("format.delimiter", o.delimiter),
        ("format.quote", o.quote),
        ("format.escape", o.escape),
    ] {
        if let Some(c) = c {
            options.push((key.to_string(), text(char::from(c).to_string())));
        }
    }
    if let Some(null) = &o.null {
        options.push(("format.null_value".to_string(), text(null.clone())));
    }
    DFStatement::CopyTo(CopyToStatement {
        source,
        target,
        partitioned_by: Vec::new(),
        stored_as: o.format.as_ref().map(|f| f.to_ascii_uppercase()),
        options,
    })
}

/// Runs a `COPY … FROM` in the session's transaction (module docs);
/// returns the rows loaded.
pub(crate) async fn copy_from(session: &mut Session, copy: CopyFrom) -> Result<u64> {
    session
        .in_transaction_scope(|s| Box::pin(load(s, copy)))
        .await
}

async fn load(session: &mut Session, copy: CopyFrom) -> Result<u64> {
    crate::limits::check_read(&copy.path, session.external_access())?;
    let key = crate::schemas::resolve_for_ddl(&session.catalog, &copy.table_name)?;
    let Some(table) = session.tables.get(&key).cloned() else {
        return Err(ErrorKind::UndefinedTable { name: key }.into());
    };
    let schema = datafusion::datasource::TableProvider::schema(table.as_ref());
    let columns: Vec<String> = if copy.columns.is_empty() {
        schema.fields().iter().map(|f| f.name().clone()).collect()
    } else {
        copy.columns.clone()
    };
    let mut targets = Vec::with_capacity(columns.len());
    for name in &columns {
        let Ok(index) = schema.index_of(name) else {
            return Err(ErrorKind::UndefinedColumn {
                column: name.clone(),
                relation: Some(key.clone()),
            }
            .into());
        };
        let nullable = table
            .def()
            .schema
            .fields()
            .get(index)
            .is_none_or(|f| f.is_nullable());
        let field = schema.fields().get(index).cloned();
        if let Some(field) = field {
            targets.push(read::Target {
                field: field.as_ref().clone().with_nullable(true),
                nullable,
            });
        }
    }
    let source = read::FileSource::new(read::Spec {
        path: copy.path.clone(),
        kind: copy.kind,
        dialect: copy.dialect.clone(),
        null: copy.null.clone(),
        table: key.clone(),
        targets,
    })?;
    let provider = datafusion::catalog::streaming::StreamingTable::try_new(
        source.schema(),
        vec![Arc::new(source)],
    )?;
    session
        .ctx
        .register_table(SOURCE_TABLE, Arc::new(provider))?;
    let insert = format!(
        "INSERT INTO {} ({}) SELECT * FROM {SOURCE_TABLE}",
        crate::schemas::sql_name(&session.catalog, &key),
        columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let fires = crate::triggers::any(&session.catalog, &key, crate::triggers::Event::Insert);
    let result = async {
        if fires {
            // Through the session's INSERT, which fires the triggers.
            let statement = crate::session::parse_one(&insert)?;
            return session.dispatch(statement, &[]).await;
        }
        let plan = session.ctx.state().create_logical_plan(&insert).await?;
        session.run_plan(plan).await
    }
    .await;
    session.ctx.deregister_table(SOURCE_TABLE)?;
    match result? {
        Output::Count(n) => Ok(n),
        Output::Rows(..) => Ok(0),
    }
}

/// `name` as a quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
