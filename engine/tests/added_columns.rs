//! ADD COLUMN without a rewrite (`Transaction::add_columns`): rows stored
//! before read the column's fill, in every place rows are read — scans of
//! mem chunks, segments and the transaction's own rows, index lookups,
//! checkpoints that merge chunks of both widths, WAL replay, reopen — and
//! a snapshot from before the ALTER keeps seeing the old columns. Ends with
//! power loss at every I/O operation of a workload that adds columns.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use common::{crash_and_reopen, create_kv, kv_batch, kv_schema, open_sim, small_checkpoints};
use entidb_engine::storage::{PowerLoss, SimDisk};
use entidb_engine::{Engine, EngineOptions, Error, IndexScanRequest, KeyRange, ScanRequest};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One row as read: `id`, then every other column printed (`NULL`).
type Rows = BTreeMap<i64, Vec<String>>;

fn cell(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return "NULL".into();
    }
    match a.data_type() {
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        other => panic!("unexpected type {other}"),
    }
}

fn rows_of(batches: impl IntoIterator<Item = RecordBatch>) -> Rows {
    let mut out = Rows::new();
    for b in batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let rest = (1..b.num_columns())
                .map(|c| cell(b.column(c).as_ref(), i))
                .collect();
            assert!(out.insert(ids.value(i), rest).is_none(), "duplicate row");
        }
    }
    out
}

fn scan(t: &mut entidb_engine::Transaction, table: u64) -> Rows {
    rows_of(
        t.scan(table, ScanRequest::default())
            .unwrap()
            .map(|b| b.unwrap()),
    )
}

fn read(engine: &Engine, table: u64) -> Rows {
    scan(&mut engine.begin_read_only(), table)
}

/// The row keys of the rows with the given ids (`common::keys_of` for a
/// table of any width: the key is the last column).
fn keys_of(t: &mut entidb_engine::Transaction, table: u64, ids: &[i64]) -> BinaryArray {
    let req = ScanRequest {
        include_key: true,
        ..ScanRequest::default()
    };
    let mut keys = Vec::new();
    for batch in t.scan(table, req).unwrap() {
        let batch = batch.unwrap();
        let id = batch.column(0).as_primitive::<Int64Type>();
        let key = batch.column(batch.num_columns() - 1).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            if ids.contains(&id.value(i)) {
                keys.push(key.value(i).to_vec());
            }
        }
    }
    BinaryArray::from_iter_values(keys)
}

fn row(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn int_fill(v: Option<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(vec![v]))
}

fn text_fill(v: Option<&str>) -> ArrayRef {
    Arc::new(StringArray::from(vec![v]))
}

/// Adds `n BIGINT` (fill `fill`) to `kv` and commits.
fn add_n(engine: &Engine, kv: u64, fill: Option<i64>) {
    let mut t = engine.begin();
    t.add_columns(
        kv,
        vec![Field::new("n", DataType::Int64, true)],
        vec![int_fill(fill)],
    )
    .unwrap();
    t.commit().unwrap();
}

/// A `(id, v, n)` batch.
fn kvn_batch(rows: &[(i64, &str, Option<i64>)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

#[test]
fn old_rows_read_the_fill_everywhere_and_old_snapshots_keep_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "a"), (2, "b")])).unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap(); // rows 1, 2 in a segment
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(3, "c")])).unwrap();
    t.commit().unwrap(); // row 3 in a mem chunk
    let mut before = engine.begin_read_only();
    assert_eq!(scan(&mut before, kv).len(), 3);

    add_n(&engine, kv, Some(7));
    let mut t = engine.begin();
    t.insert(kv, &kvn_batch(&[(4, "d", Some(40)), (5, "e", None)]))
        .unwrap();
    t.commit().unwrap();
    let expected = Rows::from([
        (1, row(&["a", "7"])),
        (2, row(&["b", "7"])),
        (3, row(&["c", "7"])),
        (4, row(&["d", "40"])),
        (5, row(&["e", "NULL"])),
    ]);
    assert_eq!(read(&engine, kv), expected);
    // The snapshot from before sees two columns, before and after a
    // checkpoint widens the old rows into one segment.
    let old = Rows::from([(1, row(&["a"])), (2, row(&["b"])), (3, row(&["c"]))]);
    assert_eq!(before.table_by_id(kv).unwrap().schema.fields().len(), 2);
    assert_eq!(scan(&mut before, kv), old);
    engine.checkpoint().unwrap();
    assert_eq!(scan(&mut before, kv), old);
    drop(before);
    assert_eq!(read(&engine, kv), expected);

    // An index over the added column finds old rows by their fill.
    let lookup = |engine: &Engine, n: i64| -> Vec<i64> {
        let (keys, _) = entidb_engine::index::index_keys(&[int_fill(Some(n))]).unwrap();
        let req = IndexScanRequest {
            index: vec![2],
            ranges: vec![KeyRange::point(keys.value(0).to_vec())],
            projection: None,
            include_key: false,
            max_candidates: None,
            build: true,
        };
        let mut t = engine.begin_read_only();
        let found = t.index_scan(kv, &req).unwrap().unwrap();
        rows_of(found).into_keys().collect()
    };
    assert_eq!(lookup(&engine, 7), vec![1, 2, 3]);
    assert_eq!(lookup(&engine, 40), vec![4]);
    assert!(engine.integrity_check(&[]).unwrap().is_empty());

    // Reopen: the manifest keeps the fill.
    drop(engine);
    let engine = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(read(&engine, kv), expected);
    assert_eq!(lookup(&engine, 7), vec![1, 2, 3]);
    assert!(engine.integrity_check(&[]).unwrap().is_empty());
}

#[test]
fn segments_of_every_width_merge_and_replay_after_a_crash() {
    let disk = SimDisk::new();
    let options = small_checkpoints();
    let engine = open_sim(&disk, options.clone()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "a")])).unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    add_n(&engine, kv, None);
    let mut t = engine.begin();
    t.insert(kv, &kvn_batch(&[(2, "b", Some(2))])).unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap(); // a narrow and a wide segment
    let mut t = engine.begin();
    t.add_columns(
        kv,
        vec![Field::new("s", DataType::Utf8, false)],
        vec![text_fill(Some("x"))],
    )
    .unwrap();
    t.commit().unwrap();
    // Not checkpointed: the ALTER is replayed from the WAL.
    let engine = crash_and_reopen(engine, &disk, PowerLoss::DropUnsynced, options.clone());
    let expected = Rows::from([(1, row(&["a", "NULL", "x"])), (2, row(&["b", "2", "x"]))]);
    assert_eq!(read(&engine, kv), expected);
    // Deletes and many checkpoints: compaction merges the widths.
    for i in 10..200 {
        let mut t = engine.begin();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("v", DataType::Utf8, true),
                Field::new("n", DataType::Int64, true),
                Field::new("s", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![i])),
                Arc::new(StringArray::from(vec!["w"])),
                Arc::new(Int64Array::from(vec![i])),
                Arc::new(StringArray::from(vec!["y"])),
            ],
        )
        .unwrap();
        t.insert(kv, &batch).unwrap();
        if i % 3 == 0 {
            let keys = keys_of(&mut t, kv, &[i - 1]);
            t.delete(kv, &keys).unwrap();
        }
        t.commit().unwrap();
    }
    let rows = read(&engine, kv);
    assert_eq!(rows.get(&1), Some(&row(&["a", "NULL", "x"])));
    assert_eq!(rows.get(&2), Some(&row(&["b", "2", "x"])));
    assert_eq!(rows.get(&100), Some(&row(&["w", "100", "y"])));
    assert!(!rows.contains_key(&101));
    assert!(engine.integrity_check(&[]).unwrap().is_empty());
    let engine = crash_and_reopen(engine, &disk, PowerLoss::DropUnsynced, options);
    assert_eq!(read(&engine, kv), rows);
}

#[test]
fn a_writer_from_before_the_alter_conflicts() {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let mut old = engine.begin();
    old.insert(kv, &kv_batch(&[(1, "a")])).unwrap();
    add_n(&engine, kv, Some(1));
    let err = old.commit().unwrap_err();
    assert!(matches!(Error::from(err), Error::Conflict { .. }));
    // Two concurrent ALTERs: the second conflicts.
    let mut a = engine.begin();
    let mut b = engine.begin();
    a.add_columns(
        kv,
        vec![Field::new("x", DataType::Int64, true)],
        vec![int_fill(None)],
    )
    .unwrap();
    b.add_columns(
        kv,
        vec![Field::new("y", DataType::Int64, true)],
        vec![int_fill(None)],
    )
    .unwrap();
    a.commit().unwrap();
    assert!(b.commit().is_err());
    assert_eq!(
        engine
            .begin_read_only()
            .table_by_id(kv)
            .unwrap()
            .schema
            .fields()
            .len(),
        4
    );
}

/// Review finding: a column another transaction added and committed (and a
/// checkpoint stored) at the position of this transaction's own added
/// column is another column: this transaction reads its own fill, and
/// cannot commit; adding after the other committed fails at once.
#[test]
fn concurrent_alters_never_read_each_others_columns() {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "a")])).unwrap();
    t.commit().unwrap();
    let mut a = engine.begin();
    a.add_columns(
        kv,
        vec![Field::new("y", DataType::Int64, true)],
        vec![int_fill(Some(7))],
    )
    .unwrap();
    add_n(&engine, kv, Some(5));
    engine.checkpoint().unwrap();
    assert_eq!(scan(&mut a, kv), Rows::from([(1, row(&["a", "7"]))]));
    assert!(a.commit().is_err());
    assert_eq!(read(&engine, kv), Rows::from([(1, row(&["a", "5"]))]));

    let mut b = engine.begin();
    assert_eq!(scan(&mut b, kv).len(), 1);
    let mut t = engine.begin();
    t.add_columns(
        kv,
        vec![Field::new("z", DataType::Int64, true)],
        vec![int_fill(None)],
    )
    .unwrap();
    t.commit().unwrap();
    let err = b
        .add_columns(
            kv,
            vec![Field::new("w", DataType::Int64, true)],
            vec![int_fill(Some(1))],
        )
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
}

#[test]
fn own_rows_widen_and_a_savepoint_undoes_the_add() {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "a")])).unwrap();
    t.commit().unwrap();

    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(2, "b")])).unwrap();
    let sp = t.savepoint();
    t.add_columns(
        kv,
        vec![Field::new("n", DataType::Int64, true)],
        vec![int_fill(Some(5))],
    )
    .unwrap();
    assert_eq!(
        scan(&mut t, kv),
        Rows::from([(1, row(&["a", "5"])), (2, row(&["b", "5"]))])
    );
    t.rollback_to(sp);
    assert_eq!(
        scan(&mut t, kv),
        Rows::from([(1, row(&["a"])), (2, row(&["b"]))])
    );
    t.add_columns(
        kv,
        vec![Field::new("n", DataType::Int64, true)],
        vec![int_fill(Some(6))],
    )
    .unwrap();
    t.insert(kv, &kvn_batch(&[(3, "c", Some(30))])).unwrap();
    // Its own rows hold the column it added: their values, not the fill.
    assert_eq!(scan(&mut t, kv).get(&3), Some(&row(&["c", "30"])));
    t.commit().unwrap();
    assert_eq!(
        read(&engine, kv),
        Rows::from([
            (1, row(&["a", "6"])),
            (2, row(&["b", "6"])),
            (3, row(&["c", "30"]))
        ])
    );

    // A table created in the transaction: its own rows widen, no fill stays.
    let mut t = engine.begin();
    let def = t.create_table("fresh", kv_schema(), vec![0]).unwrap();
    t.insert(def.id, &kv_batch(&[(1, "a")])).unwrap();
    let new = t
        .add_columns(
            def.id,
            vec![Field::new("n", DataType::Int64, true)],
            vec![int_fill(Some(9))],
        )
        .unwrap();
    assert!(new.fills.is_empty());
    t.commit().unwrap();
    assert_eq!(read(&engine, def.id), Rows::from([(1, row(&["a", "9"]))]));

    // Review finding: undoing an ADD COLUMN the transaction made before
    // touching the table (the schema touch made its own table state, with
    // the new columns) leaves the old columns; a commit of narrow rows
    // after it must not fail (it panicked in arrow's concat).
    let mut t = engine.begin();
    let sp = t.savepoint();
    t.add_columns(
        kv,
        vec![Field::new("m", DataType::Int64, true)],
        vec![int_fill(None)],
    )
    .unwrap();
    t.rollback_to(sp);
    t.insert(kv, &kvn_batch(&[(7, "g", Some(70))])).unwrap();
    t.commit().unwrap();
    let mut t = engine.begin();
    let made = t.create_table("made", kv_schema(), vec![0]).unwrap();
    let sp = t.savepoint();
    t.add_columns(
        made.id,
        vec![Field::new("n", DataType::Int64, true)],
        vec![int_fill(None)],
    )
    .unwrap();
    t.insert(made.id, &kvn_batch(&[(1, "a", Some(1))])).unwrap();
    t.rollback_to(sp);
    t.insert(made.id, &kv_batch(&[(2, "b")])).unwrap();
    t.commit().unwrap();
    assert_eq!(read(&engine, made.id), Rows::from([(2, row(&["b"]))]));

    // A NULL fill of a NOT NULL column is refused.
    let mut t = engine.begin();
    let err = t
        .add_columns(
            kv,
            vec![Field::new("m", DataType::Int64, false)],
            vec![int_fill(None)],
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotNullViolation { .. }), "{err}");
}

/// The rows after each prefix of the crash workload (`models[i]`: after
/// `i` commits), and the workload itself.
const STEPS: usize = 60;

fn apply(m: &mut Rows, width: &mut usize, i: usize) {
    match i {
        1 => {}
        20 => *width = 3, // ADD COLUMN n, fill 7
        40 => *width = 4, // ADD COLUMN s, fill NULL
        _ => {
            let id = (i % 13) as i64;
            let mut r = vec![format!("v{i}")];
            if *width >= 3 {
                r.push(i.to_string());
            }
            if *width >= 4 {
                r.push(format!("s{i}"));
            }
            m.insert(id, r);
            if i.is_multiple_of(4) {
                m.remove(&(((i * 5) % 13) as i64));
            }
        }
    }
    if i == 20 {
        m.values_mut().for_each(|r| r.push("7".into()));
    }
    if i == 40 {
        m.values_mut().for_each(|r| r.push("NULL".into()));
    }
}

fn run(engine: &Engine, i: usize, width: usize) -> entidb_engine::Result<()> {
    let mut t = engine.begin();
    if i == 1 {
        t.create_table("kv", kv_schema(), vec![0])?;
        return t.commit().map(|_| ()).map_err(Error::from);
    }
    let kv = t.table("kv")?.id;
    match i {
        20 => {
            t.add_columns(
                kv,
                vec![Field::new("n", DataType::Int64, true)],
                vec![int_fill(Some(7))],
            )?;
        }
        40 => {
            t.add_columns(
                kv,
                vec![Field::new("s", DataType::Utf8, true)],
                vec![text_fill(None)],
            )?;
        }
        _ => {
            let id = (i % 13) as i64;
            let keys = keys_of(&mut t, kv, &[id]);
            if !keys.is_empty() {
                t.delete(kv, &keys)?;
            }
            let mut fields = vec![
                Field::new("id", DataType::Int64, false),
                Field::new("v", DataType::Utf8, true),
            ];
            let mut cols: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(vec![id])),
                Arc::new(StringArray::from(vec![format!("v{i}")])),
            ];
            if width >= 3 {
                fields.push(Field::new("n", DataType::Int64, true));
                cols.push(Arc::new(Int64Array::from(vec![i as i64])));
            }
            if width >= 4 {
                fields.push(Field::new("s", DataType::Utf8, true));
                cols.push(Arc::new(StringArray::from(vec![format!("s{i}")])));
            }
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
            t.insert(kv, &batch)?;
            if i.is_multiple_of(4) {
                let gone = ((i * 5) % 13) as i64;
                let keys = keys_of(&mut t, kv, &[gone]);
                if !keys.is_empty() {
                    t.delete(kv, &keys)?;
                }
            }
        }
    }
    t.commit().map(|_| ()).map_err(Error::from)
}

fn workload_options() -> EngineOptions {
    EngineOptions {
        checkpoint_wal_bytes: 4 * 1024,
        background_checkpoints: false,
        ..EngineOptions::default()
    }
}

/// Runs the workload until an I/O error; returns how many steps committed.
fn run_until_error(disk: &SimDisk) -> usize {
    let Ok(engine) = open_sim(disk, workload_options()) else {
        return 0;
    };
    let mut width = 2;
    let mut m = Rows::new();
    for i in 1..=STEPS {
        if run(&engine, i, width).is_err() {
            return i - 1;
        }
        apply(&mut m, &mut width, i);
    }
    STEPS
}

fn state(engine: &Engine) -> Option<Rows> {
    let mut t = engine.begin_read_only();
    let def = t.table("kv").ok()?;
    Some(scan(&mut t, def.id))
}

#[test]
fn power_loss_at_every_io_operation_of_a_workload_that_adds_columns() {
    let mut models = vec![None];
    let mut m = Rows::new();
    let mut width = 2;
    for i in 1..=STEPS {
        apply(&mut m, &mut width, i);
        models.push(Some(m.clone()));
    }
    let disk = SimDisk::new();
    assert_eq!(run_until_error(&disk), STEPS);
    let total_ops = disk.op_count();
    let engine = open_sim(&disk, workload_options()).unwrap();
    assert_eq!(state(&engine), models[STEPS]);
    // The last checkpoint is after both ALTERs, with narrow segments from
    // before them.
    assert!(
        engine.checkpoint_seq() > 40,
        "checkpointed at {}",
        engine.checkpoint_seq()
    );
    eprintln!("{total_ops} I/O operations");
    drop(engine);
    for k in 0..=total_ops {
        let (disk, acked) = common::crash_at(k, run_until_error);
        let engine = open_sim(&disk, workload_options())
            .unwrap_or_else(|e| panic!("crash at op {k}: reopen failed: {e}"));
        let got = state(&engine);
        let ok = (acked..=(acked + 1).min(STEPS)).any(|n| models[n] == got);
        assert!(
            ok,
            "crash at op {k}: state matches no prefix in {acked}..={}",
            acked + 1
        );
        assert!(
            engine.integrity_check(&[]).unwrap().is_empty(),
            "crash at op {k}"
        );
    }
}
