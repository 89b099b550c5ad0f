//! The statement cache (`sql/src/statement_cache.rs`): point queries sent as
//! text take the index fast path and return exactly what the general path
//! returns; cached plans never read a stale snapshot, an old table version
//! or plan under old settings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::util::pretty::pretty_format_batches;
use datafusion::scalar::ScalarValue;
use entidb_engine::Engine;
use entidb_sql::{Result, Session};

fn session(engine: &Engine) -> Session {
    Session::new(engine.clone())
}

/// The rows of `sql` as a table ("" for no rows, whatever the batches).
async fn text(s: &mut Session, sql: &str) -> Result<String> {
    let batches = s.query(sql, &[]).await?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(String::new());
    }
    Ok(pretty_format_batches(&batches).unwrap().to_string())
}

async fn rows(s: &mut Session, sql: &str) -> String {
    text(s, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A table with a primary key, a secondary index and some NULLs.
async fn setup() -> (Engine, Session) {
    let engine = Engine::open_memory().unwrap();
    let mut s = session(&engine);
    s.run(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, k INT, s VARCHAR, b BOOLEAN, f DOUBLE);
         CREATE INDEX t_k ON t (k);
         CREATE INDEX t_s ON t (s);
         INSERT INTO t VALUES (1, 10, 'a', true, 1.0), (2, 10, 'b', false, 2.0),
            (3, 20, 'it''s', NULL, 3.0), (4, NULL, NULL, true, 4.0),
            (5, -7, 'a', false, NULL), (6, 30, '10', true, 6.0)",
        &[],
    )
    .await
    .unwrap();
    (engine, s)
}

/// Every statement run as text (fast path where it applies) and with a
/// no-op ORDER BY (never the fast path) gives the same rows, or the same
/// error; the ones that should take the fast path did.
#[tokio::test]
async fn text_point_queries_match_the_general_path() {
    let (_engine, mut s) = setup().await;
    let fast = [
        "SELECT * FROM t WHERE id = 3",
        "SELECT * FROM t WHERE id = 99",
        "SELECT s, id FROM t WHERE k = 10",
        "SELECT * FROM t WHERE k = -7",
        "SELECT id FROM t WHERE s = 'it''s'",
        "SELECT id FROM t WHERE s = 'a' AND b = false",
        "SELECT id FROM t WHERE (k = 10) AND id = 2",
        "SELECT id FROM t WHERE 10 = k",
        "SELECT t.id FROM t WHERE t.k = 10",
        "SELECT ID FROM T WHERE K = 20",
        "SELECT id FROM t WHERE id = 1 AND id = 2",
    ];
    let general = [
        // Not an INT: the fast path refuses the lossy cast.
        "SELECT id FROM t WHERE k = 3000000000",
        "SELECT id FROM t WHERE k = '10'",
        "SELECT id FROM t WHERE s = 10",
        "SELECT id FROM t WHERE k = 10.0",
        "SELECT id FROM t WHERE f = 1",
        "SELECT id FROM t WHERE b = true",
        "SELECT id FROM t WHERE k = NULL",
        "SELECT id FROM t WHERE k = 10 OR k = 20",
        "SELECT id + 1 FROM t WHERE k = 10",
        "SELECT id FROM t WHERE nope = 1",
        "SELECT id FROM t AS x WHERE y.k = 1",
    ];
    for (sql, should_be_fast) in fast
        .iter()
        .map(|q| (q, true))
        .chain(general.iter().map(|q| (q, false)))
    {
        let before = s.statement_cache_stats().point_queries;
        let got = text(&mut s, sql).await.map_err(|e| e.sqlstate());
        let took_fast = s.statement_cache_stats().point_queries > before;
        // An ORDER BY never takes the fast path; ordering by every output
        // column keeps the comparison independent of row order.
        let reference = format!("SELECT * FROM ({sql}) AS q ORDER BY 1");
        let want = text(&mut s, &reference).await.map_err(|e| e.sqlstate());
        let sorted = |r: &std::result::Result<String, &'static str>| {
            r.clone().map(|t| {
                let mut lines: Vec<String> = t.lines().map(str::to_string).collect();
                lines.sort();
                lines
            })
        };
        assert_eq!(sorted(&got), sorted(&want), "{sql}");
        assert_eq!(took_fast, should_be_fast, "{sql}: fast path taken?");
    }
}

/// Regression: a point query with two different values for the indexed
/// column returned the rows of the first (the second equality was dropped
/// with the index's own column).
#[tokio::test]
async fn two_values_for_the_indexed_column_match_nothing() {
    let (_engine, mut s) = setup().await;
    let p = s
        .prepare("SELECT id FROM t WHERE id = $1 AND id = $2")
        .unwrap();
    let out = s
        .run_prepared(
            &p,
            &[ScalarValue::Int64(Some(1)), ScalarValue::Int64(Some(2))],
        )
        .await
        .unwrap();
    let entidb_sql::Output::Rows(_, batches) = out else {
        panic!("rows expected")
    };
    assert_eq!(p.fast_path(), Some("point query"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    assert_eq!(
        rows(
            &mut s,
            "SELECT count(*) AS n FROM t WHERE k = 10 AND k = 20"
        )
        .await,
        rows(&mut s, "SELECT 0 AS n").await
    );
}

/// A cached plan reads the snapshot of the transaction it runs in: new
/// commits of other sessions in autocommit mode, the transaction's own
/// snapshot (and writes) inside BEGIN … COMMIT.
#[tokio::test]
async fn cached_plans_read_the_current_snapshot() {
    let (engine, mut a) = setup().await;
    let mut b = session(&engine);
    let count = "SELECT count(*) AS n, sum(id) AS s FROM t";
    let point = "SELECT id, s FROM t WHERE k = 40";
    assert!(rows(&mut a, count).await.contains("| 6 | 21 |"));
    assert!(!rows(&mut a, point).await.contains("| 7"));
    b.execute("INSERT INTO t VALUES (7, 40, 'x', true, 7.0)", &[])
        .await
        .unwrap();
    let hits = a.statement_cache_stats().plan_hits;
    assert!(rows(&mut a, count).await.contains("| 7 | 28 |"));
    assert!(a.statement_cache_stats().plan_hits > hits, "plan reused");
    assert!(rows(&mut a, point).await.contains("| 7  | x |"));

    a.execute("BEGIN", &[]).await.unwrap();
    assert!(rows(&mut a, count).await.contains("| 7 | 28 |"));
    b.execute("INSERT INTO t VALUES (8, 40, 'y', true, 8.0)", &[])
        .await
        .unwrap();
    // Still the transaction's snapshot, through the same cached plan …
    assert!(rows(&mut a, count).await.contains("| 7 | 28 |"));
    assert!(!rows(&mut a, point).await.contains("| 8"));
    // … plus its own writes.
    a.execute("INSERT INTO t VALUES (9, 40, 'z', true, 9.0)", &[])
        .await
        .unwrap();
    assert!(rows(&mut a, count).await.contains("| 8 | 37 |"));
    assert!(rows(&mut a, point).await.contains("| 9  | z |"));
    a.execute("ROLLBACK", &[]).await.unwrap();
    assert!(rows(&mut a, count).await.contains("| 8 | 36 |"));
    let now = rows(&mut a, point).await;
    assert!(now.contains("| 8  | y |") && !now.contains("| 9"), "{now}");
}

/// DDL — in this session, in another one, or rolled back — empties the
/// cache: a cached plan never reads an old version of a table.
#[tokio::test]
async fn catalog_changes_invalidate_cached_plans() {
    let (engine, mut a) = setup().await;
    let mut b = session(&engine);
    let all = "SELECT * FROM t WHERE id = 1";
    let star = "SELECT * FROM t ORDER BY 1 LIMIT 1";
    assert!(rows(&mut a, star).await.contains("| id | k "));
    assert!(rows(&mut a, all).await.contains("| id | k "));

    // Another session replaces the table with a different one.
    b.run(
        "DROP TABLE t; CREATE TABLE t (id BIGINT PRIMARY KEY, z VARCHAR);
         INSERT INTO t VALUES (1, 'new')",
        &[],
    )
    .await
    .unwrap();
    assert!(rows(&mut a, star).await.contains("| 1  | new |"));
    assert!(rows(&mut a, all).await.contains("| 1  | new |"));

    // Inside a transaction, then rolled back.
    a.execute("BEGIN", &[]).await.unwrap();
    a.run(
        "DROP TABLE t; CREATE TABLE t (id BIGINT PRIMARY KEY, w INT);
         INSERT INTO t VALUES (1, 5)",
        &[],
    )
    .await
    .unwrap();
    assert!(rows(&mut a, star).await.contains("| 1  | 5 |"));
    assert!(rows(&mut a, all).await.contains("| 1  | 5 |"));
    a.execute("ROLLBACK", &[]).await.unwrap();
    assert!(rows(&mut a, star).await.contains("| 1  | new |"));
    assert!(rows(&mut a, all).await.contains("| 1  | new |"));

    // An index dropped: the point query falls back to a scan.
    a.execute("CREATE TABLE u (id INT PRIMARY KEY, k INT)", &[])
        .await
        .unwrap();
    a.execute("CREATE INDEX u_k ON u (k)", &[]).await.unwrap();
    a.execute("INSERT INTO u VALUES (1, 2), (3, 2)", &[])
        .await
        .unwrap();
    let q = "SELECT count(*) FROM (SELECT id FROM u WHERE k = 2) AS x";
    let inner = "SELECT id FROM u WHERE k = 2";
    let before = a.statement_cache_stats().point_queries;
    assert_eq!(rows(&mut a, inner).await.lines().count(), 6);
    assert_eq!(a.statement_cache_stats().point_queries, before + 1);
    a.execute("DROP INDEX u_k", &[]).await.unwrap();
    assert_eq!(rows(&mut a, inner).await.lines().count(), 6);
    assert_eq!(a.statement_cache_stats().point_queries, before + 1);
    assert!(rows(&mut a, q).await.contains("| 2 "));
}

/// SET changes how SQL is planned: cached plans are dropped.
#[tokio::test]
async fn settings_invalidate_cached_plans() {
    let (_engine, mut s) = setup().await;
    let upper = "SELECT ID FROM t ORDER BY 1";
    rows(&mut s, upper).await;
    rows(&mut s, upper).await;
    s.execute(
        "SET datafusion.sql_parser.enable_ident_normalization = false",
        &[],
    )
    .await
    .unwrap();
    // Without normalisation `ID` is not the column `id`.
    assert!(text(&mut s, upper).await.is_err());
    s.execute(
        "SET datafusion.sql_parser.enable_ident_normalization = true",
        &[],
    )
    .await
    .unwrap();
    rows(&mut s, upper).await;
}
