//! `INSERT … ON CONFLICT … DO NOTHING | DO UPDATE SET … [WHERE …]`.
//!
//! ARBITERS. The conflict target names the unique indexes whose conflicts
//! are handled: `(cols)` every PRIMARY KEY / UNIQUE index over exactly those
//! columns (in any order; none → 42P10), `ON CONSTRAINT name` the unique
//! index of that name (none → 42704), no target (DO NOTHING only) every
//! unique index of the table. A conflict on any other unique index is an
//! ordinary 23505.
//!
//! LOOKUP. The existing rows that the proposed rows collide with are found
//! through each arbiter index (`Transaction::index_scan` on the leading
//! column's values, then matched on the whole key), so an upsert reads the
//! rows it touches, never the table. The lookup sees the transaction's
//! snapshot and its own writes; a row another transaction commits
//! meanwhile is caught at commit by the UNIQUE / key checks (40001), so two
//! concurrent upserts of one new key never both insert.
//!
//! FATE OF EACH PROPOSED ROW, in statement order:
//! - no arbiter key matches an existing row or an earlier proposed row
//!   (NULLs never match): inserted;
//! - DO NOTHING and a match: skipped;
//! - DO UPDATE and a match with an existing row: that row is updated with
//!   `EXCLUDED` = the proposed row, when the optional WHERE holds;
//! - DO UPDATE and a match with an earlier proposed row, or with an
//!   existing row an earlier proposed row already updates: 21000 ("cannot
//!   affect row a second time"), and nothing is written.
//!
//! UPDATE. The new versions are computed by DataFusion over two one-statement
//! tables, the existing rows under the target's name and the proposed rows
//! as `excluded`, joined row by row:
//!
//! ```text
//!   SELECT t.__entidb_key, (SET expr) AS v, t.w, … FROM __entidb_existing AS t
//!     JOIN __entidb_excluded AS excluded ON t.__entidb_row = excluded.__entidb_row
//!     WHERE cond
//! ```
//!
//! A column name both tables have must be qualified (`kv.n` or
//! `excluded.n`; a bare `n` is ambiguous, 42702, as in PostgreSQL). Then the
//! old versions
//! are deleted and the inserted and updated rows written, so a changed
//! UNIQUE value does not collide with the version it replaces.

use crate::ddl::normalize;
use crate::dml::{assigned, keys_of, quote};
use crate::error::{ErrorKind, Result};
use crate::indexes::IndexInfo;
use crate::provider::{EntiTable, KEY_COLUMN};
use crate::session::{Output, Session};
use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, interleave, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::datasource::MemTable;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Expr as SqlExpr, OnConflict, OnConflictAction,
};
use entidb_engine::index::index_keys;
use entidb_engine::{IndexScanRequest, KeyRange, TableDef};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const EXISTING: &str = "__entidb_existing";
const EXCLUDED: &str = "__entidb_excluded";
const ROW: &str = "__entidb_row";

/// An existing row found through an arbiter: `(batch, row)` in the lookup
/// result.
type Found = (usize, usize);

/// What happens to one proposed row.
enum Fate {
    Insert,
    Skip,
    Update(Found),
}

/// Applies the upsert of `rows` (the table's schema) to `table`, which goes
/// by `name` in the statement. Returns the rows written (inserted and
/// updated), for RETURNING and the count.
pub async fn apply(
    session: &mut Session,
    table: &EntiTable,
    name: &str,
    on: &OnConflict,
    rows: Vec<RecordBatch>,
    params: &[ScalarValue],
) -> Result<Vec<RecordBatch>> {
    let def = table.def().clone();
    let mut proposed = concat_batches(&def.schema, &rows)?;
    let arbiters = arbiters(table, on)?;
    if session.dialect == crate::dialect::Dialect::Sqlite && is_replace(on) {
        proposed = last_per_key(&proposed, &arbiters)?;
    }
    let existing = lookup(session, &def, &arbiters, &proposed)?;
    let fates = decide(&arbiters, &existing, &proposed, on)?;
    let pick = |want: fn(&Fate) -> bool| -> Vec<u32> {
        (0..fates.len() as u32)
            .filter(|i| fates.get(*i as usize).is_some_and(want))
            .collect()
    };
    let fresh = take_rows(&proposed, &pick(|f| matches!(f, Fate::Insert)))?;
    let mut written = vec![fresh];
    let mut old_keys = None;
    if let OnConflictAction::DoUpdate(update) = &on.action {
        let updates: Vec<(u32, Found)> = fates
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f {
                Fate::Update(at) => Some((i as u32, *at)),
                _ => None,
            })
            .collect();
        if !updates.is_empty() {
            let (keys, new) = updated_rows(
                session,
                table,
                name,
                &existing.rows,
                &proposed,
                &updates,
                (&update.assignments, update.selection.as_ref()),
                params,
            )
            .await?;
            old_keys = Some(keys);
            written.push(new);
        }
    }
    session.slot.with_sql(|t| {
        if let Some(keys) = &old_keys {
            t.delete(def.id, keys)?;
        }
        let unique = crate::indexes::unique_sets(table.indexes());
        for batch in &written {
            crate::provider::insert_rows(t, &def, &unique, batch)?;
        }
        // After every row is in: a fresh row may refer to an updated one.
        for batch in &written {
            table.foreign_keys().verify(t, batch)?;
        }
        Ok(())
    })?;
    if let (Some(old_keys), Some(new_rows)) = (old_keys, written.get(1)) {
        let change = crate::foreign_keys::ParentChange {
            old_keys,
            new_rows: Some(new_rows.clone()),
        };
        crate::foreign_keys::parent_changed(session, table, vec![change]).await?;
    }
    Ok(written)
}

/// The unique indexes whose conflicts the clause handles.
fn arbiters(table: &EntiTable, on: &OnConflict) -> Result<Vec<IndexInfo>> {
    let unique = table.indexes().iter().filter(|i| i.unique);
    let name = &table.meta().name;
    let found: Vec<IndexInfo> = match &on.conflict_target {
        None if matches!(on.action, OnConflictAction::DoUpdate(_)) => {
            return Err(ErrorKind::Syntax(
                "ON CONFLICT DO UPDATE requires inference specification or constraint name".into(),
            )
            .into());
        }
        None => unique.cloned().collect(),
        Some(ConflictTarget::Columns(columns)) => {
            let schema = &table.def().schema;
            let mut wanted = Vec::with_capacity(columns.len());
            for c in columns {
                let column = normalize(c);
                let i = schema
                    .index_of(&column)
                    .map_err(|_| ErrorKind::UndefinedColumn {
                        column: column.clone(),
                        relation: Some(name.clone()),
                    })?;
                wanted.push(i);
            }
            wanted.sort_unstable();
            wanted.dedup();
            let found: Vec<IndexInfo> = unique
                .filter(|i| {
                    let mut cols = i.columns.clone();
                    cols.sort_unstable();
                    cols == wanted
                })
                .cloned()
                .collect();
            if found.is_empty() {
                return Err(ErrorKind::InvalidColumnReference(
                    "there is no unique or exclusion constraint matching the ON CONFLICT specification"
                        .into(),
                )
                .into());
            }
            found
        }
        Some(ConflictTarget::OnConstraint(constraint)) => {
            let wanted = constraint
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(normalize)
                .unwrap_or_default();
            let found: Vec<IndexInfo> = unique.filter(|i| i.name == wanted).cloned().collect();
            if found.is_empty() {
                return Err(ErrorKind::UndefinedObject {
                    kind: "constraint",
                    name: format!("{wanted} for table {name}"),
                }
                .into());
            }
            found
        }
    };
    Ok(found)
}

/// The existing rows the proposed rows collide with, per arbiter: arbiter
/// key → row.
struct Existing {
    /// Rows found (all user columns, then the row key).
    rows: Vec<RecordBatch>,
    /// Per arbiter (same order), its index key → the row holding it.
    by_key: Vec<HashMap<Vec<u8>, Found>>,
}

/// The index keys of `batch` over `columns` (`None` where a column is NULL).
fn arbiter_keys(batch: &RecordBatch, columns: &[usize]) -> Result<Vec<Option<Vec<u8>>>> {
    let arrays = columns
        .iter()
        .map(|c| {
            batch.columns().get(*c).cloned().ok_or_else(|| {
                crate::Error::from(ErrorKind::Execution(format!("no column {c} in the rows")))
            })
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let (keys, nulls) = index_keys(&arrays)?;
    Ok(keys
        .iter()
        .zip(nulls)
        .map(|(k, null)| (!null).then(|| k.unwrap_or_default().to_vec()))
        .collect())
}

/// Finds, through each arbiter index, the visible rows whose key equals a
/// proposed row's.
fn lookup(
    session: &Session,
    def: &TableDef,
    arbiters: &[IndexInfo],
    proposed: &RecordBatch,
) -> Result<Existing> {
    let mut rows = Vec::new();
    let mut by_key = Vec::with_capacity(arbiters.len());
    for arbiter in arbiters {
        let wanted: HashSet<Vec<u8>> = arbiter_keys(proposed, &arbiter.columns)?
            .into_iter()
            .flatten()
            .collect();
        let mut map = HashMap::new();
        let Some(leading) = arbiter.columns.first() else {
            by_key.push(map);
            continue;
        };
        let mut points: Vec<Vec<u8>> = arbiter_keys(proposed, &[*leading])?
            .into_iter()
            .flatten()
            .collect();
        points.sort_unstable();
        points.dedup();
        if points.is_empty() {
            by_key.push(map);
            continue;
        }
        let request = IndexScanRequest {
            index: arbiter.columns.clone(),
            ranges: points.into_iter().map(KeyRange::point).collect(),
            projection: None,
            include_key: true,
            max_candidates: None,
            build: true,
        };
        let found = session
            .slot
            .with(|t| t.index_scan(def.id, &request))?
            .unwrap_or_default();
        for batch in found {
            for (row, key) in arbiter_keys(&batch, &arbiter.columns)?
                .into_iter()
                .enumerate()
            {
                if let Some(key) = key.filter(|k| wanted.contains(k)) {
                    map.insert(key, (rows.len(), row));
                }
            }
            rows.push(batch);
        }
        by_key.push(map);
    }
    Ok(Existing { rows, by_key })
}

/// Whether `on` replaces every non-key column by the proposed row's
/// (`DO UPDATE SET c = excluded.c, …` without WHERE): what the sqlite
/// dialect's `REPLACE INTO` becomes.
fn is_replace(on: &OnConflict) -> bool {
    let OnConflictAction::DoUpdate(update) = &on.action else {
        return false;
    };
    update.selection.is_none()
        && update.assignments.iter().all(|a| {
            let AssignmentTarget::ColumnName(column) = &a.target else {
                return false;
            };
            match &a.value {
                SqlExpr::CompoundIdentifier(parts) => {
                    matches!(parts.as_slice(), [table, c]
                        if table.value.eq_ignore_ascii_case("excluded")
                            && column.0.last().and_then(|p| p.as_ident()) == Some(c))
                }
                _ => false,
            }
        })
}

/// SQLite runs a multi-row REPLACE row by row, so of two proposed rows
/// with one key the last one stays: the earlier ones are dropped here
/// (PostgreSQL's ON CONFLICT refuses them with 21000).
fn last_per_key(proposed: &RecordBatch, arbiters: &[IndexInfo]) -> Result<RecordBatch> {
    let Some(arbiter) = arbiters.first() else {
        return Ok(proposed.clone());
    };
    let keys = arbiter_keys(proposed, &arbiter.columns)?;
    let mut seen = HashSet::new();
    let mut keep = vec![false; keys.len()];
    for (row, key) in keys.iter().enumerate().rev() {
        let first_from_the_end = key.as_ref().is_none_or(|k| seen.insert(k.clone()));
        if let Some(slot) = keep.get_mut(row) {
            *slot = first_from_the_end;
        }
    }
    let rows: Vec<u32> = (0..keep.len() as u32)
        .filter(|r| keep.get(*r as usize).copied().unwrap_or(false))
        .collect();
    take_rows(proposed, &rows)
}

fn second_time() -> crate::Error {
    ErrorKind::CardinalityViolation(
        "ON CONFLICT DO UPDATE command cannot affect row a second time \
         (rows proposed in one statement have the same constrained values)"
            .into(),
    )
    .into()
}

/// Decides the fate of every proposed row (see the module doc).
fn decide(
    arbiters: &[IndexInfo],
    existing: &Existing,
    proposed: &RecordBatch,
    on: &OnConflict,
) -> Result<Vec<Fate>> {
    let update = matches!(on.action, OnConflictAction::DoUpdate(_));
    let keys: Vec<Vec<Option<Vec<u8>>>> = arbiters
        .iter()
        .map(|a| arbiter_keys(proposed, &a.columns))
        .collect::<Result<_>>()?;
    let mut claimed: Vec<HashSet<&[u8]>> = vec![HashSet::new(); arbiters.len()];
    let mut targeted: HashSet<Found> = HashSet::new();
    let mut fates = Vec::with_capacity(proposed.num_rows());
    for row in 0..proposed.num_rows() {
        let mine = keys.iter().map(|k| k.get(row).and_then(|k| k.as_deref()));
        let mut earlier = false;
        let mut hit = None;
        for (a, key) in mine.clone().enumerate() {
            let Some(key) = key else { continue };
            if claimed.get(a).is_some_and(|c| c.contains(key)) {
                earlier = true;
            }
            if hit.is_none() {
                hit = existing.by_key.get(a).and_then(|m| m.get(key)).copied();
            }
        }
        let fate = match (earlier, hit) {
            (true, _) if update => return Err(second_time()),
            (_, Some(at)) if update => {
                if !targeted.insert(at) {
                    return Err(second_time());
                }
                Fate::Update(at)
            }
            (true, _) | (_, Some(_)) => Fate::Skip,
            (false, None) => Fate::Insert,
        };
        if !matches!(fate, Fate::Skip) {
            for (a, key) in mine.enumerate() {
                if let (Some(key), Some(c)) = (key, claimed.get_mut(a)) {
                    c.insert(key);
                }
            }
        }
        fates.push(fate);
    }
    Ok(fates)
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let indices = UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `batch`'s schema plus a row-number column.
fn numbered(batch: &RecordBatch) -> Result<RecordBatch> {
    let n = batch.num_rows() as u32;
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(ROW, DataType::UInt32, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(UInt32Array::from_iter_values(0..n)));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The existing rows at `at` (user columns and `KEY_COLUMN`), one batch.
fn gather(found: &[RecordBatch], at: &[Found]) -> Result<RecordBatch> {
    let first = found
        .first()
        .ok_or_else(|| crate::Error::from(ErrorKind::Execution("no rows found".into())))?;
    let schema = first.schema();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for c in 0..schema.fields().len() {
        let arrays: Vec<&dyn Array> = found
            .iter()
            .filter_map(|b| b.columns().get(c).map(|a| a.as_ref()))
            .collect();
        columns.push(interleave(&arrays, at)?);
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    if let Some(last) = fields.last_mut() {
        *last = Field::new(KEY_COLUMN, DataType::Binary, false);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)) as SchemaRef,
        columns,
    )?)
}

/// Computes the DO UPDATE rows: the keys of the old versions replaced and
/// the new versions (rows whose WHERE is false are left alone).
#[allow(clippy::too_many_arguments)]
async fn updated_rows(
    session: &mut Session,
    table: &EntiTable,
    name: &str,
    found: &[RecordBatch],
    proposed: &RecordBatch,
    updates: &[(u32, Found)],
    (assignments, selection): (
        &[datafusion::sql::sqlparser::ast::Assignment],
        Option<&SqlExpr>,
    ),
    params: &[ScalarValue],
) -> Result<(arrow::array::BinaryArray, RecordBatch)> {
    let def = table.def();
    let at: Vec<Found> = updates.iter().map(|(_, f)| *f).collect();
    let rows: Vec<u32> = updates.iter().map(|(r, _)| *r).collect();
    let existing = numbered(&gather(found, &at)?)?;
    let excluded = numbered(&take_rows(proposed, &rows)?)?;
    let values = assigned(&def.schema, &def.name, assignments)?;
    let q = quote(name);
    let mut items = vec![format!("{q}.{KEY_COLUMN}")];
    for (field, value) in def.schema.fields().iter().zip(values) {
        items.push(match value {
            Some(e) => format!("({e}) AS {}", quote(field.name())),
            None => format!("{q}.{}", quote(field.name())),
        });
    }
    let filter = selection.map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let select = format!(
        "SELECT {} FROM {EXISTING} AS {q} JOIN {EXCLUDED} AS excluded ON {q}.{ROW} = excluded.{ROW}{filter}",
        items.join(", ")
    );
    let tables = [(EXISTING, existing), (EXCLUDED, excluded)];
    for (table, batch) in &tables {
        let provider = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])?;
        session.ctx.register_table(*table, Arc::new(provider))?;
    }
    let result = async {
        let mut plan = session.ctx.state().create_logical_plan(&select).await?;
        if !params.is_empty() {
            plan = plan.with_param_values(ParamValues::from(params.to_vec()))?;
        }
        session.run_plan(plan).await
    }
    .await;
    for (table, _) in &tables {
        session.ctx.deregister_table(*table)?;
    }
    let batches = match result? {
        Output::Rows(_, batches) => batches,
        Output::Count(_) => Vec::new(),
    };
    let mut keys = Vec::new();
    let mut new = Vec::new();
    for batch in &batches {
        keys.push(Arc::new(keys_of(batch)?) as ArrayRef);
        new.push(table.conform_columns(batch.columns().get(1..).unwrap_or_default())?);
    }
    let keys = if keys.is_empty() {
        arrow::array::BinaryArray::from(Vec::<&[u8]>::new())
    } else {
        let all = arrow::compute::concat(&keys.iter().map(|k| k.as_ref()).collect::<Vec<_>>())?;
        all.as_any()
            .downcast_ref::<arrow::array::BinaryArray>()
            .cloned()
            .unwrap_or_else(|| arrow::array::BinaryArray::from(Vec::<&[u8]>::new()))
    };
    Ok((keys, concat_batches(&def.schema, &new)?))
}

/// SQLite's conflict clauses, under `entidb.dialect = 'sqlite'`, as the
/// upserts they mean: `REPLACE INTO t …` and `INSERT OR REPLACE INTO t …`
/// replace the row with the same primary key (the first UNIQUE
/// constraint's key when there is no primary key):
/// `ON CONFLICT (key) DO UPDATE SET c = excluded.c` for every other column,
/// so columns the statement leaves out take their defaults, as SQLite's
/// delete-and-insert gives them. `INSERT OR IGNORE` is `ON CONFLICT DO
/// NOTHING`. SQLite's REPLACE also deletes rows that collide on other
/// UNIQUE constraints; here those collisions stay 23505. A table without a
/// key gets a plain INSERT. Other statements are left alone.
pub(crate) fn sqlite_conflict_clause(
    insert: &mut datafusion::sql::sqlparser::ast::Insert,
    table: &entidb_catalog::TableMeta,
) {
    use datafusion::sql::sqlparser::ast::{
        Assignment, AssignmentTarget, ConflictTarget, DoUpdate, Expr, Ident, ObjectName,
        OnConflict, OnConflictAction, OnInsert, SqliteOnConflict,
    };
    let replace = insert.replace_into || insert.or == Some(SqliteOnConflict::Replace);
    let ignore = insert.or == Some(SqliteOnConflict::Ignore);
    if !(replace || ignore) || insert.on.is_some() {
        return;
    }
    insert.replace_into = false;
    insert.or = None;
    let key: &[usize] = match (table.primary_key.as_slice(), table.unique.first()) {
        ([], Some(unique)) => unique,
        (key, _) => key,
    };
    let name = |i: &usize| {
        table
            .columns
            .get(*i)
            .map(|c| Ident::with_quote('"', &c.name))
    };
    let action = if ignore {
        OnConflictAction::DoNothing
    } else if key.is_empty() {
        return;
    } else {
        let assignments = (0..table.columns.len())
            .filter(|i| !key.contains(i))
            .filter_map(|i| name(&i))
            .map(|column| Assignment {
                target: AssignmentTarget::ColumnName(ObjectName::from(vec![column.clone()])),
                value: Expr::CompoundIdentifier(vec![Ident::new("excluded"), column]),
            })
            .collect();
        OnConflictAction::DoUpdate(DoUpdate {
            assignments,
            selection: None,
        })
    };
    let conflict_target = match action {
        OnConflictAction::DoNothing => None,
        OnConflictAction::DoUpdate(_) => Some(ConflictTarget::Columns(
            key.iter().filter_map(name).collect(),
        )),
    };
    insert.on = Some(OnInsert::OnConflict(OnConflict {
        conflict_target,
        action,
    }));
}
