//! CHECK constraints beyond the slt file: they survive a reopen, and the
//! write paths that bypass DataFusion's INSERT plan check them too — the
//! prepared insert fast path, the Arrow append API and COPY FROM a file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::array::{Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use entidb::{BlockingConnection, Database, params};
use std::sync::Arc;

fn count(c: &mut BlockingConnection) -> i64 {
    c.query_row("SELECT count(*) FROM t", &[], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_write_path_checks_and_the_constraint_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Database::open(&path).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("CREATE TABLE t (a INT CHECK (a >= 0))").unwrap();
    }
    let db = Database::open(&path).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();

    let err = c.execute("INSERT INTO t VALUES (-1)").unwrap_err();
    assert_eq!(err.sqlstate(), "23514", "after reopen: {err}");

    // The prepared insert fast path.
    let insert = c.prepare("INSERT INTO t VALUES ($1)").unwrap();
    c.execute_prepared(&insert, params![5]).unwrap();
    let err = c.execute_prepared(&insert, params![-5]).unwrap_err();
    assert_eq!(err.sqlstate(), "23514", "{err}");

    // The Arrow append path.
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1, -2]))]).unwrap();
    let err = c.append("t", &batch).unwrap_err();
    assert_eq!(err.sqlstate(), "23514", "{err}");

    // COPY FROM a file: one bad line, nothing loaded.
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "a\n1\n2\n-3\n").unwrap();
    let err = c
        .execute(&format!("COPY t FROM '{}' WITH (HEADER)", csv.display()))
        .unwrap_err();
    assert_eq!(err.sqlstate(), "23514", "{err}");

    assert_eq!(count(&mut c), 1, "only the good prepared insert is stored");
}

/// The seam with a concurrent writer: a constraint added in a transaction
/// checks the rows of its snapshot, so a row a concurrent transaction
/// commits in between must make one of the two fail — else a violating row
/// would sit under a constraint that claims to hold.
#[test]
fn adding_a_check_conflicts_with_a_concurrent_violating_insert() {
    let db = Database::open_in_memory().unwrap();
    let mut a = BlockingConnection::new(&db).unwrap();
    let mut b = BlockingConnection::new(&db).unwrap();
    a.execute("CREATE TABLE t (v INT); INSERT INTO t VALUES (1)")
        .unwrap();
    a.execute("BEGIN; ALTER TABLE t ADD CONSTRAINT pos CHECK (v > 0)")
        .unwrap();
    let inserted = b.execute("INSERT INTO t VALUES (-1)");
    let committed = a.execute("COMMIT");
    assert!(
        inserted.is_err() || committed.is_err(),
        "both committed: the table holds -1 under CHECK (v > 0)"
    );
    match committed {
        Err(e) => assert_eq!(e.sqlstate(), "40001", "{e}"),
        // The constraint holds: every stored row satisfies it.
        Ok(_) => {
            let violating: i64 = a
                .query_row("SELECT count(*) FROM t WHERE v <= 0", &[], |r| r.get(0))
                .unwrap();
            assert_eq!(violating, 0);
        }
    }
}

/// The same seam for CREATE UNIQUE INDEX: a duplicate committed while the
/// index is built in another transaction.
#[test]
fn a_unique_index_conflicts_with_a_concurrent_duplicate() {
    let db = Database::open_in_memory().unwrap();
    let mut a = BlockingConnection::new(&db).unwrap();
    let mut b = BlockingConnection::new(&db).unwrap();
    a.execute("CREATE TABLE t (v INT); INSERT INTO t VALUES (1)")
        .unwrap();
    a.execute("BEGIN; CREATE UNIQUE INDEX t_v ON t (v)")
        .unwrap();
    let inserted = b.execute("INSERT INTO t VALUES (1)");
    let committed = a.execute("COMMIT");
    assert!(
        inserted.is_err() || committed.is_err(),
        "both committed: a UNIQUE index over a duplicate"
    );
}
