//! `.import FILE TABLE`: loading a CSV, Parquet or JSON file into a table.
//!
//! DataFusion's readers turn the file into a stream of Arrow batches (CSV
//! with a header line, types inferred from the first rows; JSON with one
//! object per line, or one array of objects); each batch goes through the connection's bulk path
//! ([`entidb::Connection::append`]: the checks of INSERT). When TABLE does
//! not exist it is created with the inferred column names and types. The
//! whole import is one transaction — the session's open one, or its own —
//! so a bad row loads nothing. On a terminal a spinner counts the rows.

use super::dot::quote;
use super::driver::Shell;
use super::failure::Failure;
use super::sql_type::sql_type;
use arrow::datatypes::Schema;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionContext,
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

/// Imports `path` into `table`; returns the rows loaded.
///
/// # Errors
/// Unknown extensions, unreadable files, rows the table rejects (nothing is
/// loaded then).
pub fn import_file(
    shell: &mut Shell,
    path: &Path,
    table: &str,
    progress: bool,
) -> Result<u64, Failure> {
    let frame = shell.runtime.block_on(read(path))?;
    let catalog = shell.catalog()?;
    let name = if catalog.table(table).is_some() {
        table.to_string()
    } else {
        table.to_lowercase()
    };
    let create = match catalog.table(&name) {
        Some(_) => None,
        None => Some(create_statement(&name, frame.schema().as_arrow())?),
    };
    let own_transaction = !shell.conn.in_transaction();
    if own_transaction {
        shell.runtime.block_on(shell.conn.execute("BEGIN"))?;
    }
    let loaded = load(shell, frame, &name, create.as_deref(), progress);
    if own_transaction {
        let end = if loaded.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = shell.runtime.block_on(shell.conn.execute(end));
        let rows = loaded?;
        ended?;
        return Ok(rows);
    }
    loaded
}

fn load(
    shell: &mut Shell,
    frame: DataFrame,
    table: &str,
    create: Option<&str>,
    progress: bool,
) -> Result<u64, Failure> {
    if let Some(sql) = create {
        shell.runtime.block_on(shell.conn.execute(sql))?;
    }
    let mut stream = shell.runtime.block_on(frame.execute_stream())?;
    let bar = progress.then(spinner);
    let mut rows = 0;
    while let Some(batch) = shell.runtime.block_on(stream.next()) {
        let batch = batch?;
        rows += shell.runtime.block_on(shell.conn.append(table, &batch))?;
        if let Some(bar) = &bar {
            bar.set_position(rows);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(rows)
}

fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {human_pos} rows ({per_sec})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// The file as a DataFrame, by extension.
async fn read(path: &Path) -> Result<DataFrame, Failure> {
    let shown = path.display();
    if !path.is_file() {
        return Err(Failure::Other(format!(
            "cannot import {shown}: no such file"
        )));
    }
    let name = path
        .to_str()
        .ok_or_else(|| Failure::Other(format!("cannot import {shown}: the path is not UTF-8")))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let suffix = format!(".{ext}");
    let ctx = SessionContext::new();
    let frame = match ext.as_str() {
        "csv" => ctx.read_csv(name, CsvReadOptions::new()).await,
        "tsv" => {
            let options = CsvReadOptions::new()
                .delimiter(b'\t')
                .file_extension(&suffix);
            ctx.read_csv(name, options).await
        }
        "parquet" => ctx.read_parquet(name, ParquetReadOptions::default()).await,
        "json" | "jsonl" | "ndjson" => {
            let options = JsonReadOptions::default()
                .file_extension(&suffix)
                .newline_delimited(!starts_with_bracket(path));
            ctx.read_json(name, options).await
        }
        _ => {
            return Err(Failure::Other(format!(
                "cannot import {shown}: use a .csv, .tsv, .parquet, .json or .jsonl file"
            )));
        }
    };
    frame.map_err(|e| Failure::Other(format!("cannot read {shown}: {e}")))
}

/// True for a JSON file holding one array (`[{…}, …]`, what `--json`
/// prints) rather than one object per line.
fn starts_with_bracket(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head.get(..n)
        .and_then(|h| h.iter().find(|b| !b.is_ascii_whitespace()))
        .is_some_and(|b| *b == b'[')
}

/// `CREATE TABLE` for the columns of a file.
fn create_statement(table: &str, schema: &Schema) -> Result<String, Failure> {
    let mut columns = Vec::new();
    for field in schema.fields() {
        let ty = sql_type(field.data_type()).ok_or_else(|| {
            Failure::Other(format!(
                "cannot import column {} of type {}: EntiDB tables cannot hold it (SQLSTATE 0A000)",
                field.name(),
                field.data_type()
            ))
        })?;
        columns.push(format!("{} {ty}", quote(field.name())));
    }
    Ok(format!(
        "CREATE TABLE {} ({})",
        quote(table),
        columns.join(", ")
    ))
}
