//! Memory limits, capped value-building functions, spilling of encrypted
//! databases and file access from SQL (`sql/src/limits.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use entidb::{BlockingConnection, Database, OpenOptions, Secret};
use std::path::Path;

fn open(path: &Path, options: OpenOptions) -> BlockingConnection {
    BlockingConnection::new(&Database::open_with(path, options).unwrap()).unwrap()
}

fn rows(c: &mut BlockingConnection, sql: &str) -> usize {
    c.query(sql).unwrap().iter().map(|b| b.num_rows()).sum()
}

fn sqlstate(c: &mut BlockingConnection, sql: &str) -> String {
    c.query(sql).unwrap_err().sqlstate().to_string()
}

#[test]
fn huge_repeat_pad_and_array_repeat_are_refused() {
    // Each of these used to allocate 6-16 GB and abort the process.
    let mut c = BlockingConnection::new(&Database::open_in_memory().unwrap()).unwrap();
    for sql in [
        "SELECT repeat('x', 2147483647)",
        "SELECT lpad('x', 2147483647)",
        "SELECT rpad('x', 2147483647, 'ab')",
        "SELECT array_repeat(1, 2147483647)",
        "SELECT length(repeat(repeat('x', 100000), 100000))",
    ] {
        let start = std::time::Instant::now();
        let err = c.query(sql).unwrap_err();
        assert_eq!(err.sqlstate(), "54000", "{sql}: {err}");
        assert!(
            err.to_string().contains("requested length too large"),
            "{err}"
        );
        assert!(start.elapsed().as_secs() < 5);
    }
    assert_eq!(
        rows(
            &mut c,
            "SELECT repeat('ab', 1000), lpad('x', 10), array_repeat(1, 3)"
        ),
        1
    );
    // The cap follows the session's memory limit.
    c.execute("SET entidb.memory_limit = '1MB'").unwrap();
    assert_eq!(sqlstate(&mut c, "SELECT repeat('x', 2000000)"), "54000");
    c.execute("SET entidb.memory_limit = '64MB'").unwrap();
    assert_eq!(rows(&mut c, "SELECT repeat('x', 2000000)"), 1);
}

const JOIN: &str = "SELECT count(*) FROM generate_series(1, 1000000) a \
                    JOIN generate_series(1, 1000000) b ON a.value = b.value";

#[test]
fn queries_over_the_memory_limit_fail_with_53200() {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        memory_limit: Some(4 << 20),
        ..OpenOptions::default()
    };
    let mut c = open(&dir.path().join("db"), options);
    assert_eq!(sqlstate(&mut c, JOIN), "53200");
    c.execute("SET entidb.memory_limit = '1GB'").unwrap();
    assert_eq!(rows(&mut c, JOIN), 1);
    c.execute("SET datafusion.runtime.memory_limit = '4MB'")
        .unwrap();
    assert_eq!(sqlstate(&mut c, JOIN), "53200");
    // RESET goes back to the configured limit, not to "unlimited".
    c.execute("SET entidb.memory_limit = '1GB'").unwrap();
    c.execute("RESET datafusion.runtime.memory_limit").unwrap();
    assert_eq!(sqlstate(&mut c, JOIN), "53200");
    let err = c.execute("SET entidb.memory_limit = 'lots'").unwrap_err();
    assert_eq!(err.sqlstate(), "22023");
}

const CANARY: &str = "CANARY-7f3a";

fn spill_workload(c: &mut BlockingConnection) -> entidb::Result<usize> {
    c.execute("CREATE TABLE big (id BIGINT PRIMARY KEY, s TEXT)")?;
    c.execute(&format!(
        "INSERT INTO big SELECT value, '{CANARY}-' || value FROM generate_series(1, 150000)"
    ))?;
    c.execute("CHECKPOINT")?;
    c.execute("SET datafusion.execution.sort_spill_reservation_bytes = 1048576")?;
    c.execute("SET entidb.memory_limit = '6MB'")?;
    let batches = c.query("SELECT s FROM big ORDER BY s DESC")?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        if std::fs::read(&entry).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        {
            out.push(entry.display().to_string());
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn encrypted_databases_never_spill_plaintext() {
    // Control: the same sort spills and succeeds on a plain database.
    let plain = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let mut c = open(
        &plain.path().join("db"),
        OpenOptions {
            temp_directory: Some(spill.path().to_path_buf()),
            ..OpenOptions::default()
        },
    );
    assert_eq!(spill_workload(&mut c).unwrap(), 150000);

    let enc = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let mut c = open(
        &enc.path().join("db"),
        OpenOptions {
            encryption: Some(Secret::Passphrase("pw".into())),
            temp_directory: Some(spill.path().to_path_buf()),
            ..OpenOptions::default()
        },
    );
    let err = spill_workload(&mut c).unwrap_err();
    assert_eq!(err.sqlstate(), "53200", "{err}");
    assert!(walk(spill.path()).is_empty());
    assert!(files_containing(spill.path(), CANARY.as_bytes()).is_empty());
    // Spilling cannot be turned back on from SQL.
    let err = c
        .execute(&format!(
            "SET datafusion.runtime.temp_directory = '{}'",
            spill.path().display()
        ))
        .unwrap_err();
    assert_eq!(err.sqlstate(), "42501", "{err}");
    let err = c
        .execute("RESET datafusion.runtime.temp_directory")
        .unwrap_err();
    assert_eq!(err.sqlstate(), "42501", "{err}");
}

#[test]
fn copy_to_cannot_write_into_an_open_database() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    let mut c = open(&db_dir, OpenOptions::default());
    c.execute("CREATE TABLE t (a INT); INSERT INTO t VALUES (1); CHECKPOINT")
        .unwrap();
    let before: Vec<_> = walk(&db_dir)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let d = db_dir.display();
    let up = dir.path().join("x").join("..").join("db");
    for target in [
        format!("{d}/MANIFEST"),
        format!("{d}/new.csv"),
        format!("file://{d}/wal.csv"),
        format!("{}/MANIFEST", up.display()),
        format!("{d}/sub/dir/"),
    ] {
        let sql = format!("COPY (SELECT 1 AS a) TO '{target}' STORED AS CSV");
        let err = c.execute(&sql).unwrap_err();
        assert_eq!(err.sqlstate(), "42501", "{target}: {err}");
        assert!(err.statement().is_some());
    }
    // Another open database's directory is protected too.
    let other = dir.path().join("other");
    let _db2 = Database::open(&other).unwrap();
    let sql = format!(
        "COPY (SELECT 1 AS a) TO '{}/x.csv' STORED AS CSV",
        other.display()
    );
    assert_eq!(c.execute(&sql).unwrap_err().sqlstate(), "42501");
    let after: Vec<_> = walk(&db_dir)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(before, after);
    assert_eq!(rows(&mut c, "SELECT * FROM t"), 1);
    // Elsewhere COPY works.
    let out = dir.path().join("out.csv");
    c.execute(&format!(
        "COPY (SELECT * FROM t) TO '{}' STORED AS CSV",
        out.display()
    ))
    .unwrap();
    assert!(std::fs::read_to_string(&out).unwrap().contains('1'));
}

#[test]
fn external_access_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let copy = format!("COPY (SELECT 1 AS a) TO '{}' STORED AS CSV", out.display());
    let mut c = open(
        &dir.path().join("db"),
        OpenOptions {
            external_access: false,
            ..OpenOptions::default()
        },
    );
    assert_eq!(c.execute(&copy).unwrap_err().sqlstate(), "42501");
    let err = c.execute("SET entidb.external_access = true").unwrap_err();
    assert_eq!(err.sqlstate(), "42501");
    assert!(!out.exists());

    let mut c = BlockingConnection::new(&Database::open_in_memory().unwrap()).unwrap();
    c.execute("SET entidb.external_access = false").unwrap();
    assert_eq!(c.execute(&copy).unwrap_err().sqlstate(), "42501");
    assert_eq!(
        c.execute(&format!("EXPLAIN ANALYZE {copy}"))
            .unwrap_err()
            .sqlstate(),
        "42501"
    );
    assert_eq!(
        c.execute("SET entidb.external_access = true")
            .unwrap_err()
            .sqlstate(),
        "42501"
    );
    assert!(!out.exists());
}
