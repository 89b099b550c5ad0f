//! The reference model of the simulation: snapshot isolation with
//! first-committer-wins, written independently of the engine from the rules
//! documented in `engine/src/mvcc.rs`, `txn.rs`, `commit.rs` and `unique.rs`.
//!
//! Table `kv(id BIGINT PRIMARY KEY, v TEXT, u BIGINT UNIQUE NULL)`.
//!
//! - Committed state: per key the list of `(commit_seq, row or tombstone)`.
//! - A transaction's snapshot is the last commit at its first read or write;
//!   its view is the committed state at the snapshot plus its own writes.
//! - A write (insert or delete) of a key the transaction has not written yet
//!   fails with `Conflict` when the key's newest committed version (row or
//!   tombstone) is newer than the snapshot; a failed statement changes
//!   nothing.
//! - Commit fails with `Conflict` when a key in its net effect (rows it
//!   leaves, committed rows it deletes) has a version newer than the
//!   snapshot; UNIQUE(u) is checked first against the newest committed rows
//!   (`Conflict` if the colliding row is newer than the snapshot,
//!   `ConstraintViolation` otherwise); a catalog change conflicts with any
//!   catalog change after the snapshot; a table write conflicts with an
//!   index/constraint change (`touch_schema`) after the snapshot unless the
//!   transaction touched the table itself.

use std::collections::{BTreeMap, BTreeSet};

/// A row's non-key columns: `(v, u)`.
pub type Row = (String, Option<i64>);

/// The kinds of error the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Conflict,
    Violation,
    ReadOnly,
}

/// What the model expects: a value, or one of a set of errors.
pub type Expect<T> = Result<T, BTreeSet<Kind>>;

fn err<T>(k: Kind) -> Expect<T> {
    Err([k].into_iter().collect())
}

/// The committed state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    pub versions: BTreeMap<i64, Vec<(u64, Option<Row>)>>,
    pub last_seq: u64,
    /// Last commit that touched kv's indexes or constraints.
    pub schema_seq: u64,
    /// Last commit that changed the catalog.
    pub ddl_seq: u64,
}

impl Committed {
    /// The row of `k` visible at `s`.
    pub fn at(&self, k: i64, s: u64) -> Option<&Row> {
        self.versions
            .get(&k)?
            .iter()
            .rev()
            .find(|(seq, _)| *seq <= s)?
            .1
            .as_ref()
    }

    /// The newest version of `k`: `(seq, row or tombstone)`.
    pub fn newest(&self, k: i64) -> Option<&(u64, Option<Row>)> {
        self.versions.get(&k)?.last()
    }

    fn newer_than(&self, k: i64, s: u64) -> bool {
        self.newest(k).is_some_and(|(seq, _)| *seq > s)
    }

    /// All rows visible at `s`.
    pub fn state_at(&self, s: u64) -> BTreeMap<i64, Row> {
        self.versions
            .keys()
            .filter_map(|k| self.at(*k, s).map(|r| (*k, r.clone())))
            .collect()
    }

    /// The newest committed rows.
    pub fn latest(&self) -> BTreeMap<i64, Row> {
        self.state_at(u64::MAX)
    }
}

/// A key written by a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The key had a live committed row at the snapshot.
    pub base_live: bool,
    /// The transaction's current row for the key (`None`: deleted).
    pub now: Option<Row>,
}

/// A transaction as the model sees it.
#[derive(Debug, Clone, Default)]
pub struct MTxn {
    pub read_only: bool,
    pub snapshot: Option<u64>,
    pub writes: BTreeMap<i64, Write>,
    pub touched: bool,
    pub catalog: bool,
    /// Mimic the engine's insert-time UNIQUE bookkeeping (see
    /// [`MTxn::undo_to`]) instead of checking the view.
    pub lenient_unique: bool,
    /// As the engine's `unique_keys`: u → (key, version) of an own row.
    uniq: BTreeMap<i64, (i64, u64)>,
    /// The version of each key's live own row.
    vers: BTreeMap<i64, u64>,
    next_ver: u64,
}

/// The net effect of a transaction at commit.
#[derive(Debug, Clone, Default)]
pub struct Net {
    pub rows: BTreeMap<i64, Row>,
    pub deleted: BTreeSet<i64>,
}

impl MTxn {
    pub fn new(read_only: bool, lenient_unique: bool) -> Self {
        Self {
            read_only,
            lenient_unique,
            ..Self::default()
        }
    }

    /// Statement rollback to the state `before` (a clone taken at the
    /// savepoint). With `lenient_unique` (no mode uses it now) the model
    /// mimics an engine bug fixed since: the per-transaction map UNIQUE
    /// value → own row dropped the entries of the undone statement's rows
    /// without restoring the entries they overwrote, so an own row revived
    /// by the rollback no longer blocked a later insert of its UNIQUE value.
    /// Kept to re-check old engines: pass `true` to `MTxn::new`.
    pub fn undo_to(&mut self, before: &MTxn) {
        let snapshot = self.snapshot;
        let mut uniq = std::mem::take(&mut self.uniq);
        let next_ver = self.next_ver;
        *self = before.clone();
        self.snapshot = snapshot;
        self.next_ver = next_ver;
        uniq.retain(|_, (_, v)| *v < before.next_ver);
        self.uniq = uniq;
    }

    fn unique_taken(&self, c: &Committed, s: u64, view: &BTreeMap<i64, Row>, u: i64) -> bool {
        if !self.lenient_unique {
            return view.values().any(|(_, vu)| vu == &Some(u));
        }
        let own = self
            .uniq
            .get(&u)
            .is_some_and(|(k, v)| self.vers.get(k) == Some(v));
        own || c
            .state_at(s)
            .iter()
            .any(|(k, (_, vu))| vu == &Some(u) && !self.writes.contains_key(k))
    }

    /// The snapshot, taken now if it was not yet.
    pub fn snap(&mut self, c: &Committed) -> u64 {
        *self.snapshot.get_or_insert(c.last_seq)
    }

    /// The transaction's view.
    pub fn view(&mut self, c: &Committed) -> BTreeMap<i64, Row> {
        let s = self.snap(c);
        let mut v = c.state_at(s);
        for (k, w) in &self.writes {
            match &w.now {
                Some(r) => v.insert(*k, r.clone()),
                None => v.remove(k),
            };
        }
        v
    }

    /// Inserts `rows` as one statement. Returns the number inserted.
    pub fn insert(&mut self, c: &Committed, rows: &[(i64, Row)]) -> Expect<u64> {
        if self.read_only {
            return err(Kind::ReadOnly);
        }
        let s = self.snap(c);
        let view = self.view(c);
        let mut seen = BTreeSet::new();
        let mut staged = self.writes.clone();
        for (k, _) in rows {
            if !seen.insert(*k) {
                return err(Kind::Violation);
            }
            match self.writes.get(k) {
                Some(Write { now: Some(_), .. }) => return err(Kind::Violation),
                Some(_) => {}
                None => {
                    if c.newer_than(*k, s) {
                        return err(Kind::Conflict);
                    }
                    if c.at(*k, s).is_some() {
                        return err(Kind::Violation);
                    }
                }
            }
        }
        let mut seen_u = BTreeSet::new();
        for (_, (_, u)) in rows {
            if let Some(u) = u
                && (!seen_u.insert(*u) || self.unique_taken(c, s, &view, *u))
            {
                return err(Kind::Violation);
            }
        }
        for (k, (_, u)) in rows {
            let v = self.next_ver;
            self.next_ver += 1;
            self.vers.insert(*k, v);
            if let Some(u) = u {
                self.uniq.insert(*u, (*k, v));
            }
        }
        for (k, r) in rows {
            let base_live = self.writes.get(k).is_some_and(|w| w.base_live);
            staged.insert(
                *k,
                Write {
                    base_live,
                    now: Some(r.clone()),
                },
            );
        }
        self.writes = staged;
        Ok(rows.len() as u64)
    }

    /// Deletes the rows with keys `keys` (invisible keys are ignored).
    pub fn delete(&mut self, c: &Committed, keys: &[i64]) -> Expect<u64> {
        if self.read_only {
            return err(Kind::ReadOnly);
        }
        let s = self.snap(c);
        let mut staged = self.writes.clone();
        let mut vers = self.vers.clone();
        let mut n = 0;
        for k in keys {
            match staged.get_mut(k) {
                Some(Write { now: None, .. }) => {}
                Some(w) => {
                    w.now = None;
                    vers.remove(k);
                    n += 1;
                }
                None => {
                    if c.newer_than(*k, s) {
                        return err(Kind::Conflict);
                    }
                    if c.at(*k, s).is_some() {
                        staged.insert(
                            *k,
                            Write {
                                base_live: true,
                                now: None,
                            },
                        );
                        n += 1;
                    }
                }
            }
        }
        self.writes = staged;
        self.vers = vers;
        Ok(n)
    }

    /// `touch_schema` + `set_catalog` (what CREATE/DROP INDEX commits).
    pub fn touch(&mut self, c: &Committed) -> Expect<()> {
        if self.read_only {
            return err(Kind::ReadOnly);
        }
        self.snap(c);
        self.touched = true;
        self.catalog = true;
        Ok(())
    }

    pub fn net(&self) -> Net {
        let mut net = Net::default();
        for (k, w) in &self.writes {
            match &w.now {
                Some(r) => {
                    net.rows.insert(*k, r.clone());
                }
                None if w.base_live => {
                    net.deleted.insert(*k);
                }
                None => {}
            }
        }
        net
    }

    /// Commits against `c`: the expected result, and on success `c` updated.
    pub fn commit(&mut self, c: &mut Committed) -> Expect<u64> {
        let s = self.snap(c);
        let net = self.net();
        let has_table = !net.rows.is_empty() || !net.deleted.is_empty();
        if !has_table && !self.catalog {
            return Ok(s);
        }
        if self.catalog && c.ddl_seq > s {
            return err(Kind::Conflict);
        }
        if has_table {
            if c.schema_seq > s && !self.touched {
                return err(Kind::Conflict);
            }
            let mut fresh = BTreeSet::new();
            for (_, u) in net.rows.values() {
                if let Some(u) = u
                    && !fresh.insert(*u)
                {
                    return err(Kind::Violation);
                }
            }
            let own: BTreeSet<i64> = net.rows.keys().chain(&net.deleted).copied().collect();
            let mut kinds = BTreeSet::new();
            for u in &fresh {
                let mut found = BTreeSet::new();
                for (k, vs) in &c.versions {
                    if let Some((seq, Some((_, Some(vu))))) = vs.last()
                        && vu == u
                        && !own.contains(k)
                    {
                        found.insert(if *seq > s {
                            Kind::Conflict
                        } else {
                            Kind::Violation
                        });
                    }
                }
                kinds.extend(found);
            }
            if !kinds.is_empty() {
                return Err(kinds);
            }
            if own.iter().any(|k| c.newer_than(*k, s)) {
                return err(Kind::Conflict);
            }
        }
        let seq = c.last_seq + 1;
        c.last_seq = seq;
        for k in &net.deleted {
            c.versions.entry(*k).or_default().push((seq, None));
        }
        for (k, r) in net.rows {
            c.versions.entry(k).or_default().push((seq, Some(r)));
        }
        if self.catalog {
            c.ddl_seq = seq;
        }
        if self.touched {
            c.schema_seq = seq;
        }
        Ok(seq)
    }
}
