//! Multi-version concurrency control: snapshot isolation with optimistic,
//! first-committer-wins conflict detection.
//!
//! VERSIONS
//!
//! Every commit gets the next *commit sequence* number (`commit_seq`). A row
//! is stored as versions: each version is created by one commit and deleted
//! (superseded or removed) by at most one later commit. For key `k` over time:
//!
//! ```text
//!   seq:   3          7            9
//!   k:     v1 ───────►v2 ─────────►✝ (tombstone)
//!   snapshot 5 sees v1; snapshot 8 sees v2; snapshot 9 sees nothing
//! ```
//!
//! ISOLATION
//!
//! A transaction reads a *snapshot*: the last durable commit at its first
//! read. It sees exactly the commits up to that sequence, plus its own
//! uncommitted writes, and nothing else — no dirty reads (G0/G1a), no
//! intermediate states (G1b), no later commits (G1c, OTV, PMP, read skew).
//! Visibility is published in commit order only after a commit is durable, so
//! a reader never sees a gap or half a transaction.
//!
//! Every write (insert, update, delete) records the *before-image hash* of the
//! version it replaced as the transaction saw it: the version hash of that
//! row (commit sequence + canonical bytes), a tombstone hash, or "absent".
//! At commit, under the commit lock, each written key's newest committed
//! version must still have that hash; otherwise the commit fails with
//! [`crate::Error::Conflict`] and nothing of it becomes visible or durable.
//! This is first-committer-wins: lost updates (P4), concurrent inserts of one
//! key, delete/update races and A→B→A changes all conflict. A DDL change
//! conflicts with any other DDL committed after the snapshot.
//!
//! GUARDED TABLES. A transaction that read every row of a table and
//! changed something on the strength of it (SQL's `ALTER TABLE … ADD
//! CHECK`) calls [`crate::Transaction::guard_rows`]: its commit then fails
//! with `Conflict` if any commit after its snapshot inserted or deleted
//! rows of that table (the table's `write_seq`) or dropped it (its
//! `dropped_seq`: TRUNCATE and a rewriting ALTER TABLE replace a table by
//! a new one, whose rows the old one's `write_seq` would never show; an
//! ADD COLUMN in place changes no row). Together with the schema
//! change's `schema_seq` this makes the checker and the table's writers
//! serialize.
//!
//! KEY GUARDS (foreign keys). A child row is valid only while its parent
//! row exists, and the parent is not written by the child's transaction,
//! so before-images alone would let a child insert and a concurrent parent
//! delete both commit. Two guards close it:
//!
//! - the child's writer calls [`crate::Transaction::guard_keys`] on the
//!   parent's keys: each committed key it finds must still have a live
//!   newest version when the child commits (a deletion committed first
//!   makes the child's commit fail with `Conflict`);
//! - the parent's deleter, having checked that no child row refers to the
//!   key, guards the child table ([`crate::Transaction::guard_rows`]): a
//!   child write committed first makes the deleter's commit fail.
//!
//! Whichever commits second conflicts. A parent row updated (not deleted)
//! concurrently still satisfies a guard, at the check and at commit; a key
//! deleted after the snapshot is a `Conflict` at the check already. A
//! guarded table that a commit after the snapshot dropped (TRUNCATE and
//! ALTER TABLE replace tables) counts as written.
//!
//! WHAT IS ALLOWED: write skew (G2-item). Two transactions that read an
//! overlapping set of rows but write disjoint keys both commit; snapshot
//! isolation does not track reads. Applications that need serializability
//! must write a common row (e.g. `UPDATE guard SET n = n + 1`).
//!
//! A WORKED EXAMPLE with two transactions on `acct(id, bal)`, `a = 100`:
//!
//! ```text
//!   T1 begin, reads a (seq 4) = 100     T2 begin, reads a (seq 4) = 100
//!   T1 writes a = 90  (before = H(4, a=100))
//!                                       T2 writes a = 80 (before = H(4, a=100))
//!   T1 commit: newest a is H(4,…) ✓
//!      → seq 5, a = 90 visible
//!                                       T2 commit: newest a is H(5, a=90) ≠
//!                                          → Conflict, T2 retries and reads 90
//! ```
//!
//! RETRYING. Validation compares against the newest *committed* version,
//! but a new snapshot only reaches the newest *visible* one, which trails
//! while the winner waits for its fdatasync. A loser that retries at once
//! may begin on the same snapshot and lose again; retry loops wait a
//! growing, jittered time between attempts ([`crate::Backoff`]).
//!
//! A tombstone at or before the reader's snapshot counts as "absent" in both
//! places the comparison is made (the before-image and the newest version at
//! commit), because a checkpoint may forget it in between; a tombstone after
//! the snapshot keeps its own hash, so a concurrent insert-and-delete of the
//! key still conflicts (see `KeyEntry::before_image`).
//!
//! GARBAGE COLLECTION
//!
//! Open snapshots are registered in [`Snapshots`]. A checkpoint drops only
//! versions deleted at or before the oldest registered snapshot, so no open
//! transaction ever loses a version it can see; tombstones are forgotten
//! under the same rule.
//!
//! ROW LOCATIONS ACROSS CHECKPOINTS
//!
//! A checkpoint moves committed rows into new segments while transactions
//! are open. INVARIANT: nothing a transaction keeps across statements
//! depends on a row location staying valid. Its own inserted rows live in
//! its own batches; the committed versions it deleted or replaced are
//! recorded by location *and* row key, and every read resolves them against
//! the chunk list it reads (`crate::hidden`): locations in chunks that still
//! exist are exact, versions whose chunk vanished are matched by key in the
//! chunks a checkpoint created. Before-images are hashes, not locations.
//! Only the key map and the secondary indexes hold locations, and a
//! checkpoint re-points them under their locks in the same step that swaps
//! the chunk lists.

use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The multiset of snapshot sequences held by open transactions.
///
/// Its lock is never held across anything that can panic, and every update
/// is a single map operation, so a poisoned lock (a panic elsewhere on the
/// thread) still guards a consistent map: it is used as is. A snapshot is
/// therefore always registered — an unregistered one could have its versions
/// collected under it.
#[derive(Debug, Default)]
pub struct Snapshots {
    open: Mutex<BTreeMap<u64, usize>>,
}

impl Snapshots {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the current value of `visible` as a snapshot and registers it,
    /// atomically with respect to [`Snapshots::oldest`]: a checkpoint can
    /// never compute its garbage-collection horizon between the read and
    /// the registration and then drop versions this snapshot needs.
    pub fn take(&self, visible: &std::sync::atomic::AtomicU64) -> u64 {
        let mut open = self.lock();
        let seq = visible.load(std::sync::atomic::Ordering::SeqCst);
        fail::fail_point!("snapshot::take");
        *open.entry(seq).or_default() += 1;
        seq
    }

    /// Releases a snapshot registered earlier.
    pub fn release(&self, seq: u64) {
        let mut open = self.lock();
        if let Some(n) = open.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                open.remove(&seq);
            }
        }
    }

    /// The oldest open snapshot, or `default` when none is open.
    pub fn oldest(&self, default: u64) -> Result<u64> {
        let open = self.lock();
        Ok(open.keys().next().copied().unwrap_or(default).min(default))
    }

    /// Number of registered snapshots (for tests).
    pub fn count(&self) -> usize {
        self.lock().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Issue 12.7: a poisoned lock returned an unregistered snapshot, whose
    /// versions a checkpoint could then collect.
    #[test]
    fn a_poisoned_registry_still_registers_snapshots() {
        let snapshots = std::sync::Arc::new(Snapshots::default());
        let s = snapshots.clone();
        let _ = std::thread::spawn(move || {
            let _guard = s.open.lock();
            #[allow(clippy::panic)]
            {
                panic!("poison the registry");
            }
        })
        .join();
        assert!(snapshots.open.is_poisoned());
        let visible = AtomicU64::new(7);
        assert_eq!(snapshots.take(&visible), 7);
        assert_eq!(snapshots.oldest(100).ok(), Some(7));
        snapshots.release(7);
        assert_eq!(snapshots.count(), 0);
    }
}
