//! `entidb-slt [--memory] [--sqlite] PATH…`: runs sqllogictest files or
//! folders, each file on a fresh database (on disk in a temporary directory
//! unless `--memory`). Prints one line per file and finally
//! `N passed, M failed`, counting records. Exit code 0 when nothing failed,
//! 1 otherwise, 2 on a usage error.

use entidb_cli::slt::{Backend, run_file};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: entidb-slt [--memory] [--sqlite] [--verbose] PATH...";

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            collect(&e, out);
        }
    } else if path.extension().is_some_and(|e| e == "slt" || e == "test") {
        out.push(path.to_path_buf());
    }
}

fn main() -> ExitCode {
    let mut backend = Backend::Disk;
    let mut labels = Vec::new();
    let mut verbose = false;
    let mut paths = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--memory" => backend = Backend::Memory,
            "--sqlite" => labels.push("sqlite"),
            "--verbose" | "-v" => verbose = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => {
                eprintln!("unknown option {a}\n{USAGE}");
                return ExitCode::from(2);
            }
            a => paths.push(PathBuf::from(a)),
        }
    }
    if paths.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut files = Vec::new();
    for p in &paths {
        if !p.exists() {
            eprintln!("no such file or directory: {}", p.display());
            return ExitCode::from(2);
        }
        collect(p, &mut files);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        match runtime.block_on(run_file(file, backend, &labels)) {
            Ok(report) => {
                println!(
                    "{}: {} passed, {} failed",
                    file.display(),
                    report.passed,
                    report.failed
                );
                if verbose {
                    for f in &report.failures {
                        println!("  {}", f.replace('\n', "\n  "));
                    }
                }
                passed += report.passed;
                failed += report.failed;
            }
            Err(e) => {
                println!("{}: error: {e}", file.display());
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
