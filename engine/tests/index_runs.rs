//! Persisted index runs (`index_run.rs`): checkpoints write them, a reopen
//! uses them without rebuilding, damaged or stale ones are rebuilt from the
//! segment (never trusted), DROP INDEX and compaction remove them, and
//! index answers equal a scan's across reopen, damage and power loss at
//! every I/O operation.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use common::{create_kv, kv_batch, open_sim, put};
use entidb_engine::storage::{SimDisk, Storage};
use entidb_engine::{Engine, EngineOptions, Error, ScanRequest};
use std::collections::{BTreeMap, BTreeSet};

/// Distinct values of `v` in these tests.
const VALUES: i64 = 23;

fn value(id: i64) -> String {
    format!("v{}", id % VALUES)
}

fn options() -> EngineOptions {
    EngineOptions {
        background_checkpoints: false,
        checkpoint_on_close: false,
        ..EngineOptions::default()
    }
}

fn load(engine: &Engine, kv: u64, ids: std::ops::Range<i64>) {
    let rows: Vec<(i64, String)> = ids.map(|id| (id, value(id))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&refs)).unwrap();
    t.commit().unwrap();
}

/// Ids of the rows with `v = value`, through the index on `v`.
fn by_index(engine: &Engine, kv: u64, value: &str) -> BTreeSet<i64> {
    try_by_index(engine, kv, value).unwrap()
}

fn try_by_index(engine: &Engine, kv: u64, value: &str) -> Result<BTreeSet<i64>, Error> {
    common::ids_with_v(engine, kv, value)
}

/// `v` → ids, by a full scan.
fn by_scan(engine: &Engine, kv: u64) -> BTreeMap<String, BTreeSet<i64>> {
    let mut t = engine.begin_read_only();
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for b in t.scan(kv, ScanRequest::default()).unwrap() {
        let b = b.unwrap();
        let ids = b.column(0).as_primitive::<Int64Type>();
        let vs = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            out.entry(vs.value(i).to_string())
                .or_default()
                .insert(ids.value(i));
        }
    }
    out
}

/// Every value's index answer equals the scan's.
fn assert_index_matches_scan(engine: &Engine, kv: u64, context: &str) {
    let scan = by_scan(engine, kv);
    for v in 0..VALUES {
        let v = format!("v{v}");
        let want = scan.get(&v).cloned().unwrap_or_default();
        assert_eq!(by_index(engine, kv, &v), want, "{context}: v = {v}");
    }
}

fn run_files(disk: &SimDisk) -> Vec<String> {
    disk.list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("ix-"))
        .collect()
}

fn overwrite(disk: &SimDisk, name: &str, at: u64, bytes: &[u8]) {
    let f = disk.open(name, false).unwrap();
    f.write_at(at, bytes).unwrap();
    f.sync().unwrap();
}

/// A table of 5,000 rows with an index on `v`, checkpointed once.
fn indexed_table(disk: &SimDisk) -> (Engine, u64) {
    indexed_table_with(disk, options())
}

fn indexed_table_with(disk: &SimDisk, options: EngineOptions) -> (Engine, u64) {
    let engine = open_sim(disk, options).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.build_index(kv, &[1]).unwrap();
    t.commit().unwrap();
    load(&engine, kv, 0..5_000);
    engine.checkpoint().unwrap();
    (engine, kv)
}

#[test]
fn a_checkpoint_writes_runs_and_a_reopen_uses_them_without_rebuilding() {
    let disk = SimDisk::new();
    let (engine, kv) = indexed_table(&disk);
    assert_eq!(run_files(&disk).len(), 1, "{:?}", run_files(&disk));
    assert_eq!(engine.index_run_stats().written, 1);
    assert_index_matches_scan(&engine, kv, "before reopen");
    drop(engine);

    let engine = open_sim(&disk, options()).unwrap();
    // Rows committed after the checkpoint are indexed in memory, next to
    // the run.
    load(&engine, kv, 5_000..5_100);
    let mut t = engine.begin();
    put(&mut t, kv, 7, "v3").unwrap();
    t.commit().unwrap();
    assert_index_matches_scan(&engine, kv, "after reopen");
    let stats = engine.index_run_stats();
    assert_eq!((stats.opened, stats.written, stats.rebuilt), (1, 0, 0));
    assert!(by_index(&engine, kv, "v3").contains(&7));
    assert!(!by_index(&engine, kv, &value(7)).contains(&7));

    // The next checkpoint compacts nothing (one big segment): it adds a
    // segment and its run; the old run stays.
    engine.checkpoint().unwrap();
    assert_eq!(run_files(&disk).len(), 2, "{:?}", run_files(&disk));
    assert_index_matches_scan(&engine, kv, "after the second checkpoint");
    assert!(engine.integrity_check(&[]).unwrap().is_empty());
}

#[test]
fn a_run_with_a_damaged_block_is_never_trusted_and_is_rebuilt() {
    let disk = SimDisk::new();
    let (engine, kv) = indexed_table(&disk);
    drop(engine);
    let name = run_files(&disk).pop().unwrap();
    // A byte in the first block (the header is 48 bytes long).
    overwrite(&disk, &name, 60, &[0xFF, 0x00, 0xFF]);

    let engine = open_sim(&disk, options()).unwrap();
    // The footer is intact, so the run opens; its first block fails its
    // checksum at the first lookup that reads it, which is answered from
    // the segment.
    let scan = by_scan(&engine, kv);
    assert_eq!(by_index(&engine, kv, "v0"), scan["v0"]);
    let problems = engine.integrity_check(&[]).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("checksum")),
        "{problems:?}"
    );
    // The next use rebuilds it.
    assert_index_matches_scan(&engine, kv, "after the damage");
    assert_eq!(engine.index_run_stats().rebuilt, 1);
    assert!(
        engine.warnings().iter().any(|w| w.contains(&name)),
        "{:?}",
        engine.warnings()
    );
    assert!(engine.integrity_check(&[]).unwrap().is_empty());
    drop(engine);

    // Rebuilt on disk too: a reopen opens it cleanly.
    let engine = open_sim(&disk, options()).unwrap();
    assert_index_matches_scan(&engine, kv, "reopened");
    let stats = engine.index_run_stats();
    assert_eq!((stats.opened, stats.rebuilt), (1, 0));
}

/// Review finding: a repair that failed (the segment unreadable too) had
/// already removed the damaged run, so the index silently lost the whole
/// segment: lookups answered short until the next open.
#[test]
fn a_failed_repair_keeps_the_damaged_run_and_never_answers_short() {
    let disk = SimDisk::new();
    // No chunk cache: every read of the segment goes to the disk.
    let uncached = EngineOptions {
        cache_bytes: 0,
        ..options()
    };
    let (engine, kv) = indexed_table_with(&disk, uncached.clone());
    drop(engine);
    let run = run_files(&disk).pop().unwrap();
    overwrite(&disk, &run, 60, &[0xFF, 0x00, 0xFF]);
    let segment = disk
        .list()
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".eseg"))
        .unwrap();
    let id = u64::from_str_radix(&segment[4..20], 16).unwrap();
    let reader = entidb_engine::segment::SegmentReader::open(&disk, id).unwrap();
    let v_chunk = reader.footer.row_groups[0].chunks[1].offset + 8;
    drop(reader);
    let intact = disk.contents(&segment).unwrap();

    let engine = open_sim(&disk, uncached).unwrap();
    let want = by_scan(&engine, kv);
    // The damaged block is found and answered from the segment.
    assert_eq!(by_index(&engine, kv, "v0"), want["v0"]);
    // Now the segment cannot be read either: the repair fails, and so
    // does the lookup (an error, not a short answer).
    overwrite(&disk, &segment, v_chunk, &[0x5A]);
    assert!(try_by_index(&engine, kv, "v1").is_err());
    // Once the segment reads again, every answer is whole.
    disk.set_contents(&segment, intact).unwrap();
    assert_index_matches_scan(&engine, kv, "after a failed repair");
    assert_eq!(engine.index_run_stats().rebuilt, 1);
}

#[test]
fn a_run_with_a_damaged_footer_or_of_another_segment_is_rebuilt_at_first_use() {
    let disk = SimDisk::new();
    let (engine, kv) = indexed_table(&disk);
    // A second table with the same layout and index.
    let mut t = engine.begin();
    let other = t
        .create_table("kv2", common::kv_schema(), vec![0])
        .unwrap()
        .id;
    t.commit().unwrap();
    let mut t = engine.begin();
    t.build_index(other, &[1]).unwrap();
    t.commit().unwrap();
    let rows: Vec<(i64, String)> = (0..300).map(|i| (i, format!("v{}", i % 3))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    let mut t = engine.begin();
    t.insert(other, &kv_batch(&refs)).unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    drop(engine);
    let runs = run_files(&disk);
    assert_eq!(runs.len(), 2, "{runs:?}");
    // kv's run gets kv2's bytes (a segment id reused after a crash would
    // look like this), and kv2's run a damaged footer.
    let kv2_bytes = disk.contents(&runs[1]).unwrap();
    let kv_bytes = disk.contents(&runs[0]).unwrap();
    let f = disk.open(&runs[0], false).unwrap();
    f.truncate(0).unwrap();
    f.write_at(0, &kv2_bytes).unwrap();
    f.sync().unwrap();
    let footer_end = kv2_bytes.len() as u64 - 21;
    overwrite(&disk, &runs[1], footer_end, &[0xAB]);
    assert_ne!(kv_bytes, kv2_bytes);

    let engine = open_sim(&disk, options()).unwrap();
    assert_index_matches_scan(&engine, kv, "kv");
    let scan = by_scan(&engine, other);
    for v in ["v0", "v1", "v2"] {
        assert_eq!(by_index(&engine, other, v), scan[v], "kv2 {v}");
    }
    let stats = engine.index_run_stats();
    assert_eq!((stats.opened, stats.rebuilt), (0, 2));
    assert!(engine.integrity_check(&[]).unwrap().is_empty());
}

#[test]
fn drop_index_and_compaction_remove_runs_and_open_removes_orphans() {
    let disk = SimDisk::new();
    let (engine, kv) = indexed_table(&disk);
    assert_eq!(run_files(&disk).len(), 1);
    engine.forget_index(kv, &[1]).unwrap();
    assert!(run_files(&disk).is_empty(), "{:?}", run_files(&disk));
    // Used again: rebuilt and written at its first use.
    assert_index_matches_scan(&engine, kv, "re-created");
    assert_eq!(run_files(&disk).len(), 1);

    // Deleting most rows makes the next checkpoint compact the segment:
    // its run goes with it, and the new segment gets one.
    let old = run_files(&disk);
    let mut t = engine.begin();
    let keys = common::keys_of(&mut t, kv, &(0..4_000).collect::<Vec<_>>());
    t.delete(kv, &keys).unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    let new = run_files(&disk);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_ne!(new, old);
    assert_index_matches_scan(&engine, kv, "after compaction");
    drop(engine);

    // A run (and a leftover .tmp) of a segment the manifest does not name
    // are removed at open.
    let orphan = "ix-00000000000fffff-1.eidx";
    disk.open(orphan, true).unwrap().write_at(0, b"x").unwrap();
    disk.open("ix-00000000000fffff-1.eidx.tmp", true)
        .unwrap()
        .write_at(0, b"x")
        .unwrap();
    let engine = open_sim(&disk, options()).unwrap();
    assert_eq!(run_files(&disk), new);
    assert_index_matches_scan(&engine, kv, "after orphan removal");
    assert!(engine.integrity_check(&[]).unwrap().is_empty());
}

#[test]
fn a_read_only_open_reads_runs_and_writes_nothing() {
    let disk = SimDisk::new();
    let (engine, kv) = indexed_table(&disk);
    drop(engine);
    // After a reopen no index is listed until its first use, so this
    // checkpoint writes a segment without a run.
    let engine = open_sim(&disk, options()).unwrap();
    load(&engine, kv, 5_000..6_000);
    engine.checkpoint().unwrap();
    drop(engine);
    assert_eq!(run_files(&disk).len(), 1);
    let before = common::files(&disk);
    let read_only = EngineOptions {
        read_only: true,
        ..options()
    };
    let engine = open_sim(&disk, read_only).unwrap();
    assert_index_matches_scan(&engine, kv, "read-only");
    let stats = engine.index_run_stats();
    assert_eq!((stats.opened, stats.written), (1, 0));
    drop(engine);
    assert_eq!(common::files(&disk), before);
}

/// Power loss at every I/O operation of an index's first use, which writes
/// the runs of three segments checkpointed before the index was used: after
/// recovery the index answers as a scan does, and every segment ends up
/// with a valid run (a torn or missing one is rebuilt, never trusted).
#[test]
fn power_loss_while_a_first_use_writes_runs() {
    fn setup() -> (SimDisk, u64) {
        let disk = SimDisk::new();
        let engine = open_sim(&disk, options()).unwrap();
        let kv = create_kv(&engine);
        for round in 0..3 {
            load(&engine, kv, round * 300..(round + 1) * 300);
            engine.checkpoint().unwrap();
        }
        drop(engine);
        assert!(run_files(&disk).is_empty());
        (disk, kv)
    }
    fn first_use(disk: &SimDisk, kv: u64) -> bool {
        let Ok(engine) = open_sim(disk, options()) else {
            return false;
        };
        try_by_index(&engine, kv, "v1").is_ok()
    }
    let (disk, kv) = setup();
    let before = disk.op_count();
    assert!(first_use(&disk, kv));
    let ops = disk.op_count() - before;
    assert_eq!(run_files(&disk).len(), 3);
    eprintln!("{ops} I/O operations in the first use");
    for k in 0..=ops {
        let (disk, kv) = setup();
        let (disk, _) = common::lose_power_after(disk, k, |d| first_use(d, kv));
        let engine = open_sim(&disk, options())
            .unwrap_or_else(|e| panic!("crash at op {k}: reopen failed: {e}"));
        assert_index_matches_scan(&engine, kv, &format!("crash at op {k}"));
        let problems = engine.integrity_check(&[]).unwrap();
        assert!(problems.is_empty(), "crash at op {k}: {problems:?}");
        drop(engine);
        assert_eq!(run_files(&disk).len(), 3, "crash at op {k}");
    }
}

// ---------------------------------------------------------------------
// Power loss at every I/O operation.

const STEPS: usize = 40;

fn workload_options() -> EngineOptions {
    EngineOptions {
        checkpoint_wal_bytes: 4 * 1024,
        background_checkpoints: false,
        ..EngineOptions::default()
    }
}

type Model = BTreeMap<i64, String>;

fn apply(m: &mut Model, step: usize) {
    match step {
        1 => {}
        2 => {
            for id in 0..200 {
                m.insert(id, value(id));
            }
        }
        _ => {
            let id = ((step * 37) % 211) as i64;
            m.insert(id, format!("v{}", step as i64 % VALUES));
            m.remove(&(((step * 11) % 199) as i64));
        }
    }
}

/// One step of the workload, as one transaction.
fn run(engine: &Engine, step: usize) -> Result<(), Error> {
    let mut t = engine.begin();
    match step {
        1 => {
            let kv = t.create_table("kv", common::kv_schema(), vec![0])?.id;
            t.commit()?;
            let mut t = engine.begin();
            t.build_index(kv, &[1])?;
            return t.commit().map(|_| ()).map_err(Error::from);
        }
        2 => {
            let kv = t.table("kv")?.id;
            let rows: Vec<(i64, String)> = (0..200).map(|id| (id, value(id))).collect();
            let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
            t.insert(kv, &kv_batch(&refs))?;
        }
        _ => {
            let kv = t.table("kv")?.id;
            let id = ((step * 37) % 211) as i64;
            put(&mut t, kv, id, &format!("v{}", step as i64 % VALUES))?;
            let gone = ((step * 11) % 199) as i64;
            let keys = common::keys_of(&mut t, kv, &[gone]);
            if !keys.is_empty() {
                t.delete(kv, &keys)?;
            }
        }
    }
    t.commit().map(|_| ()).map_err(Error::from)
}

/// Runs the workload until an I/O error; returns how many steps committed.
/// Every fifth step also reads through the index (building it at its first
/// use after an open, which writes runs).
fn run_until_error(disk: &SimDisk) -> usize {
    let Ok(engine) = open_sim(disk, workload_options()) else {
        return 0;
    };
    for step in 1..=STEPS {
        if run(&engine, step).is_err() {
            return step - 1;
        }
        if step % 5 == 0 {
            let Ok(kv) = engine.begin_read_only().table("kv").map(|d| d.id) else {
                return step;
            };
            if try_by_index(&engine, kv, "v1").is_err() {
                return step;
            }
        }
    }
    STEPS
}

fn state(engine: &Engine) -> Option<Model> {
    common::snapshot_kv(engine).ok()
}

#[test]
fn power_loss_at_every_io_operation_keeps_index_answers_equal_to_scans() {
    let mut models = vec![None];
    let mut m = Model::new();
    for step in 1..=STEPS {
        apply(&mut m, step);
        models.push(Some(m.clone()));
    }
    let disk = SimDisk::new();
    assert_eq!(run_until_error(&disk), STEPS);
    let total_ops = disk.op_count();
    let engine = open_sim(&disk, workload_options()).unwrap();
    assert_eq!(state(&engine), models[STEPS]);
    assert!(
        engine.checkpoint_seq() > 10,
        "checkpointed at {}",
        engine.checkpoint_seq()
    );
    assert!(!run_files(&disk).is_empty());
    drop(engine);
    eprintln!("{total_ops} I/O operations");
    for k in 0..=total_ops {
        let (disk, acked) = common::crash_at(k, run_until_error);
        let engine = open_sim(&disk, workload_options())
            .unwrap_or_else(|e| panic!("crash at op {k}: reopen failed: {e}"));
        let got = state(&engine);
        let ok = (acked..=(acked + 1).min(STEPS)).any(|n| models[n] == got);
        assert!(ok, "crash at op {k}: state matches no prefix from {acked}");
        if let Ok(def) = engine.begin_read_only().table("kv") {
            assert_index_matches_scan(&engine, def.id, &format!("crash at op {k}"));
        }
        let problems = engine.integrity_check(&[]).unwrap();
        assert!(problems.is_empty(), "crash at op {k}: {problems:?}");
    }
}
