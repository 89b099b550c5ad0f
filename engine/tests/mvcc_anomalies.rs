//! Hermitage-style isolation tests: one test per anomaly. Snapshot isolation
//! prevents G0, G1a, G1b, G1c, OTV, PMP, P4 (lost update) and G-single (read
//! skew), and allows G2-item (write skew). Plus ABA, insert–insert,
//! delete–update and update–delete conflicts.
//!
//! Setup as in Hermitage: `test(id, value)` holding (1, 10) and (2, 20),
//! values stored as text in the `kv` helper table.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::{Engine, Error, ScanRequest, Transaction};

fn setup() -> (Engine, u64) {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "10"), (2, "20")])).unwrap();
    t.commit().unwrap();
    (engine, kv)
}

fn get(t: &mut Transaction, id: i64) -> Option<String> {
    read_kv(t, "kv").unwrap().get(&id).cloned()
}

fn set(t: &mut Transaction, kv: u64, id: i64, v: &str) -> Result<(), Error> {
    put(t, kv, id, v)
}

fn assert_conflict<T: std::fmt::Debug, E: Into<Error>>(r: Result<T, E>) {
    match r.map_err(Into::into) {
        Err(e @ Error::Conflict { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn committed(engine: &Engine) -> Model {
    snapshot_kv(engine).unwrap()
}

fn model(rows: &[(i64, &str)]) -> Model {
    rows.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

#[test]
fn g0_write_cycles_are_prevented() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    set(&mut t1, kv, 1, "11").unwrap();
    set(&mut t2, kv, 1, "12").unwrap();
    set(&mut t1, kv, 2, "21").unwrap();
    t1.commit().unwrap();
    // T2's write to 2 sees a version newer than its snapshot.
    assert_conflict(set(&mut t2, kv, 2, "22"));
    assert_conflict(t2.commit());
    assert_eq!(committed(&engine), model(&[(1, "11"), (2, "21")]));
}

#[test]
fn g1a_aborted_reads_are_prevented() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    set(&mut t1, kv, 1, "101").unwrap();
    assert_eq!(get(&mut t2, 1).as_deref(), Some("10"));
    t1.rollback();
    assert_eq!(get(&mut t2, 1).as_deref(), Some("10"));
    t2.commit().unwrap();
    assert_eq!(committed(&engine), model(&[(1, "10"), (2, "20")]));
}

#[test]
fn g1b_intermediate_reads_are_prevented() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    set(&mut t1, kv, 1, "101").unwrap();
    assert_eq!(get(&mut t2, 1).as_deref(), Some("10"));
    set(&mut t1, kv, 1, "11").unwrap();
    t1.commit().unwrap();
    assert_eq!(get(&mut t2, 1).as_deref(), Some("10"), "snapshot unchanged");
    let mut t3 = engine.begin();
    assert_eq!(get(&mut t3, 1).as_deref(), Some("11"), "never 101");
}

#[test]
fn g1c_circular_information_flow_is_prevented() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    set(&mut t1, kv, 1, "11").unwrap();
    set(&mut t2, kv, 2, "22").unwrap();
    assert_eq!(get(&mut t1, 2).as_deref(), Some("20"));
    assert_eq!(get(&mut t2, 1).as_deref(), Some("10"));
    t1.commit().unwrap();
    t2.commit().unwrap();
    assert_eq!(committed(&engine), model(&[(1, "11"), (2, "22")]));
}

#[test]
fn otv_observed_transaction_vanishes_is_prevented() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    let mut t3 = engine.begin();
    set(&mut t1, kv, 1, "11").unwrap();
    set(&mut t1, kv, 2, "19").unwrap();
    set(&mut t2, kv, 1, "12").unwrap();
    t1.commit().unwrap();
    // T3 took its snapshot before T1 committed? No: its first read is now.
    assert_eq!(get(&mut t3, 1).as_deref(), Some("11"));
    assert_conflict(set(&mut t2, kv, 2, "18"));
    assert_eq!(get(&mut t3, 2).as_deref(), Some("19"));
    assert_conflict(t2.commit());
    assert_eq!(get(&mut t3, 1).as_deref(), Some("11"));
    assert_eq!(get(&mut t3, 2).as_deref(), Some("19"));
}

#[test]
fn pmp_predicate_many_preceders_is_prevented() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let thirty = |t: &mut Transaction| {
        read_kv(t, "kv")
            .unwrap()
            .values()
            .filter(|v| v.as_str() == "30")
            .count()
    };
    assert_eq!(thirty(&mut t1), 0);
    let mut t2 = engine.begin();
    t2.insert(kv, &kv_batch(&[(3, "30")])).unwrap();
    t2.commit().unwrap();
    assert_eq!(thirty(&mut t1), 0, "the predicate result does not change");
}

#[test]
fn p4_lost_update_is_prevented() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    assert_eq!(get(&mut t1, 1).as_deref(), Some("10"));
    assert_eq!(get(&mut t2, 1).as_deref(), Some("10"));
    set(&mut t1, kv, 1, "11").unwrap();
    set(&mut t2, kv, 1, "11").unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
}

#[test]
fn g_single_read_skew_is_prevented() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    assert_eq!(get(&mut t1, 1).as_deref(), Some("10"));
    assert_eq!(get(&mut t2, 1).as_deref(), Some("10"));
    assert_eq!(get(&mut t2, 2).as_deref(), Some("20"));
    set(&mut t2, kv, 1, "12").unwrap();
    set(&mut t2, kv, 2, "18").unwrap();
    t2.commit().unwrap();
    assert_eq!(
        get(&mut t1, 2).as_deref(),
        Some("20"),
        "no skew: sum stays 30"
    );
}

/// Write skew (G2-item) IS allowed under snapshot isolation: both
/// transactions read both rows, write disjoint rows, and both commit.
#[test]
fn g2_item_write_skew_is_allowed() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    assert_eq!(read_kv(&mut t1, "kv").unwrap().len(), 2);
    assert_eq!(read_kv(&mut t2, "kv").unwrap().len(), 2);
    set(&mut t1, kv, 1, "11").unwrap();
    set(&mut t2, kv, 2, "21").unwrap();
    t1.commit().unwrap();
    t2.commit().unwrap();
    assert_eq!(committed(&engine), model(&[(1, "11"), (2, "21")]));
}

#[test]
fn aba_change_is_a_conflict() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    assert_eq!(get(&mut t1, 1).as_deref(), Some("10"));
    for v in ["B", "10"] {
        let mut t = engine.begin();
        set(&mut t, kv, 1, v).unwrap();
        t.commit().unwrap();
    }
    assert_eq!(committed(&engine).get(&1).map(String::as_str), Some("10"));
    assert_conflict(set(&mut t1, kv, 1, "C"));
}

#[test]
fn aba_change_after_the_write_is_a_conflict_at_commit() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    set(&mut t1, kv, 1, "C").unwrap();
    for v in ["B", "10"] {
        let mut t = engine.begin();
        set(&mut t, kv, 1, v).unwrap();
        t.commit().unwrap();
    }
    assert_conflict(t1.commit());
}

#[test]
fn concurrent_inserts_of_one_key_conflict() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    t1.insert(kv, &kv_batch(&[(3, "a")])).unwrap();
    t2.insert(kv, &kv_batch(&[(3, "b")])).unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
    assert_eq!(committed(&engine).get(&3).map(String::as_str), Some("a"));
}

#[test]
fn insert_delete_insert_by_others_is_a_conflict() {
    // Absent → present → absent is still a change (tombstones have identity).
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    assert!(get(&mut t1, 3).is_none());
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(3, "x")])).unwrap();
    t.commit().unwrap();
    let mut t = engine.begin();
    let keys = keys_of(&mut t, kv, &[3]);
    t.delete(kv, &keys).unwrap();
    t.commit().unwrap();
    assert_conflict(t1.insert(kv, &kv_batch(&[(3, "mine")])));
}

#[test]
fn delete_then_update_conflicts() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    let keys = keys_of(&mut t1, kv, &[1]);
    t1.delete(kv, &keys).unwrap();
    set(&mut t2, kv, 1, "99").unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
    assert!(!committed(&engine).contains_key(&1));
}

#[test]
fn update_then_delete_conflicts() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    set(&mut t1, kv, 1, "99").unwrap();
    let keys = keys_of(&mut t2, kv, &[1]);
    t2.delete(kv, &keys).unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
    assert_eq!(committed(&engine).get(&1).map(String::as_str), Some("99"));
}

#[test]
fn failed_commit_leaves_nothing_visible() {
    let (engine, kv) = setup();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    set(&mut t1, kv, 1, "11").unwrap();
    set(&mut t2, kv, 2, "22").unwrap();
    set(&mut t2, kv, 1, "12").unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
    assert_eq!(committed(&engine), model(&[(1, "11"), (2, "20")]));
}

#[test]
fn concurrent_create_table_conflicts() {
    let engine = Engine::open_memory().unwrap();
    let mut t1 = engine.begin();
    let mut t2 = engine.begin();
    t1.create_table("a", kv_schema(), vec![0]).unwrap();
    t2.create_table("a", kv_schema(), vec![0]).unwrap();
    t1.commit().unwrap();
    assert_conflict(t2.commit());
}

#[test]
fn statement_rollback_undoes_only_that_statement() {
    let (engine, kv) = setup();
    let mut t = engine.begin();
    set(&mut t, kv, 1, "11").unwrap();
    let sp = t.savepoint();
    set(&mut t, kv, 2, "22").unwrap();
    t.insert(kv, &kv_batch(&[(5, "5")])).unwrap();
    t.rollback_to(sp);
    assert_eq!(
        read_kv(&mut t, "kv").unwrap(),
        model(&[(1, "11"), (2, "20")])
    );
    t.commit().unwrap();
    assert_eq!(committed(&engine), model(&[(1, "11"), (2, "20")]));
}

/// Statement rollback after a delete and re-insert of the same key restores
/// the earlier row, and rolled-back new keys can be inserted again.
#[test]
fn statement_rollback_restores_reinserted_keys() {
    let (engine, kv) = setup();
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(7, "first")])).unwrap();
    let sp = t.savepoint();
    let keys = keys_of(&mut t, kv, &[7]);
    t.delete(kv, &keys).unwrap();
    t.insert(kv, &kv_batch(&[(7, "second"), (8, "new")]))
        .unwrap();
    t.rollback_to(sp);
    let m = read_kv(&mut t, "kv").unwrap();
    assert_eq!(m.get(&7).map(String::as_str), Some("first"));
    assert!(!m.contains_key(&8));
    t.insert(kv, &kv_batch(&[(8, "again")])).unwrap();
    assert!(matches!(
        t.insert(kv, &kv_batch(&[(7, "dup")])),
        Err(Error::ConstraintViolation { .. })
    ));
    t.commit().unwrap();
    let m = committed(&engine);
    assert_eq!(m[&7], "first");
    assert_eq!(m[&8], "again");
}

/// A guarded table (`guard_rows`): a transaction that checked every row
/// fails at commit when another commit wrote the table after its snapshot,
/// and commits when none did. Writes to other tables do not count. (The
/// checker changes the catalog: a transaction that changes nothing commits
/// nothing and is never validated.)
#[test]
fn a_guarded_table_conflicts_with_a_concurrent_writer_only() {
    let (engine, kv) = setup();
    let other = {
        let mut t = engine.begin();
        let def = t.create_table("other", kv_schema(), vec![0]).unwrap();
        t.commit().unwrap();
        def.id
    };
    let mut checker = engine.begin();
    checker.scan(kv, ScanRequest::default()).unwrap().count();
    checker.guard_rows(kv).unwrap();
    checker.touch_schema(kv).unwrap();
    checker
        .set_catalog(b"with a new constraint".to_vec())
        .unwrap();
    let mut writer = engine.begin();
    set(&mut writer, kv, 9, "new").unwrap();
    writer.commit().unwrap();
    assert_conflict(checker.commit());

    let mut checker = engine.begin();
    checker.guard_rows(kv).unwrap();
    checker.touch_schema(kv).unwrap();
    checker
        .set_catalog(b"with a new constraint".to_vec())
        .unwrap();
    let mut writer = engine.begin();
    set(&mut writer, other, 1, "elsewhere").unwrap();
    writer.commit().unwrap();
    checker.commit().unwrap();
}

fn id_keys(ids: &[Option<i64>]) -> Vec<arrow::array::ArrayRef> {
    vec![std::sync::Arc::new(arrow::array::Int64Array::from(
        ids.to_vec(),
    ))]
}

/// Key guards (`guard_keys`, foreign keys' parent check): a key found
/// among the committed rows must still be live at commit. A delete of it
/// committed first makes the guarding transaction conflict, with or
/// without a checkpoint in between; an update of the row does not. Own writes are seen and not guarded; NULL is absent.
#[test]
fn a_guarded_key_conflicts_with_a_concurrent_delete_only() {
    for checkpoint in [false, true] {
        let (engine, kv) = setup();
        let mut child = engine.begin();
        let found = child
            .guard_keys(kv, &id_keys(&[Some(1), Some(3), None]))
            .unwrap();
        assert_eq!(found, vec![true, false, false]);
        child.set_catalog(b"a child write".to_vec()).unwrap();
        let mut deleter = engine.begin();
        let keys = keys_of(&mut deleter, kv, &[1]);
        deleter.delete(kv, &keys).unwrap();
        deleter.commit().unwrap();
        if checkpoint {
            engine.checkpoint().unwrap();
        }
        assert_conflict(child.commit());
    }

    let (engine, kv) = setup();
    let mut child = engine.begin();
    assert_eq!(
        child.guard_keys(kv, &id_keys(&[Some(2)])).unwrap(),
        vec![true]
    );
    child.set_catalog(b"a child write".to_vec()).unwrap();
    let mut updater = engine.begin();
    set(&mut updater, kv, 2, "changed").unwrap();
    updater.commit().unwrap();
    child.commit().unwrap();

    // Own writes: an inserted key is found, a deleted one is not.
    let mut t = engine.begin();
    set(&mut t, kv, 5, "mine").unwrap();
    let keys = keys_of(&mut t, kv, &[1]);
    t.delete(kv, &keys).unwrap();
    assert_eq!(
        t.guard_keys(kv, &id_keys(&[Some(5), Some(1)])).unwrap(),
        vec![true, false]
    );
    // Keys of the wrong type are refused, never a panic.
    let text: Vec<arrow::array::ArrayRef> =
        vec![std::sync::Arc::new(arrow::array::StringArray::from(vec![
            "1",
        ]))];
    assert!(matches!(
        t.guard_keys(kv, &text),
        Err(Error::InvalidArgument(_))
    ));
}
