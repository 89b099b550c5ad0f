//! Transactions: a snapshot, the transaction's own uncommitted writes, and an
//! undo log for statement-level rollback. See [`crate::mvcc`] for the model.
//!
//! Writes are buffered here until commit. Per table the transaction keeps the
//! rows it inserted (`batches`), which of those it later deleted (`dead`),
//! which committed rows it deleted (`hidden`), and per written key the
//! before-image hash it saw at its snapshot (`writes`). Reads merge the
//! snapshot with these. Every change pushes an [`Undo`] entry, so
//! [`Transaction::rollback_to`] can undo one failed statement exactly.

use crate::changes::{Changes, TableChange};
use crate::chunk::RowLoc;
use crate::engine::Inner;
use crate::error::{CommitError, Error, Result};
use crate::hidden::{HiddenRows, HiddenView};
use crate::index::{KeyRange, index_keys};
use crate::keys::{ABSENT, content_hashes, display_key, encode_keys, rowid_keys};
use crate::locks::read;
use crate::lookup::IndexScanRequest;
use crate::scan::{ScanRequest, TableScan};
use crate::schema::TableDef;
use ahash::{AHashMap, AHashSet};
use arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{Field, SchemaRef};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// A key's state as written by this transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
struct KeyWrite {
    /// Hash of the committed version seen at the snapshot (or [`ABSENT`]).
    before: u64,
    /// The committed row this key had at the snapshot.
    base: Option<RowLoc>,
    /// The transaction's current row for the key: `(batch, row)`.
    now: Option<(u32, u32)>,
}

/// Index key → the transaction's row holding it, per unique column set.
type UniqueKeys = AHashMap<Vec<usize>, AHashMap<Box<[u8]>, (u32, u32)>>;

#[derive(Debug)]
struct LocalTable {
    def: TableDef,
    batches: Vec<RecordBatch>,
    dead: HashSet<(u32, u32)>,
    /// Committed versions this transaction deleted or replaced (by location
    /// and key, so a concurrent checkpoint cannot bring them back: see
    /// [`crate::hidden`]).
    hidden: HiddenRows,
    writes: AHashMap<Box<[u8]>, KeyWrite>,
    /// Declared unique column sets; `true` = check existing rows at commit.
    unique: Vec<(Vec<usize>, bool)>,
    /// Unique keys of the rows this transaction inserted.
    unique_keys: UniqueKeys,
    /// The transaction changed the table's indexes or constraints.
    touched: bool,
}

#[derive(Debug)]
enum Undo {
    Batch(u64),
    /// Inserted batch `.1` of table `.0` wrote its keys: undo removes the
    /// keys that still point at that batch (read back from its `_key`
    /// column). Keys that had an earlier write get their own `Write` entry.
    NewKeys(u64, u32),
    Dead(u64, (u32, u32)),
    Hidden(u64, RowLoc),
    Write(u64, Box<[u8]>, Option<KeyWrite>),
    Created(u64),
    Dropped(u64),
    Catalog(Option<Arc<Vec<u8>>>),
    Unique(u64, usize),
    /// A unique key of table `.0`, column set `.1`, that an insert pointed
    /// at its new row: restore the row it named before (`None`: none).
    UniqueKey(u64, Vec<usize>, Box<[u8]>, Option<(u32, u32)>),
    Touched(u64, bool),
    /// Columns were added to table `.0`: its definition (created or
    /// altered) and its own rows before.
    Added(u64, Box<AddedUndo>),
}

#[derive(Debug)]
struct AddedUndo {
    created: Option<TableDef>,
    altered: Option<TableDef>,
    /// The transaction's own table state before (`None`: it had none, and
    /// one made since, with the new definition, goes).
    local: Option<(TableDef, Vec<RecordBatch>)>,
}

/// A position in a transaction's undo log (see [`Transaction::savepoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint(usize);

/// A transaction. Dropping it without committing rolls it back.
#[derive(Debug)]
pub struct Transaction {
    engine: Arc<Inner>,
    id: u64,
    read_only: bool,
    closed: bool,
    snapshot: Option<u64>,
    local: BTreeMap<u64, LocalTable>,
    created: BTreeMap<u64, TableDef>,
    /// Committed tables this transaction added columns to: their new
    /// definitions (see [`Transaction::add_columns`]).
    altered: BTreeMap<u64, TableDef>,
    dropped: BTreeSet<u64>,
    /// Tables guarded by [`Transaction::guard_rows`].
    guarded: BTreeSet<u64>,
    /// Committed keys found by [`Transaction::guard_keys`], per table.
    key_guards: BTreeMap<u64, BTreeSet<Box<[u8]>>>,
    catalog: Option<Arc<Vec<u8>>>,
    undo: Vec<Undo>,
}

impl Transaction {
    pub(crate) fn new(engine: Arc<Inner>, read_only: bool) -> Self {
        engine.acquire_handle();
        let id = engine.allocate_txn_id();
        Self {
            engine,
            id,
            read_only,
            closed: false,
            snapshot: None,
            local: BTreeMap::new(),
            created: BTreeMap::new(),
            altered: BTreeMap::new(),
            dropped: BTreeSet::new(),
            guarded: BTreeSet::new(),
            key_guards: BTreeMap::new(),
            catalog: None,
            undo: Vec::new(),
        }
    }

    /// The transaction id (unique within this process).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True for a read-only transaction.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The snapshot sequence, fixed at the first read.
    pub fn snapshot(&mut self) -> u64 {
        *self
            .snapshot
            .get_or_insert_with(|| self.engine.take_snapshot())
    }

    fn active(&self) -> Result<()> {
        if self.closed {
            return Err(Error::TransactionClosed);
        }
        Ok(())
    }

    fn writable(&self) -> Result<()> {
        self.active()?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.engine.wal().check()
    }

    /// Makes the transaction read-only (`SET TRANSACTION READ ONLY`), or
    /// read-write again before it has read anything.
    ///
    /// # Errors
    /// `ReadOnly` to make a transaction of a read-only database writable;
    /// `InvalidArgument` to make it writable after its first read (its
    /// snapshot is taken).
    pub fn set_read_only(&mut self, read_only: bool) -> Result<()> {
        self.active()?;
        if !read_only && self.read_only {
            if self.engine.options().read_only {
                return Err(Error::ReadOnly);
            }
            if self.snapshot.is_some() {
                return Err(Error::InvalidArgument(
                    "transaction read-write mode must be set before any query".into(),
                ));
            }
        }
        self.read_only = read_only;
        Ok(())
    }

    /// True when the transaction changed anything.
    pub fn has_writes(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Every table visible to the transaction, by id.
    pub fn tables(&mut self) -> Result<Vec<TableDef>> {
        self.active()?;
        let snapshot = self.snapshot();
        let mut defs = Vec::new();
        for t in self.engine.tables()?.values() {
            if t.visible_at(snapshot)? && !self.dropped.contains(&t.def.id) {
                defs.push(match self.altered.get(&t.def.id) {
                    Some(def) => def.clone(),
                    None => t.def_at(snapshot)?,
                });
            }
        }
        defs.extend(self.created.values().cloned());
        Ok(defs)
    }

    /// The visible table named `name`.
    pub fn table(&mut self, name: &str) -> Result<TableDef> {
        self.tables()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::TableNotFound { name: name.into() })
    }

    /// The visible table with id `id`.
    pub fn table_by_id(&mut self, id: u64) -> Result<TableDef> {
        if let Some(def) = self.created.get(&id) {
            return Ok(def.clone());
        }
        let snapshot = self.snapshot();
        let tables = self.engine.tables()?;
        match tables.get(&id) {
            Some(t) if t.visible_at(snapshot)? && !self.dropped.contains(&id) => {
                match self.altered.get(&id) {
                    Some(def) => Ok(def.clone()),
                    None => t.def_at(snapshot),
                }
            }
            _ => Err(Error::TableNotFound {
                name: format!("#{id}"),
            }),
        }
    }

    /// Creates a table (visible to this transaction until it commits).
    pub fn create_table(
        &mut self,
        name: &str,
        schema: SchemaRef,
        key_columns: Vec<usize>,
    ) -> Result<TableDef> {
        self.writable()?;
        if self.table(name).is_ok() {
            return Err(Error::TableExists { name: name.into() });
        }
        let id = self.engine.allocate_id();
        let def = TableDef::new(id, name, schema, key_columns)?;
        self.created.insert(id, def.clone());
        self.undo.push(Undo::Created(id));
        Ok(def)
    }

    /// Drops a table.
    pub fn drop_table(&mut self, id: u64) -> Result<()> {
        self.writable()?;
        self.table_by_id(id)?;
        if let Some(def) = self.created.remove(&id) {
            self.undo.push(Undo::Dropped(id));
            // Keep the definition so rollback_to can restore it.
            self.local.entry(id).or_insert_with(|| LocalTable::new(def));
        } else {
            self.dropped.insert(id);
            self.undo.push(Undo::Dropped(id));
        }
        Ok(())
    }

    /// Adds `fields` as trailing user columns of a table, without rewriting
    /// it: every row stored before reads the column's one-row `fill` (see
    /// `schema.rs`, ADDED COLUMNS). The table's schema is touched, so a
    /// concurrent writer whose snapshot is older fails at commit (its rows
    /// have the old columns). Returns the new definition.
    ///
    /// # Errors
    /// `InvalidArgument` for a fill that is not one value of its column's
    /// type, `NotNullViolation` for a NULL fill of a NOT NULL column.
    pub fn add_columns(
        &mut self,
        table_id: u64,
        fields: Vec<Field>,
        fills: Vec<ArrayRef>,
    ) -> Result<TableDef> {
        self.writable()?;
        let def = self.table_by_id(table_id)?;
        let added = fields.len();
        let mut new = def.with_added(fields, fills)?;
        let created = self.created.contains_key(&table_id);
        if !created {
            // A column committed since the snapshot is a concurrent ALTER:
            // this one could only fail at commit.
            let snapshot = self.snapshot();
            if let Some(t) = self.engine.table(table_id)?
                && t.latest_def()?.width() != t.def_at(snapshot)?.width()
            {
                return Err(Error::Conflict {
                    table: def.name.clone(),
                    key: "columns were added concurrently".into(),
                });
            }
            new.uncommitted += added;
        }
        let local = self
            .local
            .get(&table_id)
            .map(|l| (l.def.clone(), l.batches.clone()));
        if let Some(l) = self.local.get_mut(&table_id) {
            let widened = l
                .batches
                .iter()
                .map(|b| widen(b, &new))
                .collect::<Result<Vec<_>>>()?;
            l.batches = widened;
            l.def = new.clone();
        }
        if created {
            // The table's every row is in this transaction, now widened:
            // no stored row needs a fill.
            new.fills.clear();
            if let Some(l) = self.local.get_mut(&table_id) {
                l.def = new.clone();
            }
        }
        let undo = AddedUndo {
            created: if created {
                self.created.insert(table_id, new.clone())
            } else {
                None
            },
            altered: if created {
                None
            } else {
                self.altered.insert(table_id, new.clone())
            },
            local,
        };
        self.undo.push(Undo::Added(table_id, Box::new(undo)));
        if !created {
            self.touch_schema(table_id)?;
        }
        Ok(new)
    }

    /// How many user columns a table this transaction added columns to has
    /// outside it (at the snapshot); `None` when it added none. An index or
    /// UNIQUE over a column it added cannot be built before it commits: the
    /// committed rows' values for it (the fill) are not committed yet, and
    /// the engine refuses (an error, never a wrong index). Rewrite the
    /// table into a new one instead.
    pub fn committed_width(&mut self, table_id: u64) -> Result<Option<usize>> {
        self.active()?;
        if !self.altered.contains_key(&table_id) {
            return Ok(None);
        }
        let snapshot = self.snapshot();
        match self.engine.table(table_id)? {
            Some(t) => Ok(Some(t.def_at(snapshot)?.width())),
            None => Ok(None),
        }
    }

    /// The catalog blob as this transaction sees it.
    pub fn catalog(&mut self) -> Result<Arc<Vec<u8>>> {
        self.active()?;
        if let Some(c) = &self.catalog {
            return Ok(c.clone());
        }
        let snapshot = self.snapshot();
        self.engine.catalog_at(snapshot)
    }

    /// Replaces the catalog blob.
    pub fn set_catalog(&mut self, blob: Vec<u8>) -> Result<()> {
        self.writable()?;
        let prev = self.catalog.replace(Arc::new(blob));
        self.undo.push(Undo::Catalog(prev));
        Ok(())
    }

    /// Marks the current point of the undo log.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.undo.len())
    }

    /// Undoes every change made after `sp` (statement rollback).
    pub fn rollback_to(&mut self, sp: Savepoint) {
        while self.undo.len() > sp.0 {
            let Some(undo) = self.undo.pop() else { break };
            self.undo_one(undo);
        }
    }

    fn undo_one(&mut self, undo: Undo) {
        match undo {
            Undo::Batch(t) => {
                if let Some(l) = self.local.get_mut(&t) {
                    l.batches.pop();
                }
            }
            Undo::NewKeys(t, b) => {
                if let Some(l) = self.local.get_mut(&t) {
                    let keys = l
                        .batches
                        .get(b as usize)
                        .and_then(|batch| {
                            batch.columns().get(batch.num_columns().saturating_sub(2))
                        })
                        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                        .cloned();
                    for map in l.unique_keys.values_mut() {
                        map.retain(|_, (nb, _)| *nb != b);
                    }
                    for key in keys.iter().flat_map(|k| k.iter().flatten()) {
                        // Keys restored to an earlier write by a later
                        // `Undo::Write` no longer point at this batch.
                        if l.writes
                            .get(key)
                            .is_some_and(|w| w.now.is_some_and(|(nb, _)| nb == b))
                        {
                            l.writes.remove(key);
                        }
                    }
                }
            }
            Undo::Dead(t, at) => {
                if let Some(l) = self.local.get_mut(&t) {
                    l.dead.remove(&at);
                }
            }
            Undo::Hidden(t, loc) => {
                if let Some(l) = self.local.get_mut(&t) {
                    l.hidden.remove(loc);
                }
            }
            Undo::Write(t, key, prev) => {
                if let Some(l) = self.local.get_mut(&t) {
                    match prev {
                        Some(w) => l.writes.insert(key, w),
                        None => l.writes.remove(&key),
                    };
                }
            }
            Undo::Created(id) => {
                self.created.remove(&id);
                self.local.remove(&id);
            }
            Undo::Dropped(id) => {
                if !self.dropped.remove(&id)
                    && let Some(l) = self.local.get(&id)
                {
                    self.created.insert(id, l.def.clone());
                }
            }
            Undo::Catalog(prev) => self.catalog = prev,
            Undo::Unique(t, len) => {
                if let Some(l) = self.local.get_mut(&t) {
                    l.unique.truncate(len);
                }
            }
            Undo::UniqueKey(t, cols, key, prev) => {
                if let Some(map) = self
                    .local
                    .get_mut(&t)
                    .and_then(|l| l.unique_keys.get_mut(&cols))
                {
                    match prev {
                        Some(at) => map.insert(key, at),
                        None => map.remove(&key),
                    };
                }
            }
            Undo::Touched(t, prev) => {
                if let Some(l) = self.local.get_mut(&t) {
                    l.touched = prev;
                }
            }
            Undo::Added(t, before) => {
                let AddedUndo {
                    created,
                    altered,
                    local,
                } = *before;
                if let Some(def) = created {
                    self.created.insert(t, def);
                }
                match altered {
                    Some(def) => self.altered.insert(t, def),
                    None => self.altered.remove(&t),
                };
                match local {
                    Some((def, batches)) => {
                        if let Some(l) = self.local.get_mut(&t) {
                            l.def = def;
                            l.batches = batches;
                        }
                    }
                    // Everything done to it since was undone first.
                    None => {
                        self.local.remove(&t);
                    }
                }
            }
        }
    }

    fn local_table(&mut self, table_id: u64) -> Result<&mut LocalTable> {
        let def = self.table_by_id(table_id)?;
        Ok(self
            .local
            .entry(table_id)
            .or_insert_with(|| LocalTable::new(def)))
    }

    /// The committed state of `key` as seen at the snapshot: `(hash, row)`.
    /// Fails with `Conflict` when a newer version was committed since.
    fn base_version(&mut self, def: &TableDef, key: &[u8]) -> Result<(u64, Option<RowLoc>)> {
        let snapshot = self.snapshot();
        let Some(table) = self.committed_table(def.id)? else {
            return Ok((ABSENT, None));
        };
        let keys = table.keys()?;
        base_of(&keys, def, key, snapshot)
    }

    /// The committed state of a table this transaction did not create.
    fn committed_table(&self, id: u64) -> Result<Option<Arc<crate::table::TableState>>> {
        if self.created.contains_key(&id) {
            return Ok(None);
        }
        self.engine.table(id)
    }

    /// Inserts the rows of `batch` (the table's user columns). Fails with
    /// `ConstraintViolation` on a duplicate primary key, `NotNullViolation` on
    /// a NULL one, leaving the
    /// transaction unchanged. Returns the number of rows inserted.
    pub fn insert(&mut self, table_id: u64, batch: &RecordBatch) -> Result<u64> {
        self.writable()?;
        let def = self.table_by_id(table_id)?;
        check_schema(&def, batch)?;
        let keys = self.make_keys(&def, batch)?;
        let sp = self.savepoint();
        let result = self.insert_keyed(&def, batch, keys);
        if result.is_err() {
            self.rollback_to(sp);
        }
        result
    }

    fn make_keys(&self, def: &TableDef, batch: &RecordBatch) -> Result<BinaryArray> {
        if def.key_columns.is_empty() {
            let n = batch.num_rows() as u64;
            let first = self.engine.allocate_rowids(n);
            return Ok(rowid_keys(first, batch.num_rows()));
        }
        let cols: Vec<ArrayRef> = def
            .key_columns
            .iter()
            .map(|i| crate::schema::col(batch, *i).cloned())
            .collect::<Result<_>>()?;
        for (i, c) in def.key_columns.iter().zip(&cols) {
            if c.null_count() > 0 {
                return Err(Error::NotNullViolation {
                    table: def.name.clone(),
                    column: def.column_name(*i),
                });
            }
        }
        encode_keys(&cols)
    }

    fn insert_keyed(
        &mut self,
        def: &TableDef,
        batch: &RecordBatch,
        keys: BinaryArray,
    ) -> Result<u64> {
        let hashes = content_hashes(batch)?;
        let mut columns = batch.columns().to_vec();
        let mut seen = AHashSet::with_capacity(keys.len());
        let mut bases = Vec::with_capacity(keys.len());
        // One look at the committed table for the whole batch: an empty
        // table (no chunks) has no versions, and its key index need not be
        // built; otherwise the index is read under one guard.
        let snapshot = self.snapshot();
        let table = self.committed_table(def.id)?;
        let table = match table {
            Some(t) if !read(&t.chunks)?.chunks.is_empty() => Some(t),
            _ => None,
        };
        let committed = table.as_ref().map(|t| t.keys()).transpose()?;
        let local = self.local.get(&def.id);
        for key in keys.iter().flatten() {
            let duplicate = || Error::ConstraintViolation {
                table: def.name.clone(),
                detail: format!("duplicate primary key {}", display_key(key)),
            };
            if !seen.insert(key) {
                return Err(duplicate());
            }
            let prior = local.and_then(|l| l.writes.get(key)).copied();
            let (before, base) = match prior {
                Some(w) if w.now.is_some() => return Err(duplicate()),
                Some(w) => (w.before, w.base),
                None => match &committed {
                    None => (ABSENT, None),
                    Some(keys) => match base_of(keys, def, key, snapshot)? {
                        (_, Some(_)) => return Err(duplicate()),
                        (hash, None) => (hash, None),
                    },
                },
            };
            bases.push((before, base));
        }
        drop(committed);
        let unique = self.check_unique_insert(def, batch)?;
        columns.push(Arc::new(keys.clone()));
        columns.push(Arc::new(hashes));
        let stored = RecordBatch::try_new(def.stored_schema(), columns)?;
        let table_id = def.id;
        let local = self.local_table(table_id)?;
        let batch_no = local.batches.len() as u32;
        // Undo runs in reverse: per-key restores first (unique keys an
        // earlier row of this transaction held, then row keys), then the
        // removal of the batch's new keys, then the batch itself.
        let mut undo = vec![Undo::Batch(table_id), Undo::NewKeys(table_id, batch_no)];
        for (cols, keys) in unique {
            let map = local.unique_keys.entry(cols.clone()).or_default();
            for (row, key) in keys {
                if let Some(prev) = map.insert(key.clone(), (batch_no, row)) {
                    undo.push(Undo::UniqueKey(table_id, cols.clone(), key, Some(prev)));
                }
            }
        }
        local.batches.push(stored);
        local.writes.reserve(keys.len());
        for (row, (key, (before, base))) in keys.iter().flatten().zip(bases).enumerate() {
            let w = KeyWrite {
                before,
                base,
                now: Some((batch_no, row as u32)),
            };
            if let Some(prev) = local.writes.insert(key.into(), w) {
                undo.push(Undo::Write(table_id, key.into(), Some(prev)));
            }
        }
        self.undo.extend(undo);
        Ok(batch.num_rows() as u64)
    }

    /// Checks the declared unique column sets of `def` for the rows of
    /// `batch` against the snapshot and the transaction's own rows. Returns
    /// the new rows' unique keys per column set.
    #[allow(clippy::type_complexity)]
    fn check_unique_insert(
        &mut self,
        def: &TableDef,
        batch: &RecordBatch,
    ) -> Result<Vec<(Vec<usize>, Vec<(u32, Box<[u8]>)>)>> {
        let sets: Vec<Vec<usize>> = match self.local.get(&def.id) {
            Some(l) => l.unique.iter().map(|(c, _)| c.clone()).collect(),
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for cols in sets {
            let arrays = cols
                .iter()
                .map(|c| crate::schema::col(batch, *c).cloned())
                .collect::<Result<Vec<ArrayRef>>>()?;
            let (keys, has_null) = index_keys(&arrays)?;
            let mut fresh = Vec::new();
            let mut seen = AHashSet::new();
            for (row, (key, null)) in keys.iter().zip(has_null).enumerate() {
                let key = key.unwrap_or_default();
                if null {
                    continue;
                }
                if !seen.insert(key) || self.unique_taken(def, &cols, key)? {
                    return Err(unique_violation(def, &cols));
                }
                fresh.push((row as u32, Box::<[u8]>::from(key)));
            }
            out.push((cols, fresh));
        }
        Ok(out)
    }

    /// True when a row visible to the transaction has unique key `key`.
    fn unique_taken(&mut self, def: &TableDef, cols: &[usize], key: &[u8]) -> Result<bool> {
        if let Some(l) = self.local.get(&def.id)
            && let Some(at) = l.unique_keys.get(cols).and_then(|m| m.get(key))
            && !l.dead.contains(at)
        {
            return Ok(true);
        }
        if self.created.contains_key(&def.id) {
            return Ok(false);
        }
        let snapshot = self.snapshot();
        let Some(table) = self.engine.table(def.id)? else {
            return Ok(false);
        };
        let index = table.index(cols)?;
        let hidden = self.local.get(&def.id).map(|l| &l.hidden);
        // Locations are resolved while the index is read-locked (a
        // checkpoint cannot move them in between).
        let taken = index.lookup_then(&[KeyRange::point(key.to_vec())], usize::MAX, |locs| {
            let chunks = read(&table.chunks)?;
            let own = hidden
                .map(|h| h.view(|id| chunks.get(id).is_some()))
                .unwrap_or_default();
            for loc in locs {
                let Some(chunk) = chunks.get(loc.chunk) else {
                    continue;
                };
                let rows = vec![loc.row];
                if !crate::lookup::visible(chunk, rows, snapshot, &own)?.is_empty() {
                    return Ok(true);
                }
            }
            Ok(false)
        })?;
        Ok(taken.unwrap_or(false))
    }

    /// Declares that `columns` of the table are UNIQUE (NULLs never collide):
    /// this and later inserts are checked against the snapshot and the
    /// transaction's rows, and commit re-checks them against every committed
    /// row. Declaring the same set twice is a no-op.
    pub fn declare_unique(&mut self, table_id: u64, columns: &[usize]) -> Result<()> {
        self.active()?;
        self.table_by_id(table_id)?.check_columns(columns)?;
        let local = self.local_table(table_id)?;
        if local.unique.iter().any(|(c, _)| c == columns) {
            return Ok(());
        }
        let len = local.unique.len();
        local.unique.push((columns.to_vec(), false));
        self.undo.push(Undo::Unique(table_id, len));
        Ok(())
    }

    /// Adds a UNIQUE constraint over existing rows (`CREATE UNIQUE INDEX`):
    /// fails with `ConstraintViolation` if the transaction's view already has
    /// a duplicate; commit checks again over every committed row (a table
    /// this transaction created has none: its own rows' keys are recorded
    /// here, so later inserts find them).
    pub fn add_unique(&mut self, table_id: u64, columns: &[usize]) -> Result<()> {
        self.writable()?;
        let def = self.table_by_id(table_id)?;
        def.check_columns(columns)?;
        let request = ScanRequest {
            projection: Some(columns.to_vec()),
            ..ScanRequest::default()
        };
        let mut seen = AHashSet::new();
        for batch in self.scan(table_id, request)? {
            let batch = batch?;
            let (keys, has_null) = index_keys(batch.columns())?;
            for (key, null) in keys.iter().zip(has_null) {
                if !null && !seen.insert(Box::<[u8]>::from(key.unwrap_or_default())) {
                    return Err(unique_violation(&def, columns));
                }
            }
        }
        self.declare_unique(table_id, columns)?;
        let local = self.local_table(table_id)?;
        if let Some(last) = local.unique.iter_mut().find(|(c, _)| c == columns) {
            last.1 = true;
        }
        // The transaction's own rows hold keys of the new set too: later
        // inserts must find them (a table created in this transaction has
        // no commit-time check to catch a duplicate of them).
        let mut undo = Vec::new();
        let map = local.unique_keys.entry(columns.to_vec()).or_default();
        for (b, batch) in local.batches.iter().enumerate() {
            let arrays = columns
                .iter()
                .map(|c| crate::schema::col(batch, *c).cloned())
                .collect::<Result<Vec<ArrayRef>>>()?;
            let (keys, has_null) = index_keys(&arrays)?;
            for (r, (key, null)) in keys.iter().zip(has_null).enumerate() {
                let at = (b as u32, r as u32);
                if null || local.dead.contains(&at) {
                    continue;
                }
                let key: Box<[u8]> = key.unwrap_or_default().into();
                let prev = map.insert(key.clone(), at);
                undo.push(Undo::UniqueKey(table_id, columns.to_vec(), key, prev));
            }
        }
        self.undo.extend(undo);
        Ok(())
    }

    /// Makes the commit fail with `Conflict` if another transaction inserted
    /// or deleted rows of the table after this one's snapshot: what a
    /// transaction needs that checked every row of the table and changed
    /// something on the strength of it (`ALTER TABLE … ADD CHECK`). With
    /// [`Transaction::touch_schema`] it makes the check and the writers
    /// serialize: a writer that commits first fails the checker, one that
    /// commits later (its snapshot older than the new schema) fails itself.
    pub fn guard_rows(&mut self, table_id: u64) -> Result<()> {
        self.writable()?;
        self.table_by_id(table_id)?;
        // Nobody else can write a table this transaction created (and it
        // may drop it again before committing).
        if !self.created.contains_key(&table_id) {
            self.guarded.insert(table_id);
        }
        Ok(())
    }

    /// Whether a row with each primary key is visible to the transaction,
    /// for a foreign key's parent check. `keys` are the table's key columns
    /// in key order, of the key columns' types; a row with a NULL in any of
    /// them is reported absent (callers skip such rows: MATCH SIMPLE).
    ///
    /// A key found among the committed rows (not among this transaction's
    /// own writes) is *guarded*: the commit fails with `Conflict` if by then
    /// the newest committed version of the key is a deletion, so a child row
    /// and a concurrent delete of its parent never both commit (see
    /// [`crate::mvcc`], KEY GUARDS). A key whose newest committed version
    /// is newer than the snapshot counts as found when that version is a
    /// row (the parent exists when the child commits, which the guard makes
    /// sure of; a non-key update of the parent does not fail the child),
    /// and is a `Conflict` when it is a deletion. Guards stay when a
    /// statement rolls back (they can only add conflicts).
    ///
    /// # Errors
    /// `InvalidArgument` for a table without a primary key or columns that
    /// do not match it; `Conflict` as above.
    pub fn guard_keys(&mut self, table_id: u64, keys: &[ArrayRef]) -> Result<Vec<bool>> {
        self.active()?;
        let def = self.table_by_id(table_id)?;
        let types_match = def.key_columns.len() == keys.len()
            && def.key_columns.iter().zip(keys).all(|(i, k)| {
                def.schema
                    .fields()
                    .get(*i)
                    .is_some_and(|f| f.data_type() == k.data_type())
            });
        if def.key_columns.is_empty() || !types_match {
            return Err(Error::InvalidArgument(format!(
                "the keys do not match the primary key of {}",
                def.name
            )));
        }
        let rows = keys.first().map_or(0, |k| k.len());
        let has_null: Vec<bool> = (0..rows)
            .map(|r| keys.iter().any(|k| k.is_null(r)))
            .collect();
        let encoded = encode_keys(keys)?;
        let snapshot = self.snapshot();
        let committed = self.committed_table(table_id)?;
        let committed = committed.as_ref().map(|t| t.keys()).transpose()?;
        let local = self.local.get(&table_id);
        let mut found = Vec::with_capacity(rows);
        let mut guarded = Vec::new();
        for (key, null) in encoded.iter().zip(has_null) {
            let key = key.unwrap_or_default();
            if null {
                found.push(false);
                continue;
            }
            if let Some(w) = local.and_then(|l| l.writes.get(key)) {
                found.push(w.now.is_some());
                continue;
            }
            let live = match committed.as_ref().and_then(|keys| keys.get(key)) {
                None => false,
                Some(e) if e.seq > snapshot && e.loc.is_none() => {
                    return Err(Error::Conflict {
                        table: def.name.clone(),
                        key: display_key(key),
                    });
                }
                Some(e) => e.loc.is_some(),
            };
            if live {
                guarded.push(Box::<[u8]>::from(key));
            }
            found.push(live);
        }
        drop(committed);
        if !guarded.is_empty() {
            self.key_guards.entry(table_id).or_default().extend(guarded);
        }
        Ok(found)
    }

    /// Marks the table's indexes or constraints as changed: transactions
    /// whose snapshot predates this commit cannot write the table any more
    /// (they would not know the new constraint).
    pub fn touch_schema(&mut self, table_id: u64) -> Result<()> {
        self.writable()?;
        let local = self.local_table(table_id)?;
        let prev = std::mem::replace(&mut local.touched, true);
        self.undo.push(Undo::Touched(table_id, prev));
        Ok(())
    }

    /// Builds the committed index over `columns` now rather than at its
    /// first use.
    pub fn build_index(&mut self, table_id: u64, columns: &[usize]) -> Result<()> {
        self.active()?;
        self.table_by_id(table_id)?.check_columns(columns)?;
        let table = self.engine.table(table_id)?;
        if let Some(table) = table {
            table.index(columns)?;
        }
        Ok(())
    }

    /// Rows visible to the transaction whose leading indexed column is in
    /// the request's ranges, found through the index. `None` when the index
    /// finds more than `max_candidates` versions (scan instead).
    pub fn index_scan(
        &mut self,
        table_id: u64,
        req: &IndexScanRequest,
    ) -> Result<Option<Vec<RecordBatch>>> {
        self.active()?;
        let snapshot = self.snapshot();
        let def = self.table_by_id(table_id)?;
        let nuser = def.schema.fields().len();
        let columns = req
            .projection
            .clone()
            .unwrap_or_else(|| (0..nuser).collect());
        let leading = *req
            .index
            .first()
            .ok_or_else(|| Error::InvalidArgument("an index needs a column".into()))?;
        if let Some(bad) = columns.iter().chain(&req.index).find(|c| **c >= nuser) {
            return Err(Error::InvalidArgument(format!(
                "no column {bad} in {}",
                def.name
            )));
        }
        let mut stored = columns.clone();
        if req.include_key {
            stored.push(crate::chunk::KEY);
        }
        let schema = crate::lookup::output_schema(&def, &columns, req.include_key);
        let empty = HiddenRows::default();
        let (hidden, live) = match self.local.get(&table_id) {
            Some(l) => (&l.hidden, l.live_batches()?),
            None => (&empty, Vec::new()),
        };
        let mut out = Vec::new();
        if !self.created.contains_key(&table_id) {
            let table = self.engine.table(table_id)?;
            if let Some(table) = table {
                match crate::lookup::committed(
                    &table, &def, req, snapshot, hidden, &schema, &stored,
                )? {
                    Some(batches) => out = batches,
                    None => return Ok(None),
                }
            }
        }
        out.extend(crate::lookup::local(
            &live,
            leading,
            &req.ranges,
            &schema,
            &stored,
        )?);
        Ok(Some(out))
    }

    /// Committed row versions of a table (an upper bound on its visible rows).
    pub fn row_estimate(&mut self, table_id: u64) -> Result<u64> {
        let table = self.engine.table(table_id)?;
        let Some(table) = table else { return Ok(0) };
        let chunks = read(&table.chunks)?;
        Ok(chunks.chunks.iter().map(|c| u64::from(c.rows)).sum())
    }

    /// The transaction's own write of the row with `key` in `table_id`:
    /// `None` when it has not written the key, `Some(None)` when it deleted
    /// the row, `Some(Some(at))` for the version it holds now. Every write
    /// of the key changes the answer (a new version goes to a new place),
    /// so comparing it across a step tells whether the step wrote the row.
    pub fn own_write(&self, table_id: u64, key: &[u8]) -> Option<Option<(u32, u32)>> {
        self.local
            .get(&table_id)
            .and_then(|l| l.writes.get(key))
            .map(|w| w.now)
    }

    /// Deletes the rows with the given keys (as returned by a scan with
    /// `include_key`). Keys not visible to the transaction are ignored.
    /// Returns the number of rows deleted.
    pub fn delete(&mut self, table_id: u64, keys: &BinaryArray) -> Result<u64> {
        self.writable()?;
        let def = self.table_by_id(table_id)?;
        let sp = self.savepoint();
        let result = self.delete_keys(&def, keys);
        if result.is_err() {
            self.rollback_to(sp);
        }
        result
    }

    fn delete_keys(&mut self, def: &TableDef, keys: &BinaryArray) -> Result<u64> {
        let mut deleted = 0;
        for key in keys.iter().flatten() {
            let prior = self
                .local
                .get(&def.id)
                .and_then(|l| l.writes.get(key))
                .copied();
            let write = match prior {
                Some(KeyWrite { now: None, .. }) => continue,
                Some(w) => w,
                None => match self.base_version(def, key)? {
                    (_, None) => continue,
                    (before, base) => KeyWrite {
                        before,
                        base,
                        now: None,
                    },
                },
            };
            let local = self.local_table(def.id)?;
            let mut undo = Vec::new();
            if let Some(at) = write.now {
                local.dead.insert(at);
                undo.push(Undo::Dead(def.id, at));
            } else if let Some(loc) = write.base {
                local.hidden.insert(loc, key);
                undo.push(Undo::Hidden(def.id, loc));
            }
            let prev = local
                .writes
                .insert(key.into(), KeyWrite { now: None, ..write });
            undo.push(Undo::Write(def.id, key.into(), prev));
            self.undo.extend(undo);
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Scans a table as the transaction sees it.
    pub fn scan(&mut self, table_id: u64, request: ScanRequest) -> Result<TableScan> {
        self.active()?;
        let snapshot = self.snapshot();
        let def = self.table_by_id(table_id)?;
        let committed = if self.created.contains_key(&table_id) {
            Vec::new()
        } else {
            let tables = self.engine.tables()?;
            match tables.get(&table_id) {
                Some(t) => read(&t.chunks)?.chunks.clone(),
                None => Vec::new(),
            }
        };
        let (local, hidden) = match self.local.get(&table_id) {
            Some(l) => {
                let ids: AHashSet<u64> = committed.iter().map(|c| c.id).collect();
                (l.live_batches()?, l.hidden.view(|id| ids.contains(&id)))
            }
            None => (Vec::new(), HiddenView::default()),
        };
        TableScan::new(&def, request, snapshot, committed, hidden, local)
    }

    /// Commits: validates every write against the newest committed versions,
    /// appends the WAL records, waits until they are durable and publishes the
    /// changes. Returns the commit sequence (the snapshot for a transaction
    /// that wrote nothing).
    ///
    /// # Errors
    /// `Conflict` (retry the transaction), `ConstraintViolation` or
    /// `NotNullViolation`, `TransactionClosed`, `InvalidArgument` for a
    /// transaction too large for one WAL record, `Storage` when the WAL
    /// cannot be written or synced (the database is poisoned).
    pub fn commit(mut self) -> Result<u64, CommitError> {
        self.active()?;
        self.closed = true;
        let changes = self.changes()?;
        let snapshot = self.snapshot();
        if changes.is_empty() {
            return Ok(snapshot);
        }
        Ok(self.engine.commit(self.id, snapshot, changes)?)
    }

    /// Discards the transaction.
    pub fn rollback(mut self) {
        self.closed = true;
    }

    fn changes(&mut self) -> Result<Changes> {
        let mut changes = Changes {
            creates: self.created.values().cloned().collect(),
            alters: self
                .altered
                .iter()
                .filter(|(id, _)| !self.dropped.contains(id))
                .map(|(_, def)| def.clone())
                .collect(),
            catalog: self.catalog.as_ref().map(|c| c.as_ref().clone()),
            tables: Vec::new(),
            drops: self.dropped.iter().copied().collect(),
            touched: Vec::new(),
            guarded: self.guarded.iter().copied().collect(),
            key_guards: self
                .key_guards
                .iter()
                .map(|(t, keys)| (*t, keys.iter().cloned().collect()))
                .collect(),
        };
        for (id, local) in &self.local {
            if self.dropped.contains(id) || !self.table_exists_locally(*id) {
                continue;
            }
            if local.touched {
                changes.touched.push(*id);
            }
            let change = local.change()?;
            if change.rows.is_some()
                || !change.deleted.is_empty()
                || change.unique.iter().any(|(_, existing)| *existing)
            {
                changes.tables.push(change);
            }
        }
        Ok(changes)
    }

    fn table_exists_locally(&self, id: u64) -> bool {
        self.created.contains_key(&id)
            || self
                .engine
                .tables()
                .map(|t| t.contains_key(&id))
                .unwrap_or(false)
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(seq) = self.snapshot {
            self.engine.snapshots().release(seq);
        }
        self.engine.release_handle();
    }
}

impl LocalTable {
    fn new(def: TableDef) -> Self {
        Self {
            def,
            batches: Vec::new(),
            dead: HashSet::new(),
            hidden: HiddenRows::default(),
            writes: AHashMap::new(),
            unique: Vec::new(),
            unique_keys: UniqueKeys::default(),
            touched: false,
        }
    }

    /// Inserted rows not deleted again, one batch per inserted batch.
    fn live_batches(&self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(self.batches.len());
        for (b, batch) in self.batches.iter().enumerate() {
            if self.dead.iter().any(|(db, _)| *db == b as u32) {
                let mask: BooleanArray = (0..batch.num_rows())
                    .map(|r| Some(!self.dead.contains(&(b as u32, r as u32))))
                    .collect();
                out.push(filter_record_batch(batch, &mask)?);
            } else {
                out.push(batch.clone());
            }
        }
        Ok(out)
    }

    /// The net effect on this table, for the WAL and for apply.
    fn change(&self) -> Result<TableChange> {
        // Every batch has the definition's columns (ADD COLUMN widens them);
        // arrow's concat would panic on one that has not.
        let live = self
            .live_batches()?
            .into_iter()
            .map(|b| match b.num_columns() == self.def.width() + 2 {
                true => Ok(b),
                false => widen(&b, &self.def),
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = if live.iter().any(|b| b.num_rows() > 0) {
            Some(concat_batches(&self.def.stored_schema(), &live)?)
        } else {
            None
        };
        let mut before = Vec::new();
        if let Some(rows) = &rows {
            let key_col = rows.num_columns().saturating_sub(2);
            let keys = crate::schema::col(rows, key_col)?
                .as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or_else(|| Error::InvalidArgument("stored batch lacks _key".into()))?;
            for key in keys.iter().flatten() {
                before.push(self.writes.get(key).map_or(ABSENT, |w| w.before));
            }
        }
        let mut deleted: Vec<(Box<[u8]>, u64)> = self
            .writes
            .iter()
            .filter(|(_, w)| w.now.is_none() && w.base.is_some())
            .map(|(k, w)| (k.clone(), w.before))
            .collect();
        deleted.sort();
        Ok(TableChange {
            table_id: self.def.id,
            rows,
            before,
            deleted,
            unique: self.unique.clone(),
            loaded: None,
        })
    }
}

/// A key's committed version as seen at `snapshot`: `(hash, row)`; a
/// version newer than the snapshot is a `Conflict`.
fn base_of(
    keys: &crate::table::KeyMap,
    def: &TableDef,
    key: &[u8],
    snapshot: u64,
) -> Result<(u64, Option<RowLoc>)> {
    match keys.get(key) {
        None => Ok((ABSENT, None)),
        Some(e) if e.seq > snapshot => Err(Error::Conflict {
            table: def.name.clone(),
            key: display_key(key),
        }),
        Some(e) => Ok((e.before_image(snapshot), e.loc)),
    }
}

fn unique_violation(def: &TableDef, cols: &[usize]) -> Error {
    let names: Vec<String> = cols.iter().map(|c| def.column_name(*c)).collect();
    Error::ConstraintViolation {
        table: def.name.clone(),
        detail: format!("duplicate value in UNIQUE ({})", names.join(", ")),
    }
}

/// A stored batch (user columns, `_key`, `_hash`) with the user columns
/// `def` added filled in: in the stored schema of `def`.
fn widen(batch: &RecordBatch, def: &TableDef) -> Result<RecordBatch> {
    let width = batch.num_columns().saturating_sub(2);
    let columns = crate::chunk::with_fills(batch.columns().to_vec(), width, def, batch.num_rows())?;
    Ok(RecordBatch::try_new(def.stored_schema(), columns)?)
}

fn check_schema(def: &TableDef, batch: &RecordBatch) -> Result<()> {
    let want = def.schema.fields();
    let got = batch.schema();
    if want.len() != got.fields().len()
        || want
            .iter()
            .zip(got.fields())
            .any(|(a, b)| a.data_type() != b.data_type())
    {
        return Err(Error::InvalidArgument(format!(
            "batch does not match the columns of table {}",
            def.name
        )));
    }
    Ok(())
}
