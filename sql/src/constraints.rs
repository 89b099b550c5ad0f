//! UNIQUE constraints that are not the primary key.
//!
//! The primary key is enforced by the engine (it is the row key, checked at
//! statement time and again at commit). Other UNIQUE constraints are checked
//! after every statement that writes the table, over the transaction's whole
//! view of it. NULLs never collide, as in SQL. Known gap, closed by the index
//! issue: two concurrent transactions inserting the same non-key UNIQUE value
//! are not detected at commit.

use crate::error::{ErrorKind, Result};
use crate::slot::TxnSlot;
use arrow::array::{Array, ArrayRef};
use arrow::row::{RowConverter, SortField};
use entidb_catalog::TableMeta;
use entidb_engine::{ScanRequest, TableDef};
use std::collections::HashSet;

/// Fails with `UniqueViolation` if any UNIQUE constraint of the table has a
/// duplicate non-NULL value in the transaction's view.
pub fn check_unique(slot: &TxnSlot, def: &TableDef, meta: &TableMeta) -> Result<()> {
    for columns in &meta.unique {
        let request = ScanRequest {
            projection: Some(columns.clone()),
            ..ScanRequest::default()
        };
        let scan = slot.with(|t| t.scan(def.id, request))?;
        let fields = columns
            .iter()
            .map(|c| SortField::new(def.schema.field(*c).data_type().clone()))
            .collect();
        let converter =
            RowConverter::new(fields).map_err(|e| ErrorKind::Execution(e.to_string()))?;
        let mut seen = HashSet::new();
        for batch in scan {
            let batch = batch?;
            let arrays: Vec<ArrayRef> = batch.columns().to_vec();
            let rows = converter
                .convert_columns(&arrays)
                .map_err(|e| ErrorKind::Execution(e.to_string()))?;
            for (i, row) in rows.iter().enumerate() {
                if arrays.iter().any(|a| a.is_null(i)) {
                    continue;
                }
                if !seen.insert(row.as_ref().to_vec()) {
                    let names: Vec<&str> = columns
                        .iter()
                        .map(|c| def.schema.field(*c).name().as_str())
                        .collect();
                    return Err(ErrorKind::UniqueViolation {
                        table: def.name.clone(),
                        detail: format!("duplicate value in UNIQUE ({})", names.join(", ")),
                    }
                    .into());
                }
            }
        }
    }
    Ok(())
}
