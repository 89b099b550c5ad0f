//! DELETE and UPDATE, evaluated by key.
//!
//! DataFusion 55 hands subquery predicates to `TableProvider::delete_from` as
//! an empty filter list (which would mean "every row") and builds DML plans
//! during EXPLAIN. So the session never lets DataFusion run DML. Instead:
//!
//! ```text
//!   DELETE FROM t WHERE p            →  SELECT t.__entidb_key FROM t WHERE p
//!   UPDATE t SET a = e WHERE p       →  SELECT t.__entidb_key, e AS a, t.b, … FROM t WHERE p
//!   UPDATE t SET … FROM u WHERE p    →  … FROM t, u WHERE p
//! ```
//!
//! The SELECT runs against a *keyed* provider of `t` (its schema has the row
//! key as an extra column) and reads the statement's snapshot in full before
//! anything is written; then the keys are deleted and, for UPDATE, the new
//! rows inserted, all inside the session's transaction. Subqueries in SET and
//! WHERE work because they are just part of the SELECT, and so do bound
//! parameters (`$1` in SET or WHERE is printed into the SELECT and bound on
//! its plan). EXPLAIN shows the SELECT's plan and changes nothing.

use crate::ddl::normalize;
use crate::error::{ErrorKind, Result};
use crate::indexes::unique_sets;
use crate::provider::{EntiTable, KEY_COLUMN, conform_columns, insert_rows};
use crate::session::{Output, Session};
use arrow::array::{Array, AsArray, BinaryArray, RecordBatch};
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Delete, FromTable, Statement as SqlStatement, TableFactor, TableWithJoins,
    Update, UpdateTableFromKind,
};
use std::collections::HashSet;
use std::sync::Arc;

/// The target table of a DML statement.
struct Target {
    table: Arc<EntiTable>,
    /// How the SELECT refers to it (alias or name), quoted.
    qualifier: String,
    /// The FROM item as written (name and alias).
    relation: String,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn target(session: &Session, twj: &TableWithJoins) -> Result<Target> {
    if !twj.joins.is_empty() {
        return Err(ErrorKind::NotSupported("JOIN in the target of DELETE/UPDATE".into()).into());
    }
    let TableFactor::Table { name, alias, .. } = &twj.relation else {
        return Err(ErrorKind::NotSupported(
            "DELETE/UPDATE of something other than a table".into(),
        )
        .into());
    };
    let ident = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .ok_or_else(|| ErrorKind::Plan(format!("bad table name {name}")))?;
    let table_name = normalize(ident);
    let table = session.tables.get(&table_name).cloned().ok_or_else(|| {
        if session.catalog.view(&table_name).is_some() {
            ErrorKind::NotSupported(format!("cannot modify view {table_name}"))
        } else {
            ErrorKind::UndefinedTable {
                name: table_name.clone(),
            }
        }
    })?;
    let qualifier = match alias {
        Some(a) => quote(&normalize(&a.name)),
        None => quote(&table_name),
    };
    Ok(Target {
        table,
        qualifier,
        relation: twj.relation.to_string(),
    })
}

/// Runs `select` with `target` registered as its keyed variant, binding
/// `$1, $2, …` to `params`.
async fn with_keyed(
    session: &mut Session,
    target: &Target,
    select: &str,
    params: &[ScalarValue],
) -> Result<Output> {
    let name = target.table.meta().name.clone();
    session.ctx.deregister_table(name.as_str())?;
    session
        .ctx
        .register_table(name.as_str(), Arc::new(target.table.keyed()))?;
    let result = async {
        let mut plan = session.ctx.state().create_logical_plan(select).await?;
        if !params.is_empty() {
            plan = plan.with_param_values(ParamValues::from(params.to_vec()))?;
        }
        session.run_plan(plan).await
    }
    .await;
    session.ctx.deregister_table(name.as_str())?;
    session
        .ctx
        .register_table(name.as_str(), target.table.clone())?;
    result
}

fn where_clause(selection: Option<&datafusion::sql::sqlparser::ast::Expr>) -> String {
    selection.map(|s| format!(" WHERE {s}")).unwrap_or_default()
}

fn delete_select(session: &Session, d: &Delete) -> Result<(Target, String)> {
    let tables = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [twj] = tables.as_slice() else {
        return Err(ErrorKind::NotSupported("DELETE from several tables".into()).into());
    };
    if d.using.is_some() || d.returning.is_some() || d.limit.is_some() || !d.order_by.is_empty() {
        return Err(ErrorKind::NotSupported(
            "DELETE with USING, RETURNING, ORDER BY or LIMIT".into(),
        )
        .into());
    }
    let target = target(session, twj)?;
    let sql = format!(
        "SELECT {}.{KEY_COLUMN} FROM {}{}",
        target.qualifier,
        target.relation,
        where_clause(d.selection.as_ref())
    );
    Ok((target, sql))
}

fn update_select(session: &Session, u: &Update) -> Result<(Target, String)> {
    if u.returning.is_some() || u.limit.is_some() || !u.order_by.is_empty() || u.or.is_some() {
        return Err(
            ErrorKind::NotSupported("UPDATE with RETURNING, ORDER BY, LIMIT or OR".into()).into(),
        );
    }
    let target = target(session, &u.table)?;
    let schema = target.table.def().schema.clone();
    let mut values: Vec<Option<String>> = vec![None; schema.fields().len()];
    for a in &u.assignments {
        let AssignmentTarget::ColumnName(col) = &a.target else {
            return Err(ErrorKind::NotSupported("tuple assignment in UPDATE".into()).into());
        };
        let ident = col
            .0
            .last()
            .and_then(|p| p.as_ident())
            .ok_or_else(|| ErrorKind::Plan(format!("bad column {col}")))?;
        let name = normalize(ident);
        let i = schema.index_of(&name).map_err(|_| {
            ErrorKind::Plan(format!(
                "column {name} of table {} does not exist",
                target.table.meta().name
            ))
        })?;
        values[i] = Some(a.value.to_string());
    }
    let mut items = vec![format!("{}.{KEY_COLUMN}", target.qualifier)];
    for (f, v) in schema.fields().iter().zip(&values) {
        items.push(match v {
            Some(expr) => format!("({expr}) AS {}", quote(f.name())),
            None => format!("{}.{}", target.qualifier, quote(f.name())),
        });
    }
    let from = match &u.from {
        Some(UpdateTableFromKind::BeforeSet(t) | UpdateTableFromKind::AfterSet(t)) => {
            let extra: Vec<String> = t.iter().map(|x| x.to_string()).collect();
            format!(", {}", extra.join(", "))
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT {} FROM {}{from}{}",
        items.join(", "),
        target.relation,
        where_clause(u.selection.as_ref())
    );
    Ok((target, sql))
}

fn rows(out: Output) -> Vec<RecordBatch> {
    match out {
        Output::Rows(_, batches) => batches,
        Output::Count(_) => vec![],
    }
}

fn keys_of(batch: &RecordBatch) -> Result<BinaryArray> {
    batch
        .column(0)
        .as_binary_opt::<i32>()
        .cloned()
        .ok_or_else(|| ErrorKind::Execution("row key column has the wrong type".into()).into())
}

/// DELETE: collect the keys of matching rows, then delete them.
pub async fn delete(session: &mut Session, d: &Delete, params: &[ScalarValue]) -> Result<u64> {
    let (target, select) = delete_select(session, d)?;
    let batches = rows(with_keyed(session, &target, &select, params).await?);
    let id = target.table.def().id;
    let mut deleted = 0;
    for batch in &batches {
        let keys = keys_of(batch)?;
        deleted += session.slot.with(|t| t.delete(id, &keys))?;
    }
    Ok(deleted)
}

/// UPDATE: compute the new rows, delete the old versions, insert the new.
pub async fn update(session: &mut Session, u: &Update, params: &[ScalarValue]) -> Result<u64> {
    let (target, select) = update_select(session, u)?;
    let batches = rows(with_keyed(session, &target, &select, params).await?);
    let def = target.table.def().clone();
    let unique = unique_sets(target.table.indexes());
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    for batch in &batches {
        let keys = keys_of(batch)?;
        // UPDATE … FROM may match a row several times: the first match wins.
        let keep: Vec<bool> = keys
            .iter()
            .map(|k| seen.insert(k.unwrap_or_default().to_vec()))
            .collect();
        let mask = arrow::array::BooleanArray::from(keep);
        let batch = arrow::compute::filter_record_batch(batch, &mask)
            .map_err(|e| ErrorKind::Execution(e.to_string()))?;
        if batch.num_rows() == 0 {
            continue;
        }
        let keys = keys_of(&batch)?;
        let new_rows = conform_columns(&def, batch.columns().get(1..).unwrap_or_default())?;
        changes.push((keys, new_rows));
    }
    // Every old version goes before any new one is checked against the
    // UNIQUE indexes, so `SET u = u + 1` does not collide with itself.
    session.slot.with(|t| {
        for (keys, _) in &changes {
            t.delete(def.id, keys)?;
        }
        for (_, rows) in &changes {
            insert_rows(t, &def, &unique, rows)?;
        }
        Ok(())
    })?;
    Ok(changes.iter().map(|(k, _)| k.len() as u64).sum())
}

/// EXPLAIN of a DELETE or UPDATE: the plan of the SELECT that finds the rows.
pub async fn explain(
    session: &mut Session,
    statement: &SqlStatement,
    params: &[ScalarValue],
) -> Result<Output> {
    let (target, select) = match statement {
        SqlStatement::Delete(d) => delete_select(session, d)?,
        SqlStatement::Update(u) => update_select(session, u)?,
        _ => return Err(ErrorKind::NotSupported("EXPLAIN of this statement".into()).into()),
    };
    with_keyed(session, &target, &format!("EXPLAIN {select}"), params).await
}
