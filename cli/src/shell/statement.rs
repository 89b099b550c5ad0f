//! What kind of statement the shell is about to run, and the column headers
//! the user wrote.
//!
//! The shell parses each statement once before handing its text to the
//! connection: queries are streamed ([`entidb::Connection::query_stream`]),
//! everything else runs as a script; DML reports its row count. DataFusion
//! names an unaliased expression column after its logical expression
//! (`Int64(1)`, `Utf8("a")`); [`Classified::headers`] gives the expression
//! as it was written instead (`1`, `'a'`), by position, when the top-level
//! projection has no wildcard. The parse runs on the big stack
//! ([`entidb_sql::stack::on_big_stack`]): deep statements must not overflow
//! the shell's main thread before the session rejects them.

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Statement};

/// How the shell runs a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A SELECT (or VALUES, set operation): streamed.
    Query,
    /// INSERT/UPDATE/DELETE/MERGE and the like: the row count is printed
    /// with this verb (`3 rows inserted`).
    Dml(&'static str),
    /// Anything else (DDL, transaction control, SHOW, EXPLAIN, PRAGMA), and
    /// text that does not parse: the session reports the syntax error.
    Other,
}

/// A statement's kind and the headers written for its columns.
#[derive(Debug, Clone)]
pub struct Classified {
    /// How to run it.
    pub kind: Kind,
    /// Per output column, the expression text to show instead of
    /// DataFusion's name (`None`: keep the name). Empty when unknown.
    pub headers: Vec<Option<String>>,
}

/// Parses `sql` (one statement) and classifies it.
pub fn classify(sql: &str) -> Classified {
    entidb_sql::stack::on_big_stack(|| {
        let parsed = DFParser::parse_sql(sql).ok();
        let statement = match parsed.as_ref().map(|p| (p.len(), p.front())) {
            Some((1, Some(DFStatement::Statement(s)))) => Some(s.as_ref()),
            _ => None,
        };
        let kind = statement.map_or(Kind::Other, kind_of);
        let headers = match statement {
            Some(Statement::Query(q)) if kind == Kind::Query => query_headers(q),
            _ => Vec::new(),
        };
        Classified { kind, headers }
    })
}

fn kind_of(statement: &Statement) -> Kind {
    match statement {
        Statement::Query(q) if is_plain_query(q) => Kind::Query,
        Statement::Insert(_) => Kind::Dml("inserted"),
        Statement::Update { .. } => Kind::Dml("updated"),
        Statement::Delete(_) => Kind::Dml("deleted"),
        Statement::Merge { .. } => Kind::Dml("merged"),
        Statement::Copy { .. } => Kind::Dml("copied"),
        _ => Kind::Other,
    }
}

/// A query whose body only reads (no data-modifying body, no
/// `SELECT … INTO`).
fn is_plain_query(q: &Query) -> bool {
    fn reads(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(s) => s.into.is_none(),
            SetExpr::Query(q) => reads(&q.body),
            SetExpr::SetOperation { left, right, .. } => reads(left) && reads(right),
            SetExpr::Values(_) | SetExpr::Table(_) => true,
            _ => false,
        }
    }
    reads(&q.body)
}

fn query_headers(q: &Query) -> Vec<Option<String>> {
    let mut body = q.body.as_ref();
    loop {
        body = match body {
            SetExpr::Query(q) => q.body.as_ref(),
            SetExpr::SetOperation { left, .. } => left.as_ref(),
            SetExpr::Select(s) => return projection_headers(&s.projection),
            _ => return Vec::new(),
        }
    }
}

fn projection_headers(items: &[SelectItem]) -> Vec<Option<String>> {
    let mut headers = Vec::new();
    for item in items {
        headers.push(match item {
            SelectItem::UnnamedExpr(Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => None,
            SelectItem::UnnamedExpr(e) => Some(e.to_string()),
            SelectItem::ExprWithAlias { .. } => None,
            // A wildcard expands to an unknown number of columns.
            _ => return Vec::new(),
        });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_queries_dml_and_the_rest() {
        assert_eq!(classify("SELECT 1").kind, Kind::Query);
        assert_eq!(classify("VALUES (1)").kind, Kind::Query);
        assert_eq!(classify("SELECT 1 UNION SELECT 2").kind, Kind::Query);
        assert_eq!(
            classify("INSERT INTO t VALUES (1)").kind,
            Kind::Dml("inserted")
        );
        assert_eq!(classify("DELETE FROM t").kind, Kind::Dml("deleted"));
        assert_eq!(classify("UPDATE t SET a = 1").kind, Kind::Dml("updated"));
        assert_eq!(classify("CREATE TABLE t (a INT)").kind, Kind::Other);
        assert_eq!(classify("EXPLAIN SELECT 1").kind, Kind::Other);
        assert_eq!(classify("SELEC 1").kind, Kind::Other);
    }

    #[test]
    fn headers_are_the_expressions_as_written() {
        let h = classify("SELECT 1, 'a', a, t.b, a + 1 AS x, count(*) FROM t").headers;
        assert_eq!(
            h,
            vec![
                Some("1".into()),
                Some("'a'".into()),
                None,
                None,
                None,
                Some("count(*)".into())
            ]
        );
        assert!(classify("SELECT *, 1 FROM t").headers.is_empty());
        assert_eq!(
            classify("SELECT 1 UNION SELECT 2").headers,
            vec![Some("1".into())]
        );
    }
}
