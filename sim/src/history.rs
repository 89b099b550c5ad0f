//! Generation: from a seed, the parameters of a run and its history of steps.

use crate::Mode;
use crate::model::Row;
use entidb_engine::EngineOptions;
use entidb_engine::storage::{PowerLoss, TornFill};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt;

/// Transactions open at once, at most.
pub(crate) const SLOTS: usize = 6;

#[derive(Debug, Clone, Copy)]
pub(crate) enum FaultKind {
    Eio,
    NoSpace,
    SyncFails,
    CrashAfter,
}

#[derive(Clone)]
pub(crate) enum Step {
    Begin {
        slot: usize,
        read_only: bool,
    },
    Scan {
        slot: usize,
    },
    Get {
        slot: usize,
        key: i64,
    },
    GetU {
        slot: usize,
        u: i64,
    },
    Insert {
        slot: usize,
        rows: Vec<(i64, Row)>,
        undo: bool,
    },
    Update {
        slot: usize,
        key: i64,
        row: Row,
        undo: bool,
    },
    Delete {
        slot: usize,
        keys: Vec<i64>,
        undo: bool,
    },
    Touch {
        slot: usize,
    },
    Commit {
        slot: usize,
    },
    Rollback {
        slot: usize,
    },
    Checkpoint,
    BuildIndex {
        cols: Vec<usize>,
    },
    ForgetIndex {
        cols: Vec<usize>,
    },
    /// Clean restart: drop everything, lose power, reopen.
    Reopen {
        loss: PowerLoss,
    },
    /// Arms a one-shot fault `n` operations ahead; `loss` is used for the
    /// crash that follows.
    Fault {
        kind: FaultKind,
        n: u64,
        loss: PowerLoss,
    },
}

fn fmt_row(r: &Row) -> String {
    match r.1 {
        Some(u) => format!("({:?}, u={u})", short(&r.0)),
        None => format!("({:?}, u=NULL)", short(&r.0)),
    }
}

fn short(s: &str) -> String {
    if s.len() > 6 {
        format!("{}…[{}]", &s[..2], s.len())
    } else {
        s.to_string()
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = |undo: &bool| if *undo { " then ROLLBACK TO" } else { "" };
        match self {
            Step::Begin { slot, read_only } => {
                write!(
                    f,
                    "T{slot} BEGIN{}",
                    if *read_only { " READ ONLY" } else { "" }
                )
            }
            Step::Scan { slot } => write!(f, "T{slot} SCAN"),
            Step::Get { slot, key } => write!(f, "T{slot} GET id={key}"),
            Step::GetU { slot, u } => write!(f, "T{slot} GET u={u} (index on u)"),
            Step::Insert { slot, rows, undo } => {
                let rows: Vec<String> = rows
                    .iter()
                    .map(|(k, r)| format!("{k}:{}", fmt_row(r)))
                    .collect();
                write!(f, "T{slot} INSERT [{}]{}", rows.join(", "), u(undo))
            }
            Step::Update {
                slot,
                key,
                row,
                undo,
            } => write!(f, "T{slot} UPDATE id={key} → {}{}", fmt_row(row), u(undo)),
            Step::Delete { slot, keys, undo } => {
                write!(f, "T{slot} DELETE ids={keys:?}{}", u(undo))
            }
            Step::Touch { slot } => write!(f, "T{slot} TOUCH SCHEMA + SET CATALOG"),
            Step::Commit { slot } => write!(f, "T{slot} COMMIT"),
            Step::Rollback { slot } => write!(f, "T{slot} ROLLBACK"),
            Step::Checkpoint => write!(f, "CHECKPOINT"),
            Step::BuildIndex { cols } => write!(f, "BUILD INDEX {cols:?}"),
            Step::ForgetIndex { cols } => write!(f, "FORGET INDEX {cols:?}"),
            Step::Reopen { loss } => write!(f, "REOPEN after power loss {loss:?}"),
            Step::Fault { kind, n, loss } => {
                write!(f, "ARM {kind:?} in {n} ops (then power loss {loss:?})")
            }
        }
    }
}

// ---------------------------------------------------------------- generation

pub(crate) struct Params {
    pub(crate) steps: usize,
    pub(crate) keys: i64,
    pub(crate) udomain: i64,
    pub(crate) max_open: usize,
    pub(crate) options: EngineOptions,
}

pub(crate) fn params(mode: Mode, seed: u64) -> Params {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_0F0A);
    let checkpoint_wal_bytes = match rng.random_range(0..4) {
        0 => 1 << 10,
        1 => 4 << 10,
        2 => 16 << 10,
        _ => 1 << 20,
    };
    let cache_bytes = if rng.random_bool(0.3) { 0 } else { 1 << 20 };
    let steps = if mode.disk() {
        rng.random_range(100..300)
    } else {
        rng.random_range(200..500)
    };
    Params {
        steps,
        keys: rng.random_range(3..20),
        udomain: rng.random_range(2..8),
        max_open: rng.random_range(2..=SLOTS),
        options: EngineOptions {
            checkpoint_wal_bytes,
            cache_bytes,
            checkpoint_on_close: mode.disk() && rng.random_bool(0.3),
            // Threshold checkpoints on the background thread are waited for
            // after every commit, so the history stays deterministic.
            background_checkpoints: rng.random_bool(0.5),
            read_only: false,
            // Write-once loads (`load.rs`) for every commit that writes
            // rows, for those of three rows or more, or never: chosen from
            // a value already drawn, so earlier seeds keep their histories.
            direct_load_rows: match steps % 3 {
                0 => 1,
                1 => 3,
                _ => usize::MAX,
            },
        },
    }
}

pub(crate) fn gen_loss(rng: &mut StdRng) -> PowerLoss {
    if rng.random_bool(0.5) {
        PowerLoss::DropUnsynced
    } else {
        PowerLoss::TearLastWrite {
            sectors_kept: rng.random_range(0..3),
            fill: match rng.random_range(0..3) {
                0 => TornFill::Absent,
                1 => TornFill::Zero,
                _ => TornFill::Garbage,
            },
        }
    }
}

pub(crate) fn generate(mode: Mode, seed: u64) -> Vec<Step> {
    let p = params(mode, seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut open: Vec<usize> = Vec::new();
    let mut steps = Vec::with_capacity(p.steps);
    let mut counter = 0u32;
    for i in 0..p.steps {
        let late = i > p.steps / 2;
        let slot = |rng: &mut StdRng, open: &[usize]| {
            if open.is_empty() || rng.random_bool(0.05) {
                rng.random_range(0..SLOTS)
            } else {
                open[rng.random_range(0..open.len())]
            }
        };
        let mut row = |rng: &mut StdRng| -> Row {
            counter += 1;
            let v = if rng.random_bool(0.1) {
                format!("{counter}{}", "x".repeat(400))
            } else if rng.random_bool(0.3) {
                "same".to_string()
            } else {
                format!("v{counter}")
            };
            let u = if rng.random_bool(0.4) {
                None
            } else {
                Some(rng.random_range(0..p.udomain))
            };
            (v, u)
        };
        let mut weights: Vec<(u32, u8)> = vec![
            (
                if open.is_empty() {
                    60
                } else if open.len() < p.max_open {
                    8
                } else {
                    1
                },
                0,
            ),
            (6, 1),
            (8, 2),
            (3, 3),
            (12, 4),
            (10, 5),
            (9, 6),
            (if late { 2 } else { 1 }, 7),
            (if open.is_empty() { 0 } else { 9 }, 8),
            (if open.is_empty() { 0 } else { 2 }, 9),
            (4, 10),
            (if late { 4 } else { 1 }, 11),
        ];
        if mode.disk() {
            weights.push((3, 12));
            weights.push((1, 13));
        }
        let total: u32 = weights.iter().map(|w| w.0).sum();
        let mut pick = rng.random_range(0..total);
        let mut what = 0;
        for (w, k) in &weights {
            if pick < *w {
                what = *k;
                break;
            }
            pick -= w;
        }
        let key = |rng: &mut StdRng| rng.random_range(0..p.keys);
        let undo = |rng: &mut StdRng| rng.random_bool(0.1);
        let step = match what {
            0 => {
                let free: Vec<usize> = (0..SLOTS).filter(|s| !open.contains(s)).collect();
                let slot = if free.is_empty() {
                    rng.random_range(0..SLOTS)
                } else {
                    free[rng.random_range(0..free.len())]
                };
                if !open.contains(&slot) {
                    open.push(slot);
                }
                Step::Begin {
                    slot,
                    read_only: rng.random_bool(0.15),
                }
            }
            1 => Step::Scan {
                slot: slot(&mut rng, &open),
            },
            2 => Step::Get {
                slot: slot(&mut rng, &open),
                key: key(&mut rng),
            },
            3 => Step::GetU {
                slot: slot(&mut rng, &open),
                u: rng.random_range(0..p.udomain),
            },
            4 => {
                let n = if rng.random_bool(0.2) {
                    rng.random_range(2..4)
                } else {
                    1
                };
                let slot = slot(&mut rng, &open);
                let rows = (0..n).map(|_| (key(&mut rng), row(&mut rng))).collect();
                Step::Insert {
                    slot,
                    rows,
                    undo: undo(&mut rng),
                }
            }
            5 => Step::Update {
                slot: slot(&mut rng, &open),
                key: key(&mut rng),
                row: row(&mut rng),
                undo: undo(&mut rng),
            },
            6 => {
                let n = if rng.random_bool(0.2) { 2 } else { 1 };
                Step::Delete {
                    slot: slot(&mut rng, &open),
                    keys: (0..n).map(|_| key(&mut rng)).collect(),
                    undo: undo(&mut rng),
                }
            }
            7 => Step::Touch {
                slot: slot(&mut rng, &open),
            },
            8 | 9 => {
                let slot = slot(&mut rng, &open);
                open.retain(|s| *s != slot);
                if what == 8 {
                    Step::Commit { slot }
                } else {
                    Step::Rollback { slot }
                }
            }
            10 => Step::Checkpoint,
            11 => {
                let cols = if rng.random_bool(0.5) {
                    vec![2]
                } else {
                    vec![0]
                };
                if rng.random_bool(0.5) {
                    Step::BuildIndex { cols }
                } else {
                    Step::ForgetIndex { cols }
                }
            }
            12 => Step::Fault {
                kind: match rng.random_range(0..4) {
                    0 => FaultKind::Eio,
                    1 => FaultKind::NoSpace,
                    2 => FaultKind::SyncFails,
                    _ => FaultKind::CrashAfter,
                },
                n: rng.random_range(0..30),
                loss: gen_loss(&mut rng),
            },
            _ => {
                open.clear();
                Step::Reopen {
                    loss: gen_loss(&mut rng),
                }
            }
        };
        steps.push(step);
    }
    // End by committing what is still open, then a checkpoint and a read.
    for slot in open {
        steps.push(Step::Commit { slot });
    }
    steps.push(Step::Checkpoint);
    steps.push(Step::Begin {
        slot: 0,
        read_only: true,
    });
    steps.push(Step::Scan { slot: 0 });
    steps
}
