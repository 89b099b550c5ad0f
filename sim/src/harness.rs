//! Execution: runs a history against the engine and the model side by
//! side, crashes and recovers on I/O failures, minimises failing histories.

use crate::Mode;
use crate::history::{FaultKind, SLOTS, Step, params};
use crate::model::{Committed, Expect, Kind, MTxn, Row};
use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use entidb_engine::index::index_keys;
use entidb_engine::keys::encode_keys;
use entidb_engine::storage::{
    EncryptedStorage, Fault, MemStorage, PowerLoss, Secret, SimDisk, Storage,
};
use entidb_engine::{
    Engine, EngineOptions, Error, IndexScanRequest, KeyRange, ScanRequest, Transaction,
};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: [u8; 32] = [42; 32];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
        Field::new("u", DataType::Int64, true),
    ]))
}

fn batch(rows: &[(i64, Row)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.0.as_str()),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1.1))),
        ],
    )
    .unwrap()
}

fn rows_of(batches: &[RecordBatch]) -> Vec<(i64, Row)> {
    let mut out = Vec::new();
    for b in batches {
        let id = b.column(0).as_primitive::<Int64Type>();
        let v = b.column(1).as_string::<i32>();
        let u = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let uu = if u.is_null(i) { None } else { Some(u.value(i)) };
            out.push((id.value(i), (v.value(i).to_string(), uu)));
        }
    }
    out.sort();
    out
}

fn scan_all(t: &mut Transaction, kv: u64) -> Result<Vec<(i64, Row)>, Error> {
    let mut batches = Vec::new();
    for b in t.scan(kv, ScanRequest::default())? {
        batches.push(b?);
    }
    Ok(rows_of(&batches))
}

fn index_get(
    t: &mut Transaction,
    kv: u64,
    col: usize,
    value: i64,
) -> Result<Vec<(i64, Row)>, Error> {
    let value: arrow::array::ArrayRef = Arc::new(Int64Array::from(vec![value]));
    let (keys, _) = index_keys(&[value])?;
    let req = IndexScanRequest {
        index: vec![col],
        ranges: vec![KeyRange::point(keys.value(0).to_vec())],
        projection: None,
        include_key: false,
        max_candidates: None,
        build: true,
    };
    match t.index_scan(kv, &req)? {
        Some(b) => Ok(rows_of(&b)),
        None => Err(Error::InvalidArgument("index_scan gave up".into())),
    }
}

/// Declares column `u` unique in a writing transaction before it inserts
/// (the engine checks UNIQUE only for declared columns).
fn declare_u_unique(t: &mut Transaction, m: &MTxn, kv: u64) -> Result<(), String> {
    if !m.read_only {
        t.declare_unique(kv, &[2])
            .map_err(|e| format!("declare: {e}"))?;
    }
    Ok(())
}

fn pk_keys(ids: &[i64]) -> arrow::array::BinaryArray {
    let col: arrow::array::ArrayRef = Arc::new(Int64Array::from(ids.to_vec()));
    encode_keys(&[col]).unwrap()
}

fn kind_of(e: &Error) -> Option<Kind> {
    match e {
        Error::Conflict { .. } => Some(Kind::Conflict),
        Error::ConstraintViolation { .. } => Some(Kind::Violation),
        Error::ReadOnly => Some(Kind::ReadOnly),
        _ => None,
    }
}

fn is_io(e: &Error) -> bool {
    matches!(e, Error::Io { .. } | Error::Poisoned { .. })
}

/// The result of one step.
enum Outcome {
    Ok(String),
    /// An I/O failure: crash and recover.
    Crash(String),
}

pub(crate) struct Failure {
    pub(crate) step: usize,
    pub(crate) msg: String,
    pub(crate) trace: Vec<String>,
}

struct Sim {
    mode: Mode,
    options: EngineOptions,
    disk: Option<SimDisk>,
    mem: Option<Arc<MemStorage>>,
    engine: Option<Engine>,
    kv: u64,
    slots: Vec<Option<(Transaction, MTxn)>>,
    model: Committed,
    loss: PowerLoss,
    /// The commit that failed with an I/O error: the model state if it made
    /// it, and whether it was visible before the crash.
    in_flight: Option<(Committed, bool)>,
}

fn check<T: PartialEq + fmt::Debug>(
    what: &str,
    got: &Result<T, Error>,
    want: &Expect<T>,
) -> Result<(), String> {
    match (got, want) {
        (Ok(g), Ok(w)) if g == w => Ok(()),
        (Err(e), Err(ks)) if kind_of(e).is_some_and(|k| ks.contains(&k)) => Ok(()),
        _ => Err(format!("{what}: engine {got:?}, model {want:?}")),
    }
}

impl Sim {
    fn open_engine(&self) -> Result<Engine, Error> {
        let storage: Arc<dyn Storage> = match (&self.mem, &self.disk) {
            (Some(m), _) => m.clone(),
            (None, Some(d)) if self.mode == Mode::Encrypted => Arc::new(EncryptedStorage::open(
                Arc::new(d.clone()),
                Secret::Key(KEY),
            )?),
            (None, Some(d)) => Arc::new(d.clone()),
            (None, None) => return Err(Error::InvalidArgument("no storage".into())),
        };
        Ok(Engine::open(storage, self.options.clone())?)
    }

    fn new(mode: Mode, options: EngineOptions, initial_rows: i64) -> Result<Self, String> {
        let mut sim = Sim {
            mode,
            options,
            disk: mode.disk().then(SimDisk::new),
            mem: (!mode.disk()).then(|| Arc::new(MemStorage::new())),
            engine: None,
            kv: 0,
            slots: (0..SLOTS).map(|_| None).collect(),
            model: Committed::default(),
            loss: PowerLoss::DropUnsynced,
            in_flight: None,
        };
        let engine = sim.open_engine().map_err(|e| format!("open: {e}"))?;
        let mut t = engine.begin();
        let def = t
            .create_table("kv", schema(), vec![0])
            .map_err(|e| format!("create: {e}"))?;
        let seq = t.commit().map_err(|e| format!("create commit: {e}"))?;
        sim.kv = def.id;
        sim.model.last_seq = seq;
        sim.model.ddl_seq = seq;
        let mut t = engine.begin();
        let mut m = MTxn::new(false, false);
        let rows: Vec<(i64, Row)> = (0..initial_rows)
            .map(|k| (k, (format!("init{k}"), (k % 3 == 0).then_some(100 + k))))
            .collect();
        if !rows.is_empty() {
            t.insert(def.id, &batch(&rows))
                .map_err(|e| format!("initial insert: {e}"))?;
            m.insert(&sim.model, &rows)
                .map_err(|e| format!("model initial insert: {e:?}"))?;
            let seq = t.commit().map_err(|e| format!("initial commit: {e}"))?;
            let want = m.commit(&mut sim.model);
            if want != Ok(seq) {
                return Err(format!("initial commit: engine {seq}, model {want:?}"));
            }
        }
        sim.engine = Some(engine);
        Ok(sim)
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    /// Verifies the committed state through a fresh read-only transaction.
    fn committed_state(&self) -> Result<(Vec<(i64, Row)>, u64), String> {
        let engine = self.engine();
        let mut t = engine.begin_read_only();
        let rows = scan_all(&mut t, self.kv).map_err(|e| format!("scan: {e}"))?;
        Ok((rows, engine.visible_seq()))
    }

    fn crash_and_recover(&mut self, loss: PowerLoss) -> Result<String, String> {
        for s in &mut self.slots {
            *s = None;
        }
        self.engine = None;
        let disk = self.disk.clone().unwrap();
        disk.power_loss(loss)
            .map_err(|e| format!("power loss: {e}"))?;
        let engine = self
            .open_engine()
            .map_err(|e| format!("reopen after power loss {loss:?} failed: {e}"))?;
        self.engine = Some(engine);
        let (rows, seq) = self.committed_state()?;
        let acked: Vec<(i64, Row)> = self.model.latest().into_iter().collect();
        let in_flight = self.in_flight.take();
        if rows == acked && seq == self.model.last_seq {
            if let Some((_, true)) = in_flight {
                return Err(format!(
                    "a failed commit was visible before the crash but is lost after it (recovered seq {seq})"
                ));
            }
            return Ok(format!("recovered seq {seq}, acked state"));
        }
        if let Some((c, _)) = in_flight {
            let with: Vec<(i64, Row)> = c.latest().into_iter().collect();
            if rows == with && seq == c.last_seq {
                self.model = c;
                return Ok(format!("recovered seq {seq}, with the failed commit"));
            }
        }
        Err(format!(
            "recovered state (seq {seq}) is not a prefix containing every acknowledged commit \
             (model seq {}): recovered {rows:?}, acked {acked:?}",
            self.model.last_seq
        ))
    }

    fn step(&mut self, step: &Step) -> Result<Outcome, String> {
        let kv = self.kv;
        let slot = match step {
            Step::Begin { slot, .. }
            | Step::Scan { slot }
            | Step::Get { slot, .. }
            | Step::GetU { slot, .. }
            | Step::Insert { slot, .. }
            | Step::Update { slot, .. }
            | Step::Delete { slot, .. }
            | Step::Touch { slot }
            | Step::Commit { slot }
            | Step::Rollback { slot } => Some(*slot),
            _ => None,
        };
        if let Step::Begin { slot, read_only } = step {
            if self.slots[*slot].is_some() {
                return Ok(Outcome::Ok("skip (open)".into()));
            }
            let engine = self.engine();
            let t = if *read_only {
                engine.begin_read_only()
            } else {
                engine.begin()
            };
            self.slots[*slot] = Some((t, MTxn::new(*read_only, false)));
            return Ok(Outcome::Ok("ok".into()));
        }
        if let Some(slot) = slot
            && self.slots[slot].is_none()
        {
            return Ok(Outcome::Ok("skip (not open)".into()));
        }
        let model = &mut self.model;
        let entry = slot.and_then(|s| self.slots[s].as_mut());
        macro_rules! io {
            ($r:expr) => {
                if let Err(e) = &$r
                    && is_io(e)
                {
                    if !self.mode.disk() {
                        return Err(format!("I/O error without faults: {e}"));
                    }
                    return Ok(Outcome::Crash(format!("{e}")));
                }
            };
        }
        match step {
            Step::Begin { .. } => Ok(Outcome::Ok(String::new())),
            Step::Scan { .. } => {
                let (t, m) = entry.unwrap();
                let got = scan_all(t, kv);
                io!(got);
                let want: Vec<(i64, Row)> = m.view(model).into_iter().collect();
                check("scan", &got, &Ok(want))?;
                Ok(Outcome::Ok(format!(
                    "{} rows @snapshot {}",
                    got.map(|r| r.len()).unwrap_or(0),
                    m.snapshot.unwrap_or(0)
                )))
            }
            Step::Get { key, .. } => {
                let (t, m) = entry.unwrap();
                let got = index_get(t, kv, 0, *key);
                io!(got);
                let want: Vec<(i64, Row)> = m
                    .view(model)
                    .get(key)
                    .map(|r| vec![(*key, r.clone())])
                    .unwrap_or_default();
                check("point read by id", &got, &Ok(want))?;
                Ok(Outcome::Ok(format!("{:?}", got.unwrap())))
            }
            Step::GetU { u, .. } => {
                let (t, m) = entry.unwrap();
                let got = index_get(t, kv, 2, *u);
                io!(got);
                let want: Vec<(i64, Row)> = m
                    .view(model)
                    .into_iter()
                    .filter(|(_, r)| r.1 == Some(*u))
                    .collect();
                check("point read by u", &got, &Ok(want))?;
                Ok(Outcome::Ok(format!("{} rows", got.unwrap().len())))
            }
            Step::Insert { rows, undo, .. } => {
                let (t, m) = entry.unwrap();
                declare_u_unique(t, m, kv)?;
                let sp = t.savepoint();
                let before = m.clone();
                let want = m.insert(model, rows);
                let got = t.insert(kv, &batch(rows));
                io!(got);
                check("insert", &got, &want)?;
                if *undo && got.is_ok() {
                    t.rollback_to(sp);
                    m.undo_to(&before);
                }
                Ok(Outcome::Ok(format!("{got:?}")))
            }
            Step::Update { key, row, undo, .. } => {
                let (t, m) = entry.unwrap();
                declare_u_unique(t, m, kv)?;
                let sp = t.savepoint();
                let before = m.clone();
                let mut staged = m.clone();
                let want = staged.delete(model, &[*key]).and_then(|n| {
                    if n == 1 {
                        staged.insert(model, &[(*key, row.clone())])
                    } else {
                        Ok(0)
                    }
                });
                let got = t.delete(kv, &pk_keys(&[*key])).and_then(|n| {
                    if n == 1 {
                        t.insert(kv, &batch(&[(*key, row.clone())]))
                    } else {
                        Ok(0)
                    }
                });
                io!(got);
                check("update", &got, &want)?;
                *m = staged;
                if got.is_err() || *undo {
                    t.rollback_to(sp);
                    m.undo_to(&before);
                }
                Ok(Outcome::Ok(format!("{got:?}")))
            }
            Step::Delete { keys, undo, .. } => {
                let (t, m) = entry.unwrap();
                let sp = t.savepoint();
                let before = m.clone();
                let want = m.delete(model, keys);
                let got = t.delete(kv, &pk_keys(keys));
                io!(got);
                check("delete", &got, &want)?;
                if *undo && got.is_ok() {
                    t.rollback_to(sp);
                    m.undo_to(&before);
                }
                Ok(Outcome::Ok(format!("{got:?}")))
            }
            Step::Touch { .. } => {
                let (t, m) = entry.unwrap();
                let want = m.touch(model);
                let got = t
                    .touch_schema(kv)
                    .and_then(|()| t.set_catalog(b"catalog: CREATE INDEX ...".to_vec()));
                io!(got);
                check("touch", &got, &want)?;
                Ok(Outcome::Ok(format!("{got:?}")))
            }
            Step::Commit { slot } => {
                let (t, mut m) = self.slots[*slot].take().unwrap();
                let mut after = self.model.clone();
                let want = m.commit(&mut after);
                let got = t.commit().map_err(Error::from);
                if let Err(e) = &got
                    && is_io(e)
                {
                    if !self.mode.disk() {
                        return Err(format!("commit: I/O error without faults: {e}"));
                    }
                    let (rows, seq) = self.committed_state()?;
                    let acked: Vec<(i64, Row)> = self.model.latest().into_iter().collect();
                    // Validation comes before any I/O of the commit, but
                    // for the files of a write-once load (`load.rs`),
                    // written before the commit lock: a load, doomed or
                    // not, may fail on the disk first. Its commit never
                    // reached the WAL: it is not visible and never becomes
                    // durable. A failure of the load's own files fails that
                    // commit alone; a failed directory fsync poisons.
                    let own_files = matches!(e, Error::Io { file, .. }
                        if file.ends_with(".eseg") || file.starts_with("ix-"));
                    let before_lock = own_files
                        || matches!(e, Error::Poisoned { cause } if cause.contains("after a load"));
                    if before_lock {
                        if !(rows == acked && seq == self.model.last_seq) {
                            return Err(format!(
                                "a load failed before the commit lock ({e}) but is visible"
                            ));
                        }
                        if !own_files {
                            return Ok(Outcome::Crash(format!("{e}")));
                        }
                        if let Err(h) = self.engine().check_healthy() {
                            return Err(format!(
                                "a load whose own files failed ({e}) poisoned the database: {h}"
                            ));
                        }
                        return Ok(Outcome::Ok(format!("{got:?}")));
                    }
                    if want.is_err() {
                        return Err(format!("commit: engine {got:?}, model {want:?}"));
                    }
                    let visible = !(rows == acked && seq == self.model.last_seq);
                    if visible {
                        return Err(format!(
                            "commit returned {e} but is visible (visible seq {seq}, model seq {})",
                            self.model.last_seq
                        ));
                    }
                    self.in_flight = Some((after, visible));
                    return Ok(Outcome::Crash(format!(
                        "{e}{}",
                        if visible { " (but visible)" } else { "" }
                    )));
                }
                if self.options.background_checkpoints {
                    self.engine().wait_for_background_checkpoint();
                }
                check("commit", &got, &want)?;
                if got.is_ok() {
                    self.model = after;
                }
                Ok(Outcome::Ok(format!("{got:?}")))
            }
            Step::Rollback { slot } => {
                let (t, _) = self.slots[*slot].take().unwrap();
                t.rollback();
                Ok(Outcome::Ok("ok".into()))
            }
            Step::Checkpoint => {
                let got = self.engine().checkpoint().map_err(Error::from);
                io!(got);
                got.map_err(|e| format!("checkpoint: {e}"))?;
                Ok(Outcome::Ok("ok".into()))
            }
            Step::BuildIndex { cols } => {
                let got = self.engine().begin().build_index(kv, cols);
                io!(got);
                got.map_err(|e| format!("build_index: {e}"))?;
                Ok(Outcome::Ok("ok".into()))
            }
            Step::ForgetIndex { cols } => {
                let got = self.engine().forget_index(kv, cols);
                io!(got);
                got.map_err(|e| format!("forget_index: {e}"))?;
                Ok(Outcome::Ok("ok".into()))
            }
            Step::Reopen { loss } => {
                if self.disk.is_none() {
                    return Ok(Outcome::Ok("skip".into()));
                }
                self.crash_and_recover(*loss).map(Outcome::Ok)
            }
            Step::Fault { kind, n, loss } => {
                let Some(disk) = &self.disk else {
                    return Ok(Outcome::Ok("skip".into()));
                };
                self.loss = *loss;
                let ops = disk.op_count() + 1 + n;
                let r = match kind {
                    FaultKind::Eio => disk.inject(Fault::EioAt(ops)),
                    FaultKind::NoSpace => disk.inject(Fault::NoSpaceAt(ops)),
                    FaultKind::SyncFails => {
                        disk.inject(Fault::SyncFailsAt(disk.sync_count() + 1 + n))
                    }
                    FaultKind::CrashAfter => disk.crash_after(*n),
                };
                r.map_err(|e| format!("inject: {e}"))?;
                Ok(Outcome::Ok("armed".into()))
            }
        }
    }
}

/// Runs `steps`; the trace is filled as it goes.
pub(crate) fn execute(
    mode: Mode,
    seed: u64,
    steps: &[Step],
    verbose: bool,
) -> Result<usize, Failure> {
    let p = params(mode, seed);
    let mut trace = Vec::new();
    let fail = |step: usize, msg: String, trace: &mut Vec<String>| Failure {
        step,
        msg,
        trace: std::mem::take(trace),
    };
    let mut sim = match Sim::new(mode, p.options, p.keys / 2) {
        Ok(s) => s,
        Err(msg) => return Err(fail(0, msg, &mut trace)),
    };
    let mut crashes = 0;
    for (i, step) in steps.iter().enumerate() {
        let result = catch_unwind(AssertUnwindSafe(|| sim.step(step)))
            .unwrap_or_else(|p| Err(format!("panic: {}", panic_msg(&p))));
        let line = match result {
            Ok(Outcome::Ok(s)) => format!("#{i:<4} {step:?} → {s}"),
            Ok(Outcome::Crash(e)) => {
                crashes += 1;
                let loss = sim.loss;
                match sim.crash_and_recover(loss) {
                    Ok(r) => format!("#{i:<4} {step:?} → I/O failure ({e}); crash: {r}"),
                    Err(msg) => {
                        trace.push(format!("#{i:<4} {step:?} → I/O failure ({e}); crash"));
                        return Err(fail(i, msg, &mut trace));
                    }
                }
            }
            Err(msg) => {
                trace.push(format!("#{i:<4} {step:?} → FAILED"));
                return Err(fail(i, msg, &mut trace));
            }
        };
        if verbose {
            eprintln!("{line}");
        }
        trace.push(line);
        // A fault may have poisoned the engine without an error reaching
        // this step (e.g. a failed inline checkpoint after a commit).
        if mode.disk()
            && let Some(e) = &sim.engine
            && e.check_healthy().is_err()
        {
            crashes += 1;
            let loss = sim.loss;
            match sim.crash_and_recover(loss) {
                Ok(r) => trace.push(format!("      (poisoned) crash: {r}")),
                Err(msg) => return Err(fail(i, msg, &mut trace)),
            }
        }
    }
    // Everything acked must survive a final clean crash.
    if sim.disk.is_some()
        && let Err(msg) = sim.crash_and_recover(PowerLoss::DropUnsynced)
    {
        return Err(fail(steps.len(), msg, &mut trace));
    }
    Ok(crashes)
}

fn panic_msg(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "?".into())
}

/// The first words of a failure message, to keep the minimiser on one bug.
fn category(msg: &str) -> String {
    msg.split(':').next().unwrap_or("").to_string()
}

/// Drops chunks of steps while the history still fails the same way.
fn minimise(mode: Mode, seed: u64, steps: &[Step], msg: &str) -> Vec<Step> {
    let cat = category(msg);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut cur: Vec<Step> = steps.to_vec();
    let fails = |s: &[Step]| match execute(mode, seed, s, false) {
        Err(f) => category(&f.msg) == cat,
        Ok(_) => false,
    };
    // Cut everything after the failing step first.
    if let Err(f) = execute(mode, seed, &cur, false) {
        cur.truncate(f.step + 1);
    }
    let mut chunk = cur.len() / 2;
    while chunk >= 1 && Instant::now() < deadline {
        let mut i = 0;
        let mut removed = false;
        while i < cur.len() && Instant::now() < deadline {
            let end = (i + chunk).min(cur.len());
            let mut cand = cur[..i].to_vec();
            cand.extend_from_slice(&cur[end..]);
            if fails(&cand) {
                cur = cand;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if !removed {
            chunk /= 2;
        }
    }
    cur
}

/// Minimises a failing history and prints it (or the full one when the
/// minimised history no longer fails).
pub(crate) fn print_minimised(mode: Mode, seed: u64, steps: &[Step], f: &Failure) {
    let min = minimise(mode, seed, steps, &f.msg);
    match execute(mode, seed, &min, false) {
        Err(mf) => {
            eprintln!(
                "minimised history ({} of {} steps): {}",
                min.len(),
                steps.len(),
                mf.msg
            );
            for line in &mf.trace {
                eprintln!("  {line}");
            }
        }
        Ok(_) => {
            eprintln!("(minimisation lost the failure) full history:");
            for line in &f.trace {
                eprintln!("  {line}");
            }
        }
    }
}
