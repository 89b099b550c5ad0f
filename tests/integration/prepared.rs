//! Prepared one-row INSERTs take a fast path that skips DataFusion; they must
//! behave exactly like the same INSERT run as text.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::util::pretty::pretty_format_batches;
use datafusion::scalar::ScalarValue;
use entidb::{BlockingConnection, Database};

const SCHEMA: &str = "CREATE TABLE t (id INT PRIMARY KEY, name TEXT NOT NULL, \
                      score DOUBLE, tag TEXT UNIQUE, n BIGINT DEFAULT 7)";

fn conn() -> BlockingConnection {
    let db = Database::open_in_memory().unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute(SCHEMA).unwrap();
    c
}

fn dump(c: &mut BlockingConnection) -> String {
    let batches = c.query("SELECT * FROM t ORDER BY id").unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

/// The same statements and parameters, prepared on one database and inlined
/// as text on another: same rows, same errors.
#[test]
fn prepared_inserts_match_text_inserts() {
    let mut fast = conn();
    let mut text = conn();
    let cases: Vec<(&str, Vec<ScalarValue>, &str)> = vec![
        (
            "INSERT INTO t VALUES ($1, $2, $3, $4, $5)",
            vec![
                ScalarValue::Int64(Some(1)),
                ScalarValue::from("one"),
                ScalarValue::Float64(Some(1.5)),
                ScalarValue::from("a"),
                ScalarValue::Int64(Some(10)),
            ],
            "INSERT INTO t VALUES (1, 'one', 1.5, 'a', 10)",
        ),
        (
            "INSERT INTO t (name, id) VALUES ($1, $2)",
            vec![ScalarValue::from("two"), ScalarValue::Int32(Some(2))],
            "INSERT INTO t (name, id) VALUES ('two', 2)",
        ),
        (
            "INSERT INTO t (id, name, score, tag, n) VALUES (3, 'three', -2, NULL, $1)",
            vec![ScalarValue::Int64(Some(-4))],
            "INSERT INTO t (id, name, score, tag, n) VALUES (3, 'three', -2, NULL, -4)",
        ),
        (
            "INSERT INTO t VALUES ($1, $2, NULL, NULL, 0)",
            vec![ScalarValue::from("4"), ScalarValue::from("four")],
            "INSERT INTO t VALUES ('4', 'four', NULL, NULL, 0)",
        ),
        // Errors: duplicate key, NULL in NOT NULL, duplicate UNIQUE value,
        // a value the column type cannot hold.
        (
            "INSERT INTO t (id, name) VALUES ($1, $2)",
            vec![ScalarValue::Int64(Some(1)), ScalarValue::from("dup")],
            "INSERT INTO t (id, name) VALUES (1, 'dup')",
        ),
        (
            "INSERT INTO t (id, name) VALUES ($1, $2)",
            vec![ScalarValue::Int64(Some(9)), ScalarValue::Utf8(None)],
            "INSERT INTO t (id, name) VALUES (9, NULL)",
        ),
        (
            "INSERT INTO t (id, name, tag) VALUES ($1, 'x', $2)",
            vec![ScalarValue::Int64(Some(10)), ScalarValue::from("a")],
            "INSERT INTO t (id, name, tag) VALUES (10, 'x', 'a')",
        ),
        (
            "INSERT INTO t (id, name) VALUES ($1, 'big')",
            vec![ScalarValue::Int64(Some(1 << 40))],
            "INSERT INTO t (id, name) VALUES (1099511627776, 'big')",
        ),
    ];
    for (sql, params, inline) in cases {
        let stmt = fast.prepare(sql).unwrap();
        let got = fast.execute_prepared(&stmt, &params);
        // Statements omitting the DEFAULT column `n` need the general path.
        let names_n = sql.starts_with("INSERT INTO t VALUES") || sql.contains(", n)");
        let expected = names_n.then_some("insert");
        assert_eq!(stmt.fast_path(), expected, "{sql}");
        let want = text.execute(inline);
        match (&got, &want) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{sql}"),
            (Err(a), Err(b)) => assert_eq!(a.sqlstate(), b.sqlstate(), "{sql}: {a} vs {b}"),
            _ => panic!("{sql}: prepared {got:?}, text {want:?}"),
        }
    }
    assert_eq!(dump(&mut fast), dump(&mut text));
    // The omitted column with a DEFAULT got it (general path).
    assert!(dump(&mut fast).contains("| 7 "), "{}", dump(&mut fast));
}

/// A prepared INSERT inside an explicit transaction is part of it.
#[test]
fn prepared_inserts_join_the_open_transaction() {
    let mut c = conn();
    let stmt = c
        .prepare("INSERT INTO t (id, name) VALUES ($1, $2)")
        .unwrap();
    c.execute("BEGIN").unwrap();
    for i in 0..3 {
        c.execute_prepared(
            &stmt,
            &[ScalarValue::Int64(Some(i)), ScalarValue::from("x")],
        )
        .unwrap();
    }
    c.execute("ROLLBACK").unwrap();
    assert!(!dump(&mut c).contains("| x "));
    c.execute_prepared(
        &stmt,
        &[ScalarValue::Int64(Some(5)), ScalarValue::from("y")],
    )
    .unwrap();
    assert!(dump(&mut c).contains("| y "));
}
