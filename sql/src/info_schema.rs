//! `information_schema.table_constraints` and `key_column_usage`, which
//! DataFusion's information schema does not have.
//!
//! DataFusion answers every `information_schema.*` name itself (its session
//! state intercepts the schema before any catalog is asked). So the two
//! tables are table functions of EntiDB's (`entidb_table_constraints()`,
//! `entidb_key_column_usage()`), and the statement rewrite (`dialect.rs`)
//! turns `FROM information_schema.table_constraints [AS x]` into
//! `FROM entidb_table_constraints() AS x` (the alias defaulting to the
//! table's name). Being functions, they appear in no table listing and
//! cannot be written to. Their provider reads the session's catalog when
//! it is scanned, not when it is planned, so a view over them is never
//! stale; [`refresh`] hands the functions each new catalog.
//!
//! Rows follow PostgreSQL's: one per PRIMARY KEY (named `<table>_pkey`),
//! UNIQUE constraint (`<table>_<columns>_key`), CHECK and FOREIGN KEY
//! constraint (their names), with `key_column_usage` listing the columns of
//! the key, unique and foreign key constraints by position (a foreign key
//! column's `position_in_unique_constraint` is its referenced column's
//! position in the parent's key). A `CREATE UNIQUE INDEX` is an index, not a
//! constraint, and is not listed (as in PostgreSQL). PostgreSQL also lists
//! each NOT NULL as a CHECK with a generated name; EntiDB does not (NOT NULL
//! is in `information_schema.columns.is_nullable` and `DESCRIBE`).

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session as CatalogSession, TableFunctionArgs, TableFunctionImpl};
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr as DfExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, TableAlias, TableFactor, TableFunctionArgs as SqlTableFunctionArgs,
};
use entidb_catalog::Catalog;
use std::sync::{Arc, Mutex, PoisonError};

const CATALOG: &str = "entidb";

/// The catalog the functions read, shared with the session.
pub(crate) type Current = Arc<Mutex<Arc<Catalog>>>;

/// The two tables.
#[derive(Debug, Clone, Copy)]
enum Kind {
    TableConstraints,
    KeyColumnUsage,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::TableConstraints, Kind::KeyColumnUsage];

    /// The name under `information_schema`.
    fn table(self) -> &'static str {
        match self {
            Kind::TableConstraints => "table_constraints",
            Kind::KeyColumnUsage => "key_column_usage",
        }
    }

    fn function(self) -> String {
        format!("entidb_{}", self.table())
    }
}

/// Registers the functions; returns the cell [`refresh`] updates.
pub(crate) fn install(ctx: &SessionContext) -> Current {
    let current: Current = Arc::new(Mutex::new(Arc::new(Catalog::default())));
    for kind in Kind::ALL {
        ctx.register_udtf(
            &kind.function(),
            Arc::new(ConstraintFunction {
                kind,
                current: current.clone(),
            }),
        );
    }
    current
}

/// Hands the functions the session's new catalog.
pub(crate) fn refresh(current: &Current, catalog: &Arc<Catalog>) {
    *current.lock().unwrap_or_else(PoisonError::into_inner) = catalog.clone();
}

/// `FROM [catalog.]information_schema.<table>`, for one of the two tables:
/// the function call that stands for it.
pub(crate) fn redirect(factor: &mut TableFactor) {
    let TableFactor::Table {
        name, args, alias, ..
    } = factor
    else {
        return;
    };
    if args.is_some() {
        return;
    }
    let parts: Vec<Option<String>> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(crate::ddl::normalize))
        .collect();
    let (schema, table) = match parts.as_slice() {
        [Some(schema), Some(table)] | [_, Some(schema), Some(table)] => (schema, table),
        _ => return,
    };
    let Some(kind) = Kind::ALL.into_iter().find(|k| k.table() == table) else {
        return;
    };
    if schema != "information_schema" {
        return;
    }
    *name = ObjectName::from(vec![Ident::new(kind.function())]);
    *args = Some(SqlTableFunctionArgs {
        args: vec![],
        settings: None,
    });
    if alias.is_none() {
        *alias = Some(TableAlias {
            explicit: true,
            name: Ident::new(kind.table()),
            columns: vec![],
            at: None,
        });
    }
}

#[derive(Debug)]
struct ConstraintFunction {
    kind: Kind,
    current: Current,
}

impl TableFunctionImpl for ConstraintFunction {
    fn call_with_args(&self, _args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        Ok(Arc::new(LiveTable {
            kind: self.kind,
            current: self.current.clone(),
            schema: schema_of(self.kind),
        }))
    }
}

/// One of the tables, built from the catalog at scan time.
#[derive(Debug)]
struct LiveTable {
    kind: Kind,
    current: Current,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[DfExpr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let catalog = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let constraints = constraints(&catalog);
        let batch = match self.kind {
            Kind::TableConstraints => table_constraints(&constraints),
            Kind::KeyColumnUsage => key_column_usage(&constraints),
        }?;
        let table = MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// One constraint of one table.
struct Constraint {
    name: String,
    /// The table's schema and its name within it.
    schema: String,
    table: String,
    kind: &'static str,
    columns: Vec<String>,
    /// For a FOREIGN KEY: each column's position in the referenced key.
    referenced: Option<Vec<u32>>,
}

fn constraints(catalog: &Catalog) -> Vec<Constraint> {
    let mut out = Vec::new();
    for table in &catalog.tables {
        let (schema, bare) = catalog.split(&table.name);
        let (schema, bare) = (schema.to_string(), bare.to_string());
        let names = |cols: &[usize]| -> Vec<String> {
            cols.iter()
                .filter_map(|i| table.columns.get(*i))
                .map(|c| c.name.clone())
                .collect()
        };
        if !table.primary_key.is_empty() {
            out.push(Constraint {
                name: format!("{bare}_pkey"),
                schema: schema.clone(),
                table: bare.clone(),
                kind: "PRIMARY KEY",
                columns: names(&table.primary_key),
                referenced: None,
            });
        }
        for unique in &table.unique {
            let columns = names(unique);
            out.push(Constraint {
                name: unique_name(&bare, &columns),
                schema: schema.clone(),
                table: bare.clone(),
                kind: "UNIQUE",
                columns,
                referenced: None,
            });
        }
        for check in &table.checks {
            out.push(Constraint {
                name: check.name.clone(),
                schema: schema.clone(),
                table: bare.clone(),
                kind: "CHECK",
                columns: Vec::new(),
                referenced: None,
            });
        }
        for fk in &table.foreign_keys {
            let key: Vec<String> = catalog
                .table(&fk.parent)
                .map(|p| {
                    p.primary_key
                        .iter()
                        .filter_map(|i| p.columns.get(*i).map(|c| c.name.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let referenced = fk
                .parent_columns
                .iter()
                .map(|c| key.iter().position(|k| k == c).map_or(0, |p| p as u32 + 1))
                .collect();
            out.push(Constraint {
                name: fk.name.clone(),
                schema: schema.clone(),
                table: bare.clone(),
                kind: "FOREIGN KEY",
                columns: fk.columns.clone(),
                referenced: Some(referenced),
            });
        }
    }
    out
}

/// PostgreSQL's name for a UNIQUE constraint: `<table>_<col>_<col>_key`.
fn unique_name(table: &str, columns: &[String]) -> String {
    format!("{table}_{}_key", columns.join("_"))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn schema_of(kind: Kind) -> SchemaRef {
    let fields = match kind {
        Kind::TableConstraints => vec![
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
        ],
        Kind::KeyColumnUsage => vec![
            text("constraint_catalog"),
            text("constraint_schema"),
            text("constraint_name"),
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("column_name"),
            Field::new("ordinal_position", DataType::UInt32, false),
            Field::new("position_in_unique_constraint", DataType::UInt32, true),
        ],
    };
    Arc::new(Schema::new(fields))
}

fn table_constraints(constraints: &[Constraint]) -> DfResult<RecordBatch> {
    let schema = schema_of(Kind::TableConstraints);
    let n = constraints.len();
    let constant = |v: &'static str| strings(std::iter::repeat_n(v, n));
    let columns = vec![
        constant(CATALOG),
        strings(constraints.iter().map(|c| c.schema.as_str())),
        strings(constraints.iter().map(|c| c.name.as_str())),
        constant(CATALOG),
        strings(constraints.iter().map(|c| c.schema.as_str())),
        strings(constraints.iter().map(|c| c.table.as_str())),
        strings(constraints.iter().map(|c| c.kind)),
        constant("NO"),
        constant("NO"),
        constant("YES"),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn key_column_usage(constraints: &[Constraint]) -> DfResult<RecordBatch> {
    let schema = schema_of(Kind::KeyColumnUsage);
    let rows: Vec<(&Constraint, &str, u32, Option<u32>)> = constraints
        .iter()
        .flat_map(|c| {
            c.columns.iter().zip(1u32..).map(move |(column, position)| {
                let in_unique = c
                    .referenced
                    .as_ref()
                    .and_then(|r| r.get((position as usize).checked_sub(1)?).copied());
                (c, column.as_str(), position, in_unique)
            })
        })
        .collect();
    let n = rows.len();
    let constant = |v: &'static str| strings(std::iter::repeat_n(v, n));
    let columns: Vec<ArrayRef> = vec![
        constant(CATALOG),
        strings(rows.iter().map(|(c, _, _, _)| c.schema.as_str())),
        strings(rows.iter().map(|(c, _, _, _)| c.name.as_str())),
        constant(CATALOG),
        strings(rows.iter().map(|(c, _, _, _)| c.schema.as_str())),
        strings(rows.iter().map(|(c, _, _, _)| c.table.as_str())),
        strings(rows.iter().map(|(_, column, _, _)| *column)),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|(_, _, p, _)| *p),
        )),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|(_, _, _, u)| *u))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
