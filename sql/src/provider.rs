//! EntiDB tables as DataFusion `TableProvider`s.
//!
//! [`EntiTable`] answers `scan` with an [`EntiScanExec`] that streams the
//! session transaction's snapshot (plus its own writes) straight from the
//! engine's columnar chunks: only projected columns are read, row groups are
//! skipped by sequence range and by min/max statistics of the pushed-down
//! filters (`Inexact`), and a `LIMIT` stops the stream early. `insert_into`
//! returns a `DataSinkExec` whose [`EntiSink`] writes into the session's
//! transaction when the plan executes — never while planning.
//!
//! DELETE and UPDATE are not implemented here on purpose: DataFusion 55 calls
//! `delete_from`/`update` with an empty filter list for subquery predicates
//! and builds them during EXPLAIN. The session evaluates those statements
//! itself (see `dml.rs`) through a *keyed* provider ([`EntiTable::keyed`]) that
//! appends the hidden row key as a last column.

use crate::error::{ErrorKind, sql_to_df, to_df};
use crate::pruning::{is_prunable, row_group_filter};
use crate::slot::TxnSlot;
use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use entidb_catalog::TableMeta;
use entidb_engine::schema::append_fields;
use entidb_engine::{ScanRequest, TableDef};
use futures::StreamExt;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

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
    keyed: bool,
}

impl EntiTable {
    /// A provider for `def`/`meta` with column defaults already planned.
    pub fn new(
        slot: Arc<TxnSlot>,
        def: TableDef,
        meta: TableMeta,
        defaults: HashMap<String, Expr>,
    ) -> Self {
        Self {
            schema: nullable(&def.schema),
            slot,
            def,
            meta,
            defaults,
            keyed: false,
        }
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
            keyed: true,
        }
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
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let nuser = self.def.schema.fields().len();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let include_key = self.keyed && wanted.contains(&nuser);
        let user: Vec<usize> = wanted.iter().copied().filter(|c| *c < nuser).collect();
        // Output order must follow `wanted`; the engine returns user columns
        // in `user` order followed by the key, which matches as long as the
        // key is requested last (DataFusion projects in schema order).
        let schema = Arc::new(self.schema.project(&wanted)?);
        let names = self.column_names();
        let request = ScanRequest {
            projection: Some(user.clone()),
            include_key,
            row_group_filter: row_group_filter(filters, &names),
        };
        let pushed: Vec<String> = filters
            .iter()
            .filter(|f| is_prunable(f, &names))
            .map(|f| f.to_string())
            .collect();
        Ok(Arc::new(EntiScanExec::new(
            self.slot.clone(),
            self.def.clone(),
            schema,
            request,
            pushed,
            limit,
        )))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let names = self.column_names();
        Ok(filters
            .iter()
            .map(|f| {
                if is_prunable(f, &names) {
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
        let sink = EntiSink::new(self.slot.clone(), self.def.clone(), self.meta.clone());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// The physical scan of an EntiDB table; shows in EXPLAIN as `EntiScan`.
#[derive(Debug)]
pub struct EntiScanExec {
    slot: Arc<TxnSlot>,
    def: TableDef,
    schema: SchemaRef,
    request: ScanRequest,
    pushed: Vec<String>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl EntiScanExec {
    fn new(
        slot: Arc<TxnSlot>,
        def: TableDef,
        schema: SchemaRef,
        request: ScanRequest,
        pushed: Vec<String>,
        limit: Option<usize>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            slot,
            def,
            schema,
            request,
            pushed,
            limit,
            properties: Arc::new(properties),
        }
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
        let scan = self
            .slot
            .with_df(|t| t.scan(self.def.id, self.request.clone()))?;
        let schema = self.schema.clone();
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        let batches = scan
            .map(move |r| {
                r.map_err(to_df).and_then(|b| {
                    let options = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
                    RecordBatch::try_new_with_options(
                        schema.clone(),
                        b.columns().to_vec(),
                        &options,
                    )
                    .map_err(DataFusionError::from)
                })
            })
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
    meta: TableMeta,
    /// The table schema with every column nullable: NOT NULL is checked here,
    /// with a typed error, rather than by DataFusion.
    schema: SchemaRef,
}

impl EntiSink {
    fn new(slot: Arc<TxnSlot>, def: TableDef, meta: TableMeta) -> Self {
        Self {
            schema: nullable(&def.schema),
            slot,
            def,
            meta,
        }
    }
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
            arrow::compute::cast_with_options(column, field.data_type(), &options).map_err(|e| {
                crate::Error::from(ErrorKind::Execution(format!(
                    "column {}: {e}",
                    field.name()
                )))
            })?
        };
        out.push(column);
    }
    let options =
        RecordBatchOptions::new().with_row_count(Some(columns.first().map_or(0, |c| c.len())));
    RecordBatch::try_new_with_options(def.schema.clone(), out, &options)
        .map_err(|e| ErrorKind::Execution(e.to_string()).into())
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
        while let Some(batch) = data.next().await {
            let batch = conform(&self.def, &batch?).map_err(sql_to_df)?;
            count += self.slot.with_df(|t| t.insert(self.def.id, &batch))?;
        }
        crate::constraints::check_unique(&self.slot, &self.def, &self.meta).map_err(sql_to_df)?;
        Ok(count)
    }
}
