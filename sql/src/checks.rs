//! CHECK constraints: declared in CREATE TABLE, kept in the catalog as SQL
//! text ([`entidb_catalog::CheckMeta`]), planned once per table
//! registration, verified on every row written.
//!
//! DECLARING. As in PostgreSQL, a `CHECK (expr)` (of a column or of the
//! table) is named `<table>_<column>_check` when it reads exactly one
//! column, `<table>_check` otherwise, unless `CONSTRAINT name` gives one; a
//! taken name gets a number (`t_a_check1`). The
//! expression must plan over the table's columns as a boolean; subqueries
//! are refused (0A000), as in PostgreSQL.
//!
//! VERIFYING. Every path that turns values into rows of a table — INSERT
//! (and COPY, through the same sink), UPDATE, upsert, the prepared insert
//! fast path and the Arrow append API — builds the row batch with
//! [`crate::provider::EntiTable::conform_columns`], which evaluates each
//! constraint on the whole batch. A row fails when an expression is
//! *false*; NULL passes (SQL's rule). The first failure is 23514 naming the
//! constraint, and the statement writes nothing.
//!
//! ALTER TABLE keeps the constraints: DROP COLUMN drops those that read the
//! column (as PostgreSQL does), RENAME COLUMN rewrites their text.

use crate::checked::CheckedArithmetic;
use crate::error::{ErrorKind, Result};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::DFSchema;
use datafusion::optimizer::simplify_expressions::{ExprSimplifier, SimplifyContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, Expr as SqlExpr, Ident, TableConstraint, Visit, Visitor,
};
use entidb_catalog::CheckMeta;
use std::ops::ControlFlow;
use std::sync::Arc;

/// A table's CHECK constraints, planned for its row batches.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    table: String,
    planned: Vec<(String, Arc<dyn PhysicalExpr>)>,
}

impl Checks {
    /// Plans `checks` over rows of `schema` (the table's).
    ///
    /// # Errors
    /// A planning error of an expression (42000, 42703), or 42804 when one
    /// is not boolean.
    pub fn plan(
        ctx: &SessionContext,
        table: &str,
        schema: &Schema,
        checks: &[CheckMeta],
    ) -> Result<Self> {
        let mut planned = Vec::with_capacity(checks.len());
        if checks.is_empty() {
            return Ok(Self {
                table: table.to_string(),
                planned,
            });
        }
        let df_schema = DFSchema::try_from(schema.clone())?;
        let state = ctx.state();
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::new(df_schema.clone()))
                .with_config_options(Arc::clone(state.config_options()))
                .build(),
        );
        let checked = CheckedArithmetic::default();
        for check in checks {
            let expr = ctx.parse_sql_expr(&check.sql, &df_schema)?;
            // Coerced, then with checked integer arithmetic (`checked.rs`),
            // as the statements' own expressions are.
            let expr = simplifier.coerce(expr, &df_schema)?;
            let expr = checked.rewrite_expr(expr, &df_schema)?.data;
            let physical = state.create_physical_expr(expr, &df_schema)?;
            let data_type = physical.data_type(schema)?;
            if !matches!(data_type, DataType::Boolean | DataType::Null) {
                return Err(ErrorKind::DatatypeMismatch(format!(
                    "argument of CHECK must be type boolean, not type {data_type}"
                ))
                .into());
            }
            planned.push((check.name.clone(), physical));
        }
        Ok(Self {
            table: table.to_string(),
            planned,
        })
    }

    /// Fails with 23514 when a row of `batch` makes a constraint false.
    ///
    /// # Errors
    /// `CheckViolation`, or the evaluation's own error (division by zero…).
    pub fn verify(&self, batch: &RecordBatch) -> Result<()> {
        for (name, expr) in &self.planned {
            let value = expr.evaluate(batch)?.into_array(batch.num_rows())?;
            let Some(passed) = value.as_boolean_opt() else {
                continue; // an all-NULL result
            };
            let failed = (0..passed.len()).any(|i| passed.is_valid(i) && !passed.value(i));
            if failed {
                return Err(ErrorKind::CheckViolation {
                    table: self.table.clone(),
                    constraint: name.clone(),
                }
                .into());
            }
        }
        Ok(())
    }
}

/// The CHECK constraints of `create` for table `table`, named.
///
/// # Errors
/// 0A000 for a subquery in a constraint.
pub fn declared(create: &CreateTable, table: &str) -> Result<Vec<CheckMeta>> {
    let mut out: Vec<CheckMeta> = Vec::new();
    let mut add = |name: Option<&Ident>, expr: &SqlExpr| -> Result<()> {
        let check = named(&out, table, name, expr)?;
        out.push(check);
        Ok(())
    };
    for column in &create.columns {
        for option in &column.options {
            if let ColumnOption::Check(check) = &option.option {
                add(option.name.as_ref().or(check.name.as_ref()), &check.expr)?;
            }
        }
    }
    for constraint in &create.constraints {
        if let TableConstraint::Check(check) = constraint {
            add(check.name.as_ref(), &check.expr)?;
        }
    }
    Ok(out)
}

/// The constraint `CHECK (expr)` of `table`, called `name` or named as
/// the module docs say, beside the constraints `existing`.
///
/// # Errors
/// 0A000 for a subquery, 42710 for a name `existing` has.
pub fn named(
    existing: &[CheckMeta],
    table: &str,
    name: Option<&Ident>,
    expr: &SqlExpr,
) -> Result<CheckMeta> {
    if has_subquery(expr) {
        return Err(
            ErrorKind::NotSupported("cannot use subquery in check constraint".into()).into(),
        );
    }
    let name = match name {
        Some(n) => {
            let n = crate::ddl::normalize(n);
            if existing.iter().any(|c| c.name == n) {
                return Err(ErrorKind::DuplicateObject(format!(
                    "constraint {n} for relation {table} already exists"
                ))
                .into());
            }
            n
        }
        None => match referenced_columns(expr).as_slice() {
            [column] => free_name(&format!("{table}_{column}_check"), |n| {
                existing.iter().any(|c| c.name == n)
            }),
            _ => free_name(&format!("{table}_check"), |n| {
                existing.iter().any(|c| c.name == n)
            }),
        },
    };
    Ok(CheckMeta {
        name,
        sql: expr.to_string(),
    })
}

/// `base`, or `base1`, `base2`… when taken (PostgreSQL's numbering of
/// generated constraint names).
pub(crate) fn free_name(base: &str, used: impl Fn(&str) -> bool) -> String {
    if !used(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !used(n))
        .unwrap_or_else(|| base.to_string())
}

fn has_subquery(expr: &SqlExpr) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(
            &mut self,
            _query: &datafusion::sql::sqlparser::ast::Query,
        ) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }
    expr.visit(&mut Finder).is_break()
}

/// Whether the expression of `check` reads `column` (an unreadable one
/// is taken to read every column).
pub fn reads_column(check: &CheckMeta, column: &str) -> bool {
    parse(&check.sql).is_none_or(|e| referenced_columns(&e).iter().any(|c| c == column))
}

/// The distinct columns `expr` names (bare or qualified), in order.
fn referenced_columns(expr: &SqlExpr) -> Vec<String> {
    struct Columns(Vec<String>);
    impl Visitor for Columns {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &SqlExpr) -> ControlFlow<()> {
            let ident = match e {
                SqlExpr::Identifier(i) => Some(i),
                SqlExpr::CompoundIdentifier(parts) => parts.last(),
                _ => None,
            };
            if let Some(name) = ident.map(crate::ddl::normalize)
                && !self.0.contains(&name)
            {
                self.0.push(name);
            }
            ControlFlow::Continue(())
        }
    }
    let mut columns = Columns(Vec::new());
    let _ = expr.visit(&mut columns);
    columns.0
}

/// Parses a stored constraint expression.
pub fn parse(sql: &str) -> Option<SqlExpr> {
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}
