//! `entidb [PATH] [-c SQL]… [--csv | --json]`, `entidb --check PATH`
//!
//! Opens the database at PATH (in memory without one). With `-c` it runs each
//! SQL string in order and exits; without, it runs the statements read from
//! standard input. Query results print as a table, CSV or JSON. Exit code 0
//! on success, 1 on a SQL error (message on stderr), 2 on a usage error.
//! `--check` runs `PRAGMA integrity_check` on PATH and prints its report:
//! exit 0 when it is `ok`, 1 when it lists problems or the database cannot
//! be opened (a damaged database is refused by the open itself).

use arrow::array::RecordBatch;
use entidb::{BlockingConnection, Database, OpenOptions, Output, Secret};
use std::io::{Read, Write};
use std::process::ExitCode;

const USAGE: &str =
    "usage: entidb [--key-file FILE | --passphrase] [PATH] [-c SQL]... [--csv | --json]
       entidb [--key-file FILE | --passphrase] --check PATH
  --check           verify every checksum, file, index and constraint of PATH
  --key-file FILE   encrypt/decrypt with the 32 raw bytes in FILE
  --passphrase      encrypt/decrypt with a passphrase from $ENTIDB_PASSPHRASE
                    (or typed at a prompt)";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Csv,
    Json,
}

struct Args {
    path: Option<String>,
    commands: Vec<String>,
    format: Format,
    key_file: Option<String>,
    passphrase: bool,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        path: None,
        commands: Vec::new(),
        format: Format::Table,
        key_file: None,
        passphrase: false,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" => args
                .commands
                .push(it.next().ok_or("-c needs an SQL argument")?),
            "--csv" => args.format = Format::Csv,
            "--json" => args.format = Format::Json,
            "--key-file" => args.key_file = Some(it.next().ok_or("--key-file needs a file")?),
            "--passphrase" => args.passphrase = true,
            "--check" => args.check = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if args.path.is_none() => args.path = Some(s.to_string()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok(args)
}

/// Longest column header printed in full; longer ones (a header derived
/// from a 10 MB literal) are cut, as formatting them took minutes.
const MAX_HEADER_CHARS: usize = 64;

/// `batches` with column names longer than [`MAX_HEADER_CHARS`] shortened.
fn short_headers(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, String> {
    batches
        .iter()
        .map(|b| {
            let schema = b.schema();
            if schema
                .fields()
                .iter()
                .all(|f| f.name().chars().count() <= MAX_HEADER_CHARS)
            {
                return Ok(b.clone());
            }
            let fields: Vec<arrow::datatypes::Field> = schema
                .fields()
                .iter()
                .map(|f| {
                    if f.name().chars().count() <= MAX_HEADER_CHARS {
                        return f.as_ref().clone();
                    }
                    let short: String = f.name().chars().take(MAX_HEADER_CHARS - 1).collect();
                    f.as_ref().clone().with_name(format!("{short}…"))
                })
                .collect();
            let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
            RecordBatch::try_new(schema, b.columns().to_vec()).map_err(|e| e.to_string())
        })
        .collect()
}

/// Cells longer than this are printed by [`plain_table`]: the table
/// formatter's time grows much faster than the cell (1 MB: 3 s, 10 MB: more
/// than a minute).
const MAX_PRETTY_CELL: usize = 64 << 10;

/// Formats rows as text cells (NULL as an empty cell).
fn cells(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, String> {
    let options = arrow::util::display::FormatOptions::default();
    let mut rows = Vec::new();
    for b in batches {
        let formatters = b
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..b.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// The same `+---+` table as arrow's pretty printer, in linear time (values
/// on one line each).
fn plain_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let rule: String = widths.iter().fold("+".to_string(), |mut s, w| {
        s.push_str(&"-".repeat(w + 2));
        s.push('+');
        s
    });
    let line = |cells: &[String]| {
        let mut s = "|".to_string();
        for (w, c) in widths.iter().zip(cells) {
            s.push(' ');
            s.push_str(c);
            s.push_str(&" ".repeat(w - c.chars().count() + 1));
            s.push('|');
        }
        s
    };
    let mut out = vec![rule.clone(), line(header), rule.clone()];
    out.extend(rows.iter().map(|r| line(r)));
    out.push(rule);
    out.join("\n")
}

fn print(batches: &[RecordBatch], format: Format) -> Result<(), String> {
    if batches.is_empty() {
        return Ok(());
    }
    let batches = &short_headers(batches)?;
    let mut out = std::io::stdout().lock();
    if format == Format::Table {
        let rows = cells(batches)?;
        if rows.iter().flatten().any(|c| c.len() > MAX_PRETTY_CELL) {
            let header: Vec<String> = batches
                .first()
                .map(|b| {
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect()
                })
                .unwrap_or_default();
            return writeln!(out, "{}", plain_table(&header, &rows)).map_err(|e| e.to_string());
        }
    }
    match format {
        Format::Table => arrow::util::pretty::pretty_format_batches(batches)
            .map(|t| writeln!(out, "{t}").map_err(|e| e.to_string()))
            .map_err(|e| e.to_string())?,
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            batches
                .iter()
                .try_for_each(|b| w.write(b))
                .map_err(|e| e.to_string())
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)
                .and_then(|()| w.finish())
                .map_err(|e| e.to_string())?;
            writeln!(out).map_err(|e| e.to_string())
        }
    }
}

fn run(conn: &mut BlockingConnection, sql: &str, format: Format) -> Result<(), ()> {
    for output in conn.run_script(sql) {
        match output {
            Ok(Output::Rows(_, batches)) => {
                if let Err(e) = print(&batches, format) {
                    eprintln!("error: {e}");
                    return Err(());
                }
            }
            Ok(Output::Count(_)) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return Err(());
            }
        }
    }
    Ok(())
}

/// The encryption secret from `--key-file` or `--passphrase`.
fn secret(args: &Args) -> Result<Option<Secret>, String> {
    if let Some(path) = &args.key_file {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read key file {path}: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("key file {path} must hold exactly 32 bytes"))?;
        return Ok(Some(Secret::Key(key)));
    }
    if args.passphrase {
        let pass = match std::env::var("ENTIDB_PASSPHRASE") {
            Ok(p) => p,
            Err(_) => rpassword::prompt_password("passphrase: ").map_err(|e| e.to_string())?,
        };
        if pass.is_empty() {
            return Err("the passphrase is empty".into());
        }
        return Ok(Some(Secret::Passphrase(pass)));
    }
    Ok(None)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.check && (args.path.is_none() || !args.commands.is_empty()) {
        eprintln!("--check needs a database PATH and no -c\n{USAGE}");
        return ExitCode::from(2);
    }
    if args.path.is_none() && (args.key_file.is_some() || args.passphrase) {
        eprintln!("encryption needs a database PATH\n{USAGE}");
        return ExitCode::from(2);
    }
    let secret = match secret(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let db = match &args.path {
        Some(p) => Database::open_with(
            p,
            OpenOptions {
                encryption: secret,
                ..OpenOptions::default()
            },
        ),
        None => Database::open_in_memory(),
    };
    let mut conn = match db.and_then(|db| BlockingConnection::new(&db)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if args.check {
        return check(&mut conn);
    }
    let scripts = if args.commands.is_empty() {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            eprintln!("error: cannot read standard input: {e}");
            return ExitCode::from(2);
        }
        vec![input]
    } else {
        args.commands
    };
    for sql in &scripts {
        if sql.trim().is_empty() {
            continue;
        }
        if run(&mut conn, sql, args.format).is_err() {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// `--check`: prints the integrity report; exit 0 only for `ok`.
fn check(conn: &mut BlockingConnection) -> ExitCode {
    let lines = match conn.query("PRAGMA integrity_check") {
        Ok(batches) => batches
            .iter()
            .filter_map(|b| b.columns().first().cloned())
            .flat_map(|c| {
                arrow::array::AsArray::as_string_opt::<i32>(&c)
                    .map(|c| {
                        c.iter()
                            .map(|v| v.unwrap_or_default().to_string())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect::<Vec<String>>(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    for line in &lines {
        println!("{line}");
    }
    if lines == ["ok"] {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
