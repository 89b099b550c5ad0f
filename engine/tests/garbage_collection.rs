//! Garbage collection keeps every version an open snapshot can see and drops
//! the rest.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::EngineOptions;
use entidb_engine::storage::SimDisk;

#[test]
fn checkpoint_keeps_versions_open_snapshots_see_and_drops_the_rest() {
    let disk = SimDisk::new();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    let initial: Vec<(i64, String)> = (0..200).map(|i| (i, format!("old{i}"))).collect();
    let rows: Vec<(i64, &str)> = initial.iter().map(|(k, v)| (*k, v.as_str())).collect();
    t.insert(kv, &kv_batch(&rows)).unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    let old = snapshot_kv(&engine).unwrap();

    // A reader pins the current snapshot.
    let mut reader = engine.begin_read_only();
    assert_eq!(read_kv(&mut reader, "kv").unwrap(), old);

    // Rewrite every row twice and checkpoint: the old segment is mostly
    // deleted, so it is compacted, but its versions are still visible.
    for round in 0..2 {
        let mut t = engine.begin();
        for i in 0..200 {
            put(&mut t, kv, i, &format!("new{round}-{i}")).unwrap();
        }
        t.commit().unwrap();
        engine.checkpoint().unwrap();
    }
    assert_eq!(
        read_kv(&mut reader, "kv").unwrap(),
        old,
        "open snapshot kept"
    );
    let pinned = segment_bytes(&disk);
    drop(reader);

    // With no snapshot open, the next checkpoint may drop the old versions.
    let mut t = engine.begin();
    put(&mut t, kv, 0, "last").unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    let collected = segment_bytes(&disk);
    assert!(
        collected < pinned,
        "old versions collected: {collected} bytes vs {pinned} while pinned"
    );
    let now = snapshot_kv(&engine).unwrap();
    assert_eq!(now.len(), 200);
    assert_eq!(now[&0], "last");
    assert_eq!(now[&1], "new1-1");
    drop(engine);
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), now);
}
