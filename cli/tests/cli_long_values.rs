//! The CLI with huge values: a 10 MB string literal used to take 70 s to
//! print because its column header (derived from the expression) was
//! formatted in full.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_10_mb_literal_prints_quickly_with_a_short_header() {
    let literal = "x".repeat(10 << 20);
    let sql = format!("SELECT '{literal}'");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_entidb"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(sql.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let header = stdout.lines().nth(1).unwrap();
    let name = header.trim_end_matches('|').trim_end();
    assert!(name.contains('…') && name.len() < 200, "{header:.300}");
    assert!(stdout.contains(&literal));
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
}
