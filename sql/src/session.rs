//! A SQL session: one connection's DataFusion context and transaction state.
//!
//! LIFE OF A STATEMENT
//!
//! 1. The text is parsed with DataFusion's parser (sqlparser, generic
//!    dialect); `COPY … FROM` and PostgreSQL's `COPY … TO … WITH (…)`,
//!    which it does not take, by `copy/`. Placeholders are renumbered to
//!    `$N` (`placeholders.rs`).
//! 2. Transaction control (`BEGIN`, `START TRANSACTION`, `COMMIT`, `END`,
//!    `ROLLBACK`) and `CHECKPOINT` are handled here directly; `COPY … FROM`
//!    loads through the INSERT path (`copy/`).
//! 3. Otherwise the statement runs inside a transaction: the explicit one, or
//!    a fresh autocommit one. A savepoint is taken first.
//! 4. If the transaction's catalog differs from the one the DataFusion
//!    context reflects, every table is re-registered as an [`EntiTable`]
//!    (the same provider when the table, its metadata and indexes are
//!    unchanged) and the views whose SQL or relations changed are re-planned
//!    from their SQL text (`sync_views`).
//! 5. DELETE and UPDATE (and EXPLAIN of them) are rewritten into a SELECT of
//!    the hidden row key plus the new values, evaluated by DataFusion, and
//!    applied by key (`dml.rs`); INSERT with ON CONFLICT or RETURNING is
//!    planned by DataFusion but written by us (`insert.rs`, `upsert.rs`,
//!    `returning.rs`). CREATE/DROP TABLE/VIEW are planned by
//!    DataFusion and executed by us (`ddl.rs`); CREATE/DROP INDEX, which
//!    DataFusion cannot plan or run, are taken from the parsed statement
//!    (`ddl.rs`), and so are ALTER TABLE (`alter.rs`), CREATE/DROP SEQUENCE
//!    (`identity.rs`) and `PRAGMA integrity_check` (`pragma.rs`). A CREATE
//!    TABLE loses its identity options before DataFusion plans it
//!    (`ddl::plannable`).
//!    Everything else — SELECT, INSERT, EXPLAIN, SET — is
//!    executed by DataFusion over our providers. (Prepared statements may
//!    skip DataFusion for point queries and one-row INSERTs: `prepared.rs`.)
//! 6. On success an autocommit transaction commits; on failure the statement's
//!    changes are undone back to the savepoint. A failed statement inside an
//!    explicit transaction does **not** abort the transaction: the statement
//!    has no effect and the transaction continues (as in SQLite); a `Conflict`
//!    will however recur at COMMIT, so the application should roll back and
//!    retry.

use crate::dialect::Dialect;
use crate::error::{Error, ErrorKind, Result};
use crate::indexes::table_indexes;
use crate::limits::{self, SessionOptions};
use crate::provider::EntiTable;
use crate::slot::TxnSlot;
use crate::stack::{BigStack, big_stack_stream, check_depth};
use crate::statement_cache::{self, StatementCache};
use crate::{alter, ddl, dml, identity, insert, output_names, truncate};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{SchemaRef, UInt64Type};
use datafusion::common::TableReference;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ParamValues};
use datafusion::datasource::TableProvider;
use datafusion::datasource::ViewTable;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::{ResetStatement, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{ObjectType, Statement as SqlStatement, TableObject};
use datafusion::sql::sqlparser::ast::{
    Set, TransactionAccessMode, TransactionMode, visit_relations,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use entidb_catalog::Catalog;
use entidb_engine::{Engine, Error as EngineError, Savepoint};
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What one statement produced.
#[derive(Debug)]
pub enum Output {
    /// Rows affected (DML) or 0 (DDL, transaction control).
    Count(u64),
    /// Result rows of a query.
    Rows(SchemaRef, Vec<RecordBatch>),
}

/// One connection to a database.
pub struct Session {
    engine: Engine,
    pub(crate) ctx: SessionContext,
    pub(crate) slot: Arc<TxnSlot>,
    explicit: bool,
    synced: Option<Arc<Vec<u8>>>,
    pub(crate) catalog: Arc<Catalog>,
    /// The catalog `information_schema.table_constraints` and
    /// `key_column_usage` read (`info_schema.rs`), updated with `catalog`.
    constraint_catalog: crate::info_schema::Current,
    pub(crate) tables: HashMap<String, Arc<EntiTable>>,
    registered: Vec<TableReference>,
    pub(crate) views: HashMap<String, CachedView>,
    /// Plans of SQL text (`statement_cache.rs`).
    pub(crate) statements: StatementCache,
    options: SessionOptions,
    /// The memory limit now in force (read by the capped functions).
    memory_limit: Arc<AtomicUsize>,
    external_access: bool,
    /// Whose semantics apply where PostgreSQL and SQLite differ.
    pub(crate) dialect: Dialect,
    /// The triggers whose bodies are running, outermost first: a trigger
    /// does not fire again while it runs (`triggers.rs`).
    pub(crate) firing_triggers: Vec<String>,
    /// Set when a statement was dropped before it finished ([`Unfinished`]):
    /// the next `sync_catalog` registers every table again.
    stale: Arc<AtomicBool>,
    /// RAISE's mark and whether a trigger's SELECT runs (`triggers.rs`).
    pub(crate) raise: Arc<crate::triggers::RaiseState>,
}

/// Undoes a statement whose future is dropped before it finishes
/// (cancelled, timed out): its writes go back to the statement's
/// savepoint in an explicit transaction (an autocommit one is dropped,
/// which rolls it back), and the session registers its tables again at the
/// next statement (DELETE and UPDATE register a keyed provider while they
/// run).
struct Unfinished {
    slot: Arc<TxnSlot>,
    /// `None` for an autocommit transaction.
    savepoint: Option<Savepoint>,
    stale: Arc<AtomicBool>,
    finished: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match self.savepoint {
            Some(savepoint) => {
                let _ = self.slot.with(|t| {
                    t.rollback_to(savepoint);
                    Ok(())
                });
            }
            None => {
                let _ = self.slot.take();
            }
        }
        self.stale.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("explicit", &self.explicit)
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Session {
    /// A new session on `engine` with the default [`SessionOptions`].
    pub fn new(engine: Engine) -> Self {
        Self::with_options(engine, SessionOptions::default())
    }

    /// A new session on `engine` (memory limit, spilling, file access: see
    /// `limits.rs`).
    pub fn with_options(engine: Engine, options: SessionOptions) -> Self {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("entidb", "main");
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        crate::stack::raise_parser_limit(config.options_mut());
        let limit = options.memory_limit;
        // Only a broken temporary directory makes this fail; then nothing
        // spills.
        let runtime = limits::runtime(&options, limit)
            .or_else(|_| {
                let no_spill = SessionOptions {
                    spill: false,
                    ..options.clone()
                };
                limits::runtime(&no_spill, limit)
            })
            .unwrap_or_default();
        let mut ctx = crate::files::install(SessionContext::new_with_config_rt(config, runtime));
        // Added to the context `install` returns, never by rebuilding it: the
        // URL-table factory keeps a reference to this context's state, and a
        // rebuilt context loses it ("get current SessionStore error").
        // So the rules are replaced in place, in order.
        let current: Vec<String> = ctx
            .state()
            .optimizers()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        for name in &current {
            ctx.remove_optimizer_rule(name);
        }
        for rule in crate::subquery::optimizer_rules() {
            ctx.add_optimizer_rule(rule);
        }
        // Integer `+ - *`, unary `-` and SUM fail on overflow (22003)
        // instead of wrapping; the rule runs after type coercion.
        ctx.add_analyzer_rule(Arc::new(crate::checked::CheckedArithmetic::default()));
        ctx.register_udaf(crate::checked::CheckedSum::udaf());
        // JSON over TEXT: `->`, `->>`, json_get*, json_contains, json_length…
        // Registration only fails on a name clash, which would leave the
        // built-in function in place.
        let _ = datafusion_functions_json::register_all(&mut ctx);
        let memory_limit = Arc::new(AtomicUsize::new(limit));
        for udf in limits::capped_functions(ctx.state().scalar_functions(), &memory_limit) {
            ctx.register_udf(udf);
        }
        for udf in crate::functions::widened_functions(ctx.state().scalar_functions()) {
            ctx.register_udf(udf);
        }
        let raise = crate::triggers::RaiseState::new();
        ctx.register_udf(crate::triggers::raise_function(raise.clone()));
        ctx.register_udf(crate::functions::sqlite_number());
        ctx.register_udf(crate::functions::total_arg());
        ctx.register_udaf(crate::group_concat::udaf());
        let slot = Arc::new(TxnSlot::default());
        for udf in identity::Sequences::new(engine.clone(), slot.clone()).functions() {
            ctx.register_udf(udf);
        }
        let constraint_catalog = crate::info_schema::install(&ctx);
        Self {
            engine,
            constraint_catalog,
            ctx,
            slot,
            explicit: false,
            synced: None,
            catalog: Arc::new(Catalog::default()),
            tables: HashMap::new(),
            registered: Vec::new(),
            views: HashMap::new(),
            statements: StatementCache::default(),
            external_access: options.external_access,
            dialect: Dialect::default(),
            firing_triggers: Vec::new(),
            stale: Arc::new(AtomicBool::new(false)),
            raise,
            options,
            memory_limit,
        }
    }

    /// Handles `SET entidb.*` and the `datafusion.runtime.*` settings that
    /// touch memory or files; `None` for any other statement.
    fn set_variable(&mut self, stmt: &SqlStatement) -> Option<Result<Output>> {
        let SqlStatement::Set(Set::SingleAssignment {
            variable, values, ..
        }) = stmt
        else {
            return None;
        };
        let name = variable.to_string().to_ascii_lowercase();
        let value = values.first().map(|v| v.to_string()).unwrap_or_default();
        let denied = |why: &str| Some(Err(ErrorKind::InsufficientPrivilege(why.into()).into()));
        match name.as_str() {
            "entidb.dialect" => Some(Dialect::parse(&value).map(|d| {
                self.dialect = d;
                Output::Count(0)
            })),
            "entidb.memory_limit" | "datafusion.runtime.memory_limit" => Some(
                limits::parse_size(&value)
                    .and_then(|n| self.set_memory_limit(n))
                    .map(|()| Output::Count(0)),
            ),
            "entidb.external_access" => Some(limits::parse_bool(&value).and_then(|on| {
                if on && !self.external_access {
                    return Err(ErrorKind::InsufficientPrivilege(
                        "file access cannot be re-enabled in this session".into(),
                    )
                    .into());
                }
                self.external_access = on;
                Ok(Output::Count(0))
            })),
            "datafusion.runtime.temp_directory" | "datafusion.runtime.max_temp_directory_size"
                if !self.options.spill =>
            {
                denied("spilling to disk is disabled for encrypted databases")
            }
            "datafusion.runtime.temp_directory" if !self.external_access => {
                denied("file access from SQL is disabled (entidb.external_access = false)")
            }
            _ => None,
        }
    }

    /// Handles `RESET` of the settings [`Session::set_variable`] guards
    /// (DataFusion's own RESET would drop the memory pool or turn spilling
    /// back on); `None` for the others.
    fn reset_variable(&mut self, name: &str) -> Option<Result<Output>> {
        match name.to_ascii_lowercase().as_str() {
            "entidb.dialect" => {
                self.dialect = Dialect::default();
                Some(Ok(Output::Count(0)))
            }
            "entidb.memory_limit" | "datafusion.runtime.memory_limit" => Some(
                self.set_memory_limit(self.options.memory_limit)
                    .map(|()| Output::Count(0)),
            ),
            "datafusion.runtime.temp_directory" | "datafusion.runtime.max_temp_directory_size"
                if !self.options.spill =>
            {
                Some(Err(ErrorKind::InsufficientPrivilege(
                    "spilling to disk is disabled for encrypted databases".into(),
                )
                .into()))
            }
            _ => None,
        }
    }

    /// Replaces the memory pool (the disk manager stays).
    fn set_memory_limit(&mut self, bytes: usize) -> Result<()> {
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(bytes),
            NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN),
        );
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_memory_pool(Arc::new(pool))
            .build_arc()?;
        *state = SessionStateBuilder::new_from_existing(state.clone())
            .with_runtime_env(runtime)
            .build();
        self.memory_limit.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// True inside `BEGIN … COMMIT`.
    pub fn in_transaction(&self) -> bool {
        self.explicit
    }

    /// The catalog as this connection sees it: inside `BEGIN … COMMIT`
    /// with the transaction's own DDL, otherwise the newest committed one.
    ///
    /// # Errors
    /// Engine failures, a catalog that does not decode (XX001).
    pub async fn catalog(&mut self) -> Result<Arc<Catalog>> {
        self.in_transaction_scope(|s| Box::pin(async move { Ok(s.catalog.clone()) }))
            .await
    }

    /// Rolls back the explicit transaction, if one is open (what a dropped
    /// transaction guard does; synchronous, never fails).
    pub fn abandon_transaction(&mut self) {
        if self.explicit {
            self.explicit = false;
            let _ = self.slot.take();
        }
    }

    /// The DataFusion context: register functions (`register_udf`,
    /// `register_udaf`) or read its configuration. Tables and views are
    /// EntiDB's: the session re-registers them from the catalog.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Whether SQL may read and write files now (`limits.rs`).
    pub(crate) fn external_access(&self) -> bool {
        self.external_access
    }

    /// Runs every statement of `sql`; returns the output of the last one.
    ///
    /// # Errors
    /// The first failing statement's error (with its text); later statements
    /// do not run.
    pub async fn run(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Output> {
        BigStack::new(self.run_on_stack(sql, params)).await
    }

    /// Parses `sql`, first rewriting SQLite's own syntax under
    /// `entidb.dialect = 'sqlite'` ([`crate::dialect::sqlite_text`]).
    pub(crate) fn parse(&self, sql: &str) -> Result<Vec<Parsed>> {
        match self.dialect {
            Dialect::Sqlite => parse(&crate::dialect::sqlite_text(sql)),
            Dialect::Postgres => parse(sql),
        }
    }

    async fn run_on_stack(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Output> {
        let statements = self.parse(sql)?;
        let mut last = Output::Count(0);
        for stmt in statements {
            let text = stmt.text();
            last = match stmt {
                Parsed::Checkpoint => self.checkpoint().map(|()| Output::Count(0)),
                Parsed::Reindex(name) => self.reindex(name).await,
                Parsed::CopyFrom(c) => crate::copy::copy_from(self, *c).await.map(Output::Count),
                Parsed::Sql(stmt) => self.run_one(*stmt, params).await,
            }
            .map_err(|e| e.in_statement(&text))?;
        }
        Ok(last)
    }

    /// Runs every statement of `sql`, returning each one's output; stops after
    /// the first failure, which is the last element.
    pub async fn run_all(&mut self, sql: &str) -> Vec<Result<Output>> {
        BigStack::new(self.run_all_on_stack(sql)).await
    }

    async fn run_all_on_stack(&mut self, sql: &str) -> Vec<Result<Output>> {
        let statements = match self.parse(sql) {
            Ok(s) => s,
            Err(e) => return vec![Err(e)],
        };
        let mut outputs = Vec::new();
        for stmt in statements {
            let text = stmt.text();
            let out = match stmt {
                Parsed::Checkpoint => self.checkpoint().map(|()| Output::Count(0)),
                Parsed::Reindex(name) => self.reindex(name).await,
                Parsed::CopyFrom(c) => crate::copy::copy_from(self, *c).await.map(Output::Count),
                Parsed::Sql(stmt) => self.run_one(*stmt, &[]).await,
            }
            .map_err(|e| e.in_statement(&text));
            let failed = out.is_err();
            outputs.push(out);
            if failed {
                break;
            }
        }
        outputs
    }

    /// Runs `sql` and returns the rows affected by its last statement.
    pub async fn execute(&mut self, sql: &str, params: &[ScalarValue]) -> Result<u64> {
        Ok(match self.run(sql, params).await? {
            Output::Count(n) => n,
            Output::Rows(_, batches) => batches.iter().map(|b| b.num_rows() as u64).sum(),
        })
    }

    /// Runs `sql` and returns the rows of its last statement: at least one
    /// batch, so an empty result still has its schema.
    pub async fn query(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Vec<RecordBatch>> {
        Ok(match self.run(sql, params).await? {
            Output::Rows(schema, batches) if batches.is_empty() => {
                vec![RecordBatch::new_empty(schema)]
            }
            Output::Rows(_, batches) => batches,
            Output::Count(n) => vec![count_batch(n)?],
        })
    }

    /// Appends the rows of `batch` to `table` (columns in table order, any
    /// castable types), in the current transaction or an autocommit one:
    /// the Arrow-native bulk path, with the same constraint checks as
    /// INSERT.
    pub async fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<u64> {
        let table = table.to_string();
        let batch = batch.clone();
        let scope = self.in_transaction_scope(|s| {
            Box::pin(async move {
                let Some(provider) = s.tables.get(&table).cloned() else {
                    return Err(ErrorKind::UndefinedTable { name: table }.into());
                };
                let rows = provider.conform(&batch)?;
                if crate::triggers::any(&s.catalog, &table, crate::triggers::Event::Insert) {
                    let n = rows.num_rows() as u64;
                    insert::write_firing(s, &provider, vec![rows]).await?;
                    return Ok(n);
                }
                s.slot.with_sql(|t| provider.store(t, &rows))
            })
        });
        BigStack::new(scope).await
    }

    /// Runs one query and streams its rows. Only a single SELECT/EXPLAIN is
    /// accepted; in autocommit mode its snapshot is fixed when the stream is
    /// created.
    pub async fn query_stream(
        &mut self,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<SendableRecordBatchStream> {
        BigStack::new(self.query_stream_on_stack(sql, params)).await
    }

    async fn query_stream_on_stack(
        &mut self,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<SendableRecordBatchStream> {
        let mut statements = self.parse(sql)?;
        let (Some(Parsed::Sql(stmt)), true) = (statements.pop(), statements.is_empty()) else {
            return Err(
                ErrorKind::InvalidArgument("query_stream takes exactly one query".into()).into(),
            );
        };
        let stmt = *stmt;
        let text = stmt.to_string();
        let stream = self
            .in_transaction_scope(|s| Box::pin(s.stream_one(stmt, params)))
            .await
            .map_err(|e| e.in_statement(&text))?;
        Ok(stream)
    }

    async fn stream_one(
        &mut self,
        stmt: DFStatement,
        params: &[ScalarValue],
    ) -> Result<SendableRecordBatchStream> {
        crate::exposed_names::check(&stmt)?;
        let (plan, names) = output_names::plan(self, stmt, params).await?;
        if matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) {
            return Err(ErrorKind::InvalidArgument("query_stream runs queries only".into()).into());
        }
        let df = self.ctx.execute_logical_plan(plan).await?;
        let task = Arc::new(df.task_ctx());
        let physical = df.create_physical_plan().await?;
        // The stream may be read after this statement's (autocommit)
        // transaction ended: open every scan now, in it.
        bind_scans(&physical)?;
        let stream = big_stack_stream(datafusion::physical_plan::execute_stream(physical, task)?);
        Ok(match names {
            Some(names) => output_names::rename_stream(stream, &names),
            None => stream,
        })
    }

    pub(crate) async fn run_one(
        &mut self,
        stmt: DFStatement,
        params: &[ScalarValue],
    ) -> Result<Output> {
        if let DFStatement::Statement(s) = &stmt {
            match s.as_ref() {
                SqlStatement::StartTransaction { modes, .. } => {
                    let read_only = read_only_mode(modes).unwrap_or(false);
                    return self.begin(read_only).map(|()| Output::Count(0));
                }
                SqlStatement::Set(Set::SetTransaction {
                    modes,
                    snapshot: None,
                    session: false,
                }) => return self.set_transaction(modes).map(|()| Output::Count(0)),
                SqlStatement::Commit { .. } => return self.commit().map(|()| Output::Count(0)),
                SqlStatement::Rollback {
                    savepoint: None, ..
                } => {
                    return self.rollback().map(|()| Output::Count(0));
                }
                _ => {}
            }
        }
        self.in_transaction_scope(|s| Box::pin(s.dispatch(stmt, params)))
            .await
    }

    /// Runs `f` inside the explicit transaction or an autocommit one, with
    /// statement-level rollback on failure.
    pub(crate) async fn in_transaction_scope<'a, T>(
        &'a mut self,
        f: impl FnOnce(&'a mut Self) -> futures::future::BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        let autocommit = !self.explicit;
        // A statement dropped while its triggers ran (cancelled, timed
        // out) left their names behind; every statement starts with none.
        self.firing_triggers.clear();
        self.raise.set_active(false);
        if autocommit {
            self.slot.put(self.engine.begin())?;
        }
        let savepoint = self.slot.with(|t| Ok(t.savepoint()))?;
        let slot = self.slot.clone();
        let mut unfinished = Unfinished {
            slot: slot.clone(),
            savepoint: (!autocommit).then_some(savepoint),
            stale: self.stale.clone(),
            finished: false,
        };
        let result = match self.sync_catalog().await {
            Ok(()) => f(self).await,
            Err(e) => Err(e),
        };
        unfinished.finished = true;
        match (result, autocommit) {
            (Ok(out), true) => match slot.take()? {
                Some(txn) => {
                    txn.commit()?;
                    Ok(out)
                }
                None => Ok(out),
            },
            (Ok(out), false) => Ok(out),
            (Err(e), true) => {
                slot.take()?;
                Err(e)
            }
            (Err(e), false) => {
                slot.with(|t| {
                    t.rollback_to(savepoint);
                    Ok(())
                })?;
                Err(e)
            }
        }
    }

    fn checkpoint(&mut self) -> Result<()> {
        if self.explicit {
            return Err(ErrorKind::TransactionState(
                "CHECKPOINT cannot run inside a transaction".into(),
            )
            .into());
        }
        Ok(self.engine.checkpoint()?)
    }

    /// `REINDEX`, with the catalog of the statement's transaction.
    async fn reindex(&mut self, name: Option<String>) -> Result<Output> {
        self.in_transaction_scope(|s| {
            Box::pin(async move { crate::ddl::reindex(s, name.as_deref()) })
        })
        .await
        .map(|()| Output::Count(0))
    }

    /// `BEGIN [READ ONLY]`.
    fn begin(&mut self, read_only: bool) -> Result<()> {
        if self.explicit {
            return Err(ErrorKind::TransactionState(
                "a transaction is already in progress; COMMIT or ROLLBACK it first".into(),
            )
            .into());
        }
        let txn = if read_only {
            self.engine.begin_read_only()
        } else {
            self.engine.begin()
        };
        self.slot.put(txn)?;
        self.explicit = true;
        Ok(())
    }

    /// `SET TRANSACTION READ ONLY | READ WRITE`: changes the explicit
    /// transaction (read-write only before its first query); outside one it
    /// does nothing, as in PostgreSQL (which warns). Isolation levels are
    /// accepted: every transaction is snapshot isolation.
    fn set_transaction(&mut self, modes: &[TransactionMode]) -> Result<()> {
        match read_only_mode(modes) {
            Some(read_only) if self.explicit => self
                .slot
                .with(|t| t.set_read_only(read_only))
                .map_err(|e| match e {
                    EngineError::InvalidArgument(m) => ErrorKind::ActiveSqlTransaction(m).into(),
                    other => Error::from(other),
                }),
            _ => Ok(()),
        }
    }

    fn commit(&mut self) -> Result<()> {
        if !self.explicit {
            return Err(
                ErrorKind::TransactionState("there is no transaction in progress".into()).into(),
            );
        }
        self.explicit = false;
        match self.slot.take()? {
            Some(txn) => {
                txn.commit()?;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn rollback(&mut self) -> Result<()> {
        if !self.explicit {
            return Err(
                ErrorKind::TransactionState("there is no transaction in progress".into()).into(),
            );
        }
        self.explicit = false;
        self.slot.take()?;
        Ok(())
    }

    /// Runs one statement inside the transaction scope (also the
    /// statements of trigger bodies, `triggers.rs`).
    pub(crate) async fn dispatch(
        &mut self,
        mut stmt: DFStatement,
        params: &[ScalarValue],
    ) -> Result<Output> {
        statement_cache::forget_on_settings(self, &stmt);
        crate::exposed_names::check(&stmt)?;
        // The statements the session runs itself get the dialect's
        // rewrites here; the others in `plan`.
        let fires_insert_triggers = matches!(&stmt, DFStatement::Statement(s)
            if matches!(s.as_ref(), SqlStatement::Insert(i) if insert::fires(self, i)));
        if runs_in_session(&stmt) || fires_insert_triggers {
            crate::dialect::rewrite(&mut stmt, self.dialect);
        }
        // An explicit value for a GENERATED ALWAYS column is refused, then
        // `DEFAULT` in VALUES becomes each column's default expression.
        if let DFStatement::Statement(s) = &mut stmt
            && let SqlStatement::Insert(insert) = s.as_mut()
        {
            let overriding = identity::take_overriding(insert);
            identity::check_insert(&self.catalog, insert, overriding)?;
            identity::fill_defaults(&self.catalog, insert);
        }
        if self.dialect == Dialect::Sqlite
            && let DFStatement::Statement(s) = &mut stmt
            && let SqlStatement::Insert(insert) = s.as_mut()
            && let TableObject::TableName(name) = &insert.table
            && let Some(meta) = crate::schemas::resolve(&self.catalog, name)
                .ok()
                .and_then(|n| self.catalog.table(&n))
        {
            crate::upsert::sqlite_conflict_clause(insert, meta);
        }
        if let DFStatement::Explain(e) = &stmt
            && let DFStatement::Statement(inner) = e.statement.as_ref()
            && matches!(
                inner.as_ref(),
                SqlStatement::Delete(_) | SqlStatement::Update(_)
            )
        {
            return dml::explain(self, inner, params).await;
        }
        if let DFStatement::Reset(ResetStatement::Variable(name)) = &stmt
            && let Some(out) = self.reset_variable(&name.to_string())
        {
            return out;
        }
        if let DFStatement::Statement(s) = &stmt {
            if let Some(out) = self.set_variable(s) {
                return out;
            }
            if let Some(out) = crate::introspect::run(self, s) {
                return out;
            }
            match s.as_ref() {
                SqlStatement::Delete(d) => return dml::delete(self, d, params).await,
                SqlStatement::Update(u) => return dml::update(self, u, params).await,
                SqlStatement::Merge(m) => return crate::merge::run(self, m, params).await,
                SqlStatement::Insert(i) if insert::needs_session(i) || fires_insert_triggers => {
                    return insert::run(self, i, params).await;
                }
                SqlStatement::CreateTrigger(ct) => {
                    return crate::triggers::create(self, ct).map(|()| Output::Count(0));
                }
                SqlStatement::DropTrigger(d) => {
                    return crate::triggers::drop(self, d).map(|()| Output::Count(0));
                }
                SqlStatement::Truncate(t) => {
                    return truncate::run(self, t).map(|()| Output::Count(0));
                }
                SqlStatement::Explain { statement, .. }
                    if matches!(
                        statement.as_ref(),
                        SqlStatement::Delete(_) | SqlStatement::Update(_)
                    ) =>
                {
                    return dml::explain(self, statement, params).await;
                }
                SqlStatement::CreateIndex(c) => {
                    return ddl::create_index(self, c).map(|()| Output::Count(0));
                }
                SqlStatement::AlterTable(a) => {
                    return alter::alter_table(self, a).await.map(|()| Output::Count(0));
                }
                SqlStatement::CreateSequence {
                    name,
                    if_not_exists,
                    sequence_options,
                    temporary: false,
                    owned_by: None,
                    ..
                } => {
                    return identity::create_sequence(self, name, *if_not_exists, sequence_options)
                        .map(|()| Output::Count(0));
                }
                SqlStatement::Drop {
                    object_type: ObjectType::Sequence,
                    names,
                    if_exists,
                    ..
                } => {
                    return identity::drop_sequence(self, names, *if_exists)
                        .map(|()| Output::Count(0));
                }
                SqlStatement::CreateSchema {
                    schema_name,
                    if_not_exists,
                    with: None,
                    options: None,
                    default_collate_spec: None,
                    clone: None,
                } => {
                    return crate::schemas::create(self, schema_name, *if_not_exists)
                        .map(|()| Output::Count(0));
                }
                SqlStatement::Drop {
                    object_type: ObjectType::Schema,
                    names,
                    if_exists,
                    cascade,
                    ..
                } => {
                    let (names, if_exists, cascade) = (names.clone(), *if_exists, *cascade);
                    return crate::schemas::drop(self, &names, if_exists, cascade)
                        .await
                        .map(|()| Output::Count(0));
                }
                SqlStatement::Pragma { name, .. } => {
                    return crate::pragma::run(&self.engine, name);
                }
                SqlStatement::Drop {
                    object_type: ObjectType::Index,
                    names,
                    if_exists,
                    ..
                } => {
                    return ddl::drop_index(self, names, *if_exists).map(|()| Output::Count(0));
                }
                _ => {}
            }
        }
        if let Some(out) = statement_cache::point_query(self, &stmt, params).await? {
            return Ok(out);
        }
        let ast = match &stmt {
            DFStatement::Statement(s) if !matches!(s.as_ref(), SqlStatement::Query(_)) => {
                Some(s.as_ref().clone())
            }
            _ => None,
        };
        let stmt = ddl::plannable(stmt)?;
        let (plan, names) = output_names::plan(self, stmt, params).await?;
        match (plan, names) {
            (LogicalPlan::Ddl(ddl), _) => self.run_ddl(ddl, ast).await,
            (plan, None) => self.run_plan(plan).await,
            (plan, Some(names)) => output_names::rename_output(self.run_plan(plan).await?, &names),
        }
    }

    pub(crate) async fn plan(
        &mut self,
        stmt: DFStatement,
        params: &[ScalarValue],
    ) -> Result<LogicalPlan> {
        let mut stmt = stmt;
        crate::dialect::rewrite(&mut stmt, self.dialect);
        let plan = statement_cache::logical_plan(self, stmt).await?;
        // COPY … TO is the one statement that writes files (`limits.rs`).
        let mut targets = Vec::new();
        plan.apply(|p| {
            if let LogicalPlan::Copy(c) = p {
                targets.push(c.output_url.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        for target in &targets {
            limits::check_write(target, self.external_access)?;
        }
        crate::files::check_reads(&plan, self.external_access)?;
        if params.is_empty() {
            Ok(plan)
        } else {
            Ok(plan.with_param_values(ParamValues::from(params.to_vec()))?)
        }
    }

    async fn run_ddl(&mut self, ddl: DdlStatement, ast: Option<SqlStatement>) -> Result<Output> {
        match ddl {
            DdlStatement::CreateMemoryTable(c) => ddl::create_table(self, c, ast).await,
            DdlStatement::DropTable(d) => ddl::drop_table(self, d, ast.as_ref()),
            DdlStatement::CreateView(v) => ddl::create_view(self, v, ast),
            DdlStatement::DropView(v) => ddl::drop_view(self, v),
            DdlStatement::CreateExternalTable(c) => crate::files::create_external(self, c).await,
            other => Err(ErrorKind::NotSupported(other.name().to_string()).into()),
        }?;
        Ok(Output::Count(0))
    }

    pub(crate) async fn run_plan(&mut self, plan: LogicalPlan) -> Result<Output> {
        // Plans built outside `plan` (DML's row-finding SELECTs, INSERT's
        // rows, upserts) obey the file-access setting too.
        crate::files::check_reads(&plan, self.external_access)?;
        let is_dml = matches!(plan, LogicalPlan::Dml(_) | LogicalPlan::Copy(_));
        let df = self.ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        if is_dml {
            return Ok(Output::Count(sum_counts(&batches)));
        }
        Ok(Output::Rows(schema, batches))
    }

    /// Makes the DataFusion context reflect the transaction's catalog.
    pub(crate) async fn sync_catalog(&mut self) -> Result<()> {
        let blob = self.slot.with(|t| t.catalog())?;
        if self.stale.swap(false, Ordering::Relaxed) {
            self.synced = None;
        }
        if self.synced.as_ref().is_some_and(|s| Arc::ptr_eq(s, &blob)) {
            return Ok(());
        }
        let catalog = Catalog::decode(&blob)?;
        self.statements.clear();
        for name in self.registered.drain(..) {
            self.ctx.deregister_table(name)?;
        }
        crate::schemas::sync(&self.ctx, &catalog)?;
        // Tables whose definition, metadata and indexes are unchanged keep
        // their provider, so views planned over them stay valid.
        let old_tables = std::mem::take(&mut self.tables);
        let mut changed: HashSet<String> = old_tables
            .keys()
            .filter(|n| catalog.table(n).is_none())
            .cloned()
            .collect();
        for meta in &catalog.tables {
            let def = self.slot.with(|t| t.table_by_id(meta.table_id))?;
            let indexes = table_indexes(&catalog, meta);
            // The engine learns of every index (nothing is built): its
            // checkpoints then persist their runs, so a first use after a
            // reopen rebuilds nothing.
            for index in &indexes {
                self.engine().declare_index(meta.table_id, &index.columns)?;
            }
            let foreign_keys = self
                .slot
                .with_sql(|t| crate::foreign_keys::ForeignKeys::resolve(&catalog, meta, &def, t))?;
            let table = match old_tables.get(&meta.name) {
                Some(old)
                    if *old.def() == def
                        && old.meta() == meta
                        && old.indexes() == indexes.as_slice()
                        && *old.foreign_keys() == foreign_keys =>
                {
                    old.clone()
                }
                _ => {
                    changed.insert(meta.name.clone());
                    let df_schema = DFSchema::try_from(def.schema.as_ref().clone())?;
                    let mut defaults = HashMap::new();
                    for c in &meta.columns {
                        if let Some(sql) = &c.default {
                            defaults
                                .insert(c.name.clone(), self.ctx.parse_sql_expr(sql, &df_schema)?);
                        }
                    }
                    let checks = crate::checks::Checks::plan(
                        &self.ctx,
                        &meta.name,
                        &def.schema,
                        &meta.checks,
                    )?;
                    Arc::new(
                        EntiTable::new(
                            self.slot.clone(),
                            def,
                            meta.clone(),
                            defaults,
                            indexes,
                            checks,
                        )
                        .with_foreign_keys(foreign_keys),
                    )
                }
            };
            table.set_insert_triggers(crate::triggers::any(
                &catalog,
                &meta.name,
                crate::triggers::Event::Insert,
            ));
            let name = crate::schemas::table_ref(&catalog, &meta.name);
            // A stored table takes its name from this connection's external
            // table of that name (another connection may have created it):
            // registering over it would fail every statement from now on.
            self.ctx.deregister_table(name.clone())?;
            self.ctx.register_table(name.clone(), table.clone())?;
            self.tables.insert(meta.name.clone(), table);
            self.registered.push(name);
        }
        self.sync_views(&catalog, &changed).await?;
        self.catalog = Arc::new(catalog);
        crate::info_schema::refresh(&self.constraint_catalog, &self.catalog);
        self.synced = Some(blob);
        Ok(())
    }

    /// Registers the catalog's views. A view keeps its plan while its SQL
    /// and everything it reads (tables in `changed` are new or altered) stay
    /// the same, so creating one view plans only that view, not all of them
    /// again (chains of views were quadratic). The others are planned in
    /// passes, so a view may be defined before a view it uses; one that
    /// still cannot be planned (its tables are gone) is skipped: using it
    /// reports the missing relation instead of failing every statement.
    async fn sync_views(&mut self, catalog: &Catalog, changed: &HashSet<String>) -> Result<()> {
        let old = std::mem::take(&mut self.views);
        let mut valid: HashSet<&str> = catalog
            .views
            .iter()
            .filter(|v| old.get(&v.name).is_some_and(|c| c.sql == v.sql))
            .map(|v| v.name.as_str())
            .collect();
        loop {
            let before = valid.len();
            let snapshot = valid.clone();
            valid.retain(|name| {
                old.get(*name).is_some_and(|c| {
                    c.deps.iter().all(|d| {
                        !changed.contains(d)
                            && (self.tables.contains_key(d) || snapshot.contains(d.as_str()))
                    })
                })
            });
            if valid.len() == before {
                break;
            }
        }
        let mut pending = Vec::new();
        for view in &catalog.views {
            match old.get(&view.name) {
                Some(cached) if valid.contains(view.name.as_str()) => {
                    let name = crate::schemas::table_ref(catalog, &view.name);
                    self.ctx.deregister_table(name.clone())?;
                    self.ctx
                        .register_table(name.clone(), cached.provider.clone())?;
                    self.registered.push(name);
                    self.views.insert(view.name.clone(), cached.clone());
                }
                _ => pending.push(view),
            }
        }
        while !pending.is_empty() {
            let mut failed = Vec::new();
            for view in pending.iter().copied() {
                let planned = BigStack::new(self.ctx.state().create_logical_plan(&view.sql)).await;
                let Ok(plan) = planned else {
                    failed.push(view);
                    continue;
                };
                // The plan inlines the views it reads, so the relations
                // named in the SQL count too.
                let mut deps = Vec::new();
                if let Ok(statements) = crate::stack::parse_sql(&view.sql) {
                    for statement in &statements {
                        if let DFStatement::Statement(st) = statement {
                            let _ = visit_relations(st.as_ref(), |name| {
                                if let Ok(name) = crate::schemas::resolve(catalog, name)
                                    && catalog.has_relation(&name)
                                {
                                    deps.push(name);
                                }
                                ControlFlow::<()>::Continue(())
                            });
                        }
                    }
                }
                plan.apply_with_subqueries(|p| {
                    if let LogicalPlan::TableScan(scan) = p
                        && let Ok(name) = crate::schemas::resolve_ref(catalog, &scan.table_name)
                    {
                        deps.push(name);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })?;
                let provider: Arc<dyn TableProvider> =
                    Arc::new(ViewTable::new(plan, Some(view.sql.clone())));
                let name = crate::schemas::table_ref(catalog, &view.name);
                self.ctx.deregister_table(name.clone())?;
                self.ctx.register_table(name.clone(), provider.clone())?;
                self.registered.push(name);
                self.views.insert(
                    view.name.clone(),
                    CachedView {
                        sql: view.sql.clone(),
                        provider,
                        deps,
                    },
                );
            }
            if failed.len() == pending.len() {
                break;
            }
            pending = failed;
        }
        Ok(())
    }
}

/// A planned view and the relations its plan reads.
#[derive(Clone)]
pub(crate) struct CachedView {
    sql: String,
    pub(crate) provider: Arc<dyn TableProvider>,
    deps: Vec<String>,
}

/// One parsed statement.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// `CHECKPOINT` (not known to sqlparser).
    Checkpoint,
    /// `REINDEX [INDEX | TABLE] [name]` (not known to sqlparser).
    Reindex(Option<String>),
    /// `COPY … FROM` (not known to DataFusion's parser; `copy/`).
    CopyFrom(Box<crate::copy::CopyFrom>),
    /// Anything sqlparser understands.
    Sql(Box<DFStatement>),
}

impl Parsed {
    fn text(&self) -> String {
        match self {
            Parsed::Checkpoint => "CHECKPOINT".into(),
            Parsed::Reindex(None) => "REINDEX".into(),
            Parsed::Reindex(Some(name)) => format!("REINDEX {name}"),
            Parsed::CopyFrom(c) => c.text.clone(),
            Parsed::Sql(s) => crate::text_rewrite::display(s.to_string()),
        }
    }
}

/// Parses `sql` into statements. Statements sqlparser does not know
/// (`CHECKPOINT`) are recognised by splitting the text at the `;` tokens and
/// parsing each piece on its own; the pieces are cut from the original text
/// (re-printing tokens would lose the escaping of `'x''y'`). Statements
/// nested too deeply are refused here (`stack.rs`).
pub(crate) fn parse(sql: &str) -> Result<Vec<Parsed>> {
    // Errors quote the text as the user wrote it, not the rewrite.
    let original = sql;
    let rewritten = crate::text_rewrite::postgres_text(sql).map_err(|e| e.in_statement(sql))?;
    let sql: &str = &rewritten;
    let statements = match crate::stack::parse_sql(sql) {
        Ok(statements) => statements
            .into_iter()
            .map(|s| Parsed::Sql(Box::new(s)))
            .collect(),
        Err(_) => parse_pieces(sql)?,
    };
    let mut statements = statements;
    for statement in &mut statements {
        if let Parsed::Sql(s) = statement {
            check_depth(s).map_err(|e| e.in_statement(original))?;
            crate::placeholders::normalize(s).map_err(|e| e.in_statement(original))?;
        }
    }
    Ok(statements)
}

/// Parses `sql`, which the session wrote: one statement sqlparser knows.
pub(crate) fn parse_one(sql: &str) -> Result<DFStatement> {
    let mut statements = parse(sql)?;
    match (statements.pop(), statements.is_empty()) {
        (Some(Parsed::Sql(s)), true) => Ok(*s),
        _ => Err(ErrorKind::Plan(format!("not one statement: {sql}")).into()),
    }
}

fn parse_pieces(sql: &str) -> Result<Vec<Parsed>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Error::from(ErrorKind::Syntax(e.to_string())).in_statement(sql))?;
    let semicolons: Vec<(u64, u64)> = tokens
        .iter()
        .filter(|t| t.token == Token::SemiColon)
        .map(|t| (t.span.start.line, t.span.start.column))
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut cuts = byte_offsets(sql, &semicolons);
    cuts.push(sql.len());
    for end in cuts {
        let text = sql.get(start..end).unwrap_or_default().trim();
        start = end + 1;
        if text.is_empty() {
            continue;
        }
        if text.eq_ignore_ascii_case("checkpoint") {
            out.push(Parsed::Checkpoint);
            continue;
        }
        if let Some(reindex) = crate::ddl::parse_reindex(text) {
            out.push(reindex.map_err(|e| e.in_statement(text))?);
            continue;
        }
        let statements = match crate::stack::parse_sql(text) {
            Ok(statements) => statements,
            Err(e) => match crate::copy::parse(text) {
                Some(copy) => {
                    out.push(copy.map_err(|e| e.in_statement(text))?);
                    continue;
                }
                None => return Err(Error::from(e).in_statement(text)),
            },
        };
        out.extend(statements.into_iter().map(|s| Parsed::Sql(Box::new(s))));
    }
    Ok(out)
}

/// The byte offsets of the (ascending, 1-based line/column) `locations` in
/// `sql`, counted as sqlparser's tokenizer counts them (columns in chars).
pub(crate) fn byte_offsets(sql: &str, locations: &[(u64, u64)]) -> Vec<usize> {
    let mut out = Vec::with_capacity(locations.len());
    let mut want = locations.iter().peekable();
    let (mut line, mut column) = (1u64, 1u64);
    for (i, ch) in sql.char_indices() {
        while want.next_if(|l| **l < (line, column)).is_some() {}
        if want.next_if(|l| **l == (line, column)).is_some() {
            out.push(i);
        }
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    out
}

fn sum_counts(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.columns().first())
        .filter_map(|c| c.as_primitive_opt::<UInt64Type>())
        .map(|c| c.iter().flatten().sum::<u64>())
        .sum()
}

/// A one-row `count` batch, the result of DML.
pub fn count_batch(n: u64) -> Result<RecordBatch> {
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("count", arrow::datatypes::DataType::UInt64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![Arc::new(arrow::array::UInt64Array::from(vec![n])) as Arc<dyn Array>],
    )
    .map_err(|e| ErrorKind::Execution(e.to_string()).into())
}

/// Binds every EntiDB scan of `plan` to the current transaction (see
/// [`crate::provider::EntiScanExec::bind`]).
fn bind_scans(plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Result<()> {
    if let Some(scan) = plan.downcast_ref::<crate::provider::EntiScanExec>() {
        scan.bind()?;
    }
    for child in plan.children() {
        bind_scans(child)?;
    }
    Ok(())
}

/// The access mode among transaction modes: `Some(true)` for READ ONLY,
/// `Some(false)` for READ WRITE, `None` when not given (the last one wins).
fn read_only_mode(modes: &[TransactionMode]) -> Option<bool> {
    modes.iter().rev().find_map(|m| match m {
        TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => Some(true),
        TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => Some(false),
        TransactionMode::IsolationLevel(_) => None,
    })
}

/// DELETE, UPDATE, MERGE and INSERT … RETURNING/ON CONFLICT (also under
/// EXPLAIN), which the session evaluates itself instead of planning.
fn runs_in_session(stmt: &DFStatement) -> bool {
    let inner = match stmt {
        DFStatement::Statement(s) => s.as_ref(),
        DFStatement::Explain(e) => match e.statement.as_ref() {
            DFStatement::Statement(s) => s.as_ref(),
            _ => return false,
        },
        _ => return false,
    };
    match inner {
        SqlStatement::Delete(_) | SqlStatement::Update(_) | SqlStatement::Merge(_) => true,
        SqlStatement::Insert(i) => insert::needs_session(i),
        SqlStatement::Explain { statement, .. } => matches!(
            statement.as_ref(),
            SqlStatement::Delete(_) | SqlStatement::Update(_)
        ),
        _ => false,
    }
}
