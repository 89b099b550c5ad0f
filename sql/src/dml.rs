//! DELETE and UPDATE, evaluated by key.
//!
//! DataFusion 55 hands subquery predicates to `TableProvider::delete_from` as
//! an empty filter list (which would mean "every row") and builds DML plans
//! during EXPLAIN. So the session never lets DataFusion run DML. Instead:
//!
//! ```text
//!   DELETE FROM t WHERE p            →  SELECT t.__entidb_key FROM t WHERE p
//!   UPDATE t SET a = e WHERE p       →  SELECT t.__entidb_key, e AS a, t.b, … FROM t WHERE p
//!   UPDATE t SET … FROM u WHERE p    →  … FROM t, u WHERE p ORDER BY 1, 2, …
//!   DELETE FROM t USING u WHERE p    →  SELECT t.__entidb_key FROM t, u WHERE p
//! ```
//!
//! A join may produce a target row several times: only the first row per
//! key is used. For UPDATE … FROM the SELECT is ordered by key and new
//! values, so "first" is the candidate whose new values sort first — the
//! same answer whatever order the join emits (PostgreSQL leaves the choice
//! unspecified). With RETURNING, DELETE also selects the old row, and the
//! list is evaluated over the rows written (`returning.rs`).
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
use crate::foreign_keys::{self, ParentChange};
use crate::indexes::unique_sets;
use crate::provider::{EntiTable, KEY_COLUMN, conform_columns, insert_rows};
use crate::returning;
use crate::session::{Output, Session};
use crate::triggers::{self, Changed, Event, Timing};
use arrow::array::{Array, AsArray, BinaryArray, BooleanArray, RecordBatch};
use arrow::datatypes::Schema;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, Expr as SqlExpr, FromTable, ObjectName, OrderByExpr,
    Statement as SqlStatement, TableFactor, TableWithJoins, Update, UpdateTableFromKind,
};
use entidb_engine::TableDef;
use std::collections::HashSet;
use std::sync::Arc;

/// The target table of a DML statement.
pub(crate) struct Target {
    pub(crate) table: Arc<EntiTable>,
    /// How the SELECT refers to it (alias or name), quoted.
    pub(crate) qualifier: String,
    /// The FROM item as written (name and alias).
    pub(crate) relation: String,
}

pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The EntiDB table a write names (its normalised name and table), or the
/// error for a view (`cannot {verb} view …`, 0A000) or a missing table.
pub(crate) fn written_table(
    session: &Session,
    name: &ObjectName,
    verb: &str,
) -> Result<(String, Arc<EntiTable>)> {
    let table_name = crate::schemas::resolve(&session.catalog, name)?;
    let table = session.tables.get(&table_name).cloned().ok_or_else(|| {
        if session.catalog.view(&table_name).is_some() {
            ErrorKind::NotSupported(format!("cannot {verb} view {table_name}"))
        } else {
            ErrorKind::UndefinedTable {
                name: table_name.clone(),
            }
        }
    })?;
    Ok((table_name, table))
}

pub(crate) fn target(session: &Session, twj: &TableWithJoins) -> Result<Target> {
    if !twj.joins.is_empty() {
        return Err(ErrorKind::NotSupported("JOIN in the target of DELETE/UPDATE".into()).into());
    }
    let TableFactor::Table { name, alias, .. } = &twj.relation else {
        return Err(ErrorKind::NotSupported(
            "DELETE/UPDATE of something other than a table".into(),
        )
        .into());
    };
    let (table_name, table) = written_table(session, name, "modify")?;
    let qualifier = match alias {
        Some(a) => quote(&normalize(&a.name)),
        None => quote(session.catalog.split(&table_name).1),
    };
    Ok(Target {
        table,
        qualifier,
        relation: twj.relation.to_string(),
    })
}

/// Runs `select` with `target` registered as its keyed variant, binding
/// `$1, $2, …` to `params`.
pub(crate) async fn with_keyed(
    session: &mut Session,
    target: &Target,
    select: &str,
    params: &[ScalarValue],
) -> Result<Output> {
    let name = crate::schemas::table_ref(&session.catalog, &target.table.meta().name);
    session.ctx.deregister_table(name.clone())?;
    session
        .ctx
        .register_table(name.clone(), Arc::new(target.table.keyed()))?;
    let result = async {
        let mut plan = session.ctx.state().create_logical_plan(select).await?;
        if !params.is_empty() {
            plan = plan.with_param_values(ParamValues::from(params.to_vec()))?;
        }
        session.run_plan(plan).await
    }
    .await;
    session.ctx.deregister_table(name.clone())?;
    session.ctx.register_table(name, target.table.clone())?;
    result
}

/// ` ORDER BY … LIMIT n` of a DELETE or UPDATE (SQLite's and MySQL's
/// extension, which DataFusion also parses): the rows changed are the
/// first `n` in that order.
fn order_and_limit(order_by: &[OrderByExpr], limit: Option<&SqlExpr>) -> String {
    let mut out = String::new();
    if !order_by.is_empty() {
        let items: Vec<String> = order_by.iter().map(ToString::to_string).collect();
        out.push_str(&format!(" ORDER BY {}", items.join(", ")));
    }
    if let Some(limit) = limit {
        out.push_str(&format!(" LIMIT {limit}"));
    }
    out
}

fn where_clause(selection: Option<&datafusion::sql::sqlparser::ast::Expr>) -> String {
    selection.map(|s| format!(" WHERE {s}")).unwrap_or_default()
}

fn relations(list: &[TableWithJoins]) -> String {
    list.iter().map(|x| format!(", {x}")).collect()
}

/// The target's columns, qualified, as SELECT items.
fn target_columns(target: &Target) -> Vec<String> {
    target
        .table
        .def()
        .schema
        .fields()
        .iter()
        .map(|f| format!("{}.{}", target.qualifier, quote(f.name())))
        .collect()
}

/// DELETE's row-finding SELECT: the key, and the old row when there is a
/// RETURNING list or a DELETE trigger.
fn delete_select(session: &Session, d: &Delete) -> Result<(Target, String)> {
    let tables = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [twj] = tables.as_slice() else {
        return Err(ErrorKind::NotSupported("DELETE from several tables".into()).into());
    };
    if d.using.is_some() && (d.limit.is_some() || !d.order_by.is_empty()) {
        return Err(ErrorKind::NotSupported("DELETE … USING with ORDER BY or LIMIT".into()).into());
    }
    let target = target(session, twj)?;
    let mut items = vec![format!("{}.{KEY_COLUMN}", target.qualifier)];
    if d.returning.is_some() || fires(session, &target, Event::Delete) {
        items.extend(target_columns(&target));
    }
    let sql = format!(
        "SELECT {} FROM {}{}{}{}",
        items.join(", "),
        target.relation,
        relations(d.using.as_deref().unwrap_or_default()),
        where_clause(d.selection.as_ref()),
        order_and_limit(&d.order_by, d.limit.as_ref())
    );
    Ok((target, sql))
}

/// The expression assigned to each column of `schema` (of table `table`)
/// by `SET` `assignments`, `None` for the columns left alone.
pub(crate) fn assigned<'a>(
    schema: &Schema,
    table: &str,
    assignments: &'a [Assignment],
) -> Result<Vec<Option<&'a SqlExpr>>> {
    let mut values = vec![None; schema.fields().len()];
    for a in assignments {
        let AssignmentTarget::ColumnName(col) = &a.target else {
            return Err(ErrorKind::NotSupported("tuple assignment in UPDATE".into()).into());
        };
        // A SET target is a bare column, as in PostgreSQL: `SET t.v`
        // names a field `v` of a column `t` (42703), not the table's `v`.
        let ident = match col.0.as_slice() {
            [only] => only.as_ident(),
            [first, ..] => {
                return Err(ErrorKind::UndefinedColumn {
                    column: first.as_ident().map(normalize).unwrap_or_default(),
                    relation: Some(table.to_string()),
                }
                .into());
            }
            [] => None,
        }
        .ok_or_else(|| ErrorKind::Plan(format!("bad column {col}")))?;
        let name = normalize(ident);
        let i = schema
            .index_of(&name)
            .map_err(|_| ErrorKind::UndefinedColumn {
                column: name.clone(),
                relation: Some(table.to_string()),
            })?;
        if let Some(slot) = values.get_mut(i) {
            if slot.is_some() {
                return Err(ErrorKind::Syntax(format!(
                    "multiple assignments to same column \"{name}\""
                ))
                .into());
            }
            *slot = Some(&a.value);
        }
    }
    Ok(values)
}

/// The SQL of each column's new value under `SET` `assignments` (`None`
/// for the columns left alone): `DEFAULT` is the column's default (NULL
/// without one), and a `GENERATED ALWAYS` identity column takes nothing
/// else (428C9), as in PostgreSQL.
pub(crate) fn set_values(
    target: &Target,
    assignments: &[Assignment],
) -> Result<Vec<Option<String>>> {
    let meta = target.table.meta();
    let schema = &target.table.def().schema;
    let values = assigned(schema, &meta.name, assignments)?;
    crate::identity::check_update(meta, &values)?;
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.map(|expr| {
                if crate::identity::is_default(expr) {
                    meta.columns
                        .get(i)
                        .and_then(|c| c.default.clone())
                        .unwrap_or_else(|| "NULL".into())
                } else {
                    expr.to_string()
                }
            })
        })
        .collect())
}

/// The names of the columns `assignments` set.
fn assigned_names(target: &Target, assignments: &[Assignment]) -> Result<Vec<String>> {
    let schema = &target.table.def().schema;
    let values = assigned(schema, &target.table.meta().name, assignments)?;
    Ok(schema
        .fields()
        .iter()
        .zip(values)
        .filter(|(_, v)| v.is_some())
        .map(|(f, _)| f.name().clone())
        .collect())
}

/// True when the target has triggers for `event`.
fn fires(session: &Session, target: &Target, event: Event) -> bool {
    triggers::any(&session.catalog, &target.table.meta().name, event)
}

/// UPDATE's row-finding SELECT: the key and the new row, then the old row
/// when the table has UPDATE triggers. With FROM, a
/// target row may be joined to several source rows; the SELECT is then
/// ordered by key and new values, so the candidate whose new values sort
/// first is the one kept (see [`first_per_key`]), whatever the join order.
fn update_select(session: &Session, u: &Update) -> Result<(Target, String)> {
    if u.or.is_some() {
        return Err(ErrorKind::NotSupported("UPDATE OR …".into()).into());
    }
    if u.from.is_some() && (u.limit.is_some() || !u.order_by.is_empty()) {
        return Err(ErrorKind::NotSupported("UPDATE … FROM with ORDER BY or LIMIT".into()).into());
    }
    let target = target(session, &u.table)?;
    let schema = target.table.def().schema.clone();
    let values = set_values(&target, &u.assignments)?;
    let mut items = vec![format!("{}.{KEY_COLUMN}", target.qualifier)];
    for (f, v) in schema.fields().iter().zip(&values) {
        items.push(match v {
            Some(expr) => format!("({expr}) AS {}", quote(f.name())),
            None => format!("{}.{}", target.qualifier, quote(f.name())),
        });
    }
    if fires(session, &target, Event::Update) {
        items.extend(
            target_columns(&target)
                .into_iter()
                .enumerate()
                .map(|(i, c)| format!("{c} AS \"__entidb_old_{i}\"")),
        );
    }
    let (from, order) = match &u.from {
        Some(UpdateTableFromKind::BeforeSet(t) | UpdateTableFromKind::AfterSet(t)) => {
            let positions: Vec<String> = (1..=items.len()).map(|i| i.to_string()).collect();
            (relations(t), format!(" ORDER BY {}", positions.join(", ")))
        }
        None => (
            String::new(),
            order_and_limit(&u.order_by, u.limit.as_ref()),
        ),
    };
    let sql = format!(
        "SELECT {} FROM {}{from}{}{order}",
        items.join(", "),
        target.relation,
        where_clause(u.selection.as_ref())
    );
    Ok((target, sql))
}

pub(crate) fn rows(out: Output) -> Vec<RecordBatch> {
    match out {
        Output::Rows(_, batches) => batches,
        Output::Count(_) => vec![],
    }
}

pub(crate) fn keys_of(batch: &RecordBatch) -> Result<BinaryArray> {
    batch
        .columns()
        .first()
        .and_then(|c| c.as_binary_opt::<i32>())
        .cloned()
        .ok_or_else(|| ErrorKind::Execution("row key column has the wrong type".into()).into())
}

/// Keeps the first row of every key (a join may produce a target row
/// several times), across batches.
fn first_per_key(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let keys = keys_of(&batch)?;
        let keep: Vec<bool> = keys
            .iter()
            .map(|k| seen.insert(k.unwrap_or_default().to_vec()))
            .collect();
        if keep.iter().all(|k| *k) {
            out.push(batch);
            continue;
        }
        let mask = BooleanArray::from(keep);
        let batch = arrow::compute::filter_record_batch(&batch, &mask)
            .map_err(|e| ErrorKind::Execution(e.to_string()))?;
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    Ok(out)
}

/// The rows of `batch` after its key column, as a batch of the table.
fn table_rows(def: &TableDef, batch: &RecordBatch) -> Result<RecordBatch> {
    conform_columns(def, batch.columns().get(1..).unwrap_or_default())
}

/// DELETE [USING …] [RETURNING …]: collect the keys of matching rows, then
/// delete them.
pub async fn delete(session: &mut Session, d: &Delete, params: &[ScalarValue]) -> Result<Output> {
    let (target, select) = delete_select(session, d)?;
    let found = rows(with_keyed(session, &target, &select, params).await?);
    let batches = first_per_key(found)?;
    let def = target.table.def().clone();
    let firing = fires(session, &target, Event::Delete);
    let old = if d.returning.is_some() || firing {
        batches
            .iter()
            .map(|b| table_rows(&def, b))
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let changed = Changed {
        old: &old,
        new: &[],
        assigned: &[],
    };
    if firing {
        let keys = batches.iter().map(keys_of).collect::<Result<Vec<_>>>()?;
        let keys: Vec<&BinaryArray> = keys.iter().collect();
        triggers::fire_before(session, &target.table, Event::Delete, &changed, &keys).await?;
    }
    let mut deleted = 0;
    let mut removed = Vec::with_capacity(batches.len());
    for batch in &batches {
        let keys = keys_of(batch)?;
        deleted += session.slot.with(|t| t.delete(def.id, &keys))?;
        removed.push(ParentChange {
            old_keys: keys,
            new_rows: None,
        });
    }
    foreign_keys::parent_changed(session, &target.table, removed).await?;
    if firing {
        triggers::fire(
            session,
            &target.table,
            Timing::After,
            Event::Delete,
            &changed,
        )
        .await?;
    }
    match &d.returning {
        None => Ok(Output::Count(deleted)),
        Some(items) => {
            let schema = def.schema.clone();
            returning::project(session, &target.qualifier, schema, old, items, params).await
        }
    }
}

/// UPDATE [FROM …] [RETURNING …]: compute the new rows, delete the old
/// versions, insert the new.
pub async fn update(session: &mut Session, u: &Update, params: &[ScalarValue]) -> Result<Output> {
    let (target, select) = update_select(session, u)?;
    let found = rows(with_keyed(session, &target, &select, params).await?);
    let def = target.table.def().clone();
    let unique = unique_sets(target.table.indexes());
    let firing = fires(session, &target, Event::Update);
    let width = def.schema.fields().len();
    let mut changes = Vec::new();
    let mut old = Vec::new();
    for batch in &first_per_key(found)? {
        // The new versions, with NOT NULL and CHECK verified.
        let new = target
            .table
            .conform_columns(batch.columns().get(1..=width).unwrap_or_default())?;
        if firing {
            old.push(conform_columns(
                &def,
                batch.columns().get(width + 1..).unwrap_or_default(),
            )?);
        }
        changes.push((keys_of(batch)?, new));
    }
    let new: Vec<RecordBatch> = changes.iter().map(|(_, rows)| rows.clone()).collect();
    let assigned = assigned_names(&target, &u.assignments)?;
    let changed = Changed {
        old: &old,
        new: &new,
        assigned: &assigned,
    };
    if firing {
        let keys: Vec<&BinaryArray> = changes.iter().map(|(keys, _)| keys).collect();
        triggers::fire_before(session, &target.table, Event::Update, &changed, &keys).await?;
    }
    // Every old version goes before any new one is checked against the
    // UNIQUE indexes, so `SET u = u + 1` does not collide with itself.
    session.slot.with_sql(|t| {
        for (keys, _) in &changes {
            t.delete(def.id, keys)?;
        }
        for (_, rows) in &changes {
            insert_rows(t, &def, &unique, rows)?;
        }
        for (_, rows) in &changes {
            target.table.foreign_keys().verify(t, rows)?;
        }
        Ok(())
    })?;
    let replaced = changes
        .iter()
        .map(|(keys, rows)| ParentChange {
            old_keys: keys.clone(),
            new_rows: Some(rows.clone()),
        })
        .collect();
    foreign_keys::parent_changed(session, &target.table, replaced).await?;
    if firing {
        triggers::fire(
            session,
            &target.table,
            Timing::After,
            Event::Update,
            &changed,
        )
        .await?;
    }
    match &u.returning {
        None => Ok(Output::Count(
            changes.iter().map(|(k, _)| k.len() as u64).sum(),
        )),
        Some(items) => {
            let new = changes.into_iter().map(|(_, rows)| rows).collect();
            let schema = def.schema.clone();
            returning::project(session, &target.qualifier, schema, new, items, params).await
        }
    }
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
