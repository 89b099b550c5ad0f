//! Deeply nested statements never overflow the stack: below the nesting cap
//! they run on any thread (a 2 MiB test thread, a tokio worker), above it
//! they fail with SQLSTATE 54001. Before the fix each of these aborted the
//! whole test binary with a stack overflow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use entidb::{BlockingConnection, Database};

fn conn() -> BlockingConnection {
    let db = Database::open_in_memory().unwrap();
    let mut c = BlockingConnection::new(&db).unwrap();
    c.execute("CREATE TABLE t (a INT)").unwrap();
    c.execute("INSERT INTO t VALUES (1), (2)").unwrap();
    c
}

fn too_complex(sql: &str) {
    let start = std::time::Instant::now();
    let err = conn().query(sql).unwrap_err();
    assert_eq!(err.sqlstate(), "54001", "{err}");
    assert!(err.to_string().contains("too complex"), "{err}");
    assert!(err.statement().is_some_and(|s| s.starts_with("SELECT")));
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
}

#[test]
fn union_all_of_3000_terms_is_54001() {
    too_complex(&vec!["SELECT 1"; 3000].join(" UNION ALL "));
}

#[test]
fn sum_of_20000_terms_is_54001() {
    too_complex(&format!("SELECT {}", vec!["1"; 20000].join("+")));
}

#[test]
fn where_with_50000_ands_is_54001() {
    too_complex(&format!(
        "SELECT * FROM t WHERE {}",
        vec!["a = 1"; 50000].join(" AND ")
    ));
}

#[test]
fn nested_parentheses_5000_deep_are_54001() {
    too_complex(&format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000)));
}

fn moderately_deep() -> Vec<(String, usize)> {
    vec![
        (vec!["SELECT 1"; 300].join(" UNION ALL "), 300),
        (format!("SELECT {}", vec!["1"; 300].join("+")), 1),
        (
            format!("SELECT * FROM t WHERE {}", vec!["a = 1"; 300].join(" AND ")),
            1,
        ),
    ]
}

#[test]
fn moderately_deep_statements_work_on_a_small_thread_stack() {
    // 250 UNION ALL terms used to overflow a 2 MiB stack.
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let mut c = conn();
            for (sql, rows) in moderately_deep() {
                let batches = c.query(&sql).unwrap();
                assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
                let p = c.prepare(&sql).unwrap();
                let batches = c.query_prepared(&p, &[]).unwrap();
                assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
            }
        })
        .unwrap();
    handle.join().unwrap();
}

#[test]
fn moderately_deep_statements_work_on_tokio_workers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(2 << 20)
        .enable_all()
        .build()
        .unwrap();
    let db = Database::open_in_memory().unwrap();
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut c = db.connect();
            for (sql, rows) in moderately_deep().into_iter().take(2) {
                let batches = c.query(&sql).await.unwrap();
                assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
                let mut stream = c.query_stream(&sql).await.unwrap();
                let mut n = 0;
                while let Some(b) = futures::StreamExt::next(&mut stream).await {
                    n += b.unwrap().num_rows();
                }
                assert_eq!(n, rows);
            }
        })
        .await
        .unwrap();
    });
}
