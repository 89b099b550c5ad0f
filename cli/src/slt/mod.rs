//! Running sqllogictest files against EntiDB.
//!
//! Each file runs on a fresh database (in memory, or on disk in a temporary
//! directory). `connection NAME` records get their own [`Connection`] to the
//! same database. Records are run one by one, so a failing record is counted
//! and the file goes on; only `statement` and `query` records are counted:
//!
//! - **passed** / **failed**: records that ran;
//! - **skipped**: records an `onlyif`/`skipif` condition excludes under the
//!   run's labels, and DuckDB-only commands and records ([`duckdb`]);
//! - a record the crate cannot parse is one failure, and the rest of its
//!   file still runs: when a file does not parse as a whole, it is parsed
//!   again block by block (records are separated by blank lines).
//!
//! **Isolation.** Every record runs as a task of its own on a two-worker
//! runtime, under a time limit ([`Options::timeout`]). A record that panics
//! or overruns is a failure; its connections are dropped (rolling back what
//! they had open) and the file goes on with new ones to the same database,
//! with the file's settings records (`hash-threshold`, `control`) applied
//! again. A record that overran may still be running when the next starts
//! (it stops at its next await point). `let` and `system` records are not
//! isolated: the corpora do not use them.
//!
//! **Values.** By default they print by their own type ([`values`]). With
//! [`Options::sqlite`] they print by the record's declared type letters, as
//! SQLite's harness does, every connection runs `SET entidb.dialect =
//! 'sqlite'`, and the label `sqlite` is on.
//!
//! Every connection plans for [`TARGET_PARTITIONS`] partitions whatever the
//! machine's CPU count, so EXPLAIN expectations (`RoundRobinBatch(2)`) are
//! the same everywhere; with [`Options::sqlite`], for one partition, as
//! SQLite runs: its files expect `group_concat` to follow the scan order,
//! which a parallel aggregation does not keep. `.test` files are DuckDB's dialect and are
//! translated first ([`duckdb`]).

pub mod causes;
pub mod duckdb;
pub mod values;

use async_trait::async_trait;
use causes::{Failure, Totals, cause_of};
use entidb::{Connection, Database, Error, Output};
use sqllogictest::{
    AsyncDB, Condition, DBOutput, DefaultColumnType, ExpectedError, QueryExpect, Record, Runner,
    StatementExpect, TestErrorKind,
};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
pub use values::format_rows;

/// The `datafusion.execution.target_partitions` every connection uses.
pub const TARGET_PARTITIONS: usize = 2;

/// How a run treats its files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where each file's database lives.
    pub backend: Backend,
    /// Labels for `onlyif`/`skipif`.
    pub labels: Vec<String>,
    /// SQLite's harness: values by type letter, `entidb.dialect = 'sqlite'`,
    /// the label `sqlite`.
    pub sqlite: bool,
    /// Expected error messages are not compared (other engines' wording):
    /// a record expecting an error passes on any error.
    pub any_error: bool,
    /// The time limit of one record.
    pub timeout: Duration,
}

impl Options {
    /// EntiDB's own files: no labels, values by their own type, errors
    /// compared, 60 s per record.
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            labels: Vec::new(),
            sqlite: false,
            any_error: false,
            timeout: Duration::from_secs(60),
        }
    }

    /// The labels conditions see: the run's, `sqlite` with
    /// [`Options::sqlite`], and the engine's name, as the crate's runner
    /// adds it.
    fn all_labels(&self) -> Vec<String> {
        let mut labels = self.labels.clone();
        if self.sqlite {
            labels.push("sqlite".into());
        }
        labels.push("entidb".into());
        labels
    }
}

/// What the record being run expects, shared with its connections.
#[derive(Debug, Default)]
struct Current {
    /// A `query` record: a DML statement then answers with a one-row
    /// `count` result, as DataFusion's own tests expect (`statement count N`
    /// records keep the affected-rows form).
    in_query: bool,
    /// The record's declared type letters, when values print by them.
    letters: Option<Vec<DefaultColumnType>>,
}

/// One connection as seen by the sqllogictest runner.
pub struct SltConnection {
    conn: Connection,
    current: Arc<Mutex<Current>>,
}

#[async_trait]
impl AsyncDB for SltConnection {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let output = self.conn.run_script(sql).await.pop();
        let (in_query, letters) = {
            let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            (current.in_query, current.letters.clone())
        };
        match output.unwrap_or(Ok(Output::Count(0)))? {
            Output::Count(n) if in_query => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Integer],
                rows: vec![vec![n.to_string()]],
            }),
            Output::Count(n) => Ok(DBOutput::StatementComplete(n)),
            Output::Rows(schema, batches) => {
                let types = schema
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect();
                let rows = match letters {
                    Some(letters) => values::format_rows_as_declared(&batches, &letters)?,
                    None => split_multiline(format_rows(&batches)?),
                };
                Ok(DBOutput::Rows { types, rows })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "entidb"
    }

    fn error_sql_state(err: &Error) -> Option<String> {
        Some(err.sqlstate().to_string())
    }
}

fn column_type(t: &arrow::datatypes::DataType) -> DefaultColumnType {
    use arrow::datatypes::DataType;
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// Rows with multi-line cells (EXPLAIN plans) become one row per line: the
/// other cells on a row of their own, then each line numbered `NN)` with its
/// indentation drawn as `-`, as DataFusion's own sqllogictest files do.
fn split_multiline(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    if !rows.iter().flatten().any(|c| c.contains('\n')) {
        return rows;
    }
    let mut out = Vec::new();
    for row in rows {
        let (multi, single): (Vec<String>, Vec<String>) =
            row.into_iter().partition(|c| c.contains('\n'));
        if !single.is_empty() {
            out.push(single);
        }
        for cell in multi {
            for (i, line) in cell.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                let indent = line.len() - line.trim_start().len();
                out.push(vec![format!(
                    "{:02}){}{}",
                    i + 1,
                    "-".repeat(indent),
                    line.trim_start()
                )]);
            }
        }
    }
    out
}

/// Where a file's database lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In memory.
    Memory,
    /// In a temporary directory on disk.
    Disk,
}

/// The outcome of one file.
#[derive(Debug, Default)]
pub struct FileReport {
    /// Records that passed.
    pub passed: usize,
    /// Records that failed.
    pub failed: usize,
    /// Records skipped.
    pub skipped: usize,
    /// One entry per failure.
    pub failures: Vec<Failure>,
}

impl FileReport {
    /// The counts without the failures.
    pub fn totals(&self) -> Totals {
        Totals {
            passed: self.passed,
            failed: self.failed,
            skipped: self.skipped,
        }
    }

    fn fail(&mut self, location: String, kind: &TestErrorKind, message: String) {
        self.failed += 1;
        self.failures.push(Failure {
            location,
            message,
            cause: cause_of(kind),
        });
    }
}

type SltRunner = Runner<SltConnection, Box<dyn FnMut() -> ConnectFuture + Send>>;
type ConnectFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<SltConnection, Error>> + Send>>;

/// The open database of a file, and how to reopen it (`restart`).
struct FileDatabase {
    db: Database,
    dir: tempfile::TempDir,
    backend: Backend,
}

impl FileDatabase {
    fn open(backend: Backend) -> Result<FileDatabase, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let db = match backend {
            Backend::Memory => Database::open_in_memory(),
            Backend::Disk => Database::open(dir.path().join("db")),
        }
        .map_err(|e| e.to_string())?;
        Ok(FileDatabase { db, dir, backend })
    }

    /// Closes and reopens an on-disk database; `false` in memory (nothing
    /// would survive).
    fn restart(&mut self) -> Result<bool, String> {
        if self.backend == Backend::Memory {
            return Ok(false);
        }
        let placeholder = Database::open_in_memory().map_err(|e| e.to_string())?;
        drop(std::mem::replace(&mut self.db, placeholder));
        self.db = Database::open(self.dir.path().join("db")).map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// A new runner with the file's settings records applied again.
    async fn fresh_runner(
        &self,
        options: &Options,
        current: &Arc<Mutex<Current>>,
        settings: &[Record<DefaultColumnType>],
    ) -> SltRunner {
        let mut runner = self.runner(options, current);
        for record in settings {
            let _ = runner.run_async(record.clone()).await;
        }
        runner
    }

    fn runner(&self, options: &Options, current: &Arc<Mutex<Current>>) -> SltRunner {
        let (db, current, sqlite) = (self.db.clone(), current.clone(), options.sqlite);
        let make: Box<dyn FnMut() -> ConnectFuture + Send> = Box::new(move || {
            let (db, current) = (db.clone(), current.clone());
            Box::pin(async move {
                let mut conn = db.connect();
                let partitions = if sqlite { 1 } else { TARGET_PARTITIONS };
                conn.execute(&format!(
                    "SET datafusion.execution.target_partitions = {partitions}"
                ))
                .await?;
                if sqlite {
                    conn.execute("SET entidb.dialect = 'sqlite'").await?;
                }
                Ok::<_, Error>(SltConnection { conn, current })
            })
        });
        let mut runner = Runner::new(make);
        for label in options.all_labels() {
            runner.add_label(&label);
        }
        runner
    }
}

/// Runs one file on a fresh database.
///
/// # Errors
/// When the file cannot be read or the database or runtime cannot be
/// created. A record that cannot be parsed is a failure, not an error.
pub fn run_file(path: &Path, options: &Options) -> Result<FileReport, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = runtime.block_on(run_records(path, options));
    // A record that overran may still be computing: do not wait for it.
    runtime.shutdown_background();
    result
}

async fn run_records(path: &Path, options: &Options) -> Result<FileReport, String> {
    let mut report = FileReport::default();
    let records = parse(path, &mut report)?;
    let labels = options.all_labels();
    let mut database = FileDatabase::open(options.backend)?;
    let current = Arc::new(Mutex::new(Current::default()));
    let mut runner = Some(database.runner(options, &current));
    // Settings records (hash-threshold, control): replayed into a runner
    // that replaces one lost to a panic, a timeout or a restart.
    let mut settings: Vec<Record<DefaultColumnType>> = Vec::new();
    for (record, line_offset) in records {
        let at = |loc: &sqllogictest::Location| {
            format!("{}:{}", loc.file(), loc.line().saturating_add(line_offset))
        };
        let (location, conditions, is_query) = match &record {
            Record::Statement {
                loc, conditions, ..
            } => (at(loc), conditions, false),
            Record::Query {
                loc, conditions, ..
            } => (at(loc), conditions, true),
            Record::Halt { .. } => break,
            _ => {
                // Control records (hash-threshold, connection, …) steer the
                // runner; they are not counted.
                if matches!(record, Record::HashThreshold { .. } | Record::Control(_)) {
                    settings.push(record.clone());
                }
                if let Some(r) = runner.as_mut() {
                    let _ = r.run_async(record).await;
                }
                continue;
            }
        };
        if conditions.iter().any(|c| skips(c, &labels)) {
            report.skipped += 1;
            continue;
        }
        if let Record::Statement { sql, .. } = &record
            && sql.trim() == duckdb::RESTART
        {
            // The connections close before the database does.
            drop(runner.take());
            match database.restart() {
                Ok(true) => report.passed += 1,
                Ok(false) => report.skipped += 1,
                Err(e) => {
                    let message = format!("the database did not reopen: {e}");
                    report.fail_with_cause(location, "restart failed", message);
                    break;
                }
            }
            runner = Some(database.fresh_runner(options, &current, &settings).await);
            continue;
        }
        {
            let mut c = current.lock().unwrap_or_else(PoisonError::into_inner);
            c.in_query = is_query;
            c.letters = match &record {
                Record::Query {
                    expected: QueryExpect::Results { types, .. },
                    ..
                } if options.sqlite => Some(types.clone()),
                _ => None,
            };
        }
        let record = if options.any_error {
            any_error(record)
        } else {
            record
        };
        let Some(mut r) = runner.take() else {
            break;
        };
        let task = tokio::spawn(async move {
            let result = r.run_async(record).await;
            (r, result)
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(options.timeout, task).await {
            Ok(Ok((r, result))) => {
                runner = Some(r);
                match result {
                    Ok(_) => report.passed += 1,
                    Err(e) => {
                        let message = e.display(false).to_string();
                        report.fail(location, &e.kind(), message);
                    }
                }
            }
            Ok(Err(join)) => {
                let message = format!("the record panicked: {join}");
                report.fail_with_cause(location, "panic", message);
                runner = Some(database.fresh_runner(options, &current, &settings).await);
            }
            Err(_) => {
                abort.abort();
                let message = format!("timed out after {:?}", options.timeout);
                report.fail_with_cause(location, "timed out", message);
                runner = Some(database.fresh_runner(options, &current, &settings).await);
            }
        }
    }
    Ok(report)
}

impl FileReport {
    fn fail_with_cause(&mut self, location: String, cause: &str, message: String) {
        self.failed += 1;
        self.failures.push(Failure {
            location,
            message,
            cause: cause.into(),
        });
    }
}

/// Whether a condition excludes its record under `labels`.
fn skips(condition: &Condition, labels: &[String]) -> bool {
    match condition {
        Condition::OnlyIf { label } => !labels.contains(label),
        Condition::SkipIf { label } => labels.contains(label),
    }
}

/// The record with its expected error message dropped: any error passes.
fn any_error(record: Record<DefaultColumnType>) -> Record<DefaultColumnType> {
    match record {
        Record::Statement {
            loc,
            conditions,
            connection,
            sql,
            expected: StatementExpect::Error(_),
            retry,
        } => Record::Statement {
            loc,
            conditions,
            connection,
            sql,
            expected: StatementExpect::Error(ExpectedError::Empty),
            retry,
        },
        Record::Query {
            loc,
            conditions,
            connection,
            sql,
            expected: QueryExpect::Error(_),
            retry,
        } => Record::Query {
            loc,
            conditions,
            connection,
            sql,
            expected: QueryExpect::Error(ExpectedError::Empty),
            retry,
        },
        other => other,
    }
}

/// The file's records. DuckDB files are translated first; when the script
/// does not parse as a whole, it is parsed block by block and each
/// unparsable block holding a record counts as one failure. Each record
/// comes with the number of lines to add to its location (its block's
/// first line when block-parsed).
fn parse(
    path: &Path,
    report: &mut FileReport,
) -> Result<Vec<(Record<DefaultColumnType>, u32)>, String> {
    let name = path.display().to_string();
    let mut text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    if path.extension().is_some_and(|e| e == "test") {
        let translated = duckdb::translate(&text);
        report.skipped += translated.skipped;
        text = translated.text;
    }
    let has_include = text.lines().any(|l| l.starts_with("include "));
    let whole = if has_include {
        sqllogictest::parse_file::<DefaultColumnType>(path)
    } else {
        sqllogictest::parse_with_name::<DefaultColumnType>(&text, name.as_str())
    };
    if let Ok(records) = whole {
        return Ok(records.into_iter().map(|r| (r, 0)).collect());
    }
    let mut records = Vec::new();
    let mut next_line = 0usize;
    for block in text.split("\n\n") {
        let first_line = next_line;
        // The block's own newlines and the two that end it.
        next_line += block.matches('\n').count() + 2;
        match sqllogictest::parse_with_name::<DefaultColumnType>(block, name.as_str()) {
            Ok(parsed) => {
                let offset = u32::try_from(first_line).unwrap_or(u32::MAX);
                records.extend(parsed.into_iter().map(|r| (r, offset)));
            }
            Err(e) => {
                let holds_record = block
                    .lines()
                    .any(|l| l.starts_with("statement") || l.starts_with("query"));
                if holds_record {
                    let kind = TestErrorKind::ParseError(e.kind());
                    report.fail(format!("{name}:{}", first_line + 1), &kind, e.to_string());
                }
            }
        }
    }
    Ok(records)
}
