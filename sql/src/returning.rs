//! `RETURNING` of INSERT, UPDATE and DELETE (and upsert).
//!
//! The statement first writes its rows; the rows *as written* (the new
//! versions for INSERT and UPDATE, the removed versions for DELETE, in the
//! table's column order and types) are then put in a one-statement
//! `MemTable` and the RETURNING list is evaluated over it by DataFusion:
//!
//! ```text
//!   … RETURNING id, v * 2 AS w   →   SELECT id, v * 2 AS w FROM __entidb_returning AS "t"
//! ```
//!
//! The MemTable is named by the target's alias (or the table's name), so
//! `t.v`, `*` and `t.*` resolve as in PostgreSQL, and any expression
//! (functions, scalar subqueries over other tables) works. Columns of the
//! other relations of `UPDATE … FROM` / `DELETE … USING` are not visible
//! in RETURNING (42703): only the target's.

use crate::error::{ErrorKind, Result};
use crate::session::{Output, Session};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::datasource::MemTable;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::SelectItem;
use std::sync::Arc;

/// Name the written rows are registered under while RETURNING runs.
const ROWS: &str = "__entidb_returning";

/// Evaluates `items` over `rows` (of `schema`, the table's), which the
/// statement wrote; `qualifier` is the quoted name the target goes by.
pub async fn project(
    session: &mut Session,
    qualifier: &str,
    schema: SchemaRef,
    rows: Vec<RecordBatch>,
    items: &[SelectItem],
    params: &[ScalarValue],
) -> Result<Output> {
    if items.is_empty() {
        return Err(ErrorKind::Syntax("RETURNING needs at least one expression".into()).into());
    }
    let table = MemTable::try_new(schema, vec![rows])?;
    session.ctx.register_table(ROWS, Arc::new(table))?;
    let list: Vec<String> = items.iter().map(ToString::to_string).collect();
    let select = format!("SELECT {} FROM {ROWS} AS {qualifier}", list.join(", "));
    let result = async {
        let mut plan = session.ctx.state().create_logical_plan(&select).await?;
        if !params.is_empty() {
            plan = plan.with_param_values(ParamValues::from(params.to_vec()))?;
        }
        session.run_plan(plan).await
    }
    .await;
    session.ctx.deregister_table(ROWS)?;
    result
}
