//! Structure-aware fuzzing of everything that reads bytes from disk.
//!
//! Arbitrary bytes (see `decoders_proptest.rs`) mostly stop at the first
//! checksum. These targets start from the files of a real database and
//! mutate them *behind* the checksums — payloads are re-framed and manifests
//! re-checksummed after mutation — so every decoder, the replay and the open
//! path see well-formed-looking garbage:
//!
//! - `wal`: WAL records with mutated payloads, re-framed, scanned and then
//!   replayed by a full open (PUT batches, table definitions, catalogs);
//! - `manifest`: manifest payloads mutated and re-checksummed, opened;
//! - `columnar`: encoded Arrow arrays (the segment chunk format) mutated and
//!   decoded;
//! - `footer`: segment footers mutated and decoded;
//! - `open`: several random damages to several files of a database at once,
//!   then open, scan every table and run `integrity_check`.
//!
//! The oracle: no panic (caught per case), bounded memory (the cases run in
//! a child process under `ulimit -v`; an abort names the case it was
//! running), every case finishes. A failing case prints its target and seed.
//!
//! CI runs a few seconds per target. `FUZZ_SECONDS=N` gives each target N
//! seconds, `FUZZ_SEED=S` changes the seed, `FUZZ_TARGET=name` runs one:
//! `FUZZ_SECONDS=600 cargo test --release -p entidb-engine --test fuzz -- --nocapture`.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::codec::{Decoder, Encoder};
use entidb_engine::columnar::{decode_array, encode_array};
use entidb_engine::manifest::Manifest;
use entidb_engine::segment::Footer;
use entidb_engine::storage::{SimDisk, Storage};
use entidb_engine::wal::record::{Framed, frame, unframe};
use entidb_engine::wal::scan_wal;
use entidb_engine::{Engine, EngineOptions, ScanRequest};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Address-space limit of the fuzzing child process (`ulimit -v`, KiB): a
/// decoder that trusts a garbage length and allocates gigabytes aborts the
/// child, and the parent reports the case it was running.
const CHILD_MEMORY_KIB: u64 = 4 << 20;

type Files = BTreeMap<String, Vec<u8>>;

fn disk_of(files: &Files) -> SimDisk {
    let disk = SimDisk::new();
    for (name, bytes) in files {
        disk.open(name, true).unwrap();
        disk.set_contents(name, bytes.clone()).unwrap();
    }
    disk
}

/// A small database: two tables, a segment per table, a WAL tail with
/// inserts, updates, deletes, a new table and a catalog change.
fn seed_database() -> Files {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    let rows: Vec<(i64, String)> = (0..30).map(|i| (i, format!("value-{i}"))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    t.insert(kv, &kv_batch(&refs)).unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    let mut t = engine.begin();
    put(&mut t, kv, 3, "three").unwrap();
    let keys = keys_of(&mut t, kv, &[7, 8]);
    t.delete(kv, &keys).unwrap();
    t.commit().unwrap();
    let mut t = engine.begin();
    t.create_table("other", kv_schema(), vec![0]).unwrap();
    t.set_catalog(b"catalog blob".to_vec()).unwrap();
    t.commit().unwrap();
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(100, "tail"), (101, "")]))
        .unwrap();
    t.commit().unwrap();
    drop(engine);
    files(&disk)
}

/// Applies 1–4 random mutations to `bytes`.
fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                bytes[i] = rng.random();
            }
            2 if len >= 4 => {
                // An interesting 32-bit value over a length or count field.
                let i = rng.random_range(0..len - 3);
                let v: u32 = *[0, 1, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF, len as u32 * 2]
                    .get(rng.random_range(0..6))
                    .unwrap();
                bytes[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            3 if len > 0 => {
                bytes.truncate(rng.random_range(0..len));
            }
            4 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let extra: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                bytes.splice(i..i, extra);
            }
            5 if len > 1 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..len);
                bytes.drain(a..b.min(a + 32));
            }
            _ if len > 8 => {
                // Duplicate a slice elsewhere (repeated structures).
                let a = rng.random_range(0..len - 8);
                let piece = bytes[a..a + 8].to_vec();
                let at = rng.random_range(0..len);
                bytes.splice(at..at, piece);
            }
            _ => bytes.push(rng.random()),
        }
    }
}

/// The framed records of a WAL image: `(type byte, payload)`.
fn records(wal: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Framed::Record {
        kind, payload, len, ..
    } = unframe(&wal[at..])
    {
        out.push((kind, payload.to_vec()));
        at += len;
    }
    out
}

fn reframe(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, payload) in records {
        frame(*kind, payload, &mut out).unwrap();
    }
    out
}

fn manifest_payload(bytes: &[u8]) -> Vec<u8> {
    // "EMAN" | major u16 | minor u16 | payload_len u32 | payload | crc32
    bytes[12..bytes.len() - 4].to_vec()
}

fn manifest_with(payload: &[u8]) -> Vec<u8> {
    let mut out = b"EMAN".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Opens the files, reads every table and runs the integrity check; any
/// result is fine, only panics are not.
fn open_and_read(files: &Files) {
    let disk = disk_of(files);
    let Ok(engine) = Engine::open(std::sync::Arc::new(disk), EngineOptions::default()) else {
        return;
    };
    let mut t = engine.begin_read_only();
    if let Ok(tables) = t.tables() {
        for def in tables {
            if let Ok(scan) = t.scan(
                def.id,
                ScanRequest {
                    include_key: true,
                    ..ScanRequest::default()
                },
            ) {
                for batch in scan {
                    let _ = batch;
                }
            }
        }
    }
    drop(t);
    let _ = engine.integrity_check(&[]);
}

struct Seeds {
    files: Files,
    wal: Vec<(u8, Vec<u8>)>,
    arrays: Vec<Vec<u8>>,
    footers: Vec<Vec<u8>>,
}

fn seeds() -> Seeds {
    let files = seed_database();
    let wal = records(&files["WAL"]);
    assert!(wal.len() > 8, "the seed WAL has records");
    let mut arrays = Vec::new();
    let batch = kv_batch(&[(1, "a"), (2, ""), (-5, "long enough string value")]);
    for column in batch.columns() {
        let mut e = Encoder::new();
        encode_array(&mut e, column.as_ref()).unwrap();
        arrays.push(e.finish());
    }
    let with_nulls = arrow::array::StringArray::from(vec![Some("x"), None, Some("yz")]);
    let mut e = Encoder::new();
    encode_array(&mut e, &with_nulls).unwrap();
    arrays.push(e.finish());
    let footers = files
        .iter()
        .filter(|(n, _)| n.ends_with(".eseg"))
        .map(|(_, b)| {
            // trailer: footer_offset u64 | footer_len u32 | crc | versions | magic
            let t = b.len() - 24;
            let off = u64::from_le_bytes(b[t..t + 8].try_into().unwrap()) as usize;
            let len = u32::from_le_bytes(b[t + 8..t + 12].try_into().unwrap()) as usize;
            b[off..off + len].to_vec()
        })
        .collect();
    Seeds {
        files,
        wal,
        arrays,
        footers,
    }
}

type Target = fn(&Seeds, &mut StdRng);

fn target_wal(s: &Seeds, rng: &mut StdRng) {
    let mut recs = s.wal.clone();
    for _ in 0..rng.random_range(1..=3) {
        let i = rng.random_range(0..recs.len());
        mutate(rng, &mut recs[i].1);
        if rng.random_bool(0.1) {
            recs[i].0 = rng.random_range(0..12);
        }
    }
    let wal = reframe(&recs);
    let _ = scan_wal(&wal, "WAL");
    let mut files = s.files.clone();
    files.insert("WAL".into(), wal);
    open_and_read(&files);
}

fn target_manifest(s: &Seeds, rng: &mut StdRng) {
    let mut payload = manifest_payload(&s.files["MANIFEST"]);
    mutate(rng, &mut payload);
    let bytes = manifest_with(&payload);
    let _ = Manifest::decode(&bytes);
    let mut files = s.files.clone();
    files.insert("MANIFEST".into(), bytes);
    open_and_read(&files);
}

fn target_columnar(s: &Seeds, rng: &mut StdRng) {
    let mut bytes = s.arrays[rng.random_range(0..s.arrays.len())].clone();
    mutate(rng, &mut bytes);
    let mut d = Decoder::new(&bytes, "fuzz", 0);
    if let Ok(array) = decode_array(&mut d) {
        // A decoded array must be usable: format and slice it.
        if !array.is_empty() {
            let _ = arrow::util::display::array_value_to_string(&array, array.len() - 1);
        }
        let _ = array.slice(0, array.len());
    }
}

fn target_footer(s: &Seeds, rng: &mut StdRng) {
    let mut bytes = s.footers[rng.random_range(0..s.footers.len())].clone();
    mutate(rng, &mut bytes);
    let _ = Footer::decode(&bytes, "fuzz", 0, rng.next_u64() % (1 << 20));
}

fn target_open(s: &Seeds, rng: &mut StdRng) {
    let mut files = s.files.clone();
    let names: Vec<String> = files.keys().cloned().collect();
    for _ in 0..rng.random_range(1..=3) {
        let name = &names[rng.random_range(0..names.len())];
        if rng.random_bool(0.05) {
            files.remove(name);
        } else if let Some(bytes) = files.get_mut(name) {
            mutate(rng, bytes);
        }
    }
    open_and_read(&files);
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The fuzzing itself, in the child: runs every target for its time, writes
/// the case about to run to `progress` (so a crash can be attributed), and
/// prints failures.
fn run_cases(progress: &std::path::Path) -> Vec<String> {
    let seconds: f64 = env("FUZZ_SECONDS", 2.0);
    let seed: u64 = env("FUZZ_SEED", 0xF022);
    let only = std::env::var("FUZZ_TARGET").ok();
    let seeds = seeds();
    let targets: [(&str, Target); 5] = [
        ("wal", target_wal),
        ("manifest", target_manifest),
        ("columnar", target_columnar),
        ("footer", target_footer),
        ("open", target_open),
    ];
    // Panics are caught per case and reported; keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for (name, target) in targets {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let mut cases = 0u64;
        while Instant::now() < deadline {
            let case_seed = seed ^ cases.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let _ = std::fs::write(progress, format!("{name} case seed {case_seed}"));
            let mut rng = StdRng::seed_from_u64(case_seed);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                target(&seeds, &mut rng);
            }));
            if let Err(panic) = outcome {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name} case seed {case_seed}: panic: {what}"));
            }
            cases += 1;
        }
        println!("fuzz target {name}: {cases} cases in {seconds} s");
    }
    let _ = std::panic::take_hook();
    failures
}

/// Reproduce one case: `FUZZ_REPRO='<target> <seed>'`.
fn repro(spec: &str) {
    let mut parts = spec.split_whitespace();
    let (Some(name), Some(seed)) = (parts.next(), parts.next().and_then(|s| s.parse().ok())) else {
        panic!("FUZZ_REPRO='<target> <case seed>'");
    };
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(seed);
    match name {
        "wal" => target_wal(&seeds, &mut rng),
        "manifest" => target_manifest(&seeds, &mut rng),
        "columnar" => target_columnar(&seeds, &mut rng),
        "footer" => target_footer(&seeds, &mut rng),
        _ => target_open(&seeds, &mut rng),
    }
}

#[test]
fn fuzz_targets_never_panic() {
    if let Ok(spec) = std::env::var("FUZZ_REPRO") {
        repro(&spec);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let progress = dir.path().join("case");
    if std::env::var_os("FUZZ_CHILD").is_some() {
        let failures = run_cases(&progress_path());
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        return;
    }
    // Re-run this test in a child with limited address space.
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {CHILD_MEMORY_KIB}; exec \"$0\" fuzz_targets_never_panic --exact --nocapture --test-threads 1"
        ))
        .arg(&exe)
        .env("FUZZ_CHILD", "1")
        .env("FUZZ_PROGRESS", &progress)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stdout.lines().filter(|l| l.starts_with("fuzz target")) {
        println!("{line}");
    }
    if !output.status.success() {
        let case = std::fs::read_to_string(&progress).unwrap_or_default();
        panic!(
            "the fuzzing child failed ({}) while running: {case}\n\
             reproduce: FUZZ_REPRO='<target> <case seed>' cargo test -p entidb-engine --test fuzz\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status
        );
    }
}

fn progress_path() -> std::path::PathBuf {
    std::env::var_os("FUZZ_PROGRESS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("entidb-fuzz-case"))
}

/// Cases the long runs found, kept as regression tests: a fixed-width
/// buffer whose length is not a multiple of its element width made Arrow's
/// validation panic ("prefix.is_empty() && suffix.is_empty()") inside the
/// columnar decoder, reached from column chunks and WAL PUT batches.
#[test]
fn fuzz_findings_stay_fixed() {
    let seeds = seeds();
    for (name, seed) in [
        ("columnar", 8_505_401_650_401_388_422u64),
        ("columnar", 14_940_699_924_167_704_438),
        ("wal", 11_818_095_611_142_325_797),
        ("wal", 16_705_890_623_238_581_349),
    ] {
        let mut rng = StdRng::seed_from_u64(seed);
        match name {
            "wal" => target_wal(&seeds, &mut rng),
            _ => target_columnar(&seeds, &mut rng),
        }
    }
}
