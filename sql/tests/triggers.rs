//! Triggers across statement boundaries the `.slt` files cannot reach: a
//! statement dropped (cancelled, timed out) while its triggers run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use entidb_engine::Engine;
use entidb_sql::Session;
use std::time::Duration;

/// A session with table `big` (3,000 rows) and a trigger on `t` that runs
/// `first` and then, for `x = 1`, joins `big` with itself (9M rows: far
/// longer than the tests' time limits), logging into `log`.
async fn slow_trigger(first: &str) -> (Engine, Session) {
    let engine = Engine::open_memory().unwrap();
    let mut s = Session::new(engine.clone());
    let script = format!(
        "CREATE TABLE big (v INT);
         INSERT INTO big SELECT value FROM generate_series(1, 3000);
         CREATE TABLE t (x INT);
         CREATE TABLE log (x INT, n BIGINT);
         CREATE TRIGGER slow AFTER INSERT ON t BEGIN
           {first}
           INSERT INTO log SELECT NEW.x, count(*) FROM big a, big b
             WHERE NEW.x = 1 AND a.v + b.v > 0;
         END;"
    );
    s.run(&script, &[]).await.unwrap();
    (engine, s)
}

/// Runs `sql` and drops it after 200 ms, failing the test if it finished.
async fn cancel(s: &mut Session, sql: &str) {
    let run = tokio::time::timeout(Duration::from_millis(200), s.run(sql, &[])).await;
    assert!(run.is_err(), "{sql} finished before it could be cancelled");
}

/// A statement cancelled in the middle of a trigger leaves the trigger
/// armed: the connection's next statement fires it (the trigger's name
/// used to stay on the stack of running triggers, which skips it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_statement_leaves_its_triggers_armed() {
    let (_engine, mut s) = slow_trigger("").await;
    cancel(&mut s, "INSERT INTO t VALUES (1)").await;
    s.run("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    let logged = s.query("SELECT x FROM log", &[]).await.unwrap();
    let rows: usize = logged.iter().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows, 1,
        "the trigger did not fire after the cancelled statement"
    );
}

/// Rows of `sql`'s result.
async fn count(s: &mut Session, sql: &str) -> usize {
    let batches = s.query(sql, &[]).await.unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

/// A statement cancelled inside an explicit transaction leaves none of its
/// writes behind (not the row, not half of its triggers' work), and a
/// cancelled DELETE leaves the table as it was registered (DELETE plans
/// over a keyed view of the table while it runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_statement_writes_nothing() {
    let (_engine, mut s) = slow_trigger("INSERT INTO log VALUES (NEW.x, 0);").await;
    s.run("BEGIN", &[]).await.unwrap();
    cancel(&mut s, "INSERT INTO t VALUES (1)").await;
    s.run("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    s.run("COMMIT", &[]).await.unwrap();
    assert_eq!(count(&mut s, "SELECT * FROM t").await, 1);
    assert_eq!(count(&mut s, "SELECT * FROM log").await, 2);

    let slow_delete =
        "DELETE FROM big WHERE v IN (SELECT a.v FROM big a, big b WHERE a.v + b.v > 0)";
    cancel(&mut s, slow_delete).await;
    let batches = s.query("SELECT * FROM big LIMIT 1", &[]).await.unwrap();
    let columns = batches.first().map(|b| b.num_columns());
    assert_eq!(columns, Some(1), "the keyed view of big stayed registered");
    s.run("INSERT INTO big VALUES (0)", &[]).await.unwrap();
    assert_eq!(count(&mut s, "SELECT * FROM big").await, 3001);
}
