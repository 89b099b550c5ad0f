//! Failures grouped by cause, and the conformance report `entidb-slt
//! --report FILE` writes.
//!
//! A failure's cause is the kind of mismatch plus, for errors, EntiDB's
//! message with its specifics masked (quoted names and literals become
//! `'…'`, numbers `N`), so the thousands of records that fail the same way
//! in different tables and values count as one row of the report. The
//! report is Markdown: totals per group of files ([`group_of`]: the folder
//! given and the file's folders under it, so `sqlite/index/between/10/` is
//! `sqlite/index/between`), then causes, most records first, each with one
//! example. When the report file already exists and
//! holds a section's markers (`<!-- BEGIN entidb-slt report NAME -->` …
//! `<!-- END entidb-slt report NAME -->`), only the text between them is
//! replaced, so one hand-written document can carry the generated tables of
//! several runs.

use sqllogictest::TestErrorKind;
use std::collections::BTreeMap;
use std::path::Path;

/// One record that did not pass.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `file:line` of the record.
    pub location: String,
    /// What went wrong, as the runner displays it.
    pub message: String,
    /// The masked cause it is counted under.
    pub cause: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// The cause a runner error is counted under.
pub fn cause_of(kind: &TestErrorKind) -> String {
    match kind {
        TestErrorKind::ParseError(e) => format!("record not parseable: {}", mask(&e.to_string())),
        TestErrorKind::Ok { .. } => "succeeded, but an error was expected".into(),
        TestErrorKind::Fail { err, .. } => format!("error: {}", mask(&err.to_string())),
        TestErrorKind::ErrorMismatch { err, .. } => {
            format!("a different error: {}", mask(&err.to_string()))
        }
        TestErrorKind::StatementResultMismatch { .. } => "wrong affected-row count".into(),
        TestErrorKind::QueryResultMismatch { expected, .. } if expected.contains("hashing to") => {
            "wrong result (hashed)".into()
        }
        TestErrorKind::QueryResultMismatch { .. } => "wrong result".into(),
        TestErrorKind::QueryResultColumnsMismatch { .. } => "wrong column types".into(),
        other => mask(&other.to_string()),
    }
}

/// The first line of a message with names, literals and numbers masked,
/// at most 110 characters. The parser's `found: <token>` keeps keywords
/// only, and an unsupported statement keeps its first two words.
pub fn mask(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let first = mask_after(first, "found: ", |word| {
        word.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            || !word.is_empty() && !word.bytes().any(|b| b.is_ascii_alphanumeric())
    });
    let first = shorten_after(&first, "Unsupported SQL statement: ", 2);
    let mut out = String::new();
    let mut chars = first.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A quote after a letter is an apostrophe (`doesn't`).
            '\'' | '"' | '`' if !out.ends_with(|p: char| p.is_alphanumeric()) => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
                out.push_str(&format!("{c}…{c}"));
            }
            d if d.is_ascii_digit()
                && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_')
                && !out.ends_with("SQLSTATE ") =>
            {
                while chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_digit() || *n == '.')
                {
                    chars.next();
                }
                out.push('N');
            }
            c => out.push(c),
        }
    }
    if out.chars().count() > 110 {
        out = out.chars().take(110).collect::<String>() + "…";
    }
    out
}

/// `text` with the word after `marker` replaced by `…` unless `keep` says
/// otherwise.
fn mask_after(text: &str, marker: &str, keep: impl Fn(&str) -> bool) -> String {
    let Some(at) = text.find(marker) else {
        return text.to_string();
    };
    let (head, tail) = text.split_at(at + marker.len());
    let end = tail.find(' ').unwrap_or(tail.len());
    let (word, rest) = tail.split_at(end);
    if keep(word) {
        text.to_string()
    } else {
        format!("{head}…{rest}")
    }
}

/// `text` cut after the first `words` words following `marker`.
fn shorten_after(text: &str, marker: &str, words: usize) -> String {
    let Some(at) = text.find(marker) else {
        return text.to_string();
    };
    let (head, tail) = text.split_at(at + marker.len());
    let kept: Vec<&str> = tail.split_whitespace().take(words).collect();
    format!("{head}{} …", kept.join(" "))
}

/// The report group of a file: the name of `root` (the folder given, or
/// the folder of the file given) and the file's folders under it, a
/// trailing number-only folder dropped: `sqlite/index/between/10/x.slt`
/// under `sqlite` is `sqlite/index/between`, `sqlite/select1.slt` is
/// `sqlite`.
pub fn group_of(file: &Path, root: &Path) -> String {
    let relative = file.strip_prefix(root).unwrap_or(file);
    let mut parts: Vec<String> = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .into_iter()
        .collect();
    if let Some(parent) = relative.parent() {
        parts.extend(parent.iter().map(|s| s.to_string_lossy().into_owned()));
    }
    if parts.len() > 1
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        parts.pop();
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Passed, failed and skipped records of one group.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Records that passed.
    pub passed: usize,
    /// Records that failed.
    pub failed: usize,
    /// Records skipped (`onlyif`/`skipif`, DuckDB-only commands).
    pub skipped: usize,
}

impl Totals {
    /// Adds another group's counts.
    pub fn add(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }

    /// Passed records as a percentage of those that ran.
    pub fn pass_rate(&self) -> f64 {
        let ran = self.passed + self.failed;
        if ran == 0 {
            100.0
        } else {
            100.0 * self.passed as f64 / ran as f64
        }
    }
}

/// The Markdown report.
pub fn render(command: &str, groups: &BTreeMap<String, Totals>, failures: &[Failure]) -> String {
    let mut total = Totals::default();
    let mut out = format!("Generated by `{command}`.\n\n");
    out.push_str("| group | passed | failed | skipped | pass rate |\n|---|---:|---:|---:|---:|\n");
    for (group, t) in groups {
        total.add(*t);
        out.push_str(&row(group, t));
    }
    out.push_str(&row("**all**", &total));
    let mut causes: BTreeMap<&str, (usize, &Failure)> = BTreeMap::new();
    for f in failures {
        causes.entry(&f.cause).or_insert((0, f)).0 += 1;
    }
    let mut causes: Vec<(&str, (usize, &Failure))> = causes.into_iter().collect();
    causes.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    out.push_str("\n| records | cause | example |\n|---:|---|---|\n");
    for (cause, (count, example)) in causes {
        out.push_str(&format!(
            "| {count} | {} | {} |\n",
            cell(cause),
            cell(&example.location)
        ));
    }
    out
}

fn row(group: &str, t: &Totals) -> String {
    format!(
        "| {group} | {} | {} | {} | {:.2}% |\n",
        t.passed,
        t.failed,
        t.skipped,
        t.pass_rate()
    )
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Writes the report to `path`: a new file, or the text between the
/// markers of `section` in an existing one.
///
/// # Errors
/// When the file cannot be read or written, or exists without the
/// section's markers (it is never overwritten).
pub fn write_report(path: &Path, section: &str, report: &str) -> std::io::Result<()> {
    let begin = format!("<!-- BEGIN entidb-slt report {section} -->");
    let end = format!("<!-- END entidb-slt report {section} -->");
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::write(path, format!("{begin}\n{report}{end}\n"));
        }
        Err(e) => return Err(e),
    };
    match (existing.find(&begin), existing.find(&end)) {
        (Some(b), Some(e)) if b < e => std::fs::write(
            path,
            format!(
                "{}{begin}\n{report}{}",
                existing.get(..b).unwrap_or_default(),
                existing.get(e..).unwrap_or_default()
            ),
        ),
        _ => Err(std::io::Error::other(format!(
            "the file exists and has no {begin} … {end} section to replace"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_specifics() {
        assert_eq!(
            mask("column 'x1' not found in table \"t2\" at 12.5 (SQLSTATE 42703)\nmore"),
            "column '…' not found in table \"…\" at N (SQLSTATE 42703)"
        );
        assert_eq!(
            mask("Column count doesn't match"),
            "Column count doesn't match"
        );
        assert_eq!(
            mask("syntax error: Expected: (, found: t4n at Line: 1, Column: 9 (SQLSTATE 42601)"),
            "syntax error: Expected: (, found: … at Line: N, Column: N (SQLSTATE 42601)"
        );
        assert_eq!(
            mask("syntax error: Expected: an SQL statement, found: REINDEX at Line: 1"),
            "syntax error: Expected: an SQL statement, found: REINDEX at Line: N"
        );
        assert_eq!(
            mask("not supported: Unsupported SQL statement: CREATE TRIGGER t1r1 UPDATE ON t1"),
            "not supported: Unsupported SQL statement: CREATE TRIGGER …"
        );
    }

    #[test]
    fn groups_drop_number_folders() {
        let root = Path::new("/c/sqlite");
        assert_eq!(
            group_of(Path::new("/c/sqlite/index/between/10/a.slt"), root),
            "sqlite/index/between"
        );
        assert_eq!(group_of(Path::new("/c/sqlite/select1.slt"), root), "sqlite");
    }

    #[test]
    fn report_replaces_only_the_marked_region() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.md");
        let (b, e) = (
            "<!-- BEGIN entidb-slt report x -->",
            "<!-- END entidb-slt report x -->",
        );
        let (b2, e2) = (
            "<!-- BEGIN entidb-slt report y -->",
            "<!-- END entidb-slt report y -->",
        );
        std::fs::write(&path, format!("intro\n{b}\nold\n{e}\n{b2}\nkept\n{e2}\n"))?;
        write_report(&path, "x", "new\n")?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(text, format!("intro\n{b}\nnew\n{e}\n{b2}\nkept\n{e2}\n"));
        assert!(
            write_report(&path, "z", "x").is_err(),
            "no section z: not overwritten"
        );
        Ok(())
    }
}
