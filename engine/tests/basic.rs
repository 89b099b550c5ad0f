//! Basic engine behaviour: create, insert, update, delete, reopen, checkpoint.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use arrow::array::{Array, AsArray, RecordBatch};
use common::*;
use entidb_engine::storage::{PowerLoss, SimDisk, Storage};
use entidb_engine::{Engine, EngineOptions, Error, OpenError, ScanRequest};
use std::sync::Arc;

#[test]
fn insert_commit_read_back() {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "a"), (2, "b")])).unwrap();
    assert_eq!(
        read_kv(&mut t, "kv").unwrap().len(),
        2,
        "reads its own writes"
    );
    assert!(
        snapshot_kv(&engine).unwrap().is_empty(),
        "uncommitted rows invisible"
    );
    t.commit().unwrap();
    let m = snapshot_kv(&engine).unwrap();
    assert_eq!(m.get(&1).map(String::as_str), Some("a"));
    assert_eq!(m.get(&2).map(String::as_str), Some("b"));
}

#[test]
fn duplicate_primary_key_is_a_constraint_violation() {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "a")])).unwrap();
    t.commit().unwrap();
    let mut t = engine.begin();
    let err = t.insert(kv, &kv_batch(&[(2, "x"), (1, "b")])).unwrap_err();
    assert!(matches!(err, Error::ConstraintViolation { .. }), "{err}");
    // The failed statement left nothing behind: 2 was not inserted.
    assert_eq!(read_kv(&mut t, "kv").unwrap().len(), 1);
    let err = t.insert(kv, &kv_batch(&[(3, "x"), (3, "y")])).unwrap_err();
    assert!(matches!(err, Error::ConstraintViolation { .. }), "{err}");
}

#[test]
fn update_and_delete_then_reopen_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
        let kv = create_kv(&engine);
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&[(1, "a"), (2, "b"), (3, "c")]))
            .unwrap();
        t.commit().unwrap();
        let mut t = engine.begin();
        put(&mut t, kv, 2, "B").unwrap();
        let keys = keys_of(&mut t, kv, &[3]);
        assert_eq!(t.delete(kv, &keys).unwrap(), 1);
        t.commit().unwrap();
    }
    let expect: Model = [(1, "a".to_string()), (2, "B".to_string())].into();
    let engine = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), expect, "after WAL replay");
    engine.checkpoint().unwrap();
    assert_eq!(engine.wal_len(), 0);
    assert_eq!(snapshot_kv(&engine).unwrap(), expect, "after checkpoint");
    let kv = engine.begin().table("kv").unwrap().id;
    let mut t = engine.begin();
    put(&mut t, kv, 1, "A").unwrap();
    t.commit().unwrap();
    drop(engine);
    let engine = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
    let expect: Model = [(1, "A".to_string()), (2, "B".to_string())].into();
    assert_eq!(snapshot_kv(&engine).unwrap(), expect, "segments + WAL");
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _engine = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
    let err = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
}

#[test]
fn rolled_back_create_table_leaves_nothing() {
    let engine = Engine::open_memory().unwrap();
    let mut t = engine.begin();
    t.create_table("kv", kv_schema(), vec![0]).unwrap();
    t.rollback();
    assert!(matches!(
        engine.begin().table("kv"),
        Err(Error::TableNotFound { .. })
    ));
}

#[test]
fn unsynced_commit_of_dropped_power_is_not_visible_but_synced_is() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "a")])).unwrap();
    t.commit().unwrap();
    let engine = crash_and_reopen(
        engine,
        &disk,
        PowerLoss::DropUnsynced,
        EngineOptions::default(),
    );
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 1);
}

#[test]
fn rowid_table_keeps_rows_of_every_commit() {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let engine = Engine::open_memory().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
    let mut t = engine.begin();
    let id = t.create_table("bag", schema.clone(), vec![]).unwrap().id;
    t.commit().unwrap();
    for chunk in 0..3i64 {
        let mut t = engine.begin();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![chunk; 10_000]))],
        )
        .unwrap();
        t.insert(id, &batch).unwrap();
        t.commit().unwrap();
    }
    let mut t = engine.begin_read_only();
    let rows: usize = t
        .scan(id, entidb_engine::ScanRequest::default())
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 30_000);
}

/// Identical operations produce identical bytes in WAL and segments.
#[test]
fn identical_operations_give_identical_files() {
    use entidb_engine::storage::Storage;
    let build = || {
        let disk = SimDisk::new();
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        let kv = create_kv(&engine);
        for i in 0..50 {
            let mut t = engine.begin();
            put(&mut t, kv, i % 7, &format!("v{i}")).unwrap();
            t.commit().unwrap();
        }
        engine.checkpoint().unwrap();
        let mut t = engine.begin();
        put(&mut t, kv, 3, "after").unwrap();
        t.commit().unwrap();
        drop(engine);
        disk
    };
    let (a, b) = (build(), build());
    let names = a.list().unwrap();
    assert_eq!(names, b.list().unwrap());
    assert!(names.iter().any(|n| n.ends_with(".eseg")));
    for n in names.iter().filter(|n| *n != "LOCK") {
        assert_eq!(a.contents(n), b.contents(n), "{n} differs");
    }
}

/// Row groups are slices of larger batches: their strings and NULL bitmaps
/// must be stored as their own rows only (regression: a slice used to write
/// its parent's whole values buffer and a bit-shifted null bitmap, making
/// segments huge and misplacing NULLs after the first row group).
#[test]
fn sliced_row_groups_keep_their_nulls_and_stay_small() {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let rows = 200_003usize;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("n", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let ids: Vec<i64> = (0..rows as i64).collect();
    let ns: Vec<Option<i64>> = ids.iter().map(|i| (i % 3 != 0).then_some(*i)).collect();
    let ss: Vec<Option<String>> = ids
        .iter()
        .map(|i| (i % 5 != 1).then(|| format!("value-{i}")))
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(ns.clone())),
            Arc::new(StringArray::from(ss.clone())),
        ],
    )
    .unwrap();
    let disk = SimDisk::new();
    {
        let engine = Engine::open(Arc::new(disk.clone()), EngineOptions::default()).unwrap();
        let mut t = engine.begin();
        let id = t.create_table("big", schema, vec![0]).unwrap().id;
        t.insert(id, &batch).unwrap();
        t.commit().unwrap();
        engine.checkpoint().unwrap();
    }
    let segment_bytes: usize = disk
        .list()
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("seg-"))
        .map(|n| disk.contents(n).unwrap().len())
        .sum();
    let engine = Engine::open(Arc::new(disk.clone()), EngineOptions::default()).unwrap();
    let mut t = engine.begin();
    let id = t.table("big").unwrap().id;
    let mut seen = 0;
    for b in t.scan(id, ScanRequest::default()).unwrap() {
        let b = b.unwrap();
        let id = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let n = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        let s = b.column(2).as_string::<i32>();
        for r in 0..b.num_rows() {
            let i = id.value(r) as usize;
            assert_eq!(n.is_valid(r), ns[i].is_some(), "row {i}");
            assert_eq!(
                s.is_valid(r).then(|| s.value(r).to_string()),
                ss[i],
                "row {i}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, rows);
    assert!(
        segment_bytes < rows * 80,
        "segments take {segment_bytes} bytes"
    );
}
