//! Opening a database: lock, manifest, segments, WAL replay.
//!
//! The policy is written down in `docs/recovery.md`. In short, open runs in
//! two phases so that a failed open never modifies anything on disk:
//!
//! 1. **Validate** (read-only): take the LOCK, decode the manifest, open and
//!    check every live segment, scan the WAL and decode every committed
//!    transaction. Any checksum or format failure returns `Corruption` here.
//! 2. **Repair and start**: apply the decoded transactions with
//!    `commit_seq > checkpoint_seq` (earlier ones are already in segments and
//!    are skipped, so a crash between manifest save and WAL truncation never
//!    duplicates data), cut a torn WAL tail, create the files of a new
//!    database, and remove files no manifest references (a checkpoint's
//!    orphaned segments, `MANIFEST.tmp`).
//!
//! Replay is idempotent: opening twice, or crashing during open, yields the
//! same state.
//!
//! A read-only open ([`crate::EngineOptions::read_only`]) runs phase 1
//! only, under a shared lock: the state in memory is what a read-write open
//! would recover, and the files stay exactly as they were.

use crate::changes::Changes;
use crate::chunk::{Chunk, ChunkData, ChunkList};
use crate::engine::{EngineOptions, Inner, Recovered};
use crate::error::{Error, Result};
use crate::index::RunStore;
use crate::index_run::{is_run_tmp, run_segment};
use crate::locks::write;
use crate::manifest::{MANIFEST_FILE, MANIFEST_TMP, Manifest};
use crate::schema::TableDef;
use crate::segment::{ChunkCache, SegmentReader, segment_file_name};
use crate::storage::Storage;
use crate::table::TableState;
use crate::wal::{WAL_FILE, WAL_TMP, WalRecord, WalWriter, base_record, scan_wal};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Name of the lock file (see [`crate::storage::FileStorage`]).
const LOCK_FILE: &str = "LOCK";

/// A committed transaction found in the WAL.
struct Replay {
    seq: u64,
    changes: Changes,
}

pub(crate) fn open(storage: Arc<dyn Storage>, mut options: EngineOptions) -> Result<Inner> {
    let lock = storage
        .lock()
        .map_err(Error::io(LOCK_FILE))?
        .ok_or_else(|| Error::Locked {
            path: storage.describe(),
        })?;
    // Phase 1: read and validate everything, build the state in memory.
    // Nothing on disk changes until all of it succeeded.
    let loaded = Manifest::load(storage.as_ref())?;
    let wal_exists = storage.exists(WAL_FILE).map_err(Error::io(WAL_FILE))?;
    let wal_bytes = read_wal(storage.as_ref())?;
    let scan = scan_wal(&wal_bytes, WAL_FILE)?;
    let fresh = loaded.is_none();
    if fresh && options.read_only {
        return Err(Error::InvalidArgument(format!(
            "{} holds no database, and a read-only open cannot create one",
            storage.describe()
        )));
    }
    let manifest = match loaded {
        Some(m) if !wal_exists => {
            return Err(Error::corruption(
                WAL_FILE,
                0,
                format!(
                    "the WAL is missing (MANIFEST covers commits up to {}); restore it from a backup",
                    m.checkpoint_seq
                ),
            ));
        }
        Some(m) => m,
        None => {
            refuse_without_manifest(storage.as_ref(), &scan.records)?;
            Manifest {
                next_id: 1,
                next_rowid: 1,
                ..Manifest::default()
            }
        }
    };
    if !fresh {
        check_wal_follows_manifest(&scan.records, &manifest)?;
    }
    let cache = Arc::new(ChunkCache::new(options.cache_bytes));
    let runs = Arc::new(RunStore::new(storage.clone(), !options.read_only));
    let tables = load_tables(storage.as_ref(), &manifest, &cache, &runs)?;
    let header_len = match scan.records.first() {
        Some((0, WalRecord::Checkpoint { .. })) => base_record(0)?.len() as u64,
        _ => 0,
    };
    let mut replay = committed_transactions(scan.records, manifest.checkpoint_seq)?;
    let loaded = open_loaded_segments(storage.as_ref(), &cache, &mut replay)?;

    let wal_file = storage.open(WAL_FILE, fresh).map_err(Error::io(WAL_FILE))?;
    let last_seq = replay.last().map_or(manifest.checkpoint_seq, |r| r.seq);
    // A new database's WAL is its base record alone, written in phase 2.
    let (wal_len, header_len) = if fresh {
        let base_len = base_record(0)?.len() as u64;
        (base_len, base_len)
    } else {
        (scan.valid_len, header_len)
    };
    let wal = WalWriter::new(wal_file.clone(), wal_len, header_len, last_seq);
    // No checkpoint on close until the open has fully succeeded: dropping a
    // half-built engine must leave the files as they are.
    let checkpoint_on_close = std::mem::replace(&mut options.checkpoint_on_close, false);
    let recovered = Recovered {
        manifest: manifest.clone(),
        tables,
        cache,
        runs,
        last_seq,
    };
    let mut inner = Inner::new(storage.clone(), lock, options, wal, recovered);
    // Before any replayed change takes an id: a segment a later commit
    // loaded must never be a mem chunk's id, or a new segment's file.
    for id in &loaded {
        inner.reserve_id(*id);
    }
    inner.add_loaded_bytes(loaded_bytes(&replay));
    for r in replay {
        inner.apply(r.seq, r.changes)?;
    }

    // Phase 2: repair (the state is complete in memory). A read-only open
    // repairs nothing: replay skipped the torn tail in memory.
    if inner.options().read_only {
        return Ok(inner);
    }
    if fresh {
        // A new database: the WAL starts with its base record, then the
        // first manifest makes the database exist.
        let base = base_record(0)?;
        wal_file
            .truncate(0)
            .and_then(|()| wal_file.append(&base))
            .and_then(|_| wal_file.sync())
            .map_err(Error::io(WAL_FILE))?;
        manifest.save(storage.as_ref())?;
    } else if scan.torn {
        wal_file
            .truncate(scan.valid_len)
            .and_then(|()| wal_file.sync())
            .map_err(Error::io(WAL_FILE))?;
    }
    remove_orphans(storage.as_ref(), &manifest, &loaded)?;
    inner.set_checkpoint_on_close(checkpoint_on_close);
    Ok(inner)
}

/// Without a manifest the directory must hold nothing of a database: no
/// segment and no WAL beyond the base record of a new one (a crash while
/// creating it). Otherwise the MANIFEST was lost, and opening it as a new
/// database would discard every table.
fn refuse_without_manifest(storage: &dyn Storage, records: &[(u64, WalRecord)]) -> Result<()> {
    let names = storage.list().map_err(Error::io("."))?;
    if let Some(segment) = names.iter().find(|n| n.ends_with(".eseg")) {
        return Err(Error::corruption(
            MANIFEST_FILE,
            0,
            format!(
                "MANIFEST is missing but the database holds segment files ({segment}, …); \
                 restore MANIFEST from a backup"
            ),
        ));
    }
    let holds_data = records
        .iter()
        .any(|(_, r)| !matches!(r, WalRecord::Checkpoint { checkpoint_seq: 0 }));
    if holds_data {
        return Err(Error::corruption(
            MANIFEST_FILE,
            0,
            "MANIFEST is missing but the WAL holds committed data; restore MANIFEST from a backup",
        ));
    }
    Ok(())
}

/// The WAL must continue the manifest (see docs/recovery.md, "The WAL
/// follows the manifest"). Every WAL begins with a base CHECKPOINT record
/// naming the checkpoint it follows (a checkpoint replaces the log whole, by
/// rename, so there is never a legitimately empty one); commits continue
/// from there without gaps. A manifest older than that lost commits (an old
/// copy was put back); a WAL older than the manifest lost them the other way
/// round.
pub(crate) fn check_wal_follows_manifest(
    records: &[(u64, WalRecord)],
    manifest: &Manifest,
) -> Result<()> {
    let covered = manifest.checkpoint_seq;
    let base = match records.first() {
        Some((0, WalRecord::Checkpoint { checkpoint_seq })) => *checkpoint_seq,
        _ => {
            return Err(Error::corruption(
                WAL_FILE,
                0,
                "the WAL does not start with its base record (it is empty or its start is \
                 damaged); restore it from a backup",
            ));
        }
    };
    if base > covered {
        return Err(Error::corruption(
            MANIFEST_FILE,
            0,
            format!(
                "MANIFEST is older than the WAL: it covers commits up to {covered}, \
                 the WAL follows a checkpoint at {base}; restore the current MANIFEST"
            ),
        ));
    }
    // A crash between saving the manifest and replacing the WAL leaves the
    // checkpoint's own record at the WAL's end: the WAL still holds exactly
    // what the manifest covers.
    let finished_here = records.iter().any(
        |(_, r)| matches!(r, WalRecord::Checkpoint { checkpoint_seq } if *checkpoint_seq == covered),
    );
    if base < covered && !finished_here {
        return Err(Error::corruption(
            WAL_FILE,
            0,
            format!(
                "the WAL is older than MANIFEST: it follows a checkpoint at {base}, \
                 MANIFEST covers commits up to {covered}; restore the current WAL"
            ),
        ));
    }
    let first_commit = records.iter().find_map(|(_, r)| match r {
        WalRecord::Commit { commit_seq, .. } => Some(*commit_seq),
        _ => None,
    });
    if let Some(first) = first_commit
        && first > covered.saturating_add(1)
    {
        return Err(Error::corruption(
            MANIFEST_FILE,
            0,
            format!(
                "MANIFEST is older than the WAL: it covers commits up to {covered} \
                 but the WAL starts at commit {first}; restore the current MANIFEST"
            ),
        ));
    }
    Ok(())
}

fn read_wal(storage: &dyn Storage) -> Result<Vec<u8>> {
    if !storage.exists(WAL_FILE).map_err(Error::io(WAL_FILE))? {
        return Ok(Vec::new());
    }
    storage
        .open(WAL_FILE, false)
        .and_then(|f| f.read_all())
        .map_err(Error::io(WAL_FILE))
}

/// Opens every live segment and rebuilds the tables' chunk lists and key
/// indexes.
///
/// A segment may be narrower than its table: written before columns were
/// added, it has at least the columns the table had before the first of
/// them (see `schema.rs`, ADDED COLUMNS).
fn load_tables(
    storage: &dyn Storage,
    manifest: &Manifest,
    cache: &Arc<ChunkCache>,
    runs: &Arc<RunStore>,
) -> Result<BTreeMap<u64, Arc<TableState>>> {
    let mut tables = BTreeMap::new();
    for entry in &manifest.tables {
        let state = TableState::new(entry.def.clone(), entry.created_seq, runs.clone());
        let mut chunks = Vec::new();
        for seg in &entry.segments {
            let name = segment_file_name(seg.id);
            if !storage.exists(&name).map_err(Error::io(&name))? {
                return Err(Error::corruption(
                    &name,
                    0,
                    "the segment file named by MANIFEST is missing; restore it from a backup",
                ));
            }
            let reader = match seg.created_seq {
                0 => SegmentReader::open_cached(storage, seg.id, Some(cache.clone()))?,
                seq if seq > manifest.checkpoint_seq => {
                    return Err(Error::corruption(
                        MANIFEST_FILE,
                        0,
                        format!(
                            "segment {} was loaded by commit {seq}, after the checkpoint",
                            seg.id
                        ),
                    ));
                }
                seq => {
                    SegmentReader::open(storage, seg.id)?.as_load_of(seq, Some(cache.clone()))?
                }
            };
            if reader.footer.table_id != entry.def.id
                || reader.footer.rows != seg.rows
                || !segment_widths(&entry.def).contains(&(reader.footer.columns as usize))
            {
                return Err(Error::corruption(
                    name,
                    0,
                    "segment does not match its manifest entry",
                ));
            }
            if seg
                .deletes
                .iter()
                .any(|(row, _)| u64::from(*row) >= seg.rows)
            {
                return Err(Error::corruption(
                    MANIFEST_FILE,
                    0,
                    format!("delete beyond the rows of segment {}", seg.id),
                ));
            }
            let deletes = seg.deletes.iter().copied().collect();
            let chunk = Chunk::new(seg.id, ChunkData::Segment(Arc::new(reader)), deletes);
            chunks.push(Arc::new(chunk));
        }
        *write(&state.chunks)? = ChunkList::new(chunks);
        tables.insert(entry.def.id, Arc::new(state));
    }
    Ok(tables)
}

/// Groups WAL records into committed transactions newer than the checkpoint.
fn committed_transactions(
    records: Vec<(u64, WalRecord)>,
    checkpoint_seq: u64,
) -> Result<Vec<Replay>> {
    let mut out: Vec<Replay> = Vec::new();
    let mut open: Option<(u64, u64, Changes)> = None;
    let mut last = 0u64;
    for (offset, rec) in records {
        let corrupt = |why: &str| Error::corruption(WAL_FILE, offset, why);
        match rec {
            WalRecord::Begin { txn_id, commit_seq } => {
                // A BEGIN while another transaction is open means that
                // transaction's append was cut short: it never committed.
                open = Some((txn_id, commit_seq, Changes::default()));
            }
            WalRecord::Commit { txn_id, commit_seq } => {
                let Some((id, seq, changes)) = open.take() else {
                    return Err(corrupt("COMMIT without BEGIN"));
                };
                if id != txn_id || seq != commit_seq {
                    return Err(corrupt("COMMIT does not match its BEGIN"));
                }
                if seq <= last {
                    return Err(corrupt("commit sequence goes backwards"));
                }
                last = seq;
                if seq > checkpoint_seq {
                    out.push(Replay { seq, changes });
                }
            }
            WalRecord::Abort { .. } => open = None,
            WalRecord::Checkpoint { .. } => {}
            other => match open.as_mut() {
                Some((_, _, changes)) => changes.add_record(other, WAL_FILE, offset)?,
                None => return Err(corrupt("record outside a transaction")),
            },
        }
    }
    Ok(out)
}

/// Opens the segment of every replayed PUT_SEGMENT (write-once loads,
/// `load.rs`), checked against its record; returns their ids.
fn open_loaded_segments(
    storage: &dyn Storage,
    cache: &Arc<ChunkCache>,
    replay: &mut [Replay],
) -> Result<BTreeSet<u64>> {
    let mut ids = BTreeSet::new();
    for r in replay {
        for change in &mut r.changes.tables {
            if let Some(load) = change.loaded.as_mut() {
                crate::load::open_replayed(storage, cache, change.table_id, load, r.seq)?;
                ids.insert(load.id);
            }
        }
    }
    Ok(ids)
}

/// Bytes of column data of the replayed loads: loaded since the last
/// checkpoint, they count towards the next threshold checkpoint.
fn loaded_bytes(replay: &[Replay]) -> u64 {
    replay
        .iter()
        .flat_map(|r| r.changes.tables.iter())
        .filter_map(|c| c.loaded.as_ref()?.reader.as_ref())
        .map(|reader| reader.footer.data_bytes())
        .sum()
}

/// Removes segment files neither the manifest nor a replayed load
/// (`loaded`) references, their index runs, and stale `MANIFEST.tmp`,
/// `WAL.tmp` and run `.tmp` files (leftovers of an interrupted checkpoint,
/// load or run write).
fn remove_orphans(
    storage: &dyn Storage,
    manifest: &Manifest,
    loaded: &BTreeSet<u64>,
) -> Result<()> {
    let live_ids: BTreeSet<u64> = manifest
        .tables
        .iter()
        .flat_map(|t| t.segments.iter().map(|s| s.id))
        .chain(loaded.iter().copied())
        .collect();
    let live: BTreeSet<String> = live_ids.iter().map(|id| segment_file_name(*id)).collect();
    let mut removed = false;
    for name in storage.list().map_err(Error::io("."))? {
        let orphan = name == MANIFEST_TMP
            || name == WAL_TMP
            || (name.ends_with(".eseg") && !live.contains(&name))
            || is_run_tmp(&name)
            || run_segment(&name).is_some_and(|s| !live_ids.contains(&s));
        if orphan {
            storage.remove(&name).map_err(Error::io(&name))?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir().map_err(Error::io("."))?;
    }
    Ok(())
}

/// The column counts (user and hidden) a segment of a table of `def` may
/// have: at least its columns before any was added, at most all of them.
pub(crate) fn segment_widths(def: &TableDef) -> std::ops::RangeInclusive<usize> {
    let all = def.width() + 3;
    all.saturating_sub(def.fills.len())..=all
}
