//! FOREIGN KEY constraints beyond the slt file: every write path checks
//! the child side, the constraint survives a reopen, and — the seam the
//! engine's KEY GUARDS close — a child insert and a concurrent delete of
//! its parent never both commit, in either commit order, with or without a
//! checkpoint in between.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::array::{Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use entidb::{BlockingConnection, Database, params};
use std::sync::Arc;

fn count(c: &mut BlockingConnection, sql: &str) -> i64 {
    c.query_row(sql, &[], |r| r.get(0)).unwrap()
}

fn orphans(c: &mut BlockingConnection) -> i64 {
    count(
        c,
        "SELECT count(*) FROM c WHERE pid IS NOT NULL AND pid NOT IN (SELECT id FROM p)",
    )
}

fn parent_and_child(db: &Database) -> BlockingConnection {
    let mut c = BlockingConnection::new(db).unwrap();
    c.execute(
        "CREATE TABLE p (id INT PRIMARY KEY, v INT); \
         CREATE TABLE c (id INT PRIMARY KEY, pid INT REFERENCES p); \
         INSERT INTO p VALUES (1, 0), (2, 0)",
    )
    .unwrap();
    c
}

#[test]
fn every_write_path_checks_and_the_constraint_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Database::open(&path).unwrap();
        parent_and_child(&db);
    }
    let db = Database::open(&path).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    let err = c.execute("INSERT INTO c VALUES (1, 9)").unwrap_err();
    assert_eq!(err.sqlstate(), "23503", "after reopen: {err}");

    // The prepared insert fast path.
    let insert = c.prepare("INSERT INTO c VALUES ($1, $2)").unwrap();
    c.execute_prepared(&insert, params![1, 1]).unwrap();
    let err = c.execute_prepared(&insert, params![2, 9]).unwrap_err();
    assert_eq!(err.sqlstate(), "23503", "{err}");

    // The Arrow append path.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("pid", DataType::Int32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![3, 4])),
            Arc::new(Int32Array::from(vec![Some(2), Some(7)])),
        ],
    )
    .unwrap();
    let err = c.append("c", &batch).unwrap_err();
    assert_eq!(err.sqlstate(), "23503", "{err}");

    // COPY FROM a file: one orphan line, nothing loaded.
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "id,pid\n5,1\n6,8\n").unwrap();
    let err = c
        .execute(&format!("COPY c FROM '{}' WITH (HEADER)", csv.display()))
        .unwrap_err();
    assert_eq!(err.sqlstate(), "23503", "{err}");

    // The parent side after a reopen and a checkpoint.
    c.execute("CHECKPOINT").unwrap();
    let err = c.execute("DELETE FROM p WHERE id = 1").unwrap_err();
    assert_eq!(err.sqlstate(), "23503", "{err}");
    assert_eq!(count(&mut c, "SELECT count(*) FROM c"), 1);
    assert_eq!(orphans(&mut c), 0);
}

/// T1 inserts a child of parent 1 and T2 deletes parent 1, on overlapping
/// snapshots. Neither sees the other's change, so each statement passes
/// its check; whichever commits second must fail with 40001.
fn race(child_commits_first: bool, checkpoint_between: bool) {
    let db = Database::open_in_memory().unwrap();
    let mut setup = parent_and_child(&db);
    let mut child = BlockingConnection::new(&db).unwrap();
    let mut parent = BlockingConnection::new(&db).unwrap();
    child.execute("BEGIN").unwrap();
    parent.execute("BEGIN").unwrap();
    // Both snapshots are taken before either writes.
    assert_eq!(count(&mut child, "SELECT count(*) FROM p"), 2);
    assert_eq!(count(&mut parent, "SELECT count(*) FROM c"), 0);
    child.execute("INSERT INTO c VALUES (10, 1)").unwrap();
    parent.execute("DELETE FROM p WHERE id = 1").unwrap();
    if checkpoint_between {
        setup.execute("CHECKPOINT").unwrap();
    }
    let (first, second) = if child_commits_first {
        (&mut child, &mut parent)
    } else {
        (&mut parent, &mut child)
    };
    first.execute("COMMIT").unwrap();
    let err = second
        .execute("COMMIT")
        .expect_err("a child and the delete of its parent both committed");
    assert_eq!(err.sqlstate(), "40001", "{err}");
    assert_eq!(orphans(&mut setup), 0);
}

#[test]
fn a_child_insert_and_a_concurrent_parent_delete_never_both_commit() {
    for child_first in [true, false] {
        for checkpoint in [false, true] {
            race(child_first, checkpoint);
        }
    }
}

/// A parent row updated (not deleted) by a concurrent commit still
/// satisfies a child that found it before.
#[test]
fn a_concurrent_non_key_update_of_the_parent_does_not_fail_the_child() {
    let db = Database::open_in_memory().unwrap();
    let _setup = parent_and_child(&db);
    let mut child = BlockingConnection::new(&db).unwrap();
    let mut other = BlockingConnection::new(&db).unwrap();
    child.execute("BEGIN").unwrap();
    child.execute("INSERT INTO c VALUES (10, 1)").unwrap();
    other
        .execute("UPDATE p SET v = v + 1 WHERE id = 1")
        .unwrap();
    child.execute("COMMIT").unwrap();
    assert_eq!(count(&mut other, "SELECT count(*) FROM c"), 1);
}

/// A cascade runs in the deleting transaction: a concurrent child insert
/// of the same parent conflicts, and a reader never sees a half-done
/// cascade.
#[test]
fn a_cascade_and_a_concurrent_child_insert_never_both_commit() {
    let db = Database::open_in_memory().unwrap();
    let mut setup = BlockingConnection::new(&db).unwrap();
    setup
        .execute(
            "CREATE TABLE p (id INT PRIMARY KEY, v INT); \
             CREATE TABLE c (id INT PRIMARY KEY, pid INT REFERENCES p ON DELETE CASCADE); \
             INSERT INTO p VALUES (1, 0); INSERT INTO c VALUES (1, 1), (2, 1)",
        )
        .unwrap();
    let mut deleter = BlockingConnection::new(&db).unwrap();
    let mut inserter = BlockingConnection::new(&db).unwrap();
    deleter.execute("BEGIN").unwrap();
    inserter.execute("BEGIN").unwrap();
    assert_eq!(count(&mut inserter, "SELECT count(*) FROM c"), 2);
    deleter.execute("DELETE FROM p WHERE id = 1").unwrap();
    assert_eq!(count(&mut deleter, "SELECT count(*) FROM c"), 0);
    inserter.execute("INSERT INTO c VALUES (3, 1)").unwrap();
    deleter.execute("COMMIT").unwrap();
    let err = inserter.execute("COMMIT").unwrap_err();
    assert_eq!(err.sqlstate(), "40001", "{err}");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM c"), 0);
}

/// A transaction whose snapshot predates a constraint does not know it:
/// its delete of a parent row that a child (inserted under the new
/// constraint) refers to must fail at commit, whether the constraint came
/// with CREATE TABLE, ALTER TABLE … ADD FOREIGN KEY or ADD COLUMN …
/// REFERENCES.
#[test]
fn a_parent_delete_on_a_snapshot_older_than_the_constraint_conflicts() {
    for (before, declare) in [
        (
            "",
            "CREATE TABLE c (id INT PRIMARY KEY, pid INT REFERENCES p)",
        ),
        (
            "CREATE TABLE c (id INT PRIMARY KEY, pid INT)",
            "ALTER TABLE c ADD FOREIGN KEY (pid) REFERENCES p",
        ),
        (
            "CREATE TABLE c (id INT PRIMARY KEY)",
            "ALTER TABLE c ADD COLUMN pid INT REFERENCES p",
        ),
    ] {
        let db = Database::open_in_memory().unwrap();
        let mut setup = BlockingConnection::new(&db).unwrap();
        setup
            .execute("CREATE TABLE p (id INT PRIMARY KEY, v INT); INSERT INTO p VALUES (1, 0)")
            .unwrap();
        if !before.is_empty() {
            setup.execute(before).unwrap();
        }
        let mut old = BlockingConnection::new(&db).unwrap();
        old.execute("BEGIN").unwrap();
        assert_eq!(count(&mut old, "SELECT count(*) FROM p"), 1);
        setup.execute(declare).unwrap();
        setup.execute("INSERT INTO c VALUES (1, 1)").unwrap();
        old.execute("DELETE FROM p WHERE id = 1").unwrap();
        let err = old
            .execute("COMMIT")
            .expect_err("a parent delete unaware of the constraint orphaned a child");
        assert_eq!(err.sqlstate(), "40001", "{declare}: {err}");
        assert_eq!(orphans(&mut setup), 0, "{declare}");
    }
}

/// Review finding: TRUNCATE and ALTER TABLE replace the child table by a
/// new engine table, so "no child row was written since my snapshot" must
/// count the replacement as a write, or a parent delete that checked the
/// old child table commits next to a new child.
#[test]
fn a_parent_delete_conflicts_with_a_replaced_child_table() {
    for replace in ["TRUNCATE c", "ALTER TABLE c ADD COLUMN note TEXT"] {
        let db = Database::open_in_memory().unwrap();
        let mut setup = parent_and_child(&db);
        let mut deleter = BlockingConnection::new(&db).unwrap();
        deleter.execute("BEGIN").unwrap();
        deleter.execute("DELETE FROM p WHERE id = 1").unwrap();
        setup
            .execute(&format!(
                "BEGIN; {replace}; INSERT INTO c (id, pid) VALUES (10, 1); COMMIT"
            ))
            .unwrap();
        let err = deleter
            .execute("COMMIT")
            .expect_err("the parent delete committed next to a new child");
        assert_eq!(err.sqlstate(), "40001", "{replace}: {err}");
        assert_eq!(orphans(&mut setup), 0, "{replace}");
    }
}

/// Review finding: ALTER TABLE's rewrite copies its snapshot's rows, so a
/// concurrent commit to the table (a child deleted with its parent, a new
/// parent with its child) must fail the ALTER, or the copy brings the
/// deleted child back / loses the new parent. An ADD COLUMN that only
/// appends copies nothing: both commit, and no orphan appears either way.
#[test]
fn an_alter_rewrite_conflicts_with_a_concurrent_write_of_the_table() {
    for (altered, concurrent) in [
        (
            "c",
            "DELETE FROM c WHERE pid = 1; DELETE FROM p WHERE id = 1",
        ),
        (
            "p",
            "INSERT INTO p VALUES (3, 0); INSERT INTO c VALUES (20, 3)",
        ),
    ] {
        for (alter_sql, rewrites) in [
            ("ADD COLUMN x INT, DROP COLUMN x", true),
            ("ADD COLUMN x INT", false),
        ] {
            let db = Database::open_in_memory().unwrap();
            let mut setup = parent_and_child(&db);
            setup.execute("INSERT INTO c VALUES (10, 1)").unwrap();
            let mut alter = BlockingConnection::new(&db).unwrap();
            alter.execute("BEGIN").unwrap();
            assert_eq!(count(&mut alter, "SELECT count(*) FROM c"), 1);
            setup.execute(concurrent).unwrap();
            let altered_result = alter
                .execute(&format!("ALTER TABLE {altered} {alter_sql}"))
                .and_then(|_| alter.execute("COMMIT"));
            if rewrites {
                let err =
                    altered_result.expect_err("the rewrite committed over a concurrent write");
                assert_eq!(err.sqlstate(), "40001", "{altered}: {err}");
            } else {
                altered_result.unwrap();
            }
            assert_eq!(orphans(&mut setup), 0, "{altered} {alter_sql}");
        }
    }
}

/// Review finding: a parent row updated (not its key) after the child's
/// snapshot does not fail the child's check.
#[test]
fn a_child_check_after_a_concurrent_non_key_update_of_the_parent_passes() {
    let db = Database::open_in_memory().unwrap();
    let mut setup = parent_and_child(&db);
    setup.execute("INSERT INTO c VALUES (10, 1)").unwrap();
    let mut child = BlockingConnection::new(&db).unwrap();
    child.execute("BEGIN").unwrap();
    assert_eq!(count(&mut child, "SELECT count(*) FROM c"), 1);
    setup
        .execute("UPDATE p SET v = v + 1 WHERE id = 1")
        .unwrap();
    child.execute("UPDATE c SET pid = 1 WHERE id = 10").unwrap();
    child.execute("INSERT INTO c VALUES (11, 1)").unwrap();
    child.execute("COMMIT").unwrap();
    assert_eq!(count(&mut setup, "SELECT count(*) FROM c"), 2);
}

/// Review findings: a self-referencing chain deeper than any fixed
/// recursion limit cascades to its end, and a statement whose rows come
/// children first (each row refers to the next; INSERT … SELECT streams
/// them in several batches) is checked at its end, as in PostgreSQL.
#[test]
fn long_chains_cascade_and_statements_are_checked_at_their_end() {
    let db = Database::open_in_memory().unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, next BIGINT REFERENCES t ON DELETE CASCADE)")
        .unwrap();
    c.execute(
        "INSERT INTO t SELECT value, CASE WHEN value = 20000 THEN NULL ELSE value + 1 END \
         FROM generate_series(1, 20000)",
    )
    .unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM t"), 20000);
    let err = c.execute("INSERT INTO t VALUES (0, 99999)").unwrap_err();
    assert_eq!(err.sqlstate(), "23503", "{err}");

    // 300 levels of ON DELETE CASCADE (each level is one round, which
    // scans the child table: no index on the referencing column is used).
    c.execute(
        "CREATE TABLE chain (id BIGINT PRIMARY KEY, up BIGINT REFERENCES chain ON DELETE CASCADE)",
    )
    .unwrap();
    c.execute(
        "INSERT INTO chain SELECT value, CASE WHEN value = 1 THEN NULL ELSE value - 1 END \
         FROM generate_series(1, 300)",
    )
    .unwrap();
    c.execute("DELETE FROM chain WHERE id = 1").unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM chain"), 0);
}
