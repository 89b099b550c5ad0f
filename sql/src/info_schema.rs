//! `information_schema.table_constraints` and `key_column_usage`, which
//! DataFusion's information schema does not have.
//!
//! DataFusion answers every `information_schema.*` name itself (its session
//! state intercepts the schema before any catalog is asked), so EntiDB keeps
//! the two tables in a schema of its own, [`SCHEMA`], rebuilt from the
//! catalog whenever the session's catalog changes, and the statement
//! rewrite (`dialect.rs`) points `information_schema.table_constraints` and
//! `information_schema.key_column_usage` there.
//!
//! Rows follow PostgreSQL's: one per PRIMARY KEY (named `<table>_pkey`),
//! UNIQUE constraint (`<table>_<columns>_key`) and CHECK constraint (its
//! name), with `key_column_usage` listing the columns of the key and unique
//! constraints by position. A `CREATE UNIQUE INDEX` is an index, not a
//! constraint, and is not listed (as in PostgreSQL). PostgreSQL also lists
//! each NOT NULL as a CHECK with a generated name; EntiDB does not (NOT NULL
//! is in `information_schema.columns.is_nullable` and `DESCRIBE`).

use crate::error::Result;
use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use entidb_catalog::{Catalog, TableMeta};
use std::sync::Arc;

/// The schema holding the two tables.
pub(crate) const SCHEMA: &str = "entidb_information_schema";

/// The tables kept here (the names `information_schema.X` is rewritten for).
pub(crate) const TABLES: &[&str] = &["table_constraints", "key_column_usage"];

const CATALOG: &str = "entidb";
const USER_SCHEMA: &str = "main";

/// Creates [`SCHEMA`] in the session's catalog (once, at session start).
pub(crate) fn install(ctx: &SessionContext) -> Result<()> {
    if let Some(catalog) = ctx.catalog(CATALOG) {
        catalog.register_schema(SCHEMA, Arc::new(MemorySchemaProvider::new()))?;
    }
    Ok(())
}

/// Replaces the two tables with the constraints of `catalog`.
pub(crate) fn refresh(ctx: &SessionContext, catalog: &Catalog) -> Result<()> {
    let constraints = constraints(catalog);
    let tables = [
        ("table_constraints", table_constraints(&constraints)?),
        ("key_column_usage", key_column_usage(&constraints)?),
    ];
    for (name, batch) in tables {
        let reference = TableReference::partial(SCHEMA, name);
        ctx.deregister_table(reference.clone())?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        ctx.register_table(reference, Arc::new(table))?;
    }
    Ok(())
}

/// Points `[catalog.]information_schema.<one of TABLES>` at [`SCHEMA`].
pub(crate) fn redirect(name: &mut ObjectName) {
    let parts: Vec<Option<String>> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(crate::ddl::normalize))
        .collect();
    let (schema, table) = match parts.as_slice() {
        [Some(schema), Some(table)] | [_, Some(schema), Some(table)] => (schema, table),
        _ => return,
    };
    if schema == "information_schema" && TABLES.contains(&table.as_str()) {
        *name = ObjectName::from(vec![Ident::new(SCHEMA), Ident::new(table.as_str())]);
    }
}

/// One constraint of one table.
struct Constraint {
    name: String,
    table: String,
    kind: &'static str,
    columns: Vec<String>,
}

fn constraints(catalog: &Catalog) -> Vec<Constraint> {
    let mut out = Vec::new();
    for table in &catalog.tables {
        let names = |cols: &[usize]| -> Vec<String> {
            cols.iter()
                .filter_map(|i| table.columns.get(*i))
                .map(|c| c.name.clone())
                .collect()
        };
        if !table.primary_key.is_empty() {
            out.push(Constraint {
                name: format!("{}_pkey", table.name),
                table: table.name.clone(),
                kind: "PRIMARY KEY",
                columns: names(&table.primary_key),
            });
        }
        for unique in &table.unique {
            let columns = names(unique);
            out.push(Constraint {
                name: unique_name(table, &columns),
                table: table.name.clone(),
                kind: "UNIQUE",
                columns,
            });
        }
        for check in &table.checks {
            out.push(Constraint {
                name: check.name.clone(),
                table: table.name.clone(),
                kind: "CHECK",
                columns: Vec::new(),
            });
        }
    }
    out
}

/// PostgreSQL's name for a UNIQUE constraint: `<table>_<col>_<col>_key`.
fn unique_name(table: &TableMeta, columns: &[String]) -> String {
    format!("{}_{}_key", table.name, columns.join("_"))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn table_constraints(constraints: &[Constraint]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        text("constraint_catalog"),
        text("constraint_schema"),
        text("constraint_name"),
        text("table_catalog"),
        text("table_schema"),
        text("table_name"),
        text("constraint_type"),
        text("is_deferrable"),
        text("initially_deferred"),
        text("enforced"),
    ]));
    let n = constraints.len();
    let constant = |v: &'static str| strings(std::iter::repeat_n(v, n));
    let columns = vec![
        constant(CATALOG),
        constant(USER_SCHEMA),
        strings(constraints.iter().map(|c| c.name.as_str())),
        constant(CATALOG),
        constant(USER_SCHEMA),
        strings(constraints.iter().map(|c| c.table.as_str())),
        strings(constraints.iter().map(|c| c.kind)),
        constant("NO"),
        constant("NO"),
        constant("YES"),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn key_column_usage(constraints: &[Constraint]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        text("constraint_catalog"),
        text("constraint_schema"),
        text("constraint_name"),
        text("table_catalog"),
        text("table_schema"),
        text("table_name"),
        text("column_name"),
        Field::new("ordinal_position", DataType::UInt32, false),
        Field::new("position_in_unique_constraint", DataType::UInt32, true),
    ]));
    let rows: Vec<(&Constraint, &str, u32)> = constraints
        .iter()
        .flat_map(|c| {
            c.columns
                .iter()
                .zip(1u32..)
                .map(move |(column, position)| (c, column.as_str(), position))
        })
        .collect();
    let n = rows.len();
    let constant = |v: &'static str| strings(std::iter::repeat_n(v, n));
    let columns: Vec<ArrayRef> = vec![
        constant(CATALOG),
        constant(USER_SCHEMA),
        strings(rows.iter().map(|(c, _, _)| c.name.as_str())),
        constant(CATALOG),
        constant(USER_SCHEMA),
        strings(rows.iter().map(|(c, _, _)| c.table.as_str())),
        strings(rows.iter().map(|(_, column, _)| *column)),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|(_, _, p)| *p),
        )),
        Arc::new(UInt32Array::from(vec![None; n])),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
