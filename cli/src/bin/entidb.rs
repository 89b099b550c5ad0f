//! `entidb [OPTIONS] [PATH]`: the EntiDB shell.
//!
//! Opens the database directory PATH (created when new; in memory without
//! PATH). With `-c` it runs each argument in order and exits; otherwise it
//! reads statements and dot-commands from standard input — interactively
//! when that is a terminal, else as a stream, each statement running as
//! soon as its `;` arrives. Exit code 0 on success, 1 when a statement or
//! command failed (or the database cannot be opened), 2 on a usage error.
//! `--check` runs `PRAGMA integrity_check` on PATH and prints its report:
//! exit 0 when it is `ok`, 1 otherwise. See `entidb_cli::shell`.

use clap::Parser;
use entidb::{Database, OpenOptions, Secret};
use entidb_cli::shell::{
    Failure, Mode, Settings, Shell, Stop, Style, TERMINAL_ROWS, open_database, run_commands,
    run_stream, run_terminal,
};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// The EntiDB shell: SQL on an embedded database.
#[derive(Debug, Parser)]
#[command(name = "entidb", version, about, after_help = entidb_cli::shell::HELP)]
struct Args {
    /// Database directory (created when new); in memory without one.
    path: Option<PathBuf>,
    /// Run this statement or dot-command, then exit (repeatable, in order).
    #[arg(short = 'c', value_name = "SQL")]
    commands: Vec<String>,
    /// Print results as CSV.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// Print each result as one JSON array of row objects (NULL as null).
    #[arg(long)]
    json: bool,
    /// Stop at the first error (also `-bail`).
    #[arg(long)]
    bail: bool,
    /// Encrypt/decrypt with the 32 raw bytes in FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase")]
    key_file: Option<PathBuf>,
    /// Encrypt/decrypt with a passphrase from $ENTIDB_PASSPHRASE (or typed
    /// at a prompt).
    #[arg(long)]
    passphrase: bool,
    /// Open the database read-only (it must exist): writes fail with
    /// SQLSTATE 25006, and other read-only opens may run alongside.
    #[arg(long)]
    readonly: bool,
    /// Verify every checksum, file, index and constraint of PATH and exit.
    #[arg(long, requires = "path", conflicts_with = "commands")]
    check: bool,
}

/// `-bail` (sqlite3's spelling) as `--bail`.
fn normalized_args() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .map(|a| if a == "-bail" { "--bail".into() } else { a })
        .collect()
}

fn main() -> ExitCode {
    let args = match Args::try_parse_from(normalized_args()) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if args.path.is_none() && (args.key_file.is_some() || args.passphrase) {
        eprintln!("error: encryption needs a database PATH");
        return ExitCode::from(2);
    }
    let secret = match secret(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.readonly && args.path.is_none() {
        eprintln!("error: --readonly needs a database PATH");
        return ExitCode::from(2);
    }
    let options = OpenOptions {
        encryption: secret,
        read_only: args.readonly,
        ..OpenOptions::default()
    };
    let db = match open_database(args.path.as_deref(), options) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("{}", open_error(&e));
            return ExitCode::from(1);
        }
    };
    if db.is_read_only() && !args.readonly {
        eprintln!(
            "note: the database cannot be written here (read-only file system or no permission); \
             it is open read-only"
        );
    }
    if args.check {
        return check(&db);
    }
    match session(db, &args) {
        Ok(shell) => shell,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn open_error(e: &Failure) -> String {
    match e {
        Failure::Sql(e) => format!("error: {} (SQLSTATE {})", e.kind(), e.sqlstate()),
        other => format!("error: {other}"),
    }
}

fn session(db: Database, args: &Args) -> Result<ExitCode, Failure> {
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let interactive = args.commands.is_empty() && stdin_is_terminal;
    let mode = if args.csv {
        Mode::Csv
    } else if args.json {
        Mode::Json
    } else if stdout_is_terminal {
        Mode::Box
    } else {
        Mode::Table
    };
    let settings = Settings {
        style: Style {
            mode,
            headers: true,
            max_rows: Some(TERMINAL_ROWS),
        },
        bail: args.bail,
        cancel_on_ctrl_c: interactive,
        stdout_is_terminal,
    };
    let mut shell = Shell::new(db, settings)?;
    let ended = if !args.commands.is_empty() {
        run_commands(&mut shell, &args.commands)
    } else if interactive {
        let where_ = match &args.path {
            Some(p) => format!("database {}", p.display()),
            None => "an in-memory database (.open PATH for a file)".to_string(),
        };
        let banner = format!(
            "EntiDB {} on {where_}. Statements end with ';'; .help for commands.",
            env!("CARGO_PKG_VERSION")
        );
        run_terminal(&mut shell, &banner)
    } else {
        run_stream(&mut shell, std::io::stdin().lock())
    };
    let _ = std::io::stdout().flush();
    Ok(match ended {
        Err(Stop::BrokenPipe) => ExitCode::SUCCESS,
        _ if shell.errors() > 0 => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// The encryption secret from `--key-file` or `--passphrase`.
fn secret(args: &Args) -> Result<Option<Secret>, String> {
    if let Some(path) = &args.key_file {
        let shown = path.display();
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read key file {shown}: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("key file {shown} must hold exactly 32 bytes"))?;
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

/// `--check`: prints the integrity report; exit 0 only for `ok`.
fn check(db: &Database) -> ExitCode {
    let mut conn = match entidb::BlockingConnection::new(db) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
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
    let mut out = std::io::stdout().lock();
    for line in &lines {
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    if lines == ["ok"] {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
