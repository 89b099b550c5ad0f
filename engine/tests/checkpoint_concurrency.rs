//! Checkpoints write segments without the commit lock (issue 12): commits
//! made while a checkpoint is writing its segments complete at once, and
//! their rows, deletes of rows the checkpoint is moving, and new tables all
//! survive the checkpoint's swap, a re-open and a power loss.
//!
//! A storage wrapper stops the checkpoint inside its first segment create
//! (phase B, see `checkpoint.rs`) until the test lets it go.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::storage::{FileHandle, LockGuard, PowerLoss, SimDisk, Storage};
use entidb_engine::{Engine, EngineOptions};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// SimDisk, except that the first segment create after `arm` blocks until
/// the test sends on `release`.
#[derive(Debug)]
struct Gated {
    disk: SimDisk,
    armed: AtomicBool,
    reached: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Storage for Gated {
    fn open(&self, name: &str, create: bool) -> io::Result<FileHandle> {
        if create && name.ends_with(".eseg") && self.armed.swap(false, Ordering::SeqCst) {
            if let Some(tx) = self.reached.lock().unwrap().take() {
                tx.send(()).unwrap();
            }
            if let Some(rx) = self.release.lock().unwrap().take() {
                rx.recv_timeout(Duration::from_secs(60)).unwrap();
            }
        }
        self.disk.open(name, create)
    }
    fn exists(&self, name: &str) -> io::Result<bool> {
        self.disk.exists(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.disk.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.disk.remove(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.disk.list()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.disk.sync_dir()
    }
    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.disk.lock()
    }
    fn describe(&self) -> String {
        self.disk.describe()
    }
}

fn commit_put(engine: &Engine, kv: u64, rows: &[(i64, &str)], model: &mut Model) {
    let mut t = engine.begin();
    for (id, v) in rows {
        put(&mut t, kv, *id, v).unwrap();
        model.insert(*id, v.to_string());
    }
    t.commit().unwrap();
}

fn commit_delete(engine: &Engine, kv: u64, ids: &[i64], model: &mut Model) {
    let mut t = engine.begin();
    let keys = keys_of(&mut t, kv, ids);
    t.delete(kv, &keys).unwrap();
    t.commit().unwrap();
    for id in ids {
        model.remove(id);
    }
}

#[test]
fn commits_during_a_checkpoint_complete_and_survive_it() {
    let disk = SimDisk::new();
    let (reached_tx, reached_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gated = Arc::new(Gated {
        disk: disk.clone(),
        armed: AtomicBool::new(false),
        reached: Mutex::new(Some(reached_tx)),
        release: Mutex::new(Some(release_rx)),
    });
    let engine = Engine::open(gated.clone(), EngineOptions::default()).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    let rows: Vec<(i64, String)> = (0..100).map(|i| (i, format!("v{i}"))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    commit_put(&engine, kv, &refs, &mut model);
    engine.checkpoint().unwrap();
    // The segment becomes worth compacting; a mem chunk joins it.
    commit_delete(&engine, kv, &(0..40).collect::<Vec<_>>(), &mut model);
    commit_put(
        &engine,
        kv,
        &[(100, "m100"), (101, "m101"), (105, "m105")],
        &mut model,
    );
    let covered = engine.visible_seq();

    gated.armed.store(true, Ordering::SeqCst);
    let checkpointer = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.checkpoint())
    };
    reached_rx.recv_timeout(Duration::from_secs(30)).unwrap();

    // The checkpoint is writing its segment. Commits must not wait for it.
    let (done_tx, done_rx) = mpsc::channel();
    let writer = {
        let engine = engine.clone();
        let mut model = model.clone();
        std::thread::spawn(move || {
            // An update and a delete of rows the checkpoint is moving (one in
            // the compacted segment, one in the mem chunk), a new row, a new
            // table.
            commit_put(&engine, kv, &[(50, "updated"), (200, "new")], &mut model);
            commit_delete(&engine, kv, &[60, 105], &mut model);
            let mut t = engine.begin();
            let other = t.create_table("other", kv_schema(), vec![0]).unwrap();
            t.insert(other.id, &kv_batch(&[(1, "o1")])).unwrap();
            t.commit().unwrap();
            done_tx.send(model).unwrap();
        })
    };
    let during = done_rx.recv_timeout(Duration::from_secs(20));
    release_tx.send(()).unwrap();
    let model = during.expect("commits waited for the checkpoint's segment write");
    writer.join().unwrap();
    checkpointer.join().unwrap().unwrap();

    assert_eq!(
        engine.checkpoint_seq(),
        covered,
        "it covers what it started with"
    );
    assert!(
        engine.wal_len() > 0,
        "the commits made meanwhile stay in the WAL"
    );
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    let mut t = engine.begin_read_only();
    assert_eq!(
        read_kv(&mut t, "other")
            .unwrap()
            .get(&1)
            .map(String::as_str),
        Some("o1")
    );
    drop(t);
    assert_eq!(engine.integrity_check(&[]).unwrap(), Vec::<String>::new());

    // Power loss: the manifest covers `covered`, the WAL the rest.
    drop(engine);
    disk.power_loss(PowerLoss::DropUnsynced).unwrap();
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    assert_eq!(engine.integrity_check(&[]).unwrap(), Vec::<String>::new());
    engine.checkpoint().unwrap();
    assert_eq!(engine.wal_len(), 0);
    drop(engine);
    let engine = open_sim(&disk, EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap(), model);
    let mut t = engine.begin_read_only();
    assert_eq!(read_kv(&mut t, "other").unwrap().len(), 1);
}
