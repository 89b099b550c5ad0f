//! `OpenOptions::read_only` through SQL: queries answer, every write
//! (DML, DDL, CHECKPOINT, sequences) fails with 25006 and nothing on disk
//! changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use entidb::{BlockingConnection, Database, OpenOptions};
use std::collections::BTreeMap;
use std::path::Path;

fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn read_only() -> OpenOptions {
    OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    }
}

#[test]
fn a_read_only_database_answers_queries_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Database::open(&path).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b')")
            .unwrap();
        assert!(!db.is_read_only());
    }
    let before = contents(&path);
    let db = Database::open_with(&path, read_only()).unwrap();
    assert!(db.is_read_only());
    let mut c = BlockingConnection::new(&db).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
    for write in [
        "INSERT INTO t (v) VALUES ('c')",
        "UPDATE t SET v = 'x'",
        "DELETE FROM t",
        "CREATE TABLE u (a INT)",
        "DROP TABLE t",
        "CREATE INDEX t_v ON t (v)",
        "CHECKPOINT",
    ] {
        let err = c.execute(write).unwrap_err();
        assert_eq!(err.sqlstate(), "25006", "{write}: {err}");
    }
    // A failed write inside a transaction leaves it usable for reads.
    c.execute("BEGIN").unwrap();
    assert!(c.execute("INSERT INTO t (v) VALUES ('d')").is_err());
    c.execute("ROLLBACK").unwrap();
    drop(c);
    drop(db);
    assert_eq!(contents(&path), before, "nothing on disk changed");
}

#[test]
fn a_read_only_open_of_a_missing_database_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here");
    let err = Database::open_with(&path, read_only()).unwrap_err();
    assert!(!path.exists(), "{err}");
}
