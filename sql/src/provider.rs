//! EntiDB tables as DataFusion `TableProvider`s.
//!
//! [`EntiTable`] answers `scan` with an [`EntiScanExec`] that streams the
//! session transaction's snapshot (plus its own writes) straight from the
//! engine's columnar chunks: only projected columns are read, row groups are
//! skipped by sequence range and by min/max statistics of the pushed-down
//! filters (`Inexact`), and a `LIMIT` stops the stream early.
//!
//! INDEXES. When a filter is answerable by an index (see `indexes.rs`), the
//! scan asks the engine for the rows of the chosen index's key ranges
//! instead of reading everything — and falls back to the full scan at run
//! time when the index names too many rows (a range over much of the
//! table). Equality / `IN` filters are reported `Exact`: the scan evaluates
//! all of them (as one physical predicate, over the projected columns plus
//! the ones the filters need) on whatever it returns, from the index or
//! not, then projects. Ranges are `Inexact`: the index only narrows.
//!
//! `insert_into` returns a `DataSinkExec` whose [`EntiSink`] writes into the
//! session's transaction when the plan executes — never while planning,
//! enforcing the table's UNIQUE column sets through the engine.
//!
//! DELETE and UPDATE are not implemented here on purpose: DataFusion 55 calls
//! `delete_from`/`update` with an empty filter list for subquery predicates
//! and builds them during EXPLAIN. The session evaluates those statements
//! itself (see `dml.rs`) through a *keyed* provider ([`EntiTable::keyed`]) that
//! appends the hidden row key as a last column.

use crate::checks::Checks;
use crate::error::{ErrorKind, sql_to_df, to_df};
use crate::foreign_keys::{DeferredCheck, ForeignKeys};
use crate::indexes::{IndexInfo, choose, is_exact, is_indexable, unique_sets};
use crate::pruning::{is_prunable, row_group_filter};
use crate::slot::TxnSlot;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use entidb_catalog::TableMeta;
use entidb_engine::schema::append_fields;
use entidb_engine::{
    Error as EngineError, IndexScanRequest, KeyRange, ScanRequest, TableDef, Transaction,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Name of the hidden row-key column exposed by keyed providers.
pub const KEY_COLUMN: &str = "__entidb_key";

/// One EntiDB table seen through the session's transaction.
#[derive(Debug)]
pub struct EntiTable {
    slot: Arc<TxnSlot>,
    def: TableDef,
    meta: TableMeta,
    schema: SchemaRef,
    defaults: HashMap<String, Expr>,
    indexes: Vec<IndexInfo>,
    checks: Arc<Checks>,
    foreign_keys: Arc<ForeignKeys>,
    keyed: bool,
    /// The table has INSERT triggers (set by the session at every catalog
    /// change): DataFusion's INSERT path ([`TableProvider::insert_into`])
    /// cannot fire them, so it refuses to write.
    insert_triggers: Arc<AtomicBool>,
}

impl EntiTable {
    /// A provider for `def`/`meta` with column defaults and CHECK
    /// constraints already planned.
    pub fn new(
        slot: Arc<TxnSlot>,
        def: TableDef,
        meta: TableMeta,
        defaults: HashMap<String, Expr>,
        indexes: Vec<IndexInfo>,
        checks: Checks,
    ) -> Self {
        Self {
            schema: nullable(&def.schema),
            slot,
            def,
            meta,
            defaults,
            indexes,
            checks: Arc::new(checks),
            foreign_keys: Arc::default(),
            keyed: false,
            insert_triggers: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The same table with its FOREIGN KEY constraints resolved.
    pub fn with_foreign_keys(mut self, foreign_keys: ForeignKeys) -> Self {
        self.foreign_keys = Arc::new(foreign_keys);
        self
    }

    /// The table's FOREIGN KEY constraints (it is the child).
    pub fn foreign_keys(&self) -> &ForeignKeys {
        &self.foreign_keys
    }

    /// Stores `batch` (conformed rows of the table) in `t`: the UNIQUE
    /// sets, the engine insert, then the FOREIGN KEY check.
    ///
    /// # Errors
    /// 23505, 23502, 23503, 40001.
    pub fn store(&self, t: &mut Transaction, batch: &RecordBatch) -> Result<u64, crate::Error> {
        let n = insert_rows(t, &self.def, &unique_sets(&self.indexes), batch)?;
        self.foreign_keys.verify(t, batch)?;
        Ok(n)
    }

    /// Builds a row batch of the table from `columns` (one per column, in
    /// order, of any castable type), checking NOT NULL and the CHECK
    /// constraints: what every SQL write path stores.
    ///
    /// # Errors
    /// A failed cast (22003, 22P02), 23502, 23514.
    pub fn conform_columns(&self, columns: &[ArrayRef]) -> Result<RecordBatch, crate::Error> {
        let batch = conform_columns(&self.def, columns)?;
        self.checks.verify(&batch)?;
        Ok(batch)
    }

    /// [`EntiTable::conform_columns`] of a batch's columns.
    ///
    /// # Errors
    /// As [`EntiTable::conform_columns`].
    pub fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, crate::Error> {
        self.conform_columns(batch.columns())
    }

    /// The table's indexes.
    pub fn indexes(&self) -> &[IndexInfo] {
        &self.indexes
    }

    /// The same table with the row key as an extra last column.
    pub fn keyed(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            def: self.def.clone(),
            meta: self.meta.clone(),
            schema: append_fields(
                &self.schema,
                [Field::new(KEY_COLUMN, DataType::Binary, false)],
            ),
            defaults: self.defaults.clone(),
            indexes: self.indexes.clone(),
            checks: self.checks.clone(),
            foreign_keys: self.foreign_keys.clone(),
            keyed: true,
            insert_triggers: self.insert_triggers.clone(),
        }
    }

    /// Records whether the table has INSERT triggers.
    pub(crate) fn set_insert_triggers(&self, on: bool) {
        self.insert_triggers.store(on, Ordering::Relaxed);
    }

    /// The engine definition.
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The catalog entry.
    pub fn meta(&self) -> &TableMeta {
        &self.meta
    }

    fn column_names(&self) -> Vec<String> {
        self.def
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}

#[async_trait]
impl TableProvider for EntiTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let nuser = self.def.schema.fields().len();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let names = self.column_names();
        let exact: Vec<Expr> = filters
            .iter()
            .filter(|f| is_exact(&self.indexes, f, &self.def.schema))
            .cloned()
            .collect();
        // Columns read: the projection, plus those the exact filters need.
        let mut read: Vec<usize> = wanted.clone();
        for f in &exact {
            for c in f.column_refs() {
                if let Ok(i) = self.schema.index_of(&c.name)
                    && !read.contains(&i)
                {
                    read.push(i);
                }
            }
        }
        // The engine returns user columns in request order, then the key.
        read.sort_by_key(|c| (*c >= nuser, *c));
        let include_key = self.keyed && read.contains(&nuser);
        let user: Vec<usize> = read.iter().copied().filter(|c| *c < nuser).collect();
        let read_schema = Arc::new(self.schema.project(&read)?);
        let schema = Arc::new(self.schema.project(&wanted)?);
        let output = wanted
            .iter()
            .map(|w| read.iter().position(|r| r == w).unwrap_or_default())
            .collect();
        let predicate = match conjunction(exact.iter().cloned()) {
            Some(expr) => {
                let df_schema = DFSchema::try_from(read_schema.as_ref().clone())?;
                Some(state.create_physical_expr(expr, &df_schema)?)
            }
            None => None,
        };
        let index =
            choose(&self.indexes, filters, &self.def.schema).map(|(info, ranges, points)| {
                IndexUse {
                    name: info.name,
                    columns: info.columns,
                    ranges,
                    points,
                }
            });
        let request = ScanRequest {
            projection: Some(user),
            include_key,
            row_group_filter: row_group_filter(filters, &names),
        };
        let pushed: Vec<String> = filters
            .iter()
            .filter(|f| !exact.contains(f) && is_prunable(f, &names))
            .map(|f| f.to_string())
            .collect();
        Ok(Arc::new(EntiScanExec {
            bound: Mutex::new(None),
            slot: self.slot.clone(),
            def: self.def.clone(),
            schema: schema.clone(),
            request,
            exact: Exact {
                index,
                filters: exact.iter().map(|f| f.to_string()).collect(),
            },
            finish: Arc::new(Finish {
                read_schema,
                schema: schema.clone(),
                predicate,
                output,
            }),
            pushed,
            limit,
            properties: Arc::new(plan_properties(schema)),
        }))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let names = self.column_names();
        Ok(filters
            .iter()
            .map(|f| {
                if is_exact(&self.indexes, f, &self.def.schema) {
                    TableProviderFilterPushDown::Exact
                } else if is_prunable(f, &names) || is_indexable(&self.indexes, f, &self.def.schema)
                {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(sql_to_df(
                ErrorKind::NotSupported(format!("INSERT {insert_op}")).into(),
            ));
        }
        if self.insert_triggers.load(Ordering::Relaxed) {
            // The session runs INSERTs into such tables itself; this path
            // (EXPLAIN ANALYZE INSERT, a plan built elsewhere) would skip
            // the triggers.
            return Err(sql_to_df(
                ErrorKind::NotSupported(format!(
                    "this INSERT into {}, which has triggers (they fire only for a plain INSERT)",
                    self.meta.name
                ))
                .into(),
            ));
        }
        let sink = EntiSink {
            schema: nullable(&self.def.schema),
            slot: self.slot.clone(),
            def: self.def.clone(),
            unique: unique_sets(&self.indexes),
            checks: self.checks.clone(),
            foreign_keys: self.foreign_keys.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Most rows a range filter reads through an index before a scan wins.
const RANGE_CANDIDATES: usize = 4096;

/// An index chosen for a scan.
#[derive(Debug, Clone)]
struct IndexUse {
    name: String,
    columns: Vec<usize>,
    ranges: Vec<KeyRange>,
    /// Equality / IN only.
    points: bool,
}

/// The filters a scan applies exactly (reported as `Exact` pushdown).
#[derive(Debug)]
struct Exact {
    /// The index that narrows the rows, when one applies.
    index: Option<IndexUse>,
    /// The filters, for EXPLAIN.
    filters: Vec<String>,
}

/// Turns the batches read into the batches returned.
#[derive(Debug)]
struct Finish {
    /// Columns read (projection plus the exact filters' columns).
    read_schema: SchemaRef,
    /// Columns returned.
    schema: SchemaRef,
    /// All exact filters, evaluated on every batch read.
    predicate: Option<Arc<dyn PhysicalExpr>>,
    /// Positions of the returned columns among the columns read.
    output: Vec<usize>,
}

/// The physical scan of an EntiDB table; shows in EXPLAIN as `EntiScan`.
#[derive(Debug)]
pub struct EntiScanExec {
    slot: Arc<TxnSlot>,
    def: TableDef,
    schema: SchemaRef,
    request: ScanRequest,
    exact: Exact,
    finish: Arc<Finish>,
    pushed: Vec<String>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
    /// The rows opened by [`EntiScanExec::bind`], for the next `execute`.
    bound: Mutex<Option<Bound>>,
}

/// The rows a scan reads: an index's, or a table scan's.
type Rows = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Rows opened ahead of `execute` (see [`EntiScanExec::bind`]).
struct Bound(Rows);

impl fmt::Debug for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bound")
    }
}

fn plan_properties(schema: SchemaRef) -> PlanProperties {
    PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )
}

impl EntiScanExec {
    /// Opens the rows now, in the current transaction, for the next
    /// `execute`. A plan whose stream outlives the statement's transaction
    /// (`query_stream` in autocommit: the stream is read after the
    /// transaction ended) binds its scans before the transaction ends; each
    /// scan then reads the snapshot of the statement, however late it is
    /// polled.
    ///
    /// # Errors
    /// As the scan's.
    pub fn bind(&self) -> Result<()> {
        let rows = self.open()?;
        let mut bound = self
            .bound
            .lock()
            .map_err(|_| DataFusionError::Internal("scan binding lock poisoned".into()))?;
        *bound = Some(Bound(rows));
        Ok(())
    }

    /// The rows of the scan in the current transaction.
    fn open(&self) -> Result<Rows> {
        let from_index = match &self.exact.index {
            Some(index) => self.index_rows(index)?,
            None => None,
        };
        Ok(match from_index {
            Some(batches) => Box::new(batches.into_iter().map(Ok)),
            None => {
                let scan = self
                    .slot
                    .with_df(|t| t.scan(self.def.id, self.request.clone()))?;
                Box::new(scan.map(|r| r.map_err(to_df)))
            }
        })
    }

    /// Committed and own rows from the index, or `None` when the index would
    /// return too large a share of the table (a scan is cheaper then).
    fn index_rows(&self, index: &IndexUse) -> Result<Option<Vec<RecordBatch>>> {
        self.slot.with_df(|t| {
            let estimate = t.row_estimate(self.def.id)? as usize;
            let request = IndexScanRequest {
                index: index.columns.clone(),
                ranges: index.ranges.clone(),
                projection: self.request.projection.clone(),
                include_key: self.request.include_key,
                // Counting candidates walks the index, so a range gives up
                // early: past 4,096 rows a scan with DataFusion's parallel
                // filter is the better plan anyway.
                max_candidates: Some(if index.points {
                    (estimate / 8).max(4096)
                } else {
                    RANGE_CANDIDATES
                }),
                build: index.points,
            };
            t.index_scan(self.def.id, &request)
        })
    }
}

impl Finish {
    /// Applies the exact filters and the output projection to one batch.
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let batch = RecordBatch::try_new_with_options(
            self.read_schema.clone(),
            batch.columns().to_vec(),
            &options,
        )?;
        let batch = match &self.predicate {
            Some(p) => {
                let mask = p.evaluate(&batch)?.into_array(batch.num_rows())?;
                let mask = mask.as_boolean_opt().ok_or_else(|| {
                    DataFusionError::Internal("filter did not produce booleans".into())
                })?;
                filter_record_batch(&batch, mask)?
            }
            None => batch,
        };
        let columns = self
            .output
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

impl DisplayAs for EntiScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "EntiScan: table={}, projection=[{}]",
            self.def.name,
            names.join(", ")
        )?;
        if let Some(index) = &self.exact.index {
            write!(f, ", index={}", index.name)?;
        }
        if !self.exact.filters.is_empty() {
            write!(f, ", filter=[{}]", self.exact.filters.join(", "))?;
        }
        if !self.pushed.is_empty() {
            write!(f, ", pruning=[{}]", self.pushed.join(", "))?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for EntiScanExec {
    fn name(&self) -> &str {
        "EntiScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "EntiScan has no partition {partition}"
            )));
        }
        let bound = self.bound.lock().ok().and_then(|mut b| b.take());
        let batches = match bound {
            Some(Bound(rows)) => rows,
            None => self.open()?,
        };
        let finish = self.finish.clone();
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        let batches = batches
            .map(move |r| r.and_then(|b| finish.apply(b)))
            .filter(|r| !matches!(r, Ok(b) if b.num_rows() == 0))
            .take_while(move |r| {
                let go = remaining > 0;
                if let Ok(b) = r {
                    remaining = remaining.saturating_sub(b.num_rows());
                }
                go
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batches),
        )))
    }
}

/// Writes inserted rows into the session's transaction.
#[derive(Debug)]
pub struct EntiSink {
    slot: Arc<TxnSlot>,
    def: TableDef,
    unique: Vec<Vec<usize>>,
    /// The table schema with every column nullable: NOT NULL is checked here,
    /// with a typed error, rather than by DataFusion.
    schema: SchemaRef,
    checks: Arc<Checks>,
    foreign_keys: Arc<ForeignKeys>,
}

impl DisplayAs for EntiSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntiSink: table={}", self.def.name)
    }
}

/// `schema` with every column nullable. Providers and sinks show DataFusion
/// this schema so that NOT NULL is enforced by [`conform`], with a typed
/// error (SQLSTATE 23502), instead of by DataFusion with an untyped one.
fn nullable(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Casts `batch`'s columns to the table's column types and checks NOT NULL.
pub fn conform(def: &TableDef, batch: &RecordBatch) -> Result<RecordBatch, crate::Error> {
    conform_columns(def, batch.columns())
}

/// Builds a batch of the table's schema from `columns` (one per table
/// column, in order, of any castable type), checking NOT NULL.
pub fn conform_columns(def: &TableDef, columns: &[ArrayRef]) -> Result<RecordBatch, crate::Error> {
    if columns.len() != def.schema.fields().len() {
        return Err(ErrorKind::Plan(format!(
            "table {} has {} columns but {} values were supplied",
            def.name,
            def.schema.fields().len(),
            columns.len()
        ))
        .into());
    }
    let mut out = Vec::with_capacity(columns.len());
    for (field, column) in def.schema.fields().iter().zip(columns) {
        if !field.is_nullable() && column.logical_nulls().is_some_and(|n| n.null_count() > 0) {
            return Err(ErrorKind::NotNullViolation {
                table: def.name.clone(),
                column: field.name().clone(),
            }
            .into());
        }
        let column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            let options = arrow::compute::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow::compute::cast_with_options(column, field.data_type(), &options)
                .map_err(|e| crate::Error::from(crate::error::cast_failure(field.name(), &e)))?
        };
        out.push(column);
    }
    let options =
        RecordBatchOptions::new().with_row_count(Some(columns.first().map_or(0, |c| c.len())));
    RecordBatch::try_new_with_options(def.schema.clone(), out, &options)
        .map_err(|e| ErrorKind::Execution(e.to_string()).into())
}

/// Inserts `batch` into the table, enforcing its UNIQUE column sets.
pub fn insert_rows(
    t: &mut Transaction,
    def: &TableDef,
    unique: &[Vec<usize>],
    batch: &RecordBatch,
) -> Result<u64, EngineError> {
    for set in unique {
        t.declare_unique(def.id, set)?;
    }
    t.insert(def.id, batch)
}

#[async_trait]
impl DataSink for EntiSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut count = 0;
        // A tree may come children first: the FOREIGN KEY check of a batch
        // whose parents are missing waits for the end of the statement.
        let mut deferred = DeferredCheck::default();
        while let Some(batch) = data.next().await {
            let batch = conform(&self.def, &batch?).map_err(sql_to_df)?;
            self.checks.verify(&batch).map_err(sql_to_df)?;
            count += self
                .slot
                .with_sql(|t| {
                    let n = insert_rows(t, &self.def, &self.unique, &batch)?;
                    deferred.check(&self.foreign_keys, t, &batch)?;
                    Ok(n)
                })
                .map_err(sql_to_df)?;
        }
        self.slot
            .with_sql(|t| deferred.finish(&self.foreign_keys, t))
            .map_err(sql_to_df)?;
        Ok(count)
    }
}
