//! Deep statements: a statement-complexity cap and a big stack.
//!
//! Parsed SQL and DataFusion plans are trees, and much of the code that walks
//! them recurses: sqlparser's and DataFusion's `Clone`, `Drop`, `Display`,
//! `Hash` of ASTs and expressions, DataFusion's schema derivation, our own
//! filter analysis (`indexes.rs`, `pruning.rs`). DataFusion's
//! `recursive_protection` feature only guards the planner's and optimizer's
//! own tree walks, so a 250-term `UNION ALL` or `1+1+…` used to overflow a
//! 2 MiB thread stack (tokio workers, test threads) and abort the process.
//!
//! Two measures:
//!
//! 1. [`check_depth`] rejects, right after parsing, statements whose
//!    expressions or set operations (`UNION`/`INTERSECT`/`EXCEPT` chains)
//!    nest more than [`MAX_DEPTH`] deep, with `StatementTooComplex`
//!    (SQLSTATE 54001, as PostgreSQL's "stack depth limit exceeded"). The
//!    walk uses sqlparser's visitor, which is itself stack-protected.
//!    sqlparser's own recursion limit (nested parentheses or subqueries),
//!    raised from its default of 50 to [`MAX_DEPTH`] ([`parse_sql`]; the
//!    parser runs on the big stack too), is reported with the same
//!    SQLSTATE.
//! 2. [`BigStack`] polls a statement's future on a stack of [`STACK_SIZE`]
//!    bytes whenever less than [`RED_ZONE`] bytes of the caller's stack
//!    remain (always, on ordinary threads), so everything below the cap
//!    fits whatever thread the application runs the connection on. The
//!    stack is reserved virtual memory; only the pages touched are used.

use crate::error::{Error, ErrorKind};
use datafusion::common::config::{ConfigNonZeroUsize, ConfigOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::{CopyToSource, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Value, Visit, Visitor};
use futures::Stream;
use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Deepest nesting of expressions (`1+1+…` is a left-deep tree, as is a
/// chain of `AND`s) or of set operations a statement may have.
pub const MAX_DEPTH: usize = 1000;

/// Parses `sql` with sqlparser's recursion limit raised to [`MAX_DEPTH`]
/// (call it on a big stack).
pub fn parse_sql(sql: &str) -> Result<VecDeque<DFStatement>, DataFusionError> {
    DFParserBuilder::new(sql)
        .with_recursion_limit(MAX_DEPTH)
        .build()?
        .parse_statements()
}

/// Raises the recursion limit of DataFusion's own parser (view definitions
/// are planned from their text) to [`MAX_DEPTH`] as well.
pub fn raise_parser_limit(options: &mut ConfigOptions) {
    if let Ok(limit) = ConfigNonZeroUsize::try_new(MAX_DEPTH) {
        options.sql_parser.recursion_limit = limit;
    }
}

/// Highest parameter number a statement may use (`$65535`, PostgreSQL's
/// limit). DataFusion sizes a list by the highest number it sees: `$4294967296`
/// in an INSERT asked for 32 GiB and aborted the process.
pub const MAX_PARAMETER: u64 = 65_535;

/// Below this much remaining stack a statement moves to its own stack.
pub const RED_ZONE: usize = 64 << 20;

/// Statements at most this deep may take the prepared fast paths on the
/// caller's stack (switching stacks costs a few microseconds, as much as a
/// point query).
pub const SHALLOW: usize = 32;

/// The stack a statement runs on.
pub const STACK_SIZE: usize = 1 << 30;

/// Polls the wrapped future on a big stack (see the module docs).
pub struct BigStack<F>(Pin<Box<F>>);

impl<F: Future> BigStack<F> {
    /// Wraps `future`.
    pub fn new(future: F) -> Self {
        Self(Box::pin(future))
    }
}

impl<F: Future> Future for BigStack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.0.as_mut();
        stacker::maybe_grow(RED_ZONE, STACK_SIZE, || inner.poll(cx))
    }
}

/// A record batch stream whose polls run on a big stack.
pub fn big_stack_stream(inner: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let schema = inner.schema();
    Box::pin(RecordBatchStreamAdapter::new(schema, BigStackStream(inner)))
}

struct BigStackStream(SendableRecordBatchStream);

impl Stream for BigStackStream {
    type Item = <SendableRecordBatchStream as Stream>::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = self.0.as_mut();
        stacker::maybe_grow(RED_ZONE, STACK_SIZE, || inner.poll_next(cx))
    }
}

/// Runs `f` on a big stack (the synchronous form of [`BigStack`]).
pub fn on_big_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, STACK_SIZE, f)
}

/// Measures nesting while sqlparser's visitor walks a statement.
#[derive(Default)]
struct Depth {
    expr: usize,
    max: usize,
}

impl Visitor for Depth {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        // Set operations are a tree of `SetExpr`s the visitor has no hook
        // for; walk it with an explicit stack.
        let mut stack = vec![(query.body.as_ref(), 1usize)];
        while let Some((set, depth)) = stack.pop() {
            self.max = self.max.max(depth);
            if depth > MAX_DEPTH {
                return ControlFlow::Break(format!(
                    "set operations (UNION, INTERSECT, EXCEPT) nest more than {MAX_DEPTH} deep"
                ));
            }
            if let SetExpr::SetOperation { left, right, .. } = set {
                stack.push((left, depth + 1));
                stack.push((right, depth + 1));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &v.value
            && let Some(digits) = p.strip_prefix('$')
            && digits.parse::<u64>().map_or(true, |n| n > MAX_PARAMETER)
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            return ControlFlow::Break(format!(
                "parameter {p} is beyond the highest allowed, ${MAX_PARAMETER}"
            ));
        }
        self.expr += 1;
        self.max = self.max.max(self.expr);
        if self.expr > MAX_DEPTH {
            return ControlFlow::Break(format!("expressions nest more than {MAX_DEPTH} deep"));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<String> {
        self.expr = self.expr.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

/// Rejects a statement nested deeper than [`MAX_DEPTH`] (SQLSTATE 54001);
/// otherwise returns its nesting depth.
pub fn check_depth(statement: &DFStatement) -> Result<usize, Error> {
    let mut depth = Depth::default();
    let flow = match statement {
        DFStatement::Statement(s) => s.visit(&mut depth),
        DFStatement::CopyTo(c) => match &c.source {
            CopyToSource::Query(q) => q.visit(&mut depth),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        DFStatement::Explain(e) => return check_depth(&e.statement),
        DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Continue(()) => Ok(depth.max),
        ControlFlow::Break(why) => Err(ErrorKind::StatementTooComplex(why).into()),
    }
}
