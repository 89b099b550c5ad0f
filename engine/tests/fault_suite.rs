//! The fault-injection suite: every file of a database damaged in every way we
//! can think of, on both backends, in both on-disk states, plus an EIO at every
//! read operation of an open.
//!
//! Matrix (see `build_cases`):
//!
//! ```text
//!   file:    MANIFEST, WAL, every seg-*.eseg
//!   damage:  flip one bit of a byte (plain: every byte of files ≤
//!            FULL_FLIP_LIMIT bytes, a seeded sample of larger ones, always
//!            including their first and last EDGE bytes; encrypted: every
//!            field of both header slots and of every chunk header, plus a
//!            sample) | truncate (0, 1, …, len-1, and every commit boundary of
//!            the WAL ± 1) | zero-tail (zeros from a point to the end: a torn
//!            write; at every WAL record/chunk start +0/+4/+12) | append (a
//!            torn append: record magic then zeros, a zero sector, garbage) |
//!            delete | replace with an older copy of the same file (kept from
//!            earlier states of the same database) | swap two files (every
//!            pair of segments, MANIFEST <-> WAL)
//!   backend: plain SimDisk | EncryptedStorage over SimDisk
//!   state:   clean  = closed with checkpoint_on_close (WAL essentially empty)
//!            wal    = un-checkpointed WAL holding several committed txns
//!   plus:    EIO at the Nth read operation (open, exists, list, len, read_at,
//!            read_all) of an open, for every N until an open succeeds
//!            without reaching N
//! ```
//!
//! Oracle for each case, after the damage, opening with the options the
//! `entidb` facade uses (`checkpoint_on_close: true`):
//!
//! - (a) the open is refused with `Corruption` (`Io` for an injected read
//!   error), every file is byte-identical to before the open and the file
//!   list is unchanged; and after restoring the damaged file(s) the database
//!   opens with the full data (the refused open destroyed nothing else); or
//! - (a') the open succeeds but the full scan fails with `Corruption` (column
//!   chunks are CRC-checked when read, docs/recovery.md step 3); after
//!   closing and restoring the damaged file(s) the database has the full data;
//! - (b) the open succeeds and a full scan of every table (plus the catalog
//!   blob) equals the reference model after the last acknowledged commit,
//!   and still does after closing and re-opening.
//! - "tolerated": the one data loss docs/recovery.md allows — a torn WAL
//!   tail. A WAL damaged so that it is a prefix of the original (as the
//!   engine reads it: a truncation, or an older copy that is a prefix) or
//!   zero-filled from some point may recover exactly the commits wholly
//!   before the damage; a flip inside the WAL's last record (no valid record
//!   after it) may recover everything but the last commit.
//!   Nothing can tell these apart from a crash before the lost commits were
//!   durable. Counted separately, not as failures (set
//!   `FAULT_SUITE_STRICT=1` to count them as failures).
//!
//! Everything else is a failure, collected and printed as a table:
//! refused-but-changed, silently-lost (open succeeded, data differs from the
//! last acknowledged state, now or after a re-open), restore-failed (a
//! refused open destroyed something: restoring the damaged file does not
//! bring the data back), wrong-error (refused with another error kind, e.g.
//! `IncompatibleVersion` or `WrongKey` for a damaged byte), panicked.
//!
//! See the summary: `cargo test -p entidb-engine --test fault_suite --
//! --nocapture`. Run a subset, e.g. one case from the
//! summary: `FAULT_SUITE_FILTER='plain/wal/flip:WAL@100^' cargo test …` (a
//! substring of the case id). `FAULT_SUITE_SEED` changes the flip sample;
//! `FAULT_SUITE_VERBOSE=1` prints every case's verdict.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow::array::{Array, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use entidb_engine::storage::{
    EncryptedStorage, FileHandle, LockGuard, Secret, SimDisk, Storage, StorageFile, eio,
};
use entidb_engine::wal::scan_wal;
use entidb_engine::{Engine, EngineOptions, Error, ScanRequest, TableDef, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: [u8; 32] = [0x5A; 32];
/// Files up to this size get every byte flipped; larger ones a sample.
const FULL_FLIP_LIMIT: usize = 1024;
/// Flipped positions of a large file (plus its first and last EDGE bytes).
const FLIP_SAMPLE: usize = 160;
const EDGE: usize = 48;
/// A case running longer than this is reported and the process aborted (a
/// hang would otherwise hide the whole summary).
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The reference model and reading the database.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `(id BIGINT PRIMARY KEY, v TEXT)`
    Kv,
    /// `(id BIGINT PRIMARY KEY, name TEXT, qty BIGINT NULL)`
    Items,
}

impl Shape {
    fn schema(self) -> SchemaRef {
        let mut fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                if self == Shape::Kv { "v" } else { "name" },
                DataType::Utf8,
                true,
            ),
        ];
        if self == Shape::Items {
            fields.push(Field::new("qty", DataType::Int64, true));
        }
        Arc::new(Schema::new(fields))
    }

    fn qty(id: i64) -> Option<i64> {
        (id % 7 != 0).then_some(id * 10)
    }

    /// The model's rendering of a row: what `row_string` reads back.
    fn render(self, id: i64, tag: &str) -> String {
        match self {
            Shape::Kv => format!("{tag}{id}"),
            Shape::Items => match Self::qty(id) {
                Some(q) => format!("{tag}{id}|{q}"),
                None => format!("{tag}{id}|NULL"),
            },
        }
    }

    fn batch(self, ids: &[i64], tag: &str) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("{tag}{i}")).collect();
        let mut cols: Vec<Arc<dyn Array>> = vec![
            Arc::new(Int64Array::from_iter_values(ids.iter().copied())),
            Arc::new(StringArray::from_iter_values(names)),
        ];
        if self == Shape::Items {
            cols.push(Arc::new(Int64Array::from_iter(
                ids.iter().map(|i| Self::qty(*i)),
            )));
        }
        RecordBatch::try_new(self.schema(), cols).unwrap()
    }
}

/// What a full read of the database returns: the catalog blob and every
/// table's rows as `(id, rest)`, sorted (duplicates stay visible).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct DbState {
    catalog: Vec<u8>,
    tables: BTreeMap<String, Vec<(i64, String)>>,
}

/// The reference model kept while the workload runs.
#[derive(Debug, Clone, Default)]
struct Model {
    catalog: Vec<u8>,
    tables: BTreeMap<String, (Shape, BTreeMap<i64, String>)>,
}

impl Model {
    fn state(&self) -> DbState {
        DbState {
            catalog: self.catalog.clone(),
            tables: self
                .tables
                .iter()
                .map(|(n, (_, rows))| {
                    (
                        n.clone(),
                        rows.iter().map(|(k, v)| (*k, v.clone())).collect(),
                    )
                })
                .collect(),
        }
    }
}

fn row_string(batch: &RecordBatch, row: usize) -> String {
    let mut parts = Vec::new();
    // Column 0 is the id; the last one the key (read, not compared).
    let user = &batch.columns()[1..batch.num_columns() - 1];
    for col in user {
        if col.is_null(row) {
            parts.push("NULL".to_string());
            continue;
        }
        parts.push(match col.data_type() {
            DataType::Utf8 => col.as_string::<i32>().value(row).to_string(),
            DataType::Int64 => col.as_primitive::<Int64Type>().value(row).to_string(),
            other => format!("<{other}>"),
        });
    }
    parts.join("|")
}

/// Reads the catalog and every row of every table.
fn read_state(engine: &Engine) -> Result<DbState, Error> {
    let mut t = engine.begin_read_only();
    let catalog = t.catalog()?.as_ref().clone();
    let mut tables = BTreeMap::new();
    // The key column too, so that its chunks are read (and CRC-checked).
    let req = || ScanRequest {
        include_key: true,
        ..ScanRequest::default()
    };
    for def in t.tables()? {
        let mut rows = Vec::new();
        for batch in t.scan(def.id, req())? {
            let batch = batch?;
            let ids = batch.column(0).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                rows.push((ids.value(i), row_string(&batch, i)));
            }
        }
        rows.sort();
        tables.insert(def.name.clone(), rows);
    }
    Ok(DbState { catalog, tables })
}

/// A short description of how `got` differs from `want`.
fn diff(want: &DbState, got: &DbState) -> String {
    let mut out = Vec::new();
    if want.catalog != got.catalog {
        out.push(format!(
            "catalog {:?} instead of {:?}",
            String::from_utf8_lossy(&got.catalog),
            String::from_utf8_lossy(&want.catalog)
        ));
    }
    let names: BTreeSet<&String> = want.tables.keys().chain(got.tables.keys()).collect();
    for name in names {
        match (want.tables.get(name), got.tables.get(name)) {
            (Some(_), None) => out.push(format!("table {name} missing")),
            (None, Some(_)) => out.push(format!("table {name} unexpected")),
            (Some(w), Some(g)) if w != g => {
                let first = w
                    .iter()
                    .zip(g.iter())
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!(", first difference {a:?} vs {b:?}"))
                    .unwrap_or_default();
                out.push(format!(
                    "{name}: {} rows instead of {}{first}",
                    g.len(),
                    w.len()
                ));
            }
            _ => {}
        }
    }
    out.join("; ")
}

// ---------------------------------------------------------------------------
// The workload.

enum Op {
    Create(&'static str, Shape),
    Drop(&'static str),
    Catalog(&'static str),
    /// Upsert ids in the range with values tagged `tag`.
    Put(&'static str, Range<i64>, &'static str),
    Delete(&'static str, Range<i64>),
}

enum Step {
    Txn(Vec<Op>),
    Checkpoint,
    /// Keep a copy of every file, for the "older copy" damage.
    Keep(&'static str),
}

fn workload() -> Vec<Step> {
    use Op::*;
    use Step::*;
    vec![
        Txn(vec![Create("kv", Shape::Kv), Catalog("catalog v1")]),
        Txn(vec![Create("items", Shape::Items), Catalog("catalog v2")]),
        Txn(vec![Put("kv", 0..40, "a")]),
        Txn(vec![Put("items", 0..30, "n")]),
        Keep("before-checkpoint-1"),
        Checkpoint,
        Keep("checkpoint-1"),
        Txn(vec![Put("kv", 5..15, "b"), Delete("kv", 30..35)]),
        Txn(vec![Put("items", 30..50, "m"), Delete("items", 0..5)]),
        Txn(vec![
            Catalog("catalog v3"),
            Put("kv", 100..110, "c"),
            Create("tmp", Shape::Kv),
            Put("tmp", 0..10, "t"),
        ]),
        Keep("before-checkpoint-2"),
        Checkpoint,
        Keep("checkpoint-2"),
        Txn(vec![Delete("kv", 0..5), Put("items", 10..20, "p")]),
        Txn(vec![Put("kv", 200..240, "e"), Drop("tmp")]),
        Keep("before-checkpoint-3"),
        Checkpoint,
        Keep("checkpoint-3"),
        // The tail: committed, never checkpointed in the "wal" state.
        Txn(vec![Put("kv", 7..8, "d"), Put("items", 100..101, "d")]),
        Txn(vec![Delete("kv", 100..105)]),
        Keep("wal-2-commits"),
        Txn(vec![Put("kv", 300..320, "f")]),
        Txn(vec![Put("items", 35..40, "g"), Catalog("catalog v4")]),
        Txn(vec![Create("extra", Shape::Kv), Put("extra", 0..5, "x")]),
        Txn(vec![Delete("items", 40..45), Put("kv", 210..211, "h")]),
    ]
}

/// Keys of the existing rows of `def` with ids in `ids`.
fn existing_keys(t: &mut Transaction, def: &TableDef, ids: &Range<i64>) -> BinaryArray {
    let key_col = def.schema.fields().len();
    let req = ScanRequest {
        include_key: true,
        ..ScanRequest::default()
    };
    let mut keys = Vec::new();
    for batch in t.scan(def.id, req).unwrap() {
        let batch = batch.unwrap();
        let id = batch.column(0).as_primitive::<Int64Type>();
        let key = batch.column(key_col).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            if ids.contains(&id.value(i)) {
                keys.push(key.value(i).to_vec());
            }
        }
    }
    BinaryArray::from_iter_values(keys)
}

fn run_txn(engine: &Engine, model: &mut Model, ops: &[Op]) {
    let mut t = engine.begin();
    for op in ops {
        match op {
            Op::Create(name, shape) => {
                t.create_table(name, shape.schema(), vec![0]).unwrap();
                model
                    .tables
                    .insert(name.to_string(), (*shape, BTreeMap::new()));
            }
            Op::Drop(name) => {
                let id = t.table(name).unwrap().id;
                t.drop_table(id).unwrap();
                model.tables.remove(*name);
            }
            Op::Catalog(blob) => {
                t.set_catalog(blob.as_bytes().to_vec()).unwrap();
                model.catalog = blob.as_bytes().to_vec();
            }
            Op::Put(name, ids, tag) => {
                let def = t.table(name).unwrap();
                let keys = existing_keys(&mut t, &def, ids);
                if !keys.is_empty() {
                    t.delete(def.id, &keys).unwrap();
                }
                let (shape, rows) = model.tables.get_mut(*name).unwrap();
                let list: Vec<i64> = ids.clone().collect();
                t.insert(def.id, &shape.batch(&list, tag)).unwrap();
                for id in list {
                    rows.insert(id, shape.render(id, tag));
                }
            }
            Op::Delete(name, ids) => {
                let def = t.table(name).unwrap();
                let keys = existing_keys(&mut t, &def, ids);
                t.delete(def.id, &keys).unwrap();
                model
                    .tables
                    .get_mut(*name)
                    .unwrap()
                    .1
                    .retain(|k, _| !ids.contains(k));
            }
        }
    }
    t.commit().unwrap();
}

// ---------------------------------------------------------------------------
// Backends, file images.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Backend {
    Plain,
    Encrypted,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Plain => "plain",
            Backend::Encrypted => "encrypted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DiskState {
    /// Closed with `checkpoint_on_close`: the WAL holds no transaction.
    Clean,
    /// Several committed transactions after the last checkpoint.
    Wal,
}

impl DiskState {
    fn name(self) -> &'static str {
        match self {
            DiskState::Clean => "clean",
            DiskState::Wal => "wal",
        }
    }
}

/// The options the `entidb` facade opens with.
fn options() -> EngineOptions {
    EngineOptions {
        checkpoint_on_close: true,
        ..EngineOptions::default()
    }
}

fn open_db(backend: Backend, storage: Arc<dyn Storage>) -> Result<Engine, Error> {
    let storage: Arc<dyn Storage> = match backend {
        Backend::Plain => storage,
        Backend::Encrypted => Arc::new(EncryptedStorage::open(storage, Secret::Key(KEY))?),
    };
    Ok(Engine::open(storage, options())?)
}

/// Every file's bytes (the raw bytes on the simulated disk).
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

fn disk_from(images: &Images) -> SimDisk {
    let disk = SimDisk::new();
    for (name, bytes) in images {
        disk.open(name, true).unwrap();
        disk.set_contents(name, bytes.clone()).unwrap();
    }
    disk.sync_dir().unwrap();
    disk
}

/// One database built by the workload on one backend.
struct Db {
    backend: Backend,
    /// Files kept at each `Step::Keep`, with the model at that point.
    kept: Vec<(&'static str, Images, DbState)>,
    /// The state after the last acknowledged commit.
    want: DbState,
    wal_state: Images,
    clean_state: Images,
    /// The WAL at the last checkpoint and after each later commit, with the
    /// model at that point (`tail[i]`: i commits after the checkpoint).
    tail: Vec<TailPoint>,
    /// The WAL state's WAL as the engine reads it (decrypted).
    wal_logical: Vec<u8>,
    /// Offset of the last record of the WAL state's WAL: a flip at or after
    /// it leaves no valid record after the damage (a torn tail).
    last_record: u64,
}

struct TailPoint {
    /// Physical length of the WAL file.
    phys: u64,
    /// Length of the WAL as the engine reads it (decrypted).
    logical: u64,
    state: DbState,
}

/// The WAL of `files` as the engine reads it: decrypted, without a torn
/// tail. `None` when it is missing or does not decrypt.
fn logical_wal(backend: Backend, files: &Images) -> Option<Vec<u8>> {
    let wal = files.get("WAL")?;
    match backend {
        Backend::Plain => Some(wal.clone()),
        Backend::Encrypted => {
            let disk = disk_from(files);
            let storage = EncryptedStorage::open(Arc::new(disk), Secret::Key(KEY)).ok()?;
            storage.open("WAL", false).ok()?.read_all().ok()
        }
    }
}

fn build(backend: Backend) -> Db {
    let disk = SimDisk::new();
    let engine = open_db(backend, Arc::new(disk.clone())).unwrap();
    let mut model = Model::default();
    let mut kept = Vec::new();
    let mut tail = Vec::new();
    let point = |disk: &SimDisk, model: &Model| TailPoint {
        phys: disk.contents("WAL").map_or(0, |b| b.len() as u64),
        logical: logical_wal(backend, &images(disk)).unwrap().len() as u64,
        state: model.state(),
    };
    for step in workload() {
        match step {
            Step::Txn(ops) => {
                run_txn(&engine, &mut model, &ops);
                if !tail.is_empty() {
                    tail.push(point(&disk, &model));
                }
            }
            Step::Checkpoint => {
                engine.checkpoint().unwrap();
                tail = vec![point(&disk, &model)];
            }
            Step::Keep(label) => kept.push((label, images(&disk), model.state())),
        }
    }
    let want = model.state();
    assert_eq!(read_state(&engine).unwrap(), want, "{backend:?}: model");
    let wal_state = images(&disk);
    drop(engine); // checkpoint_on_close
    let clean_state = images(&disk);
    assert!(tail.len() >= 4, "the WAL state holds several commits");
    let last_record = match backend {
        Backend::Plain => {
            let scan = scan_wal(&wal_state["WAL"], "WAL").unwrap();
            scan.records.last().unwrap().0
        }
        // Each commit is one chunk: the last chunk starts where the WAL
        // ended before the last commit.
        Backend::Encrypted => tail[tail.len() - 2].phys,
    };
    let wal_logical = logical_wal(backend, &wal_state).unwrap();
    kept.push(("wal-state", wal_state.clone(), want.clone()));
    Db {
        backend,
        kept,
        want,
        wal_state,
        clean_state,
        tail,
        wal_logical,
        last_record,
    }
}

// ---------------------------------------------------------------------------
// Read-error injection.

/// Counts read operations (open, exists, list, len, read_at, read_all) and
/// fails the `fail_at`-th with EIO.
#[derive(Debug, Clone)]
struct FlakyReads {
    inner: Arc<dyn Storage>,
    counter: Arc<ReadCounter>,
}

#[derive(Debug, Default)]
struct ReadCounter {
    reads: AtomicU64,
    fail_at: AtomicU64,
    hit: AtomicBool,
}

impl ReadCounter {
    fn tick(&self, what: &str) -> io::Result<()> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            self.hit.store(true, Ordering::SeqCst);
            return Err(eio(&format!("injected at read #{n} ({what})")));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FlakyFile {
    inner: FileHandle,
    name: String,
    counter: Arc<ReadCounter>,
}

impl StorageFile for FlakyFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.counter
            .tick(&format!("read_at {} @{offset}+{}", self.name, buf.len()))?;
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
        self.counter.tick(&format!("len {}", self.name))?;
        self.inner.len()
    }
    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.counter.tick(&format!("read_all {}", self.name))?;
        self.inner.read_all()
    }
}

impl Storage for FlakyReads {
    fn open(&self, name: &str, create: bool) -> io::Result<FileHandle> {
        self.counter.tick(&format!("open {name}"))?;
        let inner = self.inner.open(name, create)?;
        Ok(Arc::new(FlakyFile {
            inner,
            name: name.to_string(),
            counter: self.counter.clone(),
        }))
    }
    fn exists(&self, name: &str) -> io::Result<bool> {
        self.counter.tick(&format!("exists {name}"))?;
        self.inner.exists(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.counter.tick("list")?;
        self.inner.list()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.inner.lock()
    }
    fn describe(&self) -> String {
        format!("{} (flaky reads)", self.inner.describe())
    }
}

// ---------------------------------------------------------------------------
// Cases.

#[derive(Debug, Clone)]
enum Damage {
    Flip {
        file: String,
        at: usize,
        mask: u8,
    },
    Truncate {
        file: String,
        len: usize,
    },
    /// Bytes from `from` to the end read back as zeros (a torn write).
    ZeroFrom {
        file: String,
        from: usize,
    },
    /// Bytes appended at the end (a torn, never-acknowledged append).
    Append {
        file: String,
        tail: Tail,
    },
    Delete {
        file: String,
    },
    Older {
        file: String,
        from: &'static str,
    },
    Swap {
        a: String,
        b: String,
    },
    /// EIO at the Nth read operation of the open.
    ReadError {
        nth: u64,
    },
}

/// What a torn append leaves behind.
#[derive(Debug, Clone, Copy)]
enum Tail {
    /// A WAL record magic followed by zeros (a torn record header).
    MagicThenZeros,
    /// A zero-filled sector.
    ZeroSector,
    /// Pseudo-random bytes.
    Garbage,
}

impl Tail {
    const ALL: [Tail; 3] = [Tail::MagicThenZeros, Tail::ZeroSector, Tail::Garbage];

    fn name(self) -> &'static str {
        match self {
            Tail::MagicThenZeros => "magic+zeros",
            Tail::ZeroSector => "zero-sector",
            Tail::Garbage => "garbage",
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            Tail::MagicThenZeros => {
                let mut b = b"EWAL".to_vec();
                b.resize(16, 0);
                b
            }
            Tail::ZeroSector => vec![0; 512],
            Tail::Garbage => {
                let mut rng = Rng(seed());
                (0..37).map(|_| rng.next() as u8).collect()
            }
        }
    }
}

impl Damage {
    fn kind(&self) -> &'static str {
        match self {
            Damage::Flip { .. } => "flip",
            Damage::Truncate { .. } => "truncate",
            Damage::ZeroFrom { .. } => "zero-tail",
            Damage::Append { .. } => "append",
            Damage::Delete { .. } => "delete",
            Damage::Older { .. } => "older-copy",
            Damage::Swap { .. } => "swap",
            Damage::ReadError { .. } => "eio-read",
        }
    }

    fn file_kind(&self) -> String {
        fn kind(name: &str) -> &'static str {
            if name.ends_with(".eseg") {
                "segment"
            } else if name == "WAL" {
                "WAL"
            } else if name == "MANIFEST" {
                "MANIFEST"
            } else {
                "other"
            }
        }
        match self {
            Damage::Flip { file, .. }
            | Damage::Truncate { file, .. }
            | Damage::ZeroFrom { file, .. }
            | Damage::Append { file, .. }
            | Damage::Delete { file }
            | Damage::Older { file, .. } => kind(file).to_string(),
            Damage::Swap { a, b } => format!("{}<->{}", kind(a), kind(b)),
            Damage::ReadError { .. } => "any (open)".to_string(),
        }
    }

    fn id(&self) -> String {
        match self {
            Damage::Flip { file, at, mask } => format!("flip:{file}@{at}^{mask:02x}"),
            Damage::Truncate { file, len } => format!("truncate:{file}@{len}"),
            Damage::ZeroFrom { file, from } => format!("zero-tail:{file}@{from}"),
            Damage::Append { file, tail } => format!("append:{file}+{}", tail.name()),
            Damage::Delete { file } => format!("delete:{file}"),
            Damage::Older { file, from } => format!("older:{file}<-{from}"),
            Damage::Swap { a, b } => format!("swap:{a}<->{b}"),
            Damage::ReadError { nth } => format!("eio-read#{nth}"),
        }
    }

    /// The files the damage touches (restored after a refused open).
    fn touched(&self) -> Vec<String> {
        match self {
            Damage::Flip { file, .. }
            | Damage::Truncate { file, .. }
            | Damage::ZeroFrom { file, .. }
            | Damage::Append { file, .. }
            | Damage::Delete { file }
            | Damage::Older { file, .. } => vec![file.clone()],
            Damage::Swap { a, b } => vec![a.clone(), b.clone()],
            Damage::ReadError { .. } => Vec::new(),
        }
    }

    fn apply(&self, db: &Db, original: &Images) -> Images {
        let mut out = original.clone();
        match self {
            Damage::Flip { file, at, mask } => {
                out.get_mut(file).unwrap()[*at] ^= mask;
            }
            Damage::Truncate { file, len } => out.get_mut(file).unwrap().truncate(*len),
            Damage::ZeroFrom { file, from } => out.get_mut(file).unwrap()[*from..].fill(0),
            Damage::Append { file, tail } => out.get_mut(file).unwrap().extend(tail.bytes()),
            Damage::Delete { file } => {
                out.remove(file);
            }
            Damage::Older { file, from } => {
                let (_, kept, _) = db.kept.iter().find(|(l, _, _)| l == from).unwrap();
                out.insert(file.clone(), kept[file].clone());
            }
            Damage::Swap { a, b } => {
                let (x, y) = (original[a].clone(), original[b].clone());
                out.insert(a.clone(), y);
                out.insert(b.clone(), x);
            }
            Damage::ReadError { .. } => {}
        }
        out
    }
}

struct Case {
    backend: Backend,
    state: DiskState,
    damage: Damage,
}

impl Case {
    fn id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.backend.name(),
            self.state.name(),
            self.damage.id()
        )
    }
}

/// xorshift64*: the deterministic flip sample.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn seed() -> u64 {
    std::env::var("FAULT_SUITE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xE471_DB5E_ED00_0001)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Byte positions to flip in a plain file of `len` bytes.
fn flip_positions(len: usize, rng: &mut Rng) -> BTreeSet<usize> {
    if len <= FULL_FLIP_LIMIT {
        return (0..len).collect();
    }
    let mut out: BTreeSet<usize> = (0..EDGE).chain(len - EDGE..len).collect();
    while out.len() < 2 * EDGE + FLIP_SAMPLE {
        out.insert((rng.next() % len as u64) as usize);
    }
    out
}

/// `(offset, size)` of the chunks of an encrypted file image (after its two
/// 128-byte header slots; see docs/encryption.md).
fn enc_chunks(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 256;
    while at + 32 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let size = 16 + len + 16;
        if len == 0 || at + size > bytes.len() {
            break;
        }
        out.push((at, size));
        at += size;
    }
    out
}

/// Byte positions to flip in an encrypted file. Flipping any byte of a
/// sealed chunk's body fails the same authentication, so the sample is
/// structural: both ends of every field of both header slots, the length,
/// epoch and counter fields and the body ends of every chunk, and a few more.
fn enc_flip_positions(bytes: &[u8], rng: &mut Rng) -> BTreeSet<usize> {
    // magic, major, minor, db_id, file_id, salt, base_epoch, cur_epoch,
    // key_check, slot_tag, slot_nonce, padding.
    const SLOT_FIELDS: [usize; 24] = [
        0, 3, 4, 5, 6, 7, 8, 23, 24, 39, 40, 55, 56, 59, 60, 63, 64, 95, 96, 111, 112, 119, 120,
        127,
    ];
    let len = bytes.len();
    let mut out: BTreeSet<usize> = SLOT_FIELDS.iter().flat_map(|f| [*f, 128 + f]).collect();
    for (at, size) in enc_chunks(bytes) {
        out.extend([0, 3, 4, 8, 16, size - 1].map(|d| at + d));
    }
    for _ in 0..FLIP_SAMPLE / 8 {
        out.insert((rng.next() % len.max(1) as u64) as usize);
    }
    out.retain(|at| *at < len);
    out
}

/// Where records (plain) or chunks (encrypted) of a WAL image start.
fn wal_units(backend: Backend, bytes: &[u8]) -> Vec<usize> {
    match backend {
        Backend::Plain => scan_wal(bytes, "WAL")
            .map(|s| s.records.iter().map(|(at, _)| *at as usize).collect())
            .unwrap_or_default(),
        Backend::Encrypted => enc_chunks(bytes).iter().map(|(at, _)| *at).collect(),
    }
}

fn build_cases(db: &Db, state: DiskState) -> Vec<Case> {
    let files = match state {
        DiskState::Clean => &db.clean_state,
        DiskState::Wal => &db.wal_state,
    };
    let mut damages = Vec::new();
    for (name, bytes) in files {
        let len = bytes.len();
        let mut rng = Rng(seed() ^ name_hash(name) ^ (db.backend as u64) << 1 ^ state as u64);
        let positions = match db.backend {
            Backend::Plain => flip_positions(len, &mut rng),
            Backend::Encrypted => enc_flip_positions(bytes, &mut rng),
        };
        for at in positions {
            let mask = 1u8 << (rng.next() % 8);
            damages.push(Damage::Flip {
                file: name.clone(),
                at,
                mask,
            });
        }
        let mut lens: BTreeSet<usize> = [0, 1, 4, 8, 12, 16, 32, 256, 257]
            .into_iter()
            .chain([len / 4, len / 2, 3 * len / 4])
            .chain((1..=32).filter_map(|d| len.checked_sub(d)).step_by(3))
            .chain([len.saturating_sub(1)])
            .collect();
        if name == "WAL" && state == DiskState::Wal {
            for point in &db.tail {
                let end = point.phys as usize;
                lens.extend([end.saturating_sub(1), end, end + 1]);
            }
        }
        for l in lens.into_iter().filter(|l| *l < len) {
            damages.push(Damage::Truncate {
                file: name.clone(),
                len: l,
            });
        }
        // A torn write: zeros from a point to the end of the file.
        let mut zero_from: BTreeSet<usize> = [0, len / 2, len.saturating_sub(8)].into();
        if name == "WAL" {
            for at in wal_units(db.backend, bytes) {
                zero_from.extend([at, at + 4, at + 12]);
            }
        }
        for from in zero_from.into_iter().filter(|f| *f < len) {
            damages.push(Damage::ZeroFrom {
                file: name.clone(),
                from,
            });
        }
        for tail in Tail::ALL {
            damages.push(Damage::Append {
                file: name.clone(),
                tail,
            });
        }
        damages.push(Damage::Delete { file: name.clone() });
        let mut seen = BTreeSet::new();
        for (label, kept, _) in &db.kept {
            if let Some(old) = kept.get(name)
                && old != bytes
                && seen.insert(old.clone())
            {
                damages.push(Damage::Older {
                    file: name.clone(),
                    from: label,
                });
            }
        }
    }
    let segments: Vec<&String> = files.keys().filter(|n| n.ends_with(".eseg")).collect();
    for (i, a) in segments.iter().enumerate() {
        for b in &segments[i + 1..] {
            damages.push(Damage::Swap {
                a: (*a).clone(),
                b: (*b).clone(),
            });
        }
    }
    damages.push(Damage::Swap {
        a: "MANIFEST".into(),
        b: "WAL".into(),
    });
    damages
        .into_iter()
        .map(|damage| Case {
            backend: db.backend,
            state,
            damage,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The oracle.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Refused with the right error, nothing changed, restore works.
    Refused,
    /// Opened; the scan found the damage (`Corruption`); restore works.
    RefusedAtRead,
    /// Opened with exactly the last acknowledged state.
    Intact,
    /// A torn-tail loss docs/recovery.md allows.
    Tolerated,
    RefusedButChanged,
    SilentlyLost,
    RestoreFailed,
    WrongError,
    Panicked,
}

impl Verdict {
    const ALL: [Verdict; 9] = [
        Verdict::Refused,
        Verdict::RefusedAtRead,
        Verdict::Intact,
        Verdict::Tolerated,
        Verdict::RefusedButChanged,
        Verdict::SilentlyLost,
        Verdict::RestoreFailed,
        Verdict::WrongError,
        Verdict::Panicked,
    ];

    fn name(self) -> &'static str {
        match self {
            Verdict::Refused => "refused",
            Verdict::RefusedAtRead => "at-read",
            Verdict::Intact => "intact",
            Verdict::Tolerated => "tolerated",
            Verdict::RefusedButChanged => "refused-but-changed",
            Verdict::SilentlyLost => "silently-lost",
            Verdict::RestoreFailed => "restore-failed",
            Verdict::WrongError => "wrong-error",
            Verdict::Panicked => "panicked",
        }
    }

    fn is_failure(self, strict: bool) -> bool {
        match self {
            Verdict::Refused | Verdict::RefusedAtRead | Verdict::Intact => false,
            Verdict::Tolerated => strict,
            _ => true,
        }
    }
}

struct Outcome {
    verdict: Verdict,
    detail: String,
}

fn outcome(verdict: Verdict, detail: impl Into<String>) -> Outcome {
    Outcome {
        verdict,
        detail: detail.into(),
    }
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Io { .. } => "Io",
        Error::Corruption { .. } => "Corruption",
        Error::IncompatibleVersion { .. } => "IncompatibleVersion",
        Error::Locked { .. } => "Locked",
        Error::Poisoned { .. } => "Poisoned",
        Error::TableNotFound { .. } => "TableNotFound",
        Error::WrongKey => "WrongKey",
        Error::EncryptionRequired => "EncryptionRequired",
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::Arrow(_) => "Arrow",
        _ => "other",
    }
}

/// How two file sets differ.
fn changes(before: &Images, after: &Images) -> Option<String> {
    let mut out = Vec::new();
    for (name, bytes) in before {
        match after.get(name) {
            None => out.push(format!("{name} removed")),
            Some(b) if b != bytes => {
                out.push(format!("{name} {} -> {} bytes", bytes.len(), b.len()))
            }
            _ => {}
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        out.push(format!("{name} created"));
    }
    (!out.is_empty()).then(|| out.join(", "))
}

/// Which earlier state `got` equals, for messages.
fn which_state(db: &Db, got: &DbState) -> String {
    if let Some((label, _, _)) = db.kept.iter().rev().find(|(_, _, s)| s == got) {
        return format!(" (equals the state at {label})");
    }
    if let Some(i) = db.tail.iter().position(|p| p.state == *got) {
        return format!(" (equals the state {i} commits after the last checkpoint)");
    }
    String::new()
}

/// The state a torn-tail rule allows for this damage besides the last one.
fn tolerated_state<'a>(db: &'a Db, case: &Case, damaged: &Images) -> Option<&'a DbState> {
    if case.state != DiskState::Wal || case.damage.touched() != ["WAL".to_string()] {
        return None;
    }
    match &case.damage {
        // A flip in the last record: nothing valid follows the damage.
        Damage::Flip { at, .. } if *at as u64 >= db.last_record => {
            Some(&db.tail[db.tail.len() - 2].state)
        }
        // A torn write: every commit before the zeros survives.
        Damage::ZeroFrom { from, .. } => {
            let point = db
                .tail
                .iter()
                .rev()
                .find(|p| p.phys <= *from as u64)
                .unwrap_or(&db.tail[0]);
            Some(&point.state)
        }
        // The WAL (as the engine reads it) is a prefix of the original:
        // every commit wholly inside the prefix survives.
        Damage::Truncate { .. } | Damage::Older { .. } => {
            let wal = logical_wal(db.backend, damaged)?;
            if !db.wal_logical.starts_with(&wal) {
                return None;
            }
            let point = db
                .tail
                .iter()
                .rev()
                .find(|p| p.logical <= wal.len() as u64)
                .unwrap_or(&db.tail[0]);
            Some(&point.state)
        }
        _ => None,
    }
}

/// Restores the damaged files and checks that the database has everything.
fn restore_and_check(
    db: &Db,
    disk: &SimDisk,
    original: &Images,
    touched: &[String],
) -> Result<(), String> {
    for name in touched {
        if let Some(bytes) = original.get(name) {
            disk.open(name, true).map_err(|e| e.to_string())?;
            disk.set_contents(name, bytes.clone())
                .map_err(|e| e.to_string())?;
        }
    }
    disk.sync_dir().map_err(|e| e.to_string())?;
    let engine = open_db(db.backend, Arc::new(disk.clone()))
        .map_err(|e| format!("after restoring {touched:?}, open failed: {e}"))?;
    let got = read_state(&engine)
        .map_err(|e| format!("after restoring {touched:?}, scan failed: {e}"))?;
    if got != db.want {
        return Err(format!(
            "after restoring {touched:?}: {}{}",
            diff(&db.want, &got),
            which_state(db, &got)
        ));
    }
    Ok(())
}

/// Runs one damage case.
fn run_damage(db: &Db, case: &Case) -> Outcome {
    let original = match case.state {
        DiskState::Clean => &db.clean_state,
        DiskState::Wal => &db.wal_state,
    };
    let damaged = case.damage.apply(db, original);
    let disk = disk_from(&damaged);
    let before = images(&disk);
    let touched = case.damage.touched();
    let opened = open_db(db.backend, Arc::new(disk.clone()));
    match opened {
        Err(e) => {
            let after = images(&disk);
            let restore = restore_and_check(db, &disk, original, &touched);
            if let Some(what) = changes(&before, &after) {
                return outcome(
                    Verdict::RefusedButChanged,
                    format!("refused ({e}) but {what}"),
                );
            }
            if let Err(why) = restore {
                return outcome(Verdict::RestoreFailed, format!("refused ({e}); {why}"));
            }
            if matches!(e, Error::Corruption { .. }) {
                outcome(Verdict::Refused, e.to_string())
            } else {
                outcome(
                    Verdict::WrongError,
                    format!("refused with {}: {e}", error_kind(&e)),
                )
            }
        }
        Ok(engine) => {
            let got = read_state(&engine);
            drop(engine);
            match got {
                Err(e) => {
                    let restore = restore_and_check(db, &disk, original, &touched);
                    if let Err(why) = restore {
                        return outcome(
                            Verdict::RestoreFailed,
                            format!("opened, scan failed ({e}); {why}"),
                        );
                    }
                    if matches!(e, Error::Corruption { .. }) {
                        outcome(Verdict::RefusedAtRead, e.to_string())
                    } else {
                        outcome(
                            Verdict::WrongError,
                            format!("opened, scan failed with {}: {e}", error_kind(&e)),
                        )
                    }
                }
                Ok(got) => {
                    let tolerated = tolerated_state(db, case, &damaged);
                    if got != db.want && tolerated != Some(&got) {
                        return outcome(
                            Verdict::SilentlyLost,
                            format!("opened: {}{}", diff(&db.want, &got), which_state(db, &got)),
                        );
                    }
                    // The state must survive a close (checkpoint) and re-open.
                    let again =
                        open_db(db.backend, Arc::new(disk.clone())).and_then(|e| read_state(&e));
                    match again {
                        Ok(s) if s == got => {}
                        Ok(s) => {
                            return outcome(
                                Verdict::SilentlyLost,
                                format!(
                                    "opened intact, after close and re-open: {}{}",
                                    diff(&got, &s),
                                    which_state(db, &s)
                                ),
                            );
                        }
                        Err(e) => {
                            return outcome(
                                Verdict::SilentlyLost,
                                format!("opened intact, re-open failed: {e}"),
                            );
                        }
                    }
                    if got == db.want {
                        outcome(Verdict::Intact, "")
                    } else {
                        outcome(
                            Verdict::Tolerated,
                            format!("torn tail: {}", diff(&db.want, &got)),
                        )
                    }
                }
            }
        }
    }
}

/// EIO at the `nth` read of an open. Returns the outcome (`None`: nothing to
/// report) and whether the open reached its `nth` read (when not, the loop
/// is done).
fn run_read_error(db: &Db, state: DiskState, nth: u64) -> (Option<Outcome>, bool) {
    let hit = AtomicBool::new(false);
    let out = read_error_case(db, state, nth, &hit);
    (out, hit.load(Ordering::SeqCst))
}

fn read_error_case(db: &Db, state: DiskState, nth: u64, hit_out: &AtomicBool) -> Option<Outcome> {
    let original = match state {
        DiskState::Clean => &db.clean_state,
        DiskState::Wal => &db.wal_state,
    };
    let disk = disk_from(original);
    let counter = Arc::new(ReadCounter::default());
    counter.fail_at.store(nth, Ordering::SeqCst);
    let flaky = FlakyReads {
        inner: Arc::new(disk.clone()),
        counter: counter.clone(),
    };
    let opened = open_db(db.backend, Arc::new(flaky));
    // Only reads during the open fail.
    counter.fail_at.store(u64::MAX, Ordering::SeqCst);
    let hit = counter.hit.load(Ordering::SeqCst);
    hit_out.store(hit, Ordering::SeqCst);
    let clean_open = |what: &str| -> Option<String> {
        match open_db(db.backend, Arc::new(disk.clone())).and_then(|e| read_state(&e)) {
            Ok(s) if s == db.want => None,
            Ok(s) => Some(format!(
                "{what}; then a clean open: {}{}",
                diff(&db.want, &s),
                which_state(db, &s)
            )),
            Err(e) => Some(format!("{what}; then a clean open failed: {e}")),
        }
    };
    match opened {
        Ok(engine) => {
            let got = read_state(&engine);
            drop(engine);
            let detail = match &got {
                Ok(s) if *s == db.want => None,
                Ok(s) => Some(format!(
                    "opened: {}{}",
                    diff(&db.want, s),
                    which_state(db, s)
                )),
                Err(e) => Some(format!("opened, scan failed: {e}")),
            };
            if let Some(d) = detail {
                let prefix = if hit { "EIO swallowed, " } else { "" };
                return Some(outcome(Verdict::SilentlyLost, format!("{prefix}{d}")));
            }
            if let Some(d) = clean_open("opened intact") {
                return Some(outcome(Verdict::SilentlyLost, d));
            }
            hit.then(|| outcome(Verdict::Intact, "EIO swallowed, data intact"))
        }
        Err(e) => {
            let after = images(&disk);
            if let Some(what) = changes(original, &after) {
                return Some(outcome(
                    Verdict::RefusedButChanged,
                    format!("refused ({e}) but {what}"),
                ));
            }
            if let Some(d) = clean_open(&format!("refused ({e})")) {
                return Some(outcome(Verdict::RestoreFailed, d));
            }
            if !hit {
                return Some(outcome(
                    Verdict::WrongError,
                    format!("refused without reaching the injected EIO: {e}"),
                ));
            }
            Some(if matches!(e, Error::Io { .. }) {
                outcome(Verdict::Refused, e.to_string())
            } else {
                outcome(
                    Verdict::WrongError,
                    format!("an EIO refused as {}: {e}", error_kind(&e)),
                )
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Panics and hangs.

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static CURRENT: Mutex<Option<(String, Instant)>> = Mutex::new(None);

fn guarded(id: &str, f: impl FnOnce() -> Option<Outcome>) -> Option<Outcome> {
    *CURRENT.lock().unwrap() = Some((id.to_string(), Instant::now()));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    *CURRENT.lock().unwrap() = None;
    result.unwrap_or_else(|_| {
        let msg = LAST_PANIC
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| "panic".into());
        Some(outcome(Verdict::Panicked, msg))
    })
}

fn start_watchdog() {
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            if let Some((id, since)) = CURRENT.lock().unwrap().as_ref()
                && since.elapsed() > CASE_TIMEOUT
            {
                eprintln!("fault suite: case {id} hangs (> {CASE_TIMEOUT:?}); aborting");
                std::process::abort();
            }
        }
    });
}

// ---------------------------------------------------------------------------
// The summary.

type RowKey = (String, &'static str, Backend, DiskState);

#[derive(Default)]
struct Summary {
    rows: BTreeMap<RowKey, BTreeMap<Verdict, usize>>,
    /// First example of each failing (row, verdict).
    examples: BTreeMap<(RowKey, Verdict), (String, String)>,
    cases: usize,
}

impl Summary {
    fn record(&mut self, case: &Case, out: Outcome) {
        self.cases += 1;
        let key = (
            case.damage.file_kind(),
            case.damage.kind(),
            case.backend,
            case.state,
        );
        *self
            .rows
            .entry(key.clone())
            .or_default()
            .entry(out.verdict)
            .or_default() += 1;
        if out.verdict.is_failure(true) {
            self.examples
                .entry((key, out.verdict))
                .or_insert_with(|| (case.id(), out.detail));
        }
    }

    fn failures(&self, strict: bool) -> usize {
        self.rows
            .values()
            .flat_map(|m| m.iter())
            .filter(|(v, _)| v.is_failure(strict))
            .map(|(_, n)| n)
            .sum()
    }

    fn render(&self, strict: bool, elapsed: Duration) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nfault suite: {} cases in {:.1}s, {} failures{}",
            self.cases,
            elapsed.as_secs_f64(),
            self.failures(strict),
            if strict {
                " (strict: tolerated counts)"
            } else {
                ""
            }
        );
        let _ = write!(
            s,
            "{:<18} {:<10} {:<9} {:<5} {:>5}",
            "file", "damage", "backend", "state", "run"
        );
        for v in Verdict::ALL {
            let _ = write!(s, " {:>width$}", v.name(), width = v.name().len().max(5));
        }
        s.push('\n');
        let mut totals: BTreeMap<Verdict, usize> = BTreeMap::new();
        for ((file, damage, backend, state), counts) in &self.rows {
            let run: usize = counts.values().sum();
            let _ = write!(
                s,
                "{:<18} {:<10} {:<9} {:<5} {:>5}",
                file,
                damage,
                backend.name(),
                state.name(),
                run
            );
            for v in Verdict::ALL {
                let n = counts.get(&v).copied().unwrap_or(0);
                *totals.entry(v).or_default() += n;
                let cell = if n == 0 {
                    "-".to_string()
                } else {
                    n.to_string()
                };
                let _ = write!(s, " {:>width$}", cell, width = v.name().len().max(5));
            }
            s.push('\n');
        }
        let _ = write!(
            s,
            "{:<18} {:<10} {:<9} {:<5} {:>5}",
            "TOTAL", "", "", "", self.cases
        );
        for v in Verdict::ALL {
            let n = totals.get(&v).copied().unwrap_or(0);
            let _ = write!(s, " {:>width$}", n, width = v.name().len().max(5));
        }
        s.push('\n');
        if !self.examples.is_empty() {
            let _ = writeln!(
                s,
                "\nfirst example of each failure and tolerated loss (reproduce one with FAULT_SUITE_FILTER='<id>' \
                 cargo test -p entidb-engine --test fault_suite -- --nocapture):"
            );
            for ((_, verdict), (id, detail)) in &self.examples {
                let _ = writeln!(s, "  [{}] {id}: {detail}", verdict.name());
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------

#[test]
fn fault_injection_matrix() {
    let started = Instant::now();
    let filter = std::env::var("FAULT_SUITE_FILTER").unwrap_or_default();
    let strict = std::env::var("FAULT_SUITE_STRICT").is_ok_and(|v| v == "1");
    let verbose = std::env::var("FAULT_SUITE_VERBOSE").is_ok_and(|v| v == "1");
    let dbs = [build(Backend::Plain), build(Backend::Encrypted)];
    for db in &dbs {
        // The undamaged database opens with everything, in both states.
        for files in [&db.clean_state, &db.wal_state] {
            let disk = disk_from(files);
            let engine = open_db(db.backend, Arc::new(disk)).unwrap();
            assert_eq!(read_state(&engine).unwrap(), db.want, "{:?}", db.backend);
        }
        let names: Vec<&String> = db.wal_state.keys().collect();
        assert!(
            db.wal_state.keys().filter(|n| n.ends_with(".eseg")).count() >= 3,
            "{:?}: several segments: {names:?}",
            db.backend
        );
        assert!(db.clean_state.contains_key("MANIFEST") && db.wal_state.contains_key("WAL"));
        eprintln!(
            "{}: files (wal state) {:?}; WAL {} bytes, {} commits after the last checkpoint",
            db.backend.name(),
            db.wal_state
                .iter()
                .map(|(n, b)| format!("{n}:{}", b.len()))
                .collect::<Vec<_>>(),
            db.wal_state["WAL"].len(),
            db.tail.len() - 1
        );
    }

    panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap() = Some(info.to_string().replace('\n', " "));
    }));
    start_watchdog();
    let mut summary = Summary::default();
    for db in &dbs {
        for state in [DiskState::Clean, DiskState::Wal] {
            let (group, cases) = (Instant::now(), summary.cases);
            for case in build_cases(db, state) {
                let id = case.id();
                if !id.contains(&filter) {
                    continue;
                }
                let out = guarded(&id, || Some(run_damage(db, &case))).unwrap();
                if verbose {
                    eprintln!("{id}: {} {}", out.verdict.name(), out.detail);
                }
                summary.record(&case, out);
            }
            let prefix = format!("{}/{}/eio-read#", db.backend.name(), state.name());
            let eio_wanted = prefix.contains(&filter) || filter.starts_with(&prefix);
            for nth in 1..if eio_wanted { 100_000 } else { 1 } {
                let case = Case {
                    backend: db.backend,
                    state,
                    damage: Damage::ReadError { nth },
                };
                let id = case.id();
                let mut reached = true;
                let out = guarded(&id, || {
                    let (out, hit) = run_read_error(db, state, nth);
                    reached = hit;
                    out
                });
                if let Some(out) = out
                    && id.contains(&filter)
                {
                    if verbose {
                        eprintln!("{id}: {} {}", out.verdict.name(), out.detail);
                    }
                    summary.record(&case, out);
                }
                if !reached {
                    break;
                }
            }
            eprintln!(
                "{}/{}: {} cases in {:.1}s",
                db.backend.name(),
                state.name(),
                summary.cases - cases,
                group.elapsed().as_secs_f64()
            );
        }
    }
    let _ = panic::take_hook();
    let report = summary.render(strict, started.elapsed());
    eprintln!("{report}");
    assert!(
        summary.cases > 0,
        "no case matches FAULT_SUITE_FILTER={filter:?}"
    );
    assert_eq!(
        summary.failures(strict),
        0,
        "fault suite found failures (summary above; run with --nocapture):{report}"
    );
}
