//! Write-once loads: a large transaction's rows go straight into a segment.
//!
//! Without this, a bulk load writes every row twice (into the WAL at commit,
//! into a segment at the next checkpoint) and holds it in memory a third
//! time as a mem chunk. A committing transaction whose rows for one table
//! number at least [`crate::EngineOptions::direct_load_rows`] instead:
//!
//! 1. **before the commit lock**, writes them as a new segment (the layout
//!    of `crate::segment`), with the placeholder 0 in `_seq` because the
//!    commit has no sequence yet; fsyncs it, then the directory;
//! 2. **under the commit lock**, once validation passed and the sequence
//!    `seq` is assigned, turns the open segment into the load of `seq`
//!    ([`SegmentReader::as_load_of`]: every row reads as created by `seq`;
//!    no I/O) and commits a PUT_SEGMENT record naming the file, its row
//!    count and footer checksum instead of a PUT holding the rows. Apply
//!    adds the segment to the table as a segment chunk, not a mem chunk.
//!
//! So the segment is durable before the commit record is written: a crash
//! leaves either a WAL that names a complete segment, or a segment nobody
//! names, which recovery removes as an orphan (a transaction that fails
//! validation removes its files at once). Recovery opens a named segment as
//! the load of the commit that names it and checks it against the record
//! (table, rows, footer CRC); a missing or different file refuses the open.
//! A checkpoint keeps the segment where it is (the manifest entry records
//! the commit, `created_seq`); only compaction rewrites it, with real
//! `_seq` values.
//!
//! Everything else is unchanged: the transaction's own rows, conflict
//! detection (the rows stay in memory until the commit, so validation reads
//! their keys), MVCC visibility (the chunk is added under the commit lock
//! and becomes visible with the commit), encryption (segments go through
//! the same storage).
//!
//! FAILURES. Until the commit is encoded and about to be applied, any
//! failure (a conflict, a failed write or fsync of the load's own files)
//! fails the commit and removes the files; only a failed directory fsync
//! poisons the database. From then on the commit never removes them: a
//! failure poisons the database and leaves them to recovery, which keeps
//! them if and only if a durable commit record names them. A written
//! segment is in `Inner::loading` until then, so an integrity check does
//! not call it an orphan.
//!
//! GROWTH. A load adds little to the WAL, so the data committed since the
//! last checkpoint is counted as WAL bytes plus loaded segment bytes
//! ([`crate::EngineOptions::checkpoint_wal_bytes`] applies to the sum): a
//! checkpoint then compacts segments whose rows later loads replaced.

use crate::changes::{Changes, LoadedSegment};
use crate::chunk::{Chunk, ChunkData};
use crate::engine::Inner;
use crate::error::{Error, Result};
use crate::schema::with_seq_column;
use crate::segment::{SegmentReader, segment_file_name, write_segment};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Segments written for one commit, removed again unless the commit gets
/// as far as applying them ([`PendingLoads::keep`]).
pub(crate) struct PendingLoads<'a> {
    inner: &'a Inner,
    /// Each written segment as written: `_seq` still the placeholder.
    written: Vec<Arc<SegmentReader>>,
    /// Their ids, registered in `Inner::loading` until the commit is
    /// applied or the files are removed.
    ids: Vec<u64>,
    kept: bool,
}

impl<'a> PendingLoads<'a> {
    /// Step 1 (see the module docs): writes each large enough table change
    /// of `changes` as a segment and marks the change as loaded.
    /// A failure writing or fsyncing a load's own files fails the commit
    /// and removes them: nothing durable names them, and a failed fsync is
    /// never retried. A failed directory fsync poisons the database, as
    /// anywhere else: it may have lost other entries than the load's.
    pub(crate) fn write(inner: &'a Inner, changes: &mut Changes) -> Result<Self> {
        let mut pending = Self {
            inner,
            written: Vec::new(),
            ids: Vec::new(),
            kept: false,
        };
        let storage = inner.storage().as_ref();
        for change in &mut changes.tables {
            let Some(rows) = &change.rows else { continue };
            if rows.num_rows() < inner.options().direct_load_rows.max(1) {
                continue;
            }
            let id = inner.allocate_id();
            inner.loading()?.insert(id);
            pending.ids.push(id);
            let written = write_segment(storage, id, change.table_id, &[with_seq_column(rows, 0)?]);
            // Opened without a cache: its `_seq` reads are placeholders.
            let reader = written.and_then(|_| SegmentReader::open(storage, id));
            let reader = match reader {
                Ok(reader) => Arc::new(reader),
                Err(e) => return Err(e),
            };
            change.loaded = Some(LoadedSegment {
                id,
                rows: reader.footer.rows,
                footer_crc: reader.footer_crc,
                reader: None,
            });
            pending.written.push(reader.clone());
            pending.write_runs(change.table_id, reader)?;
        }
        if !pending.written.is_empty() {
            if let Err(e) = storage.sync_dir().map_err(Error::io(".")) {
                inner
                    .wal()
                    .poison(format!("syncing the directory after a load failed: {e}"));
                return Err(inner.wal().check().err().unwrap_or(e));
            }
            fail::fail_point!("load::written");
        }
        Ok(pending)
    }

    /// Step 2, under the commit lock after validation: every loaded change
    /// gets its segment as the load of commit `seq`.
    pub(crate) fn open_at(&mut self, seq: u64, changes: &mut Changes) -> Result<()> {
        for change in &mut changes.tables {
            let Some(load) = change.loaded.as_mut() else {
                continue;
            };
            let written = self
                .written
                .iter()
                .find(|r| r.id == load.id)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("segment {} not written", load.id))
                })?;
            let reader = written.as_load_of(seq, Some(self.inner.cache().clone()))?;
            load.reader = Some(Arc::new(reader));
        }
        Ok(())
    }

    /// From here on the files stay whatever happens: called once the commit
    /// is about to be applied and appended (a failure after that poisons
    /// the database, and recovery keeps the files if and only if a durable
    /// commit record names them).
    pub(crate) fn keep(&mut self) {
        self.kept = true;
    }

    /// Bytes of column data written (what a load adds in place of WAL).
    pub(crate) fn bytes(&self) -> u64 {
        self.written.iter().map(|r| r.footer.data_bytes()).sum()
    }

    /// The index runs of the new segment for every index listed on the
    /// table (`index_run.rs`), as a checkpoint writes them for its
    /// segments: so that no open rebuilds them. Apply opens them for the
    /// indexes already built. A run is bound to the segment's id, table,
    /// rows, footer CRC and columns, not to `_seq`, so a run written from
    /// the placeholder reader serves the load of the commit.
    fn write_runs(&self, table_id: u64, reader: Arc<SegmentReader>) -> Result<()> {
        let Some(table) = self.inner.tables()?.get(&table_id).cloned() else {
            return Ok(());
        };
        let def = table.latest_def()?;
        let listed = table.indexes.listed_columns()?;
        let chunk = Arc::new(Chunk::new(
            reader.id,
            ChunkData::Segment(reader),
            BTreeMap::new(),
        ));
        for columns in listed {
            self.inner.runs().build(&chunk, &columns, &def)?;
        }
        Ok(())
    }

    fn remove_files(&self, id: u64) {
        // Files left behind are unnamed: removed at the next open (until
        // then an integrity check reports them as orphans).
        let name = segment_file_name(id);
        if let Err(e) = self.inner.storage().remove(&name)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            self.inner.runs().warn(format!(
                "{name}: a failed load's segment could not be removed ({e}); the next open removes it"
            ));
        }
        let _ = self.inner.runs().remove_runs_of(&[id]);
    }
}

impl Drop for PendingLoads<'_> {
    fn drop(&mut self) {
        if !self.kept {
            for id in &self.ids {
                self.remove_files(*id);
            }
        }
        if let Ok(mut loading) = self.inner.loading() {
            for id in &self.ids {
                loading.remove(id);
            }
        }
    }
}

/// Recovery: opens the segment a replayed PUT_SEGMENT of commit `seq`
/// names, checked against the record.
pub(crate) fn open_replayed(
    storage: &dyn crate::storage::Storage,
    cache: &Arc<crate::segment::ChunkCache>,
    table_id: u64,
    load: &mut LoadedSegment,
    seq: u64,
) -> Result<()> {
    let name = segment_file_name(load.id);
    if !storage.exists(&name).map_err(Error::io(&name))? {
        return Err(Error::corruption(
            &name,
            0,
            format!(
                "the segment loaded by commit {seq} is missing (the WAL names it); restore it from a backup"
            ),
        ));
    }
    let reader = SegmentReader::open(storage, load.id)?;
    if reader.footer.table_id != table_id
        || reader.footer.rows != load.rows
        || reader.footer_crc != load.footer_crc
        || reader.footer.columns < 3
    {
        return Err(Error::corruption(
            &name,
            0,
            format!("segment does not match the load of commit {seq} that names it"),
        ));
    }
    load.reader = Some(Arc::new(reader.as_load_of(seq, Some(cache.clone()))?));
    Ok(())
}
