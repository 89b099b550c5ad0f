//! `entidb-sim`: runs simulator seeds from the command line.
//!
//! ```text
//! entidb-sim --seeds N [--seed S] [--mode memory|power-loss|encrypted|all]
//! ```
//!
//! `--seeds N` runs N seeds (starting at `--seed S`, default 1) in every
//! mode (or the one `--mode` names) and prints `N seeds, M failures`, where a
//! seed fails when it fails in any mode; each failure prints its one-line
//! reproduction. `--seed S` alone reruns one seed and prints its history
//! step by step. Exit status 1 when anything failed.

use entidb_sim::{Mode, reproduction, run_seeds};
use std::process::ExitCode;

struct Args {
    seeds: Option<u64>,
    seed: Option<u64>,
    modes: Vec<Mode>,
}

const USAGE: &str =
    "usage: entidb-sim --seeds N [--seed S] [--mode memory|power-loss|encrypted|all]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: None,
        seed: None,
        modes: Mode::ALL.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seeds" => args.seeds = Some(number(&value()?)?),
            "--seed" => args.seed = Some(number(&value()?)?),
            "--mode" => {
                let v = value()?;
                args.modes = match v.as_str() {
                    "all" => Mode::ALL.to_vec(),
                    name => vec![Mode::parse(name).ok_or_else(|| format!("unknown mode {name}"))?],
                };
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.seeds.is_none() && args.seed.is_none() {
        return Err("give --seeds N or --seed S".into());
    }
    Ok(args)
}

fn number(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("entidb-sim: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let first = args.seed.unwrap_or(1);
    let (count, verbose) = match args.seeds {
        Some(n) => (n, false),
        None => (1, true),
    };
    let seeds = first..first.saturating_add(count);
    let mut failed = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for mode in &args.modes {
        let report = run_seeds(*mode, seeds.clone(), verbose);
        println!(
            "{}: {} seeds, {} failures, {} crashes recovered, {:.1}s",
            mode.name(),
            report.seeds,
            report.failed.len(),
            report.crashes,
            report.seconds
        );
        for seed in report.failed {
            failed.insert(seed);
            failures.push(reproduction(*mode, seed));
        }
    }
    println!("{count} seeds, {} failures", failed.len());
    for line in &failures {
        println!("  {line}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
