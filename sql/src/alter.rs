//! ALTER TABLE, executed inside the session's transaction.
//!
//! DESIGN. The subcommands of one statement are applied, in order, to a
//! working copy of the table's definition ([`Shape`]: columns with their
//! type, nullability, default and where their values come from, the primary
//! key and UNIQUE sets by column name) and of the catalog. Then:
//!
//! - when only defaults changed (`ALTER COLUMN … SET/DROP DEFAULT`), the
//!   catalog is saved and the table's schema is *touched*;
//! - when the subcommands only append columns (ADD COLUMN with a default or
//!   none, no constraint, NULL allowed or a non-NULL default), the engine
//!   table **gains the columns in place** ([`add_in_place`]): no row is
//!   read or copied; the rows stored before read each column's default,
//!   evaluated once when the ALTER runs (the engine's fills; see
//!   `engine/src/schema.rs`, ADDED COLUMNS);
//! - otherwise the table is **rewritten**: the engine table is dropped and a
//!   new one (a new engine id) is created with the new columns, in the same
//!   transaction, and the rows the transaction sees are copied into it
//!   through the ordinary insert path — so NOT NULL (`SET NOT NULL`,
//!   `ADD COLUMN … NOT NULL`) and UNIQUE are checked on every existing row
//!   (23502 / 23505), and an added column reads its `DEFAULT` (evaluated
//!   once, as PostgreSQL does for a non-volatile default) or NULL.
//!
//! Either way the change is one transaction: a rolled-back ALTER leaves
//! nothing, a committed one is in the WAL and survives checkpoints and
//! re-opens like any other write (the old table's segments are released by
//! the next checkpoint, as for DROP TABLE). Concurrent writers that started
//! before the ALTER get `Conflict` (40001) at commit: the table they wrote
//! was dropped (rewrite) or its schema touched (defaults, columns added in
//! place), so no row of the old shape lands after the ALTER.
//!
//! DEPENDENTS (as PostgreSQL): dropping a column drops the indexes and
//! UNIQUE/PRIMARY KEY constraints that include it; a view that reads the
//! column (or `*` of the table) makes the DROP fail with 2BP01 unless
//! `CASCADE`, which drops the view and the views over it. Renaming a column
//! or the table rewrites the SQL text of the views that read it, and the
//! index definitions that name it.
//!
//! The rewrite costs a copy of the table; renames could be made metadata
//! only by keeping logical names in the catalog (not done yet).

use crate::ddl::{last_ident, normalize};
use crate::error::{ErrorKind, Result};
use crate::indexes::{table_indexes, unique_sets};
use crate::provider::{conform_columns, insert_rows};
use crate::session::Session;
use crate::slot::TxnSlot;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, CheckConstraint, ColumnDef,
    ColumnOption, DropBehavior, Expr as SqlExpr, Ident, Query, RenameTableNameKind, SelectItem,
    SetExpr, Statement as SqlStatement, TableConstraint, Visit, VisitMut, Visitor, VisitorMut,
    visit_relations, visit_relations_mut,
};
use entidb_catalog::{Catalog, CheckMeta, ColumnMeta, ForeignKeyMeta, Identity, TableMeta};
use entidb_engine::{ScanRequest, TableDef};
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Where a column's values come from in the rewritten table.
#[derive(Debug, Clone)]
enum Source {
    /// Column `i` of the old table.
    Old(usize),
    /// A constant for every existing row (an added column).
    Fill(ScalarValue),
}

/// One column of the table being altered.
#[derive(Debug, Clone)]
struct Column {
    field: Field,
    default: Option<String>,
    identity: Option<Identity>,
    source: Source,
}

/// The table's definition as the subcommands change it.
#[derive(Debug, Clone)]
struct Shape {
    name: String,
    columns: Vec<Column>,
    primary_key: Vec<String>,
    unique: Vec<Vec<String>>,
    /// CHECK constraints (their SQL names columns).
    checks: Vec<CheckMeta>,
    /// The table's own FOREIGN KEY constraints (it is the child).
    foreign_keys: Vec<ForeignKeyMeta>,
    /// Engine id of the table as it was (other tables' constraints that
    /// refer to it are changed in the catalog, skipping this entry).
    table_id: u64,
    /// The engine table must be rewritten (anything but a default changed).
    rewrite: bool,
}

impl Shape {
    fn new(def: &TableDef, meta: &TableMeta) -> Self {
        let name_of = |i: &usize| def.column_name(*i);
        Self {
            name: meta.name.clone(),
            columns: def
                .schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| Column {
                    field: f.as_ref().clone(),
                    default: meta.columns.get(i).and_then(|c| c.default.clone()),
                    identity: meta.columns.get(i).and_then(|c| c.identity.clone()),
                    source: Source::Old(i),
                })
                .collect(),
            primary_key: meta.primary_key.iter().map(name_of).collect(),
            unique: meta
                .unique
                .iter()
                .map(|u| u.iter().map(name_of).collect())
                .collect(),
            checks: meta.checks.clone(),
            foreign_keys: meta.foreign_keys.clone(),
            table_id: meta.table_id,
            rewrite: false,
        }
    }

    fn position(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.field.name() == column)
    }

    fn column_mut(&mut self, column: &str) -> Result<&mut Column> {
        let table = self.name.clone();
        self.columns
            .iter_mut()
            .find(|c| c.field.name() == column)
            .ok_or_else(|| {
                ErrorKind::UndefinedColumn {
                    column: column.to_string(),
                    relation: Some(table),
                }
                .into()
            })
    }

    fn indexes_of(&self, names: &[String]) -> Vec<usize> {
        names.iter().filter_map(|n| self.position(n)).collect()
    }
}

/// ALTER TABLE [IF EXISTS] name subcommand, ….
pub async fn alter_table(session: &mut Session, a: &AlterTable) -> Result<()> {
    if a.location.is_some() || a.on_cluster.is_some() || a.table_type.is_some() {
        return Err(ErrorKind::NotSupported(format!("this form of ALTER TABLE: {a}")).into());
    }
    let Some(name) = crate::schemas::or_absent(
        crate::schemas::resolve_for_ddl(&session.catalog, &a.name),
        a.if_exists,
    )?
    else {
        return Ok(());
    };
    let Some(meta) = session.catalog.table(&name).cloned() else {
        if a.if_exists {
            return Ok(());
        }
        if session.catalog.view(&name).is_some() {
            return Err(ErrorKind::NotSupported(format!("ALTER TABLE on view {name}")).into());
        }
        return Err(ErrorKind::UndefinedTable { name }.into());
    };
    let def = session.slot.with(|t| t.table_by_id(meta.table_id))?;
    let mut shape = Shape::new(&def, &meta);
    let mut catalog = session.catalog.as_ref().clone();
    for op in &a.operations {
        apply(session, &mut shape, &mut catalog, op).await?;
    }
    // A CHECK added was verified on this transaction's snapshot: a row a
    // concurrent transaction commits meanwhile must fail one of the two.
    if shape.checks.iter().any(|c| !meta.checks.contains(c)) {
        session.slot.with(|t| t.guard_rows(def.id))?;
    }
    // A new FOREIGN KEY: a transaction deleting parent rows on an older
    // snapshot (it does not know the constraint) must fail at commit.
    for fk in shape
        .foreign_keys
        .iter()
        .filter(|f| !meta.foreign_keys.contains(f))
    {
        if let Some(parent) = catalog.table(&fk.parent) {
            let id = parent.table_id;
            session.slot.with(|t| t.touch_schema(id))?;
        }
    }
    if shape.rewrite {
        match appended_columns(&shape, &def, &meta) {
            Some(added) => add_in_place(&session.slot, &def, &meta, &shape, added, &mut catalog)?,
            None => rewrite(&session.slot, &def, &meta, &shape, &mut catalog)?,
        }
    } else {
        let meta = table_meta(&shape, meta.table_id);
        replace_table(&mut catalog, &name, meta);
        session.slot.with(|t| {
            t.touch_schema(def.id)?;
            catalog.save(t)
        })?;
    }
    Ok(())
}

/// Applies one subcommand to `shape` (and to the catalog's views and
/// indexes, which follow renames and drops).
async fn apply(
    session: &mut Session,
    shape: &mut Shape,
    catalog: &mut Catalog,
    op: &AlterTableOperation,
) -> Result<()> {
    match op {
        AlterTableOperation::AddColumn {
            if_not_exists,
            column_def,
            column_position,
            ..
        } => {
            if column_position.is_some() {
                return unsupported("ADD COLUMN … FIRST/AFTER");
            }
            add_column(session, shape, column_def, *if_not_exists).await
        }
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            drop_behavior,
            ..
        } => {
            let cascade = matches!(drop_behavior, Some(DropBehavior::Cascade));
            for ident in column_names {
                drop_column(shape, catalog, &normalize(ident), *if_exists, cascade)?;
            }
            Ok(())
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => rename_column(
            shape,
            catalog,
            &normalize(old_column_name),
            &normalize(new_column_name),
        ),
        AlterTableOperation::RenameTable { table_name } => {
            let (RenameTableNameKind::To(new) | RenameTableNameKind::As(new)) = table_name;
            // The table stays in its schema (as in PostgreSQL).
            if new.0.len() != 1 {
                return Err(ErrorKind::NotSupported(format!(
                    "RENAME TO a qualified name ({new}); a table cannot move to another schema"
                ))
                .into());
            }
            let new = last_ident(new).unwrap_or_default();
            let new = crate::schemas::sibling(catalog, &shape.name, &new)?;
            if crate::ddl::is_external(session, &new)? {
                return Err(ErrorKind::DuplicateTable { name: new }.into());
            }
            rename_table(shape, catalog, &new)
        }
        AlterTableOperation::AlterColumn { column_name, op } => {
            alter_column(session, shape, &normalize(column_name), op).await
        }
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Check(check),
            not_valid: false,
        } => add_check(session, shape, check).await,
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::ForeignKey(fk),
            not_valid: false,
        } => add_foreign_key(session, shape, fk),
        AlterTableOperation::DropConstraint {
            if_exists, name, ..
        } => drop_constraint(shape, &normalize(name), *if_exists),
        other => unsupported(&format!("ALTER TABLE … {other}")),
    }
}

/// A constraint being added reads the table's rows as they are before this
/// ALTER: refused (0A000) after column changes in the same statement.
fn as_before(shape: &Shape, what: &str) -> Result<()> {
    if shape.rewrite
        || shape
            .columns
            .iter()
            .any(|c| !matches!(c.source, Source::Old(_)))
    {
        return unsupported(&format!("{what} with column changes in one ALTER TABLE"));
    }
    Ok(())
}

/// ADD [CONSTRAINT name] CHECK (expr): every row the transaction sees must
/// pass (23514 otherwise), as in PostgreSQL. Checked on the table as it is
/// before this ALTER, so it cannot follow column changes in the same
/// statement (0A000: use two statements).
async fn add_check(
    session: &mut Session,
    shape: &mut Shape,
    check: &CheckConstraint,
) -> Result<()> {
    as_before(shape, "ADD CONSTRAINT … CHECK")?;
    let table = session.catalog.split(&shape.name).1.to_string();
    let check = crate::checks::named(&shape.checks, &table, check.name.as_ref(), &check.expr)?;
    let violating = format!(
        "SELECT count(*) FROM {} WHERE NOT ({})",
        crate::schemas::sql_name(&session.catalog, &shape.name),
        check.sql
    );
    let batches: Vec<RecordBatch> = session.ctx.sql(&violating).await?.collect().await?;
    let count = batches
        .first()
        .and_then(|b| b.columns().first())
        .and_then(|c| ScalarValue::try_from_array(c, 0).ok());
    if !matches!(count, Some(ScalarValue::Int64(Some(0)))) {
        return Err(ErrorKind::CheckViolation {
            table: shape.name.clone(),
            constraint: check.name,
        }
        .into());
    }
    shape.checks.push(check);
    Ok(())
}

/// ADD [CONSTRAINT name] FOREIGN KEY (cols) REFERENCES parent [(cols)]:
/// every row the transaction sees must have its parent (23503), as in
/// PostgreSQL (see [`crate::foreign_keys::add_to_table`]). Like ADD CHECK
/// it reads the table as it is before this ALTER.
fn add_foreign_key(
    session: &mut Session,
    shape: &mut Shape,
    fk: &datafusion::sql::sqlparser::ast::ForeignKeyConstraint,
) -> Result<()> {
    as_before(shape, "ADD FOREIGN KEY")?;
    let Some(table) = session.tables.get(&shape.name).cloned() else {
        return Err(ErrorKind::UndefinedTable {
            name: shape.name.clone(),
        }
        .into());
    };
    let taken: Vec<String> = shape.checks.iter().map(|c| c.name.clone()).collect();
    let declared =
        crate::foreign_keys::add_to_table(session, &table, fk, &taken, &shape.foreign_keys)?;
    shape.foreign_keys.push(declared);
    Ok(())
}

/// DROP CONSTRAINT [IF EXISTS] name (a CHECK or FOREIGN KEY constraint).
fn drop_constraint(shape: &mut Shape, name: &str, if_exists: bool) -> Result<()> {
    let before = shape.checks.len() + shape.foreign_keys.len();
    shape.checks.retain(|c| c.name != name);
    shape.foreign_keys.retain(|f| f.name != name);
    if shape.checks.len() + shape.foreign_keys.len() == before && !if_exists {
        return Err(ErrorKind::UndefinedObject {
            kind: "constraint",
            name: format!("{name} of relation {}", shape.name),
        }
        .into());
    }
    Ok(())
}

/// An identifier that prints as exactly `name`.
fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

fn unsupported<T>(what: &str) -> Result<T> {
    Err(ErrorKind::NotSupported(what.to_string()).into())
}

async fn add_column(
    session: &mut Session,
    shape: &mut Shape,
    column: &ColumnDef,
    if_not_exists: bool,
) -> Result<()> {
    let name = normalize(&column.name);
    if shape.position(&name).is_some() {
        if if_not_exists {
            return Ok(());
        }
        return Err(ErrorKind::DuplicateColumn {
            table: shape.name.clone(),
            column: name,
        }
        .into());
    }
    let mut default = None;
    let mut not_null = false;
    let mut references = Vec::new();
    for option in &column.options {
        match &option.option {
            ColumnOption::Default(expr) => default = Some(expr.to_string()),
            ColumnOption::NotNull => not_null = true,
            ColumnOption::Null => not_null = false,
            ColumnOption::ForeignKey(fk) => references.push((option.name.as_ref(), fk)),
            other => return unsupported(&format!("ADD COLUMN … {other}")),
        }
    }
    let data_type = crate::ddl::sql_type(&column.data_type)?;
    let value = evaluate(session, default.as_deref().unwrap_or("NULL"), &data_type).await?;
    let data_type = crate::ddl::stored_type(&column.data_type, value.data_type());
    let value = value.cast_to(&data_type)?;
    shape.columns.push(Column {
        field: Field::new(&name, data_type, !not_null),
        default,
        identity: None,
        source: Source::Fill(value),
    });
    shape.rewrite = true;
    // `REFERENCES`: declared on the table as the ALTER leaves it; the
    // rewrite checks every copied row (the default must have its parent).
    if !references.is_empty() {
        let schema = Schema::new(
            shape
                .columns
                .iter()
                .map(|c| c.field.clone())
                .collect::<Vec<_>>(),
        );
        let primary_key = shape.indexes_of(&shape.primary_key);
        let taken: Vec<String> = shape.checks.iter().map(|c| c.name.clone()).collect();
        for (constraint, fk) in references {
            let declared = crate::foreign_keys::declared_on_column(
                fk,
                constraint,
                &name,
                &shape.name,
                &schema,
                &primary_key,
                session,
                &shape.foreign_keys,
                &taken,
            )?;
            shape.foreign_keys.push(declared);
        }
    }
    Ok(())
}

/// Evaluates `sql` (a default) once, as a value of the column's SQL type.
async fn evaluate(session: &mut Session, sql: &str, data_type: &str) -> Result<ScalarValue> {
    let df = session
        .ctx
        .sql(&format!("SELECT CAST(({sql}) AS {data_type})"))
        .await?;
    let batches: Vec<RecordBatch> = df.collect().await?;
    let column = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| b.columns().first())
        .ok_or_else(|| ErrorKind::Plan(format!("default {sql} has no value")))?;
    Ok(ScalarValue::try_from_array(column, 0)?)
}

fn drop_column(
    shape: &mut Shape,
    catalog: &mut Catalog,
    column: &str,
    if_exists: bool,
    cascade: bool,
) -> Result<()> {
    crate::triggers::refuse_if_used(catalog, &shape.name, true, "DROP COLUMN")?;
    let Some(pos) = shape.position(column) else {
        if if_exists {
            return Ok(());
        }
        return Err(ErrorKind::UndefinedColumn {
            column: column.to_string(),
            relation: Some(shape.name.clone()),
        }
        .into());
    };
    if shape.columns.len() == 1 {
        return unsupported("dropping the last column of a table");
    }
    let dependents = views_reading_column(catalog, &shape.name, column);
    if !dependents.is_empty() {
        if !cascade {
            return Err(ErrorKind::DependentObjects(format!(
                "cannot drop column {column} of table {} because view {} depends on it; \
                 use DROP … CASCADE to drop the dependent views too",
                shape.name,
                dependents.join(", ")
            ))
            .into());
        }
        drop_views(catalog, dependents);
    }
    if shape.primary_key.iter().any(|c| c == column) {
        drop_referring_constraints(shape, catalog, column, cascade)?;
    }
    // As in PostgreSQL, a FOREIGN KEY of the table over the column goes
    // with it.
    shape
        .foreign_keys
        .retain(|f| !f.columns.iter().any(|c| c == column));
    let removed = shape.columns.remove(pos);
    if let Some(identity) = removed.identity {
        catalog.sequences.retain(|s| s.name != identity.sequence);
    }
    if shape.primary_key.iter().any(|c| c == column) {
        shape.primary_key.clear();
    }
    shape.unique.retain(|u| !u.iter().any(|c| c == column));
    // As in PostgreSQL, a CHECK constraint reading the column goes with it.
    shape
        .checks
        .retain(|c| !crate::checks::reads_column(c, column));
    let table = shape.name.clone();
    catalog
        .indexes
        .retain(|i| i.table != table || !i.columns.iter().any(|c| c == column));
    shape.rewrite = true;
    Ok(())
}

/// Dropping key column `column` of `shape` drops the key other tables'
/// (and the table's own) FOREIGN KEY constraints refer to: only with
/// CASCADE, which drops those constraints (2BP01 otherwise).
fn drop_referring_constraints(
    shape: &mut Shape,
    catalog: &mut Catalog,
    column: &str,
    cascade: bool,
) -> Result<()> {
    let table = shape.name.clone();
    let referring: Vec<String> = catalog
        .tables
        .iter()
        .filter(|t| t.table_id != shape.table_id)
        .flat_map(|t| t.foreign_keys.iter())
        .chain(shape.foreign_keys.iter())
        .filter(|f| f.parent == table)
        .map(|f| f.name.clone())
        .collect();
    if referring.is_empty() {
        return Ok(());
    }
    if !cascade {
        return Err(ErrorKind::DependentObjects(format!(
            "cannot drop column {column} of table {table} because constraint {} depends on \
             its primary key; use DROP … CASCADE to drop the dependent constraints too",
            referring.join(", ")
        ))
        .into());
    }
    for t in catalog
        .tables
        .iter_mut()
        .filter(|t| t.table_id != shape.table_id)
    {
        t.foreign_keys.retain(|f| f.parent != table);
    }
    shape.foreign_keys.retain(|f| f.parent != table);
    Ok(())
}

/// The FOREIGN KEY constraints that refer to `shape`'s table: other
/// tables' (in the catalog) and its own.
fn referring_mut<'a>(
    shape: &'a mut Shape,
    catalog: &'a mut Catalog,
) -> impl Iterator<Item = &'a mut ForeignKeyMeta> {
    let table = shape.name.clone();
    let id = shape.table_id;
    catalog
        .tables
        .iter_mut()
        .filter(move |t| t.table_id != id)
        .flat_map(|t| t.foreign_keys.iter_mut())
        .chain(shape.foreign_keys.iter_mut())
        .filter(move |f| f.parent == table)
}

fn rename_column(shape: &mut Shape, catalog: &mut Catalog, old: &str, new: &str) -> Result<()> {
    crate::triggers::refuse_if_used(catalog, &shape.name, true, "RENAME COLUMN")?;
    if shape.position(new).is_some() {
        return Err(ErrorKind::DuplicateColumn {
            table: shape.name.clone(),
            column: new.to_string(),
        }
        .into());
    }
    let field = &mut shape.column_mut(old)?.field;
    *field = field.clone().with_name(new);
    for list in std::iter::once(&mut shape.primary_key).chain(shape.unique.iter_mut()) {
        for c in list.iter_mut().filter(|c| *c == old) {
            *c = new.to_string();
        }
    }
    for fk in shape.foreign_keys.iter_mut() {
        for c in fk.columns.iter_mut().filter(|c| *c == old) {
            *c = new.to_string();
        }
    }
    for fk in referring_mut(shape, catalog) {
        for c in fk.parent_columns.iter_mut().filter(|c| *c == old) {
            *c = new.to_string();
        }
    }
    let table = shape.name.clone();
    for index in catalog.indexes.iter_mut().filter(|i| i.table == table) {
        for c in index.columns.iter_mut().filter(|c| *c == old) {
            *c = new.to_string();
        }
    }
    for check in shape.checks.iter_mut() {
        if let Some(mut expr) = crate::checks::parse(&check.sql) {
            let _ = VisitMut::visit(&mut expr, &mut ColumnRenamer { old, new });
            check.sql = expr.to_string();
        }
    }
    let lookup = catalog.clone();
    for view in catalog.views.iter_mut() {
        if !relations_named(&lookup, &view.sql).contains(&table) {
            continue;
        }
        // A `new` the view names already could bind to the renamed column.
        if names_column(&view.sql, new, false) {
            return unsupported_rename(&view.name, &format!("it names a column {new} already"));
        }
        if names_column(&view.sql, old, true) {
            // The renamer is blind to qualifiers: it renames `old` of every
            // relation of the view. Refused where another one may have it.
            if let Some(other) = other_source_of(&lookup, &view.sql, &table, old) {
                return unsupported_rename(&view.name, &format!("{other} may have a column {old}"));
            }
            view.sql = rewrite_view(&view.sql, |stmt| {
                let _ = stmt.visit(&mut ColumnRenamer { old, new });
            });
        }
    }
    shape.rewrite = true;
    Ok(())
}

/// Renames column `old` to `new` in a view's query. A view's output
/// columns keep their names, as in PostgreSQL: a selected `old` becomes
/// `new AS old`.
struct ColumnRenamer<'a> {
    old: &'a str,
    new: &'a str,
}

impl ColumnRenamer<'_> {
    /// True when `e` names the column (bare or qualified).
    fn names_old(&self, e: &SqlExpr) -> bool {
        let ident = match e {
            SqlExpr::Identifier(ident) => Some(ident),
            SqlExpr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        ident.is_some_and(|i| normalize(i) == self.old)
    }
}

impl VisitorMut for ColumnRenamer<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in select.projection.iter_mut() {
                if let SelectItem::UnnamedExpr(e) = item
                    && self.names_old(e)
                {
                    *item = SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: quoted(self.old),
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<()> {
        if self.names_old(e) {
            match e {
                SqlExpr::Identifier(ident) => *ident = quoted(self.new),
                SqlExpr::CompoundIdentifier(parts) => {
                    if let Some(ident) = parts.last_mut() {
                        *ident = quoted(self.new);
                    }
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }
}

fn rename_table(shape: &mut Shape, catalog: &mut Catalog, new: &str) -> Result<()> {
    crate::triggers::refuse_if_used(catalog, &shape.name, false, "RENAME")?;
    if catalog.has_relation(new) || catalog.index(new).is_some() || catalog.sequence(new).is_some()
    {
        return Err(ErrorKind::DuplicateTable {
            name: new.to_string(),
        }
        .into());
    }
    for fk in referring_mut(shape, catalog) {
        fk.parent = new.to_string();
    }
    let old = std::mem::replace(&mut shape.name, new.to_string());
    for index in catalog.indexes.iter_mut().filter(|i| i.table == old) {
        index.table = new.to_string();
    }
    crate::triggers::rename_table(catalog, &old, new);
    for sequence in catalog.sequences.iter_mut() {
        if sequence.owner.as_deref() == Some(old.as_str()) {
            sequence.owner = Some(new.to_string());
        }
    }
    let lookup = catalog.clone();
    let bare_old = lookup.split(&old).1.to_string();
    for view in catalog.views.iter_mut() {
        if relations_named(&lookup, &view.sql).contains(&old) {
            // The rename rewrites names, blind to scopes: a CTE named like
            // the table would be renamed too and read the table.
            if has_cte_named(&view.sql, &bare_old) {
                return unsupported_rename(&view.name, "it has a CTE of the table's name");
            }
            view.sql = rewrite_view(&view.sql, |stmt| {
                let _ = visit_relations_mut(stmt, |name| {
                    if crate::schemas::resolve(&lookup, name).is_ok_and(|k| k == old) {
                        *name = crate::schemas::object_name(&lookup, new);
                    }
                    ControlFlow::<()>::Continue(())
                });
            });
            // A FROM list of the view may now expose one name twice.
            if let Some(stmt) = parse_view(&view.sql)
                && let Err(e) = crate::exposed_names::check(&DFStatement::Statement(Box::new(stmt)))
            {
                return unsupported_rename(&view.name, &e.to_string());
            }
        }
    }
    shape.rewrite = true;
    Ok(())
}

/// 0A000: a RENAME that would change what view `view` reads.
fn unsupported_rename(view: &str, why: &str) -> Result<()> {
    Err(ErrorKind::NotSupported(format!(
        "RENAME would change what view {view} reads ({why}); drop and re-create the view"
    ))
    .into())
}

async fn alter_column(
    session: &mut Session,
    shape: &mut Shape,
    column: &str,
    op: &AlterColumnOperation,
) -> Result<()> {
    let in_key = shape.primary_key.iter().any(|c| c == column);
    let table = shape.name.clone();
    let col = shape.column_mut(column)?;
    match op {
        AlterColumnOperation::SetNotNull => {
            col.field = col.field.clone().with_nullable(false);
            shape.rewrite = true;
        }
        AlterColumnOperation::DropNotNull => {
            if in_key {
                return Err(ErrorKind::InvalidTableDefinition(format!(
                    "column {column} of table {table} is in a primary key"
                ))
                .into());
            }
            col.field = col.field.clone().with_nullable(true);
            shape.rewrite = true;
        }
        AlterColumnOperation::SetDefault { .. } | AlterColumnOperation::DropDefault
            if col.identity.is_some() =>
        {
            return Err(ErrorKind::Syntax(format!(
                "column {column} of relation {table} is an identity column"
            ))
            .into());
        }
        AlterColumnOperation::SetDefault { value } => {
            let sql = value.to_string();
            // The CAST that checks the default; any other type: check that
            // the expression plans, uncast.
            let data_type = crate::introspect::sql_type_name(col.field.data_type())
                .unwrap_or_else(|| "VARCHAR".into());
            col.default = Some(sql.clone());
            // Check the default plans and casts (its value is not kept).
            evaluate(session, &sql, &data_type).await?;
        }
        AlterColumnOperation::DropDefault => col.default = None,
        AlterColumnOperation::SetDataType { .. } => {
            return unsupported("ALTER TABLE … ALTER COLUMN … TYPE");
        }
        AlterColumnOperation::AddGenerated { .. } => {
            return unsupported("ALTER TABLE … ALTER COLUMN … ADD GENERATED (identity)");
        }
    }
    Ok(())
}

/// The catalog entry for `shape`, stored as engine table `table_id`.
fn table_meta(shape: &Shape, table_id: u64) -> TableMeta {
    TableMeta {
        name: shape.name.clone(),
        table_id,
        columns: shape
            .columns
            .iter()
            .map(|c| ColumnMeta {
                name: c.field.name().clone(),
                default: c.default.clone(),
                identity: c.identity.clone(),
            })
            .collect(),
        primary_key: shape.indexes_of(&shape.primary_key),
        unique: shape.unique.iter().map(|u| shape.indexes_of(u)).collect(),
        checks: shape.checks.clone(),
        foreign_keys: shape.foreign_keys.clone(),
    }
}

/// Puts `meta` where the table called `old` was (or at the end).
fn replace_table(catalog: &mut Catalog, old: &str, meta: TableMeta) {
    match catalog.tables.iter_mut().find(|t| t.name == old) {
        Some(slot) => *slot = meta,
        None => catalog.tables.push(meta),
    }
}

/// The columns the ALTER appends, with the value each existing row gets,
/// when appending them is all it does: the old columns unchanged and in
/// place, no constraint, key, identity or name changed, and no NOT NULL
/// column filled with NULL (whether that fails depends on the rows). Such
/// an ALTER needs no rewrite ([`add_in_place`]).
fn appended_columns(
    shape: &Shape,
    def: &TableDef,
    meta: &TableMeta,
) -> Option<Vec<(Field, ScalarValue)>> {
    let before = Shape::new(def, meta);
    let unchanged = shape.name == before.name
        && shape.primary_key == before.primary_key
        && shape.unique == before.unique
        && shape.checks == before.checks
        && shape.foreign_keys == before.foreign_keys
        && shape.columns.len() > before.columns.len()
        && shape.columns.iter().zip(&before.columns).all(|(now, was)| {
            now.field == was.field
                && now.default == was.default
                && now.identity == was.identity
                && matches!((&now.source, &was.source), (Source::Old(a), Source::Old(b)) if a == b)
        });
    if !unchanged {
        return None;
    }
    shape
        .columns
        .get(before.columns.len()..)?
        .iter()
        .map(|c| match &c.source {
            Source::Fill(v) if c.identity.is_none() && (c.field.is_nullable() || !v.is_null()) => {
                Some((c.field.clone(), v.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Rewrites `meta`'s table into a new engine table with the columns this
/// transaction sees, and returns the catalog pointing at it (saved in the
/// transaction). For an index or UNIQUE over a column this transaction added
/// in place: the engine cannot build one before the column's fill commits
/// (`Transaction::committed_width`), but it can over rows that store it.
pub(crate) fn rewrite_in_full(session: &Session, meta: &TableMeta) -> Result<Catalog> {
    let def = session.slot.with(|t| t.table_by_id(meta.table_id))?;
    let mut shape = Shape::new(&def, meta);
    shape.rewrite = true;
    let mut catalog = session.catalog.as_ref().clone();
    rewrite(&session.slot, &def, meta, &shape, &mut catalog)?;
    Ok(catalog)
}

/// ADD COLUMN without a rewrite: the engine table keeps its id and rows,
/// and the rows stored before read each added column's value (the engine's
/// `Transaction::add_columns`; see `engine/src/schema.rs`, ADDED COLUMNS).
fn add_in_place(
    slot: &TxnSlot,
    def: &TableDef,
    meta: &TableMeta,
    shape: &Shape,
    added: Vec<(Field, ScalarValue)>,
    catalog: &mut Catalog,
) -> Result<()> {
    let mut fields = Vec::with_capacity(added.len());
    let mut fills = Vec::with_capacity(added.len());
    for (field, value) in added {
        fills.push(value.to_array_of_size(1)?);
        fields.push(field);
    }
    slot.with(|t| t.add_columns(def.id, fields, fills))?;
    replace_table(catalog, &meta.name, table_meta(shape, def.id));
    slot.with(|t| catalog.save(t))?;
    Ok(())
}

/// Drops `old`, creates the new engine table and copies the rows the
/// transaction sees.
fn rewrite(
    slot: &TxnSlot,
    old: &TableDef,
    meta: &TableMeta,
    shape: &Shape,
    catalog: &mut Catalog,
) -> Result<()> {
    let sources: Vec<usize> = shape
        .columns
        .iter()
        .filter_map(|c| match c.source {
            Source::Old(i) => Some(i),
            Source::Fill(_) => None,
        })
        .collect();
    let request = ScanRequest {
        projection: Some(sources.clone()),
        ..ScanRequest::default()
    };
    let rows = slot.with(|t| t.scan(old.id, request))?;
    let fields: Vec<Field> = shape
        .columns
        .iter()
        .map(|c| {
            let key = shape.primary_key.iter().any(|k| k == c.field.name());
            c.field.clone().with_nullable(c.field.is_nullable() && !key)
        })
        .collect();
    let primary_key = shape.indexes_of(&shape.primary_key);
    // The copy is of this snapshot's rows: a row a concurrent transaction
    // commits to the old table meanwhile must fail one of the two, or it
    // would be lost (or, deleted, come back).
    let def = slot.with(|t| {
        t.guard_rows(old.id)?;
        t.drop_table(old.id)?;
        t.create_table(&shape.name, Arc::new(Schema::new(fields)), primary_key)
    })?;
    let new_meta = table_meta(shape, def.id);
    replace_table(catalog, &meta.name, new_meta.clone());
    slot.with(|t| catalog.save(t))?;
    let unique = unique_sets(&table_indexes(catalog, &new_meta));
    let foreign_keys =
        slot.with_sql(|t| crate::foreign_keys::ForeignKeys::resolve(catalog, &new_meta, &def, t))?;
    let mut deferred = crate::foreign_keys::DeferredCheck::default();
    for batch in rows {
        let batch = batch?;
        let columns = shape
            .columns
            .iter()
            .map(|c| column_values(c, &sources, &batch))
            .collect::<Result<Vec<_>>>()?;
        let batch = conform_columns(&def, &columns)?;
        slot.with_sql(|t| {
            insert_rows(t, &def, &unique, &batch)?;
            deferred.check(&foreign_keys, t, &batch)
        })?;
    }
    // A self-referencing table's child may come in a batch before its
    // parent's.
    slot.with_sql(|t| deferred.finish(&foreign_keys, t))?;
    Ok(())
}

fn column_values(column: &Column, sources: &[usize], batch: &RecordBatch) -> Result<ArrayRef> {
    match &column.source {
        Source::Old(i) => sources
            .iter()
            .position(|s| s == i)
            .and_then(|p| batch.columns().get(p).cloned())
            .ok_or_else(|| {
                ErrorKind::Execution(format!("column {i} missing from the scan")).into()
            }),
        Source::Fill(value) => Ok(value.to_array_of_size(batch.num_rows())?),
    }
}

/// The parsed query of a view, changed by `f`, printed back.
fn rewrite_view(sql: &str, f: impl FnOnce(&mut SqlStatement)) -> String {
    match DFParser::parse_sql(sql)
        .ok()
        .and_then(|mut s| s.pop_front())
    {
        Some(DFStatement::Statement(mut stmt)) => {
            f(&mut stmt);
            stmt.to_string()
        }
        _ => sql.to_string(),
    }
}

fn parse_view(sql: &str) -> Option<SqlStatement> {
    match DFParser::parse_sql(sql).ok()?.pop_front()? {
        DFStatement::Statement(stmt) => Some(*stmt),
        _ => None,
    }
}

/// True when the view's SQL may name relation `table` (a key): a name
/// whose last part is the key, or its name within its schema, counts (this
/// errs on the side of finding one).
fn reads_relation(sql: &str, table: &str) -> bool {
    let Some(stmt) = parse_view(sql) else {
        return false;
    };
    let mut found = false;
    let _ = visit_relations(&stmt, |name| {
        if name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| crate::schemas::may_name(&normalize(i), table))
        {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Views that read `column` of `table` — name it, or select `*` — as far as
/// their text shows (a column of the same name in another table of the view
/// counts too: the check errs on the side of refusing the DROP).
fn views_reading_column(catalog: &Catalog, table: &str, column: &str) -> Vec<String> {
    catalog
        .views
        .iter()
        .filter(|v| reads_relation(&v.sql, table))
        .filter(|v| names_column(&v.sql, column, true))
        .map(|v| v.name.clone())
        .collect()
}

/// Finds an identifier or a wildcard that may read a column.
struct ColumnFinder<'a> {
    column: &'a str,
    /// Whether `*` counts (it reads every column).
    wildcards: bool,
    found: bool,
}

/// True when the view's SQL names `column` (or, with `wildcards`, selects
/// `*`), as [`ColumnFinder`] finds it.
fn names_column(sql: &str, column: &str, wildcards: bool) -> bool {
    parse_view(sql).is_some_and(|stmt| {
        let mut finder = ColumnFinder {
            column,
            wildcards,
            found: false,
        };
        let _ = stmt.visit(&mut finder);
        finder.found
    })
}

impl Visitor for ColumnFinder<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self.wildcards
            && let SetExpr::Select(select) = query.body.as_ref()
            && select.projection.iter().any(|p| {
                matches!(
                    p,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                )
            })
        {
            self.found = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
        let ident = match expr {
            SqlExpr::Identifier(ident) => Some(ident),
            SqlExpr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if ident.is_some_and(|i| normalize(i) == self.column) {
            self.found = true;
        }
        ControlFlow::Continue(())
    }
}

/// The keys of the relations a view's SQL names: each name as it
/// resolves, leaving out CTEs where they are in scope
/// ([`crate::exposed_names::relations_read`]).
fn relations_named(catalog: &Catalog, sql: &str) -> HashSet<String> {
    let Some(stmt) = parse_view(sql) else {
        return HashSet::new();
    };
    let names = crate::exposed_names::relations_read(&stmt).unwrap_or_else(|| {
        // SQL stored before today's checks: every name it holds.
        let mut all = Vec::new();
        let _ = visit_relations(&stmt, |name| {
            all.push(name.clone());
            ControlFlow::<()>::Continue(())
        });
        all
    });
    names
        .iter()
        .filter_map(|name| crate::schemas::resolve(catalog, name).ok())
        .collect()
}

/// Another relation of the view's SQL than `table` that has (or, a view
/// or a CTE, may have) a column `column`.
fn other_source_of(catalog: &Catalog, sql: &str, table: &str, column: &str) -> Option<String> {
    let stmt = parse_view(sql)?;
    let mut ctes = CteNames(HashSet::new());
    let _ = stmt.visit(&mut ctes);
    if let Some(cte) = ctes.0.iter().next() {
        return Some(format!("CTE {cte}"));
    }
    relations_named(catalog, sql)
        .into_iter()
        .filter(|key| key != table)
        .find(|key| match catalog.table(key) {
            Some(meta) => meta.columns.iter().any(|c| c.name == column),
            None => true,
        })
}

/// True when a CTE of the view's SQL is named `name`.
fn has_cte_named(sql: &str, name: &str) -> bool {
    let Some(stmt) = parse_view(sql) else {
        return false;
    };
    let mut ctes = CteNames(HashSet::new());
    let _ = stmt.visit(&mut ctes);
    ctes.0.contains(name)
}

/// The names of every CTE of a statement.
struct CteNames(HashSet<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.0
                .extend(with.cte_tables.iter().map(|c| normalize(&c.alias.name)));
        }
        ControlFlow::Continue(())
    }
}

/// The views whose SQL names relation `key` ([`relations_named`]).
pub(crate) fn views_reading_table(catalog: &Catalog, key: &str) -> Vec<String> {
    catalog
        .views
        .iter()
        .filter(|v| relations_named(catalog, &v.sql).contains(key))
        .map(|v| v.name.clone())
        .collect()
}

/// Drops `views` and the views over them, transitively.
pub(crate) fn drop_views(catalog: &mut Catalog, views: Vec<String>) {
    let mut gone: HashSet<String> = views.into_iter().collect();
    loop {
        let more: Vec<String> = catalog
            .views
            .iter()
            .filter(|v| !gone.contains(&v.name))
            .filter(|v| !relations_named(catalog, &v.sql).is_disjoint(&gone))
            .map(|v| v.name.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        gone.extend(more);
    }
    catalog.views.retain(|v| !gone.contains(&v.name));
}
