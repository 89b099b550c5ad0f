//! How errors are shown: message, SQLSTATE, and where in the statement.
//!
//! The parser reports positions as `at Line: L, Column: C` at the end of its
//! message. [`describe`] moves that into a psql-style excerpt — the line of
//! the statement and a caret under the column:
//!
//! ```text
//! error: syntax error: Expected: an expression, found: * (SQLSTATE 42601)
//! LINE 1: SELECT 1 +* FROM t
//!                   ^
//! ```
//!
//! Without a position the statement is quoted (`in statement: …`, cut at
//! [`MAX_QUOTE`] characters).

/// Longest statement text quoted in an error.
pub const MAX_QUOTE: usize = 200;

/// The text printed (on stderr) for `e`, raised by `sql`.
pub fn describe(e: &entidb::Error, sql: &str) -> String {
    let message = e.kind().to_string();
    let (message, position) = split_position(&message);
    let mut text = format!("error: {message} (SQLSTATE {})", e.sqlstate());
    let sql = e.statement().unwrap_or(sql);
    match position.and_then(|(line, column)| excerpt(sql, line, column)) {
        Some(excerpt) => {
            text.push('\n');
            text.push_str(&excerpt);
        }
        None if !sql.is_empty() => {
            let quoted: String = sql.chars().take(MAX_QUOTE).collect();
            let more = if sql.chars().count() > MAX_QUOTE {
                "…"
            } else {
                ""
            };
            text.push_str(&format!("\n  in statement: {quoted}{more}"));
        }
        None => {}
    }
    text
}

/// `("Expected …", Some((line, column)))` from `"Expected … at Line: 1,
/// Column: 8"`.
fn split_position(message: &str) -> (&str, Option<(usize, usize)>) {
    let Some(at) = message.rfind(" at Line: ") else {
        return (message, None);
    };
    let rest = message.get(at + " at Line: ".len()..).unwrap_or_default();
    let mut parts = rest.splitn(2, ", Column: ");
    let line = parts.next().and_then(|l| l.trim().parse().ok());
    let column = parts.next().and_then(|c| {
        let digits: String = c.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    match (line, column) {
        (Some(l), Some(c)) => (message.get(..at).unwrap_or(message), Some((l, c))),
        _ => (message, None),
    }
}

/// `LINE n: <line>` and a caret under `column` (both 1-based).
fn excerpt(sql: &str, line: usize, column: usize) -> Option<String> {
    let text = sql.lines().nth(line.checked_sub(1)?)?;
    let prefix = format!("LINE {line}: ");
    let shown: String = text.chars().take(MAX_QUOTE).collect();
    let offset = prefix.chars().count() + column.saturating_sub(1).min(shown.chars().count());
    Some(format!("{prefix}{shown}\n{}^", " ".repeat(offset)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_become_a_caret_under_the_token() {
        assert_eq!(
            split_position("Expected: an expression, found: * at Line: 1, Column: 11"),
            ("Expected: an expression, found: *", Some((1, 11)))
        );
        assert_eq!(
            excerpt("SELECT 1 +* FROM", 1, 11).unwrap(),
            "LINE 1: SELECT 1 +* FROM\n                  ^"
        );
        assert_eq!(
            excerpt("SELECT 1\nFROM x y z", 2, 10).unwrap(),
            "LINE 2: FROM x y z\n                 ^"
        );
        assert_eq!(split_position("no position"), ("no position", None));
    }
}
