//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::array::{Array, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use entidb_engine::storage::{PowerLoss, SimDisk, TornFill};
use entidb_engine::{Engine, EngineOptions, Result, ScanRequest, Transaction};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `kv(id BIGINT PRIMARY KEY, v TEXT)`.
pub fn kv_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]))
}

pub fn kv_batch(rows: &[(i64, &str)]) -> RecordBatch {
    RecordBatch::try_new(
        kv_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

pub type Model = BTreeMap<i64, String>;

/// Creates table `kv` and commits it.
pub fn create_kv(engine: &Engine) -> u64 {
    let mut t = engine.begin();
    let def = t.create_table("kv", kv_schema(), vec![0]).unwrap();
    t.commit().unwrap();
    def.id
}

/// Reads table `name` as a map, in transaction `t`.
pub fn read_kv(t: &mut Transaction, name: &str) -> Result<Model> {
    let def = t.table(name)?;
    let mut out = Model::new();
    for batch in t.scan(def.id, ScanRequest::default())? {
        let batch = batch?;
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let vs = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            assert!(
                out.insert(ids.value(i), vs.value(i).to_string()).is_none(),
                "duplicate key {} in scan",
                ids.value(i)
            );
        }
    }
    Ok(out)
}

/// Reads `kv` in a fresh read-only transaction.
pub fn snapshot_kv(engine: &Engine) -> Result<Model> {
    read_kv(&mut engine.begin_read_only(), "kv")
}

/// Keys of the rows of `kv` with the given ids, as the engine encodes them.
pub fn keys_of(t: &mut Transaction, table: u64, ids: &[i64]) -> BinaryArray {
    let mut keys = Vec::new();
    let req = ScanRequest {
        include_key: true,
        ..ScanRequest::default()
    };
    for batch in t.scan(table, req).unwrap() {
        let batch = batch.unwrap();
        let id = batch.column(0).as_primitive::<Int64Type>();
        let key = batch.column(2).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            if ids.contains(&id.value(i)) {
                keys.push(key.value(i).to_vec());
            }
        }
    }
    BinaryArray::from_iter_values(keys)
}

/// Upserts `(id, v)`: deletes the old row if any and inserts the new one.
pub fn put(t: &mut Transaction, table: u64, id: i64, v: &str) -> Result<()> {
    let keys = keys_of(t, table, &[id]);
    if !keys.is_empty() {
        t.delete(table, &keys)?;
    }
    t.insert(table, &kv_batch(&[(id, v)]))?;
    Ok(())
}

pub fn open_sim(disk: &SimDisk, options: EngineOptions) -> Result<Engine> {
    Ok(Engine::open(Arc::new(disk.clone()), options)?)
}

/// Drops the engine, loses power, and reopens.
pub fn crash_and_reopen(
    engine: Engine,
    disk: &SimDisk,
    mode: PowerLoss,
    options: EngineOptions,
) -> Engine {
    drop(engine);
    disk.power_loss(mode).unwrap();
    open_sim(disk, options).unwrap()
}

pub fn small_checkpoints() -> EngineOptions {
    EngineOptions {
        checkpoint_wal_bytes: 16 * 1024,
        // Deterministic I/O order: the crash points are enumerated.
        background_checkpoints: false,
        ..EngineOptions::default()
    }
}

pub fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

pub fn len_of(a: &dyn Array) -> usize {
    a.len()
}

/// Total bytes of all segment files on `disk`.
pub fn segment_bytes(disk: &SimDisk) -> usize {
    use entidb_engine::storage::Storage;
    disk.list()
        .unwrap()
        .iter()
        .filter(|n| n.ends_with(".eseg"))
        .map(|n| disk.contents(n).unwrap().len())
        .sum()
}

/// Every file of `disk` but the LOCK, with its bytes (for "changes nothing"
/// checks and for rebuilding a disk).
pub fn files(disk: &SimDisk) -> BTreeMap<String, Vec<u8>> {
    use entidb_engine::storage::Storage;
    disk.list()
        .unwrap()
        .into_iter()
        .filter(|n| n != "LOCK")
        .map(|n| {
            let bytes = disk.contents(&n).unwrap();
            (n, bytes)
        })
        .collect()
}

/// The ids of the rows with primary key `id` of `kv`, found through the
/// primary-key index.
pub fn pk_lookup(t: &mut Transaction, kv: u64, id: i64) -> Vec<i64> {
    let value: arrow::array::ArrayRef = Arc::new(Int64Array::from(vec![id]));
    let (keys, _) = entidb_engine::index::index_keys(&[value]).unwrap();
    let req = entidb_engine::IndexScanRequest {
        index: vec![0],
        ranges: vec![entidb_engine::KeyRange::point(keys.value(0).to_vec())],
        projection: None,
        include_key: false,
        max_candidates: None,
        build: true,
    };
    t.index_scan(kv, &req)
        .unwrap()
        .unwrap()
        .iter()
        .flat_map(ids)
        .collect()
}

/// Runs `workload` on a fresh disk that crashes after `k` I/O operations,
/// then loses power — dropping unsynced writes for even `k`, tearing the
/// last write (garbage after 0–2 kept sectors) for odd `k` — and returns
/// the disk with what `workload` returned (typically the steps it saw
/// committed).
pub fn crash_at<T>(k: u64, workload: impl FnOnce(&SimDisk) -> T) -> (SimDisk, T) {
    lose_power_after(SimDisk::new(), k, workload)
}

/// [`crash_at`] on a disk that already holds something: it crashes after
/// `k` more I/O operations.
pub fn lose_power_after<T>(
    disk: SimDisk,
    k: u64,
    workload: impl FnOnce(&SimDisk) -> T,
) -> (SimDisk, T) {
    disk.crash_after(k).unwrap();
    let out = workload(&disk);
    let mode = if k.is_multiple_of(2) {
        PowerLoss::DropUnsynced
    } else {
        PowerLoss::TearLastWrite {
            sectors_kept: (k % 3) as usize,
            fill: TornFill::Garbage,
        }
    };
    disk.power_loss(mode).unwrap();
    (disk, out)
}

/// Ids of the rows of `kv` with `v = value`, through the index on `v`
/// (built if it was not); each id must come once.
pub fn ids_with_v(
    engine: &Engine,
    kv: u64,
    value: &str,
) -> Result<std::collections::BTreeSet<i64>> {
    let probe: arrow::array::ArrayRef = Arc::new(StringArray::from(vec![value]));
    let (keys, _) = entidb_engine::index::index_keys(&[probe]).unwrap();
    let req = entidb_engine::IndexScanRequest {
        index: vec![1],
        ranges: vec![entidb_engine::KeyRange::point(keys.value(0).to_vec())],
        projection: Some(vec![0]),
        include_key: false,
        max_candidates: None,
        build: true,
    };
    let mut t = engine.begin_read_only();
    let batches = t.index_scan(kv, &req)?.expect("index answered");
    let mut out = std::collections::BTreeSet::new();
    for b in &batches {
        for id in b.column(0).as_primitive::<Int64Type>().values() {
            assert!(out.insert(*id), "id {id} twice");
        }
    }
    Ok(out)
}
