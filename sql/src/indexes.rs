//! Indexes as SQL sees them, and which one a scan uses.
//!
//! A table's indexes are its primary key (`<table>_pkey`), its UNIQUE
//! constraints (`<table>_<cols>_key`) and the indexes of `CREATE INDEX`. The
//! engine maintains them (see `entidb_engine::index`); this module decides
//! which filters an index can answer.
//!
//! A filter is *indexable* when it constrains one column that leads some
//! index, comparing it with literals: `=`, `<`, `<=`, `>`, `>=`, `IN (…)`,
//! `BETWEEN`, and `AND`/`OR` of those on the same column. Each becomes a
//! union of [`KeyRange`]s over the column's memcomparable encoding (literals
//! are cast to the column type first; a lossy cast makes the filter
//! non-indexable). The provider reports equality and `IN` filters on an
//! index as `Exact` pushdown and applies every one of them itself
//! (`provider.rs`); ranges are `Inexact` (they may select most of the table,
//! where DataFusion's parallel filter over a scan wins). The chosen index
//! only narrows the rows read; the filters are always evaluated on what it
//! returns, so index use can never change a result.

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Schema};
use datafusion::logical_expr::expr::{Between, InList};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;
use entidb_catalog::{Catalog, TableMeta};
use entidb_engine::KeyRange;
use entidb_engine::index::{index_keys, intersect_all};
use std::ops::Bound;

/// One index of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// Name shown by EXPLAIN.
    pub name: String,
    /// Indexed columns, leading first.
    pub columns: Vec<usize>,
    /// Rejects duplicate non-NULL keys.
    pub unique: bool,
    /// The primary key (uniqueness is enforced by the engine's row keys).
    pub primary: bool,
}

/// Every index of `meta`, primary key first.
pub fn table_indexes(catalog: &Catalog, meta: &TableMeta) -> Vec<IndexInfo> {
    let names: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
    let col_names = |cols: &[usize]| -> Vec<&str> {
        cols.iter().filter_map(|c| names.get(*c).copied()).collect()
    };
    let mut out = Vec::new();
    if !meta.primary_key.is_empty() {
        out.push(IndexInfo {
            name: format!("{}_pkey", meta.name),
            columns: meta.primary_key.clone(),
            unique: true,
            primary: true,
        });
    }
    for cols in &meta.unique {
        out.push(IndexInfo {
            name: format!("{}_{}_key", meta.name, col_names(cols).join("_")),
            columns: cols.clone(),
            unique: true,
            primary: false,
        });
    }
    for index in catalog.indexes.iter().filter(|i| i.table == meta.name) {
        let columns: Option<Vec<usize>> = index
            .columns
            .iter()
            .map(|c| names.iter().position(|n| n == c))
            .collect();
        if let Some(columns) = columns {
            out.push(IndexInfo {
                name: index.name.clone(),
                columns,
                unique: index.unique,
                primary: false,
            });
        }
    }
    out
}

/// The column sets the engine must keep unique (all but the primary key).
pub fn unique_sets(indexes: &[IndexInfo]) -> Vec<Vec<usize>> {
    let mut sets: Vec<Vec<usize>> = indexes
        .iter()
        .filter(|i| i.unique && !i.primary)
        .map(|i| i.columns.clone())
        .collect();
    sets.dedup();
    sets
}

/// What an indexable filter says about one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPredicate {
    /// The column.
    pub column: usize,
    /// Accepted encoded values (union).
    pub ranges: Vec<KeyRange>,
    /// Only equality / IN: every range is a single value.
    pub points: bool,
}

/// The predicate of `expr` if it is indexable on a column of `schema`.
pub fn predicate_of(expr: &Expr, schema: &Schema) -> Option<ColumnPredicate> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let l = predicate_of(left, schema)?;
                let r = predicate_of(right, schema)?;
                if l.column != r.column {
                    return None;
                }
                let ranges = if *op == Operator::And {
                    intersect_all(&l.ranges, &r.ranges)
                } else {
                    let mut all = l.ranges;
                    all.extend(r.ranges);
                    all
                };
                Some(ColumnPredicate {
                    column: l.column,
                    ranges,
                    points: l.points && r.points,
                })
            }
            _ => {
                let (column, value, op) = match (column_of(left, schema), literal(right)) {
                    (Some(c), Some(v)) => (c, v, *op),
                    _ => (column_of(right, schema)?, literal(left)?, op.swap()?),
                };
                let v = encode(schema.field(column).data_type(), value)?;
                let range = match op {
                    Operator::Eq => KeyRange::point(v),
                    Operator::Lt => KeyRange::new(Bound::Unbounded, Bound::Excluded(v)),
                    Operator::LtEq => KeyRange::new(Bound::Unbounded, Bound::Included(v)),
                    Operator::Gt => KeyRange::new(Bound::Excluded(v), Bound::Unbounded),
                    Operator::GtEq => KeyRange::new(Bound::Included(v), Bound::Unbounded),
                    _ => return None,
                };
                Some(ColumnPredicate {
                    column,
                    ranges: vec![range],
                    points: op == Operator::Eq,
                })
            }
        },
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let column = column_of(expr, schema)?;
            let ty = schema.field(column).data_type();
            let ranges = list
                .iter()
                .map(|e| literal(e).and_then(|v| encode(ty, v)).map(KeyRange::point))
                .collect::<Option<Vec<_>>>()?;
            Some(ColumnPredicate {
                column,
                ranges,
                points: true,
            })
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let column = column_of(expr, schema)?;
            let ty = schema.field(column).data_type();
            let lo = encode(ty, literal(low)?)?;
            let hi = encode(ty, literal(high)?)?;
            Some(ColumnPredicate {
                column,
                ranges: vec![KeyRange::new(Bound::Included(lo), Bound::Included(hi))],
                points: false,
            })
        }
        _ => None,
    }
}

fn column_of(expr: &Expr, schema: &Schema) -> Option<usize> {
    match expr {
        Expr::Column(c) => schema.index_of(&c.name).ok(),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

/// The memcomparable encoding of `value` as a `ty` value; `None` for NULL
/// or when the cast would change the value.
pub fn encode(ty: &DataType, value: &ScalarValue) -> Option<Vec<u8>> {
    if value.is_null() {
        return None;
    }
    let cast = if value.data_type() == *ty {
        value.clone()
    } else {
        let cast = value.cast_to(ty).ok()?;
        if cast.is_null() || cast.cast_to(&value.data_type()).ok()? != *value {
            return None;
        }
        cast
    };
    let array: ArrayRef = cast.to_array().ok()?;
    let (keys, _) = index_keys(&[array]).ok()?;
    keys.iter().next().flatten().map(<[u8]>::to_vec)
}

/// The index a scan with `filters` should use, with the ranges of its
/// leading column and whether they are all single values. Prefers equality over two-sided ranges over one-sided
/// ones, then unique indexes, then narrower ones.
pub fn choose(
    indexes: &[IndexInfo],
    filters: &[Expr],
    schema: &Schema,
) -> Option<(IndexInfo, Vec<KeyRange>, bool)> {
    let predicates: Vec<ColumnPredicate> = filters
        .iter()
        .filter_map(|f| predicate_of(f, schema))
        .collect();
    indexes
        .iter()
        .filter_map(|index| {
            let lead = *index.columns.first()?;
            let mut on_lead = predicates.iter().filter(|p| p.column == lead);
            let first = on_lead.next()?;
            let mut ranges = first.ranges.clone();
            let mut points = first.points;
            for p in on_lead {
                ranges = intersect_all(&ranges, &p.ranges);
                points |= p.points;
            }
            let bounded = ranges.iter().all(KeyRange::is_bounded);
            let score = (!points, !bounded, !index.unique, index.columns.len());
            Some((score, index, ranges))
        })
        .min_by_key(|(score, _, _)| *score)
        .map(|(score, index, ranges)| (index.clone(), ranges, !score.0))
}

/// True when `filter` is indexable on the leading column of some index.
pub fn is_indexable(indexes: &[IndexInfo], filter: &Expr, schema: &Schema) -> bool {
    predicate_of(filter, schema).is_some_and(|p| leads_an_index(indexes, p.column))
}

/// True when `filter` is an equality / IN filter on the leading column of
/// some index: the provider applies it itself and reports `Exact`. Range
/// filters may select much of the table, so they stay `Inexact`: the index
/// narrows the scan when it is selective and DataFusion's (parallel) filter
/// has the last word.
pub fn is_exact(indexes: &[IndexInfo], filter: &Expr, schema: &Schema) -> bool {
    predicate_of(filter, schema).is_some_and(|p| p.points && leads_an_index(indexes, p.column))
}

fn leads_an_index(indexes: &[IndexInfo], column: usize) -> bool {
    indexes.iter().any(|i| i.columns.first() == Some(&column))
}
