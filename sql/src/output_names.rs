//! Repeated column names in a query's result (`SELECT a AS c, b AS c`,
//! `SELECT 1, CAST(1 AS BIGINT)`).
//!
//! PostgreSQL allows the final projection to repeat a name; DataFusion
//! requires every schema, the final one included, to have unique names
//! ("Projections require unique expression names"). Arrow does not: a
//! `RecordBatch` may repeat field names. So when planning fails for that
//! reason only, the statement is planned again with each item of its
//! top-level SELECT lists (every branch of a UNION/INTERSECT/EXCEPT, and the
//! source of an INSERT) aliased by position (`__entidb_col_<i>`), and the
//! result's fields get their real names back after execution: the user's
//! alias, or the name DataFusion gives the expression.
//!
//! Only the retry pays for this; statements whose names are unique are
//! planned once, as before. An `ORDER BY` naming an alias that occurs once
//! keeps working (it is renamed too). Wildcards (`SELECT *, a`) and
//! subqueries in FROM are not rewritten: their duplicates still fail.

use crate::ddl::normalize;
use crate::error::{ErrorKind, Result};
use crate::session::{Output, Session};
use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, OrderByKind, Query, SelectItem, SetExpr, Statement,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

const PREFIX: &str = "__entidb_col_";

/// Plans `stmt`, retrying with positional aliases when DataFusion refuses
/// only a repeated name; returns the names to give the result then.
pub(crate) async fn plan(
    session: &mut Session,
    stmt: DFStatement,
    params: &[ScalarValue],
) -> Result<(LogicalPlan, Option<Vec<String>>)> {
    let retry = matches!(&stmt, DFStatement::Statement(s)
        if matches!(s.as_ref(), Statement::Query(_) | Statement::Insert(_)))
    .then(|| stmt.clone());
    let error = match session.plan(stmt, params).await {
        Ok(plan) => return Ok((plan, None)),
        Err(e) => e,
    };
    let (Some(mut stmt), true) = (retry, is_duplicate_name_error(&error.to_string())) else {
        return Err(error);
    };
    let Some(given) = alias_by_position(&mut stmt) else {
        return Err(error);
    };
    match session.plan(stmt, params).await {
        Ok(plan) => {
            let names = output_names(&plan, &given);
            Ok((plan, Some(names)))
        }
        Err(_) => Err(error),
    }
}

/// True when planning failed because the final projection repeats a name.
pub(crate) fn is_duplicate_name_error(message: &str) -> bool {
    message.contains("require unique expression names")
        || message.contains("duplicate qualified field name")
        || message.contains("duplicate unqualified field name")
        || message.contains("which would be ambiguous")
        // `SELECT DISTINCT 58 col1, col1 AS col1`: DataFusion resolves the
        // repeated output name as an ambiguous reference. A reference that
        // is really ambiguous fails the retry too, with its own error.
        || message.contains("is ambiguous")
}

/// The names the user wrote for each position (`None`: unaliased), when
/// `stmt` is a query or INSERT whose select lists can be rewritten; the
/// rewritten statement in place.
pub(crate) fn alias_by_position(stmt: &mut DFStatement) -> Option<Vec<Option<String>>> {
    let DFStatement::Statement(s) = stmt else {
        return None;
    };
    let query = match s.as_mut() {
        Statement::Query(q) => q.as_mut(),
        Statement::Insert(insert) => insert.source.as_deref_mut()?,
        _ => return None,
    };
    alias_query(query)
}

fn alias_query(query: &mut Query) -> Option<Vec<Option<String>>> {
    let names = alias_set(query.body.as_mut())?;
    // ORDER BY an alias that occurs once: follow the rename.
    if let Some(order) = query.order_by.as_mut()
        && let OrderByKind::Expressions(exprs) = &mut order.kind
    {
        for e in exprs {
            if let Expr::Identifier(ident) = &e.expr {
                let name = normalize(ident);
                let mut at = names
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.as_deref() == Some(name.as_str()));
                if let (Some((i, _)), None) = (at.next(), at.next()) {
                    e.expr = Expr::Identifier(Ident::new(format!("{PREFIX}{i}")));
                }
            }
        }
    }
    Some(names)
}

/// Aliases every select list of a set-operation tree; the names are the
/// leftmost one's.
fn alias_set(set: &mut SetExpr) -> Option<Vec<Option<String>>> {
    match set {
        SetExpr::Select(select) => {
            let mut names = Vec::with_capacity(select.projection.len());
            for (i, item) in select.projection.iter_mut().enumerate() {
                let alias = Ident::new(format!("{PREFIX}{i}"));
                let (expr, name) = match item {
                    SelectItem::UnnamedExpr(expr) => (expr.clone(), None),
                    SelectItem::ExprWithAlias { expr, alias } => {
                        (expr.clone(), Some(normalize(alias)))
                    }
                    _ => return None,
                };
                *item = SelectItem::ExprWithAlias { expr, alias };
                names.push(name);
            }
            Some(names)
        }
        SetExpr::SetOperation { left, right, .. } => {
            let names = alias_set(left)?;
            alias_set(right)?;
            Some(names)
        }
        SetExpr::Query(q) => alias_query(q),
        _ => None,
    }
}

/// The result's names: the user's aliases, the others as DataFusion names
/// the expressions in the (first) projection carrying the positional
/// aliases.
pub(crate) fn output_names(plan: &LogicalPlan, given: &[Option<String>]) -> Vec<String> {
    let mut found: HashMap<String, String> = HashMap::new();
    let mut node = Some(plan);
    while let Some(p) = node {
        if let LogicalPlan::Projection(projection) = p
            && projection
                .expr
                .iter()
                .any(|e| matches!(e, LogicalExpr::Alias(a) if a.name.starts_with(PREFIX)))
        {
            for e in &projection.expr {
                if let LogicalExpr::Alias(a) = e {
                    let name = match a.expr.as_ref() {
                        LogicalExpr::Column(c) => c.name.clone(),
                        other => other.schema_name().to_string(),
                    };
                    found.insert(a.name.clone(), name);
                }
            }
            break;
        }
        node = p.inputs().into_iter().next();
    }
    given
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let positional = format!("{PREFIX}{i}");
            name.clone()
                .or_else(|| found.get(&positional).cloned())
                .unwrap_or(positional)
        })
        .collect()
}

/// `schema` with its fields renamed to `names` (by position).
fn renamed_schema(schema: &Schema, names: &[String]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match names.get(i) {
            Some(name) => f.as_ref().clone().with_name(name),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with its fields renamed (its own types: a batch may differ from
/// the logical schema, e.g. in the nullability or width of a UNION column).
fn rename_batch(batch: &RecordBatch, names: &[String]) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new(
        renamed_schema(&batch.schema(), names),
        batch.columns().to_vec(),
    )
}

/// The output of a query with its fields renamed.
pub(crate) fn rename_output(output: Output, names: &[String]) -> Result<Output> {
    match output {
        Output::Rows(schema, batches) => {
            let schema = renamed_schema(&schema, names);
            let batches = batches
                .iter()
                .map(|b| rename_batch(b, names))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ErrorKind::Execution(e.to_string()))?;
            Ok(Output::Rows(schema, batches))
        }
        other => Ok(other),
    }
}

/// A stream whose batches carry the renamed fields.
pub(crate) fn rename_stream(
    stream: SendableRecordBatchStream,
    names: &[String],
) -> SendableRecordBatchStream {
    let schema = renamed_schema(&stream.schema(), names);
    let names = names.to_vec();
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream.map(move |b| {
            b.and_then(|b| {
                rename_batch(&b, &names).map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
            })
        }),
    ))
}
