//! The `entidb` shell end to end: scripts piped in (stdout, stderr, exit
//! codes), every dot-command, `.import`, output modes, a FIFO-driven
//! session, a closed pipe, and the paths it refuses to open.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_entidb");

/// Runs the shell with `args`, `stdin` piped in; (exit code, stdout, stderr).
fn shell(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_syntax_error_runs_what_comes_before_and_after_it() {
    let (code, out, err) = shell(
        &[],
        "CREATE TABLE t (a INT);\nINSERT INTO t VALUES (1);\nSELEC 2;\nINSERT INTO t VALUES (2);\nSELECT sum(a) AS s FROM t;\n",
    );
    assert_eq!(code, 1, "an error makes the exit code 1");
    assert!(out.contains("| 3 |"), "both inserts ran: {out}");
    assert!(
        err.contains("42601") && err.contains("LINE 1: SELEC 2"),
        "{err}"
    );
    assert!(!err.contains("ParserError"), "no Rust Debug text: {err}");
}

#[test]
fn bail_stops_at_the_first_error() {
    for flag in ["-bail", "--bail"] {
        let (code, out, _) = shell(&[flag], "SELECT 1 AS a;\nSELEC 2;\nSELECT 3 AS b;\n");
        assert_eq!(code, 1);
        assert!(
            out.contains("| a |") && !out.contains("| b |"),
            "{flag}: {out}"
        );
    }
}

#[test]
fn errors_show_sqlstate_and_a_caret_under_the_token() {
    let (code, _, err) = shell(&["-c", "SELECT 1 +* FROM t"], "");
    assert_eq!(code, 1);
    assert!(
        err.contains("(SQLSTATE 42601)\nLINE 1: SELECT 1 +* FROM t\n                  ^"),
        "{err}"
    );
    let (_, _, err) = shell(&["-c", "SELECT * FROM nope"], "");
    assert!(
        err.contains("relation nope does not exist (SQLSTATE 42P01)"),
        "{err}"
    );
    assert!(err.contains("in statement: SELECT * FROM nope"), "{err}");
}

#[test]
fn headers_as_written_empty_results_and_row_counts() {
    let (code, out, err) = shell(
        &[],
        "SELECT 1, 'a', 1 + 2 AS three, upper('x');\nCREATE TABLE t (a INT, b TEXT);\nINSERT INTO t VALUES (1, 'x'), (2, NULL);\nUPDATE t SET b = 'y' WHERE a = 2;\nSELECT * FROM t WHERE a > 5;\nDELETE FROM t;\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| 1 | 'a' | three | upper('x') |"), "{out}");
    assert!(!out.contains("Int64(1)"), "{out}");
    assert!(out.contains("2 rows inserted\n"), "{out}");
    assert!(out.contains("1 row updated\n"), "{out}");
    assert!(out.contains("2 rows deleted\n"), "{out}");
    assert!(
        out.contains("+---+---+\n| a | b |\n+---+---+\n+---+---+\n"),
        "empty result keeps its header: {out}"
    );
}

#[test]
fn json_output_parses_and_keeps_nulls() {
    let (code, out, err) = shell(
        &[
            "--json",
            "-c",
            "SELECT * FROM (VALUES (1, 'x'), (2, NULL)) AS v(a, b) ORDER BY a",
            "-c",
            "SELECT 1 AS a WHERE false",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let mut lines = out.splitn(2, "]\n");
    let first: serde_json::Value =
        serde_json::from_str(&format!("{}]", lines.next().unwrap())).unwrap();
    assert_eq!(
        first,
        serde_json::json!([{"a": 1, "b": "x"}, {"a": 2, "b": null}])
    );
    assert_eq!(
        lines.next().unwrap().trim(),
        "[]",
        "an empty result is an empty array"
    );
}

#[test]
fn output_modes() {
    let query = "SELECT 1 AS n, 'a|b' AS s;\n";
    let run = |mode: &str| shell(&[], &format!(".mode {mode}\n{query}")).1;
    assert_eq!(run("csv"), "n,s\n1,a|b\n");
    assert_eq!(run("jsonl"), "{\"n\":1,\"s\":\"a|b\"}\n");
    assert_eq!(run("line"), "n = 1\ns = a|b\n");
    assert_eq!(run("markdown"), "| n | s |\n|---|---|\n| 1 | a\\|b |\n");
    assert_eq!(
        run("table"),
        "+---+-----+\n| n | s   |\n+---+-----+\n| 1 | a|b |\n+---+-----+\n"
    );
    let boxed = run("box");
    assert!(
        boxed.contains("│ n      │ s    │\n│ bigint │ text │"),
        "{boxed}"
    );
    assert!(
        boxed.contains("│      1 │ a|b  │"),
        "numbers right-aligned: {boxed}"
    );
    let (_, out, _) = shell(&[], ".headers off\n.mode csv\nSELECT 1 AS n;\n");
    assert_eq!(out, "1\n");
    let (code, _, err) = shell(&[], ".mode nope\n");
    assert_eq!(code, 1);
    assert!(err.contains("unknown mode nope"), "{err}");
}

#[test]
fn catalog_dot_commands() {
    let (code, out, err) = shell(
        &[],
        "CREATE TABLE t (id BIGINT PRIMARY KEY, email TEXT NOT NULL, n INT DEFAULT 7);\nCREATE UNIQUE INDEX t_email ON t (email);\nCREATE TABLE u (x INT);\nCREATE VIEW v AS SELECT id FROM t;\n.tables\n.indexes t\n.indexes u\n.schema t\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("t\nu\nv\nt_email\n"), "{out}");
    assert!(
        out.contains("CREATE TABLE t (\n  id BIGINT,\n  email TEXT NOT NULL,\n  n INTEGER DEFAULT 7,\n  PRIMARY KEY (id)\n);\nCREATE UNIQUE INDEX t_email ON t (email);\n"),
        "{out}"
    );
    assert!(
        !out.contains("CREATE TABLE u"),
        ".schema t shows only t: {out}"
    );
}

/// The catalog dot-commands answer for the open transaction: a table it
/// dropped is gone from `.tables` and `.schema` (which failed on it), one
/// it created is there, and ROLLBACK brings the old state back.
#[test]
fn catalog_dot_commands_follow_the_open_transaction() {
    let (code, out, err) = shell(
        &[],
        "CREATE TABLE a (x INT);\nCREATE TABLE b (y INT);\nBEGIN;\nDROP TABLE a;\nCREATE TABLE c (z INT);\n.tables\n.schema\nROLLBACK;\n.tables\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("b\nc\n"), "{out}");
    assert!(!out.contains("CREATE TABLE a"), "{out}");
    assert!(out.contains("CREATE TABLE c"), "{out}");
    assert!(out.ends_with("a\nb\n"), "{out}");
}

#[test]
fn help_timer_unknown_and_quit() {
    let (code, out, err) = shell(
        &[],
        ".help\n.timer on\nSELECT 1 AS a;\n.timer off\n.frobnicate\nSELECT 2 AS b;\n.quit\nSELECT 3 AS c;\n",
    );
    assert_eq!(code, 1, "the unknown command counts as an error");
    assert!(out.contains(".import FILE TABLE"), "{out}");
    assert!(out.contains("Run Time: "), "{out}");
    assert!(err.contains("unknown command .frobnicate"), "{err}");
    assert!(
        out.contains("| b |"),
        "the shell went on after the unknown command: {out}"
    );
    assert!(!out.contains("| c |"), ".quit stops: {out}");
}

#[test]
fn read_output_open_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("setup.sql");
    std::fs::write(
        &script,
        "CREATE TABLE t (a INT);\nINSERT INTO t VALUES (5);\n",
    )
    .unwrap();
    let result = dir.path().join("result.csv");
    let db = dir.path().join("db");
    let input = format!(
        ".open {}\n.read {}\n.checkpoint\n.mode csv\n.output {}\nSELECT a FROM t;\n.output\nSELECT 'back' AS s;\n",
        db.display(),
        script.display(),
        result.display()
    );
    let (code, out, err) = shell(&[], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "a\n5\n");
    assert_eq!(
        out, "1 row inserted\ns\nback\n",
        "only .read's count and the last query"
    );
    assert!(db.join("MANIFEST").exists());
    let (code, out, _) = shell(
        &[db.to_str().unwrap(), "--csv", "-c", "SELECT a FROM t"],
        "",
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "a\n5\n"),
        "the data is in the .open'ed database"
    );
}

#[test]
fn import_csv_json_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "id,name,score\n1,ann,2.5\n2,bob,\n3,cy,4\n").unwrap();
    let parquet = dir.path().join("people.parquet");
    let json = dir.path().join("people.json");
    let input = format!(
        ".import {csv} people\nSELECT count(*) AS n, sum(score) AS s FROM people;\nCOPY (SELECT * FROM people) TO '{parquet}';\n.import {parquet} again\n.import {parquet} again\nSELECT count(*) AS m FROM again;\n.schema again\n.mode json\n.output {json}\nSELECT * FROM people ORDER BY id;\n.output\n.import {json} from_json\n.mode csv\nSELECT * FROM from_json ORDER BY id;\n.import {csv}.missing t2\n",
        csv = csv.display(),
        parquet = parquet.display(),
        json = json.display(),
    );
    let (code, out, err) = shell(&[], &input);
    assert!(
        err.contains("cannot import") && err.contains("no such file"),
        "{err}"
    );
    assert_eq!(code, 1, "only the missing file failed: {err}");
    assert!(out.contains("3 rows imported into people"), "{out}");
    assert!(out.contains("| 3 | 6.5 |"), "{out}");
    assert!(
        out.contains("| 6 |"),
        "two imports into the existing table: {out}"
    );
    assert!(
        out.contains(
            "CREATE TABLE again (\n  id BIGINT,\n  name TEXT,\n  score DOUBLE PRECISION\n);"
        ),
        "{out}"
    );
    assert!(
        out.ends_with("id,name,score\n1,ann,2.5\n2,bob,\n3,cy,4.0\n"),
        "{out}"
    );
}

#[test]
fn a_failed_import_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("dup.csv");
    std::fs::write(&csv, "id\n1\n2\n1\n").unwrap();
    let input = format!(
        "CREATE TABLE k (id BIGINT PRIMARY KEY);\n.import {} k\nSELECT count(*) AS n FROM k;\n",
        csv.display()
    );
    let (code, out, err) = shell(&[], &input);
    assert_eq!(code, 1);
    assert!(err.contains("23505"), "{err}");
    assert!(out.contains("| 0 |"), "{out}");
}

/// Each statement written into a FIFO is answered before the next one is
/// written: the shell streams its input instead of reading it to the end.
#[test]
fn a_fifo_driven_session_answers_each_statement_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap()
    });
    let reader = std::fs::File::open(&fifo).unwrap();
    let mut writer = writer.join().unwrap();
    let mut child = Command::new(BIN)
        .args(["--csv"])
        .stdin(reader)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let wait = Duration::from_secs(60);
    writer
        .write_all(
            b"CREATE TABLE t (a INT);\nINSERT INTO t VALUES (41);\nSELECT a + 1 AS x FROM t;\n",
        )
        .unwrap();
    writer.flush().unwrap();
    assert_eq!(rx.recv_timeout(wait).unwrap(), "x");
    assert_eq!(rx.recv_timeout(wait).unwrap(), "42");
    writer.write_all(b"SELECT a + 2 AS y\nFROM t;\n").unwrap();
    writer.flush().unwrap();
    assert_eq!(rx.recv_timeout(wait).unwrap(), "y");
    assert_eq!(rx.recv_timeout(wait).unwrap(), "43");
    drop(writer);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_closed_pipe_ends_quietly_with_exit_0() {
    let mut child = Command::new(BIN)
        .args(["-c", "SELECT * FROM generate_series(1, 2000000)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn refuses_files_and_foreign_directories() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
    let (code, _, err) = shell(&[dir.path().to_str().unwrap(), "-c", "SELECT 1"], "");
    assert_eq!(code, 1);
    assert!(err.contains("not an EntiDB database"), "{err}");
    assert!(
        !dir.path().join("MANIFEST").exists() && !dir.path().join("LOCK").exists(),
        "nothing created"
    );
    let file = dir.path().join("notes.txt");
    let (code, _, err) = shell(&[file.to_str().unwrap(), "-c", "SELECT 1"], "");
    assert_eq!(code, 1);
    assert!(err.contains("is a file"), "{err}");
    let (code, _, err) = shell(&["--readonly", "-c", "SELECT 1"], "");
    assert_eq!(code, 2, "{err}");
}

#[test]
fn version_and_help() {
    let (code, out, _) = shell(&["--version"], "");
    assert_eq!(code, 0);
    assert!(out.starts_with("entidb "), "{out}");
    let (code, out, _) = shell(&["--help"], "");
    assert_eq!(code, 0);
    assert!(
        out.contains("--json") && out.contains(".import FILE TABLE"),
        "{out}"
    );
}

/// `:memory:` names an in-memory database, as in SQLite and DuckDB: it used
/// to create a database directory called `:memory:` in the working
/// directory, which a second run then reopened.
#[test]
fn memory_path_opens_an_in_memory_database() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = Command::new(BIN)
            .arg(":memory:")
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(b"CREATE TABLE t (a INT);\n")?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A database the user cannot write (no write permission on its files)
/// opens read-only with a note instead of failing on `LOCK: Permission
/// denied`; queries answer and writes fail with 25006. As root (who may
/// write anything) the shell runs as `nobody` instead.
#[test]
fn a_database_that_cannot_be_written_opens_read_only_with_a_note() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let chmod = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod(dir.path(), 0o755);
    let db = dir.path().join("db");
    let (code, _, err) = shell(
        &[
            db.to_str().unwrap(),
            "-c",
            "CREATE TABLE t (a INT); INSERT INTO t VALUES (1), (2)",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    for entry in std::fs::read_dir(&db).unwrap() {
        chmod(&entry.unwrap().path(), 0o444);
    }
    chmod(&db, 0o555);
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut cmd = if root {
        let bin = dir.path().join("entidb");
        std::fs::hard_link(BIN, &bin)
            .or_else(|_| std::fs::copy(BIN, &bin).map(|_| ()))
            .unwrap();
        chmod(&bin, 0o755);
        let mut cmd = Command::new(bin);
        cmd.uid(65534).gid(65534);
        cmd
    } else {
        Command::new(BIN)
    };
    let out = cmd
        .arg(&db)
        .args([
            "-c",
            "SELECT sum(a) AS s FROM t",
            "-c",
            "INSERT INTO t VALUES (3)",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    chmod(&db, 0o755);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("| 3 |"), "{stdout}\n{stderr}");
    assert!(stderr.contains("it is open read-only"), "{stderr}");
    assert!(stderr.contains("25006"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));
}
