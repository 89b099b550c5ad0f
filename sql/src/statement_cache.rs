//! The statement cache: SQL text that skips DataFusion's planner.
//!
//! A statement sent as text pays for parsing, SQL-to-plan translation,
//! optimisation, physical planning and execution. For the statements
//! applications repeat, two per-session caches take the translation (and,
//! for point queries, everything after it) off that path.
//!
//! POINT QUERIES AS TEXT. `SELECT a, b FROM t WHERE k = 42 [AND c = 'x' …]`
//! (or `SELECT *`) is *auto-parameterised* after parsing: each literal of the
//! WHERE's `column = literal` equalities becomes a placeholder `$1`, `$2`, …
//! The parameterised text keys a [`Prepared`] statement, whose fast path
//! (`prepared.rs`) recognises the point query once per catalog version and
//! answers every later query of that shape from an index, with the literals
//! bound as the parameters — the same code and the same results as a
//! prepared `WHERE k = $1`. A literal is turned into a parameter only when it
//! is of the column's own kind (an integer for an integer column, a string
//! for a string column, a boolean for a boolean column), so binding it means
//! what the literal meant; the fast path refuses a lossy cast. Statements of
//! any other shape, a literal of another kind, a table without a usable
//! index, or text that already has placeholders take the general path, with
//! the original statement.
//!
//! PLANS. Every other query (`SELECT`, `WITH`, `VALUES`, …) keeps its
//! unoptimised logical plan keyed by the statement's text, when every table
//! the plan reads is an EntiDB table or view of this session (a file or a
//! system table may change behind the plan). Optimisation, physical planning
//! and execution still run each time, and a scan reads the transaction
//! current when it executes: a plan names providers, never snapshots.
//!
//! INVALIDATION. Both caches are emptied whenever the session re-registers
//! its tables for a different catalog (`Session::sync_catalog`: any DDL,
//! a commit of DDL by another session, a rollback past DDL) and on every
//! `SET`/`RESET`, which may change how SQL is planned. So an entry was always
//! made under the catalog and settings in force, over the very providers now
//! registered. The caches are small (at most [`CAPACITY`] entries each,
//! emptied when full) and skip texts longer than [`MAX_TEXT`].

use crate::ddl::normalize;
use crate::error::Result;
use crate::prepared::Prepared;
use crate::session::{Output, Session};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, source_as_provider};
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, SetExpr, Statement as SqlStatement, TableFactor,
    Value as SqlValue,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Entries per cache before it is emptied.
pub const CAPACITY: usize = 256;

/// Longest statement text that is cached, in bytes.
pub const MAX_TEXT: usize = 16 * 1024;

/// One session's cached plans (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct StatementCache {
    /// Parameterised point-query text → its prepared statement.
    points: HashMap<String, Arc<Prepared>>,
    /// Query text → unoptimised logical plan.
    plans: HashMap<String, LogicalPlan>,
    stats: CacheStats,
}

/// What the statement cache did in one session (for tests and tuning).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Statements sent as text answered by the point-query fast path.
    pub point_queries: u64,
    /// Statements whose logical plan came from the cache.
    pub plan_hits: u64,
    /// Times the cache was emptied by a catalog or settings change.
    pub invalidations: u64,
}

impl StatementCache {
    /// Forgets everything (the catalog or the settings changed).
    pub(crate) fn clear(&mut self) {
        self.points.clear();
        self.plans.clear();
        self.stats.invalidations += 1;
    }
}

impl Session {
    /// What the statement cache did so far in this session.
    pub fn statement_cache_stats(&self) -> CacheStats {
        self.statements.stats
    }

    /// True when `provider` is the table or view this session registered
    /// as `name` (the same object, not merely the same name).
    fn is_registered(&self, name: &str, provider: &Arc<dyn TableProvider>) -> bool {
        let address = Arc::as_ptr(provider).cast::<()>();
        self.tables
            .get(name)
            .is_some_and(|t| Arc::as_ptr(t).cast::<()>() == address)
            || self
                .views
                .get(name)
                .is_some_and(|v| Arc::as_ptr(&v.provider).cast::<()>() == address)
    }
}

/// Inserts into a bounded map, emptying it first when full.
fn bounded_insert<V>(map: &mut HashMap<String, V>, key: String, value: V) {
    if map.len() >= CAPACITY {
        map.clear();
    }
    map.insert(key, value);
}

/// Empties the caches before a `SET` or `RESET` runs.
pub(crate) fn forget_on_settings(session: &mut Session, stmt: &DFStatement) {
    let settings = match stmt {
        DFStatement::Reset(_) => true,
        DFStatement::Statement(s) => matches!(s.as_ref(), SqlStatement::Set(_)),
        _ => false,
    };
    if settings {
        session.statements.clear();
    }
}

/// Answers `stmt` through the point-query fast path if it is a point query
/// sent as text (no parameters); `None` otherwise. Runs inside the
/// statement's transaction scope, catalog synced.
pub(crate) async fn point_query(
    session: &mut Session,
    stmt: &DFStatement,
    params: &[ScalarValue],
) -> Result<Option<Output>> {
    if !params.is_empty() {
        return Ok(None);
    }
    let Some((shape, values)) = parameterise(stmt, session) else {
        return Ok(None);
    };
    let text = shape.to_string();
    if text.len() > MAX_TEXT {
        return Ok(None);
    }
    let prepared = match session.statements.points.get(&text) {
        Some(p) => p.clone(),
        None => {
            let p = Arc::new(Prepared::new(text.clone(), shape));
            bounded_insert(&mut session.statements.points, text, p.clone());
            p
        }
    };
    let out = session.try_point_query(&prepared, &values).await?;
    if out.is_some() {
        session.statements.stats.point_queries += 1;
    }
    Ok(out)
}

/// The logical plan of `stmt`, from the cache when the same query text was
/// planned under the current catalog and settings.
pub(crate) async fn logical_plan(session: &mut Session, stmt: DFStatement) -> Result<LogicalPlan> {
    let key = match &stmt {
        DFStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Query(_)) => {
            Some(stmt.to_string()).filter(|k| k.len() <= MAX_TEXT)
        }
        _ => None,
    };
    if let Some(plan) = key.as_ref().and_then(|k| session.statements.plans.get(k)) {
        let plan = plan.clone();
        session.statements.stats.plan_hits += 1;
        return Ok(plan);
    }
    let plan = session.ctx.state().statement_to_plan(stmt).await?;
    if let Some(key) = key
        && reads_only_own_relations(&plan, session)
    {
        bounded_insert(&mut session.statements.plans, key, plan.clone());
    }
    Ok(plan)
}

/// True when every relation `plan` scans is a table or view this session
/// registered (the provider now registered under that name, in the default
/// schema), not a file, a table function or a system table.
fn reads_only_own_relations(plan: &LogicalPlan, session: &Session) -> bool {
    let mut own = true;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            own &= in_default_schema(&scan.table_name)
                && source_as_provider(&scan.source)
                    .is_ok_and(|p| session.is_registered(scan.table_name.table(), &p));
        }
        Ok(if own {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    own
}

fn in_default_schema(name: &TableReference) -> bool {
    match name {
        TableReference::Bare { .. } => true,
        TableReference::Partial { schema, .. } => schema.as_ref() == "main",
        TableReference::Full {
            catalog, schema, ..
        } => catalog.as_ref() == "entidb" && schema.as_ref() == "main",
    }
}

/// `stmt` with the literals of its WHERE equalities replaced by `$1`, `$2`,
/// …, and those literals' values; `None` unless `stmt` is a one-table
/// `SELECT … WHERE col = literal [AND …]` whose literals all match their
/// columns' kinds.
fn parameterise(stmt: &DFStatement, session: &Session) -> Option<(DFStatement, Vec<ScalarValue>)> {
    // The shape is checked on the borrowed statement: most queries are not
    // point queries, and cloning a big AST costs more than the check.
    let schema = one_table_select(stmt, session)?;
    let mut shape = stmt.clone();
    let DFStatement::Statement(inner) = &mut shape else {
        return None;
    };
    let SqlStatement::Query(query) = inner.as_mut() else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let mut values = Vec::new();
    replace_literals(select.selection.as_mut()?, &schema, &mut values)?;
    (!values.is_empty()).then_some((shape, values))
}

/// The schema of the table `stmt` reads when it is a plain
/// `SELECT … FROM table WHERE …` (no WITH, ORDER BY, LIMIT, join).
fn one_table_select(stmt: &DFStatement, session: &Session) -> Option<SchemaRef> {
    let DFStatement::Statement(inner) = stmt else {
        return None;
    };
    let SqlStatement::Query(query) = inner.as_ref() else {
        return None;
    };
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() || select.selection.is_none() {
        return None;
    }
    let TableFactor::Table { name, .. } = &from.relation else {
        return None;
    };
    if name.0.len() != 1 {
        return None;
    }
    let table = session
        .tables
        .get(&crate::schemas::resolve(&session.catalog, name).ok()?)?;
    Some(table.def().schema.clone())
}

/// Rewrites an `AND` of `column = literal` terms in place; `None` when
/// `expr` has any other form.
fn replace_literals(
    expr: &mut SqlExpr,
    schema: &Schema,
    values: &mut Vec<ScalarValue>,
) -> Option<()> {
    match expr {
        SqlExpr::Nested(inner) => replace_literals(inner, schema, values),
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            replace_literals(left, schema, values)?;
            replace_literals(right, schema, values)
        }
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let (column, literal) = match (column_name(left), column_name(right)) {
                (Some(c), None) => (c, right),
                (None, Some(c)) => (c, left),
                _ => return None,
            };
            let field = schema.field_with_name(&column).ok()?;
            values.push(literal_value(literal, field.data_type())?);
            **literal = SqlExpr::Value(
                SqlValue::Placeholder(format!("${}", values.len())).with_empty_span(),
            );
            Some(())
        }
        _ => None,
    }
}

/// The (normalised) column an identifier names: `c` or `t.c`.
fn column_name(expr: &SqlExpr) -> Option<String> {
    match expr {
        SqlExpr::Identifier(ident) => Some(normalize(ident)),
        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => parts.last().map(normalize),
        _ => None,
    }
}

/// The value of a literal of `ty`'s own kind: an integer for an integer
/// column, a string for a string column, a boolean for a boolean column.
fn literal_value(expr: &SqlExpr, ty: &DataType) -> Option<ScalarValue> {
    let (negative, value) = crate::prepared::signed_value(expr)?;
    match value {
        SqlValue::Number(digits, false) if ty.is_integer() => {
            let text = if negative {
                format!("-{digits}")
            } else {
                digits.clone()
            };
            text.parse::<i64>()
                .ok()
                .map(|i| ScalarValue::Int64(Some(i)))
        }
        SqlValue::SingleQuotedString(s)
            if !negative
                && matches!(
                    ty,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
        {
            Some(ScalarValue::Utf8(Some(s.clone())))
        }
        SqlValue::Boolean(b) if !negative && *ty == DataType::Boolean => {
            Some(ScalarValue::Boolean(Some(*b)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use arrow::datatypes::Field;
    use datafusion::sql::parser::DFParser;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("f", DataType::Float64, true),
        ])
    }

    fn rewrite(where_clause: &str) -> Option<(String, Vec<ScalarValue>)> {
        let sql = format!("SELECT * FROM t WHERE {where_clause}");
        let stmt = DFParser::parse_sql(&sql).unwrap().pop_front().unwrap();
        let DFStatement::Statement(mut s) = stmt else {
            panic!("not a statement")
        };
        let SqlStatement::Query(q) = s.as_mut() else {
            panic!("not a query")
        };
        let SetExpr::Select(select) = q.body.as_mut() else {
            panic!("not a select")
        };
        let mut values = Vec::new();
        replace_literals(select.selection.as_mut().unwrap(), &schema(), &mut values)?;
        Some((s.to_string(), values))
    }

    #[test]
    fn literals_of_the_columns_kind_become_parameters() {
        let (text, values) = rewrite("id = -42 AND (s = 'x''y') AND true = b").unwrap();
        assert_eq!(
            text,
            "SELECT * FROM t WHERE id = $1 AND (s = $2) AND $3 = b"
        );
        assert_eq!(
            values,
            vec![
                ScalarValue::Int64(Some(-42)),
                ScalarValue::Utf8(Some("x'y".into())),
                ScalarValue::Boolean(Some(true)),
            ]
        );
    }

    #[test]
    fn other_shapes_and_kinds_are_left_alone() {
        for clause in [
            "id = 1.5",
            "id = '7'",
            "s = 7",
            "f = 1",
            "id = 99999999999999999999",
            "id = $1",
            "id = NULL",
            "id < 3",
            "id = 1 OR id = 2",
            "id = 1 AND s LIKE 'x'",
            "id = id",
            "nope = 1",
            "id + 0 = 1",
        ] {
            assert!(rewrite(clause).is_none(), "{clause}");
        }
    }
}
