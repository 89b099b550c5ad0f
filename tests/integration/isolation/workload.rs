//! The list-append workload, run through the public facade: several
//! threads, each with its own `BlockingConnection` to one on-disk
//! `Database`, run short `BEGIN … COMMIT` transactions of reads and
//! read-modify-write appends on a small, rotating set of keys, while another
//! thread runs `CHECKPOINT` every few milliseconds. Every transaction, with
//! what it read and how it ended, goes into the history.

use super::checker::{Elem, History, Key, Mop, Outcome, Txn};
use arrow::array::{Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use datafusion::scalar::ScalarValue;
use entidb::{BlockingConnection, Database, Prepared};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Config {
    pub txns: usize,
    pub threads: usize,
    /// Keys in use at once.
    pub active_keys: usize,
    /// Appends a key gets before it is retired for a fresh one.
    pub max_appends_per_key: usize,
    pub max_ops: usize,
    pub checkpoint_every: Duration,
    pub seed: u64,
    /// Probability that an append is preceded by a statement that fails
    /// (duplicate key) inside the transaction, which then goes on.
    pub failed_statements: f64,
    /// Probability that a transaction ends in ROLLBACK instead of COMMIT.
    pub rollbacks: f64,
}

#[derive(Debug, Default)]
pub struct RunStats {
    pub checkpoints: usize,
    /// Failed statements recorded as aborted one-append pseudo-transactions.
    pub failed_statements: usize,
    pub checkpoint_errors: Vec<String>,
    pub errors_by_state: BTreeMap<String, usize>,
    pub elapsed: Duration,
    pub reopened_state_matches: bool,
}

/// Hands out micro-op plans: keys from a small active set that rotates, so
/// lists stay short, and elements unique within the history.
struct Keys {
    active: Vec<(Key, usize)>,
    next_key: Key,
    max: usize,
}

enum Plan {
    Read(Key),
    Append(Key, Elem),
}

impl Keys {
    fn plan(&mut self, rng: &mut StdRng, next_elem: &AtomicU64, ops: usize) -> Vec<Plan> {
        (0..ops)
            .map(|_| {
                let slot = rng.random_range(0..self.active.len());
                let k = self.active[slot].0;
                if rng.random_bool(0.5) {
                    Plan::Read(k)
                } else {
                    self.active[slot].1 += 1;
                    if self.active[slot].1 >= self.max {
                        self.active[slot] = (self.next_key, 0);
                        self.next_key += 1;
                    }
                    Plan::Append(k, next_elem.fetch_add(1, Ordering::Relaxed))
                }
            })
            .collect()
    }
}

struct Statements {
    select: Prepared,
    insert: Prepared,
}

fn parse_list(s: &str) -> Vec<Elem> {
    s.split(',')
        .map(|e| {
            e.parse()
                .unwrap_or_else(|_| panic!("bad element {e:?} in {s:?}"))
        })
        .collect()
}

fn single_text(batches: &[RecordBatch]) -> Option<String> {
    let mut out = None;
    let mut rows = 0;
    for b in batches {
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("v is Utf8");
        for i in 0..col.len() {
            rows += 1;
            assert!(!col.is_null(i), "NULL list");
            out = Some(col.value(i).to_string());
        }
    }
    assert!(rows <= 1, "{rows} rows for one key");
    out
}

fn read(
    c: &mut BlockingConnection,
    st: &Statements,
    rng: &mut StdRng,
    k: Key,
) -> entidb::Result<Option<String>> {
    // Mostly the prepared point-query path (index lookup, no planning);
    // sometimes a planned DataFusion scan.
    let batches = if rng.random_bool(0.85) {
        c.query_prepared(&st.select, &[ScalarValue::Int64(Some(k as i64))])?
    } else {
        c.query(&format!("SELECT v FROM lists WHERE k = {k}"))?
    };
    Ok(single_text(&batches))
}

fn write(
    c: &mut BlockingConnection,
    st: &Statements,
    rng: &mut StdRng,
    k: Key,
    old: Option<&str>,
    x: Elem,
) -> entidb::Result<()> {
    let n = match old {
        None => {
            if rng.random_bool(0.8) {
                c.execute_prepared(
                    &st.insert,
                    &[
                        ScalarValue::Int64(Some(k as i64)),
                        ScalarValue::Utf8(Some(x.to_string())),
                    ],
                )?
            } else {
                c.execute(&format!("INSERT INTO lists VALUES ({k}, '{x}')"))?
            }
        }
        Some(old) => match rng.random_range(0..3) {
            0 => c.execute(&format!("UPDATE lists SET v = '{old},{x}' WHERE k = {k}"))?,
            1 => c.execute_with(
                "UPDATE lists SET v = $2 WHERE k = $1",
                &[
                    ScalarValue::Int64(Some(k as i64)),
                    ScalarValue::Utf8(Some(format!("{old},{x}"))),
                ],
            )?,
            // The database appends; the result must still be old + x.
            _ => c.execute(&format!("UPDATE lists SET v = v || ',{x}' WHERE k = {k}"))?,
        },
    };
    assert_eq!(n, 1, "write of key {k} affected {n} rows");
    Ok(())
}

/// Reads every key: `k → list`.
pub fn read_all(c: &mut BlockingConnection) -> BTreeMap<Key, Vec<Elem>> {
    let mut out = BTreeMap::new();
    for b in c.query("SELECT k, v FROM lists").unwrap() {
        let ks = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let vs = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..b.num_rows() {
            assert!(
                out.insert(ks.value(i) as Key, parse_list(vs.value(i)))
                    .is_none(),
                "key {} twice",
                ks.value(i)
            );
        }
    }
    out
}

fn worker(
    db: &Database,
    process: usize,
    cfg: &Config,
    keys: &Mutex<Keys>,
    next_elem: &AtomicU64,
    remaining: &AtomicUsize,
    start: Instant,
) -> (Vec<Txn>, Vec<Txn>, BTreeMap<String, usize>) {
    let mut c = BlockingConnection::new(db).unwrap();
    let st = Statements {
        select: c.prepare("SELECT v FROM lists WHERE k = $1").unwrap(),
        insert: c.prepare("INSERT INTO lists VALUES ($1, $2)").unwrap(),
    };
    let mut rng =
        StdRng::seed_from_u64(cfg.seed ^ (process as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut txns = Vec::new();
    let mut ghosts = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let now = || start.elapsed().as_nanos() as u64;
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
        .is_ok()
    {
        let n_ops = rng.random_range(1..=cfg.max_ops);
        let plan = keys.lock().unwrap().plan(&mut rng, next_elem, n_ops);
        let begin = now();
        c.execute("BEGIN").unwrap();
        let mut ops = Vec::new();
        let mut failed: Option<entidb::Error> = None;
        for p in plan {
            let r = match p {
                Plan::Read(k) => read(&mut c, &st, &mut rng, k).map(|v| {
                    ops.push(Mop::Read {
                        k,
                        v: v.as_deref().map(parse_list).unwrap_or_default(),
                    });
                }),
                Plan::Append(k, x) => read(&mut c, &st, &mut rng, k).and_then(|v| {
                    ops.push(Mop::Read {
                        k,
                        v: v.as_deref().map(parse_list).unwrap_or_default(),
                    });
                    if rng.random_bool(cfg.failed_statements) {
                        // A statement that must fail (duplicate key) and
                        // leave nothing behind while the transaction goes
                        // on: its element is an aborted write in the
                        // history, so seeing it anywhere is G1a.
                        let g = next_elem.fetch_add(1, Ordering::Relaxed);
                        let sql = match v.as_deref() {
                            Some(old) => format!("INSERT INTO lists VALUES ({k}, '{old},{g}')"),
                            None => format!("INSERT INTO lists VALUES ({k}, '{g}'), ({k}, '{g}')"),
                        };
                        let at = now();
                        match c.execute(&sql) {
                            Ok(n) => panic!("{sql} succeeded ({n} rows)"),
                            Err(e) if e.sqlstate() == "23505" => {}
                            Err(e) => return Err(e),
                        }
                        ghosts.push(Txn {
                            process,
                            ops: vec![Mop::Append { k, x: g }],
                            outcome: Outcome::Aborted,
                            error: Some("failed statement inside a transaction".into()),
                            begin: at,
                            end: now(),
                        });
                    }
                    ops.push(Mop::Append { k, x });
                    write(&mut c, &st, &mut rng, k, v.as_deref(), x)
                }),
            };
            if let Err(e) = r {
                failed = Some(e);
                break;
            }
        }
        let (outcome, error) = match failed {
            Some(e) => {
                // The transaction stays open after a failed statement.
                let _ = c.execute("ROLLBACK");
                assert!(!c.in_transaction());
                *errors
                    .entry(format!("{} (statement)", e.sqlstate()))
                    .or_default() += 1;
                (Outcome::Aborted, Some(format!("{} {e}", e.sqlstate())))
            }
            None if rng.random_bool(cfg.rollbacks) => {
                c.execute("ROLLBACK").unwrap();
                *errors.entry("ROLLBACK (by the client)".into()).or_default() += 1;
                (Outcome::Aborted, Some("rolled back by the client".into()))
            }
            None => match c.execute("COMMIT") {
                Ok(_) => (Outcome::Committed, None),
                Err(e) => {
                    if c.in_transaction() {
                        let _ = c.execute("ROLLBACK");
                    }
                    *errors
                        .entry(format!("{} (commit)", e.sqlstate()))
                        .or_default() += 1;
                    let outcome = if e.sqlstate() == "40001" {
                        Outcome::Aborted
                    } else {
                        Outcome::Unknown
                    };
                    (outcome, Some(format!("{} {e}", e.sqlstate())))
                }
            },
        };
        txns.push(Txn {
            process,
            ops,
            outcome,
            error,
            begin,
            end: now(),
        });
    }
    (txns, ghosts, errors)
}

/// Runs the workload on a fresh database in a temporary directory.
pub fn run(cfg: &Config) -> (History, RunStats) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iso.db");
    let db = Database::open(&path).unwrap();
    let mut setup = BlockingConnection::new(&db).unwrap();
    setup
        .execute("CREATE TABLE lists (k BIGINT PRIMARY KEY, v TEXT)")
        .unwrap();

    let keys = Mutex::new(Keys {
        active: (0..cfg.active_keys as Key).map(|k| (k, 0)).collect(),
        next_key: cfg.active_keys as Key,
        max: cfg.max_appends_per_key,
    });
    let next_elem = AtomicU64::new(1);
    let remaining = AtomicUsize::new(cfg.txns);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut stats = RunStats::default();
    let mut txns = Vec::new();
    std::thread::scope(|s| {
        let checkpointer = s.spawn(|| {
            let mut c = BlockingConnection::new(&db).unwrap();
            let mut ok = 0;
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match c.execute("CHECKPOINT") {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(format!("{} {e}", e.sqlstate())),
                }
                std::thread::sleep(cfg.checkpoint_every);
            }
            (ok, errors)
        });
        let workers: Vec<_> = (0..cfg.threads)
            .map(|p| {
                let (db, keys, next_elem, remaining) = (&db, &keys, &next_elem, &remaining);
                s.spawn(move || worker(db, p, cfg, keys, next_elem, remaining, start))
            })
            .collect();
        for w in workers {
            let (t, ghosts, errors) = w.join().unwrap();
            txns.extend(t);
            stats.failed_statements += ghosts.len();
            txns.extend(ghosts);
            for (k, v) in errors {
                *stats.errors_by_state.entry(k).or_default() += v;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let (ok, errors) = checkpointer.join().unwrap();
        stats.checkpoints = ok;
        stats.checkpoint_errors = errors;
    });
    stats.elapsed = start.elapsed();
    txns.sort_by_key(|t| t.begin);

    let final_state = read_all(&mut setup);
    drop(setup);
    drop(db);
    // What was committed must survive a close and re-open.
    let db = Database::open(&path).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    stats.reopened_state_matches = read_all(&mut c) == final_state;
    (
        History {
            txns,
            final_state: Some(final_state),
        },
        stats,
    )
}
