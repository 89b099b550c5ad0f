//! `Engine::integrity_check` (PRAGMA integrity_check) finds every flipped
//! byte of every file of a live database, plain and encrypted, reports
//! nothing on an intact one, and is read-only.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::storage::{EncryptedStorage, Secret, SimDisk, Storage};
use entidb_engine::{Engine, EngineOptions};
use std::sync::Arc;

const KEY: [u8; 32] = [3; 32];

/// A database with three segments, a UNIQUE index on `v`, deletes, and a
/// WAL tail of two commits; returns the engine and the UNIQUE set.
fn build(disk: &SimDisk, encrypted: bool) -> (Engine, Vec<(u64, Vec<usize>)>) {
    let storage: Arc<dyn Storage> = if encrypted {
        Arc::new(EncryptedStorage::open(Arc::new(disk.clone()), Secret::Key(KEY)).unwrap())
    } else {
        Arc::new(disk.clone())
    };
    let engine = Engine::open(storage, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    for round in 0..3i64 {
        let mut t = engine.begin();
        t.declare_unique(kv, &[1]).unwrap();
        let rows: Vec<(i64, String)> = (0..20)
            .map(|i| (round * 100 + i, format!("r{round}-{i}")))
            .collect();
        let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
        t.insert(kv, &kv_batch(&refs)).unwrap();
        t.commit().unwrap();
        let mut t = engine.begin();
        let keys = keys_of(&mut t, kv, &[round * 100 + 3]);
        t.delete(kv, &keys).unwrap();
        t.commit().unwrap();
        engine.checkpoint().unwrap();
    }
    let mut t = engine.begin();
    t.build_index(kv, &[1]).unwrap();
    put(&mut t, kv, 5, "updated").unwrap();
    t.commit().unwrap();
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1000, "tail")])).unwrap();
    t.commit().unwrap();
    (engine, vec![(kv, vec![1])])
}

fn every_flip_is_found(encrypted: bool) {
    let disk = SimDisk::new();
    let (engine, unique) = build(&disk, encrypted);
    assert_eq!(
        engine.integrity_check(&unique).unwrap(),
        Vec::<String>::new()
    );
    let names: Vec<String> = disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n != "LOCK")
        .collect();
    assert!(names.iter().filter(|n| n.ends_with(".eseg")).count() >= 3);
    assert!(names.iter().filter(|n| n.starts_with("ix-")).count() >= 3);
    let mut flips = 0;
    let mut missed = Vec::new();
    for name in &names {
        let original = disk.contents(name).unwrap();
        // Every byte of small files; every 3rd byte of larger ones and
        // every 5th of index runs (each chunk, block, field and checksum is
        // still hit many times).
        let step = if name.starts_with("ix-") {
            5
        } else if original.len() > 1024 {
            3
        } else {
            1
        };
        for i in (0..original.len()).step_by(step) {
            let mut damaged = original.clone();
            damaged[i] ^= 1 << (i % 8);
            disk.set_contents(name, damaged.clone()).unwrap();
            let problems = engine.integrity_check(&unique).unwrap();
            if problems.is_empty() {
                missed.push(format!("{name}@{i}/{}", original.len()));
            }
            assert_eq!(disk.contents(name).unwrap(), damaged, "the check wrote");
            flips += 1;
        }
        disk.set_contents(name, original).unwrap();
    }
    assert_eq!(
        engine.integrity_check(&unique).unwrap(),
        Vec::<String>::new()
    );
    assert!(
        missed.is_empty(),
        "encrypted = {encrypted}: {} of {flips} flips not found: {missed:?}",
        missed.len()
    );
    eprintln!("encrypted = {encrypted}: {flips} flips, all found");
}

#[test]
fn every_flipped_byte_of_a_plain_database_is_found() {
    every_flip_is_found(false);
}

#[test]
fn every_flipped_byte_of_an_encrypted_database_is_found() {
    every_flip_is_found(true);
}

/// Orphan segments, a missing segment and a swapped pair are problems too.
#[test]
fn missing_orphan_and_swapped_files_are_found() {
    let disk = SimDisk::new();
    let (engine, unique) = build(&disk, false);
    let segments: Vec<String> = disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".eseg"))
        .collect();
    let a = disk.contents(&segments[0]).unwrap();
    let b = disk.contents(&segments[1]).unwrap();
    disk.set_contents(&segments[0], b.clone()).unwrap();
    disk.set_contents(&segments[1], a.clone()).unwrap();
    assert!(!engine.integrity_check(&unique).unwrap().is_empty(), "swap");
    disk.set_contents(&segments[0], a.clone()).unwrap();
    disk.set_contents(&segments[1], b).unwrap();

    disk.open("seg-00000000000000ff.eseg", true).unwrap();
    let problems = engine.integrity_check(&unique).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("orphan")),
        "{problems:?}"
    );
    disk.remove("seg-00000000000000ff.eseg").unwrap();

    disk.remove(&segments[0]).unwrap();
    assert!(
        !engine.integrity_check(&unique).unwrap().is_empty(),
        "missing"
    );
    disk.open(&segments[0], true).unwrap();
    disk.set_contents(&segments[0], a).unwrap();
    assert_eq!(
        engine.integrity_check(&unique).unwrap(),
        Vec::<String>::new()
    );
}
