//! The `entidb` and `entidb-slt` binaries: output formats and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

fn entidb(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_entidb"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn dash_c_runs_statements_in_order() {
    let (code, out, err) = entidb(
        &[
            "-c",
            "CREATE TABLE t (a INT, b TEXT)",
            "-c",
            "INSERT INTO t VALUES (1, 'x')",
            "-c",
            "SELECT * FROM t",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| 1 | x |"), "{out}");
}

#[test]
fn csv_and_json_output() {
    let (code, out, _) = entidb(&["--csv", "-c", "SELECT 1 AS a, 'x' AS b"], None);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "a,b\n1,x");
    let (code, out, _) = entidb(&["--json", "-c", "SELECT 1 AS a, 'x' AS b"], None);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), r#"[{"a":1,"b":"x"}]"#);
}

#[test]
fn statements_from_stdin_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let path = path.to_str().unwrap();
    let (code, _, err) = entidb(
        &[path],
        Some("CREATE TABLE t (a INT);\nINSERT INTO t VALUES (41), (1);\n"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = entidb(&[path, "--csv", "-c", "SELECT sum(a) AS s FROM t"], None);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "s\n42");
}

#[test]
fn sql_error_exits_1_and_usage_error_exits_2() {
    let (code, _, err) = entidb(&["-c", "SELECT * FROM nope"], None);
    assert_eq!(code, 1);
    assert!(err.contains("42P01"), "{err}");
    let (code, _, err) = entidb(&["--bogus"], None);
    assert_eq!(code, 2);
    assert!(err.to_lowercase().contains("usage"), "{err}");
    let (code, _, _) = entidb(&["-c"], None);
    assert_eq!(code, 2);
}

#[test]
fn slt_runner_counts_records() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.slt");
    std::fs::write(
        &file,
        "statement ok\nCREATE TABLE t (a INT)\n\nquery I\nSELECT 1\n----\n2\n\nquery I\nSELECT 3\n----\n3\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_entidb-slt"))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout.lines().last(),
        Some("2 passed, 1 failed, 0 skipped (66.67% of the records that ran)"),
        "{stdout}"
    );
}

fn slt(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_entidb-slt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Skips are counted apart, a record that does not parse is one failure
/// (the rest of the file runs), a record over the time limit is one
/// failure and the settings records still apply after it, values print by
/// the declared letters under --sqlite, and --baseline fails only below
/// the baseline.
#[test]
fn slt_runner_isolates_records_and_counts_skips() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("y.slt");
    std::fs::write(
        &file,
        "hash-threshold 8\n\ncontrol resultmode valuewise\n\n\
         onlyif mysql\nquery I\nSELECT 1\n----\n1\n\n\
         statement bogus\nSELECT 1\n\n\
         query I\nSELECT count(*) FROM generate_series(1, 100000000000)\n----\n0\n\n\
         query IRT\nSELECT 7.9, 2, 1.5\n----\n7\n2.000\n1.5\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (code, stdout) = slt(&["--memory", "--sqlite", "--timeout", "1", path]);
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("1 passed, 2 failed, 1 skipped (33.33% of the records that ran)"),
        "{stdout}"
    );
    let baseline = dir.path().join("baseline");
    let baseline = baseline.to_str().unwrap();
    let with = |option: &str| {
        slt(&[
            "--memory",
            "--sqlite",
            "--timeout",
            "1",
            option,
            baseline,
            path,
        ])
    };
    let (_, stdout) = with("--write-baseline");
    let written = std::fs::read_to_string(baseline).unwrap();
    let group = dir.path().file_name().unwrap().to_str().unwrap();
    assert_eq!(written, format!("1 {group}\n"), "{stdout}");
    let (code, stdout) = with("--baseline");
    assert_eq!(code, Some(0), "at the baseline: {stdout}");
    std::fs::write(baseline, format!("2 {group}\n")).unwrap();
    let (code, stdout) = with("--baseline");
    assert_eq!(code, Some(1), "below the baseline: {stdout}");
}

/// DuckDB's `statement ok con1` runs on a connection of its own: an
/// uncommitted row is invisible to the other connection.
#[test]
fn slt_runner_runs_duckdb_connection_labels() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.test");
    std::fs::write(
        &file,
        "statement ok\nCREATE TABLE t (a INT)\n\n\
         statement ok con1\nBEGIN\n\n\
         statement ok con1\nINSERT INTO t VALUES (1)\n\n\
         query I con2\nSELECT count(*) FROM t\n----\n0\n\n\
         query I con1\nSELECT count(*) FROM t\n----\n1\n\n\
         statement ok\nPRAGMA enable_verification\n",
    )
    .unwrap();
    let (code, stdout) = slt(&[file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("5 passed, 0 failed, 1 skipped (100.00% of the records that ran)"),
        "{stdout}"
    );
}

/// A second process opening a database another process holds gets
/// `Locked` (SQLSTATE 55006) at once, without waiting.
#[test]
fn second_process_gets_locked_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let path = path.to_str().unwrap().to_string();
    // The first process holds the database while it waits for stdin.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_entidb"))
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !dir.path().join("db").join("MANIFEST").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    let (code, _, err) = entidb(&[&path, "-c", "SELECT 1"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("55006") && err.contains("locked"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "no hang"
    );
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    let (code, _, err) = entidb(&[&path, "-c", "SELECT 1"], None);
    assert_eq!(code, 0, "lock released when the holder exits: {err}");
}

#[test]
fn encrypted_database_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let key = dir.path().join("key.bin");
    std::fs::write(&key, [42u8; 32]).unwrap();
    let key = key.to_str().unwrap();
    let (code, _, err) = entidb(
        &[
            "--key-file",
            key,
            db,
            "-c",
            "CREATE TABLE secret_table (v TEXT); INSERT INTO secret_table VALUES ('TOP-SECRET')",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    for entry in std::fs::read_dir(dir.path().join("db")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(10).any(|w| w == b"TOP-SECRET"));
        assert!(!bytes.windows(12).any(|w| w == b"secret_table"));
    }
    let (code, out, _) = entidb(
        &[
            "--key-file",
            key,
            db,
            "--csv",
            "-c",
            "SELECT v FROM secret_table",
        ],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "v\nTOP-SECRET");
    let (code, _, err) = entidb(&[db, "-c", "SELECT 1"], None);
    assert_eq!(code, 1);
    assert!(err.contains("28000"), "{err}");
    let wrong = dir.path().join("wrong.bin");
    std::fs::write(&wrong, [1u8; 32]).unwrap();
    let (code, _, err) = entidb(
        &["--key-file", wrong.to_str().unwrap(), db, "-c", "SELECT 1"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("28P01"), "{err}");
    std::fs::write(&wrong, [1u8; 31]).unwrap();
    let (code, _, _) = entidb(
        &["--key-file", wrong.to_str().unwrap(), db, "-c", "SELECT 1"],
        None,
    );
    assert_eq!(code, 2, "a key file of the wrong size is a usage error");
}

#[test]
fn passphrase_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let run = |pass: &str, sql: &str| {
        Command::new(env!("CARGO_BIN_EXE_entidb"))
            .args(["--passphrase", db.to_str().unwrap(), "--csv", "-c", sql])
            .env("ENTIDB_PASSPHRASE", pass)
            .output()
            .unwrap()
    };
    assert!(
        run("pw", "CREATE TABLE t (a INT); INSERT INTO t VALUES (5)")
            .status
            .success()
    );
    let out = run("pw", "SELECT a FROM t");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "a\n5");
    let out = run("nope", "SELECT a FROM t");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("28P01"));
}

/// `PRAGMA integrity_check` and `entidb --check`: `ok` on an intact
/// database; a flipped byte in a segment chunk is reported (exit 1), with
/// the file named.
#[test]
fn integrity_check_from_sql_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let path = db.to_str().unwrap();
    let (code, out, err) = entidb(
        &[
            path,
            "-c",
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT UNIQUE); \
             INSERT INTO t VALUES (1, 'a'), (2, 'b'); CREATE INDEX t_v ON t (v); \
             CHECKPOINT; PRAGMA integrity_check",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
    let (code, out, _) = entidb(&["--check", path], None);
    assert_eq!((code, out.trim()), (0, "ok"));
    // Damage one byte inside the segment's column chunks (after the 16-byte
    // header): the hidden _hash/_seq chunks are never read by a query.
    let seg = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "eseg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = 16 + (bytes.len() - 16) / 3;
    bytes[at] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let (code, out, err) = entidb(&["--check", path], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(".eseg") || err.contains(".eseg"), "{out}{err}");
    let (code, _, err) = entidb(&["--check"], None);
    assert_eq!(code, 2, "{err}");
}
