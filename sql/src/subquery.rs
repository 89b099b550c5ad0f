//! Subqueries DataFusion cannot decorrelate: an optimizer rule of our own.
//!
//! DataFusion 55 turns a correlated scalar subquery into a join only when
//! every correlation is an equality (`ScalarSubqueryToJoin` groups the
//! subquery by the correlated columns), and handles `IN (subquery)` and
//! `EXISTS` only inside `WHERE`. What is left — for example
//!
//! ```sql
//! SELECT (SELECT count(*) FROM t1 x WHERE x.b < t1.b) FROM t1;  -- non-equi
//! SELECT 1 IN (SELECT b FROM t1);                                -- IN in a projection
//! SELECT EXISTS (SELECT 1 FROM t1 x WHERE x.b < t1.b) FROM t1;   -- EXISTS in a projection
//! ```
//!
//! — used to fail at physical planning ("does not support logical expression
//! ScalarSubquery"). [`DecorrelateAggregates`] runs right after DataFusion's
//! decorrelation rules and rewrites each leftover subquery of a `Projection`
//! or `Filter` into an aggregate over a left join, evaluated once per outer
//! row:
//!
//! ```text
//! Projection: <expr with (subquery) replaced by __entidb_sq_N>
//!   Projection: <outer columns>, <result> AS __entidb_sq_N
//!     Aggregate: groupBy=[<outer columns>, __entidb_rn], aggr=[<aggregates> FILTER (WHERE __entidb_m IS NOT NULL)]
//!       Left Join: Filter: <correlation predicate, outer refs as columns>
//!         WindowAggr: row_number() AS __entidb_rn        (tells equal outer rows apart)
//!           <outer input>
//!         Projection: <inner columns>, true AS __entidb_m  (NULL on unmatched outer rows)
//!           <subquery input below its WHERE>
//! ```
//!
//! Every aggregate is filtered on the marker, so an outer row without
//! matches aggregates over zero rows (`count(*)` = 0, `max` = NULL), exactly
//! as the subquery would. The three shapes:
//!
//! - scalar `(SELECT p FROM … WHERE pred)` where `p` is over an ungrouped
//!   aggregate: the subquery's own aggregates, result `p`;
//! - `EXISTS (…)`: `count(*)`, result `count > 0` (`= 0` for NOT EXISTS);
//! - `e IN (SELECT c …)`: `count(*)`, `count(c)`, `bool_or(c = e)`, and
//!   SQL's three-valued result: false without rows, NULL when `e` is NULL
//!   or only a NULL could match, true on a hit.
//!
//! Uncorrelated `IN`/`EXISTS` take the same path with no join predicate.
//! Subqueries of another shape (correlation below a join or a limit,
//! correlated scalar subqueries without an aggregate) are left alone and
//! still fail with SQLSTATE 0A000. Building never fails the statement: a
//! plan the rule cannot build is returned unchanged.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::functions_aggregate::expr_fn::{bool_or, count};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::{Alias, Exists, InSubquery};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Expr, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Projection, Subquery, lit, when,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use std::collections::HashMap;
use std::sync::Arc;

/// The rule (see the module docs).
#[derive(Debug, Default)]
pub struct DecorrelateAggregates;

/// DataFusion's default optimizer rules with [`DecorrelateAggregates`]
/// inserted right after its own decorrelation rules.
pub fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Optimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "decorrelate_lateral_join")
        .map_or(rules.len(), |i| i + 1);
    rules.insert(at, Arc::new(DecorrelateAggregates));
    rules
}

impl OptimizerRule for DecorrelateAggregates {
    fn name(&self) -> &str {
        "entidb_decorrelate_aggregates"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let mut plan = plan;
        let mut changed = false;
        // One subquery at a time; a node may hold several.
        while let Some(target) = leftover_subquery(&plan) {
            match rewrite_node(&plan, &target, config) {
                Ok(Some(new)) => {
                    plan = new;
                    changed = true;
                }
                // A shape we do not handle, or a plan we could not build:
                // leave the subquery (it fails as 0A000 later).
                Ok(None) | Err(_) => break,
            }
        }
        Ok(if changed {
            Transformed::yes(plan)
        } else {
            Transformed::no(plan)
        })
    }
}

/// The first subquery expression of a `Projection` or `Filter` that
/// DataFusion's rules left: a correlated scalar subquery, or any
/// `IN`/`EXISTS` subquery.
fn leftover_subquery(plan: &LogicalPlan) -> Option<Expr> {
    let exprs = match plan {
        LogicalPlan::Projection(p) => p.expr.iter().collect::<Vec<_>>(),
        LogicalPlan::Filter(f) => vec![&f.predicate],
        _ => return None,
    };
    let mut found = None;
    for expr in exprs {
        let _ = expr.apply(|e| {
            let hit = match e {
                Expr::ScalarSubquery(s) => !s.outer_ref_columns.is_empty(),
                Expr::Exists(_) | Expr::InSubquery(_) => true,
                _ => false,
            };
            if hit {
                found = Some(e.clone());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if found.is_some() {
            break;
        }
    }
    found
}

/// What a subquery becomes: rows of `input` joined to the outer rows on
/// `predicate` (in `input`'s columns and outer references), aggregated as
/// `kind` says.
struct Shape {
    input: LogicalPlan,
    predicate: Option<Expr>,
    kind: Kind,
}

enum Kind {
    /// The subquery's own aggregates (over `input`) and its projection
    /// (over the aggregates, by name, and outer references).
    Scalar {
        aggregates: Vec<Expr>,
        result: Expr,
    },
    Exists {
        negated: bool,
    },
    /// `needle` is over the outer rows, `candidate` over `input`.
    In {
        needle: Expr,
        candidate: Expr,
        negated: bool,
    },
}

/// Names of the columns one rewrite adds, unique in the plan.
struct Names {
    value: String,
    marker: String,
    row: String,
    prefix: String,
}

/// Rewrites `plan` (a Projection or Filter) so that `target` is read from a
/// new column; `None` when the subquery has a shape this rule does not
/// handle.
fn rewrite_node(
    plan: &LogicalPlan,
    target: &Expr,
    config: &dyn OptimizerConfig,
) -> Result<Option<LogicalPlan>> {
    let Some(shape) = shape_of(target)? else {
        return Ok(None);
    };
    let input = match plan {
        LogicalPlan::Projection(p) => p.input.as_ref(),
        LogicalPlan::Filter(f) => f.input.as_ref(),
        _ => return Ok(None),
    };
    let generator = config.alias_generator();
    let names = Names {
        value: generator.next("__entidb_sq"),
        marker: generator.next("__entidb_m"),
        row: generator.next("__entidb_rn"),
        prefix: generator.next("__entidb_c"),
    };
    let new_input = attach(input, shape, &names)?;
    let value = Expr::Column(Column::from_name(names.value.as_str()));
    let replace = |e: Expr| -> Result<Expr> {
        e.transform_down(|e| {
            if &e == target {
                Ok(Transformed::new(
                    value.clone(),
                    true,
                    TreeNodeRecursion::Jump,
                ))
            } else {
                Ok(Transformed::no(e))
            }
        })
        .map(|t| t.data)
    };
    let new = match plan {
        LogicalPlan::Projection(p) => {
            let preserver = NamePreserver::new_for_projection();
            let exprs = p
                .expr
                .iter()
                .map(|e| {
                    let saved = preserver.save(e);
                    replace(e.clone()).map(|e| saved.restore(e))
                })
                .collect::<Result<Vec<_>>>()?;
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(new_input))?)
        }
        LogicalPlan::Filter(f) => {
            let filtered = LogicalPlan::Filter(Filter::try_new(
                replace(f.predicate.clone())?,
                Arc::new(new_input),
            )?);
            LogicalPlanBuilder::from(filtered)
                .project(columns(input))?
                .build()?
        }
        _ => return Ok(None),
    };
    Ok(Some(new))
}

/// `input`'s rows, each with the subquery's value in column `names.value`.
/// The subquery's columns are renamed `<prefix>_<i>` so that they cannot
/// clash with the outer ones (`SELECT a IN (SELECT a FROM t) FROM t`).
fn attach(input: &LogicalPlan, shape: Shape, names: &Names) -> Result<LogicalPlan> {
    let number = row_number();
    let numbered = Expr::Column(Column::from_name(number.schema_name().to_string()));
    let mut outer_columns = columns(input);
    outer_columns.push(numbered.alias(names.row.as_str()));
    let outer = LogicalPlanBuilder::from(LogicalPlanBuilder::window_plan(input.clone(), [number])?)
        .project(outer_columns)?
        .build()?;

    let mut renamed = HashMap::new();
    let mut inner_columns = Vec::new();
    for (i, column) in shape.input.schema().columns().into_iter().enumerate() {
        let name = format!("{}_{i}", names.prefix);
        inner_columns.push(Expr::Column(column.clone()).alias(name.as_str()));
        renamed.insert(column, Column::from_name(name));
    }
    inner_columns.push(lit(true).alias(names.marker.as_str()));
    let inner = LogicalPlanBuilder::from(shape.input)
        .project(inner_columns)?
        .build()?;
    let inner_terms = |e: Expr| strip_outer(rename(e, &renamed)?);
    let predicate = match shape.predicate {
        Some(p) => inner_terms(p)?,
        None => lit(true),
    };

    let agg = |i: usize| format!("{}_a{i}", names.prefix);
    let agg_col = |i: usize| Expr::Column(Column::from_name(agg(i)));
    let (aggregates, result) = match shape.kind {
        Kind::Scalar { aggregates, result } => (
            aggregates
                .into_iter()
                .map(inner_terms)
                .collect::<Result<Vec<_>>>()?,
            strip_outer(result)?,
        ),
        Kind::Exists { negated } => {
            let n = agg_col(0);
            let result = if negated {
                n.eq(lit(0i64))
            } else {
                n.gt(lit(0i64))
            };
            (vec![count(lit(1i64)).alias(agg(0))], result)
        }
        Kind::In {
            needle,
            candidate,
            negated,
        } => {
            let candidate = inner_terms(candidate)?;
            let null = lit(ScalarValue::Boolean(None));
            let (rows, non_null, hit) = (agg_col(0), agg_col(1), agg_col(2));
            let found = when(rows.clone().eq(lit(0i64)), lit(false))
                .when(needle.clone().is_null(), null.clone())
                .when(hit.is_true(), lit(true))
                .when(rows.gt(non_null), null)
                .otherwise(lit(false))?;
            (
                vec![
                    count(lit(1i64)).alias(agg(0)),
                    count(candidate.clone()).alias(agg(1)),
                    bool_or(candidate.eq(needle)).alias(agg(2)),
                ],
                if negated { !found } else { found },
            )
        }
    };
    let matched = Expr::Column(Column::from_name(names.marker.as_str())).is_not_null();
    let aggregates = aggregates
        .into_iter()
        .map(|a| only_matched(a, &matched))
        .collect::<Result<Vec<_>>>()?;
    let mut group = columns(input);
    group.push(Expr::Column(Column::from_name(names.row.as_str())));
    let mut output = columns(input);
    output.push(result.alias(names.value.as_str()));
    LogicalPlanBuilder::from(outer)
        .join_on(inner, JoinType::Left, [predicate])?
        .aggregate(group, aggregates)?
        .project(output)?
        .build()
}

/// Replaces the columns in `renamed`.
fn rename(expr: Expr, renamed: &HashMap<Column, Column>) -> Result<Expr> {
    expr.transform_up(|e| match e {
        Expr::Column(c) => match renamed.get(&c) {
            Some(new) => Ok(Transformed::yes(Expr::Column(new.clone()))),
            None => Ok(Transformed::no(Expr::Column(c))),
        },
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// Adds `AND matched` to the FILTER of every aggregate call in `expr`.
fn only_matched(expr: Expr, matched: &Expr) -> Result<Expr> {
    expr.transform_up(|e| match e {
        Expr::AggregateFunction(mut f) => {
            f.params.filter = Some(Box::new(match f.params.filter.take() {
                Some(old) => old.and(matched.clone()),
                None => matched.clone(),
            }));
            Ok(Transformed::yes(Expr::AggregateFunction(f)))
        }
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// How `target` is rewritten; `None` for a shape this rule does not handle.
fn shape_of(target: &Expr) -> Result<Option<Shape>> {
    match target {
        Expr::ScalarSubquery(s) => scalar_shape(s),
        Expr::Exists(Exists { subquery, negated }) => {
            let Some((input, predicate)) = split_filter(strip_projection(&subquery.subquery))
            else {
                return Ok(None);
            };
            Ok(Some(Shape {
                input,
                predicate,
                kind: Kind::Exists { negated: *negated },
            }))
        }
        Expr::InSubquery(InSubquery {
            expr,
            subquery,
            negated,
        }) => {
            let Some((input, predicate, candidate)) = in_list_shape(&subquery.subquery) else {
                return Ok(None);
            };
            Ok(Some(Shape {
                input,
                predicate,
                kind: Kind::In {
                    needle: expr.as_ref().clone(),
                    candidate,
                    negated: *negated,
                },
            }))
        }
        _ => Ok(None),
    }
}

/// `(SELECT p FROM … WHERE pred)` with `p` over an ungrouped aggregate.
fn scalar_shape(s: &Subquery) -> Result<Option<Shape>> {
    let (result, below) = match s.subquery.as_ref() {
        LogicalPlan::Projection(p) if p.expr.len() == 1 => match p.expr.first() {
            Some(e) => (e.clone(), p.input.as_ref()),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let LogicalPlan::Aggregate(aggregate) = below else {
        return Ok(None);
    };
    if !aggregate.group_expr.is_empty() {
        return Ok(None);
    }
    let Some((input, predicate)) = split_filter(aggregate.input.as_ref()) else {
        return Ok(None);
    };
    // The projection reads the aggregates by their names: keep them.
    let aggregates = aggregate
        .aggr_expr
        .iter()
        .map(|a| {
            let name = a.schema_name().to_string();
            Expr::Alias(Alias::new(unalias(a.clone()), None::<&str>, name))
        })
        .collect();
    Ok(Some(Shape {
        input,
        predicate,
        kind: Kind::Scalar {
            aggregates,
            result: unalias(result),
        },
    }))
}

/// `SELECT c FROM … [WHERE pred]`: the input, the predicate and `c` over
/// the input's columns. An uncorrelated subquery of any shape is its own
/// input.
fn in_list_shape(plan: &LogicalPlan) -> Option<(LogicalPlan, Option<Expr>, Expr)> {
    if !has_outer_refs(plan) {
        let field = plan.schema().columns();
        let [column] = field.as_slice() else {
            return None;
        };
        return Some((plan.clone(), None, Expr::Column(column.clone())));
    }
    let LogicalPlan::Projection(p) = plan else {
        return None;
    };
    let [candidate] = p.expr.as_slice() else {
        return None;
    };
    if candidate.contains_outer() {
        return None;
    }
    let (input, predicate) = split_filter(p.input.as_ref())?;
    Some((input, predicate, unalias(candidate.clone())))
}

/// A projection on top of an EXISTS subquery does not change its rows.
fn strip_projection(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::Projection(p) if !p.expr.iter().any(Expr::contains_outer) => p.input.as_ref(),
        other => other,
    }
}

/// `Filter(pred) <- input` with the correlation only in `pred`, or an
/// uncorrelated `input`.
fn split_filter(plan: &LogicalPlan) -> Option<(LogicalPlan, Option<Expr>)> {
    if !has_outer_refs(plan) {
        return Some((plan.clone(), None));
    }
    match plan {
        LogicalPlan::Filter(f) if !has_outer_refs(f.input.as_ref()) => {
            Some((f.input.as_ref().clone(), Some(f.predicate.clone())))
        }
        _ => None,
    }
}

/// True when `plan` or anything below it (subqueries included) reads an
/// outer reference.
fn has_outer_refs(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        if p.contains_outer_reference() {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Outer references become plain columns (they are columns of the join).
fn strip_outer(expr: Expr) -> Result<Expr> {
    expr.transform_up(|e| match e {
        Expr::OuterReferenceColumn(_, c) => Ok(Transformed::yes(Expr::Column(c))),
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

fn unalias(expr: Expr) -> Expr {
    match expr {
        Expr::Alias(a) => unalias(*a.expr),
        e => e,
    }
}

/// Every column of `plan`'s output, as column expressions.
fn columns(plan: &LogicalPlan) -> Vec<Expr> {
    plan.schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect()
}
