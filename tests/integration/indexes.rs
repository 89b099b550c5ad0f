//! Indexes through SQL: index use never changes results (differential
//! against the same database without indexes), definitions persist and
//! survive power loss atomically, lookups respect MVCC snapshots, UNIQUE
//! holds under concurrency, and the prepared point-query fast path agrees
//! with the general path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::scalar::ScalarValue;
use entidb::engine::storage::{PowerLoss, SimDisk};
use entidb::engine::{Engine, EngineOptions};
use entidb::{BlockingConnection, Database, ErrorKind};
use std::sync::Arc;

/// Rows as sorted strings, so results compare independent of order.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

fn query(c: &mut BlockingConnection, sql: &str) -> Vec<String> {
    rows(&c.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}")))
}

fn explain(c: &mut BlockingConnection, sql: &str) -> String {
    query(c, &format!("EXPLAIN {sql}")).join("\n")
}

/// A tiny deterministic generator (no test should depend on the clock).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const SCHEMA: &str = "CREATE TABLE t (id BIGINT PRIMARY KEY, k INT, s TEXT, v DOUBLE, g INT)";

/// The same random history of inserts, updates, deletes and checkpoints.
fn populate(c: &mut BlockingConnection, seed: u64) {
    let mut rng = Lcg(seed);
    let mut next_id = 0i64;
    for round in 0..6 {
        let mut values = Vec::new();
        for _ in 0..150 {
            let k = match rng.next(10) {
                0 => "NULL".to_string(),
                _ => (rng.next(81) as i64 - 40).to_string(),
            };
            let s = match rng.next(8) {
                0 => "NULL".to_string(),
                n => format!(
                    "'{}'",
                    ["a", "ab", "abc", "b", "", "ba", "z"][n as usize - 1]
                ),
            };
            let v = (rng.next(2001) as f64 - 1000.0) / 10.0;
            values.push(format!("({next_id}, {k}, {s}, {v}, {})", rng.next(3)));
            next_id += 1;
        }
        c.execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .unwrap();
        let a = rng.next(81) as i64 - 40;
        c.execute(&format!("UPDATE t SET k = k + 1 WHERE k = {a}"))
            .unwrap();
        c.execute(&format!("DELETE FROM t WHERE id % 7 = {}", rng.next(7)))
            .unwrap();
        c.execute(&format!(
            "UPDATE t SET s = 'upd' WHERE id BETWEEN {} AND {}",
            round * 100,
            round * 100 + 20
        ))
        .unwrap();
        if round % 2 == 1 {
            c.execute("CHECKPOINT").unwrap();
        }
    }
}

const QUERIES: &[&str] = &[
    "SELECT * FROM t WHERE k = 5",
    "SELECT * FROM t WHERE k = -5",
    "SELECT id, k FROM t WHERE k IN (-40, -1, 0, 1, 39, 99)",
    "SELECT * FROM t WHERE k < -10",
    "SELECT * FROM t WHERE k <= 0 AND k > -3",
    "SELECT * FROM t WHERE k >= 38",
    "SELECT * FROM t WHERE k BETWEEN -2 AND 2",
    "SELECT * FROM t WHERE k BETWEEN 2 AND -2",
    "SELECT * FROM t WHERE k = 3 OR k = 4",
    "SELECT * FROM t WHERE k > 10 AND g = 1",
    "SELECT * FROM t WHERE k = 7 AND s = 'abc'",
    "SELECT * FROM t WHERE s = 'ab'",
    "SELECT * FROM t WHERE s = ''",
    "SELECT * FROM t WHERE s > 'ab' AND s < 'b'",
    "SELECT * FROM t WHERE s IN ('a', 'z', 'nope')",
    "SELECT * FROM t WHERE s >= 'b'",
    "SELECT * FROM t WHERE v < -50.5",
    "SELECT * FROM t WHERE v BETWEEN -0.5 AND 0.5",
    "SELECT * FROM t WHERE v = 0",
    "SELECT * FROM t WHERE id = 17",
    "SELECT * FROM t WHERE id IN (1, 2, 3, 500, 899, 2000)",
    "SELECT * FROM t WHERE id >= 850",
    "SELECT * FROM t WHERE id < 40 AND k IS NULL",
    "SELECT * FROM t WHERE k IS NULL",
    "SELECT count(*), sum(k) FROM t WHERE k > 0",
    "SELECT g, count(*) FROM t WHERE k BETWEEN -20 AND 20 GROUP BY g",
    "SELECT * FROM t WHERE k = 2 LIMIT 3",
    "SELECT * FROM t WHERE k = 2.5",
    "SELECT * FROM t WHERE k = 2.0",
    "SELECT * FROM t WHERE k = 99999999999",
    "SELECT * FROM t WHERE k < 99999999999 AND k > 30",
    "SELECT a.id, b.id FROM t a JOIN t b ON a.k = b.k WHERE a.k = 3",
];

const INDEXES: &[&str] = &[
    "CREATE INDEX t_k ON t (k)",
    "CREATE INDEX t_s_g ON t (s, g)",
    "CREATE INDEX t_v ON t (v)",
];

fn fresh(seed: u64, with_indexes: bool) -> BlockingConnection {
    let db = Database::open_in_memory().unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute(SCHEMA).unwrap();
    if with_indexes {
        // Half the indexes before the data (maintained by every commit),
        // half after (built from existing rows).
        c.execute(INDEXES[0]).unwrap();
    }
    populate(&mut c, seed);
    if with_indexes {
        for sql in &INDEXES[1..] {
            c.execute(sql).unwrap();
        }
    }
    c
}

#[test]
fn index_use_never_changes_results() {
    for seed in [1, 2, 3] {
        let mut plain = fresh(seed, false);
        let mut indexed = fresh(seed, true);
        assert!(explain(&mut indexed, QUERIES[0]).contains("index=t_k"));
        assert!(explain(&mut indexed, "SELECT * FROM t WHERE s = 'ab'").contains("index=t_s_g"));
        assert!(!explain(&mut plain, QUERIES[0]).contains("index="));
        let mut nonempty = 0;
        for sql in QUERIES {
            let want = query(&mut plain, sql);
            let got = query(&mut indexed, sql);
            if !sql.contains("LIMIT") {
                assert_eq!(got, want, "seed {seed}: {sql}");
            } else {
                assert_eq!(got.len(), want.len(), "seed {seed}: {sql}");
            }
            nonempty += usize::from(!want.is_empty());
        }
        assert!(nonempty > QUERIES.len() / 2, "the queries must select rows");
        // The same inside a transaction with uncommitted writes of its own.
        for c in [&mut plain, &mut indexed] {
            c.execute("BEGIN").unwrap();
            c.execute("INSERT INTO t VALUES (5000, 5, 'ab', 0.0, 1), (5001, -41, NULL, 1.5, 2)")
                .unwrap();
            c.execute("UPDATE t SET k = 6 WHERE k = 5 AND id < 300")
                .unwrap();
            c.execute("DELETE FROM t WHERE s = 'abc'").unwrap();
        }
        for sql in QUERIES.iter().filter(|q| !q.contains("LIMIT")) {
            assert_eq!(
                query(&mut indexed, sql),
                query(&mut plain, sql),
                "seed {seed}, in transaction: {sql}"
            );
        }
    }
}

#[test]
fn prepared_point_queries_agree_with_the_general_path() {
    let mut plain = fresh(7, false);
    let mut indexed = fresh(7, true);
    let by_k = indexed.prepare("SELECT id, s FROM t WHERE k = $1").unwrap();
    let by_id = indexed.prepare("SELECT * FROM t WHERE id = $1").unwrap();
    let by_two = indexed
        .prepare("SELECT id FROM t WHERE s = $1 AND g = $2")
        .unwrap();
    for k in -45..45i64 {
        let got = rows(
            &indexed
                .query_prepared(&by_k, &[ScalarValue::Int64(Some(k))])
                .unwrap(),
        );
        let want = query(&mut plain, &format!("SELECT id, s FROM t WHERE k = {k}"));
        assert_eq!(got, want, "k = {k}");
    }
    for id in (0..950).step_by(13) {
        let got = rows(
            &indexed
                .query_prepared(&by_id, &[ScalarValue::Int64(Some(id))])
                .unwrap(),
        );
        let want = query(&mut plain, &format!("SELECT * FROM t WHERE id = {id}"));
        assert_eq!(got, want, "id = {id}");
    }
    for s in ["a", "ab", "", "zz"] {
        for g in 0..3 {
            let params = [ScalarValue::from(s), ScalarValue::Int32(Some(g))];
            let got = rows(&indexed.query_prepared(&by_two, &params).unwrap());
            let want = query(
                &mut plain,
                &format!("SELECT id FROM t WHERE s = '{s}' AND g = {g}"),
            );
            assert_eq!(got, want, "s = {s}, g = {g}");
        }
    }
    assert_eq!(by_k.fast_path(), Some("point query"));
    assert_eq!(by_two.fast_path(), Some("point query"));
    // Parameters that are not exact values of the column type take the
    // general path and still answer correctly.
    let got = indexed
        .query_prepared(&by_k, &[ScalarValue::Float64(Some(2.5))])
        .unwrap();
    assert!(rows(&got).is_empty());
    let got = indexed
        .query_prepared(&by_k, &[ScalarValue::Int64(None)])
        .unwrap();
    assert!(rows(&got).is_empty());
    // The schema matches the general path's.
    let id = query(&mut plain, "SELECT min(id) FROM t")[0].clone();
    let fast = indexed
        .query_prepared(&by_id, &[ScalarValue::Int64(Some(id.parse().unwrap()))])
        .unwrap();
    let slow = indexed
        .query(&format!("SELECT * FROM t WHERE id = {id}"))
        .unwrap();
    assert_eq!(fast[0].schema(), slow[0].schema());
}

#[test]
fn index_definitions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute(SCHEMA).unwrap();
        c.execute("CREATE INDEX t_k ON t (k)").unwrap();
        c.execute("CREATE UNIQUE INDEX t_s ON t (s)").unwrap();
        c.execute("INSERT INTO t VALUES (1, 10, 'x', 0, 0), (2, 20, 'y', 0, 0)")
            .unwrap();
        c.execute("CHECKPOINT").unwrap();
        c.execute("INSERT INTO t VALUES (3, 10, 'z', 0, 0)")
            .unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    assert!(explain(&mut c, "SELECT id FROM t WHERE k = 10").contains("index=t_k"));
    assert_eq!(query(&mut c, "SELECT id FROM t WHERE k = 10"), ["1", "3"]);
    let err = c
        .execute("INSERT INTO t VALUES (4, 0, 'y', 0, 0)")
        .unwrap_err();
    assert_eq!(err.sqlstate(), "23505", "{err}");
    c.execute("DROP INDEX t_k").unwrap();
    drop(c);
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    assert!(!explain(&mut c, "SELECT id FROM t WHERE k = 10").contains("index=t_k"));
    let err = c.execute("DROP INDEX t_k").unwrap_err();
    assert_eq!(err.sqlstate(), "42704", "{err}");
}

/// The differential test across reopen: index contents are persisted as
/// runs (one per segment and index), so after a close and an open the
/// indexes answer from their runs, without rebuilding, exactly as a scan
/// of the same history without indexes — and again after more writes,
/// a checkpoint and a second reopen.
#[test]
fn index_answers_after_reopen_equal_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 11;
    {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute(SCHEMA).unwrap();
        c.execute(INDEXES[0]).unwrap();
        populate(&mut c, seed);
        for sql in &INDEXES[1..] {
            c.execute(sql).unwrap();
        }
    }
    let runs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".eidx")
        })
        .count();
    assert!(runs >= 3, "{runs} index runs on disk");
    let mut plain = fresh(seed, false);
    let compare = |indexed: &mut BlockingConnection, plain: &mut BlockingConnection, when: &str| {
        for sql in QUERIES.iter().filter(|q| !q.contains("LIMIT")) {
            assert_eq!(query(indexed, sql), query(plain, sql), "{when}: {sql}");
        }
    };
    {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        assert!(explain(&mut c, QUERIES[0]).contains("index=t_k"));
        compare(&mut c, &mut plain, "after reopen");
        let stats = db.engine().index_run_stats();
        assert!(stats.opened >= 3, "{stats:?}");
        assert_eq!((stats.written, stats.rebuilt), (0, 0), "{stats:?}");
        for c in [&mut c, &mut plain] {
            c.execute("INSERT INTO t VALUES (5000, 5, 'ab', 0.0, 1), (5001, -41, NULL, 1.5, 2)")
                .unwrap();
            c.execute("UPDATE t SET k = 6 WHERE k = 5 AND id < 300")
                .unwrap();
            c.execute("DELETE FROM t WHERE s = 'abc'").unwrap();
        }
        // Mem chunks in memory maps next to the runs.
        compare(&mut c, &mut plain, "after writes");
        c.execute("CHECKPOINT").unwrap();
        compare(&mut c, &mut plain, "after a checkpoint");
    }
    let db = Database::open(dir.path()).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    compare(&mut c, &mut plain, "after the second reopen");
    assert_eq!(db.engine().index_run_stats().rebuilt, 0);
    let problems = query(&mut c, "PRAGMA integrity_check");
    assert_eq!(problems, ["ok"]);
}

/// Every index the catalog has is declared to the engine, so checkpoints
/// persist runs even for indexes not used yet: the first primary-key
/// lookup after a reopen opens a run and writes (rebuilds) nothing.
#[test]
fn checkpoints_persist_indexes_before_their_first_use() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("CREATE TABLE p (id BIGINT PRIMARY KEY, v INT)")
            .unwrap();
        c.execute("CREATE INDEX p_v ON p (v)").unwrap();
        let values: Vec<String> = (0..1000).map(|i| format!("({i}, {})", i % 10)).collect();
        c.execute(&format!("INSERT INTO p VALUES {}", values.join(", ")))
            .unwrap();
        c.execute("CHECKPOINT").unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    assert_eq!(query(&mut c, "SELECT v FROM p WHERE id = 437"), ["7"]);
    assert_eq!(query(&mut c, "SELECT count(*) FROM p WHERE v = 3"), ["100"]);
    let stats = db.engine().index_run_stats();
    assert_eq!(
        (stats.opened, stats.written, stats.rebuilt),
        (2, 0, 0),
        "{stats:?}"
    );
}

/// Power lost at every I/O operation of `CREATE INDEX` (and of its commit):
/// after recovery the index exists completely — listed, used, correct — or
/// not at all, and can then be created.
#[test]
fn power_loss_during_create_index_leaves_all_or_nothing() {
    const CREATE: &str = "CREATE UNIQUE INDEX t_id2 ON t (k, id); CHECKPOINT";
    let open = |disk: &SimDisk| {
        Database::from_engine(
            Engine::open(Arc::new(disk.clone()), EngineOptions::default()).unwrap(),
        )
    };
    let base = SimDisk::new();
    {
        let db = open(&base);
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute(SCHEMA).unwrap();
        populate(&mut c, 11);
    }
    let total = {
        let db = open(&base);
        let mut c = BlockingConnection::new(&db).unwrap();
        let before = base.op_count();
        c.execute(CREATE).unwrap();
        base.op_count() - before
    };
    assert!(
        total > 4,
        "CREATE INDEX and CHECKPOINT must do I/O: {total}"
    );
    let mut outcomes = [0usize; 2];
    for crash_at in 0..total + 2 {
        let disk = SimDisk::new();
        {
            let db = open(&disk);
            let mut c = BlockingConnection::new(&db).unwrap();
            c.execute(SCHEMA).unwrap();
            populate(&mut c, 11);
        }
        {
            let db = open(&disk);
            let mut c = BlockingConnection::new(&db).unwrap();
            disk.crash_after(crash_at).unwrap();
            let _ = c.execute(CREATE);
        }
        disk.power_loss(PowerLoss::DropUnsynced).unwrap();
        let db = open(&disk);
        let mut c = BlockingConnection::new(&db).unwrap();
        let sql = "SELECT id, k FROM t WHERE k = 3";
        let used = explain(&mut c, sql).contains("index=t_id2");
        let created = c.execute("CREATE INDEX t_id2 ON t (k)").is_err();
        assert_eq!(used, created, "crash at {crash_at}: listed iff used");
        let want = query(&mut c, "SELECT id, k FROM t WHERE k + 0 = 3");
        assert!(!want.is_empty());
        assert_eq!(query(&mut c, sql), want, "crash at {crash_at}");
        outcomes[usize::from(created)] += 1;
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

fn two_connections() -> (Database, BlockingConnection, BlockingConnection) {
    let db = Database::open_in_memory().unwrap();
    let mut a = BlockingConnection::new(&db).unwrap();
    let b = BlockingConnection::new(&db).unwrap();
    a.execute("CREATE TABLE t (id INT PRIMARY KEY, k INT, u TEXT)")
        .unwrap();
    a.execute("CREATE INDEX t_k ON t (k)").unwrap();
    a.execute("CREATE UNIQUE INDEX t_u ON t (u)").unwrap();
    a.execute("INSERT INTO t VALUES (1, 5, 'one'), (2, 6, 'two')")
        .unwrap();
    (db, a, b)
}

#[test]
fn index_lookups_follow_snapshots() {
    let (_db, mut a, mut b) = two_connections();
    let by_k = b.prepare("SELECT id FROM t WHERE k = $1").unwrap();
    let k = |v: i32| [ScalarValue::Int32(Some(v))];
    a.execute("BEGIN").unwrap();
    a.execute("INSERT INTO t VALUES (3, 5, 'three')").unwrap();
    a.execute("UPDATE t SET k = 7 WHERE id = 1").unwrap();
    // Uncommitted entries are invisible to others, visible to the writer.
    assert_eq!(query(&mut b, "SELECT id FROM t WHERE k = 5"), ["1"]);
    assert_eq!(rows(&b.query_prepared(&by_k, &k(5)).unwrap()), ["1"]);
    assert!(query(&mut b, "SELECT id FROM t WHERE k = 7").is_empty());
    assert_eq!(query(&mut a, "SELECT id FROM t WHERE k = 5"), ["3"]);
    assert_eq!(query(&mut a, "SELECT id FROM t WHERE k = 7"), ["1"]);
    // Rollback restores everything.
    a.execute("ROLLBACK").unwrap();
    assert_eq!(query(&mut a, "SELECT id FROM t WHERE k = 5"), ["1"]);
    assert!(query(&mut a, "SELECT id FROM t WHERE k = 7").is_empty());
    // A snapshot taken before a commit keeps seeing the old index state.
    b.execute("BEGIN").unwrap();
    assert_eq!(query(&mut b, "SELECT id FROM t WHERE k = 5"), ["1"]);
    a.execute("UPDATE t SET k = 7 WHERE id = 1").unwrap();
    a.execute("INSERT INTO t VALUES (3, 5, 'three')").unwrap();
    assert_eq!(query(&mut b, "SELECT id FROM t WHERE k = 5"), ["1"]);
    assert_eq!(rows(&b.query_prepared(&by_k, &k(5)).unwrap()), ["1"]);
    assert!(query(&mut b, "SELECT id FROM t WHERE k = 7").is_empty());
    b.execute("COMMIT").unwrap();
    assert_eq!(query(&mut b, "SELECT id FROM t WHERE k = 5"), ["3"]);
    assert_eq!(rows(&b.query_prepared(&by_k, &k(7)).unwrap()), ["1"]);
    // After a checkpoint moved everything into segments.
    a.execute("CHECKPOINT").unwrap();
    assert_eq!(query(&mut b, "SELECT id FROM t WHERE k = 5"), ["3"]);
    assert_eq!(query(&mut b, "SELECT id FROM t WHERE k >= 6"), ["1", "2"]);
}

#[test]
fn unique_index_holds_across_concurrent_transactions() {
    let (_db, mut a, mut b) = two_connections();
    // Statement time.
    let err = a.execute("INSERT INTO t VALUES (9, 0, 'one')").unwrap_err();
    assert_eq!(err.sqlstate(), "23505");
    // NULLs never collide; updating a row keeps its own value legal.
    a.execute("INSERT INTO t VALUES (10, 0, NULL), (11, 0, NULL)")
        .unwrap();
    a.execute("UPDATE t SET k = k + 1 WHERE u = 'one'").unwrap();
    // Two transactions insert the same value: the second to commit fails.
    a.execute("BEGIN").unwrap();
    b.execute("BEGIN").unwrap();
    a.execute("INSERT INTO t VALUES (20, 0, 'same')").unwrap();
    b.execute("INSERT INTO t VALUES (21, 0, 'same')").unwrap();
    a.execute("COMMIT").unwrap();
    let err = b.execute("COMMIT").unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Engine(
                entidb::engine::Error::Conflict { .. }
                    | entidb::engine::Error::ConstraintViolation { .. }
            )
        ),
        "{err}"
    );
    assert_eq!(query(&mut a, "SELECT id FROM t WHERE u = 'same'"), ["20"]);
    // A writer that started before a UNIQUE index existed cannot commit a
    // duplicate behind its back.
    b.execute("BEGIN").unwrap();
    b.execute("INSERT INTO t VALUES (30, 42, 'x'), (31, 42, 'y')")
        .unwrap();
    a.execute("CREATE UNIQUE INDEX t_k_unique ON t (k)")
        .unwrap_err();
    a.execute("DELETE FROM t WHERE k = 0 OR id = 2").unwrap();
    a.execute("CREATE UNIQUE INDEX t_k_unique ON t (k)")
        .unwrap();
    let err = b.execute("COMMIT").unwrap_err();
    assert_eq!(err.sqlstate(), "40001", "{err}");
    // Creating a UNIQUE index over duplicates fails and leaves nothing.
    a.execute("INSERT INTO t VALUES (40, 100, 'dup'), (41, 101, 'dup2')")
        .unwrap();
    a.execute("UPDATE t SET u = 'd' WHERE id IN (40, 41)")
        .unwrap_err();
    a.execute("CREATE UNIQUE INDEX t_k2 ON t (id, u, k)")
        .unwrap();
    a.execute("CREATE TABLE d (x INT)").unwrap();
    a.execute("INSERT INTO d VALUES (1), (1)").unwrap();
    let err = a.execute("CREATE UNIQUE INDEX d_x ON d (x)").unwrap_err();
    assert_eq!(err.sqlstate(), "23505");
    a.execute("INSERT INTO d VALUES (1)").unwrap();
    assert!(a.execute("DROP INDEX d_x").is_err(), "no index was left");
    // A rolled-back CREATE INDEX leaves nothing either.
    a.execute("BEGIN; CREATE INDEX d_x ON d (x); ROLLBACK")
        .unwrap();
    assert!(!explain(&mut a, "SELECT * FROM d WHERE x = 1").contains("index="));
    // `SET u = u || '!'` rewrites every value at once without colliding.
    a.execute("CREATE TABLE w (id INT PRIMARY KEY, n INT UNIQUE)")
        .unwrap();
    a.execute("INSERT INTO w VALUES (1, 1), (2, 2), (3, 3)")
        .unwrap();
    a.execute("UPDATE w SET n = n + 1").unwrap();
    assert_eq!(query(&mut a, "SELECT n FROM w"), ["2", "3", "4"]);
    let err = a.execute("UPDATE w SET n = 2").unwrap_err();
    assert_eq!(err.sqlstate(), "23505");
}

/// Writers update indexed values, a thread checkpoints, another re-creates
/// an index, while readers compare index lookups with scans inside one
/// snapshot: they must always agree.
#[test]
fn index_lookups_agree_with_scans_under_concurrent_writes_and_checkpoints() {
    let db = Database::open_in_memory().unwrap();
    let mut setup = BlockingConnection::new(&db).unwrap();
    setup
        .execute("CREATE TABLE t (id INT PRIMARY KEY, k INT)")
        .unwrap();
    let values: Vec<String> = (0..300).map(|i| format!("({i}, {})", i % 20)).collect();
    setup
        .execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
        .unwrap();
    setup.execute("CREATE INDEX t_k ON t (k)").unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let db = db.clone();
            s.spawn(move || {
                let mut c = BlockingConnection::new(&db).unwrap();
                let mut rng = Lcg(w + 100);
                for _ in 0..150 {
                    let sql = format!(
                        "UPDATE t SET k = {} WHERE id = {}",
                        rng.next(20),
                        rng.next(300)
                    );
                    if let Err(e) = c.execute(&sql) {
                        assert_eq!(e.sqlstate(), "40001", "{e}");
                    }
                }
            });
        }
        s.spawn(|| {
            let mut c = BlockingConnection::new(&db).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                c.execute("CHECKPOINT").unwrap();
                let _ = c.execute("CREATE INDEX t_k2 ON t (k, id)");
                let _ = c.execute("DROP INDEX t_k2");
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let db = db.clone();
                s.spawn(move || {
                    let mut c = BlockingConnection::new(&db).unwrap();
                    let mut rng = Lcg(r + 7);
                    for _ in 0..60 {
                        let k = rng.next(20);
                        c.execute("BEGIN").unwrap();
                        let by_index = query(&mut c, &format!("SELECT id FROM t WHERE k = {k}"));
                        let by_scan = query(&mut c, &format!("SELECT id FROM t WHERE k + 0 = {k}"));
                        c.execute("COMMIT").unwrap();
                        assert_eq!(by_index, by_scan, "k = {k}");
                    }
                })
            })
            .collect();
        let results: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for r in results {
            if let Err(panic) = r {
                std::panic::resume_unwind(panic);
            }
        }
    });
    assert_eq!(query(&mut setup, "SELECT count(*) FROM t"), ["300"]);
}

/// Large commits are write-once loads (`engine/src/load.rs`: their rows go
/// straight into a segment the WAL names). With every `INSERT … SELECT`
/// and big `VALUES` list a load, a database replayed after power loss, and
/// again after a checkpoint, answers every query as one whose commits all
/// went through the WAL.
#[test]
fn loads_answer_like_the_wal_path_across_power_loss() {
    use entidb::engine::storage::Storage as _;
    let disk = SimDisk::new();
    let open = |disk: &SimDisk, load_rows: usize| {
        Database::from_engine(
            Engine::open(
                Arc::new(disk.clone()),
                EngineOptions {
                    direct_load_rows: load_rows,
                    ..EngineOptions::default()
                },
            )
            .unwrap(),
        )
    };
    let history = |c: &mut BlockingConnection| {
        c.execute(SCHEMA).unwrap();
        c.execute(INDEXES[0]).unwrap();
        populate(c, 5);
        c.execute("INSERT INTO t SELECT id + 10000, k, s, v, g FROM t")
            .unwrap();
        c.execute("UPDATE t SET s = 'loaded' WHERE id % 7 = 0")
            .unwrap();
        c.execute("DELETE FROM t WHERE id BETWEEN 10000 AND 10100")
            .unwrap();
        for sql in &INDEXES[1..] {
            c.execute(sql).unwrap();
        }
    };
    let mut plain = {
        let db = Database::open_in_memory().unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        history(&mut c);
        c
    };
    {
        let db = open(&disk, 100);
        let mut c = BlockingConnection::new(&db).unwrap();
        history(&mut c);
    }
    assert!(
        disk.list().unwrap().iter().any(|n| n.ends_with(".eseg")),
        "the loads wrote segments"
    );
    disk.power_loss(PowerLoss::DropUnsynced).unwrap();
    let compare = |c: &mut BlockingConnection, plain: &mut BlockingConnection, when: &str| {
        for sql in QUERIES.iter().filter(|q| !q.contains("LIMIT")) {
            assert_eq!(query(c, sql), query(plain, sql), "{when}: {sql}");
        }
        let all = "SELECT * FROM t ORDER BY id";
        assert_eq!(query(c, all), query(plain, all), "{when}");
        assert_eq!(query(c, "PRAGMA integrity_check"), ["ok"], "{when}");
    };
    let db = open(&disk, 100);
    let mut c = BlockingConnection::new(&db).unwrap();
    compare(&mut c, &mut plain, "after power loss");
    c.execute("CHECKPOINT").unwrap();
    drop(c);
    drop(db);
    disk.power_loss(PowerLoss::DropUnsynced).unwrap();
    let db = open(&disk, 100);
    let mut c = BlockingConnection::new(&db).unwrap();
    compare(&mut c, &mut plain, "after a checkpoint and power loss");
}
