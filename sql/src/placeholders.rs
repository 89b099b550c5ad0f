//! Parameter placeholders: one numbering for every spelling.
//!
//! DataFusion binds only `$1`, `$2`, …; users coming from SQLite, rusqlite
//! or JDBC write `?` and `?NNN`. Right after parsing, every placeholder of a
//! statement is rewritten to the `$N` form, with SQLite's rule:
//!
//! - `$N` and `?N` are parameter N (1-based);
//! - a bare `?` is one more than the largest parameter number used so far in
//!   the statement (so `?, ?, ?` are `$1, $2, $3` and `?5, ?` are `$5, $6`),
//!   counted in the order the parser visits the statement, which is the
//!   order of the text.
//!
//! Named placeholders (`:name`, `@name`, `$name`) are refused here, when the
//! statement is parsed or prepared (SQLSTATE 42601), instead of failing
//! later at execution: bind by position instead. Because the rewrite happens
//! before anything else sees the statement, prepared statements, their fast
//! paths and `execute_with` all agree on the numbering.

use crate::error::{ErrorKind, Result};
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr, Value, VisitMut, VisitorMut};
use std::ops::ControlFlow;

/// Rewrites the placeholders of `statement` to `$N` (module docs).
///
/// # Errors
/// `Syntax` (42601) for a named placeholder or a malformed number.
pub fn normalize(statement: &mut DFStatement) -> Result<()> {
    let mut numbering = Numbering::default();
    let flow = match statement {
        DFStatement::Statement(s) => s.visit(&mut numbering),
        DFStatement::CopyTo(c) => match &mut c.source {
            CopyToSource::Query(q) => q.visit(&mut numbering),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        DFStatement::Explain(e) => return normalize(&mut e.statement),
        DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(why) => Err(ErrorKind::Syntax(why).into()),
    }
}

/// The largest parameter number seen so far.
#[derive(Default)]
struct Numbering {
    max: u64,
}

impl Numbering {
    /// The `$N` form of placeholder `p`.
    fn rewrite(&mut self, p: &str) -> std::result::Result<String, String> {
        let (sigil, rest) = p.split_at(p.chars().next().map_or(0, char::len_utf8));
        let number = match (sigil, rest) {
            ("?", "") => self.max.saturating_add(1),
            ("?" | "$", digits)
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                // Too many digits for u64: leave it for the depth check,
                // which reports parameters beyond the highest allowed.
                match digits.parse::<u64>() {
                    Ok(0) => {
                        return Err(format!("parameter {p} is invalid: parameters start at 1"));
                    }
                    Ok(n) => n,
                    Err(_) => return Ok(format!("${digits}")),
                }
            }
            _ => {
                return Err(format!(
                    "named parameter {p} is not supported; use positional parameters ($1, ?1 or ?)"
                ));
            }
        };
        self.max = self.max.max(number);
        Ok(format!("${number}"))
    }
}

impl VisitorMut for Numbering {
    type Break = String;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &mut v.value
        {
            match self.rewrite(p) {
                Ok(n) => *p = n,
                Err(why) => return ControlFlow::Break(why),
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn rewritten(sql: &str) -> Result<String> {
        let mut statements = DFParser::parse_sql(sql)?;
        let mut s = statements.pop_front().unwrap();
        normalize(&mut s)?;
        Ok(s.to_string())
    }

    #[test]
    fn question_marks_number_in_order() {
        assert_eq!(
            rewritten("SELECT ? + ?, ? FROM t WHERE a = ?").unwrap(),
            "SELECT $1 + $2, $3 FROM t WHERE a = $4"
        );
    }

    #[test]
    fn numbered_forms_agree() {
        assert_eq!(rewritten("SELECT ?2, $1, ?").unwrap(), "SELECT $2, $1, $3");
        assert_eq!(
            rewritten("INSERT INTO t VALUES (?1, ?1)").unwrap(),
            "INSERT INTO t VALUES ($1, $1)"
        );
    }

    #[test]
    fn named_and_zero_are_refused() {
        for sql in ["SELECT :name", "SELECT ?0", "SELECT $0"] {
            let e = rewritten(sql).unwrap_err();
            assert_eq!(e.sqlstate(), "42601", "{sql}: {e}");
        }
        assert!(
            rewritten("SELECT :name")
                .unwrap_err()
                .to_string()
                .contains(":name")
        );
    }
}
