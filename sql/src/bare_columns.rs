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
//! without an order: SQLite's "some row". A query aggregates when it has a
//! GROUP BY or calls an aggregate outside its subqueries (window functions
//! do not count). A column is left alone when it is inside an aggregate or
//! window call or a subquery, when its expression is one of the GROUP BY
//! expressions (or a GROUP BY ordinal or output alias points at its item),
//! when a GROUP BY expression is a column of the same name, or when its
//! qualifier names no relation of the SELECT (an outer reference of a
//! subquery). Queries with ROLLUP, CUBE or GROUPING SETS are left as
//! written.
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
    // What a DISTINCT group_concat becomes (`group_concat.rs`), already
    // rewritten when this runs.
    crate::group_concat::NAME,
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
    // ROLLUP, CUBE and GROUPING SETS: their columns are grouped (and NULL
    // in the subtotal rows); such queries are left as written.
    if groups
        .iter()
        .any(|g| matches!(g, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_)))
    {
        return;
    }
    let mut groups = groups.clone();
    // A GROUP BY naming an output alias groups that item's expression.
    for item in &select.projection {
        if let SelectItem::ExprWithAlias { expr, alias } = item
            && groups.iter().any(
                |g| matches!(g, Expr::Identifier(i) if i.value.eq_ignore_ascii_case(&alias.value)),
            )
        {
            groups.push(expr.clone());
        }
    }
    // Columns qualified by a relation this SELECT does not read are outer
    // references of a subquery: the outer query's values, left alone.
    let relations = relation_names(select);
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
            SelectItem::UnnamedExpr(e)
                if column_name(e).is_some()
                    && !is_grouped(e, &groups)
                    && !is_outer(e, &relations) =>
            {
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
                wrap_bare(
                    e,
                    &Scope {
                        groups: &groups,
                        relations: &relations,
                    },
                );
            }
            _ => {}
        }
    }
}

fn is_ordinal(group: &Expr, position: usize) -> bool {
    matches!(group, Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n.parse() == Ok(position)))
}

/// A call to an aggregate (not a window function).
fn aggregate_call(f: &Function) -> bool {
    f.over.is_none()
        && f.name.0.len() == 1
        && AGGREGATES.contains(&f.name.to_string().to_ascii_lowercase().as_str())
}

/// A call whose arguments are not the row's bare columns: an aggregate or
/// a window function.
fn opaque_call(f: &Function) -> bool {
    f.over.is_some() || aggregate_call(f)
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

/// What a SELECT groups by and which relations it reads.
struct Scope<'a> {
    groups: &'a [Expr],
    relations: &'a [String],
}

/// The names (aliases, else table names) of the relations in FROM.
fn relation_names(select: &Select) -> Vec<String> {
    use datafusion::sql::sqlparser::ast::TableFactor;
    let mut names = Vec::new();
    for table in &select.from {
        let factors =
            std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation));
        for factor in factors {
            match factor {
                TableFactor::Table { alias: Some(a), .. }
                | TableFactor::Derived { alias: Some(a), .. } => {
                    names.push(a.name.value.to_ascii_lowercase());
                }
                TableFactor::Table {
                    name, alias: None, ..
                } => {
                    if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                        names.push(last.value.to_ascii_lowercase());
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// A qualified column whose qualifier names no relation of this SELECT.
fn is_outer(expr: &Expr, relations: &[String]) -> bool {
    match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => parts
            .get(parts.len() - 2)
            .is_some_and(|q| !relations.contains(&q.value.to_ascii_lowercase())),
        _ => false,
    }
}

/// Replaces each bare column under `expr` by `first_value(column)`.
fn wrap_bare(expr: &mut Expr, scope: &Scope<'_>) {
    let groups = scope.groups;
    if is_grouped(unnest(expr), groups) || is_outer(expr, scope.relations) {
        return;
    }
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            let column = std::mem::replace(expr, Expr::value(Value::Null));
            *expr = first_value(column);
        }
        Expr::Function(f) if opaque_call(f) => {}
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
                        wrap_bare(e, scope);
                    }
                }
            }
        }
        Expr::BinaryOp { left, right, .. } => {
            wrap_bare(left, scope);
            wrap_bare(right, scope);
        }
        Expr::UnaryOp { expr: e, .. }
        | Expr::Nested(e)
        | Expr::Cast { expr: e, .. }
        | Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsNotTrue(e)
        | Expr::IsNotFalse(e) => wrap_bare(e, scope),
        Expr::Between {
            expr: e, low, high, ..
        } => {
            wrap_bare(e, scope);
            wrap_bare(low, scope);
            wrap_bare(high, scope);
        }
        Expr::InList { expr: e, list, .. } => {
            wrap_bare(e, scope);
            for item in list {
                wrap_bare(item, scope);
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                wrap_bare(o, scope);
            }
            for when in conditions {
                wrap_bare(&mut when.condition, scope);
                wrap_bare(&mut when.result, scope);
            }
            if let Some(e) = else_result {
                wrap_bare(e, scope);
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
