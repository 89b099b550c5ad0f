//! INSERT with `RETURNING` or `ON CONFLICT` (upsert).
//!
//! A plain INSERT runs through DataFusion (`EntiTable::insert_into`). When
//! the statement has a RETURNING list or an ON CONFLICT clause, the session
//! takes it instead:
//!
//! 1. The clauses are cut off and DataFusion plans the remaining INSERT.
//!    Its `Dml` plan's input is the source query already shaped as the
//!    table's rows (column list, DEFAULTs, casts): that input is run and
//!    collected, so the rows are computed from the statement's snapshot
//!    before anything is written (as for `INSERT … SELECT` from the same
//!    table).
//! 2. Without ON CONFLICT the rows are inserted as by the sink (NOT NULL,
//!    UNIQUE). With it, `upsert.rs` splits them into rows to insert, rows
//!    that update an existing row and rows skipped.
//! 3. RETURNING is evaluated over the rows written (`returning.rs`).

use crate::ddl::normalize;
use crate::dml::quote;
use crate::error::{ErrorKind, Result};
use crate::indexes::unique_sets;
use crate::provider::{EntiTable, insert_rows};
use crate::session::{Output, Session};
use crate::triggers::{self, Changed, Event, Timing};
use crate::{returning, upsert};
use arrow::array::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Insert, OnInsert, Statement as SqlStatement, TableObject};
use std::sync::Arc;

/// True when the session must run this INSERT itself (see the module doc).
pub fn needs_session(insert: &Insert) -> bool {
    insert.on.is_some() || insert.returning.is_some()
}

/// True when `insert`'s target has INSERT triggers: the session runs it, so
/// that they fire (`triggers.rs`).
pub fn fires(session: &Session, insert: &Insert) -> bool {
    let TableObject::TableName(name) = &insert.table else {
        return false;
    };
    crate::schemas::resolve(&session.catalog, name)
        .is_ok_and(|t| triggers::any(&session.catalog, &t, Event::Insert))
}

/// The target table of `insert` and the name it goes by (alias or name).
fn target(session: &Session, insert: &Insert) -> Result<(Arc<EntiTable>, String)> {
    let TableObject::TableName(name) = &insert.table else {
        return Err(ErrorKind::NotSupported("INSERT into a table function".into()).into());
    };
    let (table_name, table) = crate::dml::written_table(session, name, "insert into")?;
    let qualifier = match &insert.table_alias {
        Some(a) => normalize(&a.alias),
        None => session.catalog.split(&table_name).1.to_string(),
    };
    Ok((table, qualifier))
}

/// The rows the INSERT proposes, in the table's schema.
async fn proposed_rows(
    session: &mut Session,
    insert: &Insert,
    table: &EntiTable,
    params: &[ScalarValue],
) -> Result<Vec<RecordBatch>> {
    let mut plain = insert.clone();
    plain.on = None;
    plain.returning = None;
    plain.table_alias = None;
    let statement = DFStatement::Statement(Box::new(SqlStatement::Insert(plain)));
    let plan = session.ctx.state().statement_to_plan(statement).await?;
    let LogicalPlan::Dml(dml) = plan else {
        return Err(ErrorKind::Plan("INSERT did not plan as an insert".into()).into());
    };
    let mut input = Arc::unwrap_or_clone(dml.input);
    if !params.is_empty() {
        input = input.with_param_values(ParamValues::from(params.to_vec()))?;
    }
    let batches = match session.run_plan(input).await? {
        Output::Rows(_, batches) => batches,
        Output::Count(_) => Vec::new(),
    };
    batches.iter().map(|b| table.conform(b)).collect()
}

/// Inserts `rows` into `table` (NOT NULL, UNIQUE, foreign keys), firing its
/// INSERT triggers around the write; returns the rows.
pub(crate) async fn write_firing(
    session: &mut Session,
    table: &EntiTable,
    rows: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let changed = Changed {
        old: &[],
        new: &rows,
        assigned: &[],
    };
    triggers::fire(session, table, Timing::Before, Event::Insert, &changed).await?;
    let def = table.def().clone();
    let unique = unique_sets(table.indexes());
    session.slot.with_sql(|t| {
        for batch in &rows {
            insert_rows(t, &def, &unique, batch)?;
        }
        // After every row is in: a row may refer to a later one.
        for batch in &rows {
            table.foreign_keys().verify(t, batch)?;
        }
        Ok(())
    })?;
    triggers::fire(session, table, Timing::After, Event::Insert, &changed).await?;
    Ok(rows)
}

/// Runs an INSERT with RETURNING and/or ON CONFLICT, or one whose table has
/// INSERT triggers.
pub async fn run(session: &mut Session, insert: &Insert, params: &[ScalarValue]) -> Result<Output> {
    if insert.or.is_some() || insert.ignore || insert.overwrite || insert.replace_into {
        return Err(ErrorKind::NotSupported(
            "INSERT OR …/IGNORE/OVERWRITE/REPLACE with ON CONFLICT or RETURNING".into(),
        )
        .into());
    }
    let (table, name) = target(session, insert)?;
    let rows = proposed_rows(session, insert, &table, params).await?;
    let def = table.def().clone();
    let written = match &insert.on {
        None => write_firing(session, &table, rows).await?,
        Some(OnInsert::OnConflict(on)) => {
            triggers::refuse_if_any(&session.catalog, &table.meta().name, "INSERT … ON CONFLICT")?;
            upsert::apply(session, &table, &name, on, rows, params).await?
        }
        Some(_) => {
            return Err(ErrorKind::NotSupported("ON DUPLICATE KEY UPDATE".into()).into());
        }
    };
    match &insert.returning {
        None => Ok(Output::Count(
            written.iter().map(|b| b.num_rows() as u64).sum(),
        )),
        Some(items) => {
            let schema = def.schema.clone();
            returning::project(session, &quote(&name), schema, written, items, params).await
        }
    }
}
