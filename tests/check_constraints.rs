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
