//! `entidb-slt [OPTIONS] PATH…`: runs sqllogictest files or folders, each
//! file on a fresh database (on disk in a temporary directory unless
//! `--memory`). Prints one line per file and finally
//! `N passed, M failed, K skipped`, counting records.
//!
//! Exit code: 0 when nothing failed (with `--baseline`: when no group
//! passed fewer records than the baseline file says), 1 otherwise, 2 on a
//! usage error. See the `slt` module of `entidb-cli` for what is counted and
//! how values print.

use clap::Parser;
use entidb_cli::slt::causes::{self, Totals};
use entidb_cli::slt::{Backend, Options, run_file};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Runs sqllogictest files against EntiDB.
#[derive(Parser, Debug)]
#[command(name = "entidb-slt", version)]
struct Args {
    /// Files (`.slt`, or DuckDB's `.test`) or folders of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Each file's database in memory instead of on disk.
    #[arg(long)]
    memory: bool,
    /// SQLite's harness: values by the declared type letters,
    /// `entidb.dialect = 'sqlite'`, the label `sqlite`.
    #[arg(long)]
    sqlite: bool,
    /// A label for `onlyif`/`skipif` (repeatable).
    #[arg(long = "label", value_name = "LABEL")]
    labels: Vec<String>,
    /// Expected error messages are not compared: any error passes
    /// (for other engines' suites, whose wording is their own).
    #[arg(long)]
    any_error: bool,
    /// The time limit of one record, in seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    timeout: f64,
    /// Writes the Markdown report (totals per group, failures by cause).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The section of the report file to replace (between its
    /// `<!-- BEGIN entidb-slt report NAME -->` and `END` markers).
    #[arg(long, default_value = "all", value_name = "NAME")]
    section: String,
    /// Fails (exit 1) only if a group passes fewer records than this file
    /// says (lines `<passed> <group>`), instead of on any failure.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Writes the passed counts per group as a baseline file.
    #[arg(long, value_name = "FILE")]
    write_baseline: Option<PathBuf>,
    /// Prints every failure.
    #[arg(long, short)]
    verbose: bool,
}

/// The files under `path`, each with the folder its group is named from.
fn collect(path: &Path, root: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            collect(&e, root, out);
        }
    } else if path.extension().is_some_and(|e| e == "slt" || e == "test") {
        out.push((path.to_path_buf(), root.to_path_buf()));
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut files = Vec::new();
    for p in &args.paths {
        if !p.exists() {
            eprintln!("no such file or directory: {}", p.display());
            return ExitCode::from(2);
        }
        let root = if p.is_dir() {
            p.clone()
        } else {
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        collect(p, &root, &mut files);
    }
    let mut options = Options::new(if args.memory {
        Backend::Memory
    } else {
        Backend::Disk
    });
    options.labels = args.labels.clone();
    options.sqlite = args.sqlite;
    options.any_error = args.any_error;
    options.timeout = match Duration::try_from_secs_f64(args.timeout) {
        Ok(limit) if !limit.is_zero() => limit,
        _ => {
            eprintln!("--timeout takes a positive number of seconds");
            return ExitCode::from(2);
        }
    };
    let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut total = Totals::default();
    for (file, root) in &files {
        let group = groups.entry(causes::group_of(file, root)).or_default();
        match run_file(file, &options) {
            Ok(report) => {
                let t = report.totals();
                println!(
                    "{}: {} passed, {} failed, {} skipped",
                    file.display(),
                    t.passed,
                    t.failed,
                    t.skipped
                );
                if args.verbose {
                    for f in &report.failures {
                        println!("  {}", f.to_string().replace('\n', "\n  "));
                    }
                }
                group.add(t);
                total.add(t);
                failures.extend(report.failures);
            }
            Err(e) => {
                println!("{}: error: {e}", file.display());
                let t = Totals {
                    failed: 1,
                    ..Totals::default()
                };
                group.add(t);
                total.add(t);
            }
        }
    }
    println!(
        "{} passed, {} failed, {} skipped ({:.2}% of the records that ran)",
        total.passed,
        total.failed,
        total.skipped,
        total.pass_rate()
    );
    if let Some(path) = &args.report {
        let command = std::iter::once("entidb-slt".to_string())
            .chain(std::env::args().skip(1))
            .map(|a| {
                if a.contains(char::is_whitespace) {
                    format!("'{a}'")
                } else {
                    a
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let report = causes::render(&command, &groups, &failures);
        if let Err(e) = causes::write_report(path, &args.section, &report) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if let Some(path) = &args.write_baseline {
        let text: String = groups
            .iter()
            .map(|(g, t)| format!("{} {g}\n", t.passed))
            .collect();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    match &args.baseline {
        Some(path) => match check_baseline(path, &groups) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("cannot read baseline {}: {e}", path.display());
                ExitCode::from(2)
            }
        },
        None if total.failed == 0 => ExitCode::SUCCESS,
        None => ExitCode::from(1),
    }
}

/// Compares passed counts with the baseline; prints each group that fell
/// below it, or rose above it (time to raise the baseline).
fn check_baseline(path: &Path, groups: &BTreeMap<String, Totals>) -> std::io::Result<bool> {
    let text = std::fs::read_to_string(path)?;
    let mut ok = true;
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (count, group) = line.trim().split_once(' ').unwrap_or((line, ""));
        let Ok(want) = count.parse::<usize>() else {
            return Err(std::io::Error::other(format!("bad line: {line}")));
        };
        let got = groups.get(group).map_or(0, |t| t.passed);
        if got < want {
            println!("baseline: {group} passed {got} records, fewer than its baseline {want}");
            ok = false;
        } else if got > want {
            println!(
                "baseline: {group} passed {got} records, more than its baseline {want}: raise it"
            );
        }
    }
    if ok {
        println!(
            "baseline: no group passed fewer records than {}",
            path.display()
        );
    }
    Ok(ok)
}
