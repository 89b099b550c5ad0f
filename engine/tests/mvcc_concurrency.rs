//! Concurrency: a bank of accounts under 8 transferring threads, and group
//! commit.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use common::*;
use entidb_engine::storage::{PowerLoss, SimDisk};
use entidb_engine::{Engine, EngineOptions, Error, ScanRequest, Transaction};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

const ACCOUNTS: i64 = 10;
const TOTAL: i64 = ACCOUNTS * 1000;

fn accounts_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("bal", DataType::Int64, false),
    ]))
}

fn rows(rows: &[(i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        accounts_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

fn setup_bank(engine: &Engine) -> u64 {
    let mut t = engine.begin();
    let def = t.create_table("acct", accounts_schema(), vec![0]).unwrap();
    let initial: Vec<(i64, i64)> = (0..ACCOUNTS).map(|i| (i, 1000)).collect();
    t.insert(def.id, &rows(&initial)).unwrap();
    t.commit().unwrap();
    def.id
}

/// Balances with their row keys, as the transaction sees them.
fn balances(t: &mut Transaction, table: u64) -> Result<BTreeMap<i64, (i64, Vec<u8>)>, Error> {
    let req = ScanRequest {
        include_key: true,
        ..ScanRequest::default()
    };
    let mut out = BTreeMap::new();
    for batch in t.scan(table, req)? {
        let batch = batch?;
        let id = batch.column(0).as_primitive::<Int64Type>();
        let bal = batch.column(1).as_primitive::<Int64Type>();
        let key = batch.column(2).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            out.insert(id.value(i), (bal.value(i), key.value(i).to_vec()));
        }
    }
    Ok(out)
}

fn total(engine: &Engine, table: u64) -> Result<i64, Error> {
    let mut t = engine.begin_read_only();
    Ok(balances(&mut t, table)?.values().map(|(b, _)| b).sum())
}

/// One transfer; `Err` on conflict or I/O failure.
fn transfer(engine: &Engine, table: u64, from: i64, to: i64, amount: i64) -> Result<(), Error> {
    let mut t = engine.begin();
    let b = balances(&mut t, table)?;
    let (fb, fk) = b[&from].clone();
    let (tb, tk) = b[&to].clone();
    let keys = arrow::array::BinaryArray::from_iter_values([fk, tk]);
    t.delete(table, &keys)?;
    t.insert(table, &rows(&[(from, fb - amount), (to, tb + amount)]))?;
    t.commit().map(|_| ()).map_err(Error::from)
}

/// Runs 8 transferring threads and one auditing thread until each transfer
/// thread has done `per_thread` attempts or the database fails.
fn run_bank(engine: &Engine, table: u64, per_thread: usize) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    // The auditor audits once before any transfer starts, so it provably
    // ran even when the disk fails at the first write.
    let started = Arc::new(std::sync::Barrier::new(2));
    let auditor = {
        let (engine, stop, started) = (engine.clone(), stop.clone(), started.clone());
        thread::spawn(move || {
            let mut audits = 0;
            let mut first = true;
            while first || !stop.load(Ordering::SeqCst) {
                if let Ok(sum) = total(&engine, table) {
                    assert_eq!(sum, TOTAL, "a snapshot saw a partial transfer");
                    audits += 1;
                }
                if first {
                    first = false;
                    started.wait();
                }
            }
            audits
        })
    };
    started.wait();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let engine = engine.clone();
            let (committed, conflicts) = (committed.clone(), conflicts.clone());
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(w);
                for _ in 0..per_thread {
                    let from = rng.random_range(0..ACCOUNTS);
                    let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                    match transfer(&engine, table, from, to, rng.random_range(1..50)) {
                        Ok(()) => committed.fetch_add(1, Ordering::SeqCst),
                        Err(Error::Conflict { .. }) => conflicts.fetch_add(1, Ordering::SeqCst),
                        Err(_) => return,
                    };
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    assert!(auditor.join().unwrap() > 0);
    (
        committed.load(Ordering::SeqCst),
        conflicts.load(Ordering::SeqCst),
    )
}

#[test]
fn bank_transfers_keep_the_total_in_every_snapshot() {
    let engine = Engine::open_memory().unwrap();
    let table = setup_bank(&engine);
    let (committed, conflicts) = run_bank(&engine, table, 150);
    assert!(committed > 0);
    assert!(conflicts > 0, "8 threads over 10 accounts must collide");
    assert_eq!(total(&engine, table).unwrap(), TOTAL);
}

#[test]
fn bank_total_survives_power_loss_at_random_points() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..6 {
        let disk = SimDisk::new();
        let options = EngineOptions {
            checkpoint_wal_bytes: 32 * 1024,
            ..EngineOptions::default()
        };
        let engine = open_sim(&disk, options.clone()).unwrap();
        let table = setup_bank(&engine);
        disk.crash_after(rng.random_range(20..600)).unwrap();
        run_bank(&engine, table, 100);
        drop(engine);
        disk.power_loss(PowerLoss::DropUnsynced).unwrap();
        let engine = open_sim(&disk, options).unwrap();
        assert_eq!(total(&engine, table).unwrap(), TOTAL, "round {round}");
        // Still works after recovery.
        transfer(&engine, table, 0, 1, 5).unwrap();
        assert_eq!(total(&engine, table).unwrap(), TOTAL);
    }
}

#[test]
fn group_commit_shares_fsyncs_between_concurrent_committers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let before = engine.wal_sync_count();
    let per_thread = 40;
    let handles: Vec<_> = (0..8)
        .map(|w| {
            let engine = engine.clone();
            thread::spawn(move || {
                for i in 0..per_thread {
                    let mut t = engine.begin();
                    t.insert(kv, &kv_batch(&[(w * 1000 + i, "x")])).unwrap();
                    t.commit().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let commits = 8 * per_thread as u64;
    let syncs = engine.wal_sync_count() - before;
    assert!(
        syncs * 2 < commits,
        "{syncs} fdatasyncs for {commits} commits: group commit is not grouping"
    );
    assert_eq!(snapshot_kv(&engine).unwrap().len() as u64, commits);
}

#[test]
fn every_acknowledged_concurrent_commit_survives_power_loss() {
    let mut rng = StdRng::seed_from_u64(11);
    for round in 0..8 {
        let disk = SimDisk::new();
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        let kv = create_kv(&engine);
        disk.crash_after(rng.random_range(10..400)).unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let (engine, acked) = (engine.clone(), acked.clone());
                thread::spawn(move || {
                    for i in 0..100 {
                        let id = w * 1000 + i;
                        let mut t = engine.begin();
                        if t.insert(kv, &kv_batch(&[(id, "x")])).is_err() || t.commit().is_err() {
                            return;
                        }
                        acked.lock().unwrap().push(id);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        drop(engine);
        disk.power_loss(PowerLoss::DropUnsynced).unwrap();
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        let state = snapshot_kv(&engine).unwrap();
        for id in acked.lock().unwrap().iter() {
            assert!(
                state.contains_key(id),
                "round {round}: acknowledged commit {id} lost"
            );
        }
    }
}
