//! DuckDB's sqllogictest dialect (`.test` files), translated to the one the
//! `sqllogictest` crate parses before a file runs.
//!
//! - `statement ok con1`, `query I con2`: a trailing `conN` names the
//!   connection; it becomes a `connection conN` line before the record (a
//!   connection of its own to the same database, as in DuckDB).
//! - `loop i 0 10` / `foreach v a b c` (and their `concurrent` forms) …
//!   `endloop`: unrolled, `{i}` and `${i}` replaced in each copy. The
//!   concurrent forms run their copies one after another.
//! - `restart` / `reconnect`: a marker record ([`RESTART`]) on which the
//!   runner closes and reopens the database.
//! - `statement error` with a message under `----`: DuckDB's message texts
//!   are its own, so the message is dropped and any error passes (the crate
//!   would otherwise read a one-blank-line message into the next record).
//! - DuckDB-only commands (`load`, `require`, `mode`), `statement maybe` and
//!   `PRAGMA` records are removed and counted in [`Translated::skipped`].

/// The SQL of the record that stands for `restart`.
pub const RESTART: &str = "-- entidb-slt: restart";

/// A DuckDB file in the crate's dialect.
#[derive(Debug, Default)]
pub struct Translated {
    /// The script.
    pub text: String,
    /// Commands and records removed (DuckDB-only).
    pub skipped: usize,
}

/// Translates a DuckDB `.test` script.
pub fn translate(text: &str) -> Translated {
    let lines: Vec<&str> = text.lines().collect();
    let unrolled = unroll(&lines);
    let mut out = Translated::default();
    for block in unrolled.split(|l| l.trim().is_empty()) {
        let kept = translate_block(block, &mut out.skipped);
        if !kept.is_empty() {
            out.text.push_str(&kept.join("\n"));
            out.text.push_str("\n\n");
        }
    }
    out
}

/// Expands `loop`/`foreach` … `endloop` blocks, innermost last.
fn unroll(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(line) = lines.get(i) {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(values) = loop_values(&tokens) else {
            out.push((*line).to_string());
            i += 1;
            continue;
        };
        let end = matching_endloop(lines, i + 1);
        let body = lines.get(i + 1..end).unwrap_or_default();
        let name = tokens.get(1).copied().unwrap_or_default();
        for value in values {
            let substituted: Vec<String> = body
                .iter()
                .map(|l| {
                    l.replace(&format!("${{{name}}}"), &value)
                        .replace(&format!("{{{name}}}"), &value)
                })
                .collect();
            let refs: Vec<&str> = substituted.iter().map(String::as_str).collect();
            out.extend(unroll(&refs));
            out.push(String::new());
        }
        i = end + 1;
    }
    out
}

/// The values a `loop`/`foreach` header iterates over; `None` for any
/// other line.
fn loop_values(tokens: &[&str]) -> Option<Vec<String>> {
    match tokens {
        ["loop" | "concurrentloop", _, start, end] => {
            let (start, end) = (start.parse::<i64>().ok()?, end.parse::<i64>().ok()?);
            Some((start..end).map(|v| v.to_string()).collect())
        }
        ["foreach" | "concurrentforeach", _, values @ ..] => {
            Some(values.iter().map(|v| (*v).to_string()).collect())
        }
        _ => None,
    }
}

/// The index of the `endloop` closing the loop whose body starts at `from`
/// (the end of the script when there is none).
fn matching_endloop(lines: &[&str], from: usize) -> usize {
    let mut depth = 0;
    for (i, line) in lines.iter().enumerate().skip(from) {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if loop_values(&tokens).is_some() {
            depth += 1;
        } else if tokens.first() == Some(&"endloop") {
            if depth == 0 {
                return i;
            }
            depth -= 1;
        }
    }
    lines.len()
}

/// One blank-line-separated block in the crate's dialect (empty to drop it).
fn translate_block(block: &[String], skipped: &mut usize) -> Vec<String> {
    let Some(header_at) = block.iter().position(|l| !l.starts_with('#')) else {
        return block.to_vec();
    };
    let comments = block.get(..header_at).unwrap_or_default();
    let header = block.get(header_at).map(String::as_str).unwrap_or_default();
    let rest = block.get(header_at + 1..).unwrap_or_default();
    let tokens: Vec<&str> = header.split_whitespace().collect();
    let mut out: Vec<String> = comments.to_vec();
    match tokens.as_slice() {
        ["load" | "require" | "mode", ..] => {
            *skipped += 1;
            out.extend(rest.iter().cloned());
        }
        ["restart" | "reconnect", ..] => {
            out.push("statement ok".into());
            out.push(RESTART.into());
        }
        ["statement", "maybe", ..] => *skipped += 1,
        ["statement" | "query", ..] => {
            let sql_is_pragma = rest
                .first()
                .is_some_and(|l| l.trim_start().to_ascii_lowercase().starts_with("pragma"));
            if sql_is_pragma {
                *skipped += 1;
                return Vec::new();
            }
            let (header, connection) = split_connection(&tokens);
            if let Some(name) = connection {
                out.push(format!("connection {name}"));
            }
            let is_error = tokens.get(1) == Some(&"error");
            out.push(if is_error {
                tokens.get(..2).unwrap_or_default().join(" ")
            } else {
                header
            });
            let body = rest
                .iter()
                .take_while(|l| !is_error || l.as_str() != "----");
            out.extend(body.cloned());
        }
        _ => out.extend(block.get(header_at..).unwrap_or_default().iter().cloned()),
    }
    out
}

/// A header without its trailing `conN` token, and that token.
fn split_connection<'a>(tokens: &[&'a str]) -> (String, Option<&'a str>) {
    match tokens.split_last() {
        Some((last, head))
            if last.len() > 3
                && last.starts_with("con")
                && last
                    .get(3..)
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            (head.join(" "), Some(last))
        }
        _ => (tokens.join(" "), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duckdb_dialect_becomes_the_crates() {
        let script = "\
# name: x
require skip_reload

loop i 0 2

statement ok con1
INSERT INTO t VALUES ({i});

endloop

statement error con2
INSERT INTO t VALUES (1);
----
<REGEX>:Constraint Error.*

statement ok
PRAGMA enable_verification

restart

query I con2
SELECT 1
----
1
";
        let t = translate(script);
        assert_eq!(t.skipped, 2, "require and PRAGMA");
        let want = "\
# name: x

connection con1
statement ok
INSERT INTO t VALUES (0);

connection con1
statement ok
INSERT INTO t VALUES (1);

connection con2
statement error
INSERT INTO t VALUES (1);

statement ok
-- entidb-slt: restart

connection con2
query I
SELECT 1
----
1

";
        assert_eq!(t.text, want);
    }
}
