//! SQLite's bare columns in aggregate queries, for `entidb.dialect =
//! 'sqlite'`.
//!
//! SQLite accepts a column in the select list of a grouped (or aggregating)
//! query that is neither grouped nor inside an aggregate, and takes its value
//! from an arbitrary row of the group:
//!
//! ```sql
//! SELECT a, b FROM t GROUP BY a;      -- b from some row of each group
//! SELECT b, count(*) FROM t;          -- b from some row
//! ```
//!
//! PostgreSQL (and DataFusion) refuse both. In the sqlite dialect each such
//! column becomes `first_value(column)`, which DataFusion computes per group
//! without an order: SQLite's "some row". A column is left alone when it is
//! inside an aggregate or window call or a subquery, when its expression is
//! one of the GROUP BY expressions (or a GROUP BY ordinal points at its
//! item), or when a GROUP BY expression is a column of the same name.
//! Wrapping a grouped column would be harmless (it has one value per group);
//! leaving an ungrouped one is what fails, so the matching errs towards
//! wrapping.

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, ObjectName, Query, Select, SelectItem, SetExpr, Value, Visit, Visitor,
};
use std::ops::ControlFlow;

/// The aggregates of SQLite and DataFusion (a call to one is not entered).
const AGGREGATES: &[&str] = &[
    "avg",
    "count",
    "group_concat",
    "max",
    "min",
    "sum",
    "total",
    "string_agg",
    "array_agg",
    "first_value",
    "last_value",
    "nth_value",
    "median",
    "mean",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var",
    "var_pop",
    "var_samp",
    "variance",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "approx_distinct",
    "approx_median",
    "corr",
    "covar",
    "covar_pop",
    "covar_samp",
];

/// Wraps the bare columns of every SELECT in `body` (set operations
/// included; subqueries are queries of their own and visited apart).
pub(crate) fn rewrite(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => rewrite_select(select),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite(left);
            rewrite(right);
        }
        _ => {}
    }
}

fn rewrite_select(select: &mut Select) {
    let GroupByExpr::Expressions(groups, _) = &select.group_by else {
        return;
    };
    let groups = groups.clone();
    let aggregating = !groups.is_empty()
        || select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                has_aggregate(e)
            }
            _ => false,
        });
    if !aggregating {
        return;
    }
    for (position, item) in select.projection.iter_mut().enumerate() {
        if groups.iter().any(|g| is_ordinal(g, position + 1)) {
            continue;
        }
        match item {
            // A bare column keeps its name as the result's column name.
            SelectItem::UnnamedExpr(e) if column_name(e).is_some() && !is_grouped(e, &groups) => {
                let alias = match e {
                    Expr::CompoundIdentifier(parts) => parts.last().cloned(),
                    Expr::Identifier(ident) => Some(ident.clone()),
                    _ => None,
                };
                let column = std::mem::replace(e, Expr::value(Value::Null));
                *item = match alias {
                    Some(alias) => SelectItem::ExprWithAlias {
                        expr: first_value(column),
                        alias,
                    },
                    None => SelectItem::UnnamedExpr(first_value(column)),
                };
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                wrap_bare(e, &groups);
            }
            _ => {}
        }
    }
}

fn is_ordinal(group: &Expr, position: usize) -> bool {
    matches!(group, Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n.parse() == Ok(position)))
}

fn aggregate_call(f: &Function) -> bool {
    f.over.is_some()
        || f.name.0.len() == 1
            && AGGREGATES.contains(&f.name.to_string().to_ascii_lowercase().as_str())
}

/// Whether `expr` calls an aggregate outside its subqueries (an aggregate
/// in a subquery makes only the subquery aggregating).
fn has_aggregate(expr: &Expr) -> bool {
    struct Finder {
        depth: usize,
        found: bool,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let (Expr::Function(f), 0) = (expr, self.depth)
                && aggregate_call(f)
            {
                self.found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder {
        depth: 0,
        found: false,
    };
    let _ = expr.visit(&mut finder);
    finder.found
}

/// The column's name, when `expr` is a column reference.
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    }
}

fn is_grouped(expr: &Expr, groups: &[Expr]) -> bool {
    let text = expr.to_string();
    let name = column_name(expr);
    groups
        .iter()
        .any(|g| g.to_string() == text || (name.is_some() && column_name(unnest(g)) == name))
}

fn unnest(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => unnest(inner),
        other => other,
    }
}

/// Replaces each bare column under `expr` by `first_value(column)`.
fn wrap_bare(expr: &mut Expr, groups: &[Expr]) {
    if is_grouped(unnest(expr), groups) {
        return;
    }
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            let column = std::mem::replace(expr, Expr::value(Value::Null));
            *expr = first_value(column);
        }
        Expr::Function(f) if aggregate_call(f) => {}
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {}
        Expr::Function(f) => {
            if let FunctionArguments::List(list) = &mut f.args {
                for arg in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    } = arg
                    {
                        wrap_bare(e, groups);
                    }
                }
            }
        }
        Expr::BinaryOp { left, right, .. } => {
            wrap_bare(left, groups);
            wrap_bare(right, groups);
        }
        Expr::UnaryOp { expr: e, .. }
        | Expr::Nested(e)
        | Expr::Cast { expr: e, .. }
        | Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsNotTrue(e)
        | Expr::IsNotFalse(e) => wrap_bare(e, groups),
        Expr::Between {
            expr: e, low, high, ..
        } => {
            wrap_bare(e, groups);
            wrap_bare(low, groups);
            wrap_bare(high, groups);
        }
        Expr::InList { expr: e, list, .. } => {
            wrap_bare(e, groups);
            for item in list {
                wrap_bare(item, groups);
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                wrap_bare(o, groups);
            }
            for when in conditions {
                wrap_bare(&mut when.condition, groups);
                wrap_bare(&mut when.result, groups);
            }
            if let Some(e) = else_result {
                wrap_bare(e, groups);
            }
        }
        _ => {}
    }
}

fn first_value(column: Expr) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("first_value")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(column))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}
