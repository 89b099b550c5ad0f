//! Typed errors with SQLSTATE through the facade, the DataFusion 55 traps,
//! parameters, streaming and persistence after a simulated power loss.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::Int64Type;
use datafusion::scalar::ScalarValue;
use entidb::engine::storage::{PowerLoss, SimDisk};
use entidb::engine::{Engine, EngineOptions};
use entidb::{BlockingConnection, Database, ErrorKind};
use futures::StreamExt;
use std::sync::Arc;

fn ints(c: &mut BlockingConnection, sql: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for b in c.query(sql).unwrap() {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).unwrap();
        out.extend(
            col.as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.unwrap_or(i64::MIN)),
        );
    }
    out
}

fn seeded() -> (Database, BlockingConnection) {
    let db = Database::open_in_memory().unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, g INT)")
        .unwrap();
    c.execute("INSERT INTO t VALUES (1, 1), (2, 1), (3, 2), (4, 2), (5, 3)")
        .unwrap();
    (db, c)
}

/// Upstream DataFusion #24654: subquery predicates reach `delete_from` with
/// an empty filter list. EntiDB must delete only the matching rows.
#[test]
fn delete_with_in_subquery_deletes_only_matches() {
    let (_db, mut c) = seeded();
    let n = c
        .execute("DELETE FROM t WHERE id IN (SELECT id FROM t WHERE g = 2)")
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(ints(&mut c, "SELECT id FROM t ORDER BY id"), vec![1, 2, 5]);
    let n = c
        .execute("DELETE FROM t WHERE EXISTS (SELECT 1 FROM t AS o WHERE o.g = 3 AND o.id = t.id)")
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(ints(&mut c, "SELECT id FROM t ORDER BY id"), vec![1, 2]);
    // A subquery matching nothing deletes nothing.
    assert_eq!(
        c.execute("DELETE FROM t WHERE id IN (SELECT id FROM t WHERE g = 99)")
            .unwrap(),
        0
    );
    assert_eq!(ints(&mut c, "SELECT count(*) FROM t"), vec![2]);
}

#[test]
fn update_with_scalar_subqueries() {
    let (_db, mut c) = seeded();
    let n = c
        .execute("UPDATE t SET g = (SELECT max(g) FROM t) * 10 WHERE id = (SELECT min(id) FROM t)")
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(ints(&mut c, "SELECT g FROM t WHERE id = 1"), vec![30]);
}

/// Upstream DataFusion #24656: EXPLAIN DELETE/UPDATE builds the physical plan.
#[test]
fn explain_delete_and_update_change_nothing() {
    let (_db, mut c) = seeded();
    let plan = c.query("EXPLAIN DELETE FROM t WHERE g = 1").unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(text.contains("EntiScan"), "{text}");
    c.query("EXPLAIN UPDATE t SET g = 0").unwrap();
    assert_eq!(ints(&mut c, "SELECT count(*) FROM t WHERE g <> 0"), vec![5]);
}

#[test]
fn text_and_integer_types_are_stored_as_declared() {
    let (_db, mut c) = seeded();
    c.execute("CREATE TABLE s (a INTEGER, b TEXT)").unwrap();
    c.execute("INSERT INTO s VALUES (1, 'x')").unwrap();
    let batches = c.query("SELECT a, b FROM s").unwrap();
    let schema = batches[0].schema();
    assert_eq!(
        schema.field(0).data_type(),
        &arrow::datatypes::DataType::Int32
    );
    assert_eq!(
        schema.field(1).data_type(),
        &arrow::datatypes::DataType::Utf8
    );
}

#[test]
fn errors_have_sqlstates() {
    let (db, mut c) = seeded();
    let cases = [
        ("INSERT INTO t VALUES (1, 1)", "23505"),
        ("INSERT INTO t VALUES (NULL, 1)", "23502"),
        ("SELECT * FROM missing", "42P01"),
        ("CREATE TABLE t (x INT)", "42P07"),
        ("SELEC 1", "42601"),
        ("COMMIT", "25000"),
    ];
    for (sql, state) in cases {
        let err = c.execute(sql).unwrap_err();
        assert_eq!(err.sqlstate(), state, "{sql}: {err}");
        assert!(err.to_string().contains("in statement"), "{err}");
    }
    // 40001 through SQL, from two connections.
    let mut d = BlockingConnection::new(&db).unwrap();
    c.execute("BEGIN; UPDATE t SET g = 7 WHERE id = 1").unwrap();
    d.execute("UPDATE t SET g = 8 WHERE id = 1").unwrap();
    let err = c.execute("COMMIT").unwrap_err();
    assert_eq!(err.sqlstate(), "40001");
    assert!(matches!(
        err.kind(),
        ErrorKind::Engine(entidb::engine::Error::Conflict { .. })
    ));
}

#[test]
fn locked_database_is_55006() {
    // `Database::open` shares a database already open in this process, so
    // the lock is held by the engine directly, as another process would.
    let dir = tempfile::tempdir().unwrap();
    let _engine =
        entidb_engine::Engine::open_dir(dir.path(), entidb_engine::EngineOptions::default())
            .unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert_eq!(err.sqlstate(), "55006", "{err}");
}

#[test]
fn corrupt_manifest_is_xx001() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("CREATE TABLE t (a INT); INSERT INTO t VALUES (1); CHECKPOINT")
            .unwrap();
    }
    let path = dir.path().join("MANIFEST");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert_eq!(err.sqlstate(), "XX001", "{err}");
}

#[test]
fn parameters_bind_by_position() {
    let (_db, mut c) = seeded();
    let params = [ScalarValue::Int64(Some(2))];
    let b = c
        .query_with("SELECT id FROM t WHERE g = $1 ORDER BY id", &params)
        .unwrap();
    let ids: Vec<i64> = b
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, vec![3, 4]);
    let n = c
        .execute_with(
            "INSERT INTO t VALUES ($1, $2)",
            &[ScalarValue::Int64(Some(9)), ScalarValue::Int32(Some(9))],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn query_stream_streams_batches() {
    let db = Database::open_in_memory().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = db.connect();
        c.execute("CREATE TABLE big (a BIGINT)").await.unwrap();
        // Ten commits: ten chunks, streamed piece by piece.
        for chunk in 0..10 {
            let mut t = db.engine().begin();
            let def = t.table("big").unwrap();
            let values = Int64Array::from_iter_values(chunk * 10_000..(chunk + 1) * 10_000);
            let batch =
                arrow::array::RecordBatch::try_new(def.schema.clone(), vec![Arc::new(values)])
                    .unwrap();
            t.insert(def.id, &batch).unwrap();
            t.commit().unwrap();
        }
        let mut stream = c.query_stream("SELECT a FROM big").await.unwrap();
        let (mut rows, mut batches) = (0, 0);
        while let Some(b) = stream.next().await {
            rows += b.unwrap().num_rows();
            batches += 1;
        }
        assert_eq!(rows, 100_000);
        assert!(batches > 1, "streamed in pieces");
    });
}

/// Committed SQL survives a simulated power loss; an uncommitted transaction
/// does not.
#[test]
fn committed_sql_survives_power_loss() {
    let disk = SimDisk::new();
    let open = |disk: &SimDisk| {
        Database::from_engine(
            Engine::open(Arc::new(disk.clone()), EngineOptions::default()).unwrap(),
        )
    };
    {
        let db = open(&disk);
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("CREATE TABLE t (id INT PRIMARY KEY, s TEXT)")
            .unwrap();
        c.execute("INSERT INTO t VALUES (1, 'durable')").unwrap();
        c.execute("CHECKPOINT").unwrap();
        c.execute("INSERT INTO t VALUES (2, 'in wal')").unwrap();
        c.execute("BEGIN; INSERT INTO t VALUES (3, 'never committed')")
            .unwrap();
    }
    disk.power_loss(PowerLoss::DropUnsynced).unwrap();
    let db = open(&disk);
    let mut c = BlockingConnection::new(&db).unwrap();
    assert_eq!(ints(&mut c, "SELECT id FROM t ORDER BY id"), vec![1, 2]);
}

/// Closing the database (dropping its last handle) checkpoints the WAL, so
/// the next open has nothing to replay; the data is all there.
#[test]
fn closing_the_database_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let wal_len = || std::fs::metadata(dir.path().join("WAL")).unwrap().len();
    // An empty WAL holds only its base record (docs/format.md).
    let empty = entidb_engine::wal::base_record(0).unwrap().len() as u64;
    {
        let db = Database::open(dir.path()).unwrap();
        let mut c = BlockingConnection::new(&db).unwrap();
        c.execute("CREATE TABLE t (id INT PRIMARY KEY)").unwrap();
        c.execute("INSERT INTO t VALUES (1), (2)").unwrap();
        assert!(wal_len() > empty);
    }
    assert_eq!(wal_len(), empty);
    let db = Database::open(dir.path()).unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    assert_eq!(ints(&mut c, "SELECT id FROM t ORDER BY id"), vec![1, 2]);
}
