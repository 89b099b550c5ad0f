//! End-to-end SQL through the facade.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::util::pretty::pretty_format_batches;
use entidb::{BlockingConnection, Database, ErrorKind};

fn show(conn: &mut BlockingConnection, sql: &str) -> String {
    let batches = conn.query(sql).unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

#[test]
fn create_insert_select_update_delete() {
    let db = Database::open_in_memory().unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE DEFAULT 1.5)",
    )
    .unwrap();
    assert_eq!(
        c.execute("INSERT INTO t (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
            .unwrap(),
        3
    );
    assert_eq!(
        c.execute("UPDATE t SET name = name || '!' WHERE id >= 2")
            .unwrap(),
        2
    );
    assert_eq!(
        c.execute("DELETE FROM t WHERE id IN (SELECT id FROM t WHERE name = 'c!')")
            .unwrap(),
        1
    );
    let out = show(&mut c, "SELECT * FROM t ORDER BY id");
    assert!(out.contains("| 1  | a    | 1.5   |"), "{out}");
    assert!(out.contains("| 2  | b!   | 1.5   |"), "{out}");
    assert!(!out.contains("c!"), "{out}");
    let err = c.execute("INSERT INTO t VALUES (1, 'dup', 0)").unwrap_err();
    assert_eq!(err.sqlstate(), "23505", "{err}");
    let err = c.execute("INSERT INTO t VALUES (9, NULL, 0)").unwrap_err();
    assert_eq!(err.sqlstate(), "23502", "{err}");
    let err = c.execute("SELECT * FROM nope").unwrap_err();
    assert_eq!(err.sqlstate(), "42P01", "{err}");
    assert!(matches!(err.kind(), ErrorKind::UndefinedTable { .. }));
}

#[test]
fn persists_across_reopen_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute(
            "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y')",
        )
        .unwrap();
        c.execute("CREATE VIEW v AS SELECT id FROM t WHERE id > 1")
            .unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    assert!(show(&mut c, "SELECT count(*) AS n FROM t").contains("| 2 |"));
    c.execute("CHECKPOINT").unwrap();
    c.execute("INSERT INTO t VALUES (3, 'z')").unwrap();
    let out = show(&mut c, "SELECT * FROM v ORDER BY id");
    assert!(out.contains("| 2  |") && out.contains("| 3  |"), "{out}");
}

#[test]
fn transactions_through_sql() {
    let db = Database::open_in_memory().unwrap();
    let mut a = BlockingConnection::new(&db).unwrap();
    let mut b = BlockingConnection::new(&db).unwrap();
    a.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .unwrap();
    a.execute("BEGIN; INSERT INTO t VALUES (1, 10)").unwrap();
    assert!(show(&mut b, "SELECT count(*) AS n FROM t").contains("| 0 |"));
    a.execute("COMMIT").unwrap();
    assert!(show(&mut b, "SELECT count(*) AS n FROM t").contains("| 1 |"));
    a.execute("BEGIN; CREATE TABLE x (a INT); ROLLBACK")
        .unwrap();
    assert_eq!(
        b.execute("SELECT * FROM x").unwrap_err().sqlstate(),
        "42P01"
    );
    // Lost update through SQL: second committer gets 40001.
    a.execute("BEGIN; UPDATE t SET v = v + 1 WHERE id = 1")
        .unwrap();
    b.execute("BEGIN; UPDATE t SET v = v + 2 WHERE id = 1")
        .unwrap();
    a.execute("COMMIT").unwrap();
    let err = b.execute("COMMIT").unwrap_err();
    assert_eq!(err.sqlstate(), "40001", "{err}");
    assert!(err.is_retryable());
}

/// Issue 12.1 through SQL: a row deleted inside an open transaction came
/// back after another connection's CHECKPOINT, and the transaction's UPDATE
/// committed it back.
#[test]
fn a_concurrent_checkpoint_never_brings_back_a_deleted_row() {
    let db = Database::open_in_memory().unwrap();
    let mut a = BlockingConnection::new(&db).unwrap();
    let mut b = BlockingConnection::new(&db).unwrap();
    a.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .unwrap();
    a.execute("INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)")
        .unwrap();
    a.execute("BEGIN").unwrap();
    a.execute("DELETE FROM t WHERE id = 1").unwrap();
    a.execute("UPDATE t SET v = v * 100 WHERE id = 2").unwrap();
    b.execute("INSERT INTO t VALUES (4, 4)").unwrap();
    b.execute("CHECKPOINT").unwrap();
    let seen = show(&mut a, "SELECT id, v FROM t ORDER BY id");
    assert!(!seen.contains("| 1  |"), "the deleted row is back: {seen}");
    assert_eq!(
        seen.matches("| 2  |").count(),
        1,
        "two versions of 2: {seen}"
    );
    assert!(
        seen.contains("| 2  | 200 |") && seen.contains("| 3  | 3   |"),
        "{seen}"
    );
    assert!(
        !seen.contains("| 4  |"),
        "a later commit is visible: {seen}"
    );
    assert_eq!(a.execute("UPDATE t SET v = v + 10").unwrap(), 2);
    a.execute("COMMIT").unwrap();
    let out = show(&mut b, "SELECT id, v FROM t ORDER BY id");
    assert!(!out.contains("| 1  |"), "{out}");
    assert!(out.contains("| 2  | 210 |"), "{out}");
    assert!(out.contains("| 3  | 13  |"), "{out}");
    assert!(out.contains("| 4  | 4   |"), "{out}");
}
