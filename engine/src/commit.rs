//! The commit pipeline: validate, apply, append, wait, publish.
//!
//! COMMIT, step by step (see also [`crate::wal`] and [`crate::mvcc`]):
//!
//! 0. Before the commit lock: write the rows of each large table change
//!    straight into a new segment and fsync it (write-once loads,
//!    [`crate::load`]); the WAL will only name it.
//! 1. Under the commit lock: validate every written key's before-image hash
//!    against the newest committed version (`Conflict` on mismatch), validate
//!    DDL against the catalog sequence, check that no guarded table
//!    (`Transaction::guard_rows`) was written after the snapshot and that
//!    every guarded key (`Transaction::guard_keys`) still has a live
//!    newest version, assign
//!    `seq = last_seq + 1`.
//! 2. Still under the lock: encode BEGIN … COMMIT, apply the changes to memory
//!    (invisible: readers only see versions up to `visible_seq`), append the
//!    bytes to the WAL. Release the lock: the next committer may start.
//! 3. Wait until a (shared) fdatasync covers the bytes — group commit.
//! 4. Publish: `visible_seq = max(visible_seq, durable_seq)`. Because appends
//!    happen in sequence order, everything up to `durable_seq` is applied.
//! 5. If the WAL (plus the segments loaded since the last checkpoint) has
//!    grown past the configured size, start a checkpoint on
//!    the background thread (see [`crate::EngineOptions::background_checkpoints`]).
//!    The commit is already durable and visible: it succeeds whatever
//!    happens to that checkpoint, whose failure poisons the database for
//!    later writes instead.
//!
//! A failure in step 2 or 3 poisons the database (the WAL writer remembers
//! it): the commit returns the error, nothing more is written, and the caller
//! must re-open, letting recovery decide from what is on disk.

use crate::changes::Changes;
use crate::engine::{Inner, Tables};
use crate::error::{Error, Result};
use crate::keys::{ABSENT, display_key};
use crate::load::PendingLoads;
use crate::locks::{read, write};
use crate::table::{NewRows, TableState};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Inner {
    /// Runs the commit pipeline described in the module docs.
    pub fn commit(
        self: &Arc<Self>,
        txn_id: u64,
        snapshot: u64,
        mut changes: Changes,
    ) -> Result<u64> {
        self.wal().check()?;
        let mut loads = PendingLoads::write(self, &mut changes)?;
        let in_flight = self.wal().announce();
        let (seq, end) = {
            let mut state = self.lock_commits()?;
            self.validate(snapshot, &changes)?;
            let seq = state.last_seq + 1;
            loads.open_at(seq, &mut changes)?;
            let mut bytes = Vec::new();
            changes.encode(txn_id, seq, &mut bytes)?;
            loads.keep();
            self.add_loaded_bytes(loads.bytes());
            if let Err(e) = self.apply(seq, changes) {
                self.wal()
                    .poison(format!("applying commit {seq} failed: {e}"));
                return Err(e);
            }
            let end = self.wal().append(&bytes, seq)?;
            state.last_seq = seq;
            (seq, end)
        };
        drop(in_flight);
        drop(loads);
        let durable = self.wal().wait_durable(end)?;
        self.publish(durable);
        // The commit is durable and visible: nothing below may fail it.
        if self.uncheckpointed_bytes() > self.options().checkpoint_wal_bytes {
            self.threshold_checkpoint();
        }
        Ok(seq)
    }

    /// No guarded table (`Transaction::guard_rows`) may have had rows
    /// written, or been dropped (TRUNCATE and a rewriting ALTER TABLE
    /// replace a table by a new one; ADD COLUMN in place writes no row),
    /// by a commit after the snapshot. (A table this
    /// transaction created is never guarded: `Transaction::guard_rows`.)
    fn validate_guarded_tables(
        &self,
        tables: &Tables,
        snapshot: u64,
        changes: &Changes,
    ) -> Result<()> {
        for id in &changes.guarded {
            let changed = match tables.get(id) {
                Some(table) => {
                    table.write_seq.load(Ordering::SeqCst) > snapshot
                        || read(&table.dropped_seq)?.is_some_and(|seq| seq > snapshot)
                }
                // Dropped and forgotten by a checkpoint since.
                None => true,
            };
            if changed {
                let name = tables
                    .get(id)
                    .map_or_else(|| format!("#{id}"), |t| t.def.name.clone());
                return Err(Error::Conflict {
                    table: name,
                    key: "rows changed concurrently while this transaction checked all of them"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// Every guarded key's newest committed version must be a live row
    /// (see [`crate::mvcc`], KEY GUARDS).
    fn validate_key_guards(&self, tables: &Tables, changes: &Changes) -> Result<()> {
        for (id, keys) in &changes.key_guards {
            let dropped = || Error::Conflict {
                table: format!("#{id}"),
                key: "table was dropped concurrently".into(),
            };
            let Some(table) = tables.get(id) else {
                return Err(dropped());
            };
            if read(&table.dropped_seq)?.is_some() {
                return Err(dropped());
            }
            let map = table.keys()?;
            for key in keys {
                if map.get(key).is_none_or(|e| e.loc.is_none()) {
                    return Err(Error::Conflict {
                        table: table.def.name.clone(),
                        key: format!(
                            "{} (the referenced row was deleted concurrently)",
                            display_key(key)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// First-committer-wins validation (see [`crate::mvcc`]).
    fn validate(&self, snapshot: u64, changes: &Changes) -> Result<()> {
        if changes.has_ddl() && self.catalog()?.latest_seq() > snapshot {
            return Err(Error::Conflict {
                table: "<catalog>".into(),
                key: "schema changed concurrently".into(),
            });
        }
        let tables = self.tables()?;
        self.validate_guarded_tables(&tables, snapshot, changes)?;
        self.validate_key_guards(&tables, changes)?;
        for change in &changes.tables {
            let created_here = changes.creates.iter().any(|d| d.id == change.table_id);
            let table = match tables.get(&change.table_id) {
                Some(t) if read(&t.dropped_seq)?.is_none() => t,
                _ if created_here => continue,
                _ => {
                    return Err(Error::Conflict {
                        table: format!("#{}", change.table_id),
                        key: "table was dropped concurrently".into(),
                    });
                }
            };
            let writes = change.rows.is_some() || !change.deleted.is_empty();
            if writes
                && table.schema_seq.load(Ordering::SeqCst) > snapshot
                && !changes.touched.contains(&change.table_id)
            {
                return Err(Error::Conflict {
                    table: table.def.name.clone(),
                    key: "its indexes or constraints changed concurrently".into(),
                });
            }
            crate::unique::check_commit(table, change, snapshot)?;
            if !table.keys_built()? && read(&table.chunks)?.chunks.is_empty() {
                // No committed version of any key: every before-image must
                // say "absent". The key index stays unbuilt (see apply).
                if change.deleted.iter().any(|(_, b)| *b != ABSENT)
                    || change.before.iter().any(|b| *b != ABSENT)
                {
                    return Err(Error::Conflict {
                        table: table.def.name.clone(),
                        key: "rows changed concurrently".into(),
                    });
                }
                continue;
            }
            let keys = table.keys()?;
            let current = |key: &[u8]| keys.get(key).map_or(ABSENT, |e| e.before_image(snapshot));
            let conflict = |key: &[u8]| Error::Conflict {
                table: table.def.name.clone(),
                key: display_key(key),
            };
            for (key, before) in &change.deleted {
                if current(key) != *before {
                    return Err(conflict(key));
                }
            }
            if let Some(rows) = &change.rows {
                let key_col = rows.num_columns().saturating_sub(2);
                let key_arr = crate::schema::col(rows, key_col)?
                    .as_any()
                    .downcast_ref::<arrow::array::BinaryArray>()
                    .ok_or_else(|| Error::InvalidArgument("stored batch lacks _key".into()))?;
                for (key, before) in key_arr.iter().flatten().zip(&change.before) {
                    if current(key) != *before {
                        return Err(conflict(key));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a transaction's changes to memory at `seq` (commit and replay).
    pub fn apply(&self, seq: u64, changes: Changes) -> Result<()> {
        if changes.has_ddl() {
            let mut history = self.catalog_mut()?;
            let blob = match &changes.catalog {
                Some(blob) => Arc::new(blob.clone()),
                None => history
                    .versions
                    .last()
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
            };
            history.versions.push((seq, blob));
        }
        let mut tables = self.tables_mut()?;
        for def in changes.creates {
            self.reserve_id(def.id);
            tables.insert(
                def.id,
                Arc::new(TableState::new(def, seq, self.runs().clone())),
            );
        }
        // Before the rows: this commit's own rows have the new columns.
        for def in changes.alters {
            let table = tables.get(&def.id).ok_or_else(|| Error::TableNotFound {
                name: format!("#{}", def.id),
            })?;
            table.add_columns(seq, def)?;
        }
        for change in changes.tables {
            let table = tables
                .get(&change.table_id)
                .ok_or_else(|| Error::TableNotFound {
                    name: format!("#{}", change.table_id),
                })?;
            let deleted: Vec<Box<[u8]>> = change.deleted.into_iter().map(|(k, _)| k).collect();
            let rows = match (change.loaded, change.rows) {
                (Some(load), batch) => {
                    let reader = load.reader.ok_or_else(|| {
                        Error::Internal(format!("loaded segment {} was not opened", load.id))
                    })?;
                    NewRows::Loaded { reader, batch }
                }
                (None, Some(batch)) => NewRows::Mem(batch),
                (None, None) => NewRows::None,
            };
            if table.def.key_columns.is_empty() {
                self.bump_rowid(&rows)?;
            }
            if !matches!(rows, NewRows::None) || !deleted.is_empty() {
                table.write_seq.store(seq, Ordering::SeqCst);
            }
            table.apply(seq, || self.allocate_id(), rows, &deleted, &change.before)?;
        }
        for id in &changes.drops {
            if let Some(t) = tables.get(id) {
                *write(&t.dropped_seq)? = Some(seq);
            }
        }
        for id in &changes.touched {
            if let Some(t) = tables.get(id) {
                t.schema_seq.store(seq, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Keeps the row-id counter above every replayed row id.
    fn bump_rowid(&self, rows: &NewRows) -> Result<()> {
        for keys in rows.keys()? {
            let Some(keys) = keys.as_any().downcast_ref::<arrow::array::BinaryArray>() else {
                continue;
            };
            let max = keys
                .iter()
                .flatten()
                .filter_map(|k| <[u8; 8]>::try_from(k).ok())
                .map(u64::from_be_bytes)
                .max();
            if let Some(max) = max {
                self.reserve_rowid(max);
            }
        }
        Ok(())
    }
}
