//! Schemas: `CREATE SCHEMA`, `DROP SCHEMA`, and how a written name finds
//! the relation it means.
//!
//! A schema is a namespace of tables, views, indexes and sequences, as in
//! PostgreSQL and DuckDB. The default one, `main`, always exists; others are
//! made by `CREATE SCHEMA` and kept in the catalog, so they are
//! transactional like everything else there (two transactions that both
//! change the catalog conflict at commit, 40001).
//!
//! KEYS: the catalog keeps each relation under one string (see the
//! `entidb_catalog` module doc): its name in `main`, `s.name` in schema
//! `s`. [`resolve`] turns a name as written into that key:
//! - `t` is `main`'s `t` (the search path is `main` alone);
//! - `s.t` is schema `s`'s `t`, and `main.t` is `t`; when `s` does not
//!   exist, DDL says so (3F000) and other statements that the relation
//!   does not exist (42P01), as PostgreSQL does;
//! - `entidb.s.t` is `s.t`; another database is 0A000, as in PostgreSQL.
//!
//! INVARIANTS this module keeps, on which [`entidb_catalog::Catalog::split`]
//! relies: a schema's name holds no period, and no `main` relation is named
//! `s.…` for an existing schema `s` ([`new_key`] refuses such a name, and
//! [`create`] a schema while such a relation exists), both 42602. So a
//! quoted `"s.t"`, a `main` name, never resolves to schema `s`'s `t`.
//!
//! DataFusion sees each schema as a schema provider of the `entidb` catalog
//! ([`sync`]); tables are registered under [`table_ref`] of their key, and
//! SQL the session writes itself names them by [`sql_name`].

use crate::ddl::normalize;
use crate::error::{ErrorKind, Result};
use crate::session::Session;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, SchemaName};
use entidb_catalog::{Catalog, MAIN};
use std::sync::Arc;

/// The name of the database in three-part names (`entidb.main.t`).
pub(crate) const DATABASE: &str = "entidb";

/// Schemas that exist without being created and cannot be.
const RESERVED: [&str; 3] = [MAIN, "information_schema", "pg_catalog"];

/// A written name's parts, normalised (unquoted parts lower-cased).
fn parts(name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(normalize)
                .ok_or_else(|| ErrorKind::Syntax(format!("bad name {name}")).into())
        })
        .collect()
}

/// The key a written name refers to (see the module doc); the relation
/// itself may not exist.
///
/// # Errors
/// 42P01 for a schema that does not exist, 0A000 for another database,
/// 42601 for more than three parts.
pub(crate) fn resolve(catalog: &Catalog, name: &ObjectName) -> Result<String> {
    relation_in_missing_schema(resolve_for_ddl(catalog, name), &name.to_string())
}

/// [`resolve`] of a DataFusion table reference.
pub(crate) fn resolve_ref(catalog: &Catalog, name: &TableReference) -> Result<String> {
    relation_in_missing_schema(resolve_ref_for_ddl(catalog, name), &name.to_string())
}

/// A relation named in a schema that does not exist does not exist (42P01,
/// as PostgreSQL says of `SELECT`, `INSERT`, `UPDATE` and `DELETE`); only
/// DDL says the schema is missing (3F000).
fn relation_in_missing_schema(resolved: Result<String>, written: &str) -> Result<String> {
    resolved.map_err(|e| match e.kind() {
        ErrorKind::UndefinedSchema { .. } => ErrorKind::UndefinedTable {
            name: written.to_string(),
        }
        .into(),
        _ => e,
    })
}

/// [`resolve`] for DDL (`DROP`, `CREATE … ON`): a schema that does not
/// exist is 3F000.
pub(crate) fn resolve_for_ddl(catalog: &Catalog, name: &ObjectName) -> Result<String> {
    let parts = parts(name)?;
    let (schema, table) = place(catalog, &parts, &name.to_string())?;
    found(catalog, schema, table)
}

/// [`resolve_for_ddl`] of a DataFusion table reference.
pub(crate) fn resolve_ref_for_ddl(catalog: &Catalog, name: &TableReference) -> Result<String> {
    let parts = ref_parts(name);
    let (schema, table) = place(catalog, &parts, &name.to_string())?;
    found(catalog, schema, table)
}

fn ref_parts(name: &TableReference) -> Vec<String> {
    match name {
        TableReference::Bare { table } => vec![table.to_string()],
        TableReference::Partial { schema, table } => vec![schema.to_string(), table.to_string()],
        TableReference::Full {
            catalog,
            schema,
            table,
        } => vec![catalog.to_string(), schema.to_string(), table.to_string()],
    }
}

/// The schema (which exists) and the name within it that `parts` name.
fn place<'a>(catalog: &Catalog, parts: &'a [String], written: &str) -> Result<(&'a str, &'a str)> {
    let (schema, table) = match parts {
        [table] => (MAIN, table.as_str()),
        [schema, table] => (schema.as_str(), table.as_str()),
        [database, schema, table] if database == DATABASE => (schema.as_str(), table.as_str()),
        [_, _, _] => {
            return Err(ErrorKind::NotSupported(format!(
                "cross-database references are not implemented: {written}"
            ))
            .into());
        }
        _ => return Err(ErrorKind::Syntax(format!("improper qualified name: {written}")).into()),
    };
    if !catalog.has_schema(schema) {
        return Err(ErrorKind::UndefinedSchema {
            name: schema.to_string(),
        }
        .into());
    }
    Ok((schema, table))
}

/// The key of `table` in `schema`; a `main` name that reads as a schema's
/// relation names nothing (none can be created), 42P01.
fn found(catalog: &Catalog, schema: &str, table: &str) -> Result<String> {
    if reads_as_other_schema(catalog, schema, table).is_some() {
        return Err(ErrorKind::UndefinedTable {
            name: table.to_string(),
        }
        .into());
    }
    Ok(Catalog::key(schema, table))
}

/// The schema a `main` name `table` would read as a relation of, if any.
fn reads_as_other_schema<'a>(catalog: &Catalog, schema: &str, table: &'a str) -> Option<&'a str> {
    let (prefix, _) = table.split_once('.')?;
    (schema == MAIN && catalog.has_schema(prefix)).then_some(prefix)
}

/// The key for a relation about to be created under `name`: [`resolve`],
/// and refused (42602) when a `main` name would read as a schema's.
pub(crate) fn new_key(catalog: &Catalog, name: &ObjectName) -> Result<String> {
    let parts = parts(name)?;
    let (schema, table) = place(catalog, &parts, &name.to_string())?;
    new_in(catalog, schema, table)
}

/// [`new_key`] of a DataFusion table reference.
pub(crate) fn new_key_ref(catalog: &Catalog, name: &TableReference) -> Result<String> {
    let parts = ref_parts(name);
    let (schema, table) = place(catalog, &parts, &name.to_string())?;
    new_in(catalog, schema, table)
}

/// The key of a new relation `table` of `schema` (which exists), refused
/// (42602) when a `main` name would read as a schema's relation.
pub(crate) fn new_in(catalog: &Catalog, schema: &str, table: &str) -> Result<String> {
    if let Some(prefix) = reads_as_other_schema(catalog, schema, table) {
        return Err(ErrorKind::InvalidName(format!(
            "the name \"{table}\" would read as a relation of schema \"{prefix}\" (choose \
             another name, or create it as {prefix}.\"…\")"
        ))
        .into());
    }
    Ok(Catalog::key(schema, table))
}

/// The key of a new relation named `name` (unqualified, as written after
/// `RENAME TO` or as an index's name) in the schema of the relation `near`;
/// refused as [`new_in`].
pub(crate) fn sibling(catalog: &Catalog, near: &str, name: &str) -> Result<String> {
    new_in(catalog, catalog.split(near).0, name)
}

/// How DataFusion finds the relation with this key.
pub(crate) fn table_ref(catalog: &Catalog, key: &str) -> TableReference {
    match catalog.split(key) {
        (MAIN, name) => TableReference::bare(name),
        (schema, name) => TableReference::partial(schema, name),
    }
}

/// The relation with this key as a written name (quoted parts).
pub(crate) fn object_name(catalog: &Catalog, key: &str) -> ObjectName {
    let quoted = |part: &str| ObjectNamePart::Identifier(Ident::with_quote('"', part));
    match catalog.split(key) {
        (MAIN, name) => ObjectName(vec![quoted(name)]),
        (schema, name) => ObjectName(vec![quoted(schema), quoted(name)]),
    }
}

/// True when `last`, the last part of a written name, may name the
/// relation `key`: it is the key, or the key's name within a schema. For
/// checks that must err on the side of finding a use (no catalog needed).
pub(crate) fn may_name(last: &str, key: &str) -> bool {
    last == key || key.split_once('.').is_some_and(|(_, name)| last == name)
}

/// The relation with this key as SQL text (quoted parts).
pub(crate) fn sql_name(catalog: &Catalog, key: &str) -> String {
    match catalog.split(key) {
        (MAIN, name) => crate::dml::quote(name),
        (schema, name) => format!("{}.{}", crate::dml::quote(schema), crate::dml::quote(name)),
    }
}

/// A resolved name for `DROP … IF EXISTS`: a schema that does not exist
/// holds nothing to drop (`Ok(None)`), as in PostgreSQL.
pub(crate) fn or_absent(resolved: Result<String>, if_exists: bool) -> Result<Option<String>> {
    match resolved {
        Err(e) if if_exists && matches!(e.kind(), ErrorKind::UndefinedSchema { .. }) => Ok(None),
        other => other.map(Some),
    }
}

/// Makes DataFusion's `entidb` catalog hold one schema provider for each
/// schema (tables are registered by the caller). Providers of schemas that
/// still exist are kept, with the external tables created in them; those
/// of dropped schemas are emptied (the session's catalog provider cannot
/// deregister a schema), so nothing is found in them.
pub(crate) fn sync(ctx: &SessionContext, catalog: &Catalog) -> Result<()> {
    let Some(database) = ctx.catalog(DATABASE) else {
        return Ok(());
    };
    for name in database.schema_names() {
        if RESERVED.contains(&name.as_str()) || catalog.has_schema(&name) {
            continue;
        }
        if let Some(provider) = database.schema(&name) {
            for table in provider.table_names() {
                provider.deregister_table(&table)?;
            }
        }
    }
    for name in &catalog.schemas {
        if database.schema(name).is_none() {
            database.register_schema(name, Arc::new(MemorySchemaProvider::new()))?;
        }
    }
    Ok(())
}

/// `CREATE SCHEMA [IF NOT EXISTS] name`.
pub(crate) fn create(session: &mut Session, name: &SchemaName, if_not_exists: bool) -> Result<()> {
    let SchemaName::Simple(written) = name else {
        return Err(ErrorKind::NotSupported(format!(
            "CREATE SCHEMA {name} (AUTHORIZATION is not supported)"
        ))
        .into());
    };
    let schema = match parts(written)?.as_slice() {
        [schema] => schema.clone(),
        [database, schema] if database == DATABASE => schema.clone(),
        _ => {
            return Err(ErrorKind::NotSupported(format!(
                "cross-database references are not implemented: {written}"
            ))
            .into());
        }
    };
    if session.catalog.has_schema(&schema) || RESERVED.contains(&schema.as_str()) {
        if if_not_exists {
            return Ok(());
        }
        return Err(ErrorKind::DuplicateSchema { name: schema }.into());
    }
    if schema.contains('.') || schema.is_empty() {
        return Err(ErrorKind::InvalidName(format!(
            "schema name \"{schema}\" is not supported (a schema's name cannot hold a period)"
        ))
        .into());
    }
    let prefix = format!("{schema}.");
    let mut catalog = session.catalog.as_ref().clone();
    if let Some(taken) = main_names(&catalog).find(|n| n.starts_with(&prefix)) {
        return Err(ErrorKind::InvalidName(format!(
            "cannot create schema \"{schema}\": the relation \"{taken}\" would read as one of \
             its relations (rename it first)"
        ))
        .into());
    }
    catalog.schemas.push(schema);
    session.slot.with(|t| catalog.save(t))?;
    Ok(())
}

/// Every relation name of `main` (tables, views, indexes, sequences).
fn main_names(catalog: &Catalog) -> impl Iterator<Item = &str> {
    catalog
        .tables
        .iter()
        .map(|t| t.name.as_str())
        .chain(catalog.views.iter().map(|v| v.name.as_str()))
        .chain(catalog.indexes.iter().map(|i| i.name.as_str()))
        .chain(catalog.sequences.iter().map(|s| s.name.as_str()))
        .filter(|key| catalog.split(key).0 == MAIN)
}

/// The keys of the tables and views in `schema`.
fn relations_in<'a>(catalog: &'a Catalog, schema: &'a str) -> (Vec<String>, Vec<String>) {
    let inside = |key: &str| catalog.split(key).0 == schema;
    let tables = catalog
        .tables
        .iter()
        .filter(|t| inside(&t.name))
        .map(|t| t.name.clone())
        .collect();
    let views = catalog
        .views
        .iter()
        .filter(|v| inside(&v.name))
        .map(|v| v.name.clone())
        .collect();
    (tables, views)
}

/// `DROP SCHEMA [IF EXISTS] name, … [CASCADE | RESTRICT]`. Without CASCADE
/// a schema that holds anything is refused (2BP01); with it, its views,
/// tables (with their indexes, triggers and sequences, and the foreign keys
/// of other tables that refer to them) and sequences go too.
pub(crate) async fn drop(
    session: &mut Session,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<()> {
    for written in names {
        let schema = match parts(written)?.as_slice() {
            [schema] => schema.clone(),
            [database, schema] if database == DATABASE => schema.clone(),
            _ => {
                return Err(ErrorKind::NotSupported(format!(
                    "cross-database references are not implemented: {written}"
                ))
                .into());
            }
        };
        if RESERVED.contains(&schema.as_str()) {
            return Err(ErrorKind::DependentObjects(format!(
                "cannot drop schema {schema}: it is built in"
            ))
            .into());
        }
        if !session.catalog.has_schema(&schema) {
            if if_exists {
                continue;
            }
            return Err(ErrorKind::UndefinedSchema { name: schema }.into());
        }
        let (tables, views) = relations_in(&session.catalog, &schema);
        let sequences: Vec<String> = session
            .catalog
            .sequences
            .iter()
            .filter(|s| s.owner.is_none() && session.catalog.split(&s.name).0 == schema)
            .map(|s| s.name.clone())
            .collect();
        if let Some(first) = views.iter().chain(&tables).chain(&sequences).next()
            && !cascade
        {
            return Err(ErrorKind::DependentObjects(format!(
                "cannot drop schema {schema} because other objects depend on it: {first} is in \
                 it (use DROP SCHEMA … CASCADE to drop them too)"
            ))
            .into());
        }
        // Each drop starts from the catalog the last one saved.
        for view in &views {
            crate::ddl::drop_view_key(session, view)?;
            session.sync_catalog().await?;
        }
        for table in &tables {
            crate::ddl::drop_table_key(session, table, true)?;
            session.sync_catalog().await?;
        }
        crate::identity::drop_sequence_keys(session, &sequences, false)?;
        session.sync_catalog().await?;
        let mut catalog = session.catalog.as_ref().clone();
        catalog.schemas.retain(|s| *s != schema);
        session.slot.with(|t| catalog.save(t))?;
        session.sync_catalog().await?;
    }
    Ok(())
}
