//! FOREIGN KEY constraints: declared in CREATE TABLE, kept in the catalog
//! ([`entidb_catalog::ForeignKeyMeta`], columns by name), resolved when the
//! session registers a table, enforced on both sides of every write.
//!
//! DECLARING. `REFERENCES parent [(cols)]` on a column (in CREATE TABLE or
//! ALTER TABLE … ADD COLUMN), `[CONSTRAINT name] FOREIGN KEY (cols)
//! REFERENCES parent [(cols)]` on the table (CREATE TABLE, ALTER TABLE …
//! ADD), with
//! `ON DELETE` / `ON UPDATE` `NO ACTION | RESTRICT | CASCADE | SET NULL |
//! SET DEFAULT`. The referenced columns must be the parent's primary key
//! (in any order; left out, they are the primary key), so every check is a
//! key lookup in the parent. A UNIQUE constraint that is not the primary
//! key, MATCH FULL/PARTIAL and DEFERRABLE are 0A000. As in PostgreSQL the
//! constraint is named `<table>_<columns>_fkey`, the column types must be
//! comparable (42804), and a table may refer to itself.
//!
//! CHILD SIDE. Every path that stores rows of a child table (INSERT, COPY,
//! UPDATE, upsert, the prepared fast path, the Arrow append API, and the
//! rows this module's own actions write) calls [`ForeignKeys::verify`]
//! after the engine took the rows: a row whose referencing columns are all
//! non-NULL (MATCH SIMPLE) needs a parent row with that key, visible to the
//! transaction (its own writes included, so a statement may insert a
//! parent and its child, or a self-referencing tree). The lookup is the
//! engine's [`entidb_engine::Transaction::guard_keys`] on the parent's row
//! keys: the engine key of a parent row is the encoding of its primary key,
//! so a child's referencing values, cast to the key's types, encode to the
//! same bytes. A missing parent is 23503.
//!
//! PARENT SIDE. DELETE, UPDATE, upsert and MERGE hand the keys of the row
//! versions they replaced (and, for an update, the new rows; for MERGE
//! also the rows it inserted) to [`parent_changed`]. The key of a row that
//! was deleted or got another key is *gone*; for every foreign key
//! referring to the table, the child rows that refer to a gone key are
//! found — through an index of the child whose leading column is one of the
//! referencing columns when there is one (the gone keys' values of that
//! column are looked up), else by one scan of the child — and the action
//! runs: RESTRICT refuses (23503),
//! NO ACTION too unless another new row of the statement has the key
//! (NO ACTION is checked at the end of the statement: `UPDATE p SET id =
//! id - 1` leaves key 1 to the old row 2), CASCADE deletes the child rows
//! or gives them their parent row's new key, SET NULL and SET DEFAULT
//! rewrite their referencing columns. Rows a
//! CASCADE or SET action writes are child writes (checked as above) and
//! parent changes in turn (their own children follow, in rounds, up to
//! [`MAX_CASCADE_ROUNDS`]).
//!
//! CONCURRENCY (snapshot isolation; see the engine's `mvcc.rs`, KEY
//! GUARDS). The child side guards each parent key it found, so its commit
//! fails with 40001 if a concurrent transaction deleted the parent first;
//! the parent side guards each child table it checked (any child write
//! committed after its snapshot fails it). Whichever commits second
//! conflicts, so an orphan never commits.
//!
//! DDL. DROP TABLE of a parent another table refers to is 2BP01 unless
//! CASCADE, which drops the referring constraints; TRUNCATE of such a
//! parent is 0A000. ALTER TABLE renames follow into the constraints, and
//! DROP COLUMN of a referencing column drops the constraint (as in
//! PostgreSQL).

use crate::error::{ErrorKind, Result};
use crate::provider::{EntiTable, insert_rows};
use crate::session::Session;
use crate::triggers::{self, Changed, Event, Timing};
use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, new_null_array};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use arrow::util::display::array_value_to_string;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, ConstraintReferenceMatchKind, CreateTable, ForeignKeyConstraint, Ident,
    ReferentialAction, TableConstraint,
};
use entidb_catalog::{Catalog, FkAction, ForeignKeyMeta, TableMeta};
use entidb_engine::keys::encode_keys;
use entidb_engine::{IndexScanRequest, KeyRange};
use entidb_engine::{ScanRequest, TableDef, Transaction};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// How many rounds of CASCADE and SET actions (a child's children, …) a
/// statement may take before it is refused as too complex (54001): a
/// guard against actions that never settle, far beyond any real schema.
pub const MAX_CASCADE_ROUNDS: usize = 100_000;

/// One foreign key of a child table, resolved against the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKey {
    /// The constraint as the catalog keeps it.
    pub meta: ForeignKeyMeta,
    /// The child table's name.
    pub child: String,
    /// Child column indexes, in the order of the parent's key columns.
    pub child_columns: Vec<usize>,
    /// The parent's engine table id.
    pub parent_id: u64,
    /// The parent's key column names, in key order.
    pub parent_key: Vec<String>,
    /// The parent's key column types, in key order.
    pub key_types: Vec<DataType>,
}

/// The foreign keys a table declares, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForeignKeys(Vec<ForeignKey>);

impl ForeignKeys {
    /// Resolves `meta`'s foreign keys (of table `def`) against `catalog`,
    /// reading parent definitions from `t`.
    ///
    /// # Errors
    /// 42P01 for a missing parent, 42703 for a missing column (a damaged
    /// catalog: CREATE TABLE and ALTER TABLE keep them consistent).
    pub fn resolve(
        catalog: &Catalog,
        meta: &TableMeta,
        def: &TableDef,
        t: &mut Transaction,
    ) -> Result<Self> {
        let mut out = Vec::with_capacity(meta.foreign_keys.len());
        for fk in &meta.foreign_keys {
            let parent = catalog
                .table(&fk.parent)
                .ok_or_else(|| ErrorKind::UndefinedTable {
                    name: fk.parent.clone(),
                })?;
            let parent_def = t.table_by_id(parent.table_id)?;
            out.push(resolve_one(fk, &meta.name, def, &parent_def)?);
        }
        Ok(Self(out))
    }

    /// True when the table declares no foreign key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks that every row of `batch` (rows of the child table, already
    /// stored in `t`) has its parent, and guards the parent keys found.
    ///
    /// # Errors
    /// 23503 for a row without its parent; 40001 from the guard.
    pub fn verify(&self, t: &mut Transaction, batch: &RecordBatch) -> Result<()> {
        for fk in &self.0 {
            let (keys, has_null) = referencing_keys(fk, batch)?;
            let found = t.guard_keys(fk.parent_id, &keys)?;
            let missing = found
                .iter()
                .zip(&has_null)
                .position(|(found, null)| !found && !null);
            if let Some(row) = missing {
                return Err(ErrorKind::ForeignKeyViolation(format!(
                    "insert or update on table \"{}\" violates foreign key constraint \"{}\": \
                     Key ({})=({}) is not present in table \"{}\"",
                    fk.child,
                    fk.meta.name,
                    child_names(fk, batch).join(", "),
                    row_values(fk, batch, row).join(", "),
                    fk.meta.parent
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// A statement's FOREIGN KEY check over rows it stores batch by batch
/// (a streamed INSERT or COPY, ALTER TABLE's copy): a batch whose rows
/// lack a parent is kept and checked again at the end, since a later
/// batch of the same statement may bring the parent (PostgreSQL checks at
/// the end of the statement). Batches that pass are not kept.
#[derive(Debug, Default)]
pub struct DeferredCheck {
    pending: Vec<RecordBatch>,
}

impl DeferredCheck {
    /// Checks `batch` (already stored in `t`), keeping it for [`Self::finish`]
    /// if a parent is missing.
    ///
    /// # Errors
    /// 40001 and other failures of the check itself (not 23503).
    pub fn check(
        &mut self,
        keys: &ForeignKeys,
        t: &mut Transaction,
        batch: &RecordBatch,
    ) -> Result<()> {
        match keys.verify(t, batch) {
            Err(e) if matches!(e.kind(), ErrorKind::ForeignKeyViolation(_)) => {
                self.pending.push(batch.clone());
                Ok(())
            }
            other => other,
        }
    }

    /// Checks the kept batches again, now that every row is stored.
    ///
    /// # Errors
    /// 23503 for a row still without its parent.
    pub fn finish(self, keys: &ForeignKeys, t: &mut Transaction) -> Result<()> {
        for batch in &self.pending {
            keys.verify(t, batch)?;
        }
        Ok(())
    }
}

fn resolve_one(
    fk: &ForeignKeyMeta,
    child: &str,
    def: &TableDef,
    parent: &TableDef,
) -> Result<ForeignKey> {
    let mut child_columns = Vec::new();
    let mut parent_key = Vec::new();
    let mut key_types = Vec::new();
    for k in &parent.key_columns {
        let field = parent
            .schema
            .fields()
            .get(*k)
            .ok_or_else(|| ErrorKind::Execution(format!("bad key column of {}", fk.parent)))?;
        let pos = fk
            .parent_columns
            .iter()
            .position(|c| c == field.name())
            .ok_or_else(|| bad_reference(&fk.parent))?;
        let column = fk
            .columns
            .get(pos)
            .ok_or_else(|| bad_reference(&fk.parent))?;
        let index = def
            .schema
            .index_of(column)
            .map_err(|_| ErrorKind::UndefinedColumn {
                column: column.clone(),
                relation: Some(child.to_string()),
            })?;
        child_columns.push(index);
        parent_key.push(field.name().clone());
        key_types.push(field.data_type().clone());
    }
    if parent.key_columns.is_empty() || child_columns.len() != fk.columns.len() {
        return Err(bad_reference(&fk.parent).into());
    }
    Ok(ForeignKey {
        meta: fk.clone(),
        child: child.to_string(),
        child_columns,
        parent_id: parent.id,
        parent_key,
        key_types,
    })
}

fn bad_reference(parent: &str) -> ErrorKind {
    ErrorKind::InvalidForeignKey(format!(
        "there is no unique constraint matching given keys for referenced table \"{parent}\""
    ))
}

/// The referencing columns of `batch`'s rows cast to the parent key's
/// types (in key order), and which rows have a NULL among them. A value
/// that does not fit the key's type (it cannot be a parent's) becomes NULL
/// in the cast and is reported as not NULL, so it is never found.
fn referencing_keys(fk: &ForeignKey, batch: &RecordBatch) -> Result<(Vec<ArrayRef>, Vec<bool>)> {
    let mut keys = Vec::with_capacity(fk.child_columns.len());
    let mut has_null = vec![false; batch.num_rows()];
    for (c, ty) in fk.child_columns.iter().zip(&fk.key_types) {
        let column = batch
            .columns()
            .get(*c)
            .ok_or_else(|| ErrorKind::Execution(format!("no column {c} in {}", fk.child)))?;
        for (row, null) in has_null.iter_mut().enumerate() {
            *null |= column.is_null(row);
        }
        let cast = arrow::compute::cast(column, ty)
            .map_err(|e| ErrorKind::DatatypeMismatch(e.to_string()))?;
        keys.push(cast);
    }
    Ok((keys, has_null))
}

fn child_names(fk: &ForeignKey, batch: &RecordBatch) -> Vec<String> {
    let schema = batch.schema();
    fk.child_columns
        .iter()
        .map(|c| {
            schema
                .fields()
                .get(*c)
                .map_or_else(String::new, |f| f.name().clone())
        })
        .collect()
}

fn row_values(fk: &ForeignKey, batch: &RecordBatch, row: usize) -> Vec<String> {
    fk.child_columns
        .iter()
        .map(|c| {
            batch
                .columns()
                .get(*c)
                .and_then(|a| array_value_to_string(a, row).ok())
                .unwrap_or_default()
        })
        .collect()
}

/// The foreign keys `create` declares for table `table` (with `columns`
/// and primary key `primary_key`), checked against `catalog` (a table may
/// refer to itself).
///
/// # Errors
/// 42P01 (no such parent), 42703 (no such column), 42830 (the referenced
/// columns are not the parent's primary key, or the lists differ in
/// length), 42804 (incomparable types), 42710 (a taken name), 0A000 (MATCH
/// FULL/PARTIAL, DEFERRABLE, a UNIQUE constraint that is not the key).
pub fn declared(
    create: &CreateTable,
    table: &str,
    schema: &arrow::datatypes::Schema,
    primary_key: &[usize],
    session: &Session,
    taken: &[String],
) -> Result<Vec<ForeignKeyMeta>> {
    let mut out: Vec<ForeignKeyMeta> = Vec::new();
    let own = Parent {
        name: table,
        schema,
        primary_key,
        unique: &[],
    };
    for column in &create.columns {
        for option in &column.options {
            if let ColumnOption::ForeignKey(fk) = &option.option {
                let name = option.name.as_ref().or(fk.name.as_ref());
                let columns = vec![crate::ddl::normalize(&column.name)];
                let meta = declare(fk, name, columns, &own, session, &out, taken)?;
                out.push(meta);
            }
        }
    }
    for constraint in &create.constraints {
        if let TableConstraint::ForeignKey(fk) = constraint {
            let columns = fk.columns.iter().map(crate::ddl::normalize).collect();
            let meta = declare(fk, fk.name.as_ref(), columns, &own, session, &out, taken)?;
            out.push(meta);
        }
    }
    Ok(out)
}

/// ALTER TABLE `table` ADD FOREIGN KEY: the constraint, after every row
/// the transaction sees passed the check (23503 otherwise). The table is
/// guarded (a concurrent child write committed first fails this
/// transaction) and the parent's schema is touched, so a transaction that
/// deletes parent rows without knowing the constraint (its snapshot is
/// older) fails at commit instead.
///
/// # Errors
/// As [`declared`], and 23503 for an existing orphan.
pub fn add_to_table(
    session: &Session,
    table: &EntiTable,
    fk: &ForeignKeyConstraint,
    taken: &[String],
    existing: &[ForeignKeyMeta],
) -> Result<ForeignKeyMeta> {
    let meta = table.meta();
    let own = Parent {
        name: &meta.name,
        schema: &table.def().schema,
        primary_key: &meta.primary_key,
        unique: &meta.unique,
    };
    let columns: Vec<String> = fk.columns.iter().map(crate::ddl::normalize).collect();
    let declared = declare(
        fk,
        fk.name.as_ref(),
        columns,
        &own,
        session,
        existing,
        taken,
    )?;
    let parent_id = session
        .catalog
        .table(&declared.parent)
        .map(|p| p.table_id)
        .ok_or_else(|| ErrorKind::UndefinedTable {
            name: declared.parent.clone(),
        })?;
    let id = table.def().id;
    session.slot.with_sql(|t| {
        let parent = t.table_by_id(parent_id)?;
        let check = ForeignKeys(vec![resolve_one(
            &declared,
            &meta.name,
            table.def(),
            &parent,
        )?]);
        let rows = t
            .scan(id, ScanRequest::default())?
            .collect::<entidb_engine::Result<Vec<_>>>()?;
        for batch in &rows {
            check.verify(t, batch)?;
        }
        t.guard_rows(id)?;
        t.touch_schema(parent_id)?;
        Ok(())
    })?;
    Ok(declared)
}

/// The FOREIGN KEY of a column that ALTER TABLE … ADD COLUMN declares
/// with `REFERENCES`, for table `table` as the ALTER leaves it (`schema`,
/// `primary_key`, `unique`).
///
/// # Errors
/// As [`declared`].
#[allow(clippy::too_many_arguments)]
pub fn declared_on_column(
    fk: &ForeignKeyConstraint,
    name: Option<&Ident>,
    column: &str,
    table: &str,
    schema: &arrow::datatypes::Schema,
    primary_key: &[usize],
    session: &Session,
    existing: &[ForeignKeyMeta],
    taken: &[String],
) -> Result<ForeignKeyMeta> {
    let own = Parent {
        name: table,
        schema,
        primary_key,
        unique: &[],
    };
    let name = name.or(fk.name.as_ref());
    declare(
        fk,
        name,
        vec![column.to_string()],
        &own,
        session,
        existing,
        taken,
    )
}

/// What a declaration needs to know of its parent table.
struct Parent<'a> {
    name: &'a str,
    schema: &'a arrow::datatypes::Schema,
    primary_key: &'a [usize],
    unique: &'a [Vec<usize>],
}

fn declare(
    fk: &ForeignKeyConstraint,
    name: Option<&Ident>,
    columns: Vec<String>,
    own: &Parent<'_>,
    session: &Session,
    earlier: &[ForeignKeyMeta],
    taken: &[String],
) -> Result<ForeignKeyMeta> {
    if matches!(
        fk.match_kind,
        Some(ConstraintReferenceMatchKind::Full | ConstraintReferenceMatchKind::Partial)
    ) {
        return Err(
            ErrorKind::NotSupported("MATCH FULL / MATCH PARTIAL foreign keys".into()).into(),
        );
    }
    if let Some(c) = &fk.characteristics
        && (c.deferrable == Some(true) || c.initially.is_some() || c.enforced == Some(false))
    {
        return Err(ErrorKind::NotSupported(
            "DEFERRABLE, INITIALLY … or NOT ENFORCED foreign keys".into(),
        )
        .into());
    }
    let parent_name = crate::schemas::resolve_for_ddl(&session.catalog, &fk.foreign_table)?;
    let stored;
    let parent = if parent_name == own.name {
        own
    } else {
        let table = session
            .tables
            .get(&parent_name)
            .ok_or_else(|| ErrorKind::UndefinedTable {
                name: parent_name.clone(),
            })?;
        stored = Parent {
            name: &parent_name,
            schema: &table.def().schema,
            primary_key: &table.meta().primary_key,
            unique: &table.meta().unique,
        };
        &stored
    };
    let key_names: Vec<String> = parent
        .primary_key
        .iter()
        .filter_map(|i| parent.schema.fields().get(*i).map(|f| f.name().clone()))
        .collect();
    let parent_columns: Vec<String> = if fk.referred_columns.is_empty() {
        if key_names.is_empty() {
            return Err(ErrorKind::InvalidForeignKey(format!(
                "there is no primary key for referenced table \"{parent_name}\""
            ))
            .into());
        }
        key_names.clone()
    } else {
        fk.referred_columns
            .iter()
            .map(crate::ddl::normalize)
            .collect()
    };
    if parent_columns.len() != columns.len() {
        return Err(ErrorKind::InvalidForeignKey(
            "number of referencing and referenced columns for foreign key disagree".into(),
        )
        .into());
    }
    let as_set = |v: &[String]| v.iter().cloned().collect::<HashSet<_>>();
    if as_set(&parent_columns) != as_set(&key_names) || parent_columns.len() != key_names.len() {
        let is_unique = parent.unique.iter().any(|u| {
            let names: Vec<String> = u
                .iter()
                .filter_map(|i| parent.schema.fields().get(*i).map(|f| f.name().clone()))
                .collect();
            as_set(&names) == as_set(&parent_columns)
        });
        if is_unique {
            return Err(ErrorKind::NotSupported(
                "a foreign key referring to a UNIQUE constraint other than the primary key".into(),
            )
            .into());
        }
        return Err(bad_reference(&parent_name).into());
    }
    for (child, referred) in columns.iter().zip(&parent_columns) {
        let child_type = own
            .schema
            .field_with_name(child)
            .map_err(|_| ErrorKind::UndefinedColumn {
                column: child.clone(),
                relation: Some(own.name.to_string()),
            })?
            .data_type();
        let parent_type = parent
            .schema
            .field_with_name(referred)
            .map_err(|_| ErrorKind::UndefinedColumn {
                column: referred.clone(),
                relation: Some(parent_name.clone()),
            })?
            .data_type();
        if !comparable(child_type, parent_type) {
            return Err(ErrorKind::DatatypeMismatch(format!(
                "foreign key constraint cannot be implemented: key columns \"{child}\" and \
                 \"{referred}\" are of incompatible types: {child_type} and {parent_type}"
            ))
            .into());
        }
    }
    let name = match name {
        Some(n) => {
            let n = crate::ddl::normalize(n);
            if taken.contains(&n) || earlier.iter().any(|f| f.name == n) {
                return Err(ErrorKind::DuplicateObject(format!(
                    "constraint {n} for relation {} already exists",
                    own.name
                ))
                .into());
            }
            n
        }
        None => {
            let table = session.catalog.split(own.name).1;
            crate::checks::free_name(&format!("{table}_{}_fkey", columns.join("_")), |n| {
                taken.iter().any(|t| t == n) || earlier.iter().any(|f| f.name == n)
            })
        }
    };
    Ok(ForeignKeyMeta {
        name,
        columns,
        parent: parent_name,
        parent_columns,
        on_delete: action(fk.on_delete),
        on_update: action(fk.on_update),
    })
}

fn action(a: Option<ReferentialAction>) -> FkAction {
    match a {
        None | Some(ReferentialAction::NoAction) => FkAction::NoAction,
        Some(ReferentialAction::Restrict) => FkAction::Restrict,
        Some(ReferentialAction::Cascade) => FkAction::Cascade,
        Some(ReferentialAction::SetNull) => FkAction::SetNull,
        Some(ReferentialAction::SetDefault) => FkAction::SetDefault,
    }
}

/// Whether values of the two types can be compared as keys without loss:
/// the same type, two integer types (a child value outside the key's
/// range matches no parent), or two string types. Floats and decimals
/// against integers are refused (42804), as in PostgreSQL: a cast would
/// truncate `1.5` to a parent's `1`.
fn comparable(a: &DataType, b: &DataType) -> bool {
    let string =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    a == b || (a.is_integer() && b.is_integer()) || (string(a) && string(b))
}

/// The foreign keys of other tables (and of `parent` itself) that refer
/// to `parent`, resolved.
fn referring(session: &Session, parent: &str) -> Result<Vec<(Arc<EntiTable>, ForeignKey)>> {
    let mut out = Vec::new();
    for meta in &session.catalog.tables {
        if !meta.foreign_keys.iter().any(|f| f.parent == parent) {
            continue;
        }
        let Some(child) = session.tables.get(&meta.name) else {
            continue;
        };
        for fk in child.foreign_keys().0.iter() {
            if fk.meta.parent == parent {
                out.push((child.clone(), fk.clone()));
            }
        }
    }
    Ok(out)
}

/// Whether another table refers to `table` (its own references do not
/// count): what DROP TABLE and TRUNCATE refuse.
pub fn referred_by_others(catalog: &Catalog, table: &str) -> Option<(String, String)> {
    catalog.tables.iter().find_map(|t| {
        t.foreign_keys
            .iter()
            .find(|f| f.parent == table && t.name != table)
            .map(|f| (t.name.clone(), f.name.clone()))
    })
}

/// What a statement did to a table's rows, as the parent side needs it:
/// the engine keys of the versions it replaced and, for an update, the
/// new rows in the same order (`None` for a delete).
pub struct ParentChange {
    /// Keys of the replaced versions.
    pub old_keys: BinaryArray,
    /// The rows that replaced them, row-aligned with `old_keys`.
    pub new_rows: Option<RecordBatch>,
}

/// Runs the foreign key actions for the rows a statement replaced in
/// `parent` (see the module docs, PARENT SIDE). The tables an action
/// writes are parents in turn: they are worked off in rounds (a queue, not
/// recursion, so a long self-referencing chain is no deeper than a short
/// one).
///
/// # Errors
/// 23503 when NO ACTION or RESTRICT finds a child row, 23502/23514/23503
/// from the rows an action writes, 54001 past [`MAX_CASCADE_ROUNDS`].
pub async fn parent_changed(
    session: &mut Session,
    parent: &EntiTable,
    changes: Vec<ParentChange>,
) -> Result<()> {
    let Some(parent) = session.tables.get(&parent.meta().name).cloned() else {
        return Ok(());
    };
    let mut queue = VecDeque::from([(parent, changes)]);
    let mut rounds = 0;
    while let Some((parent, changes)) = queue.pop_front() {
        rounds += 1;
        if rounds > MAX_CASCADE_ROUNDS {
            return Err(ErrorKind::StatementTooComplex(format!(
                "foreign key actions did not finish within {MAX_CASCADE_ROUNDS} rounds"
            ))
            .into());
        }
        let referring = referring(session, &parent.meta().name)?;
        if referring.is_empty() || changes.is_empty() {
            continue;
        }
        let gone = gone_keys(parent.def(), &changes)?;
        if gone.is_empty() {
            continue;
        }
        for (child, fk) in referring {
            let rows = referring_rows(session, &child, &fk, &gone)?;
            session.slot.with(|t| t.guard_rows(child.def().id))?;
            // Children of deleted keys get ON DELETE, of updated keys ON
            // UPDATE (a MERGE may do both).
            let (updated, deleted): (Found, Found) =
                rows.into_iter().partition(|(_, g)| g.new_at.is_some());
            for (act, rows) in [(fk.meta.on_delete, deleted), (fk.meta.on_update, updated)] {
                let rows: Referring = rows
                    .into_iter()
                    .filter(|(_, g)| act != FkAction::NoAction || !g.taken_over)
                    .map(|(row, g)| (row, g.new_at))
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                let step = Step {
                    parent: &parent,
                    child: &child,
                    fk: &fk,
                    changes: &changes,
                };
                if let Some(change) = run_action(session, &step, act, rows).await? {
                    queue.push_back((child.clone(), vec![change]));
                }
            }
        }
    }
    Ok(())
}

/// An old key whose row a statement deleted or gave another key.
#[derive(Debug, Clone, Copy)]
struct GoneKey {
    /// Where the row's new version is (`(change, row)`); `None`: deleted.
    new_at: Option<(usize, usize)>,
    /// Another new row of the statement has the key: its children still
    /// have a parent, so NO ACTION (checked at the end of the statement)
    /// has nothing to refuse. CASCADE, SET NULL/DEFAULT and RESTRICT act
    /// on the old row's children all the same, as in PostgreSQL.
    taken_over: bool,
}

type Gone = HashMap<Box<[u8]>, GoneKey>;

/// The engine keys of `rows` (rows of the table `def`).
fn row_keys(def: &TableDef, rows: &RecordBatch) -> Result<BinaryArray> {
    let cols: Vec<ArrayRef> = def
        .key_columns
        .iter()
        .filter_map(|k| rows.columns().get(*k).cloned())
        .collect();
    if cols.len() != def.key_columns.len() {
        return Err(ErrorKind::Execution("new rows lack key columns".into()).into());
    }
    Ok(encode_keys(&cols)?)
}

fn gone_keys(def: &TableDef, changes: &[ParentChange]) -> Result<Gone> {
    let new_keys: Vec<Option<BinaryArray>> = changes
        .iter()
        .map(|c| {
            c.new_rows
                .as_ref()
                .map(|rows| row_keys(def, rows))
                .transpose()
        })
        .collect::<Result<_>>()?;
    let taken: HashSet<&[u8]> = new_keys
        .iter()
        .flatten()
        .flat_map(|k| k.iter().flatten())
        .collect();
    let mut gone = Gone::new();
    for (c, change) in changes.iter().enumerate() {
        let own_new = new_keys.get(c).and_then(Option::as_ref);
        for (row, key) in change.old_keys.iter().enumerate() {
            let Some(key) = key else { continue };
            let new_key = own_new.map(|k| (row < k.len()).then(|| k.value(row)));
            if new_key == Some(Some(key)) {
                continue; // the row kept its key
            }
            let new_at = match new_key {
                None => None,
                Some(Some(_)) => Some((c, row)),
                Some(None) => {
                    return Err(ErrorKind::Execution("updated rows out of step".into()).into());
                }
            };
            let taken_over = taken.contains(key);
            gone.insert(key.into(), GoneKey { new_at, taken_over });
        }
    }
    Ok(gone)
}

/// Child rows (whole rows, with the row key last) referring to a gone key,
/// each with the gone key's new row (if updated).
type Referring = Vec<(RecordBatch, Option<(usize, usize)>)>;

/// Child rows referring to a gone key, with that key.
type Found = Vec<(RecordBatch, GoneKey)>;

fn referring_rows(
    session: &Session,
    child: &EntiTable,
    fk: &ForeignKey,
    gone: &Gone,
) -> Result<Found> {
    let batches = match candidates_by_index(session, child, fk, gone)? {
        Some(batches) => batches,
        None => {
            let request = ScanRequest {
                include_key: true,
                ..ScanRequest::default()
            };
            session.slot.with(|t| {
                t.scan(child.def().id, request)?
                    .collect::<entidb_engine::Result<Vec<_>>>()
            })?
        }
    };
    let mut out = Vec::new();
    for batch in batches {
        let (keys, has_null) = referencing_keys(fk, &batch)?;
        let encoded = encode_keys(&keys)?;
        for (row, (key, null)) in encoded.iter().zip(has_null).enumerate() {
            if null {
                continue;
            }
            if let Some(at) = key.and_then(|k| gone.get(k)) {
                out.push((batch.slice(row, 1), *at));
            }
        }
    }
    Ok(out)
}

/// The child rows (whole, row key last) that may refer to a gone key,
/// found through an index of the child whose leading column is one of the
/// referencing columns: the gone keys' values of that column are looked up
/// (the caller keeps only the rows that do refer to a gone key). `None`
/// when the child has no such index or the engine gives up (scan instead).
fn candidates_by_index(
    session: &Session,
    child: &EntiTable,
    fk: &ForeignKey,
    gone: &Gone,
) -> Result<Option<Vec<RecordBatch>>> {
    let indexes = crate::indexes::table_indexes(&session.catalog, child.meta());
    let Some((index, position)) = indexes.iter().filter(|i| !i.primary).find_map(|i| {
        let leading = i.columns.first()?;
        let position = fk.child_columns.iter().position(|c| c == leading)?;
        Some((i, position))
    }) else {
        return Ok(None);
    };
    let Some(child_type) = index
        .columns
        .first()
        .and_then(|c| child.def().schema.fields().get(*c))
        .map(|f| f.data_type().clone())
    else {
        return Ok(None);
    };
    // The gone keys are the parent's key encodings: decode them, take the
    // key column this index leads with, and encode it as the child stores it.
    let fields = fk
        .key_types
        .iter()
        .map(|t| SortField::new(t.clone()))
        .collect();
    let converter = RowConverter::new(fields).map_err(|e| ErrorKind::Execution(e.to_string()))?;
    let parser = converter.parser();
    let rows = converter
        .convert_rows(gone.keys().map(|k| parser.parse(k)))
        .map_err(|e| ErrorKind::Execution(e.to_string()))?;
    let Some(values) = rows.get(position) else {
        return Ok(None);
    };
    // A value the child's type cannot hold (cast to NULL) has no children.
    let values = arrow::compute::cast(values, &child_type)
        .map_err(|e| ErrorKind::DatatypeMismatch(e.to_string()))?;
    let (points, nulls) = entidb_engine::index::index_keys(&[values])?;
    let mut points: Vec<Vec<u8>> = points
        .iter()
        .zip(nulls)
        .filter(|(_, null)| !null)
        .map(|(p, _)| p.unwrap_or_default().to_vec())
        .collect();
    points.sort_unstable();
    points.dedup();
    let request = IndexScanRequest {
        index: index.columns.clone(),
        ranges: points.into_iter().map(KeyRange::point).collect(),
        projection: None,
        include_key: true,
        max_candidates: None,
        build: true,
    };
    Ok(session
        .slot
        .with(|t| t.index_scan(child.def().id, &request))?)
}

/// One foreign key whose parent changed, and how.
struct Step<'a> {
    parent: &'a EntiTable,
    child: &'a Arc<EntiTable>,
    fk: &'a ForeignKey,
    changes: &'a [ParentChange],
}

/// Runs `act` on the child rows `rows`; returns what it did to the child
/// table (a parent change of its own), if it wrote anything.
async fn run_action(
    session: &mut Session,
    step: &Step<'_>,
    act: FkAction,
    rows: Referring,
) -> Result<Option<ParentChange>> {
    let Step {
        parent,
        child,
        fk,
        changes,
    } = *step;
    let child_def = child.def().clone();
    let nuser = child_def.schema.fields().len();
    let mut old_keys = Vec::with_capacity(rows.len());
    for (row, _) in &rows {
        let key = row
            .columns()
            .get(nuser)
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
            .ok_or_else(|| ErrorKind::Execution("scan lacks the row key".into()))?;
        old_keys.push(key.value(0).to_vec());
    }
    let old_keys = BinaryArray::from_iter_values(old_keys.iter());
    let deleting = matches!(act, FkAction::Cascade) && rows.iter().all(|(_, g)| g.is_none());
    // The child's triggers fire for the rows an action deletes or updates.
    let event = if deleting {
        Event::Delete
    } else {
        Event::Update
    };
    let firing = !matches!(act, FkAction::NoAction | FkAction::Restrict)
        && triggers::any(&session.catalog, &child.meta().name, event);
    let old_rows = if firing {
        rows.iter()
            .map(|(row, _)| {
                crate::provider::conform_columns(
                    &child_def,
                    row.columns().get(..nuser).unwrap_or_default(),
                )
            })
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    match act {
        FkAction::NoAction | FkAction::Restrict => {
            let (row, _) = rows
                .first()
                .ok_or_else(|| ErrorKind::Execution("no referring row".into()))?;
            return Err(ErrorKind::ForeignKeyViolation(format!(
                "update or delete on table \"{}\" violates foreign key constraint \"{}\" on \
                 table \"{}\": Key ({})=({}) is still referenced from table \"{}\"",
                parent.meta().name,
                fk.meta.name,
                fk.child,
                fk.parent_key.join(", "),
                row_values(fk, row, 0).join(", "),
                fk.child
            ))
            .into());
        }
        _ if deleting => {
            let changed = Changed {
                old: &old_rows,
                new: &[],
                assigned: &[],
            };
            if firing {
                triggers::fire_before(session, child, event, &changed, &[&old_keys]).await?;
            }
            session.slot.with(|t| t.delete(child_def.id, &old_keys))?;
            if firing {
                triggers::fire(session, child, Timing::After, event, &changed).await?;
            }
            return Ok(Some(ParentChange {
                old_keys,
                new_rows: None,
            }));
        }
        _ => {}
    }
    let defaults = if matches!(act, FkAction::SetDefault) {
        Some(default_values(session, child, fk).await?)
    } else {
        None
    };
    let mut new_rows = Vec::with_capacity(rows.len());
    for (row, at) in &rows {
        let mut columns: Vec<ArrayRef> = row.columns().iter().take(nuser).cloned().collect();
        for (i, c) in fk.child_columns.iter().enumerate() {
            let value = match (act, at, &defaults) {
                (FkAction::Cascade, Some((change, r)), _) => {
                    new_key_value(parent.def(), changes, *change, *r, i)?
                }
                (FkAction::SetDefault, _, Some(d)) => d
                    .get(i)
                    .cloned()
                    .ok_or_else(|| ErrorKind::Execution("missing default".into()))?,
                _ => {
                    let ty = child_def
                        .schema
                        .fields()
                        .get(*c)
                        .map(|f| f.data_type().clone())
                        .unwrap_or(DataType::Null);
                    new_null_array(&ty, 1)
                }
            };
            if let Some(slot) = columns.get_mut(*c) {
                *slot = value;
            }
        }
        new_rows.push(child.conform_columns(&columns)?);
    }
    let schema = child_def.schema.clone();
    let new_rows = arrow::compute::concat_batches(&schema, &new_rows)
        .map_err(|e| ErrorKind::Execution(e.to_string()))?;
    let unique = crate::indexes::unique_sets(child.indexes());
    let new_list = [new_rows.clone()];
    let assigned: Vec<String> = fk
        .child_columns
        .iter()
        .filter_map(|c| child_def.schema.fields().get(*c).map(|f| f.name().clone()))
        .collect();
    let changed = Changed {
        old: &old_rows,
        new: &new_list,
        assigned: &assigned,
    };
    if firing {
        triggers::fire_before(session, child, event, &changed, &[&old_keys]).await?;
    }
    session.slot.with(|t| {
        t.delete(child_def.id, &old_keys)?;
        insert_rows(t, &child_def, &unique, &new_rows)
    })?;
    session
        .slot
        .with_sql(|t| child.foreign_keys().verify(t, &new_rows))?;
    if firing {
        triggers::fire(session, child, Timing::After, event, &changed).await?;
    }
    Ok(Some(ParentChange {
        old_keys,
        new_rows: Some(new_rows),
    }))
}

/// The `i`-th key column (in key order) of the new row at `(change, row)`,
/// as a one-row array.
fn new_key_value(
    def: &TableDef,
    changes: &[ParentChange],
    change: usize,
    row: usize,
    i: usize,
) -> Result<ArrayRef> {
    changes
        .get(change)
        .and_then(|c| c.new_rows.as_ref())
        .zip(def.key_columns.get(i))
        .and_then(|(rows, k)| rows.columns().get(*k))
        .filter(|a| row < a.len())
        .map(|a| a.slice(row, 1))
        .ok_or_else(|| ErrorKind::Execution("updated key row out of range".into()).into())
}

/// The defaults of the referencing columns (in key order), one row each;
/// NULL for a column without one.
async fn default_values(
    session: &mut Session,
    child: &EntiTable,
    fk: &ForeignKey,
) -> Result<Vec<ArrayRef>> {
    let mut out = Vec::with_capacity(fk.child_columns.len());
    for c in &fk.child_columns {
        let field = child
            .def()
            .schema
            .fields()
            .get(*c)
            .cloned()
            .ok_or_else(|| ErrorKind::Execution("bad referencing column".into()))?;
        let default = child.meta().columns.get(*c).and_then(|m| m.default.clone());
        let value = match default {
            None => new_null_array(field.data_type(), 1),
            Some(sql) => {
                let out = session
                    .ctx
                    .sql(&format!("SELECT {sql}"))
                    .await?
                    .collect()
                    .await?;
                out.first()
                    .and_then(|b| b.columns().first())
                    .cloned()
                    .unwrap_or_else(|| new_null_array(field.data_type(), 1))
            }
        };
        out.push(value);
    }
    Ok(out)
}
