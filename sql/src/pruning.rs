//! Row-group pruning from pushed-down filters.
//!
//! DataFusion hands the provider the query's filter conjuncts. Those of the
//! form `column <op> literal` (`=`, `<`, `<=`, `>`, `>=`, either side) and
//! `column BETWEEN a AND b` become a [`RowGroupFilter`] that skips row groups
//! whose min/max statistics prove no row can match. Pushdown is `Inexact`:
//! DataFusion still applies every filter to the rows that are read.

use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;
use entidb_engine::RowGroupFilter;
use entidb_engine::segment::{RowGroupMeta, StatValue};
use std::cmp::Ordering;
use std::sync::Arc;

/// A range condition on one column.
#[derive(Debug, Clone)]
struct Bound {
    column: usize,
    op: Operator,
    value: StatValue,
}

/// True when the filter can be used for pruning.
pub fn is_prunable(expr: &Expr, columns: &[String]) -> bool {
    !bounds(expr, columns).is_empty()
}

/// Builds a row-group filter from filter conjuncts, or `None` if none apply.
pub fn row_group_filter(filters: &[Expr], columns: &[String]) -> Option<RowGroupFilter> {
    let all: Vec<Bound> = filters.iter().flat_map(|f| bounds(f, columns)).collect();
    if all.is_empty() {
        return None;
    }
    Some(Arc::new(move |meta: &RowGroupMeta| {
        all.iter().all(|b| may_match(b, meta))
    }))
}

fn bounds(expr: &Expr, columns: &[String]) -> Vec<Bound> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                let mut v = bounds(left, columns);
                v.extend(bounds(right, columns));
                return v;
            }
            let (col, lit, op) = match (column_of(left, columns), literal(right)) {
                (Some(c), Some(v)) => (c, v, *op),
                _ => match (literal(left), column_of(right, columns)) {
                    (Some(v), Some(c)) => match op.swap() {
                        Some(op) => (c, v, op),
                        None => return vec![],
                    },
                    _ => return vec![],
                },
            };
            match op {
                Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                    vec![Bound {
                        column: col,
                        op,
                        value: lit,
                    }]
                }
                _ => vec![],
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (column_of(expr, columns), literal(low), literal(high)) {
            (Some(c), Some(lo), Some(hi)) => vec![
                Bound {
                    column: c,
                    op: Operator::GtEq,
                    value: lo,
                },
                Bound {
                    column: c,
                    op: Operator::LtEq,
                    value: hi,
                },
            ],
            _ => vec![],
        },
        _ => vec![],
    }
}

fn column_of(expr: &Expr, columns: &[String]) -> Option<usize> {
    match expr {
        Expr::Column(c) => columns.iter().position(|n| *n == c.name),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<StatValue> {
    let Expr::Literal(v, _) = expr else {
        return None;
    };
    Some(match v {
        ScalarValue::Int8(Some(x)) => StatValue::Int(i64::from(*x)),
        ScalarValue::Int16(Some(x)) => StatValue::Int(i64::from(*x)),
        ScalarValue::Int32(Some(x)) => StatValue::Int(i64::from(*x)),
        ScalarValue::Int64(Some(x)) => StatValue::Int(*x),
        ScalarValue::UInt8(Some(x)) => StatValue::Int(i64::from(*x)),
        ScalarValue::UInt16(Some(x)) => StatValue::Int(i64::from(*x)),
        ScalarValue::UInt32(Some(x)) => StatValue::Int(i64::from(*x)),
        ScalarValue::Date32(Some(x)) => StatValue::Int(i64::from(*x)),
        ScalarValue::Date64(Some(x))
        | ScalarValue::TimestampSecond(Some(x), _)
        | ScalarValue::TimestampMillisecond(Some(x), _)
        | ScalarValue::TimestampMicrosecond(Some(x), _)
        | ScalarValue::TimestampNanosecond(Some(x), _) => StatValue::Int(*x),
        ScalarValue::Float32(Some(x)) => StatValue::Float(f64::from(*x)),
        ScalarValue::Float64(Some(x)) => StatValue::Float(*x),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => StatValue::Str(s.clone()),
        _ => return None,
    })
}

fn compare(a: &StatValue, b: &StatValue) -> Option<Ordering> {
    match (a, b) {
        (StatValue::Int(x), StatValue::Int(y)) => Some(x.cmp(y)),
        (StatValue::Float(x), StatValue::Float(y)) => x.partial_cmp(y),
        (StatValue::Str(x), StatValue::Str(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

/// False only when the statistics prove that no row of the group matches.
fn may_match(b: &Bound, meta: &RowGroupMeta) -> bool {
    let Some(chunk) = meta.chunks.get(b.column) else {
        return true;
    };
    let (Some(lo), Some(hi)) = (compare(&chunk.min, &b.value), compare(&chunk.max, &b.value))
    else {
        return true;
    };
    match b.op {
        Operator::Eq => lo != Ordering::Greater && hi != Ordering::Less,
        Operator::Lt => lo == Ordering::Less,
        Operator::LtEq => lo != Ordering::Greater,
        Operator::Gt => hi == Ordering::Greater,
        Operator::GtEq => hi != Ordering::Less,
        _ => true,
    }
}
