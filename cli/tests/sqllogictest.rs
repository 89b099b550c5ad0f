//! Runs every `.slt` file under the repository's `slt/` against the in-memory and the on-disk
//! backend, as separately named tests (`memory::<file>`, `disk::<file>`).

use entidb_cli::slt::{Backend, Options, run_file};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};

fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(slt_files(&path));
            } else if path.extension().is_some_and(|e| e == "slt") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn run(path: &Path, backend: Backend) -> Result<(), Failed> {
    let report = run_file(path, &Options::new(backend)).map_err(Failed::from)?;
    if report.failed > 0 || report.passed == 0 {
        let failures: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
        return Err(Failed::from(format!(
            "{} passed, {} failed\n{}",
            report.passed,
            report.failed,
            failures.join("\n")
        )));
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../slt");
    let mut trials = Vec::new();
    for file in slt_files(&root) {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (label, backend) in [("memory", Backend::Memory), ("disk", Backend::Disk)] {
            let path = file.clone();
            trials.push(Trial::test(format!("{label}::{name}"), move || {
                run(&path, backend)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
