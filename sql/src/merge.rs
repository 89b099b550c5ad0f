//! `MERGE INTO target [AS t] USING source [AS s] ON cond WHEN [NOT]
//! MATCHED [AND pred] THEN UPDATE SET … | DELETE | INSERT [(cols)]
//! VALUES (…)`, with PostgreSQL 15's semantics.
//!
//! Evaluated by key, like DELETE and UPDATE (`dml.rs`): one SELECT over
//! the source joined to the keyed target finds, for every source row, its
//! target row, the first WHEN clause whose condition holds, and every
//! value the clauses would write:
//!
//! ```text
//!   SELECT t.__entidb_key,
//!          CASE WHEN t.__entidb_key IS NOT NULL AND (pred1) THEN 1
//!               WHEN t.__entidb_key IS NULL AND (pred2) THEN 2 … ELSE 0 END,
//!          <UPDATE clause: each target column's new value>,
//!          <INSERT clause: each target column's value or default>, …
//!   FROM source AS s LEFT JOIN target AS t ON cond
//! ```
//!
//! The SELECT reads the statement's snapshot in full before anything is
//! written. Then, in the session's transaction, the matched rows of DELETE
//! and UPDATE clauses are deleted, the new rows of UPDATE and INSERT
//! clauses are built like every written row (NOT NULL, CHECK; 23502,
//! 23514) and inserted (UNIQUE and the primary key, 23505), and the
//! FOREIGN KEY constraints are checked on both sides
//! (`foreign_keys.rs`). A target row that two source rows would change is
//! 21000, as in PostgreSQL ("cannot affect row a second time"); a source
//! row that matches no clause changes nothing. The result is the number
//! of rows inserted, updated and deleted.
//!
//! `THEN DO NOTHING` takes the row for its clause and leaves it alone (it
//! counts as no change, and a target row two source rows reach only
//! through DO NOTHING is no 21000). sqlparser does not parse it: the text
//! is rewritten into a marker action first (`text_rewrite.rs`).
//!
//! Not supported (0A000): `WHEN NOT MATCHED BY SOURCE`, `INSERT ROW`,
//! Oracle's UPDATE … WHERE / DELETE WHERE, `OUTPUT`.

use crate::ddl::normalize;
use crate::dml::{Target, keys_of, quote, rows, set_values, target, with_keyed};
use crate::error::{ErrorKind, Result};
use crate::foreign_keys::{self, ParentChange};
use crate::indexes::unique_sets;
use crate::provider::{KEY_COLUMN, insert_rows};
use crate::session::{Output, Session};
use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Expr as SqlExpr, Ident, Merge, MergeAction, MergeClause, MergeClauseKind,
    MergeInsertExpr, MergeInsertKind, TableFactor, TableWithJoins, VisitMut, VisitorMut,
};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// What one WHEN clause does, and where its values are in the SELECT.
enum Action {
    /// `DO NOTHING`: the row is taken by this clause, and left alone.
    Nothing,
    Delete,
    /// The new row's columns start at this SELECT column.
    Update(usize),
    Insert(usize),
}

/// Runs a MERGE statement.
pub async fn run(session: &mut Session, merge: &Merge, params: &[ScalarValue]) -> Result<Output> {
    if merge.output.is_some() {
        return Err(ErrorKind::NotSupported("MERGE … OUTPUT".into()).into());
    }
    let twj = TableWithJoins {
        relation: merge.table.clone(),
        joins: Vec::new(),
    };
    let target = target(session, &twj)?;
    crate::triggers::refuse_if_any(&session.catalog, &target.table.meta().name, "MERGE")?;
    let scope = SourceScope::of(session, merge, &target).await?;
    let (select, actions) = merge_select(&target, merge, &scope)?;
    let found = rows(with_keyed(session, &target, &select, params).await?);
    apply(session, &target, &actions, found).await
}

/// The row-finding SELECT and what each clause (numbered from 1) does.
fn merge_select(
    target: &Target,
    merge: &Merge,
    scope: &SourceScope,
) -> Result<(String, Vec<Action>)> {
    let q = &target.qualifier;
    let schema = target.table.def().schema.clone();
    let mut items = vec![format!("{q}.{KEY_COLUMN}")];
    let mut cases = Vec::new();
    let mut values = Vec::new();
    let mut actions = Vec::new();
    // The key and the clause number come first.
    let first_value = 2;
    for (i, clause) in merge.clauses.iter().enumerate() {
        let matched = match clause.clause_kind {
            MergeClauseKind::Matched => true,
            MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => false,
            MergeClauseKind::NotMatchedBySource => {
                return Err(
                    ErrorKind::NotSupported("MERGE … WHEN NOT MATCHED BY SOURCE".into()).into(),
                );
            }
        };
        let n = i + 1;
        if is_do_nothing(&clause.action) {
            cases.push(when(q, clause, matched, n));
            actions.push(Action::Nothing);
            continue;
        }
        let scoped;
        let clause = if matched {
            clause
        } else {
            scoped = scope.not_matched(clause)?;
            &scoped
        };
        let at = first_value + values.len();
        let action = match (&clause.action, matched) {
            (MergeAction::Delete { .. }, true) => Action::Delete,
            (MergeAction::Update(update), true) => {
                if update.update_predicate.is_some() || update.delete_predicate.is_some() {
                    return Err(ErrorKind::NotSupported(
                        "MERGE … UPDATE … WHERE / DELETE WHERE".into(),
                    )
                    .into());
                }
                let new = set_values(target, &update.assignments)?;
                for (f, v) in schema.fields().iter().zip(new) {
                    values.push((
                        n,
                        match v {
                            Some(expr) => format!("({expr})"),
                            None => format!("{q}.{}", quote(f.name())),
                        },
                    ));
                }
                Action::Update(at)
            }
            (MergeAction::Insert(insert), false) => {
                values.extend(insert_values(target, insert)?.into_iter().map(|v| (n, v)));
                Action::Insert(at)
            }
            (action, _) => {
                return Err(ErrorKind::Syntax(format!(
                    "{} is not allowed in a WHEN {} clause",
                    action_name(action),
                    if matched { "MATCHED" } else { "NOT MATCHED" }
                ))
                .into());
            }
        };
        cases.push(when(q, clause, matched, n));
        actions.push(action);
    }
    let chosen = format!("CASE {} ELSE 0 END", cases.join(" "));
    // A clause's values are computed only for the rows it takes: no error
    // (a division its condition guards) and no `nextval` for the others.
    // DataFusion evaluates a CASE branch only on the rows it selects, and
    // plans the repeated clause choice once.
    items.extend(values.into_iter().enumerate().map(|(i, (n, v))| {
        format!("CASE WHEN ({chosen}) = {n} THEN {v} END AS __entidb_merge_{i}")
    }));
    items.insert(1, chosen);
    let select = format!(
        "SELECT {} FROM {} LEFT JOIN {} ON {}",
        items.join(", "),
        merge.source,
        target.relation,
        merge.on
    );
    Ok((select, actions))
}

/// What a WHEN NOT MATCHED clause may name: only the source, as in
/// PostgreSQL (there is no target row). Unqualified source columns are
/// qualified with the source's name, so a column both tables have means
/// the source's; the target's columns and name are refused (42703,
/// 42P01) instead of reading NULL.
struct SourceScope {
    /// The source's name or alias (none for a source without one).
    name: Option<String>,
    /// Its columns.
    columns: HashSet<String>,
    /// The target's name or alias, and its columns.
    target: String,
    target_columns: HashSet<String>,
}

impl SourceScope {
    async fn of(session: &Session, merge: &Merge, target: &Target) -> Result<Self> {
        let name = match &merge.source {
            TableFactor::Table { name, alias, .. } => match alias {
                Some(a) => Some(normalize(&a.name)),
                None => crate::ddl::last_ident(name),
            },
            TableFactor::Derived { alias: Some(a), .. } => Some(normalize(&a.name)),
            _ => None,
        };
        let probe = format!("SELECT * FROM {} LIMIT 0", merge.source);
        let plan = session.ctx.state().create_logical_plan(&probe).await?;
        let columns = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let target_name = match &merge.table {
            TableFactor::Table { alias: Some(a), .. } => normalize(&a.name),
            _ => session
                .catalog
                .split(&target.table.meta().name)
                .1
                .to_string(),
        };
        Ok(Self {
            name,
            columns,
            target: target_name,
            target_columns: target
                .table
                .meta()
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        })
    }

    /// `clause` with its expressions scoped to the source.
    fn not_matched(&self, clause: &MergeClause) -> Result<MergeClause> {
        let mut clause = clause.clone();
        let mut visitor = Scoper {
            scope: self,
            error: None,
        };
        if !has_subquery(&clause) {
            let _ = VisitMut::visit(&mut clause, &mut visitor);
        }
        match visitor.error {
            Some(e) => Err(e.into()),
            None => Ok(clause),
        }
    }
}

fn has_subquery(clause: &MergeClause) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(clause, |e| {
        if matches!(
            e,
            SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. }
        ) {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

struct Scoper<'a> {
    scope: &'a SourceScope,
    error: Option<ErrorKind>,
}

impl VisitorMut for Scoper<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        match expr {
            SqlExpr::Identifier(ident) => {
                let column = normalize(ident);
                if self.scope.columns.contains(&column) {
                    if let Some(name) = &self.scope.name {
                        *expr = SqlExpr::CompoundIdentifier(vec![
                            Ident::with_quote('"', name.as_str()),
                            ident.clone(),
                        ]);
                    }
                } else if self.scope.target_columns.contains(&column) {
                    self.error = Some(ErrorKind::UndefinedColumn {
                        column,
                        relation: None,
                    });
                    return ControlFlow::Break(());
                }
            }
            SqlExpr::CompoundIdentifier(parts) => {
                let qualifier = parts.len().checked_sub(2).and_then(|i| parts.get(i));
                if qualifier.is_some_and(|q| normalize(q) == self.scope.target)
                    && self.scope.name.as_deref() != Some(self.scope.target.as_str())
                {
                    self.error = Some(ErrorKind::UndefinedTable {
                        name: format!(
                            "{} (the target cannot be referenced in WHEN NOT MATCHED)",
                            self.scope.target
                        ),
                    });
                    return ControlFlow::Break(());
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether `action` is the marker of `THEN DO NOTHING`, which sqlparser
/// does not parse and `text_rewrite.rs` writes as an UPDATE or INSERT of
/// the marker column.
fn is_do_nothing(action: &MergeAction) -> bool {
    let is_marker =
        |i: &Ident| i.quote_style.is_some() && i.value == crate::text_rewrite::DO_NOTHING;
    match action {
        MergeAction::Update(u) => match u.assignments.as_slice() {
            [a] => match &a.target {
                AssignmentTarget::ColumnName(name) => {
                    matches!(name.0.as_slice(), [p] if p.as_ident().is_some_and(is_marker))
                }
                AssignmentTarget::Tuple(_) => false,
            },
            _ => false,
        },
        MergeAction::Insert(i) => {
            matches!(i.columns.as_slice(), [c] if matches!(c.0.as_slice(), [p] if p.as_ident().is_some_and(is_marker)))
        }
        MergeAction::Delete { .. } => false,
    }
}

fn action_name(action: &MergeAction) -> &'static str {
    match action {
        MergeAction::Insert(_) => "INSERT",
        MergeAction::Update(_) => "UPDATE",
        MergeAction::Delete { .. } => "DELETE",
    }
}

/// `WHEN <matched> AND (pred) THEN n` of the clause-choosing CASE.
fn when(q: &str, clause: &MergeClause, matched: bool, n: usize) -> String {
    let side = if matched { "IS NOT NULL" } else { "IS NULL" };
    let predicate = clause
        .predicate
        .as_ref()
        .map(|p| format!(" AND ({p})"))
        .unwrap_or_default();
    format!("WHEN {q}.{KEY_COLUMN} {side}{predicate} THEN {n}")
}

/// The value of every target column an INSERT clause writes: the listed
/// ones from VALUES, the others their defaults (NULL without one).
fn insert_values(target: &Target, insert: &MergeInsertExpr) -> Result<Vec<String>> {
    let MergeInsertKind::Values(values) = &insert.kind else {
        return Err(ErrorKind::NotSupported("MERGE … INSERT ROW".into()).into());
    };
    if insert.insert_predicate.is_some() {
        return Err(ErrorKind::NotSupported("MERGE … INSERT … WHERE".into()).into());
    }
    let [row] = values.rows.as_slice() else {
        return Err(ErrorKind::Syntax("MERGE … INSERT takes exactly one VALUES row".into()).into());
    };
    let meta = target.table.meta();
    let names: Vec<String> = if insert.columns.is_empty() {
        meta.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        insert
            .columns
            .iter()
            .filter_map(crate::ddl::last_ident)
            .collect()
    };
    let mut listed = HashSet::new();
    if let Some(twice) = names.iter().find(|n| !listed.insert(n.as_str())) {
        return Err(ErrorKind::ColumnSpecifiedTwice {
            column: twice.clone(),
        }
        .into());
    }
    if names.len() < row.len() {
        return Err(
            ErrorKind::Syntax("INSERT has more expressions than target columns".into()).into(),
        );
    }
    if names.len() > row.len() && !insert.columns.is_empty() {
        return Err(
            ErrorKind::Syntax("INSERT has more target columns than expressions".into()).into(),
        );
    }
    let mut out = Vec::with_capacity(meta.columns.len());
    for column in &meta.columns {
        let given = names
            .iter()
            .position(|n| *n == column.name)
            .and_then(|i| row.get(i))
            .filter(|e| !crate::identity::is_default(e));
        if given.is_some() && column.identity.as_ref().is_some_and(|id| id.always) {
            return Err(ErrorKind::GeneratedAlways(format!(
                "cannot insert a non-DEFAULT value into column {}: it is an identity column \
                 defined as GENERATED ALWAYS",
                column.name
            ))
            .into());
        }
        out.push(match (given, &column.default) {
            (Some(expr), _) => format!("({expr})"),
            (None, Some(default)) => format!("({default})"),
            (None, None) => "NULL".to_string(),
        });
    }
    if let Some(unknown) = names
        .iter()
        .find(|n| !meta.columns.iter().any(|c| c.name == **n))
    {
        return Err(ErrorKind::UndefinedColumn {
            column: unknown.clone(),
            relation: Some(meta.name.clone()),
        }
        .into());
    }
    Ok(out)
}

/// Writes what the SELECT found (see the module docs).
async fn apply(
    session: &mut Session,
    target: &Target,
    actions: &[Action],
    found: Vec<RecordBatch>,
) -> Result<Output> {
    let table = target.table.clone();
    let def = table.def().clone();
    let width = def.schema.fields().len();
    let mut touched: HashSet<Vec<u8>> = HashSet::new();
    let mut deleted: Vec<BinaryArray> = Vec::new();
    let mut updated: Vec<(BinaryArray, RecordBatch)> = Vec::new();
    let mut inserted: Vec<RecordBatch> = Vec::new();
    for batch in &found {
        let keys = keys_of(batch)?;
        let chosen = batch
            .columns()
            .get(1)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| ErrorKind::Execution("MERGE clause column has the wrong type".into()))?;
        for (row, clause) in chosen.iter().enumerate() {
            // A clause number is 1-based; 0 is no clause.
            let acts = clause
                .and_then(|c| usize::try_from(c).ok()?.checked_sub(1))
                .and_then(|i| actions.get(i))
                .is_some_and(|a| !matches!(a, Action::Nothing));
            if acts && keys.is_valid(row) && !touched.insert(keys.value(row).to_vec()) {
                return Err(ErrorKind::CardinalityViolation(
                    "MERGE command cannot affect row a second time: ensure that not more than \
                     one source row matches any one target row"
                        .into(),
                )
                .into());
            }
        }
        for (n, action) in actions.iter().enumerate() {
            let want = n as i64 + 1;
            let mask: BooleanArray = chosen.iter().map(|c| Some(c == Some(want))).collect();
            if mask.true_count() == 0 {
                continue;
            }
            let pick = |a: &ArrayRef| {
                arrow::compute::filter(a, &mask).map_err(|e| ErrorKind::Execution(e.to_string()))
            };
            let row_columns = |at: usize| -> Result<Vec<ArrayRef>> {
                batch
                    .columns()
                    .get(at..at + width)
                    .ok_or_else(|| ErrorKind::Execution("MERGE values out of range".into()))?
                    .iter()
                    .map(pick)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(Into::into)
            };
            let picked_keys = || -> Result<BinaryArray> {
                let keys: ArrayRef = std::sync::Arc::new(keys.clone());
                pick(&keys)?
                    .as_binary_opt::<i32>()
                    .cloned()
                    .ok_or_else(|| ErrorKind::Execution("bad row keys".into()).into())
            };
            match action {
                Action::Nothing => {}
                Action::Delete => deleted.push(picked_keys()?),
                Action::Update(at) => {
                    let new = table.conform_columns(&row_columns(*at)?)?;
                    updated.push((picked_keys()?, new));
                }
                Action::Insert(at) => inserted.push(table.conform_columns(&row_columns(*at)?)?),
            }
        }
    }
    let unique = unique_sets(table.indexes());
    session.slot.with_sql(|t| {
        for keys in deleted.iter().chain(updated.iter().map(|(k, _)| k)) {
            t.delete(def.id, keys)?;
        }
        for rows in updated.iter().map(|(_, r)| r).chain(&inserted) {
            insert_rows(t, &def, &unique, rows)?;
        }
        for rows in updated.iter().map(|(_, r)| r).chain(&inserted) {
            table.foreign_keys().verify(t, rows)?;
        }
        Ok(())
    })?;
    let count = deleted.iter().map(|k| k.len() as u64).sum::<u64>()
        + updated.iter().map(|(k, _)| k.len() as u64).sum::<u64>()
        + inserted.iter().map(|r| r.num_rows() as u64).sum::<u64>();
    let changes: Vec<ParentChange> = deleted
        .into_iter()
        .map(|old_keys| ParentChange {
            old_keys,
            new_rows: None,
        })
        .chain(updated.into_iter().map(|(old_keys, rows)| ParentChange {
            old_keys,
            new_rows: Some(rows),
        }))
        // Inserted rows replace nothing, but their keys are there at the
        // end of the statement (NO ACTION).
        .chain(inserted.into_iter().map(|rows| ParentChange {
            old_keys: BinaryArray::from_iter_values(std::iter::empty::<&[u8]>()),
            new_rows: Some(rows),
        }))
        .collect();
    foreign_keys::parent_changed(session, &table, changes).await?;
    Ok(Output::Count(count))
}
