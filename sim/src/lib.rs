//! Deterministic simulation of the engine against a reference model.
//!
//! From a `u64` seed a history of steps is generated (`history.rs`): up to
//! six concurrently open transactions on one thread doing full scans,
//! primary-key and secondary-index point reads, inserts (also of deleted
//! keys and of duplicate UNIQUE values), updates (delete + insert of the
//! key), deletes, statement rollbacks, index/constraint DDL, commits and
//! rollbacks, interleaved with checkpoints (GC, compaction) and index
//! builds/drops. Every step is checked against the model in `model.rs`
//! (`harness.rs`).
//!
//! Modes ([`Mode`]):
//! - `memory`: MemStorage, small checkpoint threshold;
//! - `power-loss`: SimDisk with one-shot EIO/ENOSPC/fsync failures and
//!   crash points; after a failure the engine is dropped, power is lost
//!   (unsynced writes dropped or the last write torn) and it is reopened:
//!   the recovered state must be the state after every acknowledged commit,
//!   plus possibly the one in flight when the failure hit; a commit
//!   reported as failed must not be visible before the crash;
//! - `encrypted`: the same on EncryptedStorage over SimDisk.
//!
//! The memory mode found that a statement rollback made the insert-time
//! UNIQUE check forget an own row it revived (seed 268; fixed in `txn.rs`,
//! `Undo::UniqueKey`); the CI run (`tests/seeds.rs`, 300 memory seeds)
//! includes that one.
//!
//! Two front ends share this code: the CI test (`cargo test -p entidb-sim`;
//! `SIM_SEEDS=n` / `SIM_SEED=s` override its seeds) and the binary
//! (`cargo run --release --bin entidb-sim -- --seeds N [--seed S]`), which
//! prints `N seeds, M failures`. A failing seed prints a one-line
//! reproduction and its minimised history.
//!
//! This crate is a test harness, not library code: it runs only in tests
//! and in the simulator binary. The engine's panics are caught per step and
//! reported as failures, so the harness may unwrap its own invariants.

#![allow(clippy::disallowed_methods)] // the harness indexes its own batches
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod history;
pub mod model;

use std::time::Instant;

/// Which storage a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In-memory storage, no faults.
    Memory,
    /// A simulated disk with I/O faults and power loss.
    PowerLoss,
    /// The encrypted backend over the simulated disk.
    Encrypted,
}

impl Mode {
    /// Every mode, in the order the binary runs them.
    pub const ALL: [Mode; 3] = [Mode::Memory, Mode::PowerLoss, Mode::Encrypted];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Memory => "memory",
            Mode::PowerLoss => "power-loss",
            Mode::Encrypted => "encrypted",
        }
    }

    /// The mode named `name` (see [`Mode::name`]).
    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    fn disk(self) -> bool {
        !matches!(self, Mode::Memory)
    }
}

/// The one-line command that reruns `seed` in `mode` with its history.
pub fn reproduction(mode: Mode, seed: u64) -> String {
    format!(
        "cargo run --release --bin entidb-sim -- --mode {} --seed {seed}",
        mode.name()
    )
}

/// The outcome of running some seeds in one mode.
#[derive(Debug, Default)]
pub struct Report {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds that failed, in order.
    pub failed: Vec<u64>,
    /// Crashes recovered from (power-loss and encrypted modes).
    pub crashes: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs `seeds` in `mode`. With `verbose` every step of every history is
/// printed (meant for one seed). A failure prints its step, message and
/// reproduction; the first three failures are minimised and printed.
pub fn run_seeds(mode: Mode, seeds: impl IntoIterator<Item = u64>, verbose: bool) -> Report {
    let start = Instant::now();
    let mut report = Report::default();
    for seed in seeds {
        report.seeds += 1;
        let steps = history::generate(mode, seed);
        match harness::execute(mode, seed, &steps, verbose) {
            Ok(c) => report.crashes += c,
            Err(f) => {
                report.failed.push(seed);
                eprintln!(
                    "\n=== {} seed {seed} FAILED at step {}: {}\nreproduce: {}",
                    mode.name(),
                    f.step,
                    f.msg,
                    reproduction(mode, seed),
                );
                if report.failed.len() <= 3 {
                    harness::print_minimised(mode, seed, &steps, &f);
                }
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// The history of `seed` in `mode`, one step per line (for determinism
/// checks and reading).
pub fn history_text(mode: Mode, seed: u64) -> Vec<String> {
    history::generate(mode, seed)
        .iter()
        .map(|s| format!("{s:?}"))
        .collect()
}
