//! Deterministic regression tests for races fixed earlier, forced with
//! failpoints (`fail` crate, compiled in by the engine's `failpoints`
//! feature for its tests).
//!
//! - ce3529f: an index lookup resolved row locations against the chunk list
//!   after releasing the index lock; a checkpoint in between swapped the
//!   chunks and the lookup missed rows. Paused at `lookup::resolve` (inside
//!   the index read lock), a checkpoint must not be able to swap.
//! - a99ecbc: a snapshot was read and registered in two steps; a checkpoint
//!   computing its GC horizon in between pruned the catalog version the
//!   snapshot needed (its tables vanished). Paused at `snapshot::take`
//!   (between the read and the registration), a checkpoint must not compute
//!   its horizon.
//! - an index lookup took its index, then DROP INDEX forgot it and a
//!   checkpoint rewrote every chunk without remapping it (only listed
//!   indexes are remapped): the lookup resolved stale locations and found
//!   nothing (seen as `k = 15 → []` against 16 rows by scan). Paused at
//!   `lookup::listed`, the forget must wait, or the lookup fall back.
//! - 88f13e4 (a committer waiting for durability across a WAL reset looped
//!   forever) is covered deterministically at the writer level:
//!   `wal::writer::tests::a_wait_after_a_reset_returns`.
//!
//! Failpoints are process-global: the tests here run one at a time.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::Engine;
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

/// How long a thread that must stay blocked is given to (wrongly) finish.
const GRACE: Duration = Duration::from_millis(300);

/// Rows 0..5 of `kv`, each committed alone (and checkpointed into a
/// segment of its own when `segments`), with the index over the key built
/// (the lookups below must not build it).
fn indexed_rows(segments: bool) -> (Engine, u64) {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    for i in 0..5 {
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&[(i, "x")])).unwrap();
        t.commit().unwrap();
        if segments {
            engine.checkpoint().unwrap();
        }
    }
    let mut t = engine.begin();
    t.build_index(kv, &[0]).unwrap();
    drop(t);
    (engine, kv)
}

/// A thread looking up key 4 through the index, in a read-only snapshot.
fn look_up_4(engine: &Engine, kv: u64) -> std::thread::JoinHandle<Vec<i64>> {
    let engine = engine.clone();
    std::thread::spawn(move || {
        let mut t = engine.begin_read_only();
        pk_lookup(&mut t, kv, 4)
    })
}

#[test]
fn a_lookup_resolving_locations_blocks_the_checkpoint_swap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (engine, kv) = indexed_rows(false);
    fail::cfg("lookup::resolve", "pause").unwrap();
    let reader = look_up_4(&engine, kv);
    std::thread::sleep(GRACE); // the reader is now paused in the lookup
    let checkpointer = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.checkpoint())
    };
    std::thread::sleep(GRACE);
    assert!(
        !checkpointer.is_finished(),
        "the checkpoint swapped chunks while a lookup held locations"
    );
    fail::remove("lookup::resolve");
    assert_eq!(reader.join().unwrap(), vec![4], "the lookup missed its row");
    checkpointer.join().unwrap().unwrap();
    let mut t = engine.begin_read_only();
    assert_eq!(pk_lookup(&mut t, kv, 4), vec![4]);
}

#[test]
fn a_snapshot_being_taken_holds_back_the_gc_horizon() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let engine = Engine::open_memory().unwrap();
    create_kv(&engine);
    let before = engine.visible_seq();
    // The writer takes its snapshot before the failpoint is armed.
    let mut t = engine.begin();
    let kv = t.table("kv").unwrap();
    fail::cfg("snapshot::take", "pause").unwrap();
    let reader = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let mut t = engine.begin_read_only();
            // Paused between reading visible_seq and registering it.
            let names: Vec<String> = t.tables().unwrap().into_iter().map(|d| d.name).collect();
            let catalog = t.catalog().unwrap();
            (names, catalog)
        })
    };
    std::thread::sleep(GRACE);
    // A later catalog version that drops the table: the commit completes,
    // then its snapshot's release waits for the registry.
    let writer = std::thread::spawn(move || {
        t.set_catalog(b"newer".to_vec()).unwrap();
        t.drop_table(kv.id).unwrap();
        t.commit().unwrap()
    });
    while engine.visible_seq() == before {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A checkpoint now would prune the catalog version the paused snapshot
    // needs, if it could compute its horizon.
    let checkpointer = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.checkpoint())
    };
    std::thread::sleep(GRACE);
    assert!(
        !checkpointer.is_finished(),
        "the checkpoint computed its GC horizon while a snapshot was being taken"
    );
    fail::remove("snapshot::take");
    let (names, catalog) = reader.join().unwrap();
    assert_eq!(names, vec!["kv".to_string()], "the snapshot lost its table");
    assert_ne!(catalog.as_slice(), b"newer");
    writer.join().unwrap();
    checkpointer.join().unwrap().unwrap();
}

#[test]
fn a_lookup_of_an_index_being_forgotten_never_misses_rows() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Five small segments: the next checkpoint compacts them all, so every
    // chunk id the index holds goes away.
    let (engine, kv) = indexed_rows(true);
    fail::cfg("lookup::listed", "pause").unwrap();
    let reader = look_up_4(&engine, kv);
    std::thread::sleep(GRACE); // the reader holds the index, paused
    let forgetter = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.forget_index(kv, &[0]))
    };
    std::thread::sleep(GRACE);
    let checkpointer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let mut t = engine.begin();
            t.insert(kv, &kv_batch(&[(9, "y")])).unwrap();
            t.commit().unwrap();
            engine.checkpoint()
        })
    };
    std::thread::sleep(GRACE);
    fail::remove("lookup::listed");
    assert_eq!(reader.join().unwrap(), vec![4], "the lookup missed its row");
    forgetter.join().unwrap().unwrap();
    checkpointer.join().unwrap().unwrap();
    let mut t = engine.begin_read_only();
    assert_eq!(pk_lookup(&mut t, kv, 4), vec![4]);
}

/// `n` rows of `kv` from id `from`, committed as one write-once load
/// (`load.rs`) on another thread, which pauses at `load::written` when
/// armed: its segment is written and synced, the commit lock not taken.
fn load_rows(engine: &Engine, kv: u64, from: i64, n: i64) -> std::thread::JoinHandle<u64> {
    let engine = engine.clone();
    std::thread::spawn(move || {
        let rows: Vec<(i64, &str)> = (from..from + n).map(|i| (i, "loaded")).collect();
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&rows)).unwrap();
        t.commit().unwrap()
    })
}

fn load_options() -> entidb_engine::EngineOptions {
    entidb_engine::EngineOptions {
        background_checkpoints: false,
        direct_load_rows: 100,
        ..entidb_engine::EngineOptions::default()
    }
}

/// A load's segment exists before its commit names it: an integrity check
/// or a checkpoint meanwhile must neither call it an orphan nor remove it,
/// and the load commits and survives a reopen.
#[test]
fn a_load_written_but_not_committed_is_no_orphan() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let disk = entidb_engine::storage::SimDisk::new();
    let engine = open_sim(&disk, load_options()).unwrap();
    let kv = create_kv(&engine);
    fail::cfg("load::written", "pause").unwrap();
    let loader = load_rows(&engine, kv, 0, 500);
    std::thread::sleep(GRACE);
    assert!(!loader.is_finished());
    assert_eq!(engine.integrity_check(&[]).unwrap(), Vec::<String>::new());
    engine.checkpoint().unwrap();
    fail::remove("load::written");
    loader.join().unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 500);
    assert_eq!(engine.integrity_check(&[]).unwrap(), Vec::<String>::new());
    drop(engine);
    let engine = open_sim(&disk, load_options()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 500);
    assert_eq!(engine.integrity_check(&[]).unwrap(), Vec::<String>::new());
}

/// A load committed while a checkpoint writes its segments (phase B) is
/// after the checkpoint: the manifest does not name its segment, the new
/// WAL keeps its record, and a reopen (after power loss) finds its rows.
#[test]
fn a_load_committed_during_checkpoint_phase_b_survives_the_wal_reset() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let disk = entidb_engine::storage::SimDisk::new();
    let engine = open_sim(&disk, load_options()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(-1, "small")])).unwrap();
    t.commit().unwrap();
    fail::cfg("checkpoint::segments", "pause").unwrap();
    let checkpointer = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.checkpoint())
    };
    std::thread::sleep(GRACE);
    load_rows(&engine, kv, 0, 500).join().unwrap();
    fail::remove("checkpoint::segments");
    checkpointer.join().unwrap().unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 501);
    assert_eq!(engine.integrity_check(&[]).unwrap(), Vec::<String>::new());
    let engine = crash_and_reopen(
        engine,
        &disk,
        entidb_engine::storage::PowerLoss::DropUnsynced,
        load_options(),
    );
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 501);
    assert_eq!(engine.integrity_check(&[]).unwrap(), Vec::<String>::new());
    engine.checkpoint().unwrap();
    drop(engine);
    let engine = open_sim(&disk, load_options()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 501);
    assert_eq!(engine.integrity_check(&[]).unwrap(), Vec::<String>::new());
}
