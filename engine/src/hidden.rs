//! The committed rows a transaction has deleted or replaced.
//!
//! A transaction that deletes or updates a committed row must stop seeing
//! that row version at once, long before its commit marks the version
//! deleted. It records the version's location (chunk id, row) *and its row
//! key*. Locations are fast to apply (a set lookup per chunk) but a
//! checkpoint running concurrently moves rows: the mem chunks and compacted
//! segments it rewrites disappear, and their rows reappear under a new chunk
//! id with new row numbers. Row keys never change.
//!
//! INVARIANT: a chunk id is never reused and the rows of a chunk never move
//! inside it; a moved row always lands in a chunk whose id is greater than
//! the id it had (ids come from one increasing counter). So, against a given
//! chunk list:
//!
//! - a recorded location whose chunk is still in the list is exact;
//! - a recorded location whose chunk is gone was moved by a checkpoint: the
//!   version now lives in some chunk with a greater id. For those chunks the
//!   rows are matched by key instead. Among the versions visible at the
//!   transaction's snapshot, a key has at most one (the one it hid), so
//!   hiding every visible row with that key is exact.
//!
//! A [`HiddenView`] is that resolution against one chunk list. It must be
//! built from the same list the read then uses (a scan's copy of the list,
//! or the list read under the index lock for index lookups), so no
//! checkpoint can fall in between. Matching by key costs a read of the
//! `_key` column of the affected chunks, paid only by a transaction that
//! wrote a table and then saw a checkpoint move its rows.

use crate::chunk::RowLoc;
use ahash::AHashSet;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The committed versions a transaction hid, by location, with their keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct HiddenRows {
    by_chunk: HashMap<u64, BTreeMap<u32, Box<[u8]>>>,
}

impl HiddenRows {
    /// Hides the version at `loc`, whose row key is `key`.
    pub fn insert(&mut self, loc: RowLoc, key: &[u8]) {
        self.by_chunk
            .entry(loc.chunk)
            .or_default()
            .insert(loc.row, key.into());
    }

    /// Shows the version at `loc` again (statement rollback).
    pub fn remove(&mut self, loc: RowLoc) {
        if let Some(rows) = self.by_chunk.get_mut(&loc.chunk) {
            rows.remove(&loc.row);
            if rows.is_empty() {
                self.by_chunk.remove(&loc.chunk);
            }
        }
    }

    /// Resolves the hidden versions against a chunk list, given as the test
    /// "is chunk `id` in the list".
    pub fn view(&self, present: impl Fn(u64) -> bool) -> HiddenView {
        let mut view = HiddenView::default();
        for (chunk, rows) in &self.by_chunk {
            if present(*chunk) {
                view.located
                    .insert(*chunk, rows.keys().copied().collect::<BTreeSet<u32>>());
            } else {
                view.moved_floor = Some(view.moved_floor.map_or(*chunk, |f| f.min(*chunk)));
                view.moved.extend(rows.values().cloned());
            }
        }
        view
    }
}

/// [`HiddenRows`] resolved against one chunk list (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct HiddenView {
    located: HashMap<u64, BTreeSet<u32>>,
    moved: AHashSet<Box<[u8]>>,
    /// The smallest chunk id a moved version had: only chunks above it can
    /// hold moved versions.
    moved_floor: Option<u64>,
}

impl HiddenView {
    /// Hidden rows of `chunk` known by location.
    pub fn located(&self, chunk: u64) -> Option<&BTreeSet<u32>> {
        self.located.get(&chunk)
    }

    /// True when rows of `chunk` must also be matched by key.
    pub fn by_key(&self, chunk: u64) -> bool {
        self.moved_floor.is_some_and(|floor| chunk > floor)
    }

    /// True when a version with row key `key` was hidden and moved.
    pub fn hides_key(&self, key: &[u8]) -> bool {
        self.moved.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_of_vanished_chunks_turn_into_keys() {
        let mut h = HiddenRows::default();
        h.insert(RowLoc { chunk: 5, row: 1 }, b"k1");
        h.insert(RowLoc { chunk: 7, row: 0 }, b"k2");
        let all = h.view(|_| true);
        assert!(all.located(5).is_some_and(|r| r.contains(&1)));
        assert!(!all.by_key(100));
        let moved = h.view(|c| c == 7);
        assert!(moved.located(5).is_none());
        assert!(moved.by_key(6) && !moved.by_key(5) && !moved.by_key(4));
        assert!(moved.hides_key(b"k1") && !moved.hides_key(b"k2"));
        h.remove(RowLoc { chunk: 5, row: 1 });
        assert!(!h.view(|c| c == 7).by_key(100));
    }
}
