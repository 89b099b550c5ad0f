//! DuckDB's sqllogictest dialect (`.test` files), translated to the one the
//! `sqllogictest` crate parses before a file runs.
//!
//! - `statement ok con1`, `query I con2`: a trailing word names the
//!   connection (any word after `statement ok|error`; after a query's
//!   types, a word some statement of the file uses as a connection name —
//!   otherwise it is a label). It becomes a `connection NAME` line before
//!   the record: a connection of its own to the same database, as in
//!   DuckDB.
//! - `loop i 0 10` / `foreach v a b c` (and their `concurrent` forms) …
//!   `endloop`: unrolled, `{i}` and `${i}` replaced in each copy. The
//!   concurrent forms run their copies one after another.
//! - `restart` / `reconnect`: a marker record ([`RESTART`]) on which the
//!   runner closes and reopens the database.
//! - `statement error` with a message under `----`: DuckDB's message texts
//!   are its own, so the message is dropped and any error passes (the crate
//!   would otherwise read a one-blank-line message into the next record).
//! - DuckDB-only commands (`load`, `require`, `mode`), `statement maybe` and
//!   `PRAGMA` records are removed and counted in [`Translated::skipped`];
//!   so are the records between `mode skip` and `mode unskip`, and every
//!   record of a file that `require`s an extension (DuckDB skips those
//!   files when the extension is missing; harness settings such as
//!   `require skip_reload` are met).

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
    let blocks: Vec<&[String]> = unrolled.split(|l| l.trim().is_empty()).collect();
    if let Some(feature) = unmet_requirement(&blocks) {
        // DuckDB skips the whole file when a `require` is not met.
        out.skipped = blocks.iter().filter(|b| holds_record(b)).count();
        out.text = format!("# skipped: requires {feature}\n");
        return out;
    }
    let names = connection_names(&blocks);
    let mut skipping = false;
    for block in blocks {
        match header_tokens(block).as_slice() {
            ["mode", "skip"] => skipping = true,
            ["mode", "unskip"] => skipping = false,
            _ => {}
        }
        if skipping {
            // Records and commands alike (the `mode skip` line included).
            out.skipped += usize::from(!header_tokens(block).is_empty());
            continue;
        }
        let kept = translate_block(block, &names, &mut out.skipped);
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

/// `require` arguments that are harness settings, met by any runner.
const HARNESS_REQUIREMENTS: &[&str] = &["skip_reload", "no_alternative_verify", "noforcestorage"];

/// The tokens of a block's first line that is not a comment.
fn header_tokens(block: &[String]) -> Vec<&str> {
    block
        .iter()
        .find(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default()
}

fn holds_record(block: &[String]) -> bool {
    matches!(header_tokens(block).first(), Some(&("statement" | "query")))
}

/// The first `require` that names an extension or feature (not a harness
/// setting), which EntiDB does not have.
fn unmet_requirement(blocks: &[&[String]]) -> Option<String> {
    blocks
        .iter()
        .find_map(|b| match header_tokens(b).as_slice() {
            ["require", feature, ..] if !HARNESS_REQUIREMENTS.contains(feature) => {
                Some((*feature).to_string())
            }
            _ => None,
        })
}

/// The connection names the file's `statement ok NAME` /
/// `statement error NAME` headers use; a query header ending in one of them
/// names its connection too (otherwise its last word is a label).
fn connection_names(blocks: &[&[String]]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for block in blocks {
        if let ["statement", "ok" | "error", name] = header_tokens(block).as_slice()
            && !names.iter().any(|n| n == name)
        {
            names.push((*name).to_string());
        }
    }
    names
}

/// One blank-line-separated block in the crate's dialect (empty to drop it).
fn translate_block(block: &[String], names: &[String], skipped: &mut usize) -> Vec<String> {
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
            let (header, connection) = split_connection(&tokens, names);
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

/// A header without its trailing connection name, and that name.
fn split_connection<'a>(tokens: &[&'a str], names: &[String]) -> (String, Option<&'a str>) {
    match tokens.split_last() {
        Some((last, head)) if head.len() >= 2 && names.iter().any(|n| n == last) => {
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

statement ok old
SELECT 2

query I rowsort old
SELECT 2
----
2

mode skip

statement ok
SELECT 3

mode unskip
";
        let t = translate(script);
        assert_eq!(
            t.skipped, 5,
            "require, PRAGMA, mode skip/unskip and the record between"
        );
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

connection old
statement ok
SELECT 2

connection old
query I rowsort
SELECT 2
----
2

";
        assert_eq!(t.text, want);
        let t = translate("require parquet\n\nstatement ok\nSELECT 1\n");
        assert_eq!(
            (t.skipped, t.text.as_str()),
            (1, "# skipped: requires parquet\n")
        );
    }
}
