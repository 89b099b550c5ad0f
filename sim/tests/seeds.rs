//! The simulator in CI: a few hundred seeds per mode (the same code the
//! `entidb-sim` binary runs). `SIM_SEEDS=n` runs seeds `1..=n` instead of
//! the defaults below, `SIM_SEED=s` runs one seed and prints its history.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use entidb_sim::{Mode, history_text, run_seeds};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn run_mode(mode: Mode, default_seeds: u64) {
    let report = match env_u64("SIM_SEED") {
        Some(s) => run_seeds(mode, [s], true),
        None => run_seeds(
            mode,
            1..=env_u64("SIM_SEEDS").unwrap_or(default_seeds),
            false,
        ),
    };
    eprintln!(
        "{}: {} seeds, {} failures, {} crashes recovered, {:.1}s",
        mode.name(),
        report.seeds,
        report.failed.len(),
        report.crashes,
        report.seconds
    );
    assert!(
        report.failed.is_empty(),
        "failing seeds: {:?}",
        report.failed
    );
}

#[test]
fn sim_memory() {
    run_mode(Mode::Memory, 300);
}

#[test]
fn sim_power_loss() {
    run_mode(Mode::PowerLoss, 200);
}

#[test]
fn sim_encrypted() {
    run_mode(Mode::Encrypted, 100);
}

#[test]
fn generation_is_deterministic() {
    for mode in Mode::ALL {
        assert_eq!(history_text(mode, 7), history_text(mode, 7));
        assert_ne!(history_text(mode, 7), history_text(mode, 8));
    }
}
