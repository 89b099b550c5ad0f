//! Dot-commands: `.help`, `.tables`, `.schema`, `.mode`, `.import` …
//!
//! A dot-command is one line starting with `.`; its arguments are words,
//! quoted with `"…"` or `'…'` when they hold spaces. An unknown command or
//! bad arguments is an error like a failed statement: reported, counted,
//! and the session goes on (unless `-bail`).

use super::driver::{Flow, Shell, Stop};
use super::failure::Failure;
use super::import::import_file;
use super::input::Splitter;
use super::render::Mode;
use arrow::array::{Array, AsArray};
use entidb_catalog::Catalog;
use std::io::{BufRead, Write};
use std::path::Path;

/// The text of `.help`.
pub const HELP: &str = "\
.checkpoint            write the WAL into segments (CHECKPOINT)
.headers on|off        show column headers
.help                  this text
.import FILE TABLE     load a CSV, Parquet or JSON (one object per line) file
                       into TABLE, creating it when it does not exist
.indexes [TABLE]       list indexes
.mode MODE             box, table, csv, json, jsonl, line or markdown
.open PATH             close this database and open (or create) PATH
.output [FILE]         write results to FILE (no FILE: standard output)
.quit                  exit (also .exit, Ctrl-D)
.read FILE             run the statements and commands in FILE
.schema [TABLE]        CREATE statements of tables, indexes and views
.tables                list tables and views
.timer on|off          print each statement's run time
Statements end with ';'.";

impl Shell {
    /// Runs one dot-command line.
    pub(super) fn run_dot(&mut self, line: &str) -> Result<Flow, Failure> {
        let words = words(line);
        let Some((command, args)) = words.split_first() else {
            return Ok(Ok(()));
        };
        let arg = |i: usize| args.get(i).map(String::as_str);
        let usage = |text: &str| Err(Failure::Other(format!("usage: {text}")));
        match (command.as_str(), args.len()) {
            (".help", _) => writeln!(self.out, "{HELP}")?,
            (".quit" | ".exit", _) => return Ok(Err(Stop::Quit)),
            (".tables", 0 | 1) => self.tables()?,
            (".schema", 0 | 1) => self.schema(arg(0))?,
            (".indexes" | ".indices", 0 | 1) => self.indexes(arg(0))?,
            (".mode", 1) => {
                self.style.mode = arg(0).unwrap_or_default().parse().map_err(Failure::Other)?;
            }
            (".mode", 0) => writeln!(self.out, "{}", mode_name(self.style.mode))?,
            (".headers", 1) => self.style.headers = on_off(arg(0))?,
            (".timer", 1) => self.timer = on_off(arg(0))?,
            (".read", 1) => return self.read_file(Path::new(arg(0).unwrap_or_default())),
            (".import", 2) => {
                let (file, table) = (arg(0).unwrap_or_default(), arg(1).unwrap_or_default());
                let progress = self.stdout_is_terminal();
                let rows = import_file(self, Path::new(file), table, progress)?;
                if matches!(self.style.mode, Mode::Box | Mode::Table) {
                    writeln!(self.out, "{rows} rows imported into {table}")?;
                }
            }
            (".output" | ".once", 0) => self.redirect(None)?,
            (".output" | ".once", 1) => self.redirect(arg(0))?,
            (".open", 1) => self.reopen(Path::new(arg(0).unwrap_or_default()))?,
            (".checkpoint", 0) => self.run_sql("CHECKPOINT")?,
            (".tables" | ".schema" | ".indexes" | ".indices", _) => {
                return usage(&format!("{command} [TABLE]"));
            }
            (".mode", _) => return usage(".mode box|table|csv|json|jsonl|line|markdown"),
            (".headers" | ".timer", _) => return usage(&format!("{command} on|off")),
            (".read", _) => return usage(".read FILE"),
            (".import", _) => return usage(".import FILE TABLE"),
            (".output" | ".once", _) => return usage(".output [FILE]"),
            (".open", _) => return usage(".open PATH"),
            (".checkpoint", _) => return usage(".checkpoint"),
            _ => {
                return Err(Failure::Other(format!(
                    "unknown command {command}: .help lists the commands"
                )));
            }
        }
        Ok(Ok(()))
    }

    /// `.read FILE`: every item of the file, as if typed.
    fn read_file(&mut self, path: &Path) -> Result<Flow, Failure> {
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::Other(format!("cannot open {}: {e}", path.display())))?;
        let mut splitter = Splitter::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
            for item in splitter.push_line(&line) {
                if let Err(stop) = self.execute(&item) {
                    return Ok(Err(stop));
                }
            }
        }
        if let Some(item) = splitter.finish() {
            return Ok(self.execute(&item));
        }
        Ok(Ok(()))
    }

    /// `.output [FILE]`.
    fn redirect(&mut self, file: Option<&str>) -> Result<(), Failure> {
        self.out.flush()?;
        match file {
            None | Some("stdout") => {
                self.out = Box::new(std::io::BufWriter::new(std::io::stdout()));
                self.out_is_terminal = self.stdout_is_terminal();
            }
            Some(path) => {
                let f = std::fs::File::create(path)
                    .map_err(|e| Failure::Other(format!("cannot write {path}: {e}")))?;
                self.out = Box::new(std::io::BufWriter::new(f));
                self.out_is_terminal = false;
            }
        }
        Ok(())
    }

    /// The catalog as the shell's connection sees it: inside `BEGIN … COMMIT`
    /// with the open transaction's own DDL (a table it dropped is gone).
    pub(super) fn catalog(&mut self) -> Result<std::sync::Arc<Catalog>, Failure> {
        Ok(self.runtime.block_on(self.conn.catalog())?)
    }

    /// `.tables`: tables and views, sorted.
    fn tables(&mut self) -> Result<(), Failure> {
        let catalog = self.catalog()?;
        let mut names: Vec<&str> = catalog
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .chain(catalog.views.iter().map(|v| v.name.as_str()))
            .collect();
        names.sort_unstable();
        for name in names {
            writeln!(self.out, "{name}")?;
        }
        Ok(())
    }

    /// `.indexes [TABLE]`: index names, sorted.
    fn indexes(&mut self, table: Option<&str>) -> Result<(), Failure> {
        let catalog = self.catalog()?;
        let mut names: Vec<&str> = catalog
            .indexes
            .iter()
            .filter(|i| table.is_none_or(|t| i.table == t))
            .map(|i| i.name.as_str())
            .collect();
        names.sort_unstable();
        for name in names {
            writeln!(self.out, "{name}")?;
        }
        Ok(())
    }

    /// `.schema [TABLE]`: each table's `SHOW CREATE TABLE` script (columns,
    /// constraints, identity, indexes; `sql/src/introspect.rs`), then the
    /// views as written.
    fn schema(&mut self, only: Option<&str>) -> Result<(), Failure> {
        let catalog = self.catalog()?;
        let wanted = |name: &str| only.is_none_or(|o| o == name);
        for table in catalog.tables.iter().filter(|t| wanted(&t.name)) {
            let statement = self.create_table(&table.name)?;
            writeln!(self.out, "{statement}")?;
        }
        for view in catalog.views.iter().filter(|v| wanted(&v.name)) {
            writeln!(
                self.out,
                "CREATE VIEW {} AS {};",
                quote(&view.name),
                view.sql.trim_end_matches(';')
            )?;
        }
        Ok(())
    }

    fn create_table(&mut self, name: &str) -> Result<String, Failure> {
        let sql = format!("SHOW CREATE TABLE {}", quote(name));
        let batches = self.runtime.block_on(self.conn.query(&sql))?;
        let definition = batches
            .first()
            .and_then(|b| b.column_by_name("definition"))
            .and_then(|c| c.as_string_opt::<i32>())
            .filter(|c| !c.is_empty() && !c.is_null(0))
            .map(|c| c.value(0).to_string());
        definition.ok_or_else(|| Failure::Other(format!("no definition for table {name}")))
    }
}

/// `name` as an SQL identifier (`SHOW CREATE TABLE` quotes the same way).
pub use entidb_sql::introspect::quote_identifier as quote;

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Box => "box",
        Mode::Table => "table",
        Mode::Csv => "csv",
        Mode::Json => "json",
        Mode::Jsonl => "jsonl",
        Mode::Line => "line",
        Mode::Markdown => "markdown",
    }
}

fn on_off(word: Option<&str>) -> Result<bool, Failure> {
    match word {
        Some("on" | "yes" | "true" | "1") => Ok(true),
        Some("off" | "no" | "false" | "0") => Ok(false),
        _ => Err(Failure::Other("expected on or off".into())),
    }
}

/// The words of a dot-command line; `"…"` and `'…'` group words.
pub fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_spaces_and_group_quotes() {
        assert_eq!(
            words(".import 'my file.csv' t"),
            vec![".import", "my file.csv", "t"]
        );
        assert_eq!(words("  .mode   csv "), vec![".mode", "csv"]);
        assert_eq!(words(r#".output "" "#), vec![".output", ""]);
    }

    #[test]
    fn identifiers_are_quoted_when_needed() {
        assert_eq!(quote("t_1"), "t_1");
        assert_eq!(quote("My Table"), "\"My Table\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
