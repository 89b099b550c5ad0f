//! Rewrites of the SQL *text*, token by token, before it is parsed: for
//! syntax sqlparser 0.62 cannot parse.
//!
//! [`Tokens`] is the shared machinery: the statement's tokens without
//! whitespace, each with its byte range in the text, and [`apply`], which
//! splices replacements into the text (everything not replaced is copied as
//! written, so `'x''y'` keeps its escaping). The SQLite dialect's rewrites
//! use it (`dialect::sqlite_text`), and so do PostgreSQL's, which every
//! session gets ([`postgres_text`]):
//!
//! - `MERGE … WHEN [NOT] MATCHED [AND p] THEN DO NOTHING`: the action is
//!   written as one sqlparser parses and EntiDB recognises by a *marker*
//!   column, [`DO_NOTHING`]: `UPDATE SET "entidb:do nothing" = NULL` in a
//!   MATCHED clause, `INSERT ("entidb:do nothing") VALUES (NULL)` in a NOT
//!   MATCHED one (`merge.rs` treats either as DO NOTHING);
//! - `INSERT INTO t [(cols)] OVERRIDING {SYSTEM | USER} VALUE …`: the
//!   clause becomes MySQL's insert priority, `INSERT HIGH_PRIORITY INTO`
//!   (SYSTEM) or `INSERT LOW_PRIORITY INTO` (USER), which sqlparser keeps in
//!   the statement and `identity::take_overriding` turns back into the
//!   clause before anything plans it.
//!
//! MARKERS ARE UNAMBIGUOUS. Text that already contains a marker — the
//! identifier `entidb:do nothing` in a MERGE, or an insert priority, which
//! is MySQL's syntax and not PostgreSQL's or SQLite's — is refused (42601),
//! so a marker in a parsed statement always comes from this rewrite. Error messages
//! print markers back as the clause they stand for ([`display`]).

use crate::error::{ErrorKind, Result};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use std::borrow::Cow;

/// The column name that marks a MERGE clause's action as DO NOTHING.
pub const DO_NOTHING: &str = "entidb:do nothing";

const MATCHED_DO_NOTHING: &str = "UPDATE SET \"entidb:do nothing\" = NULL";
const NOT_MATCHED_DO_NOTHING: &str = "INSERT (\"entidb:do nothing\") VALUES (NULL)";

/// The tokens of a text that are not whitespace, with their byte ranges.
pub(crate) struct Tokens<'a> {
    sql: &'a str,
    /// `(token, start, end)`, in order.
    solid: Vec<(Token, usize, usize)>,
}

impl<'a> Tokens<'a> {
    /// The tokens of `sql`; `None` when it does not tokenize (the parser
    /// then reports the error).
    pub(crate) fn of(sql: &'a str) -> Option<Self> {
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .ok()?;
        let starts: Vec<(u64, u64)> = tokens
            .iter()
            .map(|t| (t.span.start.line, t.span.start.column))
            .collect();
        let mut offsets = crate::session::byte_offsets(sql, &starts);
        if offsets.len() != tokens.len() {
            return None;
        }
        offsets.push(sql.len());
        let solid = tokens
            .into_iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
            .filter_map(|(i, t)| Some((t.token, *offsets.get(i)?, *offsets.get(i + 1)?)))
            .collect();
        Some(Self { sql, solid })
    }

    /// How many solid tokens there are.
    pub(crate) fn len(&self) -> usize {
        self.solid.len()
    }

    /// Solid token `n`.
    pub(crate) fn token(&self, n: usize) -> Option<&Token> {
        self.solid.get(n).map(|(t, _, _)| t)
    }

    /// The keyword of solid token `n`, when it is a word.
    pub(crate) fn keyword(&self, n: usize) -> Option<Keyword> {
        match self.token(n) {
            Some(Token::Word(w)) => Some(w.keyword),
            _ => None,
        }
    }

    /// Whether solid token `n` is the unquoted word `word` (any case).
    pub(crate) fn is_word(&self, n: usize, word: &str) -> bool {
        matches!(self.token(n), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    /// Byte offset where solid token `n` starts.
    pub(crate) fn start(&self, n: usize) -> Option<usize> {
        self.solid.get(n).map(|(_, s, _)| *s)
    }

    /// Byte offset where solid token `n` ends (where the next token, or
    /// the whitespace before it, starts).
    pub(crate) fn end(&self, n: usize) -> Option<usize> {
        self.solid.get(n).map(|(_, _, e)| *e)
    }

    /// The text of solid tokens `first..=last` as written.
    pub(crate) fn text_of(&self, first: usize, last: usize) -> String {
        match (self.start(first), self.end(last)) {
            (Some(s), Some(e)) => self.sql.get(s..e).unwrap_or_default().to_string(),
            _ => String::new(),
        }
    }

    /// An edit replacing solid tokens `first..=last` by `text`.
    pub(crate) fn edit(&self, first: usize, last: usize, text: String) -> Option<Edit> {
        Some((self.start(first)?, self.end(last)?, text))
    }
}

/// `(start, end, replacement)` over byte offsets of the text.
pub(crate) type Edit = (usize, usize, String);

/// `sql` with `edits` (ascending, not overlapping) applied; borrowed when
/// there are none. Each replacement is followed by a space, so it never
/// fuses with the token after it.
pub(crate) fn apply(sql: &str, edits: Vec<Edit>) -> Cow<'_, str> {
    if edits.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 64);
    let mut at = 0;
    for (s, e, text) in edits {
        out.push_str(sql.get(at..s).unwrap_or_default());
        out.push_str(&text);
        out.push(' ');
        at = e;
    }
    out.push_str(sql.get(at..).unwrap_or_default());
    Cow::Owned(out)
}

/// PostgreSQL's syntax sqlparser does not parse, rewritten (see the module
/// doc). Text that does not tokenize is returned unchanged.
///
/// # Errors
/// 42601 for text that already holds one of the markers.
pub(crate) fn postgres_text(sql: &str) -> Result<Cow<'_, str>> {
    // Most statements have neither clause: skip the tokenizer (and any
    // allocation) for them.
    let has = |word: &str| {
        sql.as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    if !["nothing", "overriding", "priority", "delayed"]
        .into_iter()
        .any(has)
    {
        return Ok(Cow::Borrowed(sql));
    }
    let Some(tokens) = Tokens::of(sql) else {
        return Ok(Cow::Borrowed(sql));
    };
    let mut edits = Vec::new();
    // Per statement: whether it is a MERGE, and whether its current WHEN
    // clause is MATCHED; where its INSERT keyword is.
    let mut merge = false;
    let mut matched = None;
    let mut insert_at = None;
    let mut n = 0;
    while n < tokens.len() {
        if merge
            && let Some(Token::Word(w)) = tokens.token(n)
            && w.quote_style.is_some()
            && w.value == DO_NOTHING
        {
            return Err(reserved(DO_NOTHING));
        }
        match tokens.keyword(n) {
            _ if matches!(tokens.token(n), Some(Token::SemiColon)) => {
                merge = false;
                matched = None;
                insert_at = None;
            }
            Some(Keyword::MERGE) if n == 0 || tokens.token(n - 1) == Some(&Token::SemiColon) => {
                merge = true;
            }
            Some(Keyword::WHEN) if merge => {
                if tokens.keyword(n + 1) == Some(Keyword::MATCHED) {
                    matched = Some(true);
                } else if tokens.keyword(n + 1) == Some(Keyword::NOT)
                    && tokens.keyword(n + 2) == Some(Keyword::MATCHED)
                {
                    matched = Some(false);
                }
            }
            Some(Keyword::THEN)
                if merge && tokens.is_word(n + 1, "do") && tokens.is_word(n + 2, "nothing") =>
            {
                if let Some(matched) = matched {
                    let action = if matched {
                        MATCHED_DO_NOTHING
                    } else {
                        NOT_MATCHED_DO_NOTHING
                    };
                    edits.extend(tokens.edit(n + 1, n + 2, action.to_string()));
                    n += 3;
                    continue;
                }
            }
            Some(Keyword::INSERT) => {
                if let Some(word) = ["high_priority", "low_priority", "delayed"]
                    .into_iter()
                    .find(|w| tokens.is_word(n + 1, w))
                {
                    return Err(ErrorKind::Syntax(format!(
                        "INSERT {} is MySQL's syntax, not supported",
                        word.to_ascii_uppercase()
                    ))
                    .into());
                }
                insert_at = Some(n);
            }
            _ if tokens.is_word(n, "overriding")
                && (tokens.is_word(n + 1, "system") || tokens.is_word(n + 1, "user"))
                && tokens.is_word(n + 2, "value") =>
            {
                if let Some(insert) = insert_at.take() {
                    let priority = if tokens.is_word(n + 1, "system") {
                        "INSERT HIGH_PRIORITY"
                    } else {
                        "INSERT LOW_PRIORITY"
                    };
                    edits.extend(tokens.edit(insert, insert, priority.to_string()));
                    edits.extend(tokens.edit(n, n + 2, String::new()));
                    n += 3;
                    continue;
                }
            }
            _ => {}
        }
        n += 1;
    }
    Ok(apply(sql, edits))
}

fn reserved(what: &str) -> crate::Error {
    ErrorKind::Syntax(format!("\"{what}\" is reserved by EntiDB")).into()
}

/// A parsed statement's text with the markers printed as the clauses they
/// stand for (for error messages).
pub(crate) fn display(text: String) -> String {
    if !text.contains(DO_NOTHING) && !text.contains("_PRIORITY") {
        return text;
    }
    text.replace(MATCHED_DO_NOTHING, "DO NOTHING")
        .replace(NOT_MATCHED_DO_NOTHING, "DO NOTHING")
        .replace(
            "INSERT HIGH_PRIORITY INTO",
            "INSERT /* OVERRIDING SYSTEM VALUE */ INTO",
        )
        .replace(
            "INSERT LOW_PRIORITY INTO",
            "INSERT /* OVERRIDING USER VALUE */ INTO",
        )
}

#[cfg(test)]
mod tests {
    use super::postgres_text;

    /// The rewrite, with runs of spaces collapsed.
    fn rewritten(sql: &str) -> String {
        match postgres_text(sql) {
            Ok(text) => text
                .split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn postgres_clauses_become_markers() {
        assert_eq!(
            rewritten("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING"),
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET \"entidb:do nothing\" = NULL"
        );
        assert_eq!(
            rewritten("merge into t using s on true when not matched and s.a > 1 then do nothing;"),
            "merge into t using s on true when not matched and s.a > 1 then INSERT (\"entidb:do nothing\") VALUES (NULL) ;"
        );
        assert_eq!(
            rewritten("INSERT INTO g (id, v) OVERRIDING SYSTEM VALUE VALUES (1, 'a''b')"),
            "INSERT HIGH_PRIORITY INTO g (id, v) VALUES (1, 'a''b')"
        );
        assert_eq!(
            rewritten("insert into g overriding user value select 1"),
            "INSERT LOW_PRIORITY into g select 1"
        );
    }

    #[test]
    fn ordinary_sql_is_unchanged_and_markers_are_refused() {
        for unchanged in [
            "SELECT 'then do nothing' AS nothing",
            "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
            "SELECT CASE WHEN true THEN nothing END FROM t",
            "SELECT overriding FROM t",
        ] {
            assert_eq!(rewritten(unchanged), unchanged);
        }
        assert_eq!(
            rewritten("SELECT \"entidb:do nothing\" FROM t"),
            "SELECT \"entidb:do nothing\" FROM t"
        );
        assert!(
            rewritten("MERGE INTO t USING s ON true WHEN MATCHED THEN UPDATE SET \"entidb:do nothing\" = 1")
                .starts_with("error")
        );
        assert!(rewritten("INSERT LOW_PRIORITY INTO t VALUES (1)").starts_with("error"));
    }
}
