//! Regression tests for statement parsing, parameters in DELETE/UPDATE and
//! other SQL-front fixes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::array::AsArray;
use entidb::{BlockingConnection, Database};

fn conn() -> BlockingConnection {
    BlockingConnection::new(&Database::open_in_memory().unwrap()).unwrap()
}

#[test]
fn syntax_error_does_not_blame_an_escaped_quote() {
    let mut c = conn();
    let err = c.query("SELECT 'x''y' FROM").unwrap_err();
    assert_eq!(err.sqlstate(), "42601", "{err}");
    assert!(!err.to_string().contains("Unterminated"), "{err}");
}

#[test]
fn escaped_quotes_survive_a_script_with_checkpoint() {
    // A script with CHECKPOINT is split into statements; each piece used to
    // be re-printed from its tokens, turning 'x''y' into 'x'y'.
    let mut c = conn();
    c.execute("CREATE TABLE q (s TEXT); INSERT INTO q VALUES ('x''y'); CHECKPOINT")
        .unwrap();
    let batches = c.query("SELECT s FROM q").unwrap();
    let col = batches[0].column(0).as_string::<i32>();
    assert_eq!(col.value(0), "x'y");
}

fn ids(c: &mut BlockingConnection) -> Vec<(i64, String)> {
    let batches = c.query("SELECT id, name FROM t ORDER BY id").unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let id = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let name = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((id.value(i), name.value(i).to_string()));
        }
    }
    out
}

#[test]
fn delete_and_update_bind_parameters() {
    use datafusion::scalar::ScalarValue;
    let mut c = conn();
    c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)")
        .unwrap();
    c.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .unwrap();
    let n = c
        .execute_with(
            "DELETE FROM t WHERE id = $1",
            &[ScalarValue::Int64(Some(2))],
        )
        .unwrap();
    assert_eq!(n, 1);
    let n = c
        .execute_with(
            "UPDATE t SET name = $1 WHERE id = $2",
            &[ScalarValue::from("z"), ScalarValue::Int64(Some(3))],
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(ids(&mut c), vec![(1, "a".into()), (3, "z".into())]);
    // Prepared statements take the same path.
    let p = c
        .prepare("UPDATE t SET name = name || $1 WHERE id > $2")
        .unwrap();
    let n = c
        .execute_prepared(&p, &[ScalarValue::from("!"), ScalarValue::Int64(Some(0))])
        .unwrap();
    assert_eq!(n, 2);
    let p = c.prepare("DELETE FROM t WHERE name = $1").unwrap();
    assert_eq!(
        c.execute_prepared(&p, &[ScalarValue::from("a!")]).unwrap(),
        1
    );
    assert_eq!(ids(&mut c), vec![(3, "z!".into())]);
    // A missing parameter is still an error, not "every row".
    let err = c.execute("DELETE FROM t WHERE id = $1").unwrap_err();
    assert_ne!(err.sqlstate(), "00000");
    assert_eq!(ids(&mut c).len(), 1);
}
