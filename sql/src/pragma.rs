//! `PRAGMA` statements (SQLite's spelling for database maintenance).
//!
//! - `PRAGMA integrity_check` verifies the whole database — every checksum
//!   of every file, the manifest against the files and the WAL, the key
//!   index and the built secondary indexes against the data, every index
//!   run file against its segment, and every
//!   UNIQUE constraint and unique index of the catalog — and returns one row
//!   per problem in a column `integrity_check`, or the single row `ok`, as
//!   SQLite does. It is read-only; commits wait while it runs (see
//!   `entidb_engine` `integrity.rs`).
//!
//! Any other pragma is `0A000` (feature not supported), naming it.

use crate::error::{ErrorKind, Result};
use crate::indexes::table_indexes;
use crate::session::Output;
use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::ObjectName;
use entidb_catalog::Catalog;
use entidb_engine::Engine;
use std::sync::Arc;

/// Runs `PRAGMA name`.
pub(crate) fn run(engine: &Engine, name: &ObjectName) -> Result<Output> {
    let pragma = name.to_string().to_ascii_lowercase();
    match pragma.as_str() {
        "integrity_check" => integrity_check(engine),
        _ => Err(ErrorKind::NotSupported(format!("PRAGMA {name}")).into()),
    }
}

/// The problems `PRAGMA integrity_check` reports; empty when intact.
pub fn integrity_problems(engine: &Engine) -> Result<Vec<String>> {
    let mut txn = engine.begin_read_only();
    let catalog = Catalog::load(&mut txn)?;
    let unique: Vec<(u64, Vec<usize>)> = catalog
        .tables
        .iter()
        .flat_map(|meta| {
            table_indexes(&catalog, meta)
                .into_iter()
                .filter(|i| i.unique && !i.primary)
                .map(|i| (meta.table_id, i.columns))
        })
        .collect();
    drop(txn);
    Ok(engine.integrity_check(&unique)?)
}

fn integrity_check(engine: &Engine) -> Result<Output> {
    let mut lines = integrity_problems(engine)?;
    if lines.is_empty() {
        lines.push("ok".into());
    }
    let schema = Arc::new(Schema::new(vec![Field::new(
        "integrity_check",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(lines))])
        .map_err(|e| ErrorKind::Execution(e.to_string()))?;
    Ok(Output::Rows(schema, vec![batch]))
}
