//! Index runs: the persisted entries of one index over one segment.
//!
//! A segment never changes after it is written, so neither do the index
//! entries of its rows. A *run* stores them once, sorted, in a file of its
//! own next to the segment, so that opening a database never rebuilds an
//! index: only the mem chunks committed since the last checkpoint (the WAL
//! tail) are indexed in memory (`index.rs`).
//!
//! ```text
//!   ix-<segment id, 16 hex>-<column>_<column>….eidx
//!   header   "EIDX" | major u16 | minor u16 | segment_id u64 | table_id u64
//!            | segment_rows u64 | segment_footer_crc u32
//!            | columns u32 | column u32 *
//!   blocks   entries sorted by (key, row), cut at ~4 KiB:
//!            entry := key_len u32 | key (Arrow row format) | row u32
//!   footer   entries u64 | blocks u32 |
//!            per block: offset u64 | len u32 | crc32 u32 | entries u32
//!                       | first key (u32 len + bytes) | last key (same)
//!   trailer  footer_offset u64 | footer_len u32 | footer_crc u32 | "EIDX"
//! ```
//!
//! INVARIANTS
//!
//! 1. A run is derived data, never trusted: the header must name exactly
//!    the segment it is opened for (id, table, row count and the CRC of
//!    the segment's footer, so a segment id reused after a crash never
//!    meets a stale run) and the same columns; the footer's CRC must match,
//!    its blocks must tile the file between header and footer, and their
//!    entry counts must add up to the segment's rows (every row is in a
//!    run exactly once, NULL keys included). Each block's CRC is checked
//!    when it is read. A run that fails any check is rebuilt from the
//!    segment with a warning (counted in [`IndexRunStats::rebuilt`]); a block
//!    that fails its CRC during a lookup is answered from the segment
//!    itself for that lookup, and the run is rebuilt at the next use.
//! 2. Runs are written to `<name>.tmp`, fsynced and renamed, so a crash
//!    leaves either no run or a complete one (or a `.tmp`, removed at
//!    open). Nothing else depends on a run being durable: a lost one is
//!    rebuilt.
//! 3. A run exists only for indexed columns the segment stores (a column
//!    added after the segment was written reads as its fill: the entries
//!    stay in memory).
//! 4. Runs live and die with their segment: a checkpoint writes the runs
//!    of every listed index for the segment it writes, and removes the
//!    runs of the segments it replaces; open removes runs of segments the
//!    manifest does not name; `DROP INDEX` removes the index's runs.
//!
//! Resident memory is the block fences (first and last key, offset, length
//! and CRC per ~4 KiB block: under a byte per row), not the entries, plus
//! the blocks lookups have read: verified and decoded (keys as a
//! `BinaryArray`, so a lookup binary-searches them), in a cache shared by
//! every run and bounded at 64 MiB.

use crate::chunk::Chunk;
use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::index::{KeyRange, index_keys};
use crate::schema::TableDef;
use crate::segment::ChunkCache;
use crate::storage::{FileHandle, Storage};
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, UInt32Array, UInt32Builder,
};
use arrow::datatypes::UInt32Type;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Magic bytes at both ends of a run file.
const MAGIC: [u8; 4] = *b"EIDX";
/// Major format version.
const MAJOR: u16 = 1;
/// Minor format version.
const MINOR: u16 = 0;
/// Trailer length.
const TRAILER_LEN: u64 = 20;
/// A block is cut once it holds this many bytes.
const BLOCK_BYTES: usize = 4096;
/// File-name suffix of a run.
const SUFFIX: &str = ".eidx";

/// File name of the run of the index over `columns` for segment `segment`.
pub(crate) fn run_file_name(segment: u64, columns: &[usize]) -> String {
    let cols: Vec<String> = columns.iter().map(usize::to_string).collect();
    format!("ix-{segment:016x}-{}{SUFFIX}", cols.join("_"))
}

/// The segment a run file (or its leftover `.tmp`) belongs to, if `name`
/// is one.
pub(crate) fn run_segment(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("ix-")?;
    let (id, tail) = rest.split_once('-')?;
    let is_run = tail.ends_with(SUFFIX) || tail.ends_with(".eidx.tmp");
    if !is_run || id.len() != 16 {
        return None;
    }
    u64::from_str_radix(id, 16).ok()
}

/// The segment and columns of run file `name`.
fn parse_run_name(name: &str) -> Option<(u64, Vec<usize>)> {
    let segment = run_segment(name)?;
    let cols = name.strip_suffix(SUFFIX)?.get(20..)?;
    let columns = cols
        .split('_')
        .map(|c| c.parse().ok())
        .collect::<Option<Vec<usize>>>()?;
    Some((segment, columns))
}

/// True for the leftover of a run write a crash interrupted.
pub(crate) fn is_run_tmp(name: &str) -> bool {
    run_segment(name).is_some() && name.ends_with(".tmp")
}

/// Where runs are read and written, plus what happened to them.
#[derive(Debug)]
pub(crate) struct RunStore {
    storage: Arc<dyn Storage>,
    /// False for a read-only open: runs are read, never written (missing
    /// ones stay in memory).
    writable: bool,
    opened: AtomicU64,
    written: AtomicU64,
    rebuilt: AtomicU64,
    warnings: Mutex<Vec<String>>,
    /// Verified, decoded blocks of every run, keyed by `(run uid, block,
    /// 0 = keys | 1 = rows)`.
    blocks: Arc<ChunkCache>,
    next_uid: AtomicU64,
}

/// Bytes of decoded blocks kept for lookups (shared by every run).
const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// Counters of a [`RunStore`] (see [`crate::Engine::index_run_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexRunStats {
    /// Runs opened from their files and used.
    pub opened: u64,
    /// Runs written (by checkpoints, or at an index's first use).
    pub written: u64,
    /// Runs found damaged or stale and rebuilt from their segment.
    pub rebuilt: u64,
}

/// Warnings kept for [`crate::Engine::warnings`] (the oldest are dropped).
const MAX_WARNINGS: usize = 64;

impl RunStore {
    pub(crate) fn new(storage: Arc<dyn Storage>, writable: bool) -> Self {
        Self {
            storage,
            writable,
            opened: AtomicU64::new(0),
            written: AtomicU64::new(0),
            rebuilt: AtomicU64::new(0),
            warnings: Mutex::new(Vec::new()),
            blocks: Arc::new(ChunkCache::new(BLOCK_CACHE_BYTES)),
            next_uid: AtomicU64::new(1),
        }
    }

    pub(crate) fn stats(&self) -> IndexRunStats {
        IndexRunStats {
            opened: self.opened.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            rebuilt: self.rebuilt.load(Ordering::Relaxed),
        }
    }

    /// Bytes of decoded blocks cached for lookups.
    pub(crate) fn cached_bytes(&self) -> usize {
        self.blocks.bytes()
    }

    /// The warnings so far (damaged runs rebuilt, runs that could not be
    /// written), oldest first.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Records a warning (see [`RunStore::warnings`]).
    pub(crate) fn warn(&self, message: String) {
        if let Ok(mut w) = self.warnings.lock() {
            if w.len() >= MAX_WARNINGS {
                w.remove(0);
            }
            w.push(message);
        }
    }

    /// The run of the index over `columns` for `chunk` (a segment): opened
    /// from its file when that is valid, else built from the segment and
    /// written. `None` when the chunk cannot have a run (a mem chunk, a
    /// column the segment lacks) or a new run could not be written (a
    /// read-only database, a failed write): the caller indexes the chunk
    /// in memory.
    pub(crate) fn open_or_build(
        &self,
        chunk: &Arc<Chunk>,
        columns: &[usize],
        def: &TableDef,
        may_write: bool,
    ) -> Result<Option<Arc<IndexRun>>> {
        let Some(binding) = Binding::of(chunk, columns) else {
            return Ok(None);
        };
        let name = run_file_name(binding.segment, columns);
        match self.open(&name, &binding, chunk, def) {
            Ok(Some(run)) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Arc::new(run)));
            }
            Ok(None) => {}
            Err(_) if !may_write => return Ok(None),
            Err(e) if !self.writable => {
                self.warn(format!("{name}: {e}; indexed in memory (read-only)"));
                return Ok(None);
            }
            Err(e) => {
                self.rebuilt.fetch_add(1, Ordering::Relaxed);
                self.warn(format!("{name}: {e}; rebuilt from the segment"));
            }
        }
        if !may_write {
            return Ok(None);
        }
        self.build(chunk, columns, def)
    }

    /// Checks run file `name` strictly against the segment `chunk` (for
    /// `integrity_check`): it must open, every block must pass its check,
    /// and its entries must be exactly the segment's. Writes nothing.
    pub(crate) fn verify_file(&self, name: &str, chunk: &Arc<Chunk>, def: &TableDef) -> Result<()> {
        let Some((segment, columns)) = parse_run_name(name) else {
            return Err(Error::corruption(name, 0, "not an index run name"));
        };
        let Some(binding) = Binding::of(chunk, &columns).filter(|b| b.segment == segment) else {
            return Err(Error::corruption(
                name,
                0,
                "index run over a column its segment does not store",
            ));
        };
        let Some(run) = self.open(name, &binding, chunk, def)? else {
            return Ok(());
        };
        let mut stored = Vec::new();
        for fence in &run.fences {
            run.read_block(fence, |key, row| stored.push((Box::<[u8]>::from(key), row)))?;
        }
        if stored != run.entries_in_segment()? {
            return Err(Error::corruption(
                name,
                0,
                "index run entries differ from its segment's rows",
            ));
        }
        Ok(())
    }

    /// A new run in place of one whose block failed its check during a
    /// lookup (see [`IndexRun::lookup`]); `None` as for
    /// [`RunStore::open_or_build`].
    pub(crate) fn rebuild_damaged(&self, run: &IndexRun) -> Result<Option<Arc<IndexRun>>> {
        let new = self.build(&run.chunk, &run.columns, &run.def)?;
        if new.is_some() {
            self.rebuilt.fetch_add(1, Ordering::Relaxed);
        }
        let how = if new.is_some() {
            "rebuilt from the segment"
        } else {
            "indexed in memory"
        };
        self.warn(format!("{}: a block failed its check; {how}", run.name));
        Ok(new)
    }

    /// Writes the run of the index over `columns` for `chunk` (a segment),
    /// replacing any file of that name. `None` as for
    /// [`RunStore::open_or_build`].
    pub(crate) fn build(
        &self,
        chunk: &Arc<Chunk>,
        columns: &[usize],
        def: &TableDef,
    ) -> Result<Option<Arc<IndexRun>>> {
        let Some(binding) = Binding::of(chunk, columns) else {
            return Ok(None);
        };
        if !self.writable {
            return Ok(None);
        }
        let keys = chunk_keys(chunk, columns, def)?;
        let name = run_file_name(binding.segment, columns);
        match self.write(&name, &binding, &keys) {
            Ok(()) => {}
            Err(e) => {
                // A run is an optimisation: the index keeps this chunk in
                // memory instead, and nothing is poisoned.
                self.warn(format!("{name}: not written ({e}); indexed in memory"));
                return Ok(None);
            }
        }
        self.written.fetch_add(1, Ordering::Relaxed);
        match self.open(&name, &binding, chunk, def) {
            Ok(Some(run)) => Ok(Some(Arc::new(run))),
            Ok(None) => Ok(None),
            Err(e) => {
                self.warn(format!(
                    "{name}: unreadable after writing ({e}); indexed in memory"
                ));
                Ok(None)
            }
        }
    }

    fn write(&self, name: &str, binding: &Binding, keys: &BinaryArray) -> Result<()> {
        let bytes = encode_run(binding, keys)?;
        let tmp = format!("{name}.tmp");
        let storage = self.storage.as_ref();
        let file = storage.open(&tmp, true).map_err(Error::io(&tmp))?;
        file.truncate(0)
            .and_then(|()| file.write_at(0, &bytes))
            .and_then(|()| file.sync())
            .map_err(Error::io(&tmp))?;
        drop(file);
        storage.rename(&tmp, name).map_err(Error::io(name))
    }

    /// Opens a run file: `Ok(None)` when it does not exist, `Err` when it
    /// exists but is damaged or names something else.
    fn open(
        &self,
        name: &str,
        binding: &Binding,
        chunk: &Arc<Chunk>,
        def: &TableDef,
    ) -> Result<Option<IndexRun>> {
        let storage = self.storage.as_ref();
        if !storage.exists(name).map_err(Error::io(name))? {
            return Ok(None);
        }
        let file = storage.open(name, false).map_err(Error::io(name))?;
        let fences = read_layout(&file, name, binding)?;
        Ok(Some(IndexRun {
            file,
            name: name.to_string(),
            fences,
            chunk: chunk.clone(),
            columns: binding.columns.clone(),
            def: def.clone(),
            damaged: AtomicBool::new(false),
            uid: self.next_uid.fetch_add(1, Ordering::Relaxed),
            blocks: self.blocks.clone(),
        }))
    }

    /// Removes the run files `names`; a failure is only a warning (they
    /// are derived files, valid for their segment).
    pub(crate) fn remove_files_quietly(&self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        if let Err(e) = self.remove_where(|name| names.iter().any(|n| n == name)) {
            self.warn(format!("unused index runs not removed: {e}"));
        }
    }

    /// Removes every run of the given segments (their segments are gone).
    pub(crate) fn remove_runs_of(&self, segments: &[u64]) -> Result<()> {
        if segments.is_empty() {
            return Ok(());
        }
        self.remove_where(|name| run_segment(name).is_some_and(|s| segments.contains(&s)))
    }

    /// Removes the runs of the index over `columns` of any segment in
    /// `segments` (after `DROP INDEX`).
    pub(crate) fn remove_index_runs(&self, segments: &[u64], columns: &[usize]) -> Result<()> {
        let names: Vec<String> = segments
            .iter()
            .map(|s| run_file_name(*s, columns))
            .collect();
        self.remove_where(|name| names.iter().any(|n| n == name))
    }

    fn remove_where(&self, doomed: impl Fn(&str) -> bool) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let storage = self.storage.as_ref();
        for name in storage.list().map_err(Error::io("."))? {
            if !doomed(&name) {
                continue;
            }
            // A concurrent remover (a checkpoint dropping the segment's
            // runs while DROP INDEX drops the index's) may have been first.
            match storage.remove(&name) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&name)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What a run must be about: checked against its header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    segment: u64,
    table: u64,
    rows: u64,
    footer_crc: u32,
    columns: Vec<usize>,
}

impl Binding {
    /// The binding of a segment chunk's run over `columns`; `None` for a
    /// mem chunk or a column the segment does not store (invariant 3).
    fn of(chunk: &Chunk, columns: &[usize]) -> Option<Self> {
        let crate::chunk::ChunkData::Segment(seg) = &chunk.data else {
            return None;
        };
        if columns.iter().any(|c| *c >= chunk.width()) {
            return None;
        }
        Some(Self {
            segment: seg.id,
            table: seg.footer.table_id,
            rows: seg.footer.rows,
            footer_crc: seg.footer_crc,
            columns: columns.to_vec(),
        })
    }

    fn encode(&self, e: &mut Encoder) -> Result<()> {
        e.raw(&MAGIC).u16(MAJOR).u16(MINOR);
        e.u64(self.segment)
            .u64(self.table)
            .u64(self.rows)
            .u32(self.footer_crc);
        e.u32(count_u32(self.columns.len())?);
        for c in &self.columns {
            e.u32(count_u32(*c)?);
        }
        Ok(())
    }
}

fn count_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::InvalidArgument(format!("{n} does not fit an index run")))
}

/// The index keys of every row of `chunk`, in row order.
fn chunk_keys(chunk: &Chunk, columns: &[usize], def: &TableDef) -> Result<BinaryArray> {
    let rows: Vec<u32> = (0..chunk.rows).collect();
    if rows.is_empty() {
        return Ok(BinaryArray::from_iter_values(std::iter::empty::<&[u8]>()));
    }
    let arrays = chunk.read_rows(def, columns, &rows)?;
    Ok(index_keys(&arrays)?.0)
}

/// A verified, decoded block: keys and rows, in order.
struct Block {
    keys: BinaryArray,
    rows: UInt32Array,
}

impl Block {
    fn of(keys: &ArrayRef, rows: &ArrayRef) -> Option<Self> {
        let keys = keys.as_binary_opt::<i32>()?.clone();
        let rows = rows.as_primitive_opt::<UInt32Type>()?.clone();
        (keys.len() == rows.len()).then_some(Self { keys, rows })
    }
}

/// One block's place in the file and its key span.
#[derive(Debug)]
struct Fence {
    offset: u64,
    len: u32,
    crc: u32,
    entries: u32,
    first: Box<[u8]>,
    last: Box<[u8]>,
}

/// The bytes of a run over `keys` (the index key of row `i` at `i`).
fn encode_run(binding: &Binding, keys: &BinaryArray) -> Result<Vec<u8>> {
    let mut order: Vec<u32> = (0..count_u32(keys.len())?).collect();
    order.sort_unstable_by(|a, b| {
        keys.value(*a as usize)
            .cmp(keys.value(*b as usize))
            .then(a.cmp(b))
    });
    let mut out = Encoder::new();
    binding.encode(&mut out)?;
    let mut fences = Vec::new();
    let mut block = Encoder::new();
    let mut first: Option<&[u8]> = None;
    let mut last: &[u8] = &[];
    let mut entries = 0u32;
    let mut flush = |out: &mut Encoder,
                     block: &mut Encoder,
                     first: &mut Option<&[u8]>,
                     last: &[u8],
                     entries: &mut u32|
     -> Result<()> {
        let Some(f) = first.take() else {
            return Ok(());
        };
        let bytes = std::mem::take(block).finish();
        fences.push(Fence {
            offset: out.len() as u64,
            len: count_u32(bytes.len())?,
            crc: crc32fast::hash(&bytes),
            entries: std::mem::take(entries),
            first: f.into(),
            last: last.into(),
        });
        out.raw(&bytes);
        Ok(())
    };
    for row in order {
        let key = keys.value(row as usize);
        block.bytes(key)?.u32(row);
        first.get_or_insert(key);
        last = key;
        entries += 1;
        if block.len() >= BLOCK_BYTES {
            flush(&mut out, &mut block, &mut first, last, &mut entries)?;
        }
    }
    flush(&mut out, &mut block, &mut first, last, &mut entries)?;
    let footer_offset = out.len() as u64;
    let mut footer = Encoder::new();
    footer.u64(keys.len() as u64).u32(count_u32(fences.len())?);
    for f in &fences {
        footer.u64(f.offset).u32(f.len).u32(f.crc).u32(f.entries);
        footer.bytes(&f.first)?.bytes(&f.last)?;
    }
    let footer = footer.finish();
    out.raw(&footer);
    out.u64(footer_offset)
        .u32(count_u32(footer.len())?)
        .u32(crc32fast::hash(&footer))
        .raw(&MAGIC);
    Ok(out.finish())
}

/// Reads and checks a run's header, trailer and footer (invariant 1);
/// returns its block fences.
fn read_layout(file: &FileHandle, name: &str, binding: &Binding) -> Result<Vec<Fence>> {
    let len = file.len().map_err(Error::io(name))?;
    let mut expected = Encoder::new();
    binding.encode(&mut expected)?;
    let expected = expected.finish();
    let header_len = expected.len() as u64;
    if len < header_len + TRAILER_LEN {
        return Err(Error::corruption(name, 0, "index run too short"));
    }
    let mut header = vec![0u8; expected.len()];
    file.read_at(0, &mut header).map_err(Error::io(name))?;
    if header != expected {
        return Err(Error::corruption(
            name,
            0,
            "index run header does not match its segment and columns",
        ));
    }
    let trailer_at = len - TRAILER_LEN;
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_at(trailer_at, &mut trailer)
        .map_err(Error::io(name))?;
    let mut d = Decoder::new(&trailer, name, trailer_at);
    let (footer_at, footer_len, footer_crc) = (d.u64()?, d.u32()?, d.u32()?);
    if d.take(4)? != MAGIC {
        return Err(d.error("bad index run trailer magic"));
    }
    if footer_at < header_len || footer_at.checked_add(u64::from(footer_len)) != Some(trailer_at) {
        return Err(Error::corruption(name, trailer_at, "footer out of range"));
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.read_at(footer_at, &mut footer)
        .map_err(Error::io(name))?;
    if crc32fast::hash(&footer) != footer_crc {
        return Err(Error::corruption(
            name,
            footer_at,
            "footer checksum mismatch",
        ));
    }
    decode_fences(&footer, name, footer_at, header_len, binding.rows)
}

fn decode_fences(
    footer: &[u8],
    name: &str,
    footer_at: u64,
    header_len: u64,
    rows: u64,
) -> Result<Vec<Fence>> {
    let mut d = Decoder::new(footer, name, footer_at);
    let entries = d.u64()?;
    let blocks = d.count(28)?;
    let mut fences = Vec::with_capacity(blocks);
    let mut next = header_len;
    let mut counted = 0u64;
    for _ in 0..blocks {
        let fence = Fence {
            offset: d.u64()?,
            len: d.u32()?,
            crc: d.u32()?,
            entries: d.u32()?,
            first: d.bytes()?.into(),
            last: d.bytes()?.into(),
        };
        if fence.offset != next || fence.first > fence.last {
            return Err(d.error("index run blocks do not tile the file"));
        }
        if let Some(prev) = fences.last().map(|f: &Fence| &f.last)
            && fence.first < *prev
        {
            return Err(d.error("index run blocks out of order"));
        }
        next += u64::from(fence.len);
        counted += u64::from(fence.entries);
        fences.push(fence);
    }
    d.finish()?;
    if next != footer_at || counted != entries || entries != rows {
        return Err(Error::corruption(
            name,
            footer_at,
            format!("index run holds {counted} of {rows} rows"),
        ));
    }
    Ok(fences)
}

/// An open run (see the module docs).
#[derive(Debug)]
pub(crate) struct IndexRun {
    file: FileHandle,
    name: String,
    fences: Vec<Fence>,
    /// The segment it indexes (read directly when a block is damaged).
    chunk: Arc<Chunk>,
    columns: Vec<usize>,
    def: TableDef,
    /// Set when a block failed its check: rebuilt at the next use.
    damaged: AtomicBool,
    /// Its key in the block cache (unique per opened run).
    uid: u64,
    blocks: Arc<ChunkCache>,
}

impl IndexRun {
    /// Its file name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The segment chunk's id.
    pub(crate) fn chunk_id(&self) -> u64 {
        self.chunk.id
    }

    /// Entries (one per segment row).
    pub(crate) fn entries(&self) -> u64 {
        u64::from(self.chunk.rows)
    }

    /// Bytes this run keeps in memory: its fences.
    pub(crate) fn resident_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .fences
                .iter()
                .map(|f| std::mem::size_of::<Fence>() + f.first.len() + f.last.len())
                .sum::<usize>()
    }

    /// The segment chunk it indexes.
    pub(crate) fn chunk(&self) -> &Chunk {
        &self.chunk
    }

    /// True once a block failed its check.
    pub(crate) fn is_damaged(&self) -> bool {
        self.damaged.load(Ordering::Relaxed)
    }

    /// Rows whose key is in one of `ranges`, or `None` once there are
    /// more than `max`. A damaged block makes the answer come from the
    /// segment itself (and marks the run for rebuilding): never a short or
    /// doubled answer, because nothing is handed out before every block
    /// read succeeded.
    pub(crate) fn lookup(&self, ranges: &[KeyRange], max: usize) -> Result<Option<Vec<u32>>> {
        match self.lookup_blocks(ranges, max) {
            Ok(rows) => Ok(rows),
            Err(_) => {
                self.damaged.store(true, Ordering::Relaxed);
                let keys = chunk_keys(&self.chunk, &self.columns, &self.def)?;
                let mut rows = Vec::new();
                for (row, key) in keys.iter().enumerate() {
                    if crate::index::in_ranges(ranges, key.unwrap_or_default()) {
                        rows.push(row as u32);
                        if rows.len() > max {
                            return Ok(None);
                        }
                    }
                }
                Ok(Some(rows))
            }
        }
    }

    fn lookup_blocks(&self, ranges: &[KeyRange], max: usize) -> Result<Option<Vec<u32>>> {
        let mut rows = Vec::new();
        for range in ranges {
            // Blocks are sorted and their spans only touch at equal keys:
            // the first block that can hold the range is the first whose
            // last key reaches its lower bound.
            let start = self.fences.partition_point(|f| !range.reaches(&f.last));
            for (i, fence) in self.fences.iter().enumerate().skip(start) {
                if !range.starts_before_end(&fence.first) {
                    break;
                }
                let block = self.block(i, fence)?;
                let (keys, ids) = (&block.keys, &block.rows);
                // The block's first key at or above the lower bound.
                let (mut lo, mut hi) = (0, keys.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if range.reaches(keys.value(mid)) {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                for (key, row) in keys.iter().zip(ids.iter()).skip(lo) {
                    let (Some(key), Some(row)) = (key, row) else {
                        continue;
                    };
                    if !range.starts_before_end(key) {
                        break;
                    }
                    rows.push(row);
                }
                if rows.len() > max {
                    return Ok(None);
                }
            }
        }
        Ok(Some(rows))
    }

    /// Block `i`, verified and decoded: from the cache, or read, checked
    /// and cached.
    fn block(&self, i: usize, fence: &Fence) -> Result<Block> {
        if let (Some(keys), Some(rows)) = (
            self.blocks.get(self.uid, i, 0),
            self.blocks.get(self.uid, i, 1),
        ) && let Some(block) = Block::of(&keys, &rows)
        {
            return Ok(block);
        }
        let mut keys = BinaryBuilder::with_capacity(fence.entries as usize, fence.len as usize);
        let mut rows = UInt32Builder::with_capacity(fence.entries as usize);
        self.read_block(fence, |key, row| {
            keys.append_value(key);
            rows.append_value(row);
        })?;
        let keys: ArrayRef = Arc::new(keys.finish());
        let rows: ArrayRef = Arc::new(rows.finish());
        self.blocks.insert(self.uid, i, 0, keys.clone());
        self.blocks.insert(self.uid, i, 1, rows.clone());
        Block::of(&keys, &rows)
            .ok_or_else(|| Error::InvalidArgument("index run block types".into()))
    }

    /// Every entry, in `(key, row)` order. A damaged block makes them come
    /// from the segment itself (and marks the run for rebuilding).
    pub(crate) fn sorted_entries(&self) -> Result<Vec<(Box<[u8]>, u32)>> {
        let mut out = Vec::with_capacity(self.chunk.rows as usize);
        for fence in &self.fences {
            let read = self.read_block(fence, |key, row| out.push((Box::<[u8]>::from(key), row)));
            if read.is_err() {
                self.damaged.store(true, Ordering::Relaxed);
                return self.entries_in_segment();
            }
        }
        Ok(out)
    }

    /// The entries computed from the segment, in `(key, row)` order.
    fn entries_in_segment(&self) -> Result<Vec<(Box<[u8]>, u32)>> {
        let keys = chunk_keys(&self.chunk, &self.columns, &self.def)?;
        let mut out: Vec<(Box<[u8]>, u32)> = keys
            .iter()
            .enumerate()
            .map(|(row, key)| (Box::<[u8]>::from(key.unwrap_or_default()), row as u32))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    fn read_block(&self, fence: &Fence, mut f: impl FnMut(&[u8], u32)) -> Result<()> {
        let mut buf = vec![0u8; fence.len as usize];
        self.file
            .read_at(fence.offset, &mut buf)
            .map_err(Error::io(&self.name))?;
        if crc32fast::hash(&buf) != fence.crc {
            return Err(Error::corruption(
                &self.name,
                fence.offset,
                "index run block checksum mismatch",
            ));
        }
        let mut d = Decoder::new(&buf, &self.name, fence.offset);
        for _ in 0..fence.entries {
            let key = d.bytes()?;
            let row = d.u32()?;
            if row >= self.chunk.rows {
                return Err(d.error(format!("row {row} beyond the segment")));
            }
            f(key, row);
        }
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LockGuard, MemStorage};
    use std::io;

    /// A directory whose listing names a file that is already gone (what a
    /// concurrent remover leaves between another remover's list and its
    /// remove).
    #[derive(Debug)]
    struct RacedListing(MemStorage);

    impl Storage for RacedListing {
        fn open(&self, name: &str, create: bool) -> io::Result<FileHandle> {
            self.0.open(name, create)
        }
        fn exists(&self, name: &str) -> io::Result<bool> {
            self.0.exists(name)
        }
        fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            self.0.rename(from, to)
        }
        fn remove(&self, name: &str) -> io::Result<()> {
            self.0.remove(name)
        }
        fn list(&self) -> io::Result<Vec<String>> {
            let mut names = self.0.list()?;
            names.push(run_file_name(7, &[1]));
            Ok(names)
        }
        fn sync_dir(&self) -> io::Result<()> {
            self.0.sync_dir()
        }
        fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
            self.0.lock()
        }
        fn describe(&self) -> String {
            self.0.describe()
        }
    }

    /// Review finding: a checkpoint removing a replaced segment's runs and
    /// DROP INDEX removing the index's could both list the same file; the
    /// second `remove` failed, which poisoned the database (checkpoint) or
    /// failed the DROP INDEX.
    #[test]
    fn removing_a_run_someone_else_removed_is_not_an_error() {
        let store = RunStore::new(Arc::new(RacedListing(MemStorage::new())), true);
        store.remove_runs_of(&[7]).unwrap();
        store.remove_index_runs(&[7], &[1]).unwrap();
    }

    #[test]
    fn run_names_round_trip() {
        let name = run_file_name(0x1f, &[3, 0, 12]);
        assert_eq!(name, "ix-000000000000001f-3_0_12.eidx");
        assert_eq!(parse_run_name(&name), Some((0x1f, vec![3, 0, 12])));
        assert_eq!(run_segment(&format!("{name}.tmp")), Some(0x1f));
        assert!(is_run_tmp(&format!("{name}.tmp")));
        assert!(!is_run_tmp(&name));
        assert_eq!(run_segment("seg-000000000000001f.eseg"), None);
        assert_eq!(run_segment("ix-1f-3.eidx"), None);
    }
}
