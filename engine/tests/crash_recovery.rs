//! Simulated power loss at every I/O operation of a workload of 240
//! transactions spanning several checkpoints. After each crash, recovery must
//! produce exactly the state after some prefix of the commits that includes
//! every acknowledged one (the one in flight may or may not be there), and the
//! database must accept new commits. Every fifth crash point also loses power
//! again during recovery.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::storage::{PowerLoss, SimDisk, TornFill};
use entidb_engine::{Engine, EngineOptions, Error, Result};

const TXNS: usize = 240;

fn options() -> EngineOptions {
    EngineOptions {
        checkpoint_wal_bytes: 12 * 1024,
        // Deterministic I/O order: the crash points are enumerated.
        background_checkpoints: false,
        ..EngineOptions::default()
    }
}

/// The model after each prefix of the workload: `models[i]` is the state
/// after `i` commits.
fn models() -> Vec<Model> {
    let mut m = Model::new();
    let mut out = vec![m.clone(), m.clone()]; // step 1 creates the table
    for i in 2..=TXNS {
        apply_step(&mut m, i);
        out.push(m.clone());
    }
    out
}

fn apply_step(m: &mut Model, i: usize) {
    let i = i as i64;
    m.insert(i % 37, format!("v{i}"));
    if i % 5 == 0 {
        m.remove(&((i * 7) % 37));
    }
    if i % 11 == 0 {
        for j in 0..3 {
            m.entry(1000 + i * 3 + j).or_insert_with(|| format!("b{i}"));
        }
    }
}

/// Runs step `i` as one transaction.
fn run_step(engine: &Engine, i: usize) -> Result<()> {
    let mut t = engine.begin();
    if i == 1 {
        t.create_table("kv", kv_schema(), vec![0])?;
        return t.commit().map(|_| ()).map_err(Error::from);
    }
    let kv = t.table("kv")?.id;
    let n = i as i64;
    put(&mut t, kv, n % 37, &format!("v{n}"))?;
    if n % 5 == 0 {
        let keys = keys_of(&mut t, kv, &[(n * 7) % 37]);
        t.delete(kv, &keys)?;
    }
    if n % 11 == 0 {
        let rows: Vec<(i64, String)> = (0..3)
            .map(|j| (1000 + n * 3 + j, format!("b{n}")))
            .collect();
        let rows: Vec<(i64, &str)> = rows.iter().map(|(k, v)| (*k, v.as_str())).collect();
        t.insert(kv, &kv_batch(&rows))?;
    }
    t.commit().map(|_| ()).map_err(Error::from)
}

/// Runs the workload until the first error; returns acknowledged commits.
fn run_until_error(disk: &SimDisk) -> usize {
    let Ok(engine) = open_sim(disk, options()) else {
        return 0;
    };
    for i in 1..=TXNS {
        if run_step(&engine, i).is_err() {
            return i - 1;
        }
    }
    TXNS
}

fn read_state(engine: &Engine) -> Model {
    match snapshot_kv(engine) {
        Ok(m) => m,
        Err(Error::TableNotFound { .. }) => Model::new(),
        Err(e) => panic!("reading after recovery failed: {e}"),
    }
}

fn power_loss_mode(k: u64) -> PowerLoss {
    match k % 4 {
        0 => PowerLoss::DropUnsynced,
        1 => PowerLoss::TearLastWrite {
            sectors_kept: 0,
            fill: TornFill::Absent,
        },
        2 => PowerLoss::TearLastWrite {
            sectors_kept: 1,
            fill: TornFill::Zero,
        },
        _ => PowerLoss::TearLastWrite {
            sectors_kept: (k % 3) as usize,
            fill: TornFill::Garbage,
        },
    }
}

fn assert_prefix(state: &Model, models: &[Model], acked: usize, k: u64) {
    let ok = (acked..=(acked + 1).min(TXNS)).any(|j| models[j] == *state);
    assert!(
        ok,
        "crash at op {k}: state after recovery matches no prefix in {acked}..={}",
        acked + 1
    );
}

#[test]
fn power_loss_at_every_io_operation() {
    let models = models();
    // A clean run: count operations and checkpoints.
    let disk = SimDisk::new();
    let engine = open_sim(&disk, options()).unwrap();
    let mut checkpoints = std::collections::BTreeSet::new();
    for i in 1..=TXNS {
        run_step(&engine, i).unwrap();
        checkpoints.insert(engine.checkpoint_seq());
    }
    drop(engine);
    let total_ops = disk.op_count();
    let engine = open_sim(&disk, options()).unwrap();
    assert_eq!(read_state(&engine), models[TXNS]);
    checkpoints.remove(&0);
    assert!(
        checkpoints.len() >= 3,
        "workload spans {} checkpoints",
        checkpoints.len()
    );
    eprintln!(
        "{total_ops} I/O operations, {} checkpoints",
        checkpoints.len()
    );
    drop(engine);

    for k in 0..=total_ops {
        let disk = SimDisk::new();
        disk.crash_after(k).unwrap();
        let acked = run_until_error(&disk);
        disk.power_loss(power_loss_mode(k)).unwrap();
        if k % 5 == 0 {
            // Lose power again during recovery.
            disk.crash_after(k % 7).unwrap();
            let _ = open_sim(&disk, options());
            disk.power_loss(power_loss_mode(k + 1)).unwrap();
        }
        let engine = open_sim(&disk, options())
            .unwrap_or_else(|e| panic!("crash at op {k}: reopen failed: {e}"));
        let state = read_state(&engine);
        assert_prefix(&state, &models, acked, k);
        // The recovered database accepts new work and keeps it.
        if state != Model::new() || acked > 0 {
            let mut t = engine.begin();
            if let Ok(def) = t.table("kv") {
                put(&mut t, def.id, -1, "after").unwrap();
                t.commit().unwrap();
                drop(engine);
                let engine = open_sim(&disk, options()).unwrap();
                assert_eq!(
                    read_state(&engine).get(&-1).map(String::as_str),
                    Some("after")
                );
            }
        }
    }
}
