//! Checkpoints: moving committed versions from the WAL into segments.
//!
//! A checkpoint covers every commit up to `seq`, the last commit when it
//! starts. It runs in three phases, one checkpoint at a time (the engine's
//! checkpoint lock), and writes segments **without** the commit lock, so
//! commits go on meanwhile:
//!
//! A. Under the commit lock (short): make every appended WAL byte durable,
//!    fix `seq`, the garbage-collection horizon (the oldest open snapshot),
//!    each table's chunk list and the WAL position `mark` after commit `seq`.
//! B. No lock: per table, write one new segment holding the rows of the
//!    captured mem chunks and of any captured segment worth compacting (more
//!    than a quarter of its rows deleted at or before the horizon, or a small
//!    segment among many), dropping versions deleted at or before the horizon,
//!    and fsync it, then the index runs of the new segment for every index
//!    listed on the table (`index_run.rs`); fsync the directory. Commits made now add mem chunks
//!    (not in this checkpoint) and may mark captured rows deleted (their
//!    sequence is above `seq`).
//! C. Under the commit lock again:
//!    1. append a CHECKPOINT(`seq`) record and fsync the WAL;
//!    2. save the manifest atomically: `checkpoint_seq` = `seq`, the kept and
//!       new segments, and only deletes at or before `seq` (later ones are
//!       replayed from the WAL);
//!    3. replace the WAL by its new base record (naming this checkpoint)
//!       followed by the bytes after `mark` — the commits of phase B —
//!       via `WAL.tmp`, fdatasync, rename, directory fsync;
//!    4. swap the in-memory chunk lists (new segments, then the mem chunks
//!       added in phase B), carry the deletes marked in phase B over to the
//!       moved rows, re-point the key index at the new rows, give the
//!       secondary indexes the new segment (its runs, written in phase B
//!       for every listed index, see `index_run.rs`), forget tombstones no snapshot needs, remove replaced segment
//!       files.
//!
//! A crash before C.2 leaves the old manifest, which does not name the new
//! segments: recovery deletes them as orphans and replays the WAL. A crash
//! between C.2 and C.3 leaves the old WAL ending in the CHECKPOINT(`seq`)
//! record: recovery skips its commits up to `seq` and replays the rest. Any
//! I/O failure poisons the database.
//!
//! Locks: the checkpoint lock, then the commit lock (phases A and C), then
//! table locks — the order written on `Inner` (`engine.rs`).

use crate::chunk::{Chunk, ChunkData, ChunkList, RowLoc};
use crate::engine::{CommitState, Inner};
use crate::error::{Error, Result};
use crate::index::NewEntries;
use crate::index_run::IndexRun;
use crate::locks::{read, write};
use crate::manifest::{Manifest, SegmentEntry, TableEntry};
use crate::schema::TableDef;
use crate::segment::{ROW_GROUP_ROWS, SegmentReader, segment_file_name, write_segment};
use crate::table::TableState;
use crate::wal::WalRecord;
use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Runs a checkpoint (see the module docs).
pub(crate) fn run(inner: &Inner) -> Result<()> {
    inner.wal().check()?;
    let _one_at_a_time = inner.lock_checkpoints()?;
    let result = run_phases(inner);
    if let Err(e) = &result {
        inner.wal().poison(format!("checkpoint failed: {e}"));
    }
    result
}

fn commit_lock(inner: &Inner) -> Result<std::sync::MutexGuard<'_, CommitState>> {
    inner.lock_commits()
}

/// What phase A fixed.
struct Start {
    seq: u64,
    /// Bytes loaded before `seq` (`load.rs`), covered by this checkpoint.
    loaded_bytes: u64,
    horizon: u64,
    mark: u64,
    /// Live tables with their chunk lists at `seq`.
    tables: Vec<(Arc<TableState>, Vec<Arc<Chunk>>)>,
    /// Tables dropped at or before the horizon: removed.
    gone: Vec<Arc<TableState>>,
}

/// Phase A, under the commit lock. `None` when there is nothing to do.
fn start(inner: &Inner) -> Result<Option<Start>> {
    let state = commit_lock(inner)?;
    let durable = inner.wal().sync_all()?;
    inner.publish(durable);
    let seq = state.last_seq;
    if inner.wal().is_empty() && inner.checkpoint_seq() == seq {
        return Ok(None);
    }
    let horizon = inner.snapshots().oldest(seq)?;
    let mut tables = Vec::new();
    let mut gone = Vec::new();
    for table in inner.tables()?.values() {
        // Copied out, so `dropped_seq` (a leaf) is not held across the
        // chunk-list read below.
        let dropped_seq = *read(&table.dropped_seq)?;
        match dropped_seq {
            Some(d) if d <= horizon => gone.push(table.clone()),
            // Dropped at or before `seq`: not in the manifest, kept in
            // memory for the snapshots that still see it.
            Some(_) => {}
            None => {
                let chunks = read(&table.chunks)?.chunks.clone();
                tables.push((table.clone(), chunks));
            }
        }
    }
    Ok(Some(Start {
        seq,
        loaded_bytes: inner.loaded_bytes(),
        horizon,
        mark: inner.wal().mark()?,
        tables,
        gone,
    }))
}

fn run_phases(inner: &Inner) -> Result<()> {
    let Some(start) = start(inner)? else {
        return Ok(());
    };
    let Start {
        seq,
        loaded_bytes,
        horizon,
        mark,
        tables,
        gone,
    } = start;
    // Phase B: segments, without the commit lock.
    fail::fail_point!("checkpoint::segments");
    let mut plans = Vec::new();
    for (table, chunks) in tables {
        plans.push(plan_table(inner, table, chunks, horizon, seq)?);
    }
    let storage = inner.storage().as_ref();
    storage.sync_dir().map_err(Error::io("."))?;

    // Phase C, under the commit lock.
    let _commits_wait = commit_lock(inner)?;
    let mut bytes = Vec::new();
    WalRecord::Checkpoint {
        checkpoint_seq: seq,
    }
    .encode_into(&mut bytes)?;
    let end = inner.wal().append(&bytes, seq)?;
    inner.wal().wait_durable(end)?;
    let (catalog_seq, blob) = inner.catalog()?.at(seq);
    let manifest = Manifest {
        checkpoint_seq: seq,
        next_id: inner.next_id(),
        next_rowid: inner.next_rowid(),
        catalog_seq,
        catalog: blob.as_ref().clone(),
        encryption: inner.encryption().to_vec(),
        tables: plans.iter().map(|p| p.entry.clone()).collect(),
    };
    manifest.save(storage)?;
    inner.set_checkpoint_seq(seq);
    inner.checkpointed_loaded_bytes(loaded_bytes);
    // Everything up to the CHECKPOINT record is covered, except the commits
    // of phase B, which lie between `mark` and it.
    let kept_until = end - bytes.len() as u64;
    inner.wal().reset(
        inner.storage().as_ref(),
        &crate::wal::base_record(seq)?,
        mark,
        kept_until,
    )?;

    let mut obsolete = Vec::new();
    let mut unlisted_runs = Vec::new();
    for plan in plans {
        obsolete.extend(plan.replaced.iter().copied());
        unlisted_runs.extend(swap_in(&plan, horizon)?);
    }
    {
        let mut map = inner.tables_mut()?;
        for t in gone {
            map.remove(&t.def.id);
            for c in &read(&t.chunks)?.chunks {
                if matches!(c.data, ChunkData::Segment(_)) {
                    obsolete.push(c.id);
                }
            }
        }
    }
    prune_catalog(inner, horizon)?;
    for id in &obsolete {
        let name = segment_file_name(*id);
        storage.remove(&name).map_err(Error::io(&name))?;
    }
    inner.runs().remove_runs_of(&obsolete)?;
    // Derived files only: a failure to remove them is a warning.
    inner.runs().remove_files_quietly(&unlisted_runs);
    if !obsolete.is_empty() {
        storage.sync_dir().map_err(Error::io("."))?;
    }
    Ok(())
}

/// The new state of one table, prepared before the manifest is saved.
struct TablePlan {
    /// Ids of the chunks captured at `seq`; chunks added later (commits of
    /// phase B) are kept after the new ones.
    captured: ahash::AHashSet<u64>,
    /// The captured chunks rewritten into the new segment.
    rewrite: Vec<Arc<Chunk>>,
    /// Id of the new segment, if any rows went into one.
    new_segment: Option<u64>,
    table: Arc<TableState>,
    entry: TableEntry,
    chunks: Vec<Arc<Chunk>>,
    /// Old → new location of every row carried into the new segment.
    moved: Vec<(RowLoc, RowLoc)>,
    /// The row keys of `moved`, collected only when the key index was built
    /// (re-pointing it needs them; otherwise it is built later from the
    /// new chunks).
    moved_keys: Option<Vec<Box<[u8]>>>,
    rewritten: ahash::AHashSet<u64>,
    replaced: Vec<u64>,
    /// The index runs written for the new segment, by index columns.
    runs: Vec<(Vec<usize>, Arc<IndexRun>)>,
}

/// Should this segment be rewritten?
fn compactable(chunk: &Chunk, segments: usize, horizon: u64) -> Result<bool> {
    let dead = chunk
        .deletes()?
        .iter()
        .filter(|(_, s)| *s <= horizon)
        .count();
    let rows = chunk.rows as usize;
    Ok(dead * 4 > rows || (segments > 4 && rows < ROW_GROUP_ROWS / 4))
}

/// Phase B for one table: writes its new segment from the chunks captured
/// at `seq` (see the module docs).
fn plan_table(
    inner: &Inner,
    table: Arc<TableState>,
    chunks: Vec<Arc<Chunk>>,
    horizon: u64,
    seq: u64,
) -> Result<TablePlan> {
    let captured: ahash::AHashSet<u64> = chunks.iter().map(|c| c.id).collect();
    // The definition at `seq`: what the manifest records, and the width of
    // the new segment (every captured chunk is at most that wide; columns
    // added later are replayed from the WAL).
    let def = table.def_at(seq)?;
    let segments = chunks
        .iter()
        .filter(|c| matches!(c.data, ChunkData::Segment(_)))
        .count();
    let mut keep = Vec::new();
    let mut rewrite = Vec::new();
    for c in chunks {
        let is_mem = matches!(c.data, ChunkData::Mem { .. });
        if is_mem || compactable(&c, segments, horizon)? {
            rewrite.push(c);
        } else {
            keep.push(c);
        }
    }
    let mut batches = Vec::new();
    let mut moved = Vec::new();
    let mut moved_keys = table.keys_if_built()?.is_some().then(Vec::new);
    let mut carried = BTreeMap::new();
    let new_id = inner.allocate_id();
    let mut next_row = 0u32;
    let mut runs = Vec::new();
    for chunk in &rewrite {
        for (first_row, batch) in chunk_batches(chunk, &def)? {
            let deleted: HashMap<u32, u64> = chunk.deletes()?.into_iter().collect();
            let key_col = batch.num_columns().saturating_sub(3);
            let keys = crate::schema::col(&batch, key_col)?
                .as_binary_opt::<i32>()
                .ok_or_else(|| {
                    Error::corruption(format!("chunk {}", chunk.id), 0, "_key column missing")
                })?;
            let mut mask = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() as u32 {
                let old = first_row + i;
                let del = deleted.get(&old).copied();
                let live = del.is_none_or(|d| d > horizon);
                mask.push(live);
                if live {
                    moved.push((
                        RowLoc {
                            chunk: chunk.id,
                            row: old,
                        },
                        RowLoc {
                            chunk: new_id,
                            row: next_row,
                        },
                    ));
                    if let Some(mk) = moved_keys.as_mut() {
                        mk.push(keys.value(i as usize).into());
                    }
                    if let Some(d) = del {
                        carried.insert(next_row, d);
                    }
                    next_row += 1;
                }
            }
            let kept = filter_record_batch(&batch, &BooleanArray::from(mask))?;
            if kept.num_rows() > 0 {
                batches.push(kept);
            }
        }
    }
    let mut new_chunks = keep.clone();
    // The manifest describes the state at `seq`: later deletes (commits of
    // phase B) are replayed from the WAL.
    let at_seq = |deletes: Vec<(u32, u64)>| -> Vec<(u32, u64)> {
        deletes.into_iter().filter(|(_, d)| *d <= seq).collect()
    };
    let mut segments_out: Vec<SegmentEntry> = keep
        .iter()
        .map(|c| {
            Ok(SegmentEntry {
                id: c.id,
                rows: u64::from(c.rows),
                deletes: at_seq(c.deletes()?),
                created_seq: match &c.data {
                    ChunkData::Segment(seg) => seg.loaded_seq().unwrap_or(0),
                    ChunkData::Mem { .. } => 0,
                },
            })
        })
        .collect::<Result<_>>()?;
    if !batches.is_empty() {
        let storage = inner.storage().as_ref();
        write_segment(storage, new_id, table.def.id, &batches)?;
        let reader = Arc::new(SegmentReader::open_cached(
            storage,
            new_id,
            Some(inner.cache().clone()),
        )?);
        segments_out.push(SegmentEntry {
            id: new_id,
            rows: reader.footer.rows,
            deletes: at_seq(carried.iter().map(|(r, s)| (*r, *s)).collect()),
            created_seq: 0,
        });
        let chunk = Arc::new(Chunk::new(new_id, ChunkData::Segment(reader), carried));
        runs = write_runs(inner, &table, &chunk, &def)?;
        new_chunks.push(chunk);
    }
    let replaced = rewrite
        .iter()
        .filter(|c| matches!(c.data, ChunkData::Segment(_)))
        .map(|c| c.id)
        .collect();
    Ok(TablePlan {
        captured,
        rewrite: rewrite.clone(),
        new_segment: (!batches.is_empty()).then_some(new_id),
        entry: TableEntry {
            def,
            created_seq: table.created_seq,
            segments: segments_out,
        },
        table,
        chunks: new_chunks,
        moved,
        moved_keys,
        rewritten: rewrite.iter().map(|c| c.id).collect(),
        replaced,
        runs,
    })
}

/// Phase B: the runs of every index listed on the table for its new
/// segment (`index_run.rs`), so that no open has to rebuild them. An index
/// listed later is given its entries of the segment in phase C.
fn write_runs(
    inner: &Inner,
    table: &TableState,
    chunk: &Arc<Chunk>,
    def: &TableDef,
) -> Result<Vec<(Vec<usize>, Arc<IndexRun>)>> {
    let listed = table.indexes.listed_columns()?;
    let mut runs = Vec::new();
    for columns in listed {
        if let Some(run) = inner.runs().build(chunk, &columns, def)? {
            runs.push((columns, run));
        }
    }
    Ok(runs)
}

/// All stored columns plus `_seq` of a chunk, as `(first_row, batch)`
/// pieces, with the user columns of `def` the chunk lacks filled in (so
/// chunks written before and after an ADD COLUMN make one segment).
fn chunk_batches(chunk: &Chunk, def: &TableDef) -> Result<Vec<(u32, RecordBatch)>> {
    let pieces = match &chunk.data {
        ChunkData::Mem { batch, seq } => vec![(0, crate::schema::with_seq_column(batch, *seq)?)],
        ChunkData::Segment(seg) => {
            let mut out = Vec::new();
            let mut first = 0u32;
            let ncols = seg.footer.columns as usize;
            for (g, meta) in seg.footer.row_groups.iter().enumerate() {
                let columns = (0..ncols)
                    .map(|c| seg.read_column(g, c))
                    .collect::<Result<Vec<_>>>()?;
                out.push((first, generic_batch(columns)?));
                first += meta.rows;
            }
            out
        }
    };
    let width = chunk.width();
    if width >= def.width() {
        return Ok(pieces);
    }
    pieces
        .into_iter()
        .map(|(first, batch)| {
            let columns = batch.columns().to_vec();
            let columns = crate::chunk::with_fills(columns, width, def, batch.num_rows())?;
            Ok((first, generic_batch(columns)?))
        })
        .collect()
}

/// A batch of `columns` with nullable fields `c0`, `c1`, … (segments keep
/// types, not names).
fn generic_batch(columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Installs a plan's chunks and re-points the key index and the secondary
/// indexes (phase C.4, under the commit lock). Returns the names of runs
/// written in phase B for indexes no longer listed, for removal.
fn swap_in(plan: &TablePlan, horizon: u64) -> Result<Vec<String>> {
    let moved: HashMap<RowLoc, RowLoc> = plan.moved.iter().copied().collect();
    let new_chunk = plan
        .new_segment
        .and_then(|id| plan.chunks.iter().find(|c| c.id == id));
    // Rows of the rewritten chunks deleted by commits of phase B: mark the
    // moved rows too (before the new chunk becomes visible).
    if let Some(new_chunk) = new_chunk {
        for chunk in &plan.rewrite {
            for (row, d) in chunk.deletes()? {
                if let Some(to) = moved.get(&RowLoc {
                    chunk: chunk.id,
                    row,
                }) {
                    new_chunk.mark_deleted(to.row, d)?;
                }
            }
        }
    }
    // Lock order (see `Inner`): indexes, keys, chunks.
    let def = plan.table.latest_def()?;
    let indexes = plan.table.indexes.list()?;
    let mut index_guards = indexes
        .iter()
        .map(|i| i.lock())
        .collect::<Result<Vec<_>>>()?;
    // Every built index's entries of the new segment are prepared before
    // any index changes (reading a segment can fail).
    let mut prepared = Vec::with_capacity(indexes.len());
    for (index, guard) in indexes.iter().zip(&index_guards) {
        if guard.is_none() {
            prepared.push(None);
            continue;
        }
        let run = plan
            .runs
            .iter()
            .find(|(columns, _)| *columns == index.columns)
            .map(|(_, run)| run.clone());
        let new = NewEntries::prepare(&index.columns, new_chunk.map(|c| c.as_ref()), run, &def)?;
        prepared.push(Some(new));
    }
    // Runs written in phase B for an index no longer listed (dropped
    // meanwhile) would only take disk space.
    let unlisted: Vec<String> = plan
        .runs
        .iter()
        .filter(|(columns, _)| !indexes.iter().any(|i| i.columns == *columns))
        .map(|(_, run)| run.name().to_string())
        .collect();
    let mut guard = plan.table.keys_if_built()?;
    let mut chunks = write(&plan.table.chunks)?;
    // The key index may have been built after the plan was made (it holds
    // tombstones of phase B that must survive): its moved rows' keys are
    // then read back from the new segment, in moved order — also before
    // anything changes.
    let read_back = match (guard.as_ref(), &plan.moved_keys) {
        (Some(_), None) => new_segment_keys(new_chunk)?,
        _ => Vec::new(),
    };
    // Nothing below fails but a poisoned lock.
    for (guard, new) in index_guards.iter_mut().zip(prepared) {
        if let (Some(entries), Some(new)) = (guard.as_mut(), new) {
            entries.replace_chunks(&plan.rewritten, new);
        }
    }
    if let Some(keys) = guard.as_mut() {
        let moved_keys: &[Box<[u8]>] = plan.moved_keys.as_deref().unwrap_or(&read_back);
        for (key, (old, new)) in moved_keys.iter().zip(&plan.moved) {
            if let Some(entry) = keys.get_mut(key)
                && entry.loc == Some(*old)
            {
                entry.loc = Some(*new);
            }
        }
        write(&plan.table.tombstones)?.retain(|key| match keys.get(key) {
            Some(e) if e.loc.is_none() && e.seq <= horizon => {
                keys.remove(key);
                false
            }
            Some(e) => e.loc.is_none(),
            None => false,
        });
    }
    let mut list = plan.chunks.clone();
    list.extend(
        chunks
            .chunks
            .iter()
            .filter(|c| !plan.captured.contains(&c.id))
            .cloned(),
    );
    *chunks = ChunkList::new(list);
    drop(index_guards);
    Ok(unlisted)
}

/// The row keys of the new segment, which holds the moved rows in order.
fn new_segment_keys(chunk: Option<&Arc<Chunk>>) -> Result<Vec<Box<[u8]>>> {
    let Some(chunk) = chunk else {
        return Ok(Vec::new());
    };
    let rows: Vec<u32> = (0..chunk.rows).collect();
    let keys = chunk.read_keys(&rows)?;
    let keys = keys
        .as_binary_opt::<i32>()
        .ok_or_else(|| Error::corruption(format!("chunk {}", chunk.id), 0, "no _key column"))?;
    Ok(keys.iter().map(|k| k.unwrap_or_default().into()).collect())
}

/// Keeps only catalog versions an open snapshot may still read.
fn prune_catalog(inner: &Inner, horizon: u64) -> Result<()> {
    let mut history = inner.catalog_mut()?;
    let keep_from = history
        .versions
        .iter()
        .rposition(|(s, _)| *s <= horizon)
        .unwrap_or(0);
    history.versions.drain(..keep_from);
    Ok(())
}

/// The background thread of threshold checkpoints: at most one at a time.
#[derive(Debug, Default)]
pub(crate) struct Checkpointer {
    running: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Waits for a running background checkpoint to finish.
    pub(crate) fn join(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            // A panicking checkpoint thread has nothing left to report.
            let _ = handle.join();
        }
    }
}

impl Inner {
    /// Starts the checkpoint the WAL size asks for (step 5 of the commit
    /// pipeline, `commit.rs`). Its failure poisons the database (see `checkpoint::run`) and
    /// is reported by the next write; it is never the committer's error.
    pub(crate) fn threshold_checkpoint(self: &Arc<Self>) {
        if !self.options().background_checkpoints {
            let _ = run(self);
            return;
        }
        // The slot lock orders spawning against a finishing thread: a
        // thread clears `running` under it, so the handle stored here is
        // always the running thread's.
        let Ok(mut slot) = self.checkpointer().thread.lock() else {
            return;
        };
        if self.checkpointer().running.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("entidb-checkpoint".into())
            .spawn(move || {
                if let Some(inner) = weak.upgrade() {
                    let _ = run(&inner);
                    let _slot = inner.checkpointer().thread.lock();
                    inner.checkpointer().running.store(false, Ordering::SeqCst);
                }
            });
        match spawned {
            Ok(handle) => *slot = Some(handle),
            // No thread to be had: checkpoint here, still after the commit.
            Err(_) => {
                drop(slot);
                let _ = run(self);
                self.checkpointer().running.store(false, Ordering::SeqCst);
            }
        }
    }
}
