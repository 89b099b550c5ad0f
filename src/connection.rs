//! [`Connection`] (an async SQL session) and its [`Transaction`] guard.

use crate::database::Shared;
use crate::row::{Row, Rows};
use crate::{Error, ErrorKind, Output, Prepared, Result};
use arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use entidb_sql::{Session, SessionOptions};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// How many times [`Connection::retry_on_conflict`] runs its closure.
pub const MAX_ATTEMPTS: usize = 10;

/// One SQL session: its own transaction, shared data.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> entidb::Result<()> {
/// let db = entidb::Database::open_in_memory()?;
/// let mut conn = db.connect();
/// conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)").await?;
/// conn.execute_with("INSERT INTO t VALUES ($1, $2)", entidb::params![1, "one"]).await?;
/// let name: String = conn.query_row("SELECT name FROM t", &[], |r| r.get(0)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Connection {
    pub(crate) session: Session,
    /// The database stays open while a connection is.
    _db: Arc<Shared>,
}

impl Connection {
    pub(crate) fn new(db: Arc<Shared>, options: SessionOptions) -> Self {
        Self {
            session: Session::with_options(db.engine.clone(), options),
            _db: db,
        }
    }

    /// Runs one or more statements; returns the rows affected by the last.
    ///
    /// # Errors
    /// The first failing statement's error, with its SQLSTATE and text.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// conn.execute("CREATE TABLE t (x INT)").await?;
    /// assert_eq!(conn.execute("INSERT INTO t VALUES (1), (2)").await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn execute(&mut self, sql: &str) -> Result<u64> {
        self.session.execute(sql, &[]).await
    }

    /// Like [`Connection::execute`], binding `$1`/`?1`/`?`, … to `params`
    /// ([`params!`](crate::params!)).
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// conn.execute("CREATE TABLE t (x INT, s TEXT)").await?;
    /// conn.execute_with("INSERT INTO t VALUES (?, ?)", entidb::params![1, "a"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn execute_with(&mut self, sql: &str, params: &[ScalarValue]) -> Result<u64> {
        self.session.execute(sql, params).await
    }

    /// Runs statements and returns the rows of the last one: at least one
    /// batch, so an empty result keeps its schema.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let batches = conn.query("SELECT 1 AS one WHERE false").await?;
    /// assert_eq!(batches[0].schema().field(0).name(), "one");
    /// # Ok(()) }
    /// ```
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.session.query(sql, &[]).await
    }

    /// Like [`Connection::query`], binding `$1`, `$2`, … to `params`.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let batches = conn.query_with("SELECT $1 + 1 AS n", entidb::params![41]).await?;
    /// assert_eq!(batches[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn query_with(
        &mut self,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        self.session.query(sql, params).await
    }

    /// Runs a query and returns its rows for typed access ([`Row::get`]).
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let rows = conn.query_rows("SELECT * FROM generate_series(1, 3) AS t(n)", &[]).await?;
    /// let sum: i64 = rows.iter().map(|r| r.get::<i64>("n")).sum::<Result<_, _>>()?;
    /// assert_eq!(sum, 6);
    /// # Ok(()) }
    /// ```
    pub async fn query_rows(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Rows> {
        let batches = self.session.query(sql, params).await?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => Arc::new(arrow::datatypes::Schema::empty()),
        };
        Ok(Rows::new(schema, batches))
    }

    /// The first row of a query, or `NoRows` (like rusqlite's
    /// `query_row` with the row returned).
    ///
    /// # Errors
    /// `NoRows` (P0002) when the query returns no row; as
    /// [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let row = conn.query_one("SELECT 2 * $1 AS n", entidb::params![21]).await?;
    /// assert_eq!(row.get::<i64>("n")?, 42);
    /// let none = conn.query_one("SELECT 1 WHERE false", &[]).await.unwrap_err();
    /// assert_eq!(none.sqlstate(), "P0002");
    /// # Ok(()) }
    /// ```
    pub async fn query_one(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Row> {
        first_row(self.query_rows(sql, params).await?)
    }

    /// Runs a query and maps its first row with `f` (rusqlite's
    /// `query_row`).
    ///
    /// # Errors
    /// `NoRows` (P0002) when the query returns no row; `f`'s error; as
    /// [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let (a, b): (i64, String) = conn
    ///     .query_row("SELECT 1, 'x'", &[], |r| Ok((r.get(0)?, r.get(1)?)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn query_row<T>(
        &mut self,
        sql: &str,
        params: &[ScalarValue],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        f(&self.query_one(sql, params).await?)
    }

    /// Appends the rows of an Arrow batch to `table` — the bulk-load path,
    /// with the checks of INSERT (NOT NULL, keys, UNIQUE). Runs in the open
    /// transaction, or commits on its own.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// use entidb::arrow::array::{Int64Array, RecordBatch};
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// conn.execute("CREATE TABLE t (x BIGINT)").await?;
    /// let batch = RecordBatch::try_from_iter([("x", std::sync::Arc::new(Int64Array::from(vec![1, 2])) as _)]).unwrap();
    /// assert_eq!(conn.append("t", &batch).await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<u64> {
        self.session.append(table, batch).await
    }

    /// Parses one statement for repeated execution. Point queries
    /// (`SELECT … FROM t WHERE k = $1`, `k` leading an index) then run
    /// without query planning.
    ///
    /// # Errors
    /// Syntax errors (a named placeholder such as `:name` is one), or more
    /// than one statement.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let p = conn.prepare("SELECT ? + ?")?;
    /// assert_eq!(conn.prepare("SELECT :name").unwrap_err().sqlstate(), "42601");
    /// # Ok(()) }
    /// ```
    pub fn prepare(&self, sql: &str) -> Result<Prepared> {
        self.session.prepare(sql)
    }

    /// Runs a prepared query with `$1`, `$2`, … bound to `params`.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let p = conn.prepare("SELECT $1 * 2 AS n")?;
    /// let batches = conn.query_prepared(&p, entidb::params![21]).await?;
    /// assert_eq!(batches[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn query_prepared(
        &mut self,
        statement: &Prepared,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        match self.session.run_prepared(statement, params).await? {
            Output::Rows(schema, batches) if batches.is_empty() => {
                Ok(vec![RecordBatch::new_empty(schema)])
            }
            Output::Rows(_, batches) => Ok(batches),
            Output::Count(n) => Ok(vec![entidb_sql::count_batch(n)?]),
        }
    }

    /// Runs a prepared statement; returns the rows affected.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// conn.execute("CREATE TABLE t (x INT)").await?;
    /// let insert = conn.prepare("INSERT INTO t VALUES (?)")?;
    /// for x in 0..3 {
    ///     conn.execute_prepared(&insert, entidb::params![x]).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn execute_prepared(
        &mut self,
        statement: &Prepared,
        params: &[ScalarValue],
    ) -> Result<u64> {
        Ok(match self.session.run_prepared(statement, params).await? {
            Output::Count(n) => n,
            Output::Rows(_, batches) => batches.iter().map(|b| b.num_rows() as u64).sum(),
        })
    }

    /// Runs one query and streams its result batches.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// use futures::StreamExt;
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let mut stream = conn.query_stream("SELECT * FROM generate_series(1, 100000)").await?;
    /// let mut rows = 0;
    /// while let Some(batch) = stream.next().await {
    ///     rows += batch?.num_rows();
    /// }
    /// assert_eq!(rows, 100000);
    /// # Ok(()) }
    /// ```
    pub async fn query_stream(&mut self, sql: &str) -> Result<SendableRecordBatchStream> {
        self.session.query_stream(sql, &[]).await
    }

    /// Runs a script statement by statement, returning every statement's
    /// output; it stops after the first failure, which is the last element.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let outputs = conn.run_script("CREATE TABLE t (x INT); SELECT nope; SELECT 1").await;
    /// assert_eq!(outputs.len(), 2);
    /// assert!(outputs[1].is_err());
    /// # Ok(()) }
    /// ```
    pub async fn run_script(&mut self, sql: &str) -> Vec<Result<Output>> {
        self.session.run_all(sql).await
    }

    /// The catalog (tables, views, indexes, sequences, constraints) as this
    /// connection sees it: inside `BEGIN … COMMIT` with the transaction's
    /// own DDL, otherwise the newest committed one.
    ///
    /// # Errors
    /// Engine failures, a catalog that does not decode (XX001).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// conn.execute("CREATE TABLE t (x INT); BEGIN; DROP TABLE t").await?;
    /// assert!(conn.catalog().await?.table("t").is_none());
    /// conn.execute("ROLLBACK").await?;
    /// assert!(conn.catalog().await?.table("t").is_some());
    /// # Ok(()) }
    /// ```
    pub async fn catalog(&mut self) -> Result<std::sync::Arc<entidb_catalog::Catalog>> {
        self.session.catalog().await
    }

    /// True inside `BEGIN … COMMIT`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// conn.execute("BEGIN").await?;
    /// assert!(conn.in_transaction());
    /// # Ok(()) }
    /// ```
    pub fn in_transaction(&self) -> bool {
        self.session.in_transaction()
    }

    /// Begins a transaction; the guard commits with
    /// [`Transaction::commit`] and rolls back when dropped without it.
    ///
    /// # Errors
    /// `TransactionState` (25000) when a transaction is already open.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// conn.execute("CREATE TABLE t (x INT)").await?;
    /// {
    ///     let mut tx = conn.transaction().await?;
    ///     tx.execute("INSERT INTO t VALUES (1)").await?;
    /// } // dropped: rolled back
    /// let mut tx = conn.transaction().await?;
    /// tx.execute("INSERT INTO t VALUES (2)").await?;
    /// tx.commit().await?;
    /// assert_eq!(conn.query_one("SELECT count(*) FROM t", &[]).await?.get::<i64>(0)?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.execute("BEGIN").await?;
        Ok(Transaction {
            conn: self,
            finished: false,
        })
    }

    /// Runs `f` in a transaction and commits it, running it again (up to
    /// [`MAX_ATTEMPTS`] times in all) while it or the commit fails with a
    /// retryable error (`Conflict`, 40001: a concurrent transaction changed
    /// the same rows first). Between attempts it waits a growing, jittered
    /// time ([`crate::engine::Backoff`]) so the winner can become visible. `f` must do all its work through the
    /// transaction it is given, so that a retry repeats all of it.
    ///
    /// # Errors
    /// `f`'s first non-retryable error, or the last conflict.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// conn.execute("CREATE TABLE c (id INT PRIMARY KEY, n BIGINT); INSERT INTO c VALUES (1, 0)").await?;
    /// let n: i64 = conn
    ///     .retry_on_conflict(async |tx| {
    ///         tx.execute("UPDATE c SET n = n + 1 WHERE id = 1").await?;
    ///         tx.query_row("SELECT n FROM c WHERE id = 1", &[], |r| r.get(0)).await
    ///     })
    ///     .await?;
    /// assert_eq!(n, 1);
    /// # Ok(()) }
    /// ```
    pub async fn retry_on_conflict<T>(
        &mut self,
        mut f: impl AsyncFnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 1;
        let mut backoff = entidb_engine::Backoff::new();
        loop {
            let mut tx = self.transaction().await?;
            let result = match f(&mut tx).await {
                Ok(value) => tx.commit().await.map(|()| value),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    sleep_async(backoff.next_delay()).await;
                }
                other => return other,
            }
        }
    }

    /// Registers a DataFusion scalar function for this connection's SQL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// use entidb::datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    /// use entidb::arrow::datatypes::DataType;
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let double = create_udf("double", vec![DataType::Int64], DataType::Int64, Volatility::Immutable,
    ///     std::sync::Arc::new(|args: &[ColumnarValue]| {
    ///         let a = args[0].clone().into_array(1)?;
    ///         let a = entidb::arrow::compute::cast(&a, &DataType::Int64)?;
    ///         let two = entidb::arrow::array::Int64Array::new_scalar(2);
    ///         Ok(ColumnarValue::Array(entidb::arrow::compute::kernels::numeric::mul(&a, &two)?))
    ///     }));
    /// conn.register_udf(double);
    /// let row = conn.query_one("SELECT double(21) AS n", &[]).await?;
    /// assert_eq!(row.get::<i64>("n")?, 42);
    /// # Ok(()) }
    /// ```
    pub fn register_udf(&self, udf: ScalarUDF) {
        self.session.context().register_udf(udf);
    }

    /// Registers a DataFusion aggregate function for this connection's SQL.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let conn = entidb::Database::open_in_memory()?.connect();
    /// let sum = entidb::datafusion::functions_aggregate::sum::sum_udaf();
    /// conn.register_udaf(sum.as_ref().clone().with_aliases(["total"]));
    /// # Ok(()) }
    /// ```
    pub fn register_udaf(&self, udaf: AggregateUDF) {
        self.session.context().register_udaf(udaf);
    }

    /// The connection's DataFusion context (configuration, functions,
    /// `SessionContext::sql` over EntiDB tables outside EntiDB's
    /// transaction handling — prefer [`Connection::query`]).
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let conn = entidb::Database::open_in_memory()?.connect();
    /// let partitions = conn.session_context().state().config().target_partitions();
    /// assert!(partitions >= 1);
    /// # Ok(()) }
    /// ```
    pub fn session_context(&self) -> &SessionContext {
        self.session.context()
    }
}

fn first_row(rows: Rows) -> Result<Row> {
    rows.first().ok_or_else(|| Error::from(ErrorKind::NoRows))
}

/// An open transaction of a [`Connection`]: statements go through it
/// (it dereferences to the connection); [`Transaction::commit`] commits,
/// dropping it without committing rolls back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> entidb::Result<()> {
/// # let mut conn = entidb::Database::open_in_memory()?.connect();
/// conn.execute("CREATE TABLE t (x INT)").await?;
/// let mut tx = conn.transaction().await?;
/// tx.execute("INSERT INTO t VALUES (1)").await?;
/// tx.rollback().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Transaction<'c> {
    conn: &'c mut Connection,
    finished: bool,
}

impl Transaction<'_> {
    /// Commits.
    ///
    /// # Errors
    /// `Conflict` (40001) when a concurrent transaction committed a change
    /// to the same rows first (the transaction is then rolled back; see
    /// [`Connection::retry_on_conflict`]); I/O errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let tx = conn.transaction().await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit(mut self) -> Result<()> {
        self.finished = true;
        if !self.conn.in_transaction() {
            return Ok(());
        }
        self.conn.execute("COMMIT").await.map(|_| ())
    }

    /// Rolls back (what dropping the guard does, with errors reported).
    ///
    /// # Errors
    /// Only on internal failures.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::Database::open_in_memory()?.connect();
    /// let tx = conn.transaction().await?;
    /// tx.rollback().await?;
    /// assert!(!conn.in_transaction());
    /// # Ok(()) }
    /// ```
    pub async fn rollback(mut self) -> Result<()> {
        self.finished = true;
        if !self.conn.in_transaction() {
            return Ok(());
        }
        self.conn.execute("ROLLBACK").await.map(|_| ())
    }
}

impl Deref for Transaction<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.session.abandon_transaction();
        }
    }
}

/// Waits `delay` without needing the runtime's timer (a runtime built
/// without `enable_time` would make `tokio::time::sleep` panic): the sleep
/// runs on the blocking pool, or on this thread outside a runtime.
async fn sleep_async(delay: std::time::Duration) {
    if tokio::runtime::Handle::try_current().is_ok() {
        // A failed join only means the sleep was cut short.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
    } else {
        std::thread::sleep(delay);
    }
}
