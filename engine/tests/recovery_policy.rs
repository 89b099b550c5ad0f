//! The recovery policy of docs/recovery.md, one test per rule.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::storage::{Fault, PowerLoss, SimDisk, Storage};
use entidb_engine::{
    CheckpointError, CommitError, Engine, EngineOptions, Error, OpenError, StorageError,
};
use std::collections::BTreeMap;

fn file_images(disk: &SimDisk) -> BTreeMap<String, Vec<u8>> {
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

/// A database with `n` single-row commits in the WAL (no checkpoint).
fn wal_database(n: i64) -> (SimDisk, Model) {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    for i in 0..n {
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&[(i, "x")])).unwrap();
        t.commit().unwrap();
        model.insert(i, "x".into());
    }
    (disk, model)
}

/// Seed finding #2: a crash after the manifest is saved and before the WAL
/// is replaced must not re-apply checkpointed transactions, so segment
/// bytes stay constant however often it happens.
#[test]
fn crashes_inside_the_checkpoint_window_do_not_grow_segments() {
    let (disk, model) = wal_database(20);
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    // The WAL as a checkpoint leaves it when power is lost just before the
    // WAL is replaced: every commit, then the checkpoint's own record.
    disk.inject(Fault::CrashBefore {
        op: "rename",
        file: "WAL",
    })
    .unwrap();
    assert!(engine.checkpoint().is_err());
    drop(engine);
    disk.power_loss(PowerLoss::DropUnsynced).unwrap();
    let stale_wal = disk.contents("WAL").unwrap();
    let baseline = segment_bytes(&disk);
    assert!(baseline > 0);
    for round in 0..100 {
        disk.set_contents("WAL", stale_wal.clone()).unwrap();
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        assert_eq!(snapshot_kv(&engine).unwrap(), model, "round {round}");
        // Checkpoint again and lose power just before the WAL is replaced.
        disk.inject(Fault::CrashBefore {
            op: "rename",
            file: "WAL",
        })
        .unwrap();
        assert!(engine.checkpoint().is_err());
        drop(engine);
        disk.power_loss(PowerLoss::DropUnsynced).unwrap();
        assert_eq!(segment_bytes(&disk), baseline, "round {round}");
    }
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
}

#[test]
fn wal_cut_at_every_offset_of_its_last_record_recovers_the_prefix() {
    let (disk, model) = wal_database(5);
    let wal = disk.contents("WAL").unwrap();
    // The last transaction is the last commit; find where it starts by
    // building the same database with one commit fewer.
    let (shorter, mut prefix_model) = wal_database(4);
    let prefix = shorter.contents("WAL").unwrap();
    assert_eq!(&wal[..prefix.len()], &prefix[..], "deterministic WAL bytes");
    prefix_model.retain(|k, _| *k < 4);
    for cut in prefix.len()..wal.len() {
        let disk = SimDisk::new();
        for (name, bytes) in file_images(&shorter) {
            disk.open(&name, true).unwrap();
            disk.set_contents(&name, bytes).unwrap();
        }
        disk.sync_dir().unwrap();
        disk.set_contents("WAL", wal[..cut].to_vec()).unwrap();
        let engine = open_sim(&disk, EngineOptions::default())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(snapshot_kv(&engine).unwrap(), prefix_model, "cut at {cut}");
        assert_eq!(
            disk.contents("WAL").unwrap(),
            prefix,
            "cut at {cut}: WAL truncated to the valid prefix"
        );
    }
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    assert_eq!(
        snapshot_kv(&engine).unwrap(),
        model,
        "the uncut WAL is whole"
    );
}

#[test]
fn flipped_bit_in_a_middle_wal_record_is_corruption_and_changes_nothing() {
    let (disk, _) = wal_database(6);
    let mut wal = disk.contents("WAL").unwrap();
    let middle = wal.len() / 2;
    wal[middle] ^= 0x10;
    disk.set_contents("WAL", wal).unwrap();
    let before = file_images(&disk);
    let err = open_sim(&disk, EngineOptions::default()).unwrap_err();
    match &err {
        Error::Corruption { file, offset, .. } => {
            assert_eq!(file, "WAL");
            assert!(*offset as usize <= middle);
        }
        other => panic!("expected Corruption, got {other}"),
    }
    assert_eq!(file_images(&disk), before, "a failed open modifies nothing");
}

/// Every byte of the segment and manifest files flipped in turn: each open
/// (and full scan) returns the right data or a typed error, never a panic.
#[test]
fn every_byte_of_segment_and_manifest_flipped() {
    let (disk, model) = wal_database(8);
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    engine.checkpoint().unwrap();
    drop(engine);
    let images = file_images(&disk);
    let targets: Vec<&String> = images
        .keys()
        .filter(|n| n.ends_with(".eseg") || *n == "MANIFEST")
        .collect();
    assert!(targets.len() >= 2);
    let mut errors = 0;
    for name in targets {
        let original = &images[name];
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes[i] ^= 1 << (i % 8);
            disk.set_contents(name, bytes).unwrap();
            match open_sim(&disk, EngineOptions::default()).and_then(|e| snapshot_kv(&e)) {
                Ok(state) => assert_eq!(state, model, "{name} byte {i}: wrong data"),
                Err(Error::Corruption { .. } | Error::IncompatibleVersion { .. }) => errors += 1,
                Err(other) => panic!("{name} byte {i}: untyped failure {other}"),
            }
        }
        disk.set_contents(name, original.clone()).unwrap();
    }
    assert!(errors > 0);
}

#[test]
fn failed_fsync_poisons_and_is_never_acknowledged() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    disk.inject(Fault::SyncFailsAt(disk.sync_count() + 1))
        .unwrap();
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "lost?")])).unwrap();
    let err = t.commit().unwrap_err();
    assert!(
        matches!(err, CommitError::Storage(StorageError::Poisoned { .. })),
        "{err}"
    );
    // Every later write is refused, even though the disk works again.
    let mut t = engine.begin();
    assert!(matches!(
        t.insert(kv, &kv_batch(&[(2, "x")])),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        engine.checkpoint(),
        Err(CheckpointError::Storage(StorageError::Poisoned { .. }))
    ));
    assert!(snapshot_kv(&engine).unwrap().is_empty(), "never visible");
    // Re-opening after the machine restarts recovers what is durable.
    let engine = crash_and_reopen(
        engine,
        &disk,
        PowerLoss::DropUnsynced,
        EngineOptions::default(),
    );
    assert!(snapshot_kv(&engine).unwrap().is_empty());
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(3, "ok")])).unwrap();
    t.commit().unwrap();
}

#[test]
fn injected_eio_and_enospc_on_append_poison() {
    for fault in [Fault::EioAt(0), Fault::NoSpaceAt(0)] {
        let disk = SimDisk::new();
        let engine = open_sim(&disk, EngineOptions::default()).unwrap();
        let kv = create_kv(&engine);
        let next = disk.op_count() + 1;
        let fault = match fault {
            Fault::EioAt(_) => Fault::EioAt(next),
            _ => Fault::NoSpaceAt(next),
        };
        disk.inject(fault).unwrap();
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&[(1, "x")])).unwrap();
        assert!(t.commit().is_err());
        assert!(matches!(
            engine.check_healthy(),
            Err(Error::Poisoned { .. })
        ));
    }
}

#[test]
fn wal_without_manifest_is_corruption() {
    let (disk, _) = wal_database(2);
    disk.remove("MANIFEST").unwrap();
    disk.sync_dir().unwrap();
    let err = Engine::open(std::sync::Arc::new(disk), EngineOptions::default()).unwrap_err();
    assert!(
        matches!(err, OpenError::Storage(StorageError::Corruption { .. })),
        "{err}"
    );
}
