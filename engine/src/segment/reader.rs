//! Reading a segment file.
#![deny(clippy::indexing_slicing)]

use super::cache::ChunkCache;
use super::format::{
    Footer, HEADER_LEN, TRAILER_LEN, check_versions, decode_header, decode_trailer,
};
use super::segment_file_name;
use crate::codec::Decoder;
use crate::columnar::decode_array;
use crate::error::{Error, Result};
use crate::storage::{FileHandle, Storage};
use arrow::array::{Array, ArrayRef, UInt64Array};
use std::sync::Arc;

/// An open segment: its file and decoded footer.
#[derive(Debug)]
pub struct SegmentReader {
    file: FileHandle,
    name: String,
    cache: Option<Arc<ChunkCache>>,
    /// Segment id from the header.
    pub id: u64,
    /// The decoded footer.
    pub footer: Footer,
    /// CRC-32 of the footer bytes (from the trailer): what an index run
    /// (`index_run.rs`) binds itself to.
    pub footer_crc: u32,
    /// For a segment a transaction wrote itself (a write-once load, see
    /// [`SegmentReader::as_load_of`]): the commit that created every row.
    loaded_seq: Option<u64>,
}

impl SegmentReader {
    /// Opens segment `id` and validates header, trailer and footer.
    pub fn open(storage: &dyn Storage, id: u64) -> Result<Self> {
        Self::open_cached(storage, id, None)
    }

    /// Opens segment `id`, keeping decoded chunks in `cache`.
    pub fn open_cached(
        storage: &dyn Storage,
        id: u64,
        cache: Option<Arc<ChunkCache>>,
    ) -> Result<Self> {
        let name = segment_file_name(id);
        let file = storage.open(&name, false).map_err(Error::io(&name))?;
        let len = file.len().map_err(Error::io(&name))?;
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(Error::corruption(&name, 0, "segment file too short"));
        }
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_at(0, &mut header).map_err(Error::io(&name))?;
        let (header_id, header_version) = decode_header(&header, &name)?;
        if header_id != id {
            return Err(Error::corruption(
                &name,
                8,
                format!("header names segment {header_id}"),
            ));
        }
        let trailer_at = len - TRAILER_LEN;
        let mut trailer = [0u8; TRAILER_LEN as usize];
        file.read_at(trailer_at, &mut trailer)
            .map_err(Error::io(&name))?;
        let (footer_at, footer_len, footer_crc, trailer_version) =
            decode_trailer(&trailer, &name, trailer_at)?;
        check_versions(header_version, trailer_version, &name, trailer_at)?;
        if footer_at < HEADER_LEN
            || footer_at.checked_add(u64::from(footer_len)) != Some(trailer_at)
        {
            return Err(Error::corruption(
                &name,
                trailer_at,
                "footer location out of range",
            ));
        }
        let mut footer = vec![0u8; footer_len as usize];
        file.read_at(footer_at, &mut footer)
            .map_err(Error::io(&name))?;
        if crc32fast::hash(&footer) != footer_crc {
            return Err(Error::corruption(
                &name,
                footer_at,
                "footer checksum mismatch",
            ));
        }
        let footer = Footer::decode(&footer, &name, footer_at, footer_at)?;
        Ok(Self {
            file,
            name,
            cache,
            id,
            footer,
            footer_crc,
            loaded_seq: None,
        })
    }

    /// This segment as the load of commit `seq`: a segment a transaction
    /// wrote before its commit had a sequence number (a write-once load,
    /// see `commit.rs`). Its `_seq` column holds the placeholder 0; the WAL
    /// record or manifest entry naming the segment says which commit
    /// created every row. The reader presents the rows as a checkpoint
    /// would have written them: every row group's sequence range is
    /// `seq..=seq` and `_seq` reads as `seq`. No I/O; decoded chunks go to
    /// `cache` (never the one of a reader that read the placeholders).
    pub fn as_load_of(&self, seq: u64, cache: Option<Arc<ChunkCache>>) -> Result<Self> {
        if seq == 0 || self.footer.row_groups.iter().any(|g| g.max_seq != 0) {
            return Err(Error::corruption(
                &self.name,
                0,
                format!("segment is not a load of commit {seq} (its rows carry their own commits)"),
            ));
        }
        let mut footer = self.footer.clone();
        for group in &mut footer.row_groups {
            group.min_seq = seq;
            group.max_seq = seq;
        }
        Ok(Self {
            file: self.file.clone(),
            name: self.name.clone(),
            cache,
            id: self.id,
            footer,
            footer_crc: self.footer_crc,
            loaded_seq: Some(seq),
        })
    }

    /// The commit that created every row, for a segment made a load by
    /// [`SegmentReader::as_load_of`].
    pub fn loaded_seq(&self) -> Option<u64> {
        self.loaded_seq
    }

    /// File name of the segment.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads and checks one column chunk of one row group (from the cache
    /// when it is there).
    pub fn read_column(&self, group: usize, column: usize) -> Result<ArrayRef> {
        if let Some(hit) = self
            .cache
            .as_ref()
            .and_then(|c| c.get(self.id, group, column))
        {
            return Ok(hit);
        }
        let array = self.read_column_uncached(group, column)?;
        if let Some(cache) = &self.cache {
            cache.insert(self.id, group, column, array.clone());
        }
        Ok(array)
    }

    pub(crate) fn read_column_uncached(&self, group: usize, column: usize) -> Result<ArrayRef> {
        if let (Some(seq), Some(meta)) = (self.loaded_seq, self.footer.row_groups.get(group))
            && column + 1 == self.footer.columns as usize
        {
            return Ok(Arc::new(UInt64Array::from(vec![seq; meta.rows as usize])));
        }
        let meta = self
            .footer
            .row_groups
            .get(group)
            .and_then(|g| g.chunks.get(column))
            .ok_or_else(|| Error::InvalidArgument(format!("no chunk ({group}, {column})")))?;
        let mut buf = vec![0u8; meta.len as usize];
        self.file
            .read_at(meta.offset, &mut buf)
            .map_err(Error::io(&self.name))?;
        if crc32fast::hash(&buf) != meta.crc {
            return Err(Error::corruption(
                &self.name,
                meta.offset,
                "column chunk checksum mismatch",
            ));
        }
        let mut d = Decoder::new(&buf, &self.name, meta.offset);
        let array = decode_array(&mut d)?;
        d.finish()?;
        let rows = self.footer.row_groups.get(group).map(|g| g.rows as usize);
        if Some(array.len()) != rows {
            return Err(Error::corruption(
                &self.name,
                meta.offset,
                "column chunk has the wrong length",
            ));
        }
        Ok(array)
    }
}
