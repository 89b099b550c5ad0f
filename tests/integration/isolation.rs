//! Black-box isolation checking, Elle-style: a multi-threaded list-append
//! workload through the public API (`BlockingConnection`s to one on-disk
//! `Database`, with concurrent `CHECKPOINT`s) records a history, and a
//! checker infers the ww/wr/rw dependency graph from it and looks for the
//! anomalies snapshot isolation forbids (G0, G1a, G1b, G1c, G-single, lost
//! updates, internal and impossible reads, lost writes, stale reads).
//! Write skew (G2-item) is allowed under SI: it is counted and printed.
//!
//! `ISOLATION_TXNS=N` sets the number of transactions (default 2,000, run in
//! batches of at most 25,000 per fresh database); `ISOLATION_THREADS`,
//! `ISOLATION_SEED` and `ISOLATION_KEYS` tune the workload;
//! `ISOLATION_REGISTER_TXNS` (default 1,000) sizes the register workload;
//! `ISOLATION_DUMP=PATH` also writes each list-append history as Jepsen
//! JSON (`PATH.runN.json`) for offline checking with another Elle.
//!
//! The checker is tested on hand-made histories with each anomaly in
//! `checker_tests` below, so a green run means something.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "isolation/checker.rs"]
mod checker;
#[path = "isolation/register.rs"]
mod register;
#[path = "isolation/workload.rs"]
mod workload;

use checker::{Outcome, check};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

#[test]
fn list_append_is_snapshot_isolated() {
    let total = env_usize("ISOLATION_TXNS", 2_000);
    let batch = env_usize("ISOLATION_BATCH", 25_000).max(1);
    let seed = env_usize(
        "ISOLATION_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as usize),
    ) as u64;
    let started = Instant::now();
    let mut checked = 0;
    let mut committed = 0;
    let mut g2 = 0;
    let mut failures = Vec::new();
    let mut run_no = 0;
    while checked < total {
        let cfg = workload::Config {
            txns: batch.min(total - checked),
            threads: env_usize("ISOLATION_THREADS", 8),
            active_keys: env_usize("ISOLATION_KEYS", 8),
            max_appends_per_key: 40,
            max_ops: 4,
            checkpoint_every: Duration::from_millis(3),
            seed: seed.wrapping_add(run_no),
            failed_statements: 0.05,
            rollbacks: 0.03,
        };
        let (history, stats) = workload::run(&cfg);
        if let Ok(path) = std::env::var("ISOLATION_DUMP") {
            let path = format!("{path}.run{run_no}.json");
            std::fs::write(&path, checker::to_jepsen_json(&history)).unwrap();
            println!("history written to {path} (Jepsen JSON)");
        }
        let check_started = Instant::now();
        let report = check(&history);
        println!(
            "run {run_no} (seed {}): {} txns in {:.1?} ({:.0} txn/s), {} checkpoints, {} failed statements \
             (recorded as aborted one-append txns), errors {:?}; checked in {:.1?}\n{report}",
            cfg.seed,
            cfg.txns,
            stats.elapsed,
            cfg.txns as f64 / stats.elapsed.as_secs_f64(),
            stats.checkpoints,
            stats.failed_statements,
            stats.errors_by_state,
            check_started.elapsed(),
        );
        for ex in report.g2_examples.iter().take(2) {
            println!(
                "example G2-item (write skew, allowed under SI): {}",
                ex.detail
            );
        }
        // The history also holds each failed statement as an aborted
        // one-append transaction.
        assert_eq!(report.txns, cfg.txns + stats.failed_statements);
        assert!(
            stats.checkpoint_errors.is_empty(),
            "CHECKPOINT failed: {:?}",
            stats.checkpoint_errors
        );
        assert!(stats.reopened_state_matches, "state changed across re-open");
        assert!(
            report.committed * 4 > report.txns,
            "too few commits to mean anything: {report}"
        );
        assert!(
            history.txns.iter().all(|t| t.outcome != Outcome::Unknown),
            "a COMMIT failed with an error other than 40001"
        );
        checked += cfg.txns;
        committed += report.committed;
        g2 += report.g2_item;
        if !report.is_valid() {
            failures.push(format!("run {run_no} (seed {}): {report}", cfg.seed));
        }
        run_no += 1;
    }
    println!(
        "isolation: {checked} transactions checked ({committed} committed) in {run_no} runs, \
         {:.1?}; G2-item components (allowed): {g2}; failing runs: {}",
        started.elapsed(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checker on a real recorded history, mutated: each plausible bug a
/// database could have is found in a history of realistic size.
#[test]
fn checker_finds_bugs_planted_in_a_real_history() {
    use checker::Mop;
    let cfg = workload::Config {
        txns: 400,
        threads: 4,
        active_keys: 4,
        max_appends_per_key: 40,
        max_ops: 4,
        checkpoint_every: Duration::from_millis(3),
        seed: 99,
        failed_statements: 0.0,
        rollbacks: 0.05,
    };
    let (history, _) = workload::run(&cfg);
    let clean = check(&history);
    assert!(clean.is_valid(), "{clean}");

    // 1. A committed read-modify-write that read a stale state: its read
    //    loses the last element, written by another read-modify-write.
    let writer = |k, x| {
        history
            .txns
            .iter()
            .position(|t| t.outcome == Outcome::Committed && t.ops.contains(&Mop::Append { k, x }))
    };
    let mut stale = history.clone();
    let victim = history.txns.iter().enumerate().find_map(|(i, t)| {
        (t.outcome == Outcome::Committed).then_some(())?;
        t.ops.windows(2).enumerate().find_map(|(j, w)| match w {
            [Mop::Read { k, v }, Mop::Append { k: k2, .. }]
                if k == k2
                    && !v.is_empty()
                    && writer(*k, v[v.len() - 1]).is_some_and(|w| w != i) =>
            {
                Some((i, j))
            }
            _ => None,
        })
    });
    let (i, j) = victim.expect("no committed append after a read of another's write");
    if let Mop::Read { v, .. } = &mut stale.txns[i].ops[j] {
        v.pop();
    }
    let report = check(&stale);
    // (A lost update too, when that writer appended to the key only once.)
    assert!(report.has("G-single"), "{report}");

    // 2. An aborted transaction's append shows up: mark a committed writer
    //    whose element others read as aborted.
    let mut dirty = history.clone();
    let read_by_others = history.txns.iter().enumerate().find_map(|(i, t)| {
        t.ops.iter().find_map(|m| match m {
            Mop::Read { k, v } if t.outcome == Outcome::Committed => {
                v.iter().filter_map(|&x| writer(*k, x)).find(|&w| w != i)
            }
            _ => None,
        })
    });
    dirty.txns[read_by_others.expect("no read of another's write")].outcome = Outcome::Aborted;
    let report = check(&dirty);
    assert!(report.has("G1a"), "{report}");

    // 3. A committed append that the final state lacks.
    let mut lost = history.clone();
    let k = *lost.final_state.as_ref().unwrap().keys().next().unwrap();
    lost.final_state
        .as_mut()
        .unwrap()
        .get_mut(&k)
        .unwrap()
        .pop();
    let report = check(&lost);
    assert!(report.has("lost-write"), "{report}");
    println!(
        "planted bugs found in a {}-transaction history; clean: {clean}",
        history.txns.len()
    );
}

#[test]
fn read_write_register_is_snapshot_isolated() {
    let txns = env_usize("ISOLATION_REGISTER_TXNS", 1_000);
    let seed = env_usize("ISOLATION_SEED", 7) as u64;
    let cfg = workload::Config {
        txns,
        threads: env_usize("ISOLATION_THREADS", 8),
        active_keys: 6,
        max_appends_per_key: 0,
        max_ops: 4,
        checkpoint_every: Duration::from_millis(3),
        seed,
        failed_statements: 0.0,
        rollbacks: 0.0,
    };
    let (history, final_state, elapsed) = register::run(&cfg);
    let report = register::check(&history, Some(&final_state));
    println!(
        "register (seed {seed}): {} txns in {elapsed:.1?}\n{report}",
        history.len()
    );
    for ex in report.g2_examples.iter().take(1) {
        println!(
            "example G2-item (write skew, allowed under SI): {}",
            ex.detail
        );
    }
    assert_eq!(report.txns, txns);
    assert!(report.committed * 4 > report.txns, "{report}");
    assert!(report.is_valid(), "{report}");
}

/// The register checker: a fork of the version chain is a lost update, a
/// serial history is valid, read skew is a G-single.
mod register_tests {
    use super::checker::Outcome::{Aborted, Committed};
    use super::register::{RMop, RTxn, check};

    fn txns(t: Vec<(super::checker::Outcome, Vec<RMop>)>) -> Vec<RTxn> {
        t.into_iter()
            .enumerate()
            .map(|(process, (outcome, ops))| RTxn {
                process,
                ops,
                outcome,
                begin: 0,
                end: 1,
            })
            .collect()
    }
    fn r(k: u64, v: Option<u64>) -> RMop {
        RMop::Read { k, v }
    }
    fn w(k: u64, x: u64) -> RMop {
        RMop::Write { k, x }
    }

    #[test]
    fn register_checker_detects_and_accepts() {
        let serial = txns(vec![
            (Committed, vec![r(1, None), w(1, 1)]),
            (Committed, vec![r(1, Some(1)), w(1, 2), r(1, Some(2))]),
            (Aborted, vec![r(1, Some(2)), w(1, 3)]),
            (Committed, vec![r(1, Some(2))]),
        ]);
        let final_state = [(1, 2)].into_iter().collect();
        assert!(check(&serial, Some(&final_state)).is_valid());

        let lost = txns(vec![
            (Committed, vec![r(1, None), w(1, 1)]),
            (Committed, vec![r(1, None), w(1, 2)]),
        ]);
        assert!(check(&lost, None).has("lost-update"));

        let aborted_read = txns(vec![
            (Aborted, vec![r(1, None), w(1, 1)]),
            (Committed, vec![r(1, Some(1))]),
        ]);
        assert!(check(&aborted_read, None).has("G1a"));

        let read_skew = txns(vec![
            (Committed, vec![r(1, None), w(1, 1), r(2, None), w(2, 2)]),
            (Committed, vec![r(1, None), r(2, Some(2))]),
        ]);
        assert!(check(&read_skew, None).has("G-single"));

        let write_skew = txns(vec![
            (Committed, vec![r(1, None), r(2, None), w(2, 1)]),
            (Committed, vec![r(2, None), r(1, None), w(1, 2)]),
        ]);
        let report = check(&write_skew, None);
        assert!(report.is_valid(), "{report}");
        assert_eq!(report.g2_item, 1);
    }
}

/// The checker on hand-made histories: each forbidden anomaly is found, and
/// write skew is accepted.
mod checker_tests {
    use super::checker::{Elem, History, Key, Mop, Outcome, Txn, check};
    use std::collections::BTreeMap;

    fn r(k: Key, v: &[Elem]) -> Mop {
        Mop::Read { k, v: v.to_vec() }
    }
    fn a(k: Key, x: Elem) -> Mop {
        Mop::Append { k, x }
    }

    /// Transactions on distinct connections, all overlapping in time.
    fn history(txns: Vec<(Outcome, Vec<Mop>)>, final_state: Option<&[(Key, &[Elem])]>) -> History {
        History {
            txns: txns
                .into_iter()
                .enumerate()
                .map(|(i, (outcome, ops))| Txn {
                    process: i,
                    ops,
                    outcome,
                    error: None,
                    begin: 0,
                    end: 1_000,
                })
                .collect(),
            final_state: final_state.map(|f| {
                f.iter()
                    .map(|(k, v)| (*k, v.to_vec()))
                    .collect::<BTreeMap<_, _>>()
            }),
        }
    }

    use Outcome::{Aborted, Committed};

    fn assert_detects(h: &History, kind: &str) {
        let report = check(h);
        assert!(report.has(kind), "expected {kind}, got {report}");
        println!(
            "{kind} detected as expected (all: {:?}):\n{report}",
            report.kinds()
        );
    }

    #[test]
    fn serial_history_is_valid() {
        let h = history(
            vec![
                (Committed, vec![r(1, &[]), a(1, 1)]),
                (Committed, vec![r(1, &[1]), a(1, 2), r(2, &[])]),
                (Committed, vec![r(1, &[1, 2]), r(2, &[])]),
                (Aborted, vec![r(1, &[1, 2]), a(1, 9)]),
            ],
            Some(&[(1, &[1, 2])]),
        );
        let report = check(&h);
        assert!(report.is_valid(), "{report}");
        assert_eq!(report.g2_item, 0);
    }

    #[test]
    fn detects_g0_write_cycle() {
        // T0 wrote x then y second; T1 wrote x second and y first.
        let h = history(
            vec![
                (Committed, vec![a(1, 1), a(2, 2)]),
                (Committed, vec![a(1, 3), a(2, 4)]),
                (Committed, vec![r(1, &[1, 3]), r(2, &[4, 2])]),
            ],
            None,
        );
        assert_detects(&h, "G0");
    }

    #[test]
    fn detects_g1a_aborted_read() {
        let h = history(
            vec![(Aborted, vec![a(1, 1)]), (Committed, vec![r(1, &[1])])],
            None,
        );
        assert_detects(&h, "G1a");
    }

    #[test]
    fn detects_g1b_intermediate_read() {
        let h = history(
            vec![
                (Committed, vec![a(1, 1), a(1, 2)]),
                (Committed, vec![r(1, &[1])]),
                (Committed, vec![r(1, &[1, 2])]),
            ],
            None,
        );
        assert_detects(&h, "G1b");
    }

    #[test]
    fn detects_g1c_circular_information_flow() {
        // Each read the other's write: wr cycle.
        let h = history(
            vec![
                (Committed, vec![a(1, 1), r(2, &[2])]),
                (Committed, vec![a(2, 2), r(1, &[1])]),
            ],
            None,
        );
        assert_detects(&h, "G1c");
    }

    #[test]
    fn detects_g_single_read_skew() {
        // T1 wrote x and y; T0 saw y's new state but x's old one.
        let h = history(
            vec![
                (Committed, vec![r(1, &[]), r(2, &[2])]),
                (Committed, vec![a(1, 1), a(2, 2)]),
                (Committed, vec![r(1, &[1])]),
            ],
            None,
        );
        assert_detects(&h, "G-single");
    }

    #[test]
    fn detects_lost_update() {
        // Both read x empty and appended: with the version order showing
        // both appends it is a G-single; with one overwritten, a lost write.
        let txns = || {
            vec![
                (Committed, vec![r(1, &[]), a(1, 1)]),
                (Committed, vec![r(1, &[]), a(1, 2)]),
            ]
        };
        let h = history(txns(), Some(&[(1, &[1, 2])]));
        assert_detects(&h, "lost-update");
        assert_detects(&h, "G-single");
        let h = history(txns(), Some(&[(1, &[2])]));
        assert_detects(&h, "lost-update");
        assert_detects(&h, "lost-write");
    }

    #[test]
    fn detects_internal_inconsistency() {
        let h = history(vec![(Committed, vec![a(1, 1), r(1, &[])])], None);
        assert_detects(&h, "internal");
        let h = history(
            vec![
                (Committed, vec![r(1, &[]), r(1, &[5])]),
                (Committed, vec![a(1, 5)]),
            ],
            None,
        );
        assert_detects(&h, "internal");
    }

    #[test]
    fn detects_impossible_reads() {
        let h = history(
            vec![
                (Committed, vec![a(1, 1)]),
                (Committed, vec![a(1, 2)]),
                (Committed, vec![r(1, &[1, 2])]),
                (Committed, vec![r(1, &[2])]),
            ],
            None,
        );
        assert_detects(&h, "incompatible-order");
        let h = history(vec![(Committed, vec![r(1, &[7])])], None);
        assert_detects(&h, "garbage-read");
        let h = history(
            vec![(Committed, vec![a(1, 1)]), (Committed, vec![r(1, &[1, 1])])],
            None,
        );
        assert_detects(&h, "duplicate-elements");
    }

    #[test]
    fn detects_session_and_real_time_violations() {
        // One connection: T0 appends and commits, then T1 on the same
        // connection (later in time) does not see it.
        let mut h = history(
            vec![
                (Committed, vec![r(1, &[]), a(1, 1)]),
                (Committed, vec![r(1, &[])]),
                (Committed, vec![r(1, &[1])]),
            ],
            None,
        );
        h.txns[1].process = 0;
        h.txns[1].begin = 2_000;
        h.txns[1].end = 3_000;
        let report = check(&h);
        assert!(report.has("G-single-process"), "{report}");
        assert!(report.has("stale-read"), "{report}");
        assert!(!report.has("G-single"), "{report}");
    }

    #[test]
    fn accepts_write_skew() {
        // T0 read x, wrote y; T1 read y, wrote x; neither saw the other.
        let h = history(
            vec![
                (Committed, vec![r(1, &[]), r(2, &[]), a(2, 1)]),
                (Committed, vec![r(2, &[]), r(1, &[]), a(1, 2)]),
            ],
            Some(&[(1, &[2]), (2, &[1])]),
        );
        let report = check(&h);
        assert!(report.is_valid(), "write skew must be allowed: {report}");
        assert_eq!(report.g2_item, 1, "{report}");
        assert_eq!(report.g2_examples[0].txns.len(), 2);
        println!("{}", report.g2_examples[0].detail);
    }
}
