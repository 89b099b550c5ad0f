//! Files in and out through SQL: `COPY … FROM` / `COPY … TO` round trips for
//! CSV, Parquet and JSON, file tables (`SELECT * FROM 'f.parquet'`,
//! `read_csv`), external tables, loads that fail as a whole with the line
//! and column of the bad row, and the file-access policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::util::pretty::pretty_format_batches;
use entidb::{BlockingConnection, Database, OpenOptions};
use std::path::Path;

fn conn() -> BlockingConnection {
    BlockingConnection::new(&Database::open_in_memory().unwrap()).unwrap()
}

fn text(c: &mut BlockingConnection, sql: &str) -> String {
    pretty_format_batches(&c.query(sql).unwrap())
        .unwrap()
        .to_string()
}

fn count(c: &mut BlockingConnection, table: &str) -> i64 {
    let b = c.query(&format!("SELECT count(*) FROM {table}")).unwrap();
    b[0].column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

const TABLE: &str =
    "(id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE, ok BOOLEAN, born DATE, n INT)";

fn source(c: &mut BlockingConnection) {
    c.execute(&format!("CREATE TABLE src {TABLE}")).unwrap();
    c.execute(
        "INSERT INTO src VALUES
           (1, 'one', 1.5, true, '2024-01-31', 10),
           (2, 'two, with comma', NULL, false, NULL, NULL),
           (3, 'quote \"q\" and ''s''', -0.25, NULL, '1999-12-31', -7)",
    )
    .unwrap();
    // More than one batch of the reader.
    c.execute(
        "INSERT INTO src SELECT value + 10, 'row ' || value, value * 0.5, value % 2 = 0, NULL, value
         FROM generate_series(1, 20000)",
    )
    .unwrap();
}

fn round_trip(ext: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("out.{ext}"));
    let file = file.to_str().unwrap();
    let mut c = conn();
    source(&mut c);
    let written = c.execute(&format!("COPY src TO '{file}'")).unwrap();
    assert_eq!(written, 20003);
    c.execute(&format!("CREATE TABLE dst {TABLE}")).unwrap();
    let loaded = c.execute(&format!("COPY dst FROM '{file}'")).unwrap();
    assert_eq!(loaded, 20003);
    let a = text(&mut c, "SELECT * FROM src ORDER BY id");
    let b = text(&mut c, "SELECT * FROM dst ORDER BY id");
    assert_eq!(a, b, "{ext} round trip differs");
    // The same file read by a query, and loaded with INSERT … SELECT (by
    // name: a JSON file's inferred columns come in order of appearance).
    c.execute(&format!("CREATE TABLE dst2 {TABLE}")).unwrap();
    c.execute(&format!(
        "INSERT INTO dst2 SELECT id, name, score, ok, born, n FROM '{file}'"
    ))
    .unwrap();
    assert_eq!(text(&mut c, "SELECT * FROM dst2 ORDER BY id"), a);
}

#[test]
fn copy_round_trip_csv() {
    round_trip("csv");
}

#[test]
fn copy_round_trip_parquet() {
    round_trip("parquet");
}

#[test]
fn copy_round_trip_json() {
    round_trip("json");
}

#[test]
fn copy_query_to_file_with_postgres_options() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("semi.txt");
    let file = file.to_str().unwrap();
    let mut c = conn();
    source(&mut c);
    let n = c
        .execute(&format!(
            "COPY (SELECT id, name FROM src WHERE id < 4 ORDER BY id) TO '{file}' WITH (FORMAT csv, HEADER false, DELIMITER ';')"
        ))
        .unwrap();
    assert_eq!(n, 3);
    let body = std::fs::read_to_string(file).unwrap();
    assert_eq!(body.lines().next(), Some("1;one"), "{body}");
    c.execute("CREATE TABLE two (id BIGINT, name TEXT)")
        .unwrap();
    c.execute(&format!(
        "COPY two FROM '{file}' WITH (FORMAT csv, HEADER false, DELIMITER ';')"
    ))
    .unwrap();
    assert_eq!(
        text(&mut c, "SELECT * FROM two ORDER BY id"),
        text(&mut c, "SELECT id, name FROM src WHERE id < 4 ORDER BY id")
    );
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn malformed_csv_row_loads_nothing_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("id,n\n");
    for i in 1..=9000 {
        body.push_str(&format!("{i},{i}\n"));
    }
    // Line 9002 (the header is line 1): in the second batch of the reader.
    body.push_str("9001,abc\n9002,2\n");
    let file = write(dir.path(), "bad.csv", &body);
    let mut c = conn();
    c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, n INT)")
        .unwrap();
    let e = c.execute(&format!("COPY t FROM '{file}'")).unwrap_err();
    assert_eq!(e.sqlstate(), "22P02", "{e}");
    let context = e.context().unwrap_or_default();
    assert!(context.contains("line 9002"), "{e}");
    assert!(context.contains("column n"), "{e}");
    assert!(context.contains("bad.csv"), "{e}");
    assert!(e.to_string().contains("abc"), "{e}");
    assert_eq!(count(&mut c, "t"), 0, "nothing is loaded");
}

#[test]
fn csv_with_a_wrong_field_count_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "short.csv", "id,n\n1,1\n2\n3,3\n");
    let mut c = conn();
    c.execute("CREATE TABLE t (id BIGINT, n INT)").unwrap();
    let e = c.execute(&format!("COPY t FROM '{file}'")).unwrap_err();
    assert_eq!(e.sqlstate(), "22P04", "{e}");
    assert!(e.context().unwrap_or_default().contains("line 3"), "{e}");
    assert_eq!(count(&mut c, "t"), 0);
}

#[test]
fn copy_respects_constraints_and_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let dup = write(dir.path(), "dup.csv", "id,name\n1,a\n2,b\n1,c\n");
    let null = write(dir.path(), "null.csv", "id,name\n1,a\n2,\n");
    let mut c = conn();
    c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .unwrap();
    let e = c.execute(&format!("COPY t FROM '{dup}'")).unwrap_err();
    assert_eq!(e.sqlstate(), "23505", "{e}");
    assert_eq!(count(&mut c, "t"), 0);
    let e = c.execute(&format!("COPY t FROM '{null}'")).unwrap_err();
    assert_eq!(e.sqlstate(), "23502", "{e}");
    assert!(e.context().unwrap_or_default().contains("line 3"), "{e}");
    assert_eq!(count(&mut c, "t"), 0);
    // Inside a transaction the failed COPY has no effect; the rest stays.
    c.execute("BEGIN; INSERT INTO t VALUES (10, 'x')").unwrap();
    assert!(c.execute(&format!("COPY t FROM '{dup}'")).is_err());
    c.execute("COMMIT").unwrap();
    assert_eq!(count(&mut c, "t"), 1);
}

#[test]
fn copy_a_column_list_fills_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "two.csv", "b;a\nx;1\ny;2\n");
    let mut c = conn();
    c.execute("CREATE TABLE t (a INT, b TEXT, c TEXT DEFAULT 'dflt')")
        .unwrap();
    c.execute(&format!("COPY t (b, a) FROM '{file}' WITH (DELIMITER ';')"))
        .unwrap();
    assert_eq!(
        text(&mut c, "SELECT a, b, c FROM t ORDER BY a"),
        "+---+---+------+\n| a | b | c    |\n+---+---+------+\n| 1 | x | dflt |\n| 2 | y | dflt |\n+---+---+------+"
    );
}

#[test]
fn read_functions_and_external_tables() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "data.txt", "k|v\n1|a\n2|b\n");
    let json = write(
        dir.path(),
        "rows.jsonl",
        "{\"k\": 1, \"v\": \"a\"}\n{\"k\": 2}\n",
    );
    let mut c = conn();
    assert_eq!(
        text(
            &mut c,
            &format!("SELECT * FROM read_csv('{file}', true, '|') ORDER BY k")
        ),
        "+---+---+\n| k | v |\n+---+---+\n| 1 | a |\n| 2 | b |\n+---+---+"
    );
    assert_eq!(
        text(
            &mut c,
            &format!("SELECT k, v FROM read_json('{json}') ORDER BY k")
        ),
        "+---+---+\n| k | v |\n+---+---+\n| 1 | a |\n| 2 |   |\n+---+---+"
    );
    let csv = write(dir.path(), "ext.csv", "k,v\n1,a\n");
    c.execute(&format!(
        "CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true')"
    ))
    .unwrap();
    assert_eq!(count(&mut c, "ext"), 1);
    let e = c.query("SELECT * FROM read_csv(1)").unwrap_err();
    assert_eq!(e.sqlstate(), "22023", "{e}");
}

#[test]
fn file_access_off_refuses_every_file_read_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "f.csv", "a\n1\n");
    let db = Database::open_with(
        dir.path().join("db"),
        OpenOptions {
            external_access: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute("CREATE TABLE t (a INT)").unwrap();
    for sql in [
        format!("COPY t FROM '{file}'"),
        format!("SELECT * FROM '{file}'"),
        format!("SELECT * FROM read_csv('{file}')"),
        format!("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{file}'"),
        format!("CREATE VIEW v AS SELECT * FROM '{file}'"),
        format!("COPY t TO '{}'", dir.path().join("out.csv").display()),
    ] {
        let e = c.execute(&sql).unwrap_err();
        assert_eq!(e.sqlstate(), "42501", "{sql}: {e}");
    }
}

#[test]
fn files_inside_an_open_database_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let inside = write(&dir.path().join("db"), "planted.csv", "a\n1\n");
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute("CREATE TABLE t (a INT)").unwrap();
    let e = c.execute(&format!("COPY t FROM '{inside}'")).unwrap_err();
    assert_eq!(e.sqlstate(), "42501", "{e}");
    let e = c.query(&format!("SELECT * FROM '{inside}'")).unwrap_err();
    assert_eq!(e.sqlstate(), "42501", "{e}");
}

#[test]
fn copy_errors_are_typed() {
    let mut c = conn();
    c.execute("CREATE TABLE t (a INT)").unwrap();
    for (sql, state) in [
        ("COPY t FROM '/nonexistent/x.csv'", "58030"),
        ("COPY t FROM '/tmp/x.unknown'", "22023"),
        ("COPY nosuch FROM '/tmp/x.csv'", "42P01"),
        ("COPY t FROM STDIN", "0A000"),
        ("COPY t (zz) FROM '/tmp/x.csv'", "42703"),
        ("COPY t FROM '/tmp/x.csv' WITH (FREEZE)", "0A000"),
    ] {
        let e = c.execute(sql).unwrap_err();
        assert_eq!(e.sqlstate(), state, "{sql}: {e}");
    }
}

/// An external table's name is taken: a stored table or view of that name
/// is refused (it used to be created, and then every later statement of the
/// connection failed with "The table … already exists"); DROP TABLE drops
/// the external table; a stored table another connection creates under the
/// name replaces it in this connection instead of breaking it.
#[test]
fn external_tables_and_stored_tables_share_one_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "ext.csv", "k,v\n1,a\n");
    let db = Database::open(dir.path().join("db")).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    let create = format!(
        "CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true')"
    );
    c.execute(&create).unwrap();
    for sql in ["CREATE TABLE ext (a INT)", "CREATE VIEW ext AS SELECT 1"] {
        let e = c.execute(sql).unwrap_err();
        assert_eq!(e.sqlstate(), "42P07", "{sql}: {e}");
    }
    assert_eq!(count(&mut c, "ext"), 1);
    c.execute("DROP TABLE ext").unwrap();
    let e = c.query("SELECT * FROM ext").unwrap_err();
    assert_eq!(e.sqlstate(), "42P01", "{e}");
    c.execute("CREATE TABLE ext (a INT)").unwrap();
    assert_eq!(count(&mut c, "ext"), 0);
    c.execute("DROP TABLE ext").unwrap();

    c.execute(&create).unwrap();
    let mut other = BlockingConnection::new(&db).unwrap();
    other.execute("CREATE TABLE ext (a INT)").unwrap();
    other.execute("INSERT INTO ext VALUES (1), (2)").unwrap();
    assert_eq!(count(&mut c, "ext"), 2);
    assert_eq!(count(&mut c, "ext"), 2);
}

/// A view over an external table keeps DROP TABLE from dropping the table
/// (2BP01; the view used to keep reading the file after the drop), CASCADE
/// drops the view too; a stored table cannot be renamed onto an external
/// table's name (42P07; the rename used to succeed and hide the file).
#[test]
fn external_tables_drop_with_their_views_and_keep_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "ext.csv", "k,v\n1,a\n");
    let db = Database::open(dir.path().join("db")).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute(&format!(
        "CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true')"
    ))
    .unwrap();
    c.execute("CREATE TABLE t (a INT)").unwrap();
    let e = c.execute("ALTER TABLE t RENAME TO ext").unwrap_err();
    assert_eq!(e.sqlstate(), "42P07", "{e}");
    assert_eq!(count(&mut c, "t"), 0);
    c.execute("CREATE VIEW ev AS SELECT * FROM ext").unwrap();
    let e = c.execute("DROP TABLE ext").unwrap_err();
    assert_eq!(e.sqlstate(), "2BP01", "{e}");
    assert_eq!(count(&mut c, "ev"), 1);
    c.execute("DROP TABLE ext CASCADE").unwrap();
    for relation in ["ext", "ev"] {
        let e = c.query(&format!("SELECT * FROM {relation}")).unwrap_err();
        assert_eq!(e.sqlstate(), "42P01", "{relation}: {e}");
    }
}
