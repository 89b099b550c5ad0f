//! Running sqllogictest files against EntiDB.
//!
//! Each file runs on a fresh database (in memory, or on disk in a temporary
//! directory). `connection NAME` records get their own [`Connection`] to the
//! same database. Records are run one by one, so a failing record is counted
//! and the file goes on; only `statement` and `query` records are counted.
//! Values print as text: NULL as `NULL`, the empty string as `(empty)`.
//! Every connection plans for [`TARGET_PARTITIONS`] partitions whatever the
//! machine's CPU count, so EXPLAIN expectations (`RoundRobinBatch(2)`) are
//! the same everywhere.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use entidb::{Connection, Database, Error, Output};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Record, Runner};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The `datafusion.execution.target_partitions` every connection uses.
pub const TARGET_PARTITIONS: usize = 2;

/// One connection as seen by the sqllogictest runner.
pub struct SltConnection {
    conn: Connection,
    /// Set while a `query` record runs: a DML statement then answers with a
    /// one-row `count` result, as DataFusion's own tests expect
    /// (`statement count N` records keep the affected-rows form).
    in_query: Arc<AtomicBool>,
}

#[async_trait]
impl AsyncDB for SltConnection {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let output = self.conn.run_script(sql).await.pop();
        match output.unwrap_or(Ok(Output::Count(0)))? {
            Output::Count(n) if self.in_query.load(Ordering::SeqCst) => Ok(DBOutput::Rows {
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
                Ok(DBOutput::Rows {
                    types,
                    rows: split_multiline(format_rows(&batches)?),
                })
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

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// Formats batches as rows of strings (NULL → `NULL`, "" → `(empty)`).
pub fn format_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, Error> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::from(entidb_sql::ErrorKind::Execution(e.to_string())))?;
        for row in 0..batch.num_rows() {
            let cells = formatters
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| {
                    let s = f.value(row).to_string();
                    if s.is_empty() && !c.is_null(row) {
                        "(empty)".to_string()
                    } else {
                        s
                    }
                })
                .collect();
            rows.push(cells);
        }
    }
    Ok(rows)
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
    /// One message per failure.
    pub failures: Vec<String>,
}

/// Runs one `.slt` file on a fresh database.
///
/// # Errors
/// When the file cannot be parsed or the database cannot be created.
pub async fn run_file(
    path: &Path,
    backend: Backend,
    labels: &[&str],
) -> Result<FileReport, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = match backend {
        Backend::Memory => Database::open_in_memory(),
        Backend::Disk => Database::open(dir.path().join("db")),
    }
    .map_err(|e| e.to_string())?;
    let records = sqllogictest::parse_file::<DefaultColumnType>(path).map_err(|e| e.to_string())?;
    let in_query = Arc::new(AtomicBool::new(false));
    let flag = in_query.clone();
    let mut runner = Runner::new(move || {
        let (db, in_query) = (db.clone(), flag.clone());
        async move {
            let mut conn = db.connect();
            conn.execute(&format!(
                "SET datafusion.execution.target_partitions = {TARGET_PARTITIONS}"
            ))
            .await?;
            Ok::<_, Error>(SltConnection { conn, in_query })
        }
    });
    for label in labels {
        runner.add_label(label);
    }
    let mut report = FileReport::default();
    for record in records {
        let counted = matches!(record, Record::Statement { .. } | Record::Query { .. });
        in_query.store(matches!(record, Record::Query { .. }), Ordering::SeqCst);
        if matches!(record, Record::Halt { .. }) {
            break;
        }
        match runner.run_async(record).await {
            Ok(_) if counted => report.passed += 1,
            Ok(_) => {}
            Err(e) => {
                if counted {
                    report.failed += 1;
                }
                report.failures.push(e.display(false).to_string());
            }
        }
    }
    Ok(report)
}
