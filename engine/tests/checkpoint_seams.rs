//! Transactions that stay open across a concurrent checkpoint.
//!
//! A checkpoint moves rows into new segments (new chunk ids, new row
//! numbers) and forgets tombstones no snapshot needs. Nothing a transaction
//! remembers about committed rows may go stale because of that: its own
//! deletes stay deleted, its updates replace exactly one version, and its
//! before-images still validate. Each test here failed before the fix named
//! in its doc comment.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::Engine;

fn setup(rows: &[(i64, &str)]) -> (Engine, u64) {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(rows)).unwrap();
    t.commit().unwrap();
    (engine, kv)
}

fn model(rows: &[(i64, &str)]) -> Model {
    rows.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Issue 12.1: own deletes were keyed by chunk id, and a checkpoint renumbers
/// chunks, so the deleted row came back (to scans and index lookups) and an
/// UPDATE over the table committed it back.
#[test]
fn a_row_deleted_in_an_open_transaction_stays_deleted_across_a_checkpoint() {
    for checkpoint_first in [false, true] {
        let (engine, kv) = setup(&[(1, "a"), (2, "b"), (3, "c")]);
        if checkpoint_first {
            // Rows already in a segment: the checkpoint below compacts it
            // (a third of it deleted is not enough, so delete two).
            engine.checkpoint().unwrap();
        }
        let mut t = engine.begin();
        let keys = keys_of(&mut t, kv, &[1]);
        assert_eq!(t.delete(kv, &keys).unwrap(), 1);
        assert_eq!(read_kv(&mut t, "kv").unwrap(), model(&[(2, "b"), (3, "c")]));

        // Another connection commits and checkpoints: rows move.
        let mut other = engine.begin();
        other.insert(kv, &kv_batch(&[(9, "z")])).unwrap();
        other.commit().unwrap();
        engine.checkpoint().unwrap();

        assert_eq!(
            read_kv(&mut t, "kv").unwrap(),
            model(&[(2, "b"), (3, "c")]),
            "scan after checkpoint (checkpoint_first = {checkpoint_first})"
        );
        assert!(pk_lookup(&mut t, kv, 1).is_empty(), "index lookup of 1");
        assert_eq!(pk_lookup(&mut t, kv, 2), vec![2]);
        // "UPDATE kv SET v = v || '!'" over every visible row.
        let visible = read_kv(&mut t, "kv").unwrap();
        for (id, v) in &visible {
            put(&mut t, kv, *id, &format!("{v}!")).unwrap();
        }
        t.commit().unwrap();
        assert_eq!(
            snapshot_kv(&engine).unwrap(),
            model(&[(2, "b!"), (3, "c!"), (9, "z")])
        );
    }
}

/// Issue 12.1, second form: an updated row showed both its old and its new
/// version after another connection's checkpoint.
#[test]
fn an_updated_row_shows_one_version_across_a_checkpoint() {
    let (engine, kv) = setup(&[(1, "a"), (2, "b")]);
    let mut t = engine.begin();
    put(&mut t, kv, 1, "a2").unwrap();
    engine.checkpoint().unwrap();
    // read_kv asserts that no key appears twice.
    assert_eq!(
        read_kv(&mut t, "kv").unwrap(),
        model(&[(1, "a2"), (2, "b")])
    );
    let mut ids = pk_lookup(&mut t, kv, 1);
    ids.sort_unstable();
    assert_eq!(ids, vec![1]);
    t.commit().unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model(&[(1, "a2"), (2, "b")]));
}

/// Compaction moves a hidden row out of a segment, and later checkpoints
/// (small segments among many are rewritten) move it again.
#[test]
fn own_deletes_survive_compaction_and_repeated_moves() {
    let rows: Vec<(i64, String)> = (0..40).map(|i| (i, format!("v{i}"))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    let (engine, kv) = setup(&refs);
    engine.checkpoint().unwrap();
    // More than a quarter of the segment dead before t's snapshot: the next
    // checkpoint compacts it while t is open.
    let mut other = engine.begin();
    let victims: Vec<i64> = (10..25).collect();
    let keys = keys_of(&mut other, kv, &victims);
    other.delete(kv, &keys).unwrap();
    other.commit().unwrap();

    let mut t = engine.begin();
    let keys = keys_of(&mut t, kv, &[5, 6]);
    t.delete(kv, &keys).unwrap();
    for round in 0..7 {
        let mut other = engine.begin();
        other
            .insert(kv, &kv_batch(&[(100 + round, "new")]))
            .unwrap();
        other.commit().unwrap();
        engine.checkpoint().unwrap();
        let seen = read_kv(&mut t, "kv").unwrap();
        assert!(
            !seen.contains_key(&5) && !seen.contains_key(&6),
            "round {round}: {seen:?}"
        );
        assert_eq!(seen.len(), 40 - 15 - 2, "round {round}");
        assert!(pk_lookup(&mut t, kv, 5).is_empty(), "round {round}");
        assert_eq!(pk_lookup(&mut t, kv, 7), vec![7], "round {round}");
    }
    t.commit().unwrap();
    let after = snapshot_kv(&engine).unwrap();
    assert!(!after.contains_key(&5) && !after.contains_key(&6));
    assert_eq!(after.len(), 40 - 15 - 2 + 7);
}

/// Issue 12.5: a re-insert's before-image was the tombstone's hash; a
/// checkpoint that forgot the tombstone then made the commit a spurious
/// `Conflict`.
#[test]
fn reinserting_a_deleted_key_commits_after_the_tombstone_is_forgotten() {
    let (engine, kv) = setup(&[(1, "a"), (2, "b")]);
    let mut d = engine.begin();
    let keys = keys_of(&mut d, kv, &[1]);
    d.delete(kv, &keys).unwrap();
    d.commit().unwrap();

    let mut t = engine.begin();
    assert!(!read_kv(&mut t, "kv").unwrap().contains_key(&1));
    t.insert(kv, &kv_batch(&[(1, "again")])).unwrap();
    // The oldest snapshot is t's, which already sees the delete: the
    // checkpoint forgets the tombstone.
    engine.checkpoint().unwrap();
    t.commit().unwrap();
    assert_eq!(
        snapshot_kv(&engine).unwrap(),
        model(&[(1, "again"), (2, "b")])
    );
}

/// The same tombstone rule must still catch a concurrent insert-and-delete
/// of the key (the A→B→A case): that is a write-write conflict.
#[test]
fn a_concurrent_insert_and_delete_of_a_dead_key_still_conflicts() {
    let (engine, kv) = setup(&[(1, "a")]);
    let mut d = engine.begin();
    let keys = keys_of(&mut d, kv, &[1]);
    d.delete(kv, &keys).unwrap();
    d.commit().unwrap();

    let mut t = engine.begin();
    assert!(read_kv(&mut t, "kv").unwrap().is_empty());
    t.insert(kv, &kv_batch(&[(1, "t")])).unwrap();

    let mut o = engine.begin();
    o.insert(kv, &kv_batch(&[(1, "o")])).unwrap();
    o.commit().unwrap();
    let mut o = engine.begin();
    let keys = keys_of(&mut o, kv, &[1]);
    o.delete(kv, &keys).unwrap();
    o.commit().unwrap();
    engine.checkpoint().unwrap();

    match t.commit() {
        Err(entidb_engine::CommitError::Conflict { .. }) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}
