//! Secondary indexes: ordered maps from column values to row versions.
//!
//! An index covers some columns of one table (its leading column first). It
//! maps the *index key* of a row — the indexed columns in Arrow's row format,
//! which is memcomparable: byte order is the columns' SQL order, negative
//! numbers before positive, NULLs first — to the locations of **every row
//! version** that has that key:
//!
//! ```text
//!   index on (k)                         chunks
//!   ┌──────────────┬─────────────────┐
//!   │ enc(k = -3)  │ [(seg 12, 7)]   │──▶ seg 12 row 7   created 4, live
//!   │ enc(k = 5)   │ [(seg 12, 9),   │──▶ seg 12 row 9   created 4, deleted 9
//!   │              │  (mem 40, 0)]   │──▶ mem 40 row 0   created 9, live
//!   └──────────────┴─────────────────┘
//! ```
//!
//! INVARIANTS
//!
//! 1. An index never disagrees with its table: entries are added in
//!    `TableState::apply` (`table.rs`), under the same commit lock and
//!    before the commit becomes visible, for every row the commit writes.
//!    Superseded or deleted versions keep their entries; the chunk's delete
//!    map says when they died.
//! 2. Readers filter by their snapshot exactly as a scan does: a version is
//!    visible when `created <= snapshot` and it is not deleted at or before
//!    the snapshot (nor by the reader's own transaction). So an index lookup
//!    never shows uncommitted or later-committed rows, and a rolled-back
//!    transaction never touched the index at all (its rows never reached
//!    apply).
//! 3. Checkpoints move rows into new segments and drop versions no snapshot
//!    needs; in the same step that swaps the chunk lists, holding the index
//!    lock, they drop the entries and runs of the rewritten chunks and add
//!    the new segment's run (`checkpoint.rs`, [`Entries::replace_chunks`]).
//! 4. Apply and checkpoint hold the table's index list (read) while they
//!    change chunks, so an index created concurrently is built after the
//!    change. (Apply releases the index locks before it marks old versions
//!    deleted; builds never read delete marks, so that is safe.) The lock order is written on `Inner`
//!    (`engine.rs`).
//! 5. Only listed indexes are re-pointed. A lookup therefore holds the index
//!    list (read) from taking its index to resolving its locations, and
//!    gives up (the caller scans) if the index was forgotten meanwhile
//!    (`DROP INDEX`, [`crate::Engine::forget_index`]): a forgotten index's
//!    locations would name chunks a checkpoint has since rewritten.
//!
//! PERSISTENCE. The entries of a segment's rows never change (a segment is
//! immutable), so they are stored once, as a sorted *run* file per segment
//! and index (`index_run.rs`): written by the checkpoint that writes the
//! segment, or at the index's first use when the segment predates it. A
//! built index is its runs (only their block fences resident) plus an
//! in-memory map for the mem chunks committed since the last checkpoint
//! (and for segments without a run). Opening a database reads no index; an
//! index's first use opens its runs' footers. Definitions live in the
//! catalog; the engine only knows "an index over these columns".
//!
//! Lookups take [`KeyRange`]s over the encoding of the *leading* column
//! alone: because the row format concatenates column encodings, every full
//! key whose leading column equals `v` starts with `enc(v)`. Bounds are
//! normalised to `[lower, upper)` on those prefixes (see [`KeyRange::new`]).
//!
//! UNIQUE. A transaction declares the unique column sets of a table it writes
//! ([`crate::Transaction::declare_unique`]); inserts check them against the
//! snapshot and the transaction's own rows, and commit re-checks them under
//! the commit lock against every *live* version, including ones committed
//! after the snapshot (→ `Conflict`). A table's `schema_seq` makes a writer
//! whose snapshot predates a new index on the table conflict, so no commit
//! can miss a unique index it did not know about.

use crate::chunk::{Chunk, ChunkList, RowLoc};
use crate::error::{Error, Result};
use crate::index_run::IndexRun;
pub(crate) use crate::index_run::RunStore;
use crate::keys::encode_keys;
use crate::locks::{read, write};
use crate::schema::TableDef;
use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locations of the versions that share one index key.
pub(crate) type Locs = SmallVec<[RowLoc; 1]>;

/// Index key → row versions.
pub(crate) type IndexMap = BTreeMap<Box<[u8]>, Locs>;

/// A half-open range `[lower, upper)` of encoded leading-column values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
}

/// The smallest encoding of a non-NULL value (NULLs encode with a leading 0).
const FIRST_NON_NULL: u8 = 1;

impl KeyRange {
    /// The range between two bounds on encoded values. Unbounded below
    /// starts after the NULLs: a range predicate never matches NULL.
    pub fn new(lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Self {
        let lower = match lower {
            Bound::Unbounded => vec![FIRST_NON_NULL],
            Bound::Included(v) => v,
            Bound::Excluded(v) => successor(&v).unwrap_or_else(|| vec![u8::MAX; v.len() + 1]),
        };
        let upper = match upper {
            Bound::Unbounded => None,
            Bound::Excluded(v) => Some(v),
            Bound::Included(v) => successor(&v),
        };
        Self { lower, upper }
    }

    /// Exactly the value encoded as `v`.
    pub fn point(v: Vec<u8>) -> Self {
        Self::new(Bound::Included(v.clone()), Bound::Included(v))
    }

    /// True when an index key (or a leading-column encoding) is inside.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.lower.as_slice() && self.upper.as_deref().is_none_or(|u| key < u)
    }

    /// True when `key` is at or above the lower bound (a block whose last
    /// key reaches the range may hold some of it).
    pub(crate) fn reaches(&self, key: &[u8]) -> bool {
        key >= self.lower.as_slice()
    }

    /// True when `key` is below the upper bound (a block whose first key
    /// starts before the range's end may hold some of it).
    pub(crate) fn starts_before_end(&self, key: &[u8]) -> bool {
        self.upper.as_deref().is_none_or(|u| key < u)
    }

    /// True when the range has both a lower and an upper bound.
    pub fn is_bounded(&self) -> bool {
        self.upper.is_some() && self.lower.as_slice() != [FIRST_NON_NULL]
    }

    /// True when nothing can be inside.
    pub fn is_empty(&self) -> bool {
        self.upper
            .as_deref()
            .is_some_and(|u| u <= self.lower.as_slice())
    }

    /// The overlap of two ranges.
    pub fn intersect(&self, other: &KeyRange) -> KeyRange {
        let lower = self.lower.clone().max(other.lower.clone());
        let upper = match (&self.upper, &other.upper) {
            (Some(a), Some(b)) => Some(a.clone().min(b.clone())),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        KeyRange { lower, upper }
    }

    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            Bound::Included(self.lower.as_slice()),
            self.upper
                .as_deref()
                .map_or(Bound::Unbounded, Bound::Excluded),
        )
    }
}

/// Intersects two unions of ranges.
pub fn intersect_all(a: &[KeyRange], b: &[KeyRange]) -> Vec<KeyRange> {
    let mut out: Vec<KeyRange> = a
        .iter()
        .flat_map(|x| b.iter().map(move |y| x.intersect(y)))
        .filter(|r| !r.is_empty())
        .collect();
    out.sort_by(|x, y| x.lower.cmp(&y.lower));
    out.dedup();
    out
}

/// The smallest byte string greater than every string starting with `p`.
fn successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut v = p.to_vec();
    while let Some(last) = v.pop() {
        if last < u8::MAX {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

/// Encodes index keys for `columns` (one array per indexed column). Also
/// returns which rows have a NULL in any indexed column.
pub fn index_keys(columns: &[ArrayRef]) -> Result<(BinaryArray, Vec<bool>)> {
    let keys = encode_keys(columns)?;
    let rows = keys.len();
    let mut has_null = vec![false; rows];
    for c in columns {
        if let Some(nulls) = c.logical_nulls() {
            for (flag, valid) in has_null.iter_mut().zip(nulls.iter()) {
                *flag |= !valid;
            }
        }
    }
    Ok((keys, has_null))
}

/// True when some range contains the value.
pub fn in_ranges(ranges: &[KeyRange], key: &[u8]) -> bool {
    ranges.iter().any(|r| r.contains(key))
}

/// The entries of a built index.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    /// Entries of the chunks without a run: mem chunks, and segments whose
    /// run could not be had (a read-only database, a column added after the
    /// segment was written, a failed write).
    pub map: IndexMap,
    /// The persisted runs of segments, by chunk id (see `index_run.rs`).
    pub runs: BTreeMap<u64, Arc<IndexRun>>,
}

/// What a checkpoint gives a built index for the segment it wrote:
/// prepared before anything changes, so that installing it cannot fail
/// half-way (see [`Entries::replace_chunks`]).
#[derive(Debug)]
pub(crate) enum NewEntries {
    /// The segment's run, written in phase B.
    Run(Arc<IndexRun>),
    /// The segment's entries, for the in-memory map.
    Pairs(Vec<(Box<[u8]>, RowLoc)>),
    /// No new segment.
    Nothing,
}

impl NewEntries {
    /// The entries of `new_chunk` for the index over `columns`: its run
    /// when the checkpoint wrote one, else read from the segment.
    pub fn prepare(
        columns: &[usize],
        new_chunk: Option<&Chunk>,
        run: Option<Arc<IndexRun>>,
        def: &TableDef,
    ) -> Result<Self> {
        Ok(match (new_chunk, run) {
            (Some(chunk), Some(run)) if run.chunk_id() == chunk.id => Self::Run(run),
            (Some(chunk), _) => {
                let mut pairs = Vec::new();
                collect_chunk(columns, chunk, def, &mut pairs)?;
                Self::Pairs(pairs)
            }
            (None, _) => Self::Nothing,
        })
    }
}

impl Entries {
    /// Forgets the entries of `rewritten` chunks (a checkpoint replaced
    /// them) and adds the new segment's. Cannot fail: an index is never
    /// left half re-pointed.
    pub fn replace_chunks(&mut self, rewritten: &ahash::AHashSet<u64>, new: NewEntries) {
        self.runs.retain(|id, _| !rewritten.contains(id));
        self.map.retain(|_, locs| {
            locs.retain(|loc| !rewritten.contains(&loc.chunk));
            !locs.is_empty()
        });
        match new {
            NewEntries::Run(run) => {
                self.runs.insert(run.chunk_id(), run);
            }
            NewEntries::Pairs(pairs) => self.insert_pairs(pairs),
            NewEntries::Nothing => {}
        }
    }

    /// Adds every row of `chunk` (a new chunk with no run) to the map.
    pub fn add_chunk(&mut self, columns: &[usize], chunk: &Chunk, def: &TableDef) -> Result<()> {
        let mut pairs = Vec::new();
        collect_chunk(columns, chunk, def, &mut pairs)?;
        self.insert_pairs(pairs);
        Ok(())
    }

    fn insert_pairs(&mut self, pairs: Vec<(Box<[u8]>, RowLoc)>) {
        for (key, loc) in pairs {
            self.map.entry(key).or_default().push(loc);
        }
    }
}

/// One index of one table (see the module docs).
#[derive(Debug)]
pub(crate) struct ColumnIndex {
    /// Indexed user columns, leading column first.
    pub columns: Vec<usize>,
    /// The entries; `None` until first use.
    entries: RwLock<Option<Entries>>,
    store: Arc<RunStore>,
}

impl ColumnIndex {
    pub fn new(columns: Vec<usize>, store: Arc<RunStore>) -> Self {
        Self {
            columns,
            entries: RwLock::new(None),
            store,
        }
    }

    /// Write access for maintenance (`None` inside: not built, skip).
    pub fn lock(&self) -> Result<RwLockWriteGuard<'_, Option<Entries>>> {
        write(&self.entries)
    }

    /// Builds the entries from `chunks` unless already built: each
    /// segment's run is opened (or written, see `index_run.rs`), and the
    /// other chunks are indexed in memory. A built index whose run had a
    /// damaged block gets that run rebuilt. The caller passes the chunk
    /// list lock so that no apply can slip in between. `def` is the
    /// table's newest definition (it fills columns older chunks lack).
    pub fn ensure_built(&self, chunks: &RwLock<ChunkList>, def: &TableDef) -> Result<()> {
        if let Some(entries) = read(&self.entries)?.as_ref()
            && !entries.runs.values().any(|r| r.is_damaged())
        {
            return Ok(());
        }
        let mut slot = write(&self.entries)?;
        match slot.as_mut() {
            Some(entries) => self.repair(entries, def),
            None => {
                *slot = Some(self.build(chunks, def, true)?);
                Ok(())
            }
        }
    }

    /// A built index over `columns` that is not listed on the table and
    /// wrote no file: valid runs are used, other chunks indexed in memory
    /// (for `integrity_check`, which must change nothing).
    pub fn build_without_writes(
        columns: &[usize],
        store: Arc<RunStore>,
        chunks: &RwLock<ChunkList>,
        def: &TableDef,
    ) -> Result<Self> {
        let index = Self::new(columns.to_vec(), store);
        let entries = index.build(chunks, def, false)?;
        *write(&index.entries)? = Some(entries);
        Ok(index)
    }

    fn build(
        &self,
        chunks: &RwLock<ChunkList>,
        def: &TableDef,
        may_write: bool,
    ) -> Result<Entries> {
        let list = read(chunks)?;
        let mut pairs: Vec<(Box<[u8]>, RowLoc)> = Vec::new();
        let mut runs = BTreeMap::new();
        for chunk in &list.chunks {
            match self
                .store
                .open_or_build(chunk, &self.columns, def, may_write)?
            {
                Some(run) => {
                    runs.insert(chunk.id, run);
                }
                None => collect_chunk(&self.columns, chunk, def, &mut pairs)?,
            }
        }
        pairs.sort_unstable();
        let mut map = IndexMap::new();
        for (key, loc) in pairs {
            match map.last_entry() {
                Some(mut last) if *last.key() == key => last.get_mut().push(loc),
                _ => {
                    map.insert(key, SmallVec::from_elem(loc, 1));
                }
            }
        }
        Ok(Entries { map, runs })
    }

    /// Rebuilds the damaged runs of a built index (or indexes their
    /// segments in memory when no run can be written). A damaged run is
    /// only replaced once its replacement exists: if rebuilding fails (the
    /// segment cannot be read either), the run stays, still marked, and
    /// its lookups keep being answered from the segment — or fail — never
    /// short.
    fn repair(&self, entries: &mut Entries, def: &TableDef) -> Result<()> {
        let damaged: Vec<Arc<IndexRun>> = entries
            .runs
            .values()
            .filter(|r| r.is_damaged())
            .cloned()
            .collect();
        for run in damaged {
            match self.store.rebuild_damaged(&run)? {
                Some(new) => {
                    entries.runs.insert(new.chunk_id(), new);
                }
                None => {
                    let mut pairs = Vec::new();
                    collect_chunk(&self.columns, run.chunk(), def, &mut pairs)?;
                    entries.runs.remove(&run.chunk_id());
                    entries.insert_pairs(pairs);
                }
            }
        }
        Ok(())
    }

    /// `(entries, resident bytes)` of the built index (zero when not
    /// built). Map bytes are estimated: key, location vector and the
    /// B-tree's share per entry.
    pub fn memory(&self) -> Result<(u64, u64)> {
        let guard = read(&self.entries)?;
        let Some(entries) = guard.as_ref() else {
            return Ok((0, 0));
        };
        let mut count = 0u64;
        let mut bytes = 0usize;
        for (key, locs) in &entries.map {
            count += locs.len() as u64;
            // A B-tree slot holds the boxed key and the SmallVec; nodes are
            // about two-thirds full.
            let slot = std::mem::size_of::<Box<[u8]>>() + std::mem::size_of::<Locs>();
            bytes += key.len() + slot * 3 / 2;
            if locs.spilled() {
                bytes += locs.capacity() * std::mem::size_of::<RowLoc>();
            }
        }
        for run in entries.runs.values() {
            count += run.entries();
            bytes += run.resident_bytes();
        }
        Ok((count, bytes as u64))
    }

    /// True once the entries exist.
    pub fn is_built(&self) -> Result<bool> {
        Ok(read(&self.entries)?.is_some())
    }

    /// Locations of every version whose key is in one of `ranges` (`None`
    /// as soon as there are more than `max`), handed to `then` while the
    /// index is still read-locked: a checkpoint cannot
    /// re-point the entries (and swap the chunks they name) in between.
    pub fn lookup_then<T>(
        &self,
        ranges: &[KeyRange],
        max: usize,
        then: impl FnOnce(Vec<RowLoc>) -> Result<T>,
    ) -> Result<Option<T>> {
        let guard = read(&self.entries)?;
        let Some(entries) = guard.as_ref() else {
            return Err(Error::InvalidArgument(
                "index used before it was built".into(),
            ));
        };
        let mut out = Vec::new();
        for range in ranges {
            for (_, locs) in entries.map.range::<[u8], _>(range.bounds()) {
                out.extend(locs.iter().copied());
                if out.len() > max {
                    return Ok(None);
                }
            }
        }
        for run in entries.runs.values() {
            let Some(rows) = run.lookup(ranges, max.saturating_sub(out.len()))? else {
                return Ok(None);
            };
            let chunk = run.chunk_id();
            out.extend(rows.into_iter().map(|row| RowLoc { chunk, row }));
            if out.len() > max {
                return Ok(None);
            }
        }
        then(out).map(Some)
    }

    /// Locations of every version whose key is in one of `ranges`.
    pub fn lookup(&self, ranges: &[KeyRange]) -> Result<Vec<RowLoc>> {
        Ok(self
            .lookup_then(ranges, usize::MAX, Ok)?
            .unwrap_or_default())
    }

    /// Visits every key once, with all its versions, in key order (for
    /// whole-index checks). Runs are read whole.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[RowLoc]) -> Result<()>) -> Result<()> {
        let guard = read(&self.entries)?;
        let Some(entries) = guard.as_ref() else {
            return Ok(());
        };
        if entries.runs.is_empty() {
            for (k, v) in &entries.map {
                f(k, v)?;
            }
            return Ok(());
        }
        let mut pairs: Vec<(Box<[u8]>, RowLoc)> = Vec::new();
        for (k, locs) in &entries.map {
            pairs.extend(locs.iter().map(|loc| (k.clone(), *loc)));
        }
        for run in entries.runs.values() {
            let chunk = run.chunk_id();
            pairs.extend(
                run.sorted_entries()?
                    .into_iter()
                    .map(|(key, row)| (key, RowLoc { chunk, row })),
            );
        }
        pairs.sort_unstable();
        let mut start = 0;
        while let Some((key, _)) = pairs.get(start) {
            let end = pairs
                .iter()
                .skip(start)
                .position(|(k, _)| k != key)
                .map_or(pairs.len(), |n| start + n);
            let locs: Vec<RowLoc> = pairs
                .get(start..end)
                .unwrap_or_default()
                .iter()
                .map(|(_, l)| *l)
                .collect();
            f(key, &locs)?;
            start = end;
        }
        Ok(())
    }
}

/// The index entries of every row of `chunk`.
fn collect_chunk(
    columns: &[usize],
    chunk: &Chunk,
    def: &TableDef,
    out: &mut Vec<(Box<[u8]>, RowLoc)>,
) -> Result<()> {
    let rows: Vec<u32> = (0..chunk.rows).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let arrays = chunk.read_rows(def, columns, &rows)?;
    let (keys, _) = index_keys(&arrays)?;
    out.reserve(keys.len());
    for (row, key) in keys.iter().enumerate() {
        out.push((
            key.unwrap_or_default().into(),
            RowLoc {
                chunk: chunk.id,
                row: row as u32,
            },
        ));
    }
    Ok(())
}

/// Adds the rows of a new chunk (`batch` in stored layout) to a built index.
pub(crate) fn add_rows(
    map: &mut IndexMap,
    columns: &[usize],
    chunk_id: u64,
    batch: &RecordBatch,
    def: &TableDef,
) -> Result<()> {
    let arrays = columns
        .iter()
        .map(|c| crate::chunk::batch_column(def, batch, *c))
        .collect::<Result<Vec<ArrayRef>>>()?;
    let (keys, _) = index_keys(&arrays)?;
    for (row, key) in keys.iter().enumerate() {
        let loc = RowLoc {
            chunk: chunk_id,
            row: row as u32,
        };
        map.entry(key.unwrap_or_default().into())
            .or_default()
            .push(loc);
    }
    Ok(())
}

/// The indexes of a table, by column list.
#[derive(Debug)]
pub(crate) struct TableIndexes {
    list: RwLock<Vec<Arc<ColumnIndex>>>,
    store: Arc<RunStore>,
}

impl TableIndexes {
    /// No indexes yet; their runs are kept in `store`.
    pub fn new(store: Arc<RunStore>) -> Self {
        Self {
            list: RwLock::new(Vec::new()),
            store,
        }
    }

    /// The column lists of the listed indexes (built or not).
    pub fn listed_columns(&self) -> Result<Vec<Vec<usize>>> {
        Ok(read(&self.list)?
            .iter()
            .map(|i| i.columns.clone())
            .collect())
    }

    /// The index over `columns`, created (unbuilt) if missing.
    pub fn get_or_create(&self, columns: &[usize]) -> Result<Arc<ColumnIndex>> {
        if let Some(i) = read(&self.list)?.iter().find(|i| i.columns == columns) {
            return Ok(i.clone());
        }
        let mut list = write(&self.list)?;
        if let Some(i) = list.iter().find(|i| i.columns == columns) {
            return Ok(i.clone());
        }
        let index = Arc::new(ColumnIndex::new(columns.to_vec(), self.store.clone()));
        list.push(index.clone());
        Ok(index)
    }

    /// The list, read-locked: while it is held no index can be added, so
    /// maintenance that locks every listed index misses none (a new index
    /// built right after sees the maintained chunks).
    pub fn list(&self) -> Result<RwLockReadGuard<'_, Vec<Arc<ColumnIndex>>>> {
        read(&self.list)
    }

    /// The index over `columns` if it is listed.
    pub fn find(&self, columns: &[usize]) -> Result<Option<Arc<ColumnIndex>>> {
        Ok(read(&self.list)?
            .iter()
            .find(|i| i.columns == columns)
            .cloned())
    }

    /// Where the indexes' runs are kept.
    pub fn store(&self) -> &Arc<RunStore> {
        &self.store
    }

    /// Forgets the index over `columns` (its memory is released).
    pub fn remove(&self, columns: &[usize]) -> Result<()> {
        write(&self.list)?.retain(|i| i.columns != columns);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn enc(v: Option<i64>) -> Vec<u8> {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![v]));
        index_keys(&[a]).unwrap().0.value(0).to_vec()
    }

    #[test]
    fn encoding_orders_like_sql_with_nulls_outside_ranges() {
        let values = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in values.windows(2) {
            assert!(enc(Some(w[0])) < enc(Some(w[1])), "{w:?}");
        }
        let all = KeyRange::new(Bound::Unbounded, Bound::Unbounded);
        assert!(!all.contains(&enc(None)));
        assert!(all.contains(&enc(Some(i64::MIN))));
        let below_zero = KeyRange::new(Bound::Unbounded, Bound::Excluded(enc(Some(0))));
        assert!(below_zero.contains(&enc(Some(-1))));
        assert!(!below_zero.contains(&enc(Some(0))));
        assert!(!below_zero.contains(&enc(None)));
    }

    #[test]
    fn leading_column_prefix_covers_multi_column_keys() {
        let a: ArrayRef = Arc::new(StringArray::from(vec!["ab", "abc", "b", "a"]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
        let (full, _) = index_keys(&[a, b]).unwrap();
        let lead: ArrayRef = Arc::new(StringArray::from(vec!["ab"]));
        let (p, _) = index_keys(&[lead]).unwrap();
        let point = KeyRange::point(p.value(0).to_vec());
        let hits: Vec<bool> = full.iter().map(|k| point.contains(k.unwrap())).collect();
        assert_eq!(hits, vec![true, false, false, false]);
    }

    #[test]
    fn ranges_intersect_and_normalise() {
        let r = KeyRange::new(Bound::Excluded(enc(Some(3))), Bound::Included(enc(Some(9))));
        assert!(!r.contains(&enc(Some(3))));
        assert!(r.contains(&enc(Some(4))));
        assert!(r.contains(&enc(Some(9))));
        assert!(!r.contains(&enc(Some(10))));
        let s = [
            KeyRange::point(enc(Some(5))),
            KeyRange::point(enc(Some(20))),
        ];
        let both = intersect_all(&[r], &s);
        assert_eq!(both, vec![KeyRange::point(enc(Some(5)))]);
    }
}
