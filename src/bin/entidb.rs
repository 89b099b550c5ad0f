//! `entidb [PATH] [-c SQL]… [--csv | --json]`
//!
//! Opens the database at PATH (in memory without one). With `-c` it runs each
//! SQL string in order and exits; without, it runs the statements read from
//! standard input. Query results print as a table, CSV or JSON. Exit code 0
//! on success, 1 on a SQL error (message on stderr), 2 on a usage error.

use arrow::array::RecordBatch;
use entidb::{BlockingConnection, Database, OpenOptions, Output, Secret};
use std::io::{Read, Write};
use std::process::ExitCode;

const USAGE: &str =
    "usage: entidb [--key-file FILE | --passphrase] [PATH] [-c SQL]... [--csv | --json]
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
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        path: None,
        commands: Vec::new(),
        format: Format::Table,
        key_file: None,
        passphrase: false,
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
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if args.path.is_none() => args.path = Some(s.to_string()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok(args)
}

fn print(batches: &[RecordBatch], format: Format) -> Result<(), String> {
    if batches.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
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
