//! Prepared statements and their fast paths: point queries and one-row
//! INSERTs.
//!
//! [`Prepared`] keeps a parsed statement so repeated executions skip parsing.
//! When the statement is a *point query* —
//!
//! ```sql
//! SELECT a, b FROM t WHERE k = $1 [AND c = $2 …]    -- or SELECT *
//! ```
//!
//! with `k` leading an index of `t` — it is answered straight from the engine
//! (`Transaction::index_scan`) without DataFusion planning or execution: that
//! is what makes `WHERE id = ?` lookups cost microseconds instead of a
//! planner run. The shape is recognised on DataFusion's own (unoptimised)
//! logical plan, once per catalog version: `Projection` of plain columns over
//! a `Filter` that is an `AND` of `column = $n | literal`, over a bare
//! `TableScan` of an EntiDB table. Anything else — ORDER BY, LIMIT,
//! DISTINCT, aliases, expressions, joins — shows up as another plan node and
//! takes the general path, as does a parameter whose value cannot be cast
//! to the column's type without loss. The fast path returns exactly the rows
//! and schema the general path would (the differential tests check it).
//!
//! Likewise `INSERT INTO t [(cols)] VALUES ($1, …)` — one row of parameters
//! and literals, every omitted column without a DEFAULT — builds its one-row
//! batch directly and goes through the same checks as any INSERT (types
//! cast as INSERT casts them, NOT NULL, keys, UNIQUE): a durable single-row
//! commit then costs little more than its fdatasync.

use crate::ddl::normalize;
use crate::error::{ErrorKind, Result};
use crate::indexes::{IndexInfo, encode};
use crate::session::{Output, Parsed, Session};
use arrow::array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, SetExpr, Statement as SqlStatement, TableObject, UnaryOperator,
    Value as SqlValue,
};
use entidb_engine::index::index_keys;
use entidb_engine::{IndexScanRequest, KeyRange};
use std::sync::{Arc, Mutex};

/// A parsed statement, ready to run many times with different parameters.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) text: String,
    pub(crate) statement: DFStatement,
    /// Nested at most [`crate::stack::SHALLOW`] deep: the fast paths may run
    /// on the caller's stack.
    shallow: bool,
    /// The point-query plan for one catalog version (`None`: not a point
    /// query).
    cache: Mutex<Option<CachedPlan>>,
}

/// A catalog blob and the fast plan made under it.
type CachedPlan = (Arc<Vec<u8>>, Option<Arc<FastPlan>>);

/// A statement shape answered without DataFusion.
#[derive(Debug)]
enum FastPlan {
    Point(PointQuery),
    Insert(InsertRow),
}

/// `INSERT INTO t [(cols)] VALUES (…)` with one row of parameters and
/// literals.
#[derive(Debug)]
pub(crate) struct InsertRow {
    table: String,
    /// One operand per table column (`None`: NULL).
    values: Vec<Option<Operand>>,
}

impl Prepared {
    pub(crate) fn new(text: String, statement: DFStatement) -> Self {
        let shallow =
            crate::stack::check_depth(&statement).is_ok_and(|depth| depth <= crate::stack::SHALLOW);
        Self {
            text,
            statement,
            shallow,
            cache: Mutex::new(None),
        }
    }

    /// The statement's text.
    pub fn sql(&self) -> &str {
        &self.text
    }

    /// Which fast path the last execution could use: `"point query"`,
    /// `"insert"`, or `None` (general path, or not run yet).
    pub fn fast_path(&self) -> Option<&'static str> {
        let cache = self.cache.lock().ok()?;
        match cache.as_ref()?.1.as_deref()? {
            FastPlan::Point(_) => Some("point query"),
            FastPlan::Insert(_) => Some("insert"),
        }
    }
}

/// A value compared with a column.
#[derive(Debug, Clone)]
enum Operand {
    /// `$n`, zero-based.
    Param(usize),
    Value(ScalarValue),
}

/// A recognised point query.
#[derive(Debug)]
pub(crate) struct PointQuery {
    table: String,
    /// Output columns (table column positions).
    columns: Vec<usize>,
    /// Equalities `column = operand`.
    equalities: Vec<(usize, Operand)>,
    /// DataFusion's output schema for the statement.
    schema: SchemaRef,
}

impl Session {
    /// Parses `sql` (one statement) for repeated execution.
    ///
    /// # Errors
    /// Syntax errors; more than one statement.
    pub fn prepare(&self, sql: &str) -> Result<Prepared> {
        let mut statements = crate::stack::on_big_stack(|| self.parse(sql))?;
        match (statements.pop(), statements.is_empty()) {
            (Some(Parsed::Sql(statement)), true) => {
                // The fast paths plan without `dispatch`: check here.
                crate::stack::on_big_stack(|| crate::exposed_names::check(&statement))?;
                Ok(Prepared::new(sql.trim().to_string(), *statement))
            }
            _ => {
                Err(ErrorKind::InvalidArgument("prepare takes exactly one statement".into()).into())
            }
        }
    }

    /// Runs a prepared statement with `params` bound to `$1`, `$2`, ….
    ///
    /// # Errors
    /// As [`Session::run`].
    pub async fn run_prepared(&mut self, p: &Prepared, params: &[ScalarValue]) -> Result<Output> {
        if p.shallow {
            // The fast paths, and recognising them, never recurse deeply
            // for a shallow statement: no stack switch (`stack.rs`).
            if let Some(out) = self.try_fast_path(p, params).await? {
                return Ok(out);
            }
            return crate::stack::BigStack::new(self.run_prepared_general(p, params)).await;
        }
        crate::stack::BigStack::new(async move {
            match self.try_fast_path(p, params).await? {
                Some(out) => Ok(out),
                None => self.run_prepared_general(p, params).await,
            }
        })
        .await
    }

    async fn try_fast_path(
        &mut self,
        p: &Prepared,
        params: &[ScalarValue],
    ) -> Result<Option<Output>> {
        self.in_transaction_scope(|s| Box::pin(async move { s.try_point_query(p, params).await }))
            .await
            .map_err(|e| e.in_statement(&p.text))
    }

    async fn run_prepared_general(
        &mut self,
        p: &Prepared,
        params: &[ScalarValue],
    ) -> Result<Output> {
        self.run_one(p.statement.clone(), params)
            .await
            .map_err(|e| e.in_statement(&p.text))
    }

    /// Answers `p` from an index if it is a point query (inside the
    /// transaction scope, catalog synced).
    pub(crate) async fn try_point_query(
        &mut self,
        p: &Prepared,
        params: &[ScalarValue],
    ) -> Result<Option<Output>> {
        let plan = self.fast_plan(p).await?;
        let point = match plan.as_deref() {
            Some(FastPlan::Point(point)) => point,
            Some(FastPlan::Insert(row)) => return self.insert_row(row, params),
            None => return Ok(None),
        };
        let Some(table) = self.tables.get(&point.table).cloned() else {
            return Ok(None);
        };
        let def = table.def();
        let mut values = Vec::with_capacity(point.equalities.len());
        for (col, operand) in &point.equalities {
            let value = match operand {
                Operand::Param(i) => match params.get(*i) {
                    Some(v) => v,
                    None => return Ok(None),
                },
                Operand::Value(v) => v,
            };
            match encode(def.schema.field(*col).data_type(), value) {
                Some(bytes) => values.push((*col, bytes)),
                None => return Ok(None),
            }
        }
        let Some(index) = pick_index(table.indexes(), &values) else {
            return Ok(None);
        };
        let lead = index.columns.first().copied().unwrap_or_default();
        let Some(key_at) = values.iter().position(|(c, _)| *c == lead) else {
            return Ok(None);
        };
        let Some((_, key)) = values.get(key_at).cloned() else {
            return Ok(None);
        };
        let mut read: Vec<usize> = point.columns.clone();
        read.extend(values.iter().map(|(c, _)| *c));
        read.sort_unstable();
        read.dedup();
        let request = IndexScanRequest {
            index: index.columns.clone(),
            ranges: vec![KeyRange::point(key)],
            projection: Some(read.clone()),
            include_key: false,
            max_candidates: None,
            build: true,
        };
        let Some(batches) = self.slot.with(|t| t.index_scan(def.id, &request))? else {
            return Ok(None);
        };
        // The index matched the equality it was looked up with exactly;
        // every other one (another value for the same column too) is
        // checked on the rows it returned.
        let residual: Vec<(usize, Vec<u8>)> = values
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != key_at)
            .map(|(_, v)| v)
            .collect();
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            out.push(finish(&batch, &read, &residual, point)?);
        }
        Ok(Some(Output::Rows(point.schema.clone(), out)))
    }

    /// Inserts one row built from the parameters.
    fn insert_row(&mut self, row: &InsertRow, params: &[ScalarValue]) -> Result<Option<Output>> {
        let Some(table) = self.tables.get(&row.table).cloned() else {
            return Ok(None);
        };
        let def = table.def();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(row.values.len());
        for (field, operand) in def.schema.fields().iter().zip(&row.values) {
            let value = match operand {
                Some(Operand::Param(i)) => match params.get(*i) {
                    Some(v) => v.clone(),
                    None => return Ok(None),
                },
                Some(Operand::Value(v)) => v.clone(),
                None => ScalarValue::Null,
            };
            let array = if value.is_null() {
                new_null_array(field.data_type(), 1)
            } else {
                value
                    .to_array()
                    .map_err(|e| ErrorKind::Execution(e.to_string()))?
            };
            columns.push(array);
        }
        let batch = table.conform_columns(&columns)?;
        let n = self.slot.with_sql(|t| table.store(t, &batch))?;
        Ok(Some(Output::Count(n)))
    }

    /// The fast plan of `p` for the current catalog, cached.
    async fn fast_plan(&mut self, p: &Prepared) -> Result<Option<Arc<FastPlan>>> {
        let blob = self.slot.with(|t| t.catalog())?;
        if let Ok(cache) = p.cache.lock()
            && let Some((seen, plan)) = cache.as_ref()
            && Arc::ptr_eq(seen, &blob)
        {
            return Ok(plan.clone());
        }
        let plan = match insert_shape(&p.statement, self) {
            Some(row) => Some(Arc::new(FastPlan::Insert(row))),
            None => match self
                .ctx
                .state()
                .statement_to_plan(p.statement.clone())
                .await
            {
                Ok(plan) => recognise(&plan, self).map(|q| Arc::new(FastPlan::Point(q))),
                Err(_) => None,
            },
        };
        if let Ok(mut cache) = p.cache.lock() {
            *cache = Some((blob, plan.clone()));
        }
        Ok(plan)
    }
}

/// Matches `Projection(columns) ← Filter(col = x AND …) ← TableScan`.
fn recognise(plan: &LogicalPlan, session: &Session) -> Option<PointQuery> {
    let LogicalPlan::Projection(projection) = plan else {
        return None;
    };
    let LogicalPlan::Filter(filter) = projection.input.as_ref() else {
        return None;
    };
    let LogicalPlan::TableScan(scan) = filter.input.as_ref() else {
        return None;
    };
    if scan.fetch.is_some() || !scan.filters.is_empty() || scan.projection.is_some() {
        return None;
    }
    let table = crate::schemas::resolve_ref(&session.catalog, &scan.table_name).ok()?;
    let provider = session.tables.get(&table)?;
    let schema = &provider.def().schema;
    let columns = projection
        .expr
        .iter()
        .map(|e| match e {
            Expr::Column(c) => schema.index_of(&c.name).ok(),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let mut equalities = Vec::new();
    conjuncts(&filter.predicate, &mut |e| {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = e
        else {
            return false;
        };
        let (col, other) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), other) | (other, Expr::Column(c)) => (c, other),
            _ => return false,
        };
        let Ok(col) = schema.index_of(&col.name) else {
            return false;
        };
        let operand = match other {
            Expr::Placeholder(p) => {
                match p.id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n >= 1 => Operand::Param(n - 1),
                    _ => return false,
                }
            }
            Expr::Literal(v, _) => Operand::Value(v.clone()),
            _ => return false,
        };
        equalities.push((col, operand));
        true
    })
    .then_some(())?;
    Some(PointQuery {
        table,
        columns,
        equalities,
        schema: Arc::new(plan.schema().as_arrow().clone()),
    })
}

/// Recognises `INSERT INTO t [(c, …)] VALUES (v, …)` with one row of `$n`
/// parameters and plain literals, no column relying on a DEFAULT. The
/// statement must print back exactly as that shape, so no clause sqlparser
/// knows (ON CONFLICT, RETURNING, OVERWRITE, …) can slip through.
fn insert_shape(statement: &DFStatement, session: &Session) -> Option<InsertRow> {
    let DFStatement::Statement(stmt) = statement else {
        return None;
    };
    let SqlStatement::Insert(insert) = stmt.as_ref() else {
        return None;
    };
    if crate::insert::needs_session(insert) || crate::insert::fires(session, insert) {
        return None;
    }
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    let table = crate::schemas::resolve(&session.catalog, name).ok()?;
    let provider = session.tables.get(&table)?;
    let SetExpr::Values(values) = insert.source.as_ref()?.body.as_ref() else {
        return None;
    };
    let [row] = values.rows.as_slice() else {
        return None;
    };
    let row = &row.content;
    let columns: Vec<String> = insert
        .columns
        .iter()
        .map(|c| c.0.last().and_then(|p| p.as_ident()).map(normalize))
        .collect::<Option<_>>()?;
    let canonical = format!(
        "INSERT INTO {name}{} VALUES ({})",
        if insert.columns.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = insert.columns.iter().map(|c| c.to_string()).collect();
            format!(" ({})", names.join(", "))
        },
        row.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if stmt.to_string() != canonical {
        return None;
    }
    let meta = provider.meta();
    let names: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
    let targets: Vec<usize> = if columns.is_empty() {
        (0..names.len()).collect()
    } else {
        columns
            .iter()
            .map(|c| names.iter().position(|n| n == c))
            .collect::<Option<_>>()?
    };
    if targets.len() != row.len() {
        return None;
    }
    let mut out: Vec<Option<Operand>> = vec![None; names.len()];
    for (target, expr) in targets.iter().zip(row) {
        let slot = out.get_mut(*target)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(operand(expr)?);
    }
    let missing_default = out
        .iter()
        .zip(&meta.columns)
        .any(|(o, c)| o.is_none() && c.default.is_some());
    (!missing_default).then_some(InsertRow { table, values: out })
}

/// A value written as a literal, possibly negated: `(negative, value)` for
/// `v` and `-v`; `None` for any other expression.
pub(crate) fn signed_value(expr: &SqlExpr) -> Option<(bool, &SqlValue)> {
    match expr {
        SqlExpr::Value(v) => Some((false, &v.value)),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            SqlExpr::Value(v) => Some((true, &v.value)),
            _ => None,
        },
        _ => None,
    }
}

/// A `$n` parameter or a plain literal.
fn operand(expr: &SqlExpr) -> Option<Operand> {
    let (negative, value) = signed_value(expr)?;
    let scalar = match value {
        SqlValue::Placeholder(p) if !negative => {
            let n: usize = p.strip_prefix('$')?.parse().ok()?;
            return n.checked_sub(1).map(Operand::Param);
        }
        SqlValue::Number(n, _) => {
            let text = if negative { format!("-{n}") } else { n.clone() };
            match text.parse::<i64>() {
                Ok(i) => ScalarValue::Int64(Some(i)),
                Err(_) => ScalarValue::Float64(Some(text.parse::<f64>().ok()?)),
            }
        }
        SqlValue::SingleQuotedString(s) if !negative => ScalarValue::Utf8(Some(s.clone())),
        SqlValue::Boolean(b) if !negative => ScalarValue::Boolean(Some(*b)),
        SqlValue::Null if !negative => ScalarValue::Null,
        _ => return None,
    };
    Some(Operand::Value(scalar))
}

/// Calls `f` on every `AND`ed term; false if `f` rejects one.
fn conjuncts(e: &Expr, f: &mut impl FnMut(&Expr) -> bool) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => conjuncts(left, f) && conjuncts(right, f),
        other => f(other),
    }
}

/// The best index led by one of the equality columns: unique first, then
/// the one whose leading columns are most covered.
fn pick_index<'a>(indexes: &'a [IndexInfo], values: &[(usize, Vec<u8>)]) -> Option<&'a IndexInfo> {
    let has = |c: &usize| values.iter().any(|(v, _)| v == c);
    indexes
        .iter()
        .filter(|i| i.columns.first().is_some_and(has))
        .max_by_key(|i| {
            let covered = i.columns.iter().take_while(|c| has(c)).count();
            (i.unique && covered == i.columns.len(), covered)
        })
}

/// Applies every equality to the rows the index returned and projects them.
fn finish(
    batch: &RecordBatch,
    read: &[usize],
    values: &[(usize, Vec<u8>)],
    point: &PointQuery,
) -> Result<RecordBatch> {
    let exec = |e: arrow::error::ArrowError| ErrorKind::Execution(e.to_string());
    let mut keep = vec![true; batch.num_rows()];
    let filtered;
    let batch = if values.is_empty() {
        batch
    } else {
        for (col, want) in values {
            let Some(pos) = read.iter().position(|r| r == col) else {
                continue;
            };
            let (keys, nulls) = index_keys(&[batch.column(pos).clone()])
                .map_err(|e| ErrorKind::Execution(e.to_string()))?;
            for ((k, null), flag) in keys.iter().zip(nulls).zip(keep.iter_mut()) {
                *flag &= !null && k == Some(want.as_slice());
            }
        }
        filtered = filter_record_batch(batch, &BooleanArray::from(keep)).map_err(exec)?;
        &filtered
    };
    let columns = point
        .columns
        .iter()
        .filter_map(|c| read.iter().position(|r| r == c))
        .map(|i| batch.column(i).clone())
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(point.schema.clone(), columns, &options).map_err(exec)?)
}
