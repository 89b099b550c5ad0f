//! CREATE/DROP TABLE, VIEW and INDEX, executed inside the session's
//! transaction.
//!
//! DataFusion plans the statement (resolving types and constraints); we
//! create the engine table and update the catalog blob in the same
//! transaction, so the DDL commits or rolls back with it. Column defaults are
//! taken from the SQL text of the statement and stored as SQL.

use crate::error::{ErrorKind, Result};
use crate::identity::{
    create_counter, drop_counter, free_sequence_name, nextval_sql, take_identities,
};
use crate::indexes::{table_indexes, unique_sets};
use crate::provider::{conform_columns, insert_rows};
use crate::schemas;
use crate::session::{Output, Parsed, Session};
use arrow::datatypes::DataType;
use arrow::datatypes::{Field, Schema};
use datafusion::common::Constraint;
use datafusion::logical_expr::{CreateMemoryTable, CreateView, DropTable, DropView, LogicalPlan};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateIndex, CreateTable, DataType as SqlType, Expr as SqlExpr, Ident,
    ObjectName, Statement as SqlStatement, TableConstraint, TimezoneInfo,
};
use datafusion::sql::sqlparser::tokenizer::Token;
use entidb_catalog::{Catalog, ColumnMeta, Identity, IndexMeta, SequenceMeta, TableMeta, ViewMeta};
use std::sync::Arc;

/// Normalises an identifier as DataFusion does (unquoted → lower case).
pub fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn defaults_from_ast(ast: Option<&SqlStatement>) -> Vec<(String, String)> {
    let Some(SqlStatement::CreateTable(create)) = ast else {
        return vec![];
    };
    create
        .columns
        .iter()
        .filter_map(|c| {
            c.options.iter().find_map(|o| match &o.option {
                ColumnOption::Default(expr) => Some((normalize(&c.name), expr.to_string())),
                _ => None,
            })
        })
        .collect()
}

/// The statement DataFusion plans: a CREATE TABLE loses its identity
/// options (kept by [`create_table`] from the statement as written) and is
/// checked for what DataFusion would accept and ignore.
pub fn plannable(stmt: DFStatement) -> Result<DFStatement> {
    let DFStatement::Statement(mut inner) = stmt else {
        return Ok(stmt);
    };
    if let SqlStatement::CreateTable(create) = inner.as_mut() {
        crate::identity::take_identities(create)?;
        check_create_table(create)?;
        // CHECK constraints are EntiDB's (`checks.rs`, read from the
        // original statement): DataFusion plans the table without them.
        // So are FOREIGN KEY constraints (`foreign_keys.rs`).
        for column in create.columns.iter_mut() {
            column.options.retain(|o| {
                !matches!(
                    o.option,
                    ColumnOption::Check(_) | ColumnOption::ForeignKey(_)
                )
            });
        }
        create.constraints.retain(|c| {
            !matches!(
                c,
                TableConstraint::Check(_) | TableConstraint::ForeignKey(_)
            )
        });
    }
    Ok(DFStatement::Statement(inner))
}

/// Refuses, before DataFusion plans it, what CREATE TABLE would otherwise
/// accept and ignore (or reject with a planning error): generated columns and other identity syntaxes — each 0A000 naming the
/// feature.
fn check_create_table(create: &CreateTable) -> Result<()> {
    let unsupported = |what: &str| -> Result<()> {
        Err(ErrorKind::NotSupported(format!("{what} in CREATE TABLE")).into())
    };
    for column in &create.columns {
        for option in &column.options {
            match &option.option {
                ColumnOption::Identity(_) => return unsupported("IDENTITY(seed, increment)"),
                ColumnOption::Generated { .. } => return unsupported("generated columns"),
                _ => {}
            }
        }
    }
    Ok(())
}

/// True for `TIMESTAMPTZ` / `TIMESTAMP WITH TIME ZONE`.
fn has_time_zone(t: &SqlType) -> bool {
    matches!(
        t,
        SqlType::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone)
    )
}

/// The time zone of stored `TIMESTAMPTZ` values: they are instants, kept
/// in UTC (DataFusion plans `TIMESTAMPTZ` as a naive timestamp).
const UTC: &str = "+00:00";

/// The type a column of SQL type `sql` is stored as, given the type
/// DataFusion planned for it: `TIMESTAMPTZ` keeps its time zone.
pub fn stored_type(sql: &SqlType, planned: DataType) -> DataType {
    match planned {
        DataType::Timestamp(unit, None) if has_time_zone(sql) => {
            DataType::Timestamp(unit, Some(UTC.into()))
        }
        other => other,
    }
}

/// The SQL text of a column type, for a CAST (0A000 for types that are
/// column shorthands rather than types, such as SERIAL).
pub fn sql_type(t: &SqlType) -> Result<String> {
    let text = t.to_string();
    if text.to_ascii_uppercase().contains("SERIAL") {
        return Err(ErrorKind::NotSupported(format!("column type {text}")).into());
    }
    Ok(text)
}

/// `fields` with the `TIMESTAMPTZ` columns of the CREATE TABLE in `ast`
/// typed with their time zone.
fn with_time_zones(fields: Vec<Field>, ast: Option<&SqlStatement>) -> Vec<Field> {
    let Some(SqlStatement::CreateTable(create)) = ast else {
        return fields;
    };
    fields
        .into_iter()
        .map(|f| {
            match create
                .columns
                .iter()
                .find(|c| normalize(&c.name) == *f.name())
            {
                Some(c) => {
                    let t = stored_type(&c.data_type, f.data_type().clone());
                    f.with_data_type(t)
                }
                None => f,
            }
        })
        .collect()
}

/// CREATE TABLE [IF NOT EXISTS] … [AS SELECT …].
pub async fn create_table(
    session: &mut Session,
    c: CreateMemoryTable,
    ast: Option<SqlStatement>,
) -> Result<()> {
    let name = schemas::new_key_ref(&session.catalog, &c.name)?;
    if session.catalog.has_relation(&name)
        || session.catalog.sequence(&name).is_some()
        || is_external(session, &name)?
    {
        if c.if_not_exists {
            return Ok(());
        }
        return Err(ErrorKind::DuplicateTable { name }.into());
    }
    if c.or_replace || c.temporary {
        return Err(ErrorKind::NotSupported("CREATE OR REPLACE / TEMPORARY TABLE".into()).into());
    }
    let mut primary_key = Vec::new();
    let mut unique = Vec::new();
    for constraint in c.constraints.iter() {
        match constraint {
            Constraint::PrimaryKey(cols) => primary_key = cols.clone(),
            Constraint::Unique(cols) => unique.push(cols.clone()),
        }
    }
    let input_schema = c.input.schema().as_arrow().clone();
    let fields: Vec<Field> = input_schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_ref().clone();
            if primary_key.contains(&i) {
                f.with_nullable(false)
            } else {
                f
            }
        })
        .collect();
    let fields = with_time_zones(fields, ast.as_ref());
    let schema = Arc::new(Schema::new(fields));
    let defaults = defaults_from_ast(ast.as_ref());
    let identities = match ast.as_ref() {
        Some(SqlStatement::CreateTable(create)) => take_identities(&mut create.clone())?,
        _ => Vec::new(),
    };
    let checks = match ast.as_ref() {
        Some(SqlStatement::CreateTable(create)) => {
            crate::checks::declared(create, session.catalog.split(&name).1)?
        }
        _ => Vec::new(),
    };
    // Plans every constraint now, so a bad one fails the CREATE.
    crate::checks::Checks::plan(&session.ctx, &name, &schema, &checks)?;
    let as_select = !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(_));
    let foreign_keys = match ast.as_ref() {
        Some(SqlStatement::CreateTable(create)) => {
            let taken: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
            crate::foreign_keys::declared(create, &name, &schema, &primary_key, session, &taken)?
        }
        _ => Vec::new(),
    };
    if as_select && !foreign_keys.is_empty() {
        return Err(ErrorKind::NotSupported(
            "FOREIGN KEY in CREATE TABLE … AS SELECT (create the table, then INSERT … SELECT)"
                .into(),
        )
        .into());
    }
    let mut catalog = session.catalog.as_ref().clone();
    let mut counters = Vec::new();
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let identity = identities.iter().find(|i| i.column == *f.name()).map(|i| {
                let sequence = free_sequence_name(&catalog, &name, &i.column);
                counters.push((sequence.clone(), i.start));
                catalog.sequences.push(SequenceMeta {
                    name: sequence.clone(),
                    owner: Some(name.clone()),
                });
                Identity {
                    always: i.always,
                    sequence,
                }
            });
            ColumnMeta {
                name: f.name().clone(),
                default: match &identity {
                    Some(i) => Some(nextval_sql(&i.sequence)),
                    None => defaults
                        .iter()
                        .find(|(n, _)| n == f.name())
                        .map(|(_, d)| d.clone()),
                },
                identity,
            }
        })
        .collect();
    let (def, meta) = session.slot.with(|t| {
        for (sequence, start) in &counters {
            create_counter(t, sequence, *start)?;
        }
        let def = t.create_table(&name, schema.clone(), primary_key.clone())?;
        // A transaction that deletes parent rows on a snapshot without this
        // table's constraints must fail at commit (`foreign_keys.rs`).
        for fk in &foreign_keys {
            if let Some(parent) = catalog.table(&fk.parent) {
                t.touch_schema(parent.table_id)?;
            }
        }
        let meta = TableMeta {
            name: name.clone(),
            table_id: def.id,
            columns,
            primary_key,
            unique,
            checks,
            foreign_keys,
        };
        catalog.tables.push(meta.clone());
        catalog.save(t)?;
        Ok((def, meta))
    })?;
    if !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(_)) {
        // CREATE TABLE … AS SELECT: evaluate the query and insert its rows.
        let Output::Rows(_, batches) = session.run_plan(c.input.as_ref().clone()).await? else {
            return Ok(());
        };
        let unique = unique_sets(&table_indexes(&catalog, &meta));
        for batch in batches {
            let batch = conform_columns(&def, batch.columns())?;
            session
                .slot
                .with(|t| insert_rows(t, &def, &unique, &batch))?;
        }
    }
    Ok(())
}

/// DROP TABLE [IF EXISTS].
/// A parent another table's FOREIGN KEY refers to is dropped only with
/// CASCADE, which drops those constraints (2BP01 otherwise).
pub fn drop_table(session: &mut Session, d: DropTable, ast: Option<&SqlStatement>) -> Result<()> {
    let cascade = matches!(ast, Some(SqlStatement::Drop { cascade: true, .. }));
    let Some(name) = schemas::or_absent(
        schemas::resolve_ref_for_ddl(&session.catalog, &d.name),
        d.if_exists,
    )?
    else {
        return Ok(());
    };
    if is_external(session, &name)? {
        // This connection's file table (CREATE EXTERNAL TABLE): not in the
        // catalog, so its drop is not transactional; the views over it are.
        let mut catalog = session.catalog.as_ref().clone();
        if drop_dependent_views(&mut catalog, &name, cascade)? {
            session.slot.with(|t| catalog.save(t))?;
        }
        let reference = schemas::table_ref(&session.catalog, &name);
        session.ctx.deregister_table(reference)?;
        return Ok(());
    }
    if session.catalog.table(&name).is_none() {
        if d.if_exists {
            return Ok(());
        }
        return Err(ErrorKind::UndefinedTable { name }.into());
    }
    drop_table_key(session, &name, cascade)
}

/// The views reading table `name` refuse its drop (2BP01), as in
/// PostgreSQL, unless `cascade`, which drops them (and the views over
/// them) from `catalog`; true when it dropped any.
fn drop_dependent_views(catalog: &mut Catalog, name: &str, cascade: bool) -> Result<bool> {
    let views = crate::alter::views_reading_table(catalog, name);
    let Some(first) = views.first() else {
        return Ok(false);
    };
    if !cascade {
        return Err(ErrorKind::DependentObjects(format!(
            "cannot drop table {name} because other objects depend on it: view {first} depends \
             on table {name} (use DROP … CASCADE to drop the dependent objects too)"
        ))
        .into());
    }
    crate::alter::drop_views(catalog, views);
    Ok(true)
}

/// True when the relation `key` is this connection's external (file)
/// table: DataFusion has it, the catalog does not.
pub(crate) fn is_external(session: &Session, key: &str) -> Result<bool> {
    if session.catalog.has_relation(key) {
        return Ok(false);
    }
    Ok(session
        .ctx
        .table_exist(schemas::table_ref(&session.catalog, key))?)
}

/// Drops the table with this key (which exists); `cascade` as in
/// [`drop_table`].
pub(crate) fn drop_table_key(session: &mut Session, name: &str, cascade: bool) -> Result<()> {
    let name = name.to_string();
    let Some(meta) = session.catalog.table(&name).cloned() else {
        return Err(ErrorKind::UndefinedTable { name }.into());
    };
    let mut catalog = session.catalog.as_ref().clone();
    // SQLite's DROP TABLE leaves the views over the table (dialect.rs);
    // CASCADE (not SQLite's) still drops them.
    if cascade || session.dialect != crate::dialect::Dialect::Sqlite {
        drop_dependent_views(&mut catalog, &name, cascade)?;
    }
    if let Some((child, constraint)) = crate::foreign_keys::referred_by_others(&catalog, &name) {
        if !cascade {
            return Err(ErrorKind::DependentObjects(format!(
                "cannot drop table {name} because other objects depend on it: constraint \
                 {constraint} on table {child} depends on table {name} (use DROP … CASCADE to \
                 drop the dependent objects too)"
            ))
            .into());
        }
        for t in catalog.tables.iter_mut() {
            t.foreign_keys.retain(|f| f.parent != name);
        }
    }
    catalog.tables.retain(|t| t.name != name);
    catalog.indexes.retain(|i| i.table != name);
    catalog.triggers.retain(|t| t.table != name);
    let owned: Vec<String> = catalog
        .sequences
        .iter()
        .filter(|s| s.owner.as_deref() == Some(name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    catalog.sequences.retain(|s| !owned.contains(&s.name));
    session.slot.with(|t| {
        for sequence in &owned {
            drop_counter(t, sequence)?;
        }
        t.drop_table(meta.table_id)?;
        catalog.save(t)
    })?;
    Ok(())
}

/// CREATE [OR REPLACE] VIEW.
pub fn create_view(session: &mut Session, v: CreateView, ast: Option<SqlStatement>) -> Result<()> {
    let name = schemas::new_key_ref(&session.catalog, &v.name)?;
    let sql = match ast {
        // The stored query is the one planned, with the dialect's rewrites
        // (`total()`, SQLite's division): views are replanned from it.
        Some(SqlStatement::CreateView(cv)) => {
            let mut query = DFStatement::Statement(Box::new(SqlStatement::Query(cv.query)));
            crate::dialect::rewrite(&mut query, session.dialect);
            query.to_string()
        }
        _ => view_query(
            v.definition
                .as_deref()
                .ok_or_else(|| ErrorKind::NotSupported("view without SQL text".into()))?,
        ),
    };
    let mut catalog = session.catalog.as_ref().clone();
    if catalog.table(&name).is_some()
        || catalog.sequence(&name).is_some()
        || (catalog.view(&name).is_some() && !v.or_replace)
        || is_external(session, &name)?
    {
        return Err(ErrorKind::DuplicateTable { name }.into());
    }
    catalog.views.retain(|x| x.name != name);
    catalog.views.push(ViewMeta { name, sql });
    session.slot.with(|t| catalog.save(t))?;
    Ok(())
}

/// The query part of `CREATE VIEW name AS query`.
fn view_query(definition: &str) -> String {
    let upper = definition.to_uppercase();
    match upper.find(" AS ") {
        Some(i) if upper.trim_start().starts_with("CREATE") => definition
            .get(i + 4..)
            .unwrap_or(definition)
            .trim()
            .to_string(),
        _ => definition.trim().to_string(),
    }
}

/// DROP VIEW [IF EXISTS].
pub fn drop_view(session: &mut Session, d: DropView) -> Result<()> {
    let Some(name) = schemas::or_absent(
        schemas::resolve_ref_for_ddl(&session.catalog, &d.name),
        d.if_exists,
    )?
    else {
        return Ok(());
    };
    if session.catalog.view(&name).is_none() {
        if d.if_exists {
            return Ok(());
        }
        return Err(ErrorKind::UndefinedTable { name }.into());
    }
    drop_view_key(session, &name)
}

/// Drops the view with this key.
pub(crate) fn drop_view_key(session: &mut Session, name: &str) -> Result<()> {
    let mut catalog = session.catalog.as_ref().clone();
    catalog.views.retain(|v| v.name != name);
    session.slot.with(|t| catalog.save(t))?;
    Ok(())
}

/// CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON table (col, …).
///
/// The definition goes into the catalog in the statement's transaction; a
/// UNIQUE index first checks the rows the transaction sees (and commit checks
/// again over every committed row). The engine builds the index's contents
/// right away; other transactions that started earlier can no longer write
/// the table (`touch_schema`), so none can miss the new index.
pub fn create_index(session: &mut Session, c: &CreateIndex) -> Result<()> {
    let unsupported = |what: &str| -> Result<()> {
        Err(ErrorKind::NotSupported(format!("CREATE INDEX with {what}")).into())
    };
    if c.predicate.is_some() {
        return unsupported("WHERE (partial indexes)");
    }
    if !c.include.is_empty() {
        return unsupported("INCLUDE");
    }
    let table = schemas::resolve_for_ddl(&session.catalog, &c.table_name)?;
    let Some(meta) = session.catalog.table(&table).cloned() else {
        return Err(ErrorKind::UndefinedTable { name: table }.into());
    };
    // An index lives in its table's schema (as in PostgreSQL).
    let Some(name) = c.name.as_ref().and_then(last_ident) else {
        return unsupported("no name");
    };
    let name = schemas::sibling(&session.catalog, &table, &name)?;
    if session.catalog.index(&name).is_some()
        || session.catalog.has_relation(&name)
        || session.catalog.sequence(&name).is_some()
    {
        if c.if_not_exists {
            return Ok(());
        }
        return Err(ErrorKind::DuplicateTable { name }.into());
    }
    let mut columns = Vec::new();
    for ic in &c.columns {
        let col = match &ic.column.expr {
            SqlExpr::Identifier(ident) => normalize(ident),
            SqlExpr::CompoundIdentifier(parts) => parts.last().map(normalize).unwrap_or_default(),
            other => return unsupported(&format!("expression {other}")),
        };
        let Some(pos) = meta.columns.iter().position(|m| m.name == col) else {
            return Err(ErrorKind::Plan(format!("column {col} does not exist in {table}")).into());
        };
        if columns.contains(&pos) {
            return Err(ErrorKind::Plan(format!("column {col} appears twice")).into());
        }
        columns.push(pos);
    }
    let mut catalog = session.catalog.as_ref().clone();
    let mut meta = meta;
    // Over a column this transaction added in place, the index needs the
    // table rewritten first (see `alter::rewrite_in_full`).
    let committed = session.slot.with(|t| t.committed_width(meta.table_id))?;
    if committed.is_some_and(|w| columns.iter().any(|c| *c >= w)) {
        catalog = crate::alter::rewrite_in_full(session, &meta)?;
        meta = catalog
            .table(&table)
            .cloned()
            .ok_or_else(|| ErrorKind::UndefinedTable {
                name: table.clone(),
            })?;
    }
    catalog.indexes.push(IndexMeta {
        name,
        table,
        columns: columns
            .iter()
            .filter_map(|p| meta.columns.get(*p).map(|m| m.name.clone()))
            .collect(),
        unique: c.unique,
    });
    session.slot.with(|t| {
        if c.unique {
            t.add_unique(meta.table_id, &columns)?;
        }
        t.touch_schema(meta.table_id)?;
        catalog.save(t)?;
        t.build_index(meta.table_id, &columns)
    })?;
    Ok(())
}

/// `REINDEX`, `REINDEX name` (SQLite: an index or a table) and PostgreSQL's
/// `REINDEX {INDEX | TABLE} name`; `None` for other text.
pub(crate) fn parse_reindex(text: &str) -> Option<Result<Parsed>> {
    let tokens = crate::text_rewrite::Tokens::of(text)?;
    if !tokens.is_word(0, "reindex") {
        return None;
    }
    let first = usize::from(tokens.is_word(1, "index") || tokens.is_word(1, "table"));
    let name = match (tokens.token(1 + first), tokens.len()) {
        (None, 1) => None,
        (Some(Token::Word(w)), n) if n == 2 + first => Some(match w.quote_style {
            Some(_) => w.value.clone(),
            None => w.value.to_lowercase(),
        }),
        _ => {
            return Some(Err(ErrorKind::Syntax(
                "REINDEX takes at most one index or table name".into(),
            )
            .into()));
        }
    };
    Some(Ok(Parsed::Reindex(name)))
}

/// REINDEX: the named index, the indexes of the named table, or every
/// index. An index's contents are derived data (its runs on disk, its
/// in-memory part): they are removed and the next lookup rebuilds them
/// from the table (a damaged run is rebuilt without it, see the engine's
/// `index_run.rs`).
/// 42P01 for a name that is neither (as PostgreSQL).
pub fn reindex(session: &mut Session, name: Option<&str>) -> Result<()> {
    let catalog = session.catalog.clone();
    let indexes: Vec<&IndexMeta> = match name {
        None => catalog.indexes.iter().collect(),
        Some(name) => match catalog.index(name) {
            Some(index) => vec![index],
            None if catalog.table(name).is_some() => {
                catalog.indexes.iter().filter(|i| i.table == name).collect()
            }
            None => {
                return Err(ErrorKind::UndefinedTable {
                    name: name.to_string(),
                }
                .into());
            }
        },
    };
    for index in indexes {
        let Some(meta) = catalog.table(&index.table) else {
            continue;
        };
        let columns: Vec<usize> = index
            .columns
            .iter()
            .filter_map(|c| meta.columns.iter().position(|m| &m.name == c))
            .collect();
        session.engine().forget_index(meta.table_id, &columns)?;
        // Still in the catalog: checkpoints keep persisting it.
        session.engine().declare_index(meta.table_id, &columns)?;
    }
    Ok(())
}

/// DROP INDEX [IF EXISTS] name, ….
pub fn drop_index(session: &mut Session, names: &[ObjectName], if_exists: bool) -> Result<()> {
    let mut catalog = session.catalog.as_ref().clone();
    let mut dropped = Vec::new();
    for object in names {
        let Some(name) = schemas::or_absent(schemas::resolve_for_ddl(&catalog, object), if_exists)?
        else {
            continue;
        };
        let Some(index) = catalog.index(&name).cloned() else {
            if if_exists {
                continue;
            }
            return Err(ErrorKind::UndefinedObject {
                kind: "index",
                name,
            }
            .into());
        };
        catalog.indexes.retain(|i| i.name != index.name);
        dropped.push(index);
    }
    session.slot.with(|t| catalog.save(t))?;
    // Remove the contents (runs and memory) of indexes nothing else covers
    // (a rollback only means the next equality lookup rebuilds them).
    for index in dropped {
        let Some(meta) = catalog.table(&index.table) else {
            continue;
        };
        let remaining = table_indexes(&catalog, meta);
        let columns: Vec<usize> = index
            .columns
            .iter()
            .filter_map(|c| meta.columns.iter().position(|m| &m.name == c))
            .collect();
        if !remaining.iter().any(|i| i.columns == columns) {
            session.engine().forget_index(meta.table_id, &columns)?;
        }
    }
    Ok(())
}

pub(crate) fn last_ident(name: &ObjectName) -> Option<String> {
    name.0.last().and_then(|p| p.as_ident()).map(normalize)
}
