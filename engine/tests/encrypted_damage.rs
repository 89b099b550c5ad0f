//! Damaged encrypted files are refused with `Corruption` (file + offset) and
//! left untouched; only a genuinely torn tail — bytes of the last append — may
//! be cut. A wrong key is still `WrongKey`.
//!
//! - WAL: every byte of every chunk header (three masks) and a sample of
//!   ciphertext/tag bytes of every chunk, in a WAL with single-chunk and
//!   multi-chunk appends. Damage before the last append (so at least two
//!   commits follow it) must be refused, files byte-identical; damage inside
//!   the last append may lose only that commit.
//! - WAL header slots: every byte; never a silent loss.
//! - MANIFEST: every byte (two masks) of a populated database and of a fresh
//!   one; always `Corruption` naming `MANIFEST`, never `WrongKey`, never
//!   "not encrypted", never `IncompatibleVersion`, never a success.
//! - Wrong key / passphrase: still `WrongKey`, also when a file is damaged.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::storage::{
    EncryptedStorage, FileHandle, LockGuard, Secret, SimDisk, Storage, StorageFile, eio,
};
use entidb_engine::{Engine, EngineOptions, Error};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const KEY: [u8; 32] = [7; 32];
const SLOTS: usize = 256;

fn options() -> EngineOptions {
    EngineOptions {
        background_checkpoints: false,
        ..EngineOptions::default()
    }
}

fn open_enc(disk: &SimDisk, secret: Secret) -> Result<Engine, Error> {
    let storage = EncryptedStorage::open(Arc::new(disk.clone()), secret)?;
    Ok(Engine::open(Arc::new(storage), options())?)
}

fn open_and_read(disk: &SimDisk) -> Result<Model, Error> {
    let engine = open_enc(disk, Secret::Key(KEY))?;
    snapshot_kv(&engine)
}

type Images = BTreeMap<String, Vec<u8>>;

fn images(disk: &SimDisk) -> Images {
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

fn restore(disk: &SimDisk, images: &Images) {
    for name in disk.list().unwrap() {
        if name != "LOCK" && !images.contains_key(&name) {
            disk.remove(&name).unwrap();
        }
    }
    for (name, bytes) in images {
        disk.open(name, true).unwrap();
        disk.set_contents(name, bytes.clone()).unwrap();
    }
    disk.sync_dir().unwrap();
}

/// `(physical offset, size)` of every chunk of an encrypted file image.
fn chunks(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = SLOTS;
    while at + 32 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let size = 16 + len + 16;
        assert!(at + size <= bytes.len(), "undamaged image parses");
        out.push((at, size));
        at += size;
    }
    assert_eq!(at, bytes.len());
    out
}

/// A WAL database: table `kv`, then `COMMITS` commits, one of them larger
/// than a chunk (a multi-chunk append). Returns the disk, the model after each
/// commit, and the physical WAL length after each commit.
struct WalDb {
    disk: SimDisk,
    /// `(WAL length after the commit, model after it)`, starting with the
    /// state after `CREATE TABLE`.
    commits: Vec<(usize, Model)>,
}

const COMMITS: i64 = 6;
const BIG: i64 = 3;

fn wal_db() -> WalDb {
    wal_db_reopened_before(None)
}

/// Like [`wal_db`]; with `Some(i)`, the engine is closed and re-opened before
/// commit `i`, so that the WAL's two header slots hold different epochs.
fn wal_db_reopened_before(reopen: Option<i64>) -> WalDb {
    let disk = SimDisk::new();
    let mut engine = open_enc(&disk, Secret::Key(KEY)).unwrap();
    let kv = create_kv(&engine);
    let wal_len = |d: &SimDisk| d.contents("WAL").unwrap().len();
    let mut model = Model::new();
    let mut commits = vec![(wal_len(&disk), model.clone())];
    let big = "B".repeat(70 * 1024);
    for i in 0..COMMITS {
        if reopen == Some(i) {
            drop(engine);
            engine = open_enc(&disk, Secret::Key(KEY)).unwrap();
        }
        let v = if i == BIG {
            big.clone()
        } else {
            format!("value-{i}")
        };
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&[(i, &v)])).unwrap();
        t.commit().unwrap();
        model.insert(i, v);
        commits.push((wal_len(&disk), model.clone()));
    }
    drop(engine);
    WalDb { disk, commits }
}

#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    refused: usize,
    torn_tail: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&self, what: &str) {
        println!(
            "{what}: {} cases, {} refused with Corruption, {} tolerated opens (torn tail, or a spare slot), {} failures",
            self.cases,
            self.refused,
            self.torn_tail,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} cases failed; first ones:\n{}",
            self.failures.len(),
            self.cases,
            self.failures
                .iter()
                .take(15)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Damages `WAL` at `pos` with `mask` and checks the oracle.
fn wal_case(db: &WalDb, original: &Images, pos: usize, mask: u8, tally: &mut Tally) {
    let wal = &original["WAL"];
    let mut bad = wal.clone();
    bad[pos] ^= mask;
    restore(&db.disk, original);
    db.disk.set_contents("WAL", bad).unwrap();
    let before = images(&db.disk);
    let last_append = db.commits[db.commits.len() - 2].0;
    let id = format!("WAL@{pos}^{mask:#04x}");
    tally.cases += 1;
    let got = open_and_read(&db.disk);
    if pos < last_append {
        // At least one more commit follows the damaged append (the oracle
        // below is only looser for the last append).
        match got {
            Err(Error::Corruption { file, .. }) if file == "WAL" => {
                tally.refused += 1;
                if images(&db.disk) != before {
                    tally
                        .failures
                        .push(format!("{id}: refused but files changed"));
                }
            }
            Err(e) => tally.failures.push(format!("{id}: wrong error: {e}")),
            Ok(m) => tally.failures.push(format!(
                "{id}: opened with {} rows, {} committed: silent loss",
                m.len(),
                db.commits.last().unwrap().1.len()
            )),
        }
    } else {
        // Damage inside the last append: a torn tail, or corruption.
        let all = &db.commits.last().unwrap().1;
        let prefix = &db.commits[db.commits.len() - 2].1;
        match got {
            Err(Error::Corruption { .. }) => {
                if std::env::var("SHOW").is_ok() {
                    println!("{id}: last append refused: {}", got.as_ref().unwrap_err());
                }
                tally.refused += 1;
                if images(&db.disk) != before {
                    tally
                        .failures
                        .push(format!("{id}: refused but files changed"));
                }
            }
            Ok(m) if &m == prefix || &m == all => tally.torn_tail += 1,
            Ok(m) => tally.failures.push(format!(
                "{id}: opened with {} rows: lost more than the tail",
                m.len()
            )),
            Err(e) => tally.failures.push(format!("{id}: wrong error: {e}")),
        }
    }
}

/// Every byte of every chunk header, a sample of ciphertext and tag bytes.
#[test]
fn damaged_wal_chunks_are_corruption_unless_in_the_last_append() {
    let db = wal_db();
    let original = images(&db.disk);
    let wal = original["WAL"].clone();
    let cs = chunks(&wal);
    assert!(cs.len() as i64 >= COMMITS + 2, "{} chunks", cs.len());
    assert!(cs.iter().any(|c| c.1 > 64 * 1024), "a full-size chunk");
    let mut headers = Tally::default();
    let mut bodies = Tally::default();
    for &(at, size) in &cs {
        for off in 0..16 {
            for mask in [0x01, 0x80, 0xFF] {
                wal_case(&db, &original, at + off, mask, &mut headers);
            }
        }
        let body = [16, 17, 16 + (size - 32) / 2, size - 17, size - 16, size - 1];
        for off in body {
            for mask in [0x01, 0xFF] {
                wal_case(&db, &original, at + off, mask, &mut bodies);
            }
        }
    }
    restore(&db.disk, &original);
    assert_eq!(
        &open_and_read(&db.disk).unwrap(),
        &db.commits.last().unwrap().1
    );
    headers.check("WAL chunk headers");
    bodies.check("WAL chunk bodies");
}

/// The reported case: `plain_len` of a middle chunk damaged.
#[test]
fn damaged_chunk_length_in_the_middle_is_corruption_naming_the_offset() {
    let db = wal_db();
    let original = images(&db.disk);
    let cs = chunks(&original["WAL"]);
    let (at, _) = cs[2];
    for byte in 0..4 {
        for mask in [0x01, 0x10, 0x40, 0x80] {
            let mut bad = original["WAL"].clone();
            bad[at + byte] ^= mask;
            restore(&db.disk, &original);
            db.disk.set_contents("WAL", bad).unwrap();
            let before = images(&db.disk);
            match open_and_read(&db.disk) {
                Err(Error::Corruption { file, offset, .. }) => {
                    assert_eq!(file, "WAL");
                    assert_eq!(offset, at as u64, "byte {byte} ^ {mask:#x}");
                }
                other => panic!("byte {byte} ^ {mask:#x}: {other:?}"),
            }
            assert!(images(&db.disk) == before, "files changed");
        }
    }
}

/// A header slot of the WAL damaged: either refused, or opened with every
/// commit (the other slot is current and the damaged one is an old or torn
/// header write) — never a silent loss.
#[test]
fn damaged_wal_header_slots_never_lose_commits() {
    header_slot_cases(&wal_db(), "WAL header slots, one session");
    // The last commit is the only chunk of the newer epoch: its slot damaged
    // must not make that chunk look like a torn tail.
    header_slot_cases(
        &wal_db_reopened_before(Some(COMMITS - 1)),
        "WAL header slots, two sessions",
    );
}

fn header_slot_cases(db: &WalDb, what: &str) {
    let original = images(&db.disk);
    let all = &db.commits.last().unwrap().1;
    let mut tally = Tally::default();
    for pos in 0..SLOTS {
        for mask in [0x01, 0xFF] {
            let mut bad = original["WAL"].clone();
            bad[pos] ^= mask;
            restore(&db.disk, &original);
            db.disk.set_contents("WAL", bad).unwrap();
            let before = images(&db.disk);
            let id = format!("WAL@{pos}^{mask:#04x}");
            tally.cases += 1;
            match open_and_read(&db.disk) {
                Ok(m) if &m == all => tally.torn_tail += 1,
                Ok(m) => tally.failures.push(format!(
                    "{id}: opened with {} of {} rows",
                    m.len(),
                    all.len()
                )),
                Err(Error::Corruption { file, .. }) if file == "WAL" => {
                    tally.refused += 1;
                    if images(&db.disk) != before {
                        tally.failures.push(format!("{id}: refused but changed"));
                    }
                }
                Err(e) => tally.failures.push(format!("{id}: wrong error: {e}")),
            }
        }
    }
    tally.check(what);
}

/// A database whose MANIFEST holds tables (checkpointed), plus a WAL.
fn populated() -> (SimDisk, Model) {
    let disk = SimDisk::new();
    let engine = open_enc(&disk, Secret::Key(KEY)).unwrap();
    let kv = create_kv(&engine);
    let mut model = Model::new();
    for i in 0..3 {
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&[(i, "checkpointed")])).unwrap();
        t.commit().unwrap();
        model.insert(i, "checkpointed".into());
    }
    engine.checkpoint().unwrap();
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(10, "in the wal")])).unwrap();
    t.commit().unwrap();
    model.insert(10, "in the wal".into());
    drop(engine);
    (disk, model)
}

fn manifest_cases(disk: &SimDisk, masks: &[u8], what: &str) {
    let original = images(disk);
    let manifest = original["MANIFEST"].clone();
    assert!(manifest.len() > SLOTS + 32);
    let mut tally = Tally::default();
    for pos in 0..manifest.len() {
        for &mask in masks {
            let mut bad = manifest.clone();
            bad[pos] ^= mask;
            restore(disk, &original);
            disk.set_contents("MANIFEST", bad).unwrap();
            let before = images(disk);
            let id = format!("MANIFEST@{pos}^{mask:#04x}");
            tally.cases += 1;
            match open_enc(disk, Secret::Key(KEY)) {
                Err(Error::Corruption { file, .. }) if file == "MANIFEST" => {
                    tally.refused += 1;
                    if images(disk) != before {
                        tally.failures.push(format!("{id}: refused but changed"));
                    }
                }
                Err(e) => tally.failures.push(format!("{id}: wrong error: {e}")),
                Ok(_) => tally.failures.push(format!("{id}: opened")),
            }
        }
    }
    restore(disk, &original);
    tally.check(what);
}

#[test]
fn every_damaged_manifest_byte_is_corruption() {
    let (disk, model) = populated();
    manifest_cases(&disk, &[0x01, 0xFF], "MANIFEST of a populated database");
    assert_eq!(open_and_read(&disk).unwrap(), model);
}

/// A fresh database: the MANIFEST is the only file with a header.
#[test]
fn every_damaged_manifest_byte_of_a_fresh_database_is_corruption() {
    let disk = SimDisk::new();
    drop(open_enc(&disk, Secret::Key(KEY)).unwrap());
    manifest_cases(&disk, &[0x01, 0x80, 0xFF], "MANIFEST of a fresh database");
    drop(open_enc(&disk, Secret::Key(KEY)).unwrap());
}

/// A passphrase database: damage to the salt of one slot must not make the
/// passphrase look wrong.
#[test]
fn damaged_manifest_salt_with_a_passphrase_is_corruption() {
    let disk = SimDisk::new();
    let secret = Secret::Passphrase("correct horse".into());
    drop(open_enc(&disk, secret.clone()).unwrap());
    let original = images(&disk);
    for pos in [40, 47, 55, 128 + 40, 128 + 55] {
        let mut bad = original["MANIFEST"].clone();
        bad[pos] ^= 0x01;
        restore(&disk, &original);
        disk.set_contents("MANIFEST", bad).unwrap();
        match open_enc(&disk, secret.clone()) {
            Err(Error::Corruption { file, .. }) if file == "MANIFEST" => {}
            other => panic!("salt byte {pos}: {:?}", other.err()),
        }
    }
    restore(&disk, &original);
    drop(open_enc(&disk, secret).unwrap());
}

#[test]
fn wrong_key_is_still_wrong_key() {
    let (disk, model) = populated();
    let err = open_enc(&disk, Secret::Key([8; 32])).unwrap_err();
    assert!(matches!(err, Error::WrongKey), "{err}");
    let err = open_enc(&disk, Secret::Passphrase("nope".into())).unwrap_err();
    assert!(matches!(err, Error::WrongKey), "{err}");
    // Also when a file is damaged: the key is checked first.
    let original = images(&disk);
    for (name, pos) in [("MANIFEST", 300), ("WAL", 300), ("MANIFEST", 130)] {
        let mut bad = original[name].clone();
        bad[pos] ^= 0x01;
        disk.set_contents(name, bad).unwrap();
        let err = open_enc(&disk, Secret::Key([8; 32])).unwrap_err();
        assert!(matches!(err, Error::WrongKey), "{name}@{pos}: {err}");
        restore(&disk, &original);
    }
    // A fresh database (one file with a header).
    let fresh = SimDisk::new();
    drop(open_enc(&fresh, Secret::Key(KEY)).unwrap());
    let err = open_enc(&fresh, Secret::Key([8; 32])).unwrap_err();
    assert!(matches!(err, Error::WrongKey), "{err}");
    assert_eq!(open_and_read(&disk).unwrap(), model);
}

/// A backend whose WAL fails one read of a whole chunk at `phys` with EIO.
#[derive(Debug)]
struct EioAt {
    disk: SimDisk,
    phys: u64,
    fired: Arc<AtomicBool>,
}

#[derive(Debug)]
struct EioFile {
    inner: FileHandle,
    phys: Option<u64>,
    fired: Arc<AtomicBool>,
}

impl StorageFile for EioFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if Some(offset) == self.phys && buf.len() > 16 && !self.fired.swap(true, Ordering::SeqCst) {
            return Err(eio("injected read error"));
        }
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn append(&self, data: &[u8]) -> io::Result<u64> {
        self.inner.append(data)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl Storage for EioAt {
    fn open(&self, name: &str, create: bool) -> io::Result<FileHandle> {
        Ok(Arc::new(EioFile {
            inner: self.disk.open(name, create)?,
            phys: (name == "WAL").then_some(self.phys),
            fired: self.fired.clone(),
        }))
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

/// An EIO while the last WAL chunk is verified at open is an I/O error, not
/// a torn tail: the last commit must not be dropped (and later cut off).
#[test]
fn eio_reading_the_last_chunk_is_an_io_error_not_a_torn_tail() {
    let db = wal_db();
    let original = images(&db.disk);
    let &(last, _) = chunks(&original["WAL"]).last().unwrap();
    let fired = Arc::new(AtomicBool::new(false));
    let flaky = EioAt {
        disk: db.disk.clone(),
        phys: last as u64,
        fired: fired.clone(),
    };
    let got = EncryptedStorage::open(Arc::new(flaky), Secret::Key(KEY))
        .and_then(|s| Ok(Engine::open(Arc::new(s), options())?))
        .and_then(|e| snapshot_kv(&e));
    assert!(fired.load(Ordering::SeqCst), "the read was reached");
    match got {
        Err(Error::Io { file, .. }) => assert_eq!(file, "WAL"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(m) => panic!(
            "opened with {} of {} rows",
            m.len(),
            db.commits.last().unwrap().1.len()
        ),
    }
    assert!(images(&db.disk) == original, "files changed");
    assert_eq!(
        &open_and_read(&db.disk).unwrap(),
        &db.commits.last().unwrap().1
    );
}
