//! A memory-bounded cache of decoded column chunks.
//!
//! Reading a chunk costs a file read, a CRC check and a decode. Warm analytic
//! scans should cost what scanning Arrow arrays in memory costs, so decoded
//! chunks are kept here, keyed by `(segment, row group, column)`, up to a byte
//! budget. When the budget is exceeded the least recently used tenth is
//! evicted. Segments are immutable, so a cached chunk never goes stale; the
//! entries of a removed segment simply age out.

use arrow::array::{Array, ArrayRef};
use std::collections::HashMap;
use std::sync::Mutex;

type Key = (u64, u32, u32);

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, (ArrayRef, u64)>,
    bytes: usize,
    tick: u64,
}

/// The cache; shared by every segment of an engine.
#[derive(Debug)]
pub struct ChunkCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl ChunkCache {
    /// A cache holding at most `capacity` bytes of arrays (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    /// The cached chunk, if present.
    pub fn get(&self, segment: u64, group: usize, column: usize) -> Option<ArrayRef> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.map.get_mut(&(segment, group as u32, column as u32))?;
        entry.1 = tick;
        Some(entry.0.clone())
    }

    /// Adds a chunk, evicting old ones if the budget is exceeded.
    pub fn insert(&self, segment: u64, group: usize, column: usize, array: ArrayRef) {
        let size = array.get_array_memory_size();
        if size > self.capacity / 4 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, _)) = inner
            .map
            .insert((segment, group as u32, column as u32), (array, tick))
        {
            inner.bytes = inner.bytes.saturating_sub(old.get_array_memory_size());
        }
        inner.bytes += size;
        if inner.bytes > self.capacity {
            evict(&mut inner, self.capacity - self.capacity / 10);
        }
    }

    /// Bytes currently cached.
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }
}

fn evict(inner: &mut Inner, target: usize) {
    let mut by_age: Vec<(u64, Key)> = inner.map.iter().map(|(k, (_, t))| (*t, *k)).collect();
    by_age.sort_unstable();
    for (_, key) in by_age {
        if inner.bytes <= target {
            break;
        }
        if let Some((a, _)) = inner.map.remove(&key) {
            inner.bytes = inner.bytes.saturating_sub(a.get_array_memory_size());
        }
    }
}
