//! The shell's state and how one item (a statement or a dot-command) runs.
//!
//! LIFE OF A STATEMENT
//!
//! 1. [`classify`] parses it: a query is streamed through
//!    [`Connection::query_stream`], batch by batch into the [`Render`] of the
//!    current mode, with the headers as written; anything else runs through
//!    [`Connection::run_script`] (DML prints `N rows inserted`).
//! 2. In the interactive shell Ctrl-C races the statement: a query's stream
//!    is dropped (nothing was written); a write is abandoned as well — its
//!    autocommit transaction is never committed, and inside `BEGIN` the
//!    whole transaction is rolled back, as it may hold part of the
//!    statement's changes.
//! 3. A failure is printed on stderr (SQLSTATE, caret: `report.rs`) and
//!    counted for the exit code; the shell goes on unless `-bail`. A broken
//!    pipe ends the session quietly.
//! 4. The output is flushed after every item, so a pipe or FIFO sees each
//!    answer before the next statement is read.

use super::failure::Failure;
use super::input::Item;
use super::render::{Mode, Style, renderer};
use super::report::describe;
use super::statement::{Kind, classify};
use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use entidb::{Connection, Database, OpenOptions, Output};
use futures::StreamExt;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Longest column header printed in full; longer ones (a header derived
/// from a 10 MB literal) are cut.
pub const MAX_HEADER_CHARS: usize = 64;

/// Rows a grid shows on a terminal (half from the start, half from the end).
pub const TERMINAL_ROWS: usize = 40;

/// Why the session ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `.quit`.
    Quit,
    /// Standard output was closed by its reader: exit 0, say nothing.
    BrokenPipe,
    /// An error under `-bail`.
    Bail,
}

/// What an item asks of the session.
pub type Flow = Result<(), Stop>;

/// Settings given on the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Output mode and headers.
    pub style: Style,
    /// Stop at the first error.
    pub bail: bool,
    /// Ctrl-C cancels the running statement (interactive sessions).
    pub cancel_on_ctrl_c: bool,
    /// Standard output is a terminal (grids are capped there).
    pub stdout_is_terminal: bool,
}

/// One shell session: a database, a connection, output settings.
pub struct Shell {
    // Field order matters: the connection is dropped before its database.
    pub(super) conn: Connection,
    pub(super) db: Database,
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) style: Style,
    pub(super) timer: bool,
    pub(super) bail: bool,
    cancel_on_ctrl_c: bool,
    pub(super) out: Box<dyn Write>,
    /// `out` is the terminal (not a `.output` file).
    pub(super) out_is_terminal: bool,
    stdout_is_terminal: bool,
    errors: usize,
}

/// Opens the database at `path` (in memory without one, or for the name
/// `:memory:` as in SQLite and DuckDB), refusing paths that are not
/// databases (see [`Database::check_path`]).
///
/// # Errors
/// The refusal or the open's error.
pub fn open_database(path: Option<&Path>, options: OpenOptions) -> Result<Database, Failure> {
    match path {
        Some(p) if p == Path::new(MEMORY) => Ok(Database::open_in_memory()?),
        Some(p) => Ok(Database::open_with(p, options)?),
        None => Ok(Database::open_in_memory()?),
    }
}

/// The path that names an in-memory database.
pub const MEMORY: &str = ":memory:";

/// Runs `f` to completion, or until Ctrl-C when `cancel` (then `None`).
pub(super) fn block<F: Future>(
    runtime: &tokio::runtime::Runtime,
    cancel: bool,
    f: F,
) -> Option<F::Output> {
    if !cancel {
        return Some(runtime.block_on(f));
    }
    runtime.block_on(async {
        tokio::select! {
            r = f => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    })
}

fn cancelled() -> Failure {
    Failure::Other("canceling statement due to user request (SQLSTATE 57014)".into())
}

impl Shell {
    /// A session on `db`.
    ///
    /// # Errors
    /// When the async runtime cannot start.
    pub fn new(db: Database, settings: Settings) -> Result<Self, Failure> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let out: Box<dyn Write> = Box::new(std::io::BufWriter::new(std::io::stdout()));
        Ok(Self {
            conn: db.connect(),
            db,
            runtime,
            style: settings.style,
            timer: false,
            bail: settings.bail,
            cancel_on_ctrl_c: settings.cancel_on_ctrl_c,
            out,
            out_is_terminal: settings.stdout_is_terminal,
            stdout_is_terminal: settings.stdout_is_terminal,
            errors: 0,
        })
    }

    /// How many items failed so far.
    pub fn errors(&self) -> usize {
        self.errors
    }

    /// Standard output is a terminal.
    pub(super) fn stdout_is_terminal(&self) -> bool {
        self.stdout_is_terminal
    }

    /// Runs one item, reporting its failure; `Err` ends the session.
    pub fn execute(&mut self, item: &Item) -> Flow {
        let (result, sql) = match item {
            Item::Sql(sql) => (self.run_sql(sql).map(|()| Ok(())), sql.as_str()),
            Item::Dot(line) => (self.run_dot(line), ""),
        };
        let result = result.and_then(|flow| {
            self.out.flush()?;
            Ok(flow)
        });
        match result {
            Ok(flow) => flow,
            Err(Failure::BrokenPipe) => Err(Stop::BrokenPipe),
            Err(failure) => {
                let _ = self.out.flush();
                self.report(&failure, sql);
                if self.bail { Err(Stop::Bail) } else { Ok(()) }
            }
        }
    }

    /// Prints `failure` on stderr and counts it.
    pub(super) fn report(&mut self, failure: &Failure, sql: &str) {
        self.errors += 1;
        let text = match failure {
            Failure::Sql(e) => describe(e, sql),
            other => format!("error: {other}"),
        };
        let _ = writeln!(std::io::stderr(), "{text}");
    }

    /// The style results are printed in now: capped only on a terminal.
    fn output_style(&self) -> Style {
        Style {
            max_rows: self.style.max_rows.filter(|_| self.out_is_terminal),
            ..self.style
        }
    }

    /// Runs one statement and prints its result.
    pub(super) fn run_sql(&mut self, sql: &str) -> Result<(), Failure> {
        let started = Instant::now();
        let classified = classify(sql);
        match classified.kind {
            Kind::Query => self.stream(sql, &classified.headers)?,
            Kind::Dml(verb) => self.script(sql, Some(verb))?,
            Kind::Other => self.script(sql, None)?,
        }
        if self.timer {
            writeln!(
                self.out,
                "Run Time: {:.3} s",
                started.elapsed().as_secs_f64()
            )?;
        }
        Ok(())
    }

    /// Streams a query's result. In autocommit mode the query runs inside
    /// its own `BEGIN … COMMIT` (nothing to write, so the commit is free):
    /// the table scans read the session's transaction while the stream is
    /// consumed, after `query_stream` has returned.
    fn stream(&mut self, sql: &str, headers: &[Option<String>]) -> Result<(), Failure> {
        if self.conn.in_transaction() {
            return self.stream_in_transaction(sql, headers);
        }
        self.runtime.block_on(self.conn.execute("BEGIN"))?;
        let result = self.stream_in_transaction(sql, headers);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.runtime.block_on(self.conn.execute(end));
        result?;
        ended?;
        Ok(())
    }

    fn stream_in_transaction(
        &mut self,
        sql: &str,
        headers: &[Option<String>],
    ) -> Result<(), Failure> {
        let cancel = self.cancel_on_ctrl_c;
        let Some(stream) = block(&self.runtime, cancel, self.conn.query_stream(sql)) else {
            return Err(cancelled());
        };
        let mut stream = stream.map_err(|e| e.in_statement(sql))?;
        let names = display_names(&stream.schema(), headers);
        let schema = renamed(&stream.schema(), &names);
        let mut render = renderer(&self.output_style(), &schema);
        loop {
            match block(&self.runtime, cancel, stream.next()) {
                None => return Err(cancelled()),
                Some(None) => break,
                Some(Some(Err(e))) => {
                    return Err(Failure::Sql(entidb::Error::from(e).in_statement(sql)));
                }
                Some(Some(Ok(batch))) => {
                    let batch = rename_batch(&batch, &names)?;
                    render.batch(self.out.as_mut(), &batch)?;
                }
            }
        }
        render.finish(self.out.as_mut())
    }

    fn script(&mut self, sql: &str, verb: Option<&str>) -> Result<(), Failure> {
        let Some(outputs) = block(
            &self.runtime,
            self.cancel_on_ctrl_c,
            self.conn.run_script(sql),
        ) else {
            return Err(self.abandon_write());
        };
        for output in outputs {
            match output? {
                Output::Rows(schema, batches) => {
                    let names = display_names(&schema, &[]);
                    let schema = renamed(&schema, &names);
                    let mut render = renderer(&self.output_style(), &schema);
                    for batch in &batches {
                        render.batch(self.out.as_mut(), &rename_batch(batch, &names)?)?;
                    }
                    render.finish(self.out.as_mut())?;
                }
                Output::Count(n) => {
                    if let Some(verb) = verb.filter(|_| self.shows_counts()) {
                        let rows = if n == 1 { "row" } else { "rows" };
                        writeln!(self.out, "{n} {rows} {verb}")?;
                    }
                }
            }
        }
        Ok(())
    }

    /// After Ctrl-C abandoned a write: an open transaction may hold part of
    /// the statement's changes, so it is rolled back.
    fn abandon_write(&mut self) -> Failure {
        if !self.conn.in_transaction() {
            return cancelled();
        }
        let rolled_back = self.runtime.block_on(self.conn.execute("ROLLBACK"));
        match rolled_back {
            Ok(_) => Failure::Other(
                "canceling statement due to user request; the open transaction was rolled back (SQLSTATE 57014)"
                    .into(),
            ),
            Err(e) => Failure::Sql(e),
        }
    }

    /// Row counts are printed in the human-readable modes only.
    fn shows_counts(&self) -> bool {
        matches!(
            self.style.mode,
            Mode::Box | Mode::Table | Mode::Line | Mode::Markdown
        )
    }

    /// Replaces the database (`.open`): the old one is closed first, so the
    /// same path can be reopened; when the new one cannot be opened the
    /// session goes on in memory.
    pub(super) fn reopen(&mut self, path: &Path) -> Result<(), Failure> {
        Database::check_path(path)?;
        let memory = Database::open_in_memory()?;
        self.conn = memory.connect();
        self.db = memory;
        let db = open_database(Some(path), OpenOptions::default()).map_err(|e| {
            Failure::Other(format!("{e}\n(the session now uses an in-memory database)"))
        })?;
        self.conn = db.connect();
        self.db = db;
        Ok(())
    }
}

/// The header of each column: the expression as written when known, cut at
/// [`MAX_HEADER_CHARS`].
fn display_names(schema: &SchemaRef, written: &[Option<String>]) -> Vec<String> {
    let use_written = written.len() == schema.fields().len();
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = match written.get(i) {
                Some(Some(w)) if use_written => w.as_str(),
                _ => f.name().as_str(),
            };
            if name.chars().count() <= MAX_HEADER_CHARS {
                name.to_string()
            } else {
                let short: String = name.chars().take(MAX_HEADER_CHARS - 1).collect();
                format!("{short}…")
            }
        })
        .collect()
}

fn renamed(schema: &SchemaRef, names: &[String]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| f.as_ref().clone().with_name(n.clone()))
        .collect();
    Arc::new(Schema::new(fields))
}

fn rename_batch(batch: &RecordBatch, names: &[String]) -> Result<RecordBatch, Failure> {
    let schema = batch.schema();
    if schema.fields().iter().map(|f| f.name()).eq(names.iter()) {
        return Ok(batch.clone());
    }
    Ok(RecordBatch::try_new(
        renamed(&schema, names),
        batch.columns().to_vec(),
    )?)
}
