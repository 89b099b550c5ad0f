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
