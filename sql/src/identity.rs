//! Sequences and identity columns: durable counters handed out by
//! `nextval`.
//!
//! COUNTERS. Each sequence's next value is one row of the engine table
//! [`COUNTERS`] (`name` TEXT primary key, `next` BIGINT). That table is not
//! in the catalog, so SQL cannot see it; the catalog lists the sequences
//! ([`entidb_catalog::SequenceMeta`]) and which column each numbers.
//!
//! RESERVING. `nextval(name)` is evaluated once per batch: it reserves as
//! many values as the batch has rows by advancing the counter in a *separate*
//! transaction, committed — durably — before any value is used. Hence:
//!
//! - a value is never handed out twice, not after a rollback (reserved
//!   values are not given back: gaps, as in PostgreSQL) and not after a crash
//!   (the reservation is in the WAL before any row that uses it);
//! - concurrent reservations of one sequence conflict in the engine; the
//!   loser waits a growing, jittered time ([`entidb_engine::Backoff`]) and
//!   retries on a fresh snapshot, for up to 30 s;
//! - a sequence created by a transaction that has not committed is visible
//!   only to that transaction: its reservations are made inside it, and
//!   vanish with it.
//!
//! IDENTITY. `GENERATED {ALWAYS | BY DEFAULT} AS IDENTITY`, `SERIAL` /
//! `BIGSERIAL` / `SMALLSERIAL` and SQLite's `INTEGER PRIMARY KEY
//! AUTOINCREMENT` make the column NOT NULL with the default
//! `nextval('<table>_<column>_seq')`, a sequence owned by the table (dropped
//! with it). An ALWAYS column refuses explicit values in INSERT (428C9)
//! unless the INSERT says `OVERRIDING SYSTEM VALUE`; `OVERRIDING USER
//! VALUE` numbers the rows whatever values they give (both as PostgreSQL).

use crate::error::{ErrorKind, Result, sql_to_df};
use crate::session::Session;
use crate::slot::TxnSlot;
use arrow::array::{ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, ColumnOptionDef, CreateTable, DataType as SqlType, Expr as SqlExpr, GeneratedAs,
    Insert, ObjectName, SequenceOptions, TableObject,
};
use datafusion::sql::sqlparser::tokenizer::Token;
use entidb_catalog::{Catalog, SequenceMeta};
use entidb_engine::{Engine, Error as EngineError, ScanRequest, TableDef, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The engine table holding every sequence's next value.
pub const COUNTERS: &str = "_entidb_sequences";

/// How long a reservation keeps retrying after conflicts with concurrent
/// ones before it gives up with a serialization failure.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The name of the sequence numbering `column` of `table`.
pub fn sequence_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_seq")
}

/// The default expression of an identity column.
pub fn nextval_sql(sequence: &str) -> String {
    format!("nextval('{}')", sequence.replace('\'', "''"))
}

/// Creates (or restarts) the counter of sequence `name` in `t`; the first
/// value handed out is `start`.
pub fn create_counter(t: &mut Transaction, name: &str, start: i64) -> Result<(), EngineError> {
    let table = match t.table(COUNTERS) {
        Ok(def) => def,
        Err(EngineError::TableNotFound { .. }) => {
            t.create_table(COUNTERS, counters_schema(), vec![0])?
        }
        Err(e) => return Err(e),
    };
    let old = find(t, &table, name)?.map(|(key, _)| key);
    set(t, &table, old.as_deref(), name, start)
}

/// Removes the counter of sequence `name` (if any) in `t`.
pub fn drop_counter(t: &mut Transaction, name: &str) -> Result<(), EngineError> {
    let Ok(table) = t.table(COUNTERS) else {
        return Ok(());
    };
    if let Some((key, _)) = find(t, &table, name)? {
        t.delete(table.id, &BinaryArray::from_vec(vec![key.as_slice()]))?;
    }
    Ok(())
}

fn counters_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("next", DataType::Int64, false),
    ]))
}

/// The row key and next value of sequence `name`.
fn find(
    t: &mut Transaction,
    table: &TableDef,
    name: &str,
) -> Result<Option<(Vec<u8>, i64)>, EngineError> {
    let request = ScanRequest {
        projection: Some(vec![0, 1]),
        include_key: true,
        ..ScanRequest::default()
    };
    for batch in t.scan(table.id, request)? {
        let batch = batch?;
        let (Some(names), Some(nexts), Some(keys)) = (
            batch
                .columns()
                .first()
                .and_then(|c| c.as_string_opt::<i32>()),
            batch
                .columns()
                .get(1)
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            batch
                .columns()
                .get(2)
                .and_then(|c| c.as_binary_opt::<i32>()),
        ) else {
            return Err(EngineError::InvalidArgument(format!(
                "{COUNTERS} has an unexpected shape"
            )));
        };
        for i in 0..batch.num_rows() {
            if names.value(i) == name {
                return Ok(Some((keys.value(i).to_vec(), nexts.value(i))));
            }
        }
    }
    Ok(None)
}

/// Writes `next` as the counter of `name`, replacing the row at `old`.
fn set(
    t: &mut Transaction,
    table: &TableDef,
    old: Option<&[u8]>,
    name: &str,
    next: i64,
) -> Result<(), EngineError> {
    if let Some(key) = old {
        t.delete(table.id, &BinaryArray::from_vec(vec![key]))?;
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![name])),
        Arc::new(Int64Array::from(vec![next])),
    ];
    let batch = RecordBatch::try_new(table.schema.clone(), columns)
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
    t.insert(table.id, &batch)?;
    Ok(())
}

/// The session's sequences: reservations and the last value of each.
#[derive(Debug)]
pub struct Sequences {
    engine: Engine,
    slot: Arc<TxnSlot>,
    last: Mutex<HashMap<String, i64>>,
}

impl Sequences {
    /// The sequences of `engine`, with the session transaction in `slot`.
    pub fn new(engine: Engine, slot: Arc<TxnSlot>) -> Arc<Self> {
        Arc::new(Self {
            engine,
            slot,
            last: Mutex::new(HashMap::new()),
        })
    }

    /// Reserves `n` consecutive values of `name`; returns the first.
    pub fn reserve(&self, name: &str, n: usize) -> Result<i64> {
        // `nextval` writes: refused in a read-only transaction, as in
        // PostgreSQL (its reservation would otherwise commit on its own).
        if matches!(self.slot.with(|t| Ok(t.is_read_only())), Ok(true)) {
            return Err(EngineError::ReadOnly.into());
        }
        let first = self.reserve_committed(name, n)?;
        let first = match first {
            Some(first) => first,
            None => self.slot.with(|t| advance(t, name, n))?.ok_or_else(|| {
                ErrorKind::UndefinedTable {
                    name: name.to_string(),
                }
            })?,
        };
        if n > 0
            && let Ok(mut last) = self.last.lock()
        {
            last.insert(name.to_string(), first + n as i64 - 1);
        }
        Ok(first)
    }

    /// Reserves in a transaction of its own; `None` when the sequence is
    /// not committed (then only the session's transaction knows it).
    fn reserve_committed(&self, name: &str, n: usize) -> Result<Option<i64>> {
        let started = std::time::Instant::now();
        let mut backoff = entidb_engine::Backoff::new();
        while started.elapsed() < RETRY_FOR {
            let mut txn = self.engine.begin();
            // A conflict may show at the write (a newer committed version)
            // or at commit: either way, retry on a fresh snapshot.
            let reserved = match advance(&mut txn, name, n) {
                Ok(Some(first)) => txn.commit().map(|_| Some(first)).map_err(EngineError::from),
                other => other,
            };
            match reserved {
                Ok(first) => return Ok(first),
                Err(EngineError::Conflict { .. }) => backoff.wait(),
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Conflict {
            table: COUNTERS.into(),
            key: format!("sequence {name} is reserved by too many transactions at once"),
        }
        .into())
    }

    /// The value `nextval(name)` last returned in this session.
    pub fn current(&self, name: &str) -> Result<i64> {
        let last = self.last.lock().ok().and_then(|l| l.get(name).copied());
        last.ok_or_else(|| {
            ErrorKind::ObjectNotInPrerequisiteState(format!(
                "currval of sequence {name} is not yet defined in this session"
            ))
            .into()
        })
    }

    /// `nextval` and `currval` as DataFusion functions.
    pub fn functions(self: &Arc<Self>) -> Vec<ScalarUDF> {
        [Which::Next, Which::Current]
            .into_iter()
            .map(|which| {
                ScalarUDF::new_from_impl(SequenceFn {
                    sequences: self.clone(),
                    which,
                    signature: Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
                })
            })
            .collect()
    }
}

/// Advances the counter of `name` by `n` in `t`; the first value, or `None`
/// when `t` does not see the sequence.
/// The value `nextval` of sequence `name` would return next, without
/// taking it (`None` for an unknown sequence).
pub(crate) fn next_value(t: &mut Transaction, name: &str) -> Result<Option<i64>, EngineError> {
    let Ok(table) = t.table(COUNTERS) else {
        return Ok(None);
    };
    Ok(find(t, &table, name)?.map(|(_, next)| next))
}

fn advance(t: &mut Transaction, name: &str, n: usize) -> Result<Option<i64>, EngineError> {
    let Ok(table) = t.table(COUNTERS) else {
        return Ok(None);
    };
    let Some((key, first)) = find(t, &table, name)? else {
        return Ok(None);
    };
    let next = i64::try_from(n)
        .ok()
        .and_then(|n| first.checked_add(n))
        .ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "nextval: sequence {name} reached its maximum value"
            ))
        })?;
    set(t, &table, Some(&key), name, next)?;
    Ok(Some(first))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    Next,
    Current,
}

/// `nextval(text)` / `currval(text)`.
#[derive(Debug)]
struct SequenceFn {
    sequences: Arc<Sequences>,
    which: Which,
    signature: Signature,
}

impl PartialEq for SequenceFn {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.sequences, &other.sequences) && self.which == other.which
    }
}

impl Eq for SequenceFn {}

impl std::hash::Hash for SequenceFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.which.hash(state);
    }
}

impl ScalarUDFImpl for SequenceFn {
    fn name(&self) -> &str {
        match self.which {
            Which::Next => "nextval",
            Which::Current => "currval",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let names: Vec<Option<String>> = match args.args.first() {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(name))) => vec![name.clone()],
            Some(ColumnarValue::Array(a)) => match a.as_string_opt::<i32>() {
                Some(a) => a.iter().map(|v| v.map(str::to_string)).collect(),
                None => return Err(sql_to_df(bad_argument())),
            },
            _ => return Err(sql_to_df(bad_argument())),
        };
        let values = match (names.as_slice(), self.which) {
            // One name for the whole batch: one reservation.
            ([Some(name)], Which::Next) => {
                let first = self.sequences.reserve(name, rows).map_err(sql_to_df)?;
                (0..rows as i64).map(|i| Some(first + i)).collect()
            }
            ([Some(name)], Which::Current) => {
                let v = self.sequences.current(name).map_err(sql_to_df)?;
                vec![Some(v); rows]
            }
            _ => names
                .iter()
                .map(|name| match (name, self.which) {
                    (None, _) => Ok(None),
                    (Some(n), Which::Next) => self.sequences.reserve(n, 1).map(Some),
                    (Some(n), Which::Current) => self.sequences.current(n).map(Some),
                })
                .collect::<Result<Vec<_>>>()
                .map_err(sql_to_df)?,
        };
        let array: ArrayRef = Arc::new(Int64Array::from(values));
        Ok(ColumnarValue::Array(array))
    }
}

fn bad_argument() -> crate::Error {
    ErrorKind::Plan("nextval/currval take the sequence name as text".into()).into()
}

/// `INSERT … OVERRIDING {SYSTEM | USER} VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overriding {
    /// Explicit values go into GENERATED ALWAYS columns too.
    System,
    /// Explicit values for identity columns are ignored: the sequence
    /// numbers the rows.
    User,
}

/// Takes the OVERRIDING clause out of `insert`, where `text_rewrite.rs`
/// left it as an insert priority (sqlparser does not parse the clause).
pub fn take_overriding(insert: &mut Insert) -> Option<Overriding> {
    use datafusion::sql::sqlparser::ast::MysqlInsertPriority;
    match insert.priority.take()? {
        MysqlInsertPriority::HighPriority => Some(Overriding::System),
        MysqlInsertPriority::LowPriority => Some(Overriding::User),
        other => {
            insert.priority = Some(other);
            None
        }
    }
}

/// Refuses an INSERT that gives an explicit value to a `GENERATED ALWAYS`
/// identity column (428C9), as PostgreSQL does without `OVERRIDING SYSTEM
/// VALUE`; with `OVERRIDING USER VALUE` the identity columns' values become
/// `DEFAULT` instead (for a query source: a projection over it). `DEFAULT`
/// in a VALUES row is no value.
pub fn check_insert(
    catalog: &Catalog,
    insert: &mut Insert,
    overriding: Option<Overriding>,
) -> Result<()> {
    if overriding == Some(Overriding::System) {
        return Ok(());
    }
    let TableObject::TableName(name) = &insert.table else {
        return Ok(());
    };
    let Some(table) = crate::schemas::resolve(catalog, name)
        .ok()
        .and_then(|n| catalog.table(&n))
    else {
        return Ok(());
    };
    let named: Vec<String> = insert
        .columns
        .iter()
        .filter_map(crate::ddl::last_ident)
        .collect();
    // (position in the rows, the column's default) of each identity
    // value OVERRIDING USER VALUE replaces.
    let mut numbered = Vec::new();
    for (i, column) in table.columns.iter().enumerate() {
        let Some(identity) = &column.identity else {
            continue;
        };
        // Without a column list the values fill columns in order.
        let position = if named.is_empty() {
            Some(i)
        } else {
            named.iter().position(|n| *n == column.name)
        };
        let Some(position) = position.filter(|p| gives_value(insert, *p)) else {
            continue;
        };
        match overriding {
            Some(_) => numbered.push((position, column.default.clone().unwrap_or("NULL".into()))),
            None if identity.always => return Err(always_error(&column.name)),
            None => {}
        }
    }
    if !numbered.is_empty() {
        let width = if named.is_empty() {
            table.columns.len()
        } else {
            named.len()
        };
        number_rows(insert, &numbered, width)?;
    }
    Ok(())
}

/// Makes the values at the given positions of the INSERT's rows the
/// column's default (`nextval(…)`): `DEFAULT` in VALUES rows (which
/// [`fill_defaults`] then replaces), and for a query source a projection
/// `SELECT s.c1, nextval(…), … FROM (query) AS s (c1, …)`.
fn number_rows(insert: &mut Insert, numbered: &[(usize, String)], width: usize) -> Result<()> {
    use datafusion::sql::sqlparser::ast::{Ident, SetExpr};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Some(source) = insert.source.as_mut() else {
        return Ok(());
    };
    if let SetExpr::Values(values) = source.body.as_mut() {
        for row in values.rows.iter_mut() {
            for (p, _) in numbered {
                if let Some(e) = row.content.get_mut(*p) {
                    *e = SqlExpr::Identifier(Ident::new("DEFAULT"));
                }
            }
        }
        return Ok(());
    }
    let names: Vec<String> = (1..=width).map(|i| format!("\"entidb:c{i}\"")).collect();
    let row: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(p, name)| match numbered.iter().find(|(at, _)| *at == p) {
            Some((_, default)) => format!("({default})"),
            None => format!("s.{name}"),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM ({source}) AS s ({})",
        row.join(", "),
        names.join(", ")
    );
    let query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| ErrorKind::Syntax(e.to_string()))?;
    *source = query;
    Ok(())
}

fn always_error(column: &str) -> crate::Error {
    ErrorKind::GeneratedAlways(format!(
        "cannot insert a non-DEFAULT value into column {column}: it is an identity column \
         defined as GENERATED ALWAYS"
    ))
    .into()
}

/// Refuses an UPDATE (or MERGE UPDATE) that sets a `GENERATED ALWAYS`
/// identity column to anything but `DEFAULT` (428C9), as PostgreSQL does.
pub(crate) fn check_update(
    meta: &entidb_catalog::TableMeta,
    assigned: &[Option<&SqlExpr>],
) -> Result<()> {
    for (column, value) in meta.columns.iter().zip(assigned) {
        if column.identity.as_ref().is_some_and(|id| id.always)
            && value.is_some_and(|v| !is_default(v))
        {
            return Err(ErrorKind::GeneratedAlways(format!(
                "column {} can only be updated to DEFAULT: it is an identity column defined as \
                 GENERATED ALWAYS",
                column.name
            ))
            .into());
        }
    }
    Ok(())
}

/// Replaces each `DEFAULT` in an INSERT's VALUES rows by the column's
/// default expression (NULL without one), which DataFusion's INSERT
/// planning does not know. A default that does not parse is left alone
/// (DataFusion then reports it).
pub fn fill_defaults(catalog: &Catalog, insert: &mut Insert) {
    use datafusion::sql::sqlparser::ast::SetExpr;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let TableObject::TableName(name) = &insert.table else {
        return;
    };
    let Some(table) = crate::schemas::resolve(catalog, name)
        .ok()
        .and_then(|n| catalog.table(&n))
    else {
        return;
    };
    let named: Vec<String> = insert
        .columns
        .iter()
        .filter_map(crate::ddl::last_ident)
        .collect();
    let Some(source) = insert.source.as_mut() else {
        return;
    };
    let SetExpr::Values(values) = source.body.as_mut() else {
        return;
    };
    let default_of = |p: usize| -> Option<SqlExpr> {
        let column = if named.is_empty() {
            table.columns.get(p)
        } else {
            let name = named.get(p)?;
            table.columns.iter().find(|c| c.name == *name)
        }?;
        match &column.default {
            None => Some(SqlExpr::value(datafusion::sql::sqlparser::ast::Value::Null)),
            Some(sql) => Parser::new(&PostgreSqlDialect {})
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_expr())
                .ok(),
        }
    };
    for row in values.rows.iter_mut() {
        for (p, expr) in row.content.iter_mut().enumerate() {
            if is_default(expr)
                && let Some(default) = default_of(p)
            {
                *expr = default;
            }
        }
    }
}

/// Whether `expr` is the keyword `DEFAULT` (a column's default value in
/// VALUES and SET).
pub(crate) fn is_default(expr: &SqlExpr) -> bool {
    matches!(expr, SqlExpr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// Whether the INSERT's source gives a value (not `DEFAULT`) at column
/// position `p` of its rows (a query source: whenever it is that wide).
fn gives_value(insert: &Insert, p: usize) -> bool {
    use datafusion::sql::sqlparser::ast::SetExpr;
    let Some(source) = &insert.source else {
        return false;
    };
    match source.body.as_ref() {
        SetExpr::Values(v) => v
            .rows
            .iter()
            .any(|r| r.content.get(p).is_some_and(|e| !is_default(e))),
        SetExpr::Select(s) => p < s.projection.len(),
        _ => true,
    }
}

/// An identity column of a CREATE TABLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySpec {
    /// Column name (normalised).
    pub column: String,
    /// `GENERATED ALWAYS`.
    pub always: bool,
    /// First value (`START WITH`, default 1).
    pub start: i64,
}

/// The identity columns of `create` as written, rewriting `create` into what
/// DataFusion can plan: serial types become integer types, the identity
/// options go, and the column becomes NOT NULL.
pub fn take_identities(create: &mut CreateTable) -> Result<Vec<IdentitySpec>> {
    let mut out = Vec::new();
    for column in create.columns.iter_mut() {
        let mut spec: Option<(bool, i64)> = None;
        let serial = match column.data_type.to_string().to_ascii_uppercase().as_str() {
            "SERIAL" | "SERIAL4" => Some(SqlType::Integer(None)),
            "BIGSERIAL" | "SERIAL8" => Some(SqlType::BigInt(None)),
            "SMALLSERIAL" | "SERIAL2" => Some(SqlType::SmallInt(None)),
            _ => None,
        };
        if let Some(t) = serial {
            column.data_type = t;
            spec = Some((false, 1));
        }
        let mut kept = Vec::new();
        for option in std::mem::take(&mut column.options) {
            match &option.option {
                ColumnOption::Generated {
                    generated_as: generated @ (GeneratedAs::Always | GeneratedAs::ByDefault),
                    sequence_options,
                    generation_expr: None,
                    ..
                } => {
                    let start = start_of(sequence_options.as_deref().unwrap_or_default())?;
                    spec = Some((matches!(generated, GeneratedAs::Always), start));
                }
                ColumnOption::DialectSpecific(tokens) if is_autoincrement(tokens) => {
                    spec = Some((false, 1));
                }
                _ => kept.push(option),
            }
        }
        column.options = kept;
        let Some((always, start)) = spec else {
            continue;
        };
        let name = crate::ddl::normalize(&column.name);
        if column
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::Default(_)))
        {
            return Err(ErrorKind::Syntax(format!(
                "both default and identity specified for column {name}"
            ))
            .into());
        }
        column.options.push(ColumnOptionDef {
            name: None,
            option: ColumnOption::NotNull,
        });
        out.push(IdentitySpec {
            column: name,
            always,
            start,
        });
    }
    Ok(out)
}

fn is_autoincrement(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| {
        let t = t.to_string().to_ascii_uppercase();
        t == "AUTOINCREMENT" || t == "AUTO_INCREMENT"
    })
}

/// The `START WITH` of identity / sequence options (1 without one); other
/// options than `START` and `INCREMENT BY 1` are refused (0A000).
pub fn start_of(options: &[SequenceOptions]) -> Result<i64> {
    let mut start = 1;
    for option in options {
        match option {
            SequenceOptions::StartWith(expr, _) => {
                start = expr.to_string().replace(' ', "").parse().map_err(|_| {
                    crate::Error::from(ErrorKind::NotSupported(format!(
                        "START WITH {expr} (an integer literal is needed)"
                    )))
                })?;
            }
            SequenceOptions::IncrementBy(expr, _) if expr.to_string() == "1" => {}
            other => {
                return Err(ErrorKind::NotSupported(format!(
                    "sequence option {}",
                    other.to_string().trim()
                ))
                .into());
            }
        }
    }
    Ok(start)
}

/// CREATE SEQUENCE [IF NOT EXISTS] name [START [WITH] n].
pub fn create_sequence(
    session: &mut Session,
    name: &ObjectName,
    if_not_exists: bool,
    options: &[SequenceOptions],
) -> Result<()> {
    let name = crate::schemas::new_key(&session.catalog, name)?;
    let mut catalog = session.catalog.as_ref().clone();
    if catalog.sequence(&name).is_some()
        || catalog.has_relation(&name)
        || catalog.index(&name).is_some()
    {
        if if_not_exists {
            return Ok(());
        }
        return Err(ErrorKind::DuplicateTable { name }.into());
    }
    let start = start_of(options)?;
    catalog.sequences.push(SequenceMeta {
        name: name.clone(),
        owner: None,
    });
    session.slot.with(|t| {
        create_counter(t, &name, start)?;
        catalog.save(t)
    })?;
    Ok(())
}

/// DROP SEQUENCE [IF EXISTS] name, ….
pub fn drop_sequence(session: &mut Session, names: &[ObjectName], if_exists: bool) -> Result<()> {
    let mut keys = Vec::new();
    for object in names {
        let resolved = crate::schemas::resolve_for_ddl(&session.catalog, object);
        keys.extend(crate::schemas::or_absent(resolved, if_exists)?);
    }
    drop_sequence_keys(session, &keys, if_exists)
}

/// Drops the sequences with these keys (`DROP SEQUENCE`, `DROP SCHEMA …
/// CASCADE`).
pub(crate) fn drop_sequence_keys(
    session: &mut Session,
    keys: &[String],
    if_exists: bool,
) -> Result<()> {
    let mut catalog = session.catalog.as_ref().clone();
    let mut dropped = Vec::new();
    for name in keys {
        let name = name.clone();
        match catalog.sequence(&name) {
            None if if_exists => continue,
            None => return Err(ErrorKind::UndefinedTable { name }.into()),
            Some(s) if s.owner.is_some() => {
                return Err(ErrorKind::DependentObjects(format!(
                    "cannot drop sequence {name}: an identity column of table {} uses it",
                    s.owner.clone().unwrap_or_default()
                ))
                .into());
            }
            Some(_) => {}
        }
        catalog.sequences.retain(|s| s.name != name);
        dropped.push(name);
    }
    session.slot.with(|t| {
        for name in &dropped {
            drop_counter(t, name)?;
        }
        catalog.save(t)
    })?;
    Ok(())
}

/// A sequence name for `column` of `table` that `catalog` does not use.
/// It is in the table's schema, and a period in its name becomes `_`, so a
/// `main` sequence never reads as another schema's (`schemas.rs`).
pub fn free_sequence_name(catalog: &Catalog, table: &str, column: &str) -> String {
    let (schema, bare) = catalog.split(table);
    let base = Catalog::key(schema, &sequence_name(bare, column).replace('.', "_"));
    let mut name = base.clone();
    let mut n = 0;
    while catalog.sequence(&name).is_some()
        || catalog.has_relation(&name)
        || catalog.index(&name).is_some()
    {
        n += 1;
        name = format!("{base}{n}");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_disjoint_and_durable_in_memory() {
        let engine = Engine::open_memory().unwrap();
        let mut t = engine.begin();
        create_counter(&mut t, "s", 1).unwrap();
        t.commit().unwrap();
        let seqs = Sequences::new(engine.clone(), Arc::new(TxnSlot::default()));
        assert_eq!(seqs.reserve("s", 3).unwrap(), 1);
        assert_eq!(seqs.reserve("s", 1).unwrap(), 4);
        assert_eq!(seqs.current("s").unwrap(), 4);
        assert!(seqs.current("other").is_err());
        assert_eq!(
            seqs.reserve("missing", 1).unwrap_err().sqlstate(),
            "25000",
            "no session transaction"
        );
    }
}
