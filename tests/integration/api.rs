//! The Rust API: typed rows, parameters in every spelling, transaction
//! guards, retry on conflict, shared opens, blocking use inside a tokio
//! runtime, empty results with their schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use entidb::{BlockingConnection, Database, OpenOptions, Secret, params};

fn conn() -> BlockingConnection {
    BlockingConnection::new(&Database::open_in_memory().unwrap()).unwrap()
}

#[test]
fn placeholders_question_numbered_and_dollar_agree() {
    let mut c = conn();
    c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT)")
        .unwrap();
    c.execute_with(
        "INSERT INTO t VALUES (?, ?), (?, ?)",
        params![1, "a", 2, "b"],
    )
    .unwrap();
    c.execute_with("INSERT INTO t VALUES (?2, ?1)", params!["c", 3])
        .unwrap();
    // `?` used to pass prepare and fail at execution.
    let p = c.prepare("SELECT s FROM t WHERE id = ?").unwrap();
    let rows = c.query_prepared(&p, params![3]).unwrap();
    assert_eq!(rows[0].num_rows(), 1);
    let s: String = c
        .query_row(
            "SELECT s FROM t WHERE id = $1 AND s <> ?2",
            params![2, "x"],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(s, "b");
}

#[test]
fn named_placeholders_are_refused_at_prepare() {
    let c = conn();
    for sql in ["SELECT :name", "SELECT $name"] {
        let e = c.prepare(sql).unwrap_err();
        assert_eq!(e.sqlstate(), "42601", "{sql}: {e}");
    }
}

#[test]
fn an_empty_result_keeps_its_schema() {
    let mut c = conn();
    c.execute("CREATE TABLE t (id BIGINT, name TEXT)").unwrap();
    let batches = c.query("SELECT id, name FROM t").unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].num_rows(), 0);
    assert_eq!(batches[0].schema().field(1).name(), "name");
    let p = c.prepare("SELECT name FROM t WHERE id = $1").unwrap();
    let batches = c.query_prepared(&p, params![1]).unwrap();
    assert_eq!(batches[0].schema().field(0).name(), "name");
    let rows = c.query_rows("SELECT * FROM t", &[]).unwrap();
    assert!(rows.is_empty());
    assert_eq!(rows.schema().fields().len(), 2);
}

#[test]
fn typed_rows() {
    let mut c = conn();
    let row = c
        .query_one(
            "SELECT CAST(1 AS SMALLINT) AS a, 2.5 AS b, 'x' AS c, true AS d, NULL AS e, X'0102' AS f",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<i64>("a").unwrap(), 1);
    assert_eq!(row.get::<u8>(0).unwrap(), 1);
    assert_eq!(row.get::<f64>("b").unwrap(), 2.5);
    assert_eq!(row.get::<String>("C").unwrap(), "x");
    assert!(row.get::<bool>("d").unwrap());
    assert_eq!(row.get::<Option<i64>>("e").unwrap(), None);
    assert_eq!(row.get::<Vec<u8>>("f").unwrap(), vec![1, 2]);
    assert_eq!(row.get::<i64>("e").unwrap_err().sqlstate(), "42804");
    assert_eq!(row.get::<i64>(99).unwrap_err().sqlstate(), "42703");
    let e = c.query_one("SELECT 1 WHERE false", &[]).unwrap_err();
    assert_eq!(e.sqlstate(), "P0002");
}

#[test]
fn a_dropped_transaction_rolls_back_and_commit_commits() {
    let mut c = conn();
    c.execute("CREATE TABLE t (x INT)").unwrap();
    {
        let mut tx = c.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (1)").unwrap();
    }
    assert!(!c.in_transaction());
    let tx = c.transaction().unwrap();
    assert!(tx.in_transaction());
    drop(tx);
    let mut tx = c.transaction().unwrap();
    tx.execute("INSERT INTO t VALUES (2)").unwrap();
    tx.commit().unwrap();
    let n: i64 = c
        .query_row("SELECT sum(x) FROM t", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn retry_on_conflict_reruns_a_conflicting_transaction() {
    let db = Database::open_in_memory().unwrap();
    let mut a = BlockingConnection::new(&db).unwrap();
    let mut b = BlockingConnection::new(&db).unwrap();
    a.execute("CREATE TABLE c (id INT PRIMARY KEY, n BIGINT); INSERT INTO c VALUES (1, 0)")
        .unwrap();
    let mut attempts = 0;
    let n: i64 = a
        .retry_on_conflict(|tx| {
            attempts += 1;
            let n: i64 = tx.query_row("SELECT n FROM c WHERE id = 1", &[], |r| r.get(0))?;
            if attempts == 1 {
                // Another connection changes the row first: this commit
                // must fail with 40001 and the closure run again.
                b.execute("UPDATE c SET n = n + 100 WHERE id = 1")?;
            }
            tx.execute_with("UPDATE c SET n = $1 WHERE id = 1", params![n + 1])?;
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(n, 101);
    let e = {
        let mut tx = a.transaction().unwrap();
        tx.execute("UPDATE c SET n = 0 WHERE id = 1").unwrap();
        b.execute("UPDATE c SET n = 5 WHERE id = 1").unwrap();
        tx.commit().unwrap_err()
    };
    assert_eq!(e.sqlstate(), "40001");
    assert!(e.is_retryable());
}

#[test]
fn blocking_connection_works_inside_a_tokio_runtime() {
    // It used to panic: "Cannot start a runtime from within a runtime".
    for flavor in ["current_thread", "multi_thread"] {
        let rt = match flavor {
            "current_thread" => tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            _ => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
        };
        let n = rt.block_on(async {
            let mut c = conn();
            c.execute("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)")
                .unwrap();
            c.query_row("SELECT count(*) FROM t", &[], |r| r.get::<i64>(0))
                .unwrap()
        });
        assert_eq!(n, 2, "{flavor}");
    }
}

#[test]
fn a_second_open_of_the_same_path_shares_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let first = Database::open(&path).unwrap();
    // Used to fail: "locked by another process".
    let second = Database::open(dir.path().join(".").join("db")).unwrap();
    BlockingConnection::new(&first)
        .unwrap()
        .execute("CREATE TABLE t (x INT)")
        .unwrap();
    let mut c = BlockingConnection::new(&second).unwrap();
    c.execute("INSERT INTO t VALUES (7)").unwrap();
    drop(first);
    drop(second);
    // The connection keeps the database open.
    assert_eq!(
        c.query_row("SELECT x FROM t", &[], |r| r.get::<i64>(0))
            .unwrap(),
        7
    );
    drop(c);
    // Closed now: a fresh open sees the data.
    let again = Database::open(&path).unwrap();
    let mut c = BlockingConnection::new(&again).unwrap();
    assert_eq!(
        c.query_row("SELECT x FROM t", &[], |r| r.get::<i64>(0))
            .unwrap(),
        7
    );
}

#[test]
fn a_second_open_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let with = |s: &str| OpenOptions {
        encryption: Some(Secret::Passphrase(s.into())),
        ..OpenOptions::default()
    };
    let _db = Database::open_with(&path, with("one")).unwrap();
    let e = Database::open_with(&path, with("two")).unwrap_err();
    assert_eq!(e.sqlstate(), "22023", "{e}");
    let e = Database::open(&path).unwrap_err();
    assert_eq!(e.sqlstate(), "22023", "{e}");
    assert!(Database::open_with(&path, with("one")).is_ok());
}

#[test]
fn udfs_register_per_connection() {
    use entidb::arrow::datatypes::DataType;
    use entidb::datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    let mut c = conn();
    let one = create_udf(
        "forty_two",
        vec![],
        DataType::Int64,
        Volatility::Immutable,
        std::sync::Arc::new(|_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(
                entidb::datafusion::scalar::ScalarValue::Int64(Some(42)),
            ))
        }),
    );
    c.register_udf(one);
    c.execute("CREATE TABLE t (x INT)").unwrap(); // a catalog change keeps it
    assert_eq!(
        c.query_row("SELECT forty_two()", &[], |r| r.get::<i64>(0))
            .unwrap(),
        42
    );
}

/// `query_stream` in autocommit: the stream is read after the statement's
/// transaction ended. It used to fail with "transaction is no longer
/// active" (25000) on the first table read; now every scan is opened
/// before the transaction ends and reads the statement's snapshot, however
/// late it is polled.
#[test]
fn a_stream_outlives_its_autocommit_transaction() {
    use futures::StreamExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = Database::open_in_memory().unwrap();
        let mut conn = db.connect();
        conn.execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); \
             INSERT INTO t SELECT value, 'x' FROM generate_series(1, 5000)",
        )
        .await
        .unwrap();
        let mut stream = conn
            .query_stream("SELECT t.id FROM t JOIN t AS u ON t.id = u.id WHERE t.id % 2 = 0")
            .await
            .unwrap();
        // A later statement on the same connection commits more rows: the
        // stream still reads the snapshot of its own statement.
        conn.execute("INSERT INTO t SELECT value, 'y' FROM generate_series(5001, 6000)")
            .await
            .unwrap();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            rows += batch.unwrap().num_rows();
        }
        assert_eq!(rows, 2500);
    });
}

/// `Database::open` refuses to turn a file or a foreign directory into a
/// database (it used to write LOCK, WAL and MANIFEST into any directory;
/// only the shell refused).
#[test]
fn open_refuses_files_and_foreign_directories() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert_eq!(err.sqlstate(), "22023", "{err}");
    assert!(err.to_string().contains("not an EntiDB database"), "{err}");
    let err = Database::open(dir.path().join("notes.txt")).unwrap_err();
    assert!(err.to_string().contains("is a file"), "{err}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"], "nothing was written");
}

/// The seam of the test above with a checkpoint: the rows a bound stream
/// reads are deleted and the table's segments rewritten (and the old files
/// removed) by another connection's CHECKPOINT before the stream is
/// polled. The stream still reads its statement's snapshot.
#[test]
fn a_bound_stream_survives_a_checkpoint_that_rewrites_its_segments() {
    use futures::StreamExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("db")).unwrap();
        let mut conn = db.connect();
        conn.execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); \
             INSERT INTO t SELECT value, 'x' FROM generate_series(1, 20000); CHECKPOINT",
        )
        .await
        .unwrap();
        let mut stream = conn.query_stream("SELECT id FROM t").await.unwrap();
        let mut other = db.connect();
        other
            .execute("DELETE FROM t WHERE id > 10; CHECKPOINT")
            .await
            .unwrap();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            rows += batch.unwrap().num_rows();
        }
        assert_eq!(rows, 20000);
        let left: i64 = other
            .query_row("SELECT count(*) FROM t", &[], |r| r.get(0))
            .await
            .unwrap();
        assert_eq!(left, 10);
    });
}

/// The FROM-list checks (`sql/src/exposed_names.rs`) guard the streaming
/// path too, which the shell uses for every SELECT, and COPY's query: both
/// used to skip them and read main's `t` for `s.t.id`.
#[test]
fn streams_and_copy_check_qualifiers_like_queries() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = Database::open_in_memory().unwrap();
        let mut conn = db.connect();
        conn.execute(
            "CREATE SCHEMA s; CREATE TABLE t (id INT, v INT); CREATE TABLE s.t (id INT, v INT); \
             INSERT INTO t VALUES (1, 10); INSERT INTO s.t VALUES (1, 100)",
        )
        .await
        .unwrap();
        for sql in [
            "SELECT s.t.v FROM t",
            "SELECT u.v FROM t AS u, (SELECT 1 AS v) AS u",
        ] {
            let err = conn.query_stream(sql).await.err().unwrap();
            assert!(["42P01", "42712"].contains(&err.sqlstate()), "{sql}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.csv");
        let copy = format!(
            "COPY (SELECT s.t.v FROM t) TO '{}' STORED AS CSV",
            file.display()
        );
        let err = conn.execute(&copy).await.unwrap_err();
        assert_eq!(err.sqlstate(), "42P01", "{err}");
        assert!(!file.exists(), "nothing was written");
    });
}

/// A prepared point query is answered by the index fast path, which plans
/// without `dispatch`: the qualifier check runs at prepare. It used to
/// answer `SELECT s.t.v FROM t WHERE id = $1` from main's `t`.
#[test]
fn prepare_checks_qualifiers() {
    let db = Database::open_in_memory().unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute(
        "CREATE SCHEMA s; CREATE TABLE t (id INT PRIMARY KEY, v TEXT); \
         CREATE TABLE s.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO t VALUES (1, 'main'); INSERT INTO s.t VALUES (1, 's')",
    )
    .unwrap();
    let err = c
        .prepare("SELECT s.t.v FROM t WHERE id = $1")
        .err()
        .unwrap();
    assert_eq!(err.sqlstate(), "42P01", "{err}");
    let p = c.prepare("SELECT s.t.v FROM s.t WHERE id = $1").unwrap();
    let batches = c.query_prepared(&p, params![1]).unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("| s "), "{text}");
}
