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
//!    needs; they re-point the index entries in the same step that swaps the
//!    chunk lists, holding the index lock (`checkpoint.rs`).
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
//! Contents are not persisted: an index is built from the table's chunks the
//! first time it is used after open (`CREATE INDEX` builds it at once), so
//! opening a database stays as cheap as reading its manifest. Definitions
//! live in the catalog; the engine only knows "an index over these columns".
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
use crate::keys::encode_keys;
use crate::locks::{read, write};
use crate::schema::TableDef;
use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch};
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};
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

/// One index of one table (see the module docs).
#[derive(Debug)]
pub(crate) struct ColumnIndex {
    /// Indexed user columns, leading column first.
    pub columns: Vec<usize>,
    /// The entries; `None` until first use.
    entries: RwLock<Option<IndexMap>>,
}

impl ColumnIndex {
    pub fn new(columns: Vec<usize>) -> Self {
        Self {
            columns,
            entries: RwLock::new(None),
        }
    }

    /// Write access for maintenance (`None` inside: not built, skip).
    pub fn lock(&self) -> Result<RwLockWriteGuard<'_, Option<IndexMap>>> {
        write(&self.entries)
    }

    /// Builds the entries from `chunks` unless already built. The caller
    /// passes the chunk list lock so that no apply can slip in between.
    /// `def` is the table's newest definition (it fills columns older
    /// chunks lack).
    pub fn ensure_built(&self, chunks: &RwLock<ChunkList>, def: &TableDef) -> Result<()> {
        if read(&self.entries)?.is_some() {
            return Ok(());
        }
        let mut slot = write(&self.entries)?;
        if slot.is_none() {
            let list = read(chunks)?;
            let mut pairs: Vec<(Box<[u8]>, RowLoc)> = Vec::new();
            for chunk in &list.chunks {
                self.collect_chunk(chunk, def, &mut pairs)?;
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
            *slot = Some(map);
        }
        Ok(())
    }

    fn collect_chunk(
        &self,
        chunk: &Chunk,
        def: &TableDef,
        out: &mut Vec<(Box<[u8]>, RowLoc)>,
    ) -> Result<()> {
        let rows: Vec<u32> = (0..chunk.rows).collect();
        if rows.is_empty() {
            return Ok(());
        }
        let arrays = chunk.read_rows(def, &self.columns, &rows)?;
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
        let Some(map) = guard.as_ref() else {
            return Err(Error::InvalidArgument(
                "index used before it was built".into(),
            ));
        };
        let mut out = Vec::new();
        for range in ranges {
            for (_, locs) in map.range::<[u8], _>(range.bounds()) {
                out.extend(locs.iter().copied());
                if out.len() > max {
                    return Ok(None);
                }
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

    /// Visits every key with its versions (for whole-index checks).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[RowLoc]) -> Result<()>) -> Result<()> {
        let guard = read(&self.entries)?;
        for (k, v) in guard.iter().flatten() {
            f(k, v)?;
        }
        Ok(())
    }
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

/// Re-points entries after a checkpoint: versions in `rewritten` chunks move
/// to their new location in `moved`, or are dropped when garbage collected.
pub(crate) fn remap(
    map: &mut IndexMap,
    rewritten: &ahash::AHashSet<u64>,
    moved: &HashMap<RowLoc, RowLoc>,
) {
    map.retain(|_, locs| {
        locs.retain(|loc| {
            if !rewritten.contains(&loc.chunk) {
                return true;
            }
            match moved.get(loc) {
                Some(new) => {
                    *loc = *new;
                    true
                }
                None => false,
            }
        });
        !locs.is_empty()
    });
}

/// The indexes of a table, by column list.
#[derive(Debug, Default)]
pub(crate) struct TableIndexes {
    list: RwLock<Vec<Arc<ColumnIndex>>>,
}

impl TableIndexes {
    /// The index over `columns`, created (unbuilt) if missing.
    pub fn get_or_create(&self, columns: &[usize]) -> Result<Arc<ColumnIndex>> {
        if let Some(i) = read(&self.list)?.iter().find(|i| i.columns == columns) {
            return Ok(i.clone());
        }
        let mut list = write(&self.list)?;
        if let Some(i) = list.iter().find(|i| i.columns == columns) {
            return Ok(i.clone());
        }
        let index = Arc::new(ColumnIndex::new(columns.to_vec()));
        list.push(index.clone());
        Ok(index)
    }

    /// The list, read-locked: while it is held no index can be added, so
    /// maintenance that locks every listed index misses none (a new index
    /// built right after sees the maintained chunks).
    pub fn list(&self) -> Result<RwLockReadGuard<'_, Vec<Arc<ColumnIndex>>>> {
        read(&self.list)
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
