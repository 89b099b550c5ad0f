//! `PRAGMA integrity_check`: verify every byte the database depends on.
//!
//! The check is read-only and runs against a live database. It holds the
//! checkpoint lock and the commit lock for its whole duration, so no commit
//! or checkpoint changes files, chunks or indexes under it (writers wait;
//! readers do not). What it
//! verifies, each failure becoming one line of the report:
//!
//! 1. **MANIFEST**: decoded from disk again (checksum first), its
//!    `checkpoint_seq` equal to the running engine's, and the segments it
//!    names equal to the segments the tables are reading (but for those
//!    loaded by commits after the checkpoint, which the WAL names).
//! 2. **Segments**: every segment the manifest (or a load in the WAL) names is re-opened from disk
//!    (header, trailer, footer checksums and versions) and *every* column
//!    chunk of every row group is read uncached and verified (checksum,
//!    decoding, length) — including the hidden `_key`, `_hash`, `_seq`
//!    columns that queries rarely read. The `_seq` values must lie within the
//!    row group's recorded range and at or below `checkpoint_seq`. Segment
//!    files that the manifest does not name are reported as orphans (but
//!    for those of a load still being written, `load.rs`).
//! 3. **WAL**: scanned whole with the recovery policy; it must start with a
//!    base record that agrees with the manifest and end at a complete
//!    transaction (a running database never has a torn tail).
//! 4. **Key index** (when built): every live row version is the key's
//!    newest version, and the number of live entries equals the number of
//!    live rows — so no primary key has two live versions.
//! 5. **Secondary indexes** (those built): every block of every index run
//!    passes its checksum (a damaged run is reported and rebuilt at the
//!    index's next use), every row version of every chunk is in the index
//!    under its key, every index entry names an existing row, and the
//!    counts agree. Run files whose segment is not named are reported as
//!    orphans.
//! 6. **Storage backend**: [`crate::storage::Storage::verify`] on every
//!    file — for an encrypted database, both header slots and every chunk
//!    must authenticate, with no torn tail tolerated (a crash during a
//!    header write or an append also leaves such damage; the report says
//!    so).
//! 7. **UNIQUE** sets given by the caller (the catalog knows which indexes
//!    are unique): no two live versions share a non-NULL key.
//!
//! Memory is bounded by one column chunk at a time plus the (already
//! resident) indexes; the WAL is read whole, as at open. Chunk contents are
//! never taken from the cache, so damage on disk is found even when the data
//! was read before.

use crate::chunk::{ChunkData, RowLoc};
use crate::engine::Inner;
use crate::error::{Error, Result};
use crate::index::index_keys;
use crate::locks::read;
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::segment::{SegmentReader, segment_file_name};
use crate::table::TableState;
use crate::wal::{WAL_FILE, scan_wal};
use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Runs the check (see the module docs). `unique` lists `(table id, user
/// columns)` of the UNIQUE constraints to verify. Returns one line per
/// problem; empty means the database is intact.
pub(crate) fn check(inner: &Inner, unique: &[(u64, Vec<usize>)]) -> Result<Vec<String>> {
    // Both top locks, in the order of `Inner` (a checkpoint writing
    // segments would otherwise show them as orphans).
    let _no_checkpoint = inner.lock_checkpoints()?;
    let _writers_wait = inner.lock_commits()?;
    let mut problems = Vec::new();
    let tables: Vec<Arc<TableState>> = inner.tables()?.values().cloned().collect();
    let manifest = report(&mut problems, Manifest::load(inner.storage().as_ref()));
    if let Some(manifest) = manifest.flatten() {
        check_manifest(inner, &manifest, &tables, &mut problems)?;
        check_wal(inner, &manifest, &mut problems);
    } else if inner.checkpoint_seq() > 0 {
        problems.push(format!("{MANIFEST_FILE}: missing"));
    }
    for table in &tables {
        if read(&table.dropped_seq)?.is_some() {
            continue;
        }
        check_keys(table, &mut problems)?;
        for index in table.indexes.list()?.iter() {
            if index.is_built()? {
                check_index(table, index, &mut problems)?;
            }
        }
        for (_, cols) in unique.iter().filter(|(id, _)| *id == table.def.id) {
            check_unique(table, cols, &mut problems)?;
        }
    }
    Ok(problems)
}

/// Records an error as a problem; `None` then.
fn report<T>(problems: &mut Vec<String>, r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    }
}

fn check_manifest(
    inner: &Inner,
    manifest: &Manifest,
    tables: &[Arc<TableState>],
    problems: &mut Vec<String>,
) -> Result<()> {
    let running = inner.checkpoint_seq();
    if manifest.checkpoint_seq != running {
        problems.push(format!(
            "{MANIFEST_FILE}: covers commits up to {}, the database checkpointed {running}",
            manifest.checkpoint_seq
        ));
    }
    // Segments the manifest names, and those of tables dropped after the
    // last checkpoint's horizon, kept for the snapshots that still read
    // them (they leave the manifest before they leave memory).
    let mut named = BTreeSet::new();
    // Segment chunks by id, with their table's definition (index runs are
    // checked against them).
    let mut segments = BTreeMap::new();
    for table in tables {
        let def = table.latest_def()?;
        for chunk in &read(&table.chunks)?.chunks {
            if matches!(chunk.data, ChunkData::Segment(_)) {
                named.insert(segment_file_name(chunk.id));
                segments.insert(chunk.id, (chunk.clone(), def.clone()));
            }
        }
    }
    // Segments loaded by commits after the checkpoint (`load.rs`): named
    // by the WAL, not yet by the manifest.
    let loaded_since = |chunk: &ChunkData| match chunk {
        ChunkData::Segment(seg) => seg
            .loaded_seq()
            .is_some_and(|s| s > manifest.checkpoint_seq),
        ChunkData::Mem { .. } => false,
    };
    for table in tables {
        let def = table.latest_def()?;
        for chunk in &read(&table.chunks)?.chunks {
            if loaded_since(&chunk.data) {
                check_segment(
                    inner,
                    chunk.id,
                    u64::from(chunk.rows),
                    crate::recovery::segment_widths(&def),
                    (manifest.checkpoint_seq, true),
                    problems,
                );
            }
        }
    }
    for entry in &manifest.tables {
        let live: BTreeSet<u64> = match tables.iter().find(|t| t.def.id == entry.def.id) {
            Some(t) => read(&t.chunks)?
                .chunks
                .iter()
                .filter(|c| matches!(c.data, ChunkData::Segment(_)) && !loaded_since(&c.data))
                .map(|c| c.id)
                .collect(),
            None => BTreeSet::new(),
        };
        let listed: BTreeSet<u64> = entry.segments.iter().map(|s| s.id).collect();
        for seg in &entry.segments {
            let reading = segments.get(&seg.id).map(|(chunk, _)| match &chunk.data {
                ChunkData::Segment(reader) => reader.loaded_seq().unwrap_or(0),
                ChunkData::Mem { .. } => 0,
            });
            if reading.is_some_and(|s| s != seg.created_seq) {
                problems.push(format!(
                    "{MANIFEST_FILE}: segment {} was loaded by commit {}, the database reads it as loaded by {reading:?}",
                    seg.id, seg.created_seq
                ));
            }
        }
        if live != listed {
            problems.push(format!(
                "{MANIFEST_FILE}: table {} names segments {listed:?}, it reads {live:?}",
                entry.def.name
            ));
        }
        for seg in &entry.segments {
            named.insert(segment_file_name(seg.id));
            check_segment(
                inner,
                seg.id,
                seg.rows,
                crate::recovery::segment_widths(&entry.def),
                (manifest.checkpoint_seq, seg.created_seq != 0),
                problems,
            );
        }
    }
    // Segments (and runs) a load is writing before it commits: not named
    // yet, not orphans either (`load.rs`). Read before and after the
    // listing: a failed load may remove its files meanwhile.
    let mut loading = inner.loading()?.clone();
    let files = report(problems, inner.storage().list().map_err(Error::io(".")));
    loading.extend(inner.loading()?.iter().copied());
    let being_loaded = |name: &str| {
        crate::index_run::run_segment(name).is_some_and(|s| loading.contains(&s))
            || loading.iter().any(|id| segment_file_name(*id) == name)
    };
    for name in files.into_iter().flatten() {
        // A failed load's files may also be gone by now.
        let gone = || matches!(inner.storage().exists(&name), Ok(false));
        if being_loaded(&name) || gone() {
            continue;
        }
        if name.ends_with(".eseg") && !named.contains(&name) {
            problems.push(format!(
                "{name}: orphan segment (not named by {MANIFEST_FILE})"
            ));
        }
        if let Some(segment) =
            crate::index_run::run_segment(&name).filter(|_| !crate::index_run::is_run_tmp(&name))
        {
            match segments.get(&segment) {
                _ if !named.contains(&segment_file_name(segment)) => problems.push(format!(
                    "{name}: orphan index run (its segment is not named by {MANIFEST_FILE})"
                )),
                Some((chunk, def)) => {
                    report(problems, inner.runs().verify_file(&name, chunk, def));
                }
                None => {}
            }
        }
        if name != "LOCK" {
            match inner.storage().verify(&name) {
                // Gone since the listing: a failed load's file, or the
                // `.tmp` of a run an index's first use is writing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                verified => {
                    report(problems, verified.map_err(Error::io(&name)));
                }
            }
        }
    }
    Ok(())
}

/// Re-opens a segment from disk and reads every column chunk. `seqs`:
/// the checkpoint its `_seq` values may not pass, and whether it is a
/// load (whose `_seq` is the placeholder 0 throughout, `load.rs`).
fn check_segment(
    inner: &Inner,
    id: u64,
    rows: u64,
    columns: std::ops::RangeInclusive<usize>,
    seqs: (u64, bool),
    problems: &mut Vec<String>,
) {
    let name = segment_file_name(id);
    let Some(seg) = report(problems, SegmentReader::open(inner.storage().as_ref(), id)) else {
        return;
    };
    if seg.footer.rows != rows || !columns.contains(&(seg.footer.columns as usize)) {
        problems.push(format!(
            "{name}: {} rows × {} columns, {MANIFEST_FILE} says {rows} × {columns:?}",
            seg.footer.rows, seg.footer.columns
        ));
    }
    let mut counted = 0u64;
    for (g, meta) in seg.footer.row_groups.iter().enumerate() {
        counted += u64::from(meta.rows);
        for c in 0..seg.footer.columns as usize {
            let Some(array) = report(problems, seg.read_column_uncached(g, c)) else {
                continue;
            };
            if c + 1 == seg.footer.columns as usize {
                check_seqs(&name, g, meta, &array, seqs, problems);
            }
        }
    }
    if counted != seg.footer.rows {
        problems.push(format!(
            "{name}: row groups hold {counted} rows, the footer says {}",
            seg.footer.rows
        ));
    }
}

fn check_seqs(
    name: &str,
    group: usize,
    meta: &crate::segment::RowGroupMeta,
    array: &arrow::array::ArrayRef,
    (checkpoint_seq, loaded): (u64, bool),
    problems: &mut Vec<String>,
) {
    let Some(seqs) = array.as_primitive_opt::<UInt64Type>() else {
        problems.push(format!("{name}: row group {group}: _seq is not UInt64"));
        return;
    };
    // Commits are numbered from 1: `_seq` 0 is the placeholder of a load,
    // and only a load has it (a load read as a checkpoint's segment would
    // show its rows to every snapshot).
    if seqs.values().iter().any(|s| (*s == 0) != loaded) || (loaded && meta.max_seq != 0) {
        problems.push(format!(
            "{name}: row group {group}: _seq {} a load's placeholder 0, but the segment is {}",
            if loaded { "is not" } else { "is" },
            if loaded { "a load" } else { "not a load" }
        ));
        return;
    }
    let bad = seqs
        .values()
        .iter()
        .find(|s| **s < meta.min_seq || **s > meta.max_seq || **s > checkpoint_seq);
    if let Some(s) = bad {
        problems.push(format!(
            "{name}: row group {group}: _seq {s} outside [{}, {}] or after checkpoint {checkpoint_seq}",
            meta.min_seq, meta.max_seq
        ));
    }
}

fn check_wal(inner: &Inner, manifest: &Manifest, problems: &mut Vec<String>) {
    let bytes = inner
        .storage()
        .open(WAL_FILE, false)
        .and_then(|f| f.read_all())
        .map_err(Error::io(WAL_FILE));
    let Some(bytes) = report(problems, bytes) else {
        return;
    };
    let Some(scan) = report(problems, scan_wal(&bytes, WAL_FILE)) else {
        return;
    };
    // The rule recovery applies at open.
    report(
        problems,
        crate::recovery::check_wal_follows_manifest(&scan.records, manifest),
    );
    if scan.torn {
        problems.push(format!(
            "{WAL_FILE}: {} bytes after the last complete transaction (damaged or torn)",
            bytes.len() as u64 - scan.valid_len
        ));
    }
}

/// Live row versions (not deleted) of every chunk, with their row keys:
/// `f(loc, key)`. Reads one chunk's `_key` column at a time.
fn for_each_live(table: &TableState, mut f: impl FnMut(RowLoc, &[u8])) -> Result<()> {
    let chunks = read(&table.chunks)?.chunks.clone();
    for chunk in chunks {
        let deletes: BTreeMap<u32, u64> = chunk.deletes()?.into_iter().collect();
        let rows: Vec<u32> = (0..chunk.rows)
            .filter(|r| !deletes.contains_key(r))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let keys = chunk.read_keys(&rows)?;
        let keys = keys
            .as_binary_opt::<i32>()
            .ok_or_else(|| Error::corruption(format!("chunk {}", chunk.id), 0, "no _key column"))?;
        for (row, key) in rows.iter().zip(keys.iter()) {
            f(
                RowLoc {
                    chunk: chunk.id,
                    row: *row,
                },
                key.unwrap_or_default(),
            );
        }
    }
    Ok(())
}

fn check_keys(table: &TableState, problems: &mut Vec<String>) -> Result<()> {
    if !table.keys_built()? {
        return Ok(());
    }
    let keys = table.keys()?;
    let name = &table.def.name;
    let mut live = 0usize;
    let mut bad = 0usize;
    let result = for_each_live(table, |loc, key| {
        live += 1;
        if keys.get(key).and_then(|e| e.loc) != Some(loc) {
            bad += 1;
        }
    });
    report(problems, result);
    if bad > 0 {
        problems.push(format!(
            "table {name}: {bad} live row versions are not their key's newest version \
             (duplicate primary key or stale key index)"
        ));
    }
    let entries = keys.values().filter(|e| e.loc.is_some()).count();
    if entries != live {
        problems.push(format!(
            "table {name}: key index has {entries} live entries for {live} live rows"
        ));
    }
    Ok(())
}

fn check_index(
    table: &TableState,
    index: &crate::index::ColumnIndex,
    problems: &mut Vec<String>,
) -> Result<()> {
    let name = format!("index on {} {:?}", table.def.name, index.columns);
    let def = table.latest_def()?;
    let list = read(&table.chunks)?;
    // Every row version's (key, location), from the chunks …
    let mut expected: Vec<(Box<[u8]>, RowLoc)> = Vec::new();
    for chunk in &list.chunks {
        let rows: Vec<u32> = (0..chunk.rows).collect();
        if rows.is_empty() {
            continue;
        }
        let Some(arrays) = report(problems, chunk.read_rows(&def, &index.columns, &rows)) else {
            continue;
        };
        let (keys, _) = index_keys(&arrays)?;
        for (row, key) in rows.iter().zip(keys.iter()) {
            let loc = RowLoc {
                chunk: chunk.id,
                row: *row,
            };
            expected.push((key.unwrap_or_default().into(), loc));
        }
    }
    expected.sort_unstable();
    // … and from the index.
    let mut actual: Vec<(Box<[u8]>, RowLoc)> = Vec::new();
    let mut dangling = 0usize;
    let walked = index.for_each(|key, locs| {
        for loc in locs {
            if list.get(loc.chunk).is_none_or(|c| loc.row >= c.rows) {
                dangling += 1;
            }
            actual.push((key.into(), *loc));
        }
        Ok(())
    });
    if report(problems, walked).is_none() {
        return Ok(());
    }
    actual.sort_unstable();
    let missing = expected
        .iter()
        .filter(|e| actual.binary_search(e).is_err())
        .count();
    if missing > 0 {
        problems.push(format!("{name}: {missing} row versions missing"));
    }
    if dangling > 0 {
        problems.push(format!("{name}: {dangling} entries name no row"));
    }
    if actual.len() != expected.len() {
        problems.push(format!(
            "{name}: {} entries for {} row versions",
            actual.len(),
            expected.len()
        ));
    }
    Ok(())
}

fn check_unique(table: &TableState, cols: &[usize], problems: &mut Vec<String>) -> Result<()> {
    // The table's index if it is built; otherwise one built for this check
    // alone, without writing runs (the check changes nothing).
    let index = match table.indexes.find(cols)? {
        Some(index) if index.is_built()? => index,
        _ => Arc::new(crate::index::ColumnIndex::build_without_writes(
            cols,
            table.indexes.store().clone(),
            &table.chunks,
            &table.latest_def()?,
        )?),
    };
    let def = table.latest_def()?;
    let list = read(&table.chunks)?.clone();
    let mut duplicates = 0usize;
    let mut result = Ok(());
    index.for_each(|_, locs| {
        if locs.len() < 2 || result.is_err() {
            return Ok(());
        }
        let mut live = 0usize;
        for loc in locs {
            let Some(chunk) = list.get(loc.chunk) else {
                continue;
            };
            if chunk.deleted_seq(loc.row)?.is_some() {
                continue;
            }
            match chunk
                .read_rows(&def, cols, &[loc.row])
                .and_then(|a| index_keys(&a))
            {
                Ok((_, nulls)) if nulls.first() == Some(&true) => {}
                Ok(_) => live += 1,
                Err(e) => result = Err(e),
            }
        }
        if live > 1 {
            duplicates += 1;
        }
        Ok(())
    })?;
    report(problems, result);
    if duplicates > 0 {
        let names: Vec<String> = cols.iter().map(|c| table.def.column_name(*c)).collect();
        problems.push(format!(
            "table {}: {duplicates} values of UNIQUE ({}) held by more than one live row",
            table.def.name,
            names.join(", ")
        ));
    }
    Ok(())
}
