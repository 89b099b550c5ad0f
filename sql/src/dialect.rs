//! Rewrites of the parsed statement before planning, and the SQL dialect
//! setting `SET entidb.dialect = 'postgresql' | 'sqlite'`.
//!
//! For every session (PostgreSQL semantics stay the default):
//!
//! - `FROM information_schema.table_constraints` / `key_column_usage` is a
//!   call of EntiDB's table functions for them (`info_schema.rs`);
//! - unary `+` is the identity on any type (`SELECT +'abc'`); DataFusion
//!   accepts it only on numbers, intervals and timestamps. PostgreSQL
//!   refuses it on text; accepting more is harmless and SQLite-written
//!   SQL uses it freely.
//! - a subquery in FROM without an alias gets one, `"unnamed subquery N"`
//!   (N counting them in the statement), as PostgreSQL 16 and SQLite
//!   accept it (PostgreSQL 15 refuses, 42601): the names inside it are not
//!   seen outside. DataFusion would keep the inner qualifiers, so that
//!   `SELECT t.v FROM (SELECT * FROM s.t), t` read `s.t`'s `v` for `t.v`
//!   (`exposed_names.rs` relies on this rewrite);
//! - SQLite's aggregates `total(x)` (`coalesce(sum(__total_arg(x)), 0.0)`,
//!   `__total_arg` a CAST to DOUBLE: a float, 0.0 over no rows) and
//!   `group_concat(x [, sep])` (`string_agg(CAST(x AS TEXT), sep)`, `sep`
//!   defaulting to `','`; DISTINCT keeps the first-seen order through
//!   `group_concat.rs`), keeping FILTER and OVER. PostgreSQL has neither
//!   name, so nothing valid there changes meaning.
//!
//! With `entidb.dialect = 'sqlite'` (what `entidb-slt --sqlite` sets for
//! SQLite's own test corpus) SQLite's semantics where they contradict
//! PostgreSQL's:
//!
//! - division by zero (`/`, `%`) yields NULL instead of an error: the
//!   divisor is wrapped in `NULLIF(divisor, 0)`;
//! - `REAL` and `FLOAT` are 64-bit floats (SQLite has no 32-bit float;
//!   DataFusion maps both to Float32) and every integer type is a BIGINT
//!   (SQLite's integers are 64-bit), in `CREATE TABLE` and `CAST`;
//! - SQLite's syntax sqlparser does not parse is rewritten in the text,
//!   token by token, before parsing ([`sqlite_text`]): `x IN ()` is
//!   `x IN (SELECT NULL WHERE false)`, `x IN t` (a table) is
//!   `x IN (SELECT * FROM t)`, and the index hints `INDEXED BY i` and
//!   `NOT INDEXED` are dropped;
//! - a bare column in an aggregate query (`SELECT a, b FROM t GROUP BY a`)
//!   takes its value from some row of the group (`bare_columns.rs`);
//! - `UPDATE … SET x = 1, x = 2` keeps the rightmost assignment of a
//!   column.
//! - `sum`, `avg` and `total` read text as numbers (`'12abc'` is 12,
//!   `'abc'` 0), through `__sqlite_number` (`functions.rs`).
//! - `DROP TABLE` of a stored table leaves the views over it (broken until
//!   a table of that name exists again), as SQLite does; PostgreSQL's
//!   default refuses (2BP01) unless CASCADE (`ddl.rs`).
//!
//! The rewrites are AST-to-AST (sqlparser's `VisitorMut`), so everything
//! downstream — planning, views, EXPLAIN — sees ordinary SQL; a view stores
//! its query after them. A script is parsed before it runs, so the text
//! rewrites of a `SET entidb.dialect = 'sqlite'` apply from the next
//! script on.

use crate::error::{ErrorKind, Result};
use crate::text_rewrite::{Tokens, apply};
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::CastKind;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, DuplicateTreatment, ExactNumberInfo, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident, ObjectName, Query, Statement,
    TableAlias, TableFactor, UnaryOperator, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;
use std::borrow::Cow;
use std::ops::ControlFlow;

/// SQLite's reading of text as a REAL: the longest leading decimal number
/// (after leading spaces: sign, digits, point, exponent), 0.0 when there
/// is none (`'12abc'` 12.0, `'abc'` 0.0). Used by the sqlite dialect's
/// aggregates and by `entidb-slt`'s SQLite value formatting.
pub fn text_as_real(s: &str) -> f64 {
    let t = s.trim_start();
    let candidate_len = t
        .bytes()
        .take(64)
        .take_while(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        .count();
    (1..=candidate_len)
        .rev()
        .find_map(|end| t.get(..end).and_then(|p| p.parse::<f64>().ok()))
        .unwrap_or(0.0)
}

/// Whose semantics a session follows where PostgreSQL and SQLite differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// PostgreSQL's (the default).
    #[default]
    Postgres,
    /// SQLite's, for running SQLite's tests and SQLite-written SQL.
    Sqlite,
}

impl Dialect {
    /// Parses the value of `SET entidb.dialect` (quoted or not).
    ///
    /// # Errors
    /// `InvalidArgument` (22023) for an unknown dialect.
    pub fn parse(value: &str) -> Result<Self> {
        match value
            .trim_matches(['\'', '"'])
            .to_ascii_lowercase()
            .as_str()
        {
            "postgresql" | "postgres" | "default" => Ok(Dialect::Postgres),
            "sqlite" => Ok(Dialect::Sqlite),
            other => Err(ErrorKind::InvalidArgument(format!(
                "unknown dialect {other}: use 'postgresql' or 'sqlite'"
            ))
            .into()),
        }
    }
}

/// Applies the rewrites for `dialect` to `stmt` in place.
pub(crate) fn rewrite(stmt: &mut DFStatement, dialect: Dialect) {
    if dialect == Dialect::Sqlite
        && let DFStatement::Statement(s) = stmt
        && let Statement::Update(update) = s.as_mut()
    {
        rightmost_assignments(&mut update.assignments);
    }
    let mut rewriter = Rewriter {
        dialect,
        unnamed: 0,
    };
    let _ = match stmt {
        DFStatement::Statement(s) => s.as_mut().visit(&mut rewriter),
        DFStatement::Explain(e) => {
            rewrite(&mut e.statement, dialect);
            ControlFlow::Continue(())
        }
        DFStatement::CopyTo(c) => match &mut c.source {
            CopyToSource::Query(q) => q.visit(&mut rewriter),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
}

/// SQLite's rule for `UPDATE … SET x = 1, x = 2`: all but the rightmost
/// assignment of a column are ignored (PostgreSQL refuses it: 42601).
fn rightmost_assignments(assignments: &mut Vec<datafusion::sql::sqlparser::ast::Assignment>) {
    let name =
        |a: &datafusion::sql::sqlparser::ast::Assignment| a.target.to_string().to_lowercase();
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<_> = assignments
        .drain(..)
        .rev()
        .filter(|a| seen.insert(name(a)))
        .collect();
    kept.reverse();
    *assignments = kept;
}

struct Rewriter {
    dialect: Dialect,
    /// Unaliased subqueries in FROM named so far.
    unnamed: usize,
}

/// The prefix of the alias an unaliased subquery in FROM is given.
/// (A quoted name with a space: no table or alias is likely to have it.)
pub(crate) const UNNAMED_SUBQUERY: &str = "unnamed subquery ";

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::UnaryOp {
                op: UnaryOperator::Plus,
                expr: inner,
            } => {
                let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                *expr = Expr::Nested(Box::new(inner));
            }
            Expr::BinaryOp {
                op: BinaryOperator::Divide | BinaryOperator::Modulo,
                right,
                ..
            } if self.dialect == Dialect::Sqlite => {
                let divisor = std::mem::replace(right.as_mut(), Expr::value(Value::Null));
                **right = nullif_zero(divisor);
            }
            Expr::Cast { data_type, .. } if self.dialect == Dialect::Sqlite => {
                widen_numeric(data_type);
            }
            Expr::Function(f) if is_named(f, "total") => {
                *expr = total(f.clone(), self.dialect == Dialect::Sqlite);
            }
            Expr::Function(f)
                if self.dialect == Dialect::Sqlite
                    && (is_named(f, "sum") || is_named(f, "avg")) =>
            {
                read_as_numbers(f);
            }
            Expr::Function(f) if is_named(f, "group_concat") => group_concat(f),
            Expr::Value(_) if self.dialect != Dialect::Sqlite => exact_integer(expr),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        crate::info_schema::redirect(factor);
        if let TableFactor::Derived {
            alias: alias @ None,
            ..
        } = factor
        {
            self.unnamed += 1;
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::with_quote('"', format!("{UNNAMED_SUBQUERY}{}", self.unnamed)),
                columns: vec![],
                at: None,
            });
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if self.dialect == Dialect::Sqlite {
            crate::bare_columns::rewrite(&mut query.body);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, stmt: &mut Statement) -> ControlFlow<()> {
        if let (Statement::CreateTable(create), Dialect::Sqlite) = (stmt, self.dialect) {
            for column in &mut create.columns {
                widen_numeric(&mut column.data_type);
            }
        }
        ControlFlow::Continue(())
    }
}

/// PostgreSQL's dialect: an integer literal too large for BIGINT UNSIGNED is
/// planned by DataFusion as a DOUBLE, so `12345678901234567890123 =
/// 12345678901234567890124` was true. It becomes an exact
/// `CAST('…' AS DECIMAL(38, 0))` instead (PostgreSQL's literal is an exact
/// numeric); past 38 digits the cast fails (22003) rather than round.
/// SQLite reads such a literal as a REAL, so its dialect keeps DOUBLE.
fn exact_integer(expr: &mut Expr) {
    let Expr::Value(v) = expr else { return };
    let Value::Number(digits, _) = &v.value else {
        return;
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.parse::<u64>().is_ok() {
        return;
    }
    let text = Value::SingleQuotedString(digits.clone());
    *expr = Expr::Cast {
        kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
        expr: Box::new(Expr::value(text)),
        data_type: datafusion::sql::sqlparser::ast::DataType::Decimal(
            datafusion::sql::sqlparser::ast::ExactNumberInfo::PrecisionAndScale(38, 0),
        ),
        array: false,
        format: None,
    };
}

/// Whether `f` calls the unqualified function `name`.
fn is_named(f: &Function, name: &str) -> bool {
    f.name.0.len() == 1 && f.name.to_string().eq_ignore_ascii_case(name)
}

/// The unnamed arguments of a call.
fn unnamed_args(f: &mut Function) -> Vec<&mut Expr> {
    match &mut f.args {
        FunctionArguments::List(list) => list
            .args
            .iter_mut()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn cast(expr: Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    }
}

/// `total(x)`: `coalesce(sum(__total_arg(x)), 0.0)` (`__total_arg` is
/// `CAST(x AS DOUBLE)` named apart from `x`, `functions.rs`); with
/// `text_as_number` (the sqlite dialect) `x` is read as SQLite reads text,
/// `__total_arg(__sqlite_number(x))`.
fn total(mut sum: Function, text_as_number: bool) -> Expr {
    sum.name = ObjectName::from(vec![Ident::new("sum")]);
    for arg in unnamed_args(&mut sum) {
        let mut inner = std::mem::replace(arg, Expr::value(Value::Null));
        if text_as_number {
            inner = call(crate::functions::SQLITE_NUMBER, vec![inner]);
        }
        *arg = call(crate::functions::TOTAL_ARG, vec![inner]);
    }
    call(
        "coalesce",
        vec![
            Expr::Function(sum),
            Expr::value(Value::Number("0.0".into(), false)),
        ],
    )
}

/// SQLite's `sum(x)`/`avg(x)` read text as numbers: the argument becomes
/// `__sqlite_number(x)` (`functions.rs`). Applied once: an argument that
/// already is such a call, or `total`'s `__total_arg`, stays.
fn read_as_numbers(f: &mut Function) {
    let number = crate::functions::SQLITE_NUMBER;
    for arg in unnamed_args(f) {
        let done = matches!(arg, Expr::Function(g)
            if is_named(g, number) || is_named(g, crate::functions::TOTAL_ARG));
        if !done {
            let inner = std::mem::replace(arg, Expr::value(Value::Null));
            *arg = call(number, vec![inner]);
        }
    }
}

/// `group_concat(x [, sep])`: `string_agg(CAST(x AS TEXT), sep)`.
/// A DISTINCT one without ORDER BY (or another clause) is
/// `__group_concat_distinct(CAST(x AS TEXT), sep)`, which keeps SQLite's
/// first-seen order (`group_concat.rs`); with ORDER BY, string_agg's
/// DISTINCT sorts, across partitions too.
fn group_concat(f: &mut Function) {
    let ordered = !f.within_group.is_empty();
    let distinct = match &mut f.args {
        FunctionArguments::List(list) if list.clauses.is_empty() && !ordered => list
            .duplicate_treatment
            .take_if(|d| *d == DuplicateTreatment::Distinct)
            .is_some(),
        _ => false,
    };
    let name = if distinct {
        crate::group_concat::NAME
    } else {
        "string_agg"
    };
    f.name = ObjectName::from(vec![Ident::new(name)]);
    if let Some(first) = unnamed_args(f).into_iter().next() {
        let inner = std::mem::replace(first, Expr::value(Value::Null));
        *first = cast(inner, DataType::Text);
    }
    if let FunctionArguments::List(list) = &mut f.args
        && list.args.len() == 1
    {
        list.args
            .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                Value::SingleQuotedString(",".into()),
            ))));
    }
}

/// SQLite's numeric types are 64 bits wide: REAL/FLOAT a double, every
/// integer type a BIGINT (`INTEGER` holds `1 << 63`).
fn widen_numeric(data_type: &mut DataType) {
    if matches!(
        data_type,
        DataType::Real | DataType::Float(_) | DataType::Float4
    ) {
        *data_type = DataType::Double(ExactNumberInfo::None);
    } else if matches!(
        data_type,
        DataType::Int(_)
            | DataType::Integer(_)
            | DataType::SmallInt(_)
            | DataType::TinyInt(_)
            | DataType::MediumInt(_)
            | DataType::Int2(_)
            | DataType::Int4(_)
    ) {
        *data_type = DataType::BigInt(None);
    }
}

/// `NULLIF(divisor, 0)`.
fn nullif_zero(divisor: Expr) -> Expr {
    call(
        "nullif",
        vec![divisor, Expr::value(Value::Number("0".into(), false))],
    )
}

/// A plain call `name(args…)`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    let arg = |e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(arg).collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// SQLite's syntax sqlparser cannot parse, rewritten in the text: `IN ()`,
/// `IN table`, `INDEXED BY index` and `NOT INDEXED` (see the module doc).
/// The text is borrowed unchanged when there is nothing to rewrite or it
/// does not tokenize (the parser then reports the error).
pub(crate) fn sqlite_text(sql: &str) -> Cow<'_, str> {
    let Some(tokens) = Tokens::of(sql) else {
        return Cow::Borrowed(sql);
    };
    let indexed = |n: usize| tokens.is_word(n, "indexed");
    let mut edits = Vec::new();
    // The function each open parenthesis belongs to (POSITION(a IN b)).
    let mut callers: Vec<Option<Keyword>> = Vec::new();
    let mut n = 0;
    while n < tokens.len() {
        match tokens.token(n) {
            Some(Token::LParen) => callers.push(n.checked_sub(1).and_then(|p| tokens.keyword(p))),
            Some(Token::RParen) => {
                callers.pop();
            }
            _ => {}
        }
        let in_position = callers.last() == Some(&Some(Keyword::POSITION));
        // What the token before stands for: the hints follow a table name
        // or alias, `IN` follows an operand or NOT (`SHOW TABLES IN s` and
        // `f(IN a INT)` are left alone).
        let previous = n.checked_sub(1).and_then(|p| tokens.token(p));
        let after_name = matches!(previous, Some(Token::Word(w)) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some());
        let after_operand = match previous {
            None | Some(Token::LParen | Token::Comma) => false,
            Some(Token::Word(w)) => {
                after_name
                    || matches!(
                        w.keyword,
                        Keyword::NOT | Keyword::NULL | Keyword::TRUE | Keyword::FALSE
                    )
            }
            Some(_) => true,
        };
        let edit = match tokens.keyword(n) {
            Some(Keyword::IN) if !in_position && after_operand => in_rewrite(n, &tokens),
            Some(Keyword::NOT) if after_name && indexed(n + 1) => Some((n, n + 1, String::new())),
            _ if after_name && indexed(n) && tokens.keyword(n + 1) == Some(Keyword::BY) => {
                Some((n, n + 2, String::new()))
            }
            _ => None,
        };
        if let Some((first, last, text)) = edit
            && let Some(edit) = tokens.edit(first, last, text)
        {
            edits.push(edit);
            n = last + 1;
            continue;
        }
        n += 1;
    }
    apply(sql, edits)
}

/// The rewrite after the `IN` at solid token `n`: `(first, last, text)`
/// over solid tokens, or `None` when it is ordinary SQL. A table name is
/// copied as written (quotes and all).
fn in_rewrite(n: usize, tokens: &Tokens<'_>) -> Option<(usize, usize, String)> {
    match (tokens.token(n + 1), tokens.token(n + 2)) {
        (Some(Token::LParen), Some(Token::RParen)) => {
            Some((n, n + 2, "IN (SELECT NULL WHERE false)".into()))
        }
        (Some(Token::Word(_)), _) => {
            let mut last = n + 1;
            while let (Some(Token::Period), Some(Token::Word(_))) =
                (tokens.token(last + 1), tokens.token(last + 2))
            {
                last += 2;
            }
            let name = tokens.text_of(n + 1, last);
            Some((n, last, format!("IN (SELECT * FROM {})", name.trim())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_text;

    #[test]
    fn sqlite_only_syntax_becomes_sql() {
        for (sqlite, sql) in [
            ("SELECT 1 IN ()", "SELECT 1 IN (SELECT NULL WHERE false) "),
            (
                "SELECT x FROM t1 WHERE x NOT IN t2",
                "SELECT x FROM t1 WHERE x NOT IN (SELECT * FROM t2) ",
            ),
            ("SELECT 1 IN s.t", "SELECT 1 IN (SELECT * FROM s.t) "),
            (
                "SELECT x'31' IN ()",
                "SELECT x'31' IN (SELECT NULL WHERE false) ",
            ),
            (
                "SELECT a FROM t1 INDEXED BY t1i1 WHERE a = 1",
                "SELECT a FROM t1   WHERE a = 1",
            ),
            ("SELECT a FROM t1 NOT INDEXED", "SELECT a FROM t1  "),
        ] {
            assert_eq!(sqlite_text(sqlite), sql, "{sqlite}");
        }
        assert_eq!(
            sqlite_text("SELECT 1 IN \"a\"\"b\""),
            "SELECT 1 IN (SELECT * FROM \"a\"\"b\") "
        );
        for unchanged in [
            "SELECT * FROM t WHERE NOT indexed",
            "SELECT * FROM t WHERE x IS NOT indexed",
            "SHOW TABLES IN s",
            "SELECT 1 IN (1, 2)",
            "SELECT position('b' IN 'abc')",
            "SELECT 'IN ()' AS s",
        ] {
            assert_eq!(sqlite_text(unchanged), unchanged);
        }
    }
}
