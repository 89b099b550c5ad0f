//! SQL that real test suites (SQLite's sqllogictest corpus) use and that
//! EntiDB used to refuse, each checked against PostgreSQL 15's answer, and
//! the SQLite dialect setting. Each test names the bug it pins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::util::display::{ArrayFormatter, FormatOptions};
use entidb::{BlockingConnection, Database};

fn conn() -> BlockingConnection {
    let db = Database::open_in_memory().unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute("CREATE TABLE t1 (a INT, b INT)").unwrap();
    c.execute("INSERT INTO t1 VALUES (104, 100), (107, 105), (110, NULL)")
        .unwrap();
    c
}

/// Rows as text, NULL as `NULL`.
fn rows(c: &mut BlockingConnection, sql: &str) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in c.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    out
}

fn one_row(c: &mut BlockingConnection, sql: &str) -> Vec<String> {
    let mut all = rows(c, sql);
    assert_eq!(all.len(), 1, "{sql}: {all:?}");
    all.remove(0)
}

fn names(c: &mut BlockingConnection, sql: &str) -> Vec<String> {
    let batches = c.query(sql).unwrap();
    batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn correlated_scalar_subquery_with_a_non_equality_runs() {
    // Was 0A000 "Physical plan does not support logical expression
    // ScalarSubquery": DataFusion decorrelates equalities only.
    let mut c = conn();
    let got = rows(
        &mut c,
        "SELECT a, (SELECT count(*) FROM t1 x WHERE x.b < t1.b) FROM t1 ORDER BY a",
    );
    assert_eq!(got, [["104", "0"], ["107", "1"], ["110", "0"]]);
    let got = rows(
        &mut c,
        "SELECT (SELECT max(x.a) + t1.a FROM t1 x WHERE x.b < t1.b) FROM t1 ORDER BY a",
    );
    assert_eq!(got, [["NULL"], ["211"], ["NULL"]]);
    let got = rows(
        &mut c,
        "SELECT a FROM t1 WHERE (SELECT count(*) FROM t1 x WHERE x.b > t1.b) > 0",
    );
    assert_eq!(got, [["104"]]);
}

#[test]
fn in_and_exists_subqueries_in_a_projection_run() {
    // Were 0A000: DataFusion rewrites IN/EXISTS only inside WHERE.
    let mut c = conn();
    let got = one_row(
        &mut c,
        "SELECT 1 IN (SELECT b FROM t1), 100 IN (SELECT b FROM t1), \
         NULL IN (SELECT b FROM t1), 1 IN (SELECT NULL), \
         1 NOT IN (SELECT 2 WHERE false), NULL IN (SELECT 1 WHERE false), \
         2 NOT IN (SELECT 1 UNION ALL SELECT NULL), 100 NOT IN (SELECT b FROM t1)",
    );
    // PostgreSQL 15: NULL | t | NULL | NULL | t | f | NULL | f
    assert_eq!(
        got,
        [
            "NULL", "true", "NULL", "NULL", "true", "false", "NULL", "false"
        ]
    );
    let got = rows(
        &mut c,
        "SELECT a, a IN (SELECT a FROM t1), \
         EXISTS (SELECT 1 FROM t1 x WHERE x.b < t1.b), \
         b IN (SELECT x.b FROM t1 x WHERE x.a < t1.a) FROM t1 ORDER BY a",
    );
    assert_eq!(
        got,
        [
            ["104", "true", "false", "false"],
            ["107", "true", "true", "false"],
            ["110", "true", "false", "NULL"],
        ]
    );
}

#[test]
fn a_result_may_repeat_a_column_name() {
    // Was 42000 "Projections require unique expression names"; PostgreSQL
    // allows repeated names in the final projection.
    let mut c = conn();
    assert_eq!(one_row(&mut c, "SELECT 1, CAST(1 AS BIGINT)"), ["1", "1"]);
    let sql = "SELECT a AS c, b AS c FROM t1 WHERE a = 107";
    assert_eq!(one_row(&mut c, sql), ["107", "105"]);
    assert_eq!(names(&mut c, sql), ["c", "c"]);
    assert_eq!(
        rows(
            &mut c,
            "SELECT a AS c, b AS d, b AS d FROM t1 ORDER BY c DESC"
        )[0],
        ["110", "NULL", "NULL"]
    );
    assert_eq!(
        names(&mut c, "SELECT t1.a, a FROM t1 WHERE a = 104"),
        ["a", "a"]
    );
    assert_eq!(
        rows(
            &mut c,
            "SELECT a, a FROM t1 UNION ALL SELECT 1, 1 ORDER BY 1"
        )
        .len(),
        4
    );
    c.execute("CREATE TABLE t2 (x INT, y INT)").unwrap();
    assert_eq!(c.execute("INSERT INTO t2 SELECT a, a FROM t1").unwrap(), 3);
}

#[test]
fn unary_plus_is_the_identity_on_text() {
    // Was 42000 "Unary operator '+' only supports numeric … types".
    let mut c = conn();
    assert_eq!(
        one_row(&mut c, "SELECT +'abc', + + 3, -+2"),
        ["abc", "3", "-2"]
    );
}

#[test]
fn parentheses_nest_beyond_sqlparsers_default_limit_of_50() {
    // Was 54001 at 51 levels; the limit is now the statement depth cap.
    let mut c = conn();
    let sql = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    assert_eq!(one_row(&mut c, &sql), ["1"]);
    let err = c
        .query(&format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000)))
        .unwrap_err();
    assert_eq!(err.sqlstate(), "54001", "{err}");
}

#[test]
fn sqlite_dialect_divides_by_zero_into_null() {
    let mut c = conn();
    assert!(c.query("SELECT 1 / 0").is_err());
    c.execute("SET entidb.dialect = 'sqlite'").unwrap();
    assert_eq!(
        one_row(&mut c, "SELECT 1 / 0, 5 % 0, 7 / 2"),
        ["NULL", "NULL", "3"]
    );
    c.execute("RESET entidb.dialect").unwrap();
    assert!(c.query("SELECT 1 / 0").is_err());
    c.execute("SET entidb.dialect = 'sqlite'").unwrap();
    c.execute("CREATE TABLE f (x REAL, y FLOAT)").unwrap();
    c.execute("INSERT INTO f VALUES (0.1, 0.1)").unwrap();
    // 32-bit floats printed 0.10000000149011612 here.
    assert_eq!(
        one_row(&mut c, "SELECT x, y, CAST(1.1 AS REAL) FROM f"),
        ["0.1", "0.1", "1.1"]
    );
    let err = c.execute("SET entidb.dialect = 'oracle'").unwrap_err();
    assert_eq!(err.sqlstate(), "22023", "{err}");
}
