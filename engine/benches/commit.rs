//! Durable commit cost against the disk's own fdatasync, and group commit.
//!
//! `cargo bench -p entidb-engine --bench commit` prints a table; run without
//! `--bench` (as `cargo test` does) it does a tiny smoke run.

#![allow(clippy::disallowed_methods)] // benches may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use entidb_engine::{Engine, EngineOptions};
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn fdatasync_probe(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("probe"))
        .unwrap();
    let block = vec![7u8; 4096];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&block).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect()
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]))
}

fn row(id: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(vec![id])),
            Arc::new(StringArray::from(vec!["0123456789abcdef"])),
        ],
    )
    .unwrap()
}

/// Sequential write bandwidth of the disk: 1 MiB appends, one fdatasync.
fn disk_bandwidth(dir: &std::path::Path, mib: usize) -> f64 {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("seq"))
        .unwrap();
    let block = vec![3u8; 1 << 20];
    let t = Instant::now();
    for _ in 0..mib {
        f.write_all(&block).unwrap();
    }
    f.sync_data().unwrap();
    (mib << 20) as f64 / t.elapsed().as_secs_f64()
}

/// One transaction of `rows` rows: WAL bytes per second of commit time.
fn large_commit_bandwidth(engine: &Engine, table: u64, rows: usize) -> (f64, f64) {
    let ids = Int64Array::from_iter_values((0..rows as i64).map(|i| 10_000_000 + i));
    let strings = StringArray::from_iter_values((0..rows).map(|i| format!("{i:0>32}")));
    let batch = RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(strings)]).unwrap();
    let before = engine.wal_len();
    let mut t = engine.begin();
    let staged = Instant::now();
    t.insert(table, &batch).unwrap();
    let staged = staged.elapsed();
    let start = Instant::now();
    t.commit().unwrap();
    let commit = start.elapsed();
    let bytes = (engine.wal_len() - before) as f64;
    (
        bytes / commit.as_secs_f64(),
        bytes / (commit + staged).as_secs_f64(),
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 2000 } else { 20 };
    let dir = tempfile::tempdir().unwrap();
    let probe = fdatasync_probe(dir.path(), n);
    let engine = Engine::open_dir(dir.path().join("db"), EngineOptions::default()).unwrap();
    let mut t = engine.begin();
    let table = t.create_table("t", schema(), vec![0]).unwrap().id;
    t.commit().unwrap();

    let mut single = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let start = Instant::now();
        let mut t = engine.begin();
        t.insert(table, &row(i)).unwrap();
        t.commit().unwrap();
        single.push(start.elapsed());
    }
    let single_total: Duration = single.iter().sum();

    let writers = 8;
    let per = n / writers;
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let mut t = engine.begin();
                    t.insert(table, &row(1_000_000 + (w * per + i) as i64))
                        .unwrap();
                    t.commit().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let multi = start.elapsed();

    let seq_bw = disk_bandwidth(dir.path(), if full { 512 } else { 4 });
    let big = Engine::open_dir(
        dir.path().join("big"),
        EngineOptions {
            checkpoint_wal_bytes: u64::MAX,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let mut t = big.begin();
    let big_table = t.create_table("t", schema(), vec![0]).unwrap().id;
    t.commit().unwrap();
    let (commit_bw, total_bw) =
        large_commit_bandwidth(&big, big_table, if full { 1_000_000 } else { 1000 });

    let (mut probe, mut single2) = (probe, single.clone());
    let fsync_p50 = percentile(&mut probe, 0.5);
    let commit_p50 = percentile(&mut single2, 0.5);
    let single_rate = n as f64 / single_total.as_secs_f64();
    let multi_rate = (per * writers) as f64 / multi.as_secs_f64();
    println!("| metric | value |");
    println!("|---|---|");
    println!("| fdatasync p50 (4 KiB append) | {:?} |", fsync_p50);
    println!("| fdatasync p99 | {:?} |", percentile(&mut probe, 0.99));
    println!("| single-row commit p50 | {:?} |", commit_p50);
    println!(
        "| single-row commit p99 | {:?} |",
        percentile(&mut single2, 0.99)
    );
    println!(
        "| commit p50 / fdatasync p50 | {:.2} (target ≤ 1.10) |",
        commit_p50.as_secs_f64() / fsync_p50.as_secs_f64()
    );
    println!("| 1 writer commits/s | {single_rate:.0} |");
    println!("| 8 writers commits/s | {multi_rate:.0} |");
    println!(
        "| 8 writers / 1 writer | {:.2} (target ≥ 4) |",
        multi_rate / single_rate
    );
    let mib = |b: f64| b / (1 << 20) as f64;
    println!(
        "| disk sequential write (1 MiB appends + fdatasync) | {:.0} MiB/s |",
        mib(seq_bw)
    );
    println!(
        "| large commit WAL bandwidth (commit only / with staging) | {:.0} / {:.0} MiB/s |",
        mib(commit_bw),
        mib(total_bw)
    );
    println!(
        "| large commit / disk bandwidth | {:.2} (target ≥ 0.70) |",
        commit_bw / seq_bw
    );
}
