//! Every SQL type, with NULLs, survives WAL replay, checkpoint and reopen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::util::pretty::pretty_format_batches;
use entidb::{BlockingConnection, Database};

const QUERY: &str = "SELECT * FROM ty ORDER BY id";

fn snapshot(path: &std::path::Path) -> String {
    let db = Database::open(path).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    pretty_format_batches(&c.query(QUERY).unwrap())
        .unwrap()
        .to_string()
}

#[test]
fn all_types_survive_wal_checkpoint_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute(
            "CREATE TABLE ty (id INT PRIMARY KEY, b BOOLEAN, si SMALLINT, i INT, bi BIGINT,
               r REAL, d DOUBLE, dec DECIMAL(12, 3), s VARCHAR, t TEXT, blob BYTEA, day DATE,
               ts TIMESTAMP)",
        )
        .unwrap();
        c.execute(
            "INSERT INTO ty VALUES
               (1, true, -32768, -2147483648, -9223372036854775808, -1.25, 3.141592653589793,
                -123456789.125, 'ünïcode ✓', '', X'DEADBEEF', '1970-01-01', '1999-12-31 23:59:59.999999'),
               (2, false, 32767, 2147483647, 9223372036854775807, 3.4e38, -1e308,
                999999999.999, 'x', 'y', X'', '2262-04-11', '2262-04-11 23:47:16'),
               (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        )
        .unwrap();
        pretty_format_batches(&c.query(QUERY).unwrap())
            .unwrap()
            .to_string()
    };
    assert!(
        expected.contains("ünïcode ✓") && expected.contains("deadbeef"),
        "{expected}"
    );
    assert_eq!(snapshot(dir.path()), expected, "after WAL replay");
    {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("CHECKPOINT").unwrap();
        assert_eq!(
            pretty_format_batches(&c.query(QUERY).unwrap())
                .unwrap()
                .to_string(),
            expected
        );
    }
    assert_eq!(snapshot(dir.path()), expected, "from segments after reopen");
}
