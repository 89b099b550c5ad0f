//! Write-once loads (`load.rs`): a large commit writes its rows straight
//! into a segment that the WAL only names. The rows are written once, read
//! back exactly before and after a reopen and a checkpoint (which keeps the
//! segment), replacements and deletes of loaded rows replay correctly, a
//! doomed load leaves no file, and power loss at every I/O operation of a
//! workload of loads, small commits and checkpoints recovers a prefix of
//! the acknowledged commits, with index answers equal to a scan.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use common::{Model, create_kv, keys_of, kv_batch, open_sim, snapshot_kv};
use entidb_engine::storage::{SimDisk, Storage};
use entidb_engine::{Engine, EngineOptions, Error, ScanRequest};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Commits of at least this many rows are loads in these tests.
const LOAD_ROWS: usize = 500;

fn options() -> EngineOptions {
    EngineOptions {
        background_checkpoints: false,
        direct_load_rows: LOAD_ROWS,
        ..EngineOptions::default()
    }
}

fn value(id: i64, round: i64) -> String {
    format!("v{}-{round}", id % 7)
}

fn segments(disk: &SimDisk) -> BTreeSet<String> {
    disk.list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".eseg"))
        .collect()
}

fn runs(disk: &SimDisk) -> BTreeSet<String> {
    disk.list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("ix-"))
        .collect()
}

fn wal_len(disk: &SimDisk) -> u64 {
    disk.open("WAL", false).unwrap().len().unwrap()
}

/// Replaces the rows `ids` of `kv` (deleting those that exist) with
/// `value(id, round)`, in one transaction; updates `model` when it commits.
fn upsert(engine: &Engine, kv: u64, ids: std::ops::Range<i64>, round: i64, model: &mut Model) {
    try_upsert(engine, kv, ids.clone(), round).unwrap();
    for id in ids {
        model.insert(id, value(id, round));
    }
}

fn try_upsert(
    engine: &Engine,
    kv: u64,
    ids: std::ops::Range<i64>,
    round: i64,
) -> Result<u64, Error> {
    let rows: Vec<(i64, String)> = ids.clone().map(|id| (id, value(id, round))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    let mut t = engine.begin();
    let existing = keys_of(&mut t, kv, &ids.collect::<Vec<_>>());
    if !arrow::array::Array::is_empty(&existing) {
        t.delete(kv, &existing)?;
    }
    t.insert(kv, &kv_batch(&refs))?;
    Ok(t.commit()?)
}

fn try_delete(engine: &Engine, kv: u64, ids: &[i64]) -> Result<u64, Error> {
    let mut t = engine.begin();
    let keys = keys_of(&mut t, kv, ids);
    t.delete(kv, &keys)?;
    Ok(t.commit()?)
}

/// Ids with `v = v`, through the index on `v`.
fn by_index(engine: &Engine, kv: u64, v: &str) -> Result<BTreeSet<i64>, Error> {
    common::ids_with_v(engine, kv, v)
}

fn assert_index_matches(engine: &Engine, kv: u64, model: &Model, context: &str) {
    let values: BTreeSet<&String> = model.values().collect();
    for v in values {
        let want: BTreeSet<i64> = model
            .iter()
            .filter(|(_, x)| *x == v)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(by_index(engine, kv, v).unwrap(), want, "{context}: v = {v}");
    }
}

fn clean(engine: &Engine, context: &str) {
    let problems = engine.integrity_check(&[]).unwrap();
    assert!(problems.is_empty(), "{context}: {problems:?}");
}

#[test]
fn a_large_commit_writes_its_rows_once_into_a_segment_the_wal_names() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, options()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.build_index(kv, &[1]).unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    let wal_before = wal_len(&disk);
    let mut model = Model::new();
    upsert(&engine, kv, 0..5_000, 0, &mut model);
    // The rows are in a new segment before any checkpoint, with its index
    // run; the WAL grew by a record that names it, not by the rows.
    let loaded = segments(&disk);
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(runs(&disk).len(), 1, "{:?}", runs(&disk));
    let grown = wal_len(&disk) - wal_before;
    assert!(grown < 200, "the WAL grew by {grown} bytes");
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    assert_index_matches(&engine, kv, &model, "after the load");
    clean(&engine, "after the load");
    drop(engine);

    // Replayed from the WAL: the same segment, nothing rebuilt.
    let engine = open_sim(&disk, options()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    assert_index_matches(&engine, kv, &model, "after a reopen");
    assert_eq!(engine.index_run_stats().written, 0);
    clean(&engine, "after a reopen");
    // A checkpoint keeps the segment where it is: the manifest names it.
    engine.checkpoint().unwrap();
    assert_eq!(segments(&disk), loaded);
    clean(&engine, "after a checkpoint");
    drop(engine);
    let engine = open_sim(&disk, options()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    assert_index_matches(&engine, kv, &model, "after the checkpoint and a reopen");
    clean(&engine, "after the checkpoint and a reopen");
}

#[test]
fn a_load_replacing_rows_retires_their_old_versions_across_replay() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, options()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    // Round 0 is checkpointed; round 1 replaces half of it and adds more,
    // as a load whose before-images are not all "absent"; then a small
    // commit deletes loaded rows and another load replaces loaded rows.
    upsert(&engine, kv, 0..1_000, 0, &mut model);
    engine.checkpoint().unwrap();
    upsert(&engine, kv, 500..1_600, 1, &mut model);
    try_delete(&engine, kv, &[600, 1_500, 10]).unwrap();
    for id in [600, 1_500, 10] {
        model.remove(&id);
    }
    upsert(&engine, kv, 1_000..1_700, 2, &mut model);
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    clean(&engine, "before the reopen");
    drop(engine);
    // Replay: the loads' segments are read back for the key index.
    let engine = open_sim(&disk, options()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    // Writing needs the key index: a replaced row must not come back.
    upsert(&engine, kv, 0..10, 3, &mut model);
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    clean(&engine, "after the reopen");
    engine.checkpoint().unwrap();
    drop(engine);
    let engine = open_sim(&disk, options()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    clean(&engine, "after a checkpoint and a reopen");
}

#[test]
fn a_load_that_fails_validation_leaves_no_file() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, options()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.build_index(kv, &[1]).unwrap();
    t.commit().unwrap();
    let files_before = disk.list().unwrap();
    let rows: Vec<(i64, String)> = (0..1_000).map(|id| (id, value(id, 0))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    let mut doomed = engine.begin();
    doomed.insert(kv, &kv_batch(&refs)).unwrap();
    // Another transaction commits one of its keys first.
    let mut other = engine.begin();
    other.insert(kv, &kv_batch(&[(7, "first")])).unwrap();
    other.commit().unwrap();
    assert!(matches!(doomed.commit(), Err(e) if e.to_string().contains("onflict")));
    assert_eq!(disk.list().unwrap(), files_before, "no segment or run left");
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 1);
    clean(&engine, "after the conflict");
}

#[test]
fn a_load_into_a_table_without_key_keeps_row_ids_unique_across_replay() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, options()).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let mut t = engine.begin();
    let table = t.create_table("log", schema.clone(), vec![]).unwrap().id;
    t.commit().unwrap();
    let batch = |range: std::ops::Range<i64>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(range))],
        )
        .unwrap()
    };
    let mut t = engine.begin();
    t.insert(table, &batch(0..2_000)).unwrap();
    t.commit().unwrap();
    drop(engine);
    // The row ids of the load are only in its segment: replay must keep
    // the counter above them, or new rows would replace loaded ones.
    let engine = open_sim(&disk, options()).unwrap();
    let mut t = engine.begin();
    t.insert(table, &batch(2_000..2_010)).unwrap();
    t.commit().unwrap();
    let mut t = engine.begin_read_only();
    let mut xs = Vec::new();
    for b in t.scan(table, ScanRequest::default()).unwrap() {
        xs.extend(
            b.unwrap()
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .copied(),
        );
    }
    xs.sort_unstable();
    assert_eq!(xs, (0..2_010).collect::<Vec<_>>());
    clean(&engine, "after the reopen");
}

#[test]
fn a_missing_or_foreign_loaded_segment_refuses_the_open_and_changes_nothing() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, options()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    upsert(&engine, kv, 0..1_000, 0, &mut model);
    drop(engine);
    let name = segments(&disk).into_iter().next().unwrap();
    let original = common::files(&disk);
    // Another segment's bytes under its name: the footer CRC differs.
    let other = SimDisk::new();
    let e = open_sim(&other, options()).unwrap();
    let k = create_kv(&e);
    upsert(&e, k, 0..999, 5, &mut Model::new());
    drop(e);
    let foreign = common::files(&other).get(&name).cloned();
    assert!(foreign.is_some(), "{name} in the other database");
    for damage in [None, foreign] {
        match &damage {
            None => disk.remove(&name).unwrap(),
            Some(bytes) => disk.set_contents(&name, bytes.clone()).unwrap(),
        }
        let before = common::files(&disk);
        let err = open_sim(&disk, options()).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
        assert_eq!(
            common::files(&disk),
            before,
            "a refused open changes nothing"
        );
        if damage.is_none() {
            disk.open(&name, true).unwrap();
        }
        disk.set_contents(&name, original[&name].clone()).unwrap();
    }
    let engine = open_sim(&disk, options()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
}

/// A load's own files failing to write or sync fails that commit and
/// removes them, but poisons nothing: no durable record names them (the
/// review found every failure poisoning, even of loads doomed to conflict).
#[test]
fn a_load_whose_segment_cannot_be_written_fails_alone() {
    use entidb_engine::storage::Fault;
    for fault in ["eio", "enospc", "fsync"] {
        let disk = SimDisk::new();
        let engine = open_sim(&disk, options()).unwrap();
        let kv = create_kv(&engine);
        let files_before = disk.list().unwrap();
        let fault = match fault {
            "eio" => Fault::EioAt(disk.op_count() + 3),
            "enospc" => Fault::NoSpaceAt(disk.op_count() + 3),
            _ => Fault::SyncFailsAt(disk.sync_count() + 1),
        };
        disk.inject(fault).unwrap();
        let err = try_upsert(&engine, kv, 0..1_000, 0).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        engine.check_healthy().unwrap();
        assert_eq!(
            disk.list().unwrap(),
            files_before,
            "the load's files are removed"
        );
        let mut model = Model::new();
        upsert(&engine, kv, 0..1_000, 1, &mut model);
        assert_eq!(snapshot_kv(&engine).unwrap(), model);
        clean(&engine, "after the failed load");
    }
}

/// Loads add little WAL: the bytes they load count towards the threshold
/// checkpoint, which compacts the segments later loads replaced, so
/// reloading a table over and over does not pile up segments.
#[test]
fn repeated_reloads_are_checkpointed_and_compacted() {
    let disk = SimDisk::new();
    let engine = open_sim(
        &disk,
        EngineOptions {
            checkpoint_wal_bytes: 32 * 1024,
            ..options()
        },
    )
    .unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    for round in 0..12 {
        upsert(&engine, kv, 0..2_000, round, &mut model);
    }
    assert!(engine.checkpoint_seq() > 0, "no threshold checkpoint ran");
    let live = segments(&disk).len();
    assert!(live <= 3, "{live} segments after 12 reloads");
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    clean(&engine, "after the reloads");
}

/// A load of new keys adds about a hundred bytes of WAL: the segment bytes
/// it loaded are what counts towards the threshold checkpoint.
#[test]
fn loaded_bytes_count_towards_the_threshold_checkpoint() {
    let disk = SimDisk::new();
    let engine = open_sim(
        &disk,
        EngineOptions {
            checkpoint_wal_bytes: 16 * 1024,
            ..options()
        },
    )
    .unwrap();
    let kv = create_kv(&engine);
    let before = engine.checkpoint_seq();
    let mut model = Model::new();
    upsert(&engine, kv, 0..2_000, 0, &mut model);
    assert!(wal_len(&disk) < 16 * 1024);
    assert!(
        engine.checkpoint_seq() > before,
        "a 2,000-row load did not start a checkpoint"
    );
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
}

/// A manifest entry that lost its `created_seq` would show a load's rows
/// (`_seq` 0) to every snapshot: the integrity check tells a load's
/// placeholder from a checkpoint's commits.
#[test]
fn integrity_finds_a_loaded_segment_recorded_as_a_checkpoint_s() {
    use entidb_engine::manifest::Manifest;
    let disk = SimDisk::new();
    let engine = open_sim(&disk, options()).unwrap();
    let kv = create_kv(&engine);
    upsert(&engine, kv, 0..1_000, 0, &mut Model::new());
    engine.checkpoint().unwrap();
    clean(&engine, "after the checkpoint");
    drop(engine);
    let mut manifest = Manifest::load(&disk).unwrap().unwrap();
    let entry = manifest.tables[0]
        .segments
        .iter_mut()
        .find(|s| s.created_seq != 0)
        .unwrap();
    entry.created_seq = 0;
    manifest.save(&disk).unwrap();
    let engine = open_sim(&disk, options()).unwrap();
    let problems = engine.integrity_check(&[]).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("placeholder")),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------------
// Power loss at every I/O operation.

const STEPS: usize = 12;

/// Step `i` of the workload, applied to the model.
fn apply(m: &mut Model, i: usize) {
    let i = i as i64;
    match i % 4 {
        // A load: replaces 300 existing rows, adds 300.
        0 | 1 => {
            let start = (i - 1) * 300;
            for id in start..start + 600 {
                m.insert(id, value(id, i));
            }
        }
        // A small commit: one replacement, one delete.
        2 => {
            m.insert(i, value(i, i));
            m.remove(&(i * 10));
        }
        _ => {}
    }
}

fn run(engine: &Engine, kv: u64, i: usize) -> Result<(), Error> {
    let r = i as i64;
    match r % 4 {
        0 | 1 => {
            let start = (r - 1) * 300;
            try_upsert(engine, kv, start..start + 600, r)?;
        }
        2 => {
            // One transaction: a replacement and a delete.
            let mut t = engine.begin();
            let keys = keys_of(&mut t, kv, &[r, r * 10]);
            t.delete(kv, &keys)?;
            t.insert(kv, &kv_batch(&[(r, &value(r, r))]))?;
            t.commit()?;
        }
        _ => engine
            .checkpoint()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?,
    }
    Ok(())
}

/// Runs the workload until an operation fails; returns the steps acked.
fn run_until_error(disk: &SimDisk) -> usize {
    let Ok(engine) = open_sim(disk, options()) else {
        return 0;
    };
    let Ok(kv) = (|| {
        let mut t = engine.begin();
        let kv = t.create_table("kv", common::kv_schema(), vec![0])?.id;
        t.build_index(kv, &[1])?;
        t.commit()?;
        Ok::<u64, Error>(kv)
    })() else {
        return 0;
    };
    for i in 1..=STEPS {
        if run(&engine, kv, i).is_err() {
            return i - 1;
        }
    }
    STEPS
}

#[test]
fn power_loss_at_every_io_operation_of_loads_small_commits_and_checkpoints() {
    let mut models = vec![Model::new()];
    let mut m = Model::new();
    for i in 1..=STEPS {
        apply(&mut m, i);
        models.push(m.clone());
    }
    let disk = SimDisk::new();
    assert_eq!(run_until_error(&disk), STEPS);
    let total_ops = disk.op_count();
    let engine = open_sim(&disk, options()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), models[STEPS]);
    drop(engine);
    eprintln!("{total_ops} I/O operations");
    for k in 0..=total_ops {
        let (disk, acked) = common::crash_at(k, run_until_error);
        let engine = open_sim(&disk, options())
            .unwrap_or_else(|e| panic!("crash at op {k}: reopen failed: {e}"));
        let got = snapshot_kv(&engine).unwrap_or_default();
        let n = (acked..=(acked + 1).min(STEPS)).find(|n| models[*n] == got);
        let Some(n) = n else {
            panic!("crash at op {k}: state matches no prefix from {acked}");
        };
        if let Ok(def) = engine.begin_read_only().table("kv") {
            assert_index_matches(&engine, def.id, &models[n], &format!("crash at op {k}"));
        }
        clean(&engine, &format!("crash at op {k}"));
        // Nothing unnamed is left: every segment file is read by a table.
        drop(engine);
        let engine = open_sim(&disk, options()).unwrap();
        clean(&engine, &format!("crash at op {k}, second open"));
    }
}
