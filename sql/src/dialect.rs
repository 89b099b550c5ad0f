//! Rewrites of the parsed statement before planning, and the SQL dialect
//! setting `SET entidb.dialect = 'postgresql' | 'sqlite'`.
//!
//! For every session (PostgreSQL semantics stay the default):
//!
//! - unary `+` is the identity on any type (`SELECT +'abc'`); DataFusion
//!   accepts it only on numbers, intervals and timestamps. PostgreSQL
//!   refuses it on text; accepting more is harmless and SQLite-written
//!   SQL uses it freely.
//!
//! With `entidb.dialect = 'sqlite'` (what `entidb-slt --sqlite` sets for
//! SQLite's own test corpus) SQLite's semantics where they contradict
//! PostgreSQL's:
//!
//! - division by zero (`/`, `%`) yields NULL instead of an error: the
//!   divisor is wrapped in `NULLIF(divisor, 0)`;
//! - `REAL` and `FLOAT` are 64-bit floats (SQLite has no 32-bit float;
//!   DataFusion maps both to Float32) in `CREATE TABLE` and `CAST`.
//!
//! The rewrites are AST-to-AST (sqlparser's `VisitorMut`), so everything
//! downstream — planning, views, EXPLAIN — sees ordinary SQL.

use crate::error::{ErrorKind, Result};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, ExactNumberInfo, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Statement, UnaryOperator, Value,
    VisitMut, VisitorMut,
};
use std::ops::ControlFlow;

/// Whose semantics a session follows where PostgreSQL and SQLite differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// PostgreSQL's (the default).
    #[default]
    Postgres,
    /// SQLite's, for running SQLite's tests and SQLite-written SQL.
    Sqlite,
}

impl Dialect {
    /// Parses the value of `SET entidb.dialect` (quoted or not).
    ///
    /// # Errors
    /// `InvalidArgument` (22023) for an unknown dialect.
    pub fn parse(value: &str) -> Result<Self> {
        match value
            .trim_matches(['\'', '"'])
            .to_ascii_lowercase()
            .as_str()
        {
            "postgresql" | "postgres" | "default" => Ok(Dialect::Postgres),
            "sqlite" => Ok(Dialect::Sqlite),
            other => Err(ErrorKind::InvalidArgument(format!(
                "unknown dialect {other}: use 'postgresql' or 'sqlite'"
            ))
            .into()),
        }
    }
}

/// Applies the rewrites for `dialect` to `stmt` in place.
pub(crate) fn rewrite(stmt: &mut DFStatement, dialect: Dialect) {
    let mut rewriter = Rewriter { dialect };
    let _ = match stmt {
        DFStatement::Statement(s) => s.as_mut().visit(&mut rewriter),
        DFStatement::Explain(e) => {
            rewrite(&mut e.statement, dialect);
            ControlFlow::Continue(())
        }
        _ => ControlFlow::Continue(()),
    };
}

struct Rewriter {
    dialect: Dialect,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::UnaryOp {
                op: UnaryOperator::Plus,
                expr: inner,
            } => {
                let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                *expr = Expr::Nested(Box::new(inner));
            }
            Expr::BinaryOp {
                op: BinaryOperator::Divide | BinaryOperator::Modulo,
                right,
                ..
            } if self.dialect == Dialect::Sqlite => {
                let divisor = std::mem::replace(right.as_mut(), Expr::value(Value::Null));
                **right = nullif_zero(divisor);
            }
            Expr::Cast { data_type, .. } if self.dialect == Dialect::Sqlite => {
                widen_float(data_type);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, stmt: &mut Statement) -> ControlFlow<()> {
        if let (Statement::CreateTable(create), Dialect::Sqlite) = (stmt, self.dialect) {
            for column in &mut create.columns {
                widen_float(&mut column.data_type);
            }
        }
        ControlFlow::Continue(())
    }
}

/// SQLite's REAL/FLOAT: a 64-bit float.
fn widen_float(data_type: &mut DataType) {
    if matches!(
        data_type,
        DataType::Real | DataType::Float(_) | DataType::Float4
    ) {
        *data_type = DataType::Double(ExactNumberInfo::None);
    }
}

/// `NULLIF(divisor, 0)`.
fn nullif_zero(divisor: Expr) -> Expr {
    let arg = |e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("nullif")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                arg(divisor),
                arg(Expr::value(Value::Number("0".into(), false))),
            ],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}
