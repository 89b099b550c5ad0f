//! Checkpoints: moving committed versions from the WAL into segments.
//!
//! With the commit lock held (commits wait; readers do not):
//!
//! 1. make every appended WAL byte durable;
//! 2. per table, write one new segment holding the rows of its mem chunks and
//!    of any segment worth compacting (more than a quarter of its rows deleted,
//!    or a small segment among many), dropping versions deleted at or before
//!    the oldest open snapshot (garbage collection), and fsync it;
//! 3. fsync the directory so the new segment files are durable;
//! 4. append a CHECKPOINT record and fsync the WAL;
//! 5. save the manifest atomically with `checkpoint_seq` = last commit;
//! 6. replace the WAL by one holding only its new base record (naming this
//!    checkpoint): `WAL.tmp`, fdatasync, rename over `WAL`, directory fsync;
//! 7. swap the in-memory chunk lists, re-point the key index at the new rows,
//!    forget tombstones no snapshot needs, and remove replaced segment files.
//!
//! A crash before step 5 leaves the old manifest, which does not name the new
//! segments: recovery deletes them as orphans and replays the WAL. A crash
//! between 5 and 6 leaves a WAL whose transactions all have
//! `commit_seq <= checkpoint_seq`: recovery skips them. Any I/O failure
//! poisons the database.

use crate::engine::{CommitState, Inner};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, SegmentEntry, TableEntry};
use crate::segment::{ROW_GROUP_ROWS, SegmentReader, segment_file_name, write_segment};
use crate::table::{Chunk, ChunkData, ChunkList, RowLoc, TableState, read, write};
use crate::wal::WalRecord;
use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Runs a checkpoint (see the module docs).
pub(crate) fn run(inner: &Inner) -> Result<()> {
    inner.wal.check()?;
    let state = inner.commit_lock.lock().map_err(|_| Error::Poisoned {
        cause: "commit lock poisoned".into(),
    })?;
    let result = checkpoint_locked(inner, &state);
    if let Err(e) = &result {
        inner.wal.poison(format!("checkpoint failed: {e}"));
    }
    result
}

/// The new state of one table, prepared before the manifest is saved.
struct TablePlan {
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
}

fn checkpoint_locked(inner: &Inner, state: &CommitState) -> Result<()> {
    let durable = inner.wal.sync_all()?;
    inner.visible_seq.fetch_max(durable, Ordering::SeqCst);
    let seq = state.last_seq;
    if inner.wal.is_empty() && inner.checkpoint_seq.load(Ordering::SeqCst) == seq {
        return Ok(());
    }
    let horizon = inner.snapshots.oldest(seq)?;
    let tables: Vec<Arc<TableState>> = read(&inner.tables)?.values().cloned().collect();
    let mut plans = Vec::new();
    let mut gone = Vec::new();
    for table in tables {
        let dropped = *read(&table.dropped_seq)?;
        match dropped {
            Some(d) if d <= horizon => gone.push(table),
            Some(_) => {}
            None => plans.push(plan_table(inner, table, horizon)?),
        }
    }
    let storage = inner.storage.as_ref();
    storage.sync_dir().map_err(Error::io("."))?;
    let mut bytes = Vec::new();
    WalRecord::Checkpoint {
        checkpoint_seq: seq,
    }
    .encode_into(&mut bytes)?;
    let end = inner.wal.append(&bytes, seq)?;
    inner.wal.wait_durable(end)?;
    let catalog = inner.catalog_at(seq)?;
    let manifest = Manifest {
        checkpoint_seq: seq,
        next_id: inner.next_id.load(Ordering::SeqCst),
        next_rowid: inner.next_rowid.load(Ordering::SeqCst),
        catalog_seq: read(&inner.catalog)?.latest_seq(),
        catalog: catalog.as_ref().clone(),
        encryption: inner.encryption.clone(),
        tables: plans.iter().map(|p| p.entry.clone()).collect(),
    };
    manifest.save(storage)?;
    inner.checkpoint_seq.store(seq, Ordering::SeqCst);
    inner
        .wal
        .reset(inner.storage.as_ref(), &crate::wal::base_record(seq)?)?;

    let mut obsolete = Vec::new();
    for plan in plans {
        obsolete.extend(plan.replaced.iter().copied());
        swap_in(&plan, horizon)?;
    }
    {
        let mut map = write(&inner.tables)?;
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
    if !obsolete.is_empty() {
        storage.sync_dir().map_err(Error::io("."))?;
    }
    Ok(())
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

fn plan_table(inner: &Inner, table: Arc<TableState>, horizon: u64) -> Result<TablePlan> {
    let chunks = read(&table.chunks)?.chunks.clone();
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
    let new_id = inner.next_id.fetch_add(1, Ordering::SeqCst);
    let mut next_row = 0u32;
    for chunk in &rewrite {
        for (first_row, batch) in chunk_batches(chunk)? {
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
    let mut segments_out: Vec<SegmentEntry> = keep
        .iter()
        .map(|c| {
            Ok(SegmentEntry {
                id: c.id,
                rows: u64::from(c.rows),
                deletes: c.deletes()?,
            })
        })
        .collect::<Result<_>>()?;
    if !batches.is_empty() {
        let storage = inner.storage.as_ref();
        write_segment(storage, new_id, table.def.id, &batches)?;
        let reader = Arc::new(SegmentReader::open_cached(
            storage,
            new_id,
            Some(inner.cache.clone()),
        )?);
        segments_out.push(SegmentEntry {
            id: new_id,
            rows: reader.footer.rows,
            deletes: carried.iter().map(|(r, s)| (*r, *s)).collect(),
        });
        new_chunks.push(Arc::new(Chunk::new(
            new_id,
            ChunkData::Segment(reader),
            carried,
        )));
    }
    let replaced = rewrite
        .iter()
        .filter(|c| matches!(c.data, ChunkData::Segment(_)))
        .map(|c| c.id)
        .collect();
    Ok(TablePlan {
        entry: TableEntry {
            def: table.def.clone(),
            created_seq: table.created_seq,
            segments: segments_out,
        },
        table,
        chunks: new_chunks,
        moved,
        moved_keys,
        rewritten: rewrite.iter().map(|c| c.id).collect(),
        replaced,
    })
}

/// All stored columns plus `_seq` of a chunk, as `(first_row, batch)` pieces.
fn chunk_batches(chunk: &Chunk) -> Result<Vec<(u32, RecordBatch)>> {
    match &chunk.data {
        ChunkData::Mem { batch, seq } => {
            let schema = crate::schema::append_fields(
                &batch.schema(),
                [Field::new(
                    crate::schema::SEQ_COLUMN,
                    DataType::UInt64,
                    false,
                )],
            );
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(UInt64Array::from(vec![*seq; batch.num_rows()])) as ArrayRef);
            Ok(vec![(0, RecordBatch::try_new(schema, columns)?)])
        }
        ChunkData::Segment(seg) => {
            let mut out = Vec::new();
            let mut first = 0u32;
            let ncols = seg.footer.columns as usize;
            for (g, meta) in seg.footer.row_groups.iter().enumerate() {
                let columns = (0..ncols)
                    .map(|c| seg.read_column(g, c))
                    .collect::<Result<Vec<_>>>()?;
                let fields: Vec<Field> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                    .collect();
                let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
                out.push((first, batch));
                first += meta.rows;
            }
            Ok(out)
        }
    }
}

/// Installs a plan's chunks and re-points the key index.
fn swap_in(plan: &TablePlan, horizon: u64) -> Result<()> {
    // Lock order everywhere: indexes, keys, chunks.
    let indexes = plan.table.indexes.list()?;
    let mut index_guards = indexes
        .iter()
        .map(|i| i.lock())
        .collect::<Result<Vec<_>>>()?;
    if index_guards.iter().any(|g| g.is_some()) {
        let moved: HashMap<RowLoc, RowLoc> = plan.moved.iter().copied().collect();
        for map in index_guards.iter_mut().filter_map(|g| g.as_mut()) {
            crate::index::remap(map, &plan.rewritten, &moved);
        }
    }
    let mut guard = plan.table.keys_if_built()?;
    let mut chunks = write(&plan.table.chunks)?;
    let Some(moved_keys) = &plan.moved_keys else {
        // The key index was built after the plan was made: drop it, the
        // next use rebuilds it from the new chunks.
        *guard = None;
        write(&plan.table.tombstones)?.clear();
        *chunks = ChunkList::new(plan.chunks.clone());
        return Ok(());
    };
    if let Some(keys) = guard.as_mut() {
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
    *chunks = ChunkList::new(plan.chunks.clone());
    drop(index_guards);
    Ok(())
}

/// Keeps only catalog versions an open snapshot may still read.
fn prune_catalog(inner: &Inner, horizon: u64) -> Result<()> {
    let mut history = write(&inner.catalog)?;
    let keep_from = history
        .versions
        .iter()
        .rposition(|(s, _)| *s <= horizon)
        .unwrap_or(0);
    history.versions.drain(..keep_from);
    Ok(())
}
