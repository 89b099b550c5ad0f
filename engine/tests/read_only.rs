//! Read-only opens (`FileStorage::open_read_only` + `EngineOptions::read_only`):
//! they see what recovery would recover, write nothing — not even the
//! repairs of a torn WAL tail — refuse every write, share the database with
//! other read-only opens and keep writers out.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::storage::FileStorage;
use entidb_engine::{CheckpointError, CommitError, Engine, EngineOptions, Error, OpenError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

fn read_only() -> EngineOptions {
    EngineOptions {
        read_only: true,
        ..EngineOptions::default()
    }
}

fn open_read_only(dir: &Path) -> Result<Engine, OpenError> {
    Engine::open(
        Arc::new(FileStorage::open_read_only(dir).unwrap()),
        read_only(),
    )
}

/// Every file of the directory with its bytes.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A database with a checkpointed row, a row only in the WAL, and a torn
/// WAL tail (a crash in the middle of an append).
fn database_with_torn_tail(dir: &Path) {
    let engine = Engine::open_dir(dir, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    put(&mut t, kv, 1, "in a segment").unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    let mut t = engine.begin();
    put(&mut t, kv, 2, "in the WAL").unwrap();
    t.commit().unwrap();
    drop(engine);
    let mut wal = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("WAL"))
        .unwrap();
    wal.write_all(&[0xAB; 37]).unwrap();
}

#[test]
fn a_read_only_open_recovers_in_memory_and_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    database_with_torn_tail(dir.path());
    let before = contents(dir.path());

    let engine = open_read_only(dir.path()).unwrap();
    assert!(engine.is_read_only());
    let want: Model = [(1, "in a segment"), (2, "in the WAL")]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    assert_eq!(snapshot_kv(&engine).unwrap(), want);
    drop(engine);

    // The torn tail is still there (a read-write open cuts it), and no
    // checkpoint ran on close.
    assert_eq!(contents(dir.path()), before);
    // The next read-write open recovers the same rows.
    let engine = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), want);
}

#[test]
fn every_write_and_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    database_with_torn_tail(dir.path());
    let engine = open_read_only(dir.path()).unwrap();
    let kv = engine.begin().table("kv").unwrap().id;

    let mut t = engine.begin();
    assert!(matches!(put(&mut t, kv, 3, "no"), Err(Error::ReadOnly)));
    assert!(matches!(
        t.create_table("other", kv_schema(), vec![0]),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(t.commit(), Ok(_) | Err(CommitError::ReadOnly)));
    assert!(matches!(
        engine.checkpoint(),
        Err(CheckpointError::ReadOnly)
    ));
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 2);
}

#[test]
fn read_only_opens_share_the_database_and_keep_writers_out() {
    let dir = tempfile::tempdir().unwrap();
    database_with_torn_tail(dir.path());
    let first = open_read_only(dir.path()).unwrap();
    let second = open_read_only(dir.path()).unwrap();
    assert_eq!(snapshot_kv(&first).unwrap(), snapshot_kv(&second).unwrap());
    let err = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    drop((first, second));

    // And a writer keeps read-only opens out.
    let writer = Engine::open_dir(dir.path(), EngineOptions::default()).unwrap();
    let err = open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    drop(writer);
}

#[test]
fn a_read_only_open_cannot_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::InvalidArgument(_)), "{err}");
    assert!(contents(dir.path()).is_empty(), "nothing was created");
    assert!(FileStorage::open_read_only(dir.path().join("missing")).is_err());
}
