//! Recovery never destroys data (issue 11) and a commit is never reported
//! failed after it happened (issue 12.2).
//!
//! The rule these tests hold the engine to: an open either succeeds with
//! every acknowledged commit, or is refused with a corruption error and
//! leaves every file exactly as it was. Each test failed on the code before
//! its fix (named in its doc comment).

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::storage::{Fault, SimDisk, Storage};
use entidb_engine::{Engine, EngineOptions, Error};
use std::collections::BTreeMap;

/// Puts every file back as in `files` and removes the others.
fn restore(disk: &SimDisk, files: &BTreeMap<String, Vec<u8>>) {
    for name in disk.list().unwrap() {
        if name != "LOCK" && !files.contains_key(&name) {
            disk.remove(&name).unwrap();
        }
    }
    for (name, bytes) in files {
        if disk.contents(name).is_none() {
            disk.open(name, true).unwrap();
        }
        disk.set_contents(name, bytes.clone()).unwrap();
    }
}

fn closing() -> EngineOptions {
    EngineOptions {
        checkpoint_on_close: true,
        ..EngineOptions::default()
    }
}

fn commit_rows(engine: &Engine, kv: u64, model: &mut Model, rows: &[(i64, &str)]) {
    let mut t = engine.begin();
    for (id, v) in rows {
        put(&mut t, kv, *id, v).unwrap();
        model.insert(*id, v.to_string());
    }
    t.commit().unwrap();
}

/// A database whose segment holds rows 0..10 and whose WAL holds two more
/// commits that update segment rows (so replaying them reads the segment's
/// key columns). Closed without a checkpoint, as after `kill -9`.
fn database_with_replay() -> (SimDisk, Model) {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    let rows: Vec<(i64, String)> = (0..10).map(|i| (i, format!("v{i}"))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    commit_rows(&engine, kv, &mut model, &refs);
    engine.checkpoint().unwrap();
    commit_rows(&engine, kv, &mut model, &[(1, "one"), (20, "twenty")]);
    commit_rows(&engine, kv, &mut model, &[(2, "two")]);
    drop(engine);
    (disk, model)
}

/// Issue 11.1: the open failed on a damaged segment chunk that the replay
/// reads, and the half-built engine's close-time checkpoint then saved a
/// manifest counting the unreplayed commits as checkpointed and emptied the
/// WAL: the next open succeeded without them.
#[test]
fn a_refused_open_changes_no_file_and_loses_no_commit() {
    let (disk, model) = database_with_replay();
    let before = files(&disk);
    let segment = before
        .keys()
        .find(|n| n.ends_with(".eseg"))
        .unwrap()
        .clone();
    let original = before[&segment].clone();
    let mut refused_in_replay = 0;
    // Every byte but the trailer's: column chunks (some read by the replay),
    // then the footer (checked before the replay).
    for i in (16..original.len() - 24).step_by(3) {
        let mut damaged = original.clone();
        damaged[i] ^= 0x40;
        disk.set_contents(&segment, damaged).unwrap();
        let damaged_files = files(&disk);
        match open_sim(&disk, closing()) {
            Ok(engine) => drop(engine),
            Err(Error::Corruption { reason, .. }) => {
                refused_in_replay += usize::from(reason.contains("column chunk"));
                assert_eq!(
                    files(&disk),
                    damaged_files,
                    "byte {i}: a refused open changed files"
                );
            }
            Err(other) => panic!("byte {i}: {other}"),
        }
        disk.set_contents(&segment, original.clone()).unwrap();
        // Whatever happened, the undamaged database has every commit.
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        assert_eq!(snapshot_kv(&engine).unwrap(), model, "byte {i}");
        drop(engine);
        // A successful open checkpointed on close: start the next case
        // from the crashed state again.
        restore(&disk, &before);
    }
    assert!(
        refused_in_replay > 0,
        "no damage was detected by the replay"
    );
}

/// Issue 11.2: without MANIFEST an open created a new, empty database and
/// deleted every segment.
#[test]
fn a_missing_manifest_is_refused_and_deletes_nothing() {
    for checkpointed in [true, false] {
        let disk = SimDisk::new();
        let engine = open_sim(&disk, closing()).unwrap();
        let kv = create_kv(&engine);
        let mut model = Model::new();
        commit_rows(&engine, kv, &mut model, &[(1, "a"), (2, "b")]);
        if !checkpointed {
            engine.checkpoint().unwrap();
            commit_rows(&engine, kv, &mut model, &[(3, "c")]);
            std::mem::forget(engine); // kill -9: no close-time checkpoint
            disk.power_loss(entidb_engine::storage::PowerLoss::DropUnsynced)
                .unwrap();
        } else {
            drop(engine);
        }
        let manifest = disk.contents("MANIFEST").unwrap();
        disk.remove("MANIFEST").unwrap();
        let before = files(&disk);
        match open_sim(&disk, closing()) {
            Err(Error::Corruption { file, reason, .. }) => {
                assert_eq!(file, "MANIFEST");
                assert!(reason.contains("missing"), "{reason}");
            }
            other => panic!("expected Corruption, got {:?}", other.map(|_| ())),
        }
        assert_eq!(files(&disk), before, "checkpointed = {checkpointed}");
        // Put it back: nothing was lost.
        let f = disk.open("MANIFEST", true).unwrap();
        f.append(&manifest).unwrap();
        f.sync().unwrap();
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        assert_eq!(snapshot_kv(&engine).unwrap(), model);
    }
}

/// A crash while a new database is created (WAL written, MANIFEST not yet)
/// is not a lost manifest: the open creates the database.
#[test]
fn a_database_interrupted_at_creation_opens_as_new() {
    let disk = SimDisk::new();
    drop(open_sim(&disk, EngineOptions::default()).unwrap());
    disk.remove("MANIFEST").unwrap();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    commit_rows(&engine, kv, &mut model, &[(1, "a")]);
    drop(engine);
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
}

/// Issue 11.4: an older copy of MANIFEST was accepted: stale rows came back,
/// newer commits vanished and newer segments were deleted as orphans.
#[test]
fn an_older_manifest_is_refused_and_deletes_nothing() {
    for wal_tail in [false, true] {
        let disk = SimDisk::new();
        let engine = open_sim(&disk, closing()).unwrap();
        let kv = create_kv(&engine);
        let mut model = Model::new();
        commit_rows(&engine, kv, &mut model, &[(1, "a"), (2, "b")]);
        engine.checkpoint().unwrap();
        let old_manifest = disk.contents("MANIFEST").unwrap();
        commit_rows(&engine, kv, &mut model, &[(1, "a2"), (3, "c")]);
        engine.checkpoint().unwrap();
        if wal_tail {
            commit_rows(&engine, kv, &mut model, &[(4, "d")]);
            std::mem::forget(engine);
            disk.power_loss(entidb_engine::storage::PowerLoss::DropUnsynced)
                .unwrap();
        } else {
            drop(engine);
        }
        let current = disk.contents("MANIFEST").unwrap();
        disk.set_contents("MANIFEST", old_manifest.clone()).unwrap();
        let before = files(&disk);
        match open_sim(&disk, closing()) {
            Err(Error::Corruption { file, reason, .. }) => {
                assert_eq!(file, "MANIFEST", "{reason}");
                assert!(reason.contains("older"), "{reason}");
            }
            other => panic!(
                "wal_tail {wal_tail}: expected Corruption, got {:?}",
                other.map(|_| ())
            ),
        }
        assert_eq!(files(&disk), before, "wal_tail = {wal_tail}");
        disk.set_contents("MANIFEST", current).unwrap();
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        assert_eq!(snapshot_kv(&engine).unwrap(), model);
    }
}

/// The converse: an older copy of the WAL (which lost the commits since) is
/// refused too.
#[test]
fn an_older_wal_is_refused() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, closing()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    commit_rows(&engine, kv, &mut model, &[(1, "a")]);
    engine.checkpoint().unwrap();
    commit_rows(&engine, kv, &mut model, &[(2, "b")]);
    let old_wal = disk.contents("WAL").unwrap();
    engine.checkpoint().unwrap();
    commit_rows(&engine, kv, &mut model, &[(3, "c")]);
    std::mem::forget(engine);
    disk.power_loss(entidb_engine::storage::PowerLoss::DropUnsynced)
        .unwrap();
    disk.set_contents("WAL", old_wal).unwrap();
    let before = files(&disk);
    match open_sim(&disk, EngineOptions::default()) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, "WAL"),
        other => panic!("expected Corruption, got {:?}", other.map(|_| ())),
    }
    assert_eq!(files(&disk), before);
}

/// Issue 11.5: a record header torn by a crash during its first sector
/// (magic written, then zeros) was refused as "unknown major version 0".
#[test]
fn a_torn_record_header_is_a_torn_tail() {
    let (disk, model) = {
        let disk = SimDisk::new();
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        let kv = create_kv(&engine);
        let mut model = Model::new();
        commit_rows(&engine, kv, &mut model, &[(1, "a")]);
        commit_rows(&engine, kv, &mut model, &[(2, "b")]);
        drop(engine);
        (disk, model)
    };
    let mut wal = disk.contents("WAL").unwrap();
    let clean_len = wal.len();
    wal.extend_from_slice(b"EWAL");
    wal.extend_from_slice(&[0u8; 508]);
    disk.set_contents("WAL", wal).unwrap();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    drop(engine);
    assert_eq!(disk.contents("WAL").unwrap().len(), clean_len, "tail cut");
}

/// Issue 11.6: a flipped version byte read as "incompatible format, open it
/// with a newer EntiDB". Checksums come first; a version that is really
/// different (consistent, checksummed) is still `IncompatibleVersion`.
#[test]
fn flipped_version_bytes_are_corruption_not_a_newer_format() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, closing()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    commit_rows(&engine, kv, &mut model, &[(1, "a")]);
    drop(engine);
    let segment = files(&disk)
        .into_keys()
        .find(|n| n.ends_with(".eseg"))
        .unwrap();
    let seg = disk.contents(&segment).unwrap();
    let manifest = disk.contents("MANIFEST").unwrap();
    let trailer_major = seg.len() - 8; // … major u16 | minor u16 | magic 4
    let cases: Vec<(&str, usize, Vec<u8>)> = vec![
        ("MANIFEST", 4, manifest.clone()),
        ("MANIFEST", 5, manifest.clone()),
        (segment.as_str(), 4, seg.clone()),
        (segment.as_str(), trailer_major, seg.clone()),
    ];
    for (name, at, original) in cases {
        let mut damaged = original.clone();
        damaged[at] ^= 0x02;
        disk.set_contents(name, damaged).unwrap();
        match open_sim(&disk, EngineOptions::default()) {
            Err(Error::Corruption { .. }) => {}
            other => panic!(
                "{name} byte {at}: expected Corruption, got {:?}",
                other.map(|_| ())
            ),
        }
        disk.set_contents(name, original).unwrap();
    }
    // A segment written by another major version says so in both places.
    let mut newer = seg.clone();
    newer[4] = 9;
    newer[trailer_major] = 9;
    disk.set_contents(&segment, newer).unwrap();
    match open_sim(&disk, EngineOptions::default()) {
        Err(Error::IncompatibleVersion { .. }) => {}
        other => panic!("expected IncompatibleVersion, got {:?}", other.map(|_| ())),
    }
    disk.set_contents(&segment, seg).unwrap();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
}

/// Issue 12.2: the threshold checkpoint ran inline after the commit was
/// published, and its failure was returned as the commit's: the application
/// retried a commit that had happened. Now the commit succeeds, the failed
/// checkpoint poisons later writes, and the data survives a re-open.
#[test]
fn a_failed_threshold_checkpoint_never_fails_the_commit() {
    for background in [false, true] {
        let disk = SimDisk::new();
        let options = EngineOptions {
            checkpoint_wal_bytes: 1,
            background_checkpoints: background,
            ..EngineOptions::default()
        };
        let engine = open_sim(&disk, options.clone()).unwrap();
        let kv = create_kv(&engine);
        // CREATE TABLE crossed the threshold too: let its checkpoint finish.
        engine.wait_for_background_checkpoint();
        // The commit's own fdatasync is the next sync; the checkpoint's
        // first (its segment's) fails.
        disk.inject(Fault::SyncFailsAt(disk.sync_count() + 2))
            .unwrap();
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&[(1, "kept")])).unwrap();
        let seq = t.commit().expect("the commit is durable and visible");
        assert!(seq > 0);
        assert_eq!(snapshot_kv(&engine).unwrap().len(), 1);
        engine.wait_for_background_checkpoint();
        assert!(
            matches!(engine.check_healthy(), Err(Error::Poisoned { .. })),
            "background = {background}"
        );
        let mut t = engine.begin();
        assert!(matches!(
            t.insert(kv, &kv_batch(&[(2, "x")])),
            Err(Error::Poisoned { .. })
        ));
        drop(t);
        let engine = crash_and_reopen(
            engine,
            &disk,
            entidb_engine::storage::PowerLoss::DropUnsynced,
            options,
        );
        assert_eq!(
            snapshot_kv(&engine).unwrap().get(&1).map(String::as_str),
            Some("kept")
        );
    }
}

/// Background checkpoints keep the WAL bounded and the last handle's drop
/// waits for a running one, so the database can be re-opened at once.
#[test]
fn background_checkpoints_run_and_finish_before_close() {
    let disk = SimDisk::new();
    let options = EngineOptions {
        checkpoint_wal_bytes: 4 * 1024,
        ..EngineOptions::default()
    };
    let engine = open_sim(&disk, options.clone()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    let mut max_wal = 0;
    for i in 0..300 {
        commit_rows(&engine, kv, &mut model, &[(i % 50, &format!("value {i}"))]);
        max_wal = max_wal.max(engine.wal_len());
    }
    assert!(engine.checkpoint_seq() > 0, "a background checkpoint ran");
    assert!(max_wal < 64 * 1024, "the WAL stayed small: {max_wal}");
    drop(engine);
    let engine = open_sim(&disk, options).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
}
