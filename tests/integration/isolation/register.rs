//! The read-write-register workload: `regs(k BIGINT PRIMARY KEY, v BIGINT)`,
//! transactions of `r k` and read-modify-write `w k x` (read `k`, then
//! INSERT or UPDATE it to a value unique in the history).
//!
//! A register's value does not carry its history the way a list does, but
//! every write here read the version it replaced, so under first-committer-
//! wins the committed writes of a key form one chain from "absent":
//! `x`'s predecessor is the value its writer read. Two committed writes
//! with the same predecessor are a lost update (P4); otherwise the chain is
//! the version order, and the history translates into a list-append one —
//! a read of `x` becomes a read of the chain up to `x` — which the
//! list-append checker then searches for cycles (G0, G1c, G-single, …).

use super::checker::{self, Anomaly, Elem, Key, Mop, Outcome, Report, Txn};
use super::workload::Config;
use arrow::array::{Array, Int64Array};
use datafusion::scalar::ScalarValue;
use entidb::{BlockingConnection, Database};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One register micro-operation with what the database returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RMop {
    Read { k: Key, v: Option<Elem> },
    Write { k: Key, x: Elem },
}

#[derive(Clone, Debug)]
pub struct RTxn {
    pub process: usize,
    pub ops: Vec<RMop>,
    pub outcome: Outcome,
    pub begin: u64,
    pub end: u64,
}

fn read_value(
    c: &mut BlockingConnection,
    sel: &entidb::Prepared,
    planned: bool,
    k: Key,
) -> entidb::Result<Option<Elem>> {
    let batches = if planned {
        c.query(&format!("SELECT v FROM regs WHERE k = {k}"))?
    } else {
        c.query_prepared(sel, &[ScalarValue::Int64(Some(k as i64))])?
    };
    let mut out = None;
    let mut rows = 0;
    for b in &batches {
        let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..col.len() {
            rows += 1;
            out = Some(col.value(i) as Elem);
        }
    }
    assert!(rows <= 1, "{rows} rows for one key");
    Ok(out)
}

/// Runs the register workload on a fresh on-disk database; returns the
/// transactions and the final value of every key.
pub fn run(cfg: &Config) -> (Vec<RTxn>, BTreeMap<Key, Elem>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("regs.db")).unwrap();
    let mut setup = BlockingConnection::new(&db).unwrap();
    setup
        .execute("CREATE TABLE regs (k BIGINT PRIMARY KEY, v BIGINT)")
        .unwrap();
    let next = AtomicU64::new(1);
    let remaining = AtomicUsize::new(cfg.txns);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let mut txns = Vec::new();
    std::thread::scope(|s| {
        let checkpointer = s.spawn(|| {
            let mut c = BlockingConnection::new(&db).unwrap();
            while !stop.load(Ordering::Relaxed) {
                c.execute("CHECKPOINT").unwrap();
                std::thread::sleep(cfg.checkpoint_every);
            }
        });
        let workers: Vec<_> = (0..cfg.threads)
            .map(|process| {
                let (db, next, remaining) = (&db, &next, &remaining);
                s.spawn(move || {
                    let mut c = BlockingConnection::new(db).unwrap();
                    let sel = c.prepare("SELECT v FROM regs WHERE k = $1").unwrap();
                    let ins = c.prepare("INSERT INTO regs VALUES ($1, $2)").unwrap();
                    let mut rng =
                        StdRng::seed_from_u64(cfg.seed ^ 0xABCD ^ ((process as u64) << 32));
                    let now = || start.elapsed().as_nanos() as u64;
                    let mut out = Vec::new();
                    while remaining
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                        .is_ok()
                    {
                        let begin = now();
                        c.execute("BEGIN").unwrap();
                        let mut ops = Vec::new();
                        let mut failed = false;
                        for _ in 0..rng.random_range(1..=cfg.max_ops) {
                            let k = rng.random_range(0..cfg.active_keys as Key);
                            let write = rng.random_bool(0.5);
                            let r =
                                read_value(&mut c, &sel, rng.random_bool(0.15), k).and_then(|v| {
                                    ops.push(RMop::Read { k, v });
                                    if !write {
                                        return Ok(());
                                    }
                                    let x = next.fetch_add(1, Ordering::Relaxed);
                                    ops.push(RMop::Write { k, x });
                                    let n = match v {
                                        None => c.execute_prepared(
                                            &ins,
                                            &[
                                                ScalarValue::Int64(Some(k as i64)),
                                                ScalarValue::Int64(Some(x as i64)),
                                            ],
                                        )?,
                                        Some(_) => c.execute(&format!(
                                            "UPDATE regs SET v = {x} WHERE k = {k}"
                                        ))?,
                                    };
                                    assert_eq!(n, 1);
                                    Ok(())
                                });
                            if r.is_err() {
                                failed = true;
                                break;
                            }
                        }
                        let outcome = if failed {
                            let _ = c.execute("ROLLBACK");
                            Outcome::Aborted
                        } else {
                            match c.execute("COMMIT") {
                                Ok(_) => Outcome::Committed,
                                Err(e) if e.sqlstate() == "40001" => Outcome::Aborted,
                                Err(_) => Outcome::Unknown,
                            }
                        };
                        out.push(RTxn {
                            process,
                            ops,
                            outcome,
                            begin,
                            end: now(),
                        });
                    }
                    out
                })
            })
            .collect();
        for w in workers {
            txns.extend(w.join().unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        checkpointer.join().unwrap();
    });
    let elapsed = start.elapsed();
    txns.sort_by_key(|t| t.begin);
    let mut final_state = BTreeMap::new();
    for b in setup.query("SELECT k, v FROM regs").unwrap() {
        let ks = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let vs = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            final_state.insert(ks.value(i) as Key, vs.value(i) as Elem);
        }
    }
    (txns, final_state, elapsed)
}

/// (key, predecessor version or absent) → the committed writes that
/// overwrote it: (txn, value).
type Successors = HashMap<(Key, Option<Elem>), Vec<(usize, Elem)>>;

/// Checks a register history: builds each key's version chain from the
/// committed read-modify-writes, reports forks (lost updates) and reads of
/// values off the chain, then checks the translated list history.
pub fn check(txns: &[RTxn], final_state: Option<&BTreeMap<Key, Elem>>) -> Report {
    let mut anomalies = Vec::new();
    let mut writer: HashMap<(Key, Elem), usize> = HashMap::new();
    let mut successors: Successors = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        let mut seen: HashMap<Key, Option<Elem>> = HashMap::new();
        for m in &t.ops {
            match *m {
                RMop::Read { k, v } => {
                    seen.insert(k, v);
                }
                RMop::Write { k, x } => {
                    writer.insert((k, x), i);
                    if t.outcome == Outcome::Committed {
                        let pred = seen.get(&k).copied().flatten();
                        successors.entry((k, pred)).or_default().push((i, x));
                    }
                    seen.insert(k, Some(x));
                }
            }
        }
    }
    // Chains from "absent".
    let keys: std::collections::BTreeSet<Key> = successors.keys().map(|&(k, _)| k).collect();
    let mut chain: HashMap<Key, Vec<Elem>> = HashMap::new();
    let mut forks: Vec<_> = successors.iter().filter(|(_, s)| s.len() > 1).collect();
    forks.sort();
    for ((k, pred), s) in forks {
        anomalies.push(Anomaly {
            kind: "lost-update",
            detail: format!(
                "committed {} all overwrote version {pred:?} of register {k}",
                s.iter()
                    .map(|(t, x)| format!("T{t} (wrote {x})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            txns: s.iter().map(|&(t, _)| t).collect(),
        });
    }
    for &k in &keys {
        let mut c = Vec::new();
        let mut cur = None;
        while let Some(s) = successors.get(&(k, cur)) {
            let x = s[0].1;
            if c.contains(&x) || c.len() > successors.len() {
                break;
            }
            c.push(x);
            cur = Some(x);
        }
        chain.insert(k, c);
    }
    let pos: HashMap<(Key, Elem), usize> = chain
        .iter()
        .flat_map(|(&k, c)| c.iter().enumerate().map(move |(i, &x)| ((k, x), i)))
        .collect();

    // Translate: a read of x is a read of the chain up to x; the reader's
    // own writes are appended after what it last read from others.
    let mut list_txns = Vec::new();
    for (i, t) in txns.iter().enumerate() {
        let mut ops = Vec::new();
        for m in &t.ops {
            match *m {
                RMop::Write { k, x } => ops.push(Mop::Append { k, x }),
                RMop::Read { k, v: None } => ops.push(Mop::Read { k, v: Vec::new() }),
                RMop::Read { k, v: Some(x) } => match pos.get(&(k, x)) {
                    Some(&p) => ops.push(Mop::Read {
                        k,
                        v: chain[&k][..=p].to_vec(),
                    }),
                    None if t.outcome == Outcome::Committed && writer.get(&(k, x)) != Some(&i) => {
                        let kind = match writer.get(&(k, x)) {
                            Some(&w) if txns[w].outcome == Outcome::Aborted => "G1a",
                            Some(_) => "off-chain-read",
                            None => "garbage-read",
                        };
                        anomalies.push(Anomaly {
                            kind,
                            detail: format!(
                                "T{i} read {x} from register {k}, which is not a committed version"
                            ),
                            txns: vec![i],
                        });
                    }
                    // An aborted txn's read of its own write, or of an
                    // uncommitted value: nothing to translate.
                    None => {}
                },
            }
        }
        list_txns.push(Txn {
            process: t.process,
            ops,
            outcome: t.outcome,
            error: None,
            begin: t.begin,
            end: t.end,
        });
    }
    if let Some(f) = final_state {
        for (&k, &x) in f {
            let last = chain.get(&k).and_then(|c| c.last()).copied();
            if last != Some(x) {
                anomalies.push(Anomaly {
                    kind: "lost-write",
                    detail: format!(
                        "register {k} ended as {x}; its version chain ends with {last:?}"
                    ),
                    txns: writer.get(&(k, x)).copied().into_iter().collect(),
                });
            }
        }
    }
    // The chains are the version orders (a list checker would otherwise
    // only know what some read observed).
    let final_lists = Some(chain.into_iter().collect::<BTreeMap<_, _>>());
    let mut report = checker::check(&checker::History {
        txns: list_txns,
        final_state: final_lists,
    });
    anomalies.append(&mut report.anomalies);
    report.anomalies = anomalies;
    report
}
