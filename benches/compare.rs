//! EntiDB against SQLite, a DataFusion MemTable and the disk's fdatasync, in
//! one process and one run, so that ratios hold on a noisy shared machine.
//!
//! ```text
//! cargo bench --bench compare -- --rows N [--json out.json] [--only W1,W3]
//! ```
//!
//! Workloads (see docs/performance.md for targets and results):
//! W1 bulk load in one transaction (Arrow batch API, SQL VALUES batches),
//! W2 2,000 single-row durable commits (1 and 8 writers), W3 100,000
//! prepared primary-key lookups, W4 CREATE INDEX + 100,000 prepared `k = ?`
//! lookups and the same 200 queries without the index, W5 warm and cold
//! scans, W6 reopen after a killed process (WAL not checkpointed) + first
//! query, W7 TPC-H (scale factor `--tpch-sf`, default 1; 0.001 in smoke
//! mode) against DataFusion MemTables of the same batches. Every phase also
//! reports the process's peak RSS.
//!
//! Without `--bench` (under `cargo test`) it runs a tiny smoke pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod tpch;

use common::{Rng, batches, best_of, schema};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use entidb::engine::EngineOptions;
use entidb::{BlockingConnection, Database, OpenOptions};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCHEMA_SQL: &str = "(id BIGINT PRIMARY KEY, k BIGINT, v DOUBLE, s VARCHAR(16))";
const FILTER: &str = "SELECT sum(v) FROM t WHERE k < 500000";
const GROUP_BY: &str = "SELECT k % 100, count(*), sum(v), avg(v) FROM t GROUP BY 1";

/// One measured value.
struct Measure {
    workload: &'static str,
    system: &'static str,
    metric: String,
    value: f64,
    unit: &'static str,
}

#[derive(Default)]
struct Report {
    rows: usize,
    results: Vec<Measure>,
    ratios: BTreeMap<String, f64>,
    only: Option<Vec<String>>,
}

impl Report {
    fn wants(&self, workload: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|w| w == workload))
    }

    fn add(
        &mut self,
        workload: &'static str,
        system: &'static str,
        metric: &str,
        value: f64,
        unit: &'static str,
    ) {
        println!("  {workload} {system:<9} {metric:<28} {value:>14.3} {unit}");
        self.results.push(Measure {
            workload,
            system,
            metric: metric.to_string(),
            value,
            unit,
        });
    }

    fn ratio(&mut self, key: &str, value: f64) {
        self.ratios.insert(key.to_string(), value);
    }

    fn rss(&mut self, workload: &'static str) {
        if let Some(mib) = peak_rss_mib() {
            self.add(workload, "process", "peak_rss", mib, "MiB");
        }
        reset_peak_rss();
    }

    fn json(&self) -> String {
        let mut s = format!("{{\"rows\": {}, \"results\": [", self.rows);
        for (i, m) in self.results.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                s,
                "{sep}\n  {{\"workload\": \"{}\", \"system\": \"{}\", \"metric\": \"{}\", \"value\": {}, \"unit\": \"{}\"}}",
                m.workload,
                m.system,
                m.metric,
                json_num(m.value),
                m.unit
            );
        }
        s.push_str("\n], \"ratios\": {");
        for (i, (k, v)) in self.ratios.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(s, "{sep}\n  \"{k}\": {}", json_num(*v));
        }
        s.push_str("\n}}\n");
        s
    }
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// Peak resident set since the last reset (Linux; `None` elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn open_entidb(dir: &Path) -> Database {
    Database::open(dir).unwrap()
}

fn open_sqlite(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c
}

fn int(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}

/// Appends 4 KiB and fdatasyncs it, `n` times: the floor of a durable commit.
fn fdatasync_probe(report: &mut Report, dir: &Path, n: usize) -> Duration {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("probe"))
        .unwrap();
    let block = vec![7u8; 4096];
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&block).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    let p50 = percentile(&mut times, 0.5);
    let p99 = percentile(&mut times, 0.99);
    report.add("W2", "fdatasync", "p50", us(p50), "us");
    report.add("W2", "fdatasync", "p99", us(p99), "us");
    p50
}

fn w1_load(
    report: &mut Report,
    db: &Database,
    lite: &mut rusqlite::Connection,
    data: &[RecordBatch],
    rows: usize,
) {
    let mut c = BlockingConnection::new(db).unwrap();
    c.execute(&format!("CREATE TABLE t {SCHEMA_SQL}")).unwrap();
    reset_peak_rss();
    let t = Instant::now();
    c.execute("BEGIN").unwrap();
    for b in data {
        c.append("t", b).unwrap();
    }
    c.execute("COMMIT").unwrap();
    let arrow_load = t.elapsed();
    let t = Instant::now();
    c.execute("CHECKPOINT").unwrap();
    let checkpoint = t.elapsed();
    let enti_rate = rows as f64 / arrow_load.as_secs_f64();
    report.add("W1", "entidb", "arrow_api_rows_per_s", enti_rate, "rows/s");
    report.add(
        "W1",
        "entidb",
        "checkpoint_after_load",
        ms(checkpoint),
        "ms",
    );

    // SQL INSERT … VALUES in batches of 1,000 rows, one transaction (at most
    // 1M rows: text SQL is the slow path by nature).
    let sql_rows = rows.min(1_000_000);
    c.execute(&format!("CREATE TABLE t_sql {SCHEMA_SQL}"))
        .unwrap();
    let t = Instant::now();
    c.execute("BEGIN").unwrap();
    let mut done = 0;
    'outer: for b in data {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let ks = b.column(1).as_primitive::<Int64Type>();
        let vs = b.column(2).as_primitive::<Float64Type>();
        let ss = b.column(3).as_string::<i32>();
        for start in (0..b.num_rows()).step_by(1000) {
            let end = (start + 1000).min(b.num_rows());
            let mut sql = String::from("INSERT INTO t_sql VALUES ");
            for i in start..end {
                let sep = if i == start { "" } else { "," };
                let _ = write!(
                    sql,
                    "{sep}({},{},{},'{}')",
                    ids.value(i),
                    ks.value(i),
                    vs.value(i),
                    ss.value(i)
                );
            }
            c.execute(&sql).unwrap();
            done += end - start;
            if done >= sql_rows {
                break 'outer;
            }
        }
    }
    c.execute("COMMIT").unwrap();
    let sql_load = t.elapsed();
    report.add(
        "W1",
        "entidb",
        "sql_values_rows_per_s",
        done as f64 / sql_load.as_secs_f64(),
        "rows/s",
    );
    c.execute("DROP TABLE t_sql").unwrap();

    lite.execute(&format!("CREATE TABLE t {SCHEMA_SQL}"), [])
        .unwrap();
    let t = Instant::now();
    let tx = lite.transaction().unwrap();
    {
        let mut stmt = tx.prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4)").unwrap();
        for b in data {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let ks = b.column(1).as_primitive::<Int64Type>();
            let vs = b.column(2).as_primitive::<Float64Type>();
            let ss = b.column(3).as_string::<i32>();
            for i in 0..b.num_rows() {
                stmt.execute(rusqlite::params![
                    ids.value(i),
                    ks.value(i),
                    vs.value(i),
                    ss.value(i)
                ])
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    let lite_load = t.elapsed();
    let lite_rate = rows as f64 / lite_load.as_secs_f64();
    report.add(
        "W1",
        "sqlite",
        "prepared_insert_rows_per_s",
        lite_rate,
        "rows/s",
    );
    report.ratio("W1_entidb_rows_per_s", enti_rate);
    report.ratio("W1_entidb_over_sqlite", enti_rate / lite_rate);
    report.rss("W1");
}

fn w2_commits(
    report: &mut Report,
    db: &Database,
    lite_path: &Path,
    fsync_p50: Duration,
    base: i64,
    full: bool,
) {
    let n = if full { 2000 } else { 100 };
    let mut c = BlockingConnection::new(db).unwrap();
    c.execute(&format!("CREATE TABLE w2 {SCHEMA_SQL}")).unwrap();
    let insert = c
        .prepare("INSERT INTO w2 VALUES ($1, $2, $3, 'x')")
        .unwrap();
    let mut times = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n as i64 {
        let t = Instant::now();
        c.execute_prepared(
            &insert,
            &[int(base + i), int(i), ScalarValue::Float64(Some(1.0))],
        )
        .unwrap();
        times.push(t.elapsed());
    }
    let one_rate = n as f64 / start.elapsed().as_secs_f64();
    let p50 = percentile(&mut times, 0.5);
    report.add("W2", "entidb", "commit_p50", us(p50), "us");
    report.add(
        "W2",
        "entidb",
        "commit_p99",
        us(percentile(&mut times, 0.99)),
        "us",
    );
    report.add(
        "W2",
        "entidb",
        "1writer_commits_per_s",
        one_rate,
        "commits/s",
    );
    let writers = 8;
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let db = db.clone();
            s.spawn(move || {
                let mut c = BlockingConnection::new(&db).unwrap();
                let insert = c
                    .prepare("INSERT INTO w2 VALUES ($1, $2, $3, 'x')")
                    .unwrap();
                for i in 0..(n / writers) as i64 {
                    let id = base + 1_000_000 + (w as i64) * 100_000 + i;
                    c.execute_prepared(
                        &insert,
                        &[int(id), int(i), ScalarValue::Float64(Some(1.0))],
                    )
                    .unwrap();
                }
            });
        }
    });
    let eight_rate = n as f64 / start.elapsed().as_secs_f64();
    report.add(
        "W2",
        "entidb",
        "8writers_commits_per_s",
        eight_rate,
        "commits/s",
    );
    report.ratio(
        "W2_commit_p50_over_fsync_p50",
        p50.as_secs_f64() / fsync_p50.as_secs_f64(),
    );
    report.ratio("W2_8writers_over_1writer", eight_rate / one_rate);

    let lite = open_sqlite(lite_path);
    lite.execute(&format!("CREATE TABLE w2 {SCHEMA_SQL}"), [])
        .unwrap();
    let mut stmt = lite
        .prepare("INSERT INTO w2 VALUES (?1, ?2, ?3, 'x')")
        .unwrap();
    let mut times = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n as i64 {
        let t = Instant::now();
        stmt.execute(rusqlite::params![base + i, i, 1.0]).unwrap();
        times.push(t.elapsed());
    }
    let lite_one = n as f64 / start.elapsed().as_secs_f64();
    report.add(
        "W2",
        "sqlite",
        "commit_p50",
        us(percentile(&mut times, 0.5)),
        "us",
    );
    report.add(
        "W2",
        "sqlite",
        "commit_p99",
        us(percentile(&mut times, 0.99)),
        "us",
    );
    report.add(
        "W2",
        "sqlite",
        "1writer_commits_per_s",
        lite_one,
        "commits/s",
    );
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            s.spawn(move || {
                let lite = open_sqlite(lite_path);
                let mut stmt = lite
                    .prepare("INSERT INTO w2 VALUES (?1, ?2, ?3, 'x')")
                    .unwrap();
                for i in 0..(n / writers) as i64 {
                    let id = base + 1_000_000 + (w as i64) * 100_000 + i;
                    stmt.execute(rusqlite::params![id, i, 1.0]).unwrap();
                }
            });
        }
    });
    report.add(
        "W2",
        "sqlite",
        "8writers_commits_per_s",
        n as f64 / start.elapsed().as_secs_f64(),
        "commits/s",
    );
    report.rss("W2");
}

fn w3_lookups(
    report: &mut Report,
    db: &Database,
    lite: &rusqlite::Connection,
    rows: usize,
    n: usize,
    full: bool,
) {
    let mut c = BlockingConnection::new(db).unwrap();
    let stmt = c.prepare("SELECT * FROM t WHERE id = $1").unwrap();
    // The first lookup builds the primary-key index (contents are built on
    // first use, not at open); it is reported on its own.
    let t = Instant::now();
    c.query_prepared(&stmt, &[int(0)]).unwrap();
    report.add("W3", "entidb", "first_lookup", ms(t.elapsed()), "ms");
    let mut rng = Rng(42);
    let start = Instant::now();
    let mut found = 0;
    for _ in 0..n {
        let id = (rng.next() % rows as u64) as i64;
        let b = c.query_prepared(&stmt, &[int(id)]).unwrap();
        found += b.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(found, n, "every id exists");
    report.add("W3", "entidb", "pk_lookups_per_s", rate, "lookups/s");

    // The same lookups as SQL text, no prepare (what most users write);
    // fewer in smoke mode (debug builds are slow at parsing).
    let text_n = if full { n } else { n.min(1000) };
    let mut rng = Rng(42);
    let start = Instant::now();
    let mut found = 0;
    for _ in 0..text_n {
        let id = (rng.next() % rows as u64) as i64;
        let b = c
            .query(&format!("SELECT * FROM t WHERE id = {id}"))
            .unwrap();
        found += b.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    let text_rate = text_n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(found, text_n, "every id exists");
    report.add(
        "W3",
        "entidb",
        "sql_text_pk_lookups_per_s",
        text_rate,
        "lookups/s",
    );
    report.ratio("W3_sql_text_lookups_per_s", text_rate);

    let mut q = lite
        .prepare("SELECT id, k, v, s FROM t WHERE id = ?1")
        .unwrap();
    let mut rng = Rng(42);
    let start = Instant::now();
    for _ in 0..n {
        let id = (rng.next() % rows as u64) as i64;
        let row: (i64, i64, f64, String) = q
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap();
        std::hint::black_box(row);
    }
    let lite_rate = n as f64 / start.elapsed().as_secs_f64();
    report.add("W3", "sqlite", "pk_lookups_per_s", lite_rate, "lookups/s");
    report.ratio("W3_entidb_lookups_per_s", rate);
    report.ratio("W3_entidb_over_sqlite", rate / lite_rate);
    report.rss("W3");
}

/// `queries` point queries on k: prepared (`$1`) or as fresh SQL text; the
/// time per query after one untimed warm-up round (caches filled).
fn k_queries(c: &mut BlockingConnection, queries: usize, prepared: bool) -> Duration {
    k_round(c, queries, prepared);
    k_round(c, queries, prepared)
}

fn k_round(c: &mut BlockingConnection, queries: usize, prepared: bool) -> Duration {
    let stmt = c.prepare("SELECT * FROM t WHERE k = $1").unwrap();
    let mut rng = Rng(7);
    let start = Instant::now();
    for _ in 0..queries {
        let k = (rng.next() % 1_000_000) as i64;
        if prepared {
            c.query_prepared(&stmt, &[int(k)]).unwrap();
        } else {
            c.query(&format!("SELECT * FROM t WHERE k = {k}")).unwrap();
        }
    }
    start.elapsed() / queries as u32
}

/// `count` prepared `k = ?` queries on SQLite; the time per query.
fn lite_k_queries(lite: &rusqlite::Connection, count: usize) -> Duration {
    let mut q = lite
        .prepare("SELECT id, k, v, s FROM t WHERE k = ?1")
        .unwrap();
    let mut rng = Rng(7);
    let start = Instant::now();
    for _ in 0..count {
        let k = (rng.next() % 1_000_000) as i64;
        let rows: Vec<i64> = q
            .query_map([k], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        std::hint::black_box(rows);
    }
    start.elapsed() / count as u32
}

fn w4_index(report: &mut Report, db: &Database, lite: &rusqlite::Connection, n: usize, full: bool) {
    let mut c = BlockingConnection::new(db).unwrap();
    let queries = 200;
    let scan_prepared = k_queries(&mut c, queries, true);
    let scan_text = k_queries(&mut c, queries, false);
    report.add(
        "W4",
        "entidb",
        "no_index_prepared_query",
        us(scan_prepared),
        "us",
    );
    report.add("W4", "entidb", "no_index_sql_query", us(scan_text), "us");
    let t = Instant::now();
    c.execute("CREATE INDEX t_k ON t (k)").unwrap();
    report.add("W4", "entidb", "create_index", ms(t.elapsed()), "ms");
    let (entries, bytes) = db.engine().index_memory().unwrap();
    report.add(
        "W4",
        "entidb",
        "index_resident_bytes",
        bytes as f64,
        "bytes",
    );
    report.ratio(
        "W4_index_bytes_per_row",
        bytes as f64 / (entries.max(1)) as f64,
    );
    let idx_prepared = k_queries(&mut c, queries, true);
    let idx_text = k_queries(&mut c, queries, false);
    report.add(
        "W4",
        "entidb",
        "index_prepared_query",
        us(idx_prepared),
        "us",
    );
    report.add("W4", "entidb", "index_sql_query", us(idx_text), "us");
    let per = k_round(&mut c, n, true);
    let rate = 1.0 / per.as_secs_f64();
    report.add("W4", "entidb", "index_lookups_per_s", rate, "lookups/s");
    report.ratio(
        "W4_index_speedup",
        scan_prepared.as_secs_f64() / idx_prepared.as_secs_f64(),
    );
    report.ratio(
        "W4_index_speedup_sql_text",
        scan_text.as_secs_f64() / idx_text.as_secs_f64(),
    );
    report.ratio("W4_entidb_lookups_per_s", rate);

    let lite_queries = if full { 20 } else { 5 };
    let lite_scan = lite_k_queries(lite, lite_queries);
    report.add(
        "W4",
        "sqlite",
        "no_index_prepared_query",
        us(lite_scan),
        "us",
    );
    let t = Instant::now();
    lite.execute("CREATE INDEX t_k ON t (k)", []).unwrap();
    report.add("W4", "sqlite", "create_index", ms(t.elapsed()), "ms");
    let per = lite_k_queries(lite, n);
    let lite_rate = 1.0 / per.as_secs_f64();
    report.add(
        "W4",
        "sqlite",
        "index_lookups_per_s",
        lite_rate,
        "lookups/s",
    );
    report.ratio("W4_entidb_over_sqlite", rate / lite_rate);
    report.rss("W4");
}

fn w5_scans(
    report: &mut Report,
    db: Database,
    dir: &Path,
    lite: &rusqlite::Connection,
    data: &[RecordBatch],
    rows: usize,
    runs: usize,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mem = SessionContext::new();
    mem.register_table(
        "t",
        Arc::new(MemTable::try_new(schema(), vec![data.to_vec()]).unwrap()),
    )
    .unwrap();
    let mut c = db.connect();
    let mut warm = BTreeMap::new();
    for (name, sql) in [("filter", FILTER), ("groupby", GROUP_BY)] {
        rt.block_on(c.query(sql)).unwrap();
        let enti = best_of(runs, || {
            rt.block_on(c.query(sql)).unwrap();
        });
        let table = best_of(runs, || {
            rt.block_on(async { mem.sql(sql).await.unwrap().collect().await.unwrap() });
        });
        let lite_sql = sql
            .replace("k % 100", "k % 100 AS m")
            .replace("GROUP BY 1", "GROUP BY m");
        let lite_time = best_of(1, || {
            let mut q = lite.prepare(&lite_sql).unwrap();
            let n = q.query_map([], |_| Ok(())).unwrap().count();
            std::hint::black_box(n);
        });
        report.add("W5", "entidb", &format!("warm_{name}"), ms(enti), "ms");
        report.add(
            "W5",
            "entidb",
            &format!("warm_{name}_rows_per_s"),
            rows as f64 / enti.as_secs_f64(),
            "rows/s",
        );
        report.add("W5", "memtable", &format!("warm_{name}"), ms(table), "ms");
        report.add("W5", "sqlite", &format!("warm_{name}"), ms(lite_time), "ms");
        report.ratio(
            &format!("W5_warm_{name}_over_memtable"),
            enti.as_secs_f64() / table.as_secs_f64(),
        );
        warm.insert(name, enti);
    }
    drop(c);
    drop(db);
    // Cold: re-open (empty chunk cache) and run the query once.
    let mut cold = BTreeMap::new();
    for (name, sql) in [("filter", FILTER), ("groupby", GROUP_BY)] {
        let t = Instant::now();
        let db = open_entidb(dir);
        let mut c = db.connect();
        rt.block_on(c.query(sql)).unwrap();
        let d = t.elapsed();
        report.add("W5", "entidb", &format!("cold_{name}"), ms(d), "ms");
        report.add(
            "W5",
            "entidb",
            &format!("cold_{name}_rows_per_s"),
            rows as f64 / d.as_secs_f64(),
            "rows/s",
        );
        cold.insert(name, d);
    }
    // Index runs are persisted: the first equality lookup after a re-open
    // opens the runs of the index on k (their footers), it rebuilds
    // nothing.
    let t = Instant::now();
    let db = open_entidb(dir);
    let opened = t.elapsed();
    let mut c = BlockingConnection::new(&db).unwrap();
    let stmt = c.prepare("SELECT * FROM t WHERE k = $1").unwrap();
    let t = Instant::now();
    c.query_prepared(&stmt, &[int(123_456)]).unwrap();
    report.add("W5", "entidb", "open", ms(opened), "ms");
    let first = t.elapsed();
    report.add(
        "W5",
        "entidb",
        "first_index_lookup_after_open",
        ms(first),
        "ms",
    );
    report.ratio("W5_open_first_index_lookup_ms", ms(opened + first));
    drop(c);
    drop(db);
    // A script of 200 point queries as text in a fresh process-like open,
    // with the index on k (built at first use) and without it.
    let with_index = script_queries(dir);
    {
        let db = open_entidb(dir);
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("DROP INDEX t_k").unwrap();
    }
    let without_index = script_queries(dir);
    {
        let db = open_entidb(dir);
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("CREATE INDEX t_k ON t (k)").unwrap();
    }
    report.add(
        "W5",
        "entidb",
        "script_200_k_queries_index",
        ms(with_index),
        "ms",
    );
    report.add(
        "W5",
        "entidb",
        "script_200_k_queries_no_index",
        ms(without_index),
        "ms",
    );
    report.ratio(
        "W5_script_index_speedup",
        without_index.as_secs_f64() / with_index.as_secs_f64(),
    );
    report.ratio(
        "W5_cold_over_warm",
        cold["filter"].as_secs_f64() / warm["filter"].as_secs_f64(),
    );
    report.ratio(
        "W5_cold_over_warm_groupby",
        cold["groupby"].as_secs_f64() / warm["groupby"].as_secs_f64(),
    );
    report.rss("W5");
}

/// Open `dir`, run 200 `SELECT v FROM t WHERE k = …` as SQL text, close:
/// what one `entidb` script does. The whole time.
fn script_queries(dir: &Path) -> Duration {
    let t = Instant::now();
    let db = open_entidb(dir);
    let mut c = BlockingConnection::new(&db).unwrap();
    let mut rng = Rng(11);
    for _ in 0..200 {
        let k = (rng.next() % 1_000_000) as i64;
        c.query(&format!("SELECT v FROM t WHERE k = {k}")).unwrap();
    }
    drop(c);
    drop(db);
    t.elapsed()
}

/// The rows of a result, printed; `None` for an error.
fn printed(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Printed rows without the table frame, sorted (for results whose order
/// is not fully specified, e.g. ties under ORDER BY … LIMIT).
fn sorted_rows(printed: &str) -> Vec<String> {
    let mut lines: Vec<String> = printed
        .lines()
        .filter(|l| !l.starts_with('+'))
        .skip(1)
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn geomean(ratios: &[f64]) -> f64 {
    (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp()
}

/// W7: TPC-H at scale factor `sf` loaded through `append`, the 22 queries
/// on EntiDB and on MemTables of the same batches; warm (best of `runs`)
/// and cold (open + first run) times, results compared.
fn w7_tpch(report: &mut Report, dir: &Path, sf: f64, runs: usize, strict: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    reset_peak_rss();
    let t = Instant::now();
    let tables = tpch::generate(sf);
    let rows: usize = tables.iter().map(|t| t.rows()).sum();
    report.add("W7", "tpchgen", "generate", ms(t.elapsed()), "ms");
    report.add("W7", "tpchgen", "rows", rows as f64, "rows");

    let db = open_entidb(dir);
    let mut c = BlockingConnection::new(&db).unwrap();
    let t = Instant::now();
    // One transaction per ~1M rows: lineitem at SF1 (6M rows) in one
    // transaction would exceed the WAL's 1 GiB record limit.
    const ROWS_PER_COMMIT: usize = 1_000_000;
    for table in &tables {
        c.execute(&table.create_sql()).unwrap();
        c.execute("BEGIN").unwrap();
        let mut pending = 0;
        for b in &table.batches {
            if pending >= ROWS_PER_COMMIT {
                c.execute("COMMIT; BEGIN").unwrap();
                pending = 0;
            }
            c.append(table.name, b).unwrap();
            pending += b.num_rows();
        }
        c.execute("COMMIT").unwrap();
    }
    let load = t.elapsed();
    let t = Instant::now();
    c.execute("CHECKPOINT").unwrap();
    report.add("W7", "entidb", "load", ms(load), "ms");
    report.add(
        "W7",
        "entidb",
        "checkpoint_after_load",
        ms(t.elapsed()),
        "ms",
    );
    report.add(
        "W7",
        "entidb",
        "load_rows_per_s",
        rows as f64 / load.as_secs_f64(),
        "rows/s",
    );
    drop(c);

    let mem = SessionContext::new();
    for table in &tables {
        let schema = table.batches[0].schema();
        let provider = MemTable::try_new(schema, vec![table.batches.clone()]).unwrap();
        mem.register_table(table.name, Arc::new(provider)).unwrap();
    }
    let mut conn = db.connect();
    let mut warm = BTreeMap::new();
    let mut over_memtable = Vec::new();
    let mut mismatches = 0;
    for (i, sql) in tpch::QUERIES.iter().enumerate() {
        let q = i + 1;
        let enti = match rt.block_on(conn.query(sql)) {
            Ok(b) => b,
            Err(e) if !strict => {
                println!("  W7 q{q}: entidb error: {e}");
                mismatches += 1;
                continue;
            }
            Err(e) => panic!("q{q}: {e}"),
        };
        let table = rt
            .block_on(async { mem.sql(sql).await?.collect().await })
            .unwrap();
        let (a, b) = (printed(&enti), printed(&table));
        if a != b {
            let same_rows = sorted_rows(&a) == sorted_rows(&b);
            println!(
                "  W7 q{q}: results differ{}",
                if same_rows { " in order only" } else { "" }
            );
            if !same_rows {
                mismatches += 1;
                assert!(!strict, "q{q}: entidb\n{a}\nmemtable\n{b}");
            }
        }
        let e = best_of(runs, || {
            rt.block_on(conn.query(sql)).unwrap();
        });
        let m = best_of(runs, || {
            rt.block_on(async { mem.sql(sql).await.unwrap().collect().await.unwrap() });
        });
        report.add("W7", "entidb", &format!("q{q}_warm"), ms(e), "ms");
        report.add("W7", "memtable", &format!("q{q}_warm"), ms(m), "ms");
        over_memtable.push(e.as_secs_f64() / m.as_secs_f64());
        warm.insert(q, e);
    }
    drop(conn);
    drop(db);
    let mut cold_over_warm = Vec::new();
    for (i, sql) in tpch::QUERIES.iter().enumerate() {
        let q = i + 1;
        let Some(w) = warm.get(&q) else { continue };
        let t = Instant::now();
        let db = open_entidb(dir);
        let mut conn = db.connect();
        rt.block_on(conn.query(sql)).unwrap();
        let d = t.elapsed();
        drop(conn);
        drop(db);
        report.add("W7", "entidb", &format!("q{q}_cold"), ms(d), "ms");
        cold_over_warm.push(d.as_secs_f64() / w.as_secs_f64());
    }
    if !over_memtable.is_empty() {
        report.ratio("W7_tpch_geomean_over_memtable", geomean(&over_memtable));
        report.ratio("W7_tpch_cold_geomean_over_warm", geomean(&cold_over_warm));
    }
    report.ratio("W7_tpch_mismatches", mismatches as f64);
    report.rss("W7");
}

/// Child process of W6: load without checkpointing, then die.
fn w6_child(dir: &Path, rows: usize) -> ! {
    let options = OpenOptions {
        engine: EngineOptions {
            checkpoint_wal_bytes: u64::MAX,
            ..EngineOptions::default()
        },
        ..OpenOptions::default()
    };
    let db = Database::open_with(dir, options).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute(&format!("CREATE TABLE t {SCHEMA_SQL}")).unwrap();
    c.execute("BEGIN").unwrap();
    for b in batches(rows) {
        c.append("t", &b).unwrap();
    }
    c.execute("COMMIT").unwrap();
    // Killed: no destructor, no checkpoint.
    std::process::abort();
}

fn w6_reopen(report: &mut Report, dir: &Path, rows: usize) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--child-w6")
        .arg(dir)
        .arg(rows.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die, not exit");
    reset_peak_rss();
    let t = Instant::now();
    let db = open_entidb(dir);
    let opened = t.elapsed();
    let mut c = BlockingConnection::new(&db).unwrap();
    let b = c.query(FILTER).unwrap();
    let total = t.elapsed();
    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    report.add("W6", "entidb", "reopen_after_kill", ms(opened), "ms");
    report.add("W6", "entidb", "reopen_and_first_query", ms(total), "ms");
    report.ratio("W6_reopen_first_query_ms", ms(total));
    report.rss("W6");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(dir) = arg("--child-w6") {
        let rows = args.last().and_then(|r| r.parse().ok()).unwrap();
        w6_child(Path::new(&dir), rows);
    }
    let full = args.iter().any(|a| a == "--bench");
    let rows: usize = arg("--rows")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 2000 });
    let lookups = if full || rows >= 10_000 {
        100_000
    } else {
        1000
    };
    let runs = if full { 5 } else { 1 };
    let mut report = Report {
        rows,
        only: arg("--only").map(|o| o.split(',').map(str::to_string).collect()),
        ..Report::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let enti_dir = tmp.path().join("entidb");
    let lite_path = tmp.path().join("sqlite.db");
    println!("compare: {rows} rows, dir {}", tmp.path().display());

    let data = batches(rows);
    let db = open_entidb(&enti_dir);
    let mut lite = open_sqlite(&lite_path);
    reset_peak_rss();
    w1_load(&mut report, &db, &mut lite, &data, rows);
    let fsync_p50 = fdatasync_probe(&mut report, tmp.path(), if full { 500 } else { 50 });
    if report.wants("W2") {
        w2_commits(
            &mut report,
            &db,
            &lite_path,
            fsync_p50,
            rows as i64 * 10,
            full,
        );
    }
    if report.wants("W3") {
        w3_lookups(&mut report, &db, &lite, rows, lookups, full);
    }
    if report.wants("W4") {
        w4_index(&mut report, &db, &lite, lookups, full);
    }
    if report.wants("W5") {
        w5_scans(&mut report, db, &enti_dir, &lite, &data, rows, runs);
    } else {
        drop(db);
    }
    if report.wants("W6") {
        w6_reopen(&mut report, &tmp.path().join("w6"), rows);
    }
    if report.wants("W7") {
        let sf = arg("--tpch-sf")
            .and_then(|s| s.parse().ok())
            .unwrap_or(if full { 1.0 } else { 0.001 });
        w7_tpch(&mut report, &tmp.path().join("w7"), sf, runs, !full);
    }
    if !report.wants("W1") {
        report.results.retain(|m| m.workload != "W1");
        report.ratios.retain(|k, _| !k.starts_with("W1"));
    }

    println!("\n| ratio | value | target |");
    println!("|---|---|---|");
    let targets = [
        ("W1_entidb_rows_per_s", "≥ 2,000,000"),
        ("W1_entidb_over_sqlite", "≥ 3"),
        ("W2_commit_p50_over_fsync_p50", "≤ 1.1"),
        ("W2_8writers_over_1writer", "≥ 4"),
        ("W3_entidb_lookups_per_s", "≥ 50,000"),
        ("W3_sql_text_lookups_per_s", "≥ 20,000"),
        ("W5_script_index_speedup", "≥ 10"),
        ("W7_tpch_geomean_over_memtable", "≤ 1.1"),
        ("W7_tpch_cold_geomean_over_warm", "≤ 2"),
        ("W7_tpch_mismatches", "0"),
        ("W4_index_speedup", "≥ 100"),
        ("W4_index_bytes_per_row", "≤ 24"),
        ("W5_open_first_index_lookup_ms", "≤ 20 (at 10M)"),
        ("W5_warm_filter_over_memtable", "≤ 1.2"),
        ("W5_warm_groupby_over_memtable", "≤ 1.2"),
        ("W5_cold_over_warm", "≤ 2"),
        ("W6_reopen_first_query_ms", "≤ 50 (at 10M)"),
    ];
    for (k, v) in &report.ratios {
        let target = targets.iter().find(|(t, _)| t == k).map_or("", |(_, t)| t);
        println!("| {k} | {v:.3} | {target} |");
    }
    if let Some(path) = arg("--json") {
        std::fs::write(&path, report.json()).unwrap();
        println!("wrote {path}");
    }
}
