//! Warm analytic scans: EntiDB against a DataFusion MemTable holding the same
//! data, measured in the same run. `cargo bench --bench scan [-- --rows N]`;
//! without `--bench` (under `cargo test`) it does a tiny smoke run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{batches, best_of, schema};

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use entidb::{Connection, Database, OpenOptions, Secret};
use std::sync::Arc;
use std::time::{Duration, Instant};

const QUERIES: [(&str, &str); 2] = [
    ("filter_sum", "SELECT sum(v) FROM t WHERE k < 500000"),
    (
        "group_by",
        "SELECT k % 100, count(*), sum(v), avg(v) FROM t GROUP BY 1",
    ),
];

struct Loaded {
    db: Database,
    dir: tempfile::TempDir,
    load: Duration,
}

/// Creates `t` and loads `data` through the Arrow batch API, then checkpoints.
fn load(rt: &tokio::runtime::Runtime, data: &[RecordBatch], secret: Option<Secret>) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        encryption: secret,
        ..OpenOptions::default()
    };
    let db = Database::open_with(dir.path(), options).unwrap();
    let start = Instant::now();
    let mut conn = db.connect();
    rt.block_on(
        conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT, v DOUBLE, s VARCHAR)"),
    )
    .unwrap();
    let mut txn = db.engine().begin();
    let table = txn.table("t").unwrap().id;
    for b in data {
        txn.insert(table, b).unwrap();
    }
    txn.commit().unwrap();
    db.engine().checkpoint().unwrap();
    Loaded {
        db,
        dir,
        load: start.elapsed(),
    }
}

/// Re-opens the database (chunk cache empty) and times the first query.
fn cold_query(
    rt: &tokio::runtime::Runtime,
    loaded: Loaded,
    secret: Option<Secret>,
    sql: &str,
) -> Duration {
    let Loaded { db, dir, .. } = loaded;
    drop(db);
    let options = OpenOptions {
        encryption: secret,
        ..OpenOptions::default()
    };
    let start = Instant::now();
    let db = Database::open_with(dir.path(), options).unwrap();
    let mut conn = db.connect();
    rt.block_on(conn.query(sql)).unwrap();
    start.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let rows = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 10_000 });
    let runs = if full { 5 } else { 1 };
    let data = batches(rows);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let plain = load(&rt, &data, None);
    let encrypted = load(&rt, &data, Some(Secret::Key([9; 32])));
    let db = plain.db.clone();
    let mut conn: Connection = db.connect();
    let load = plain.load;

    let ctx = SessionContext::new();
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema(), vec![data.clone()]).unwrap()),
    )
    .unwrap();

    println!(
        "rows: {rows}; load through the Arrow batch API + checkpoint: {load:?} ({:.0} rows/s)",
        rows as f64 / load.as_secs_f64()
    );
    println!("| query | EntiDB warm | MemTable | ratio |");
    println!("|---|---|---|---|");
    for (name, sql) in QUERIES {
        let enti = best_of(runs, || {
            rt.block_on(conn.query(sql)).unwrap();
        });
        let mem = best_of(runs, || {
            rt.block_on(async { ctx.sql(sql).await.unwrap().collect().await.unwrap() });
        });
        println!(
            "| {name} | {enti:?} | {mem:?} | {:.2} |",
            enti.as_secs_f64() / mem.as_secs_f64()
        );
    }

    drop(conn);
    drop(db);
    let (plain_load, enc_load) = (plain.load, encrypted.load);
    let sql = QUERIES[0].1;
    let plain_cold = cold_query(&rt, plain, None, sql);
    let enc_cold = cold_query(&rt, encrypted, Some(Secret::Key([9; 32])), sql);
    println!();
    println!("| encryption | plain | encrypted | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| bulk load + checkpoint | {plain_load:?} | {enc_load:?} | {:.2} |",
        enc_load.as_secs_f64() / plain_load.as_secs_f64()
    );
    println!(
        "| reopen + cold filter_sum | {plain_cold:?} | {enc_cold:?} | {:.2} |",
        enc_cold.as_secs_f64() / plain_cold.as_secs_f64()
    );
}
