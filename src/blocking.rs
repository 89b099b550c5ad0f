//! [`BlockingConnection`]: the async [`Connection`] for synchronous code,
//! and its [`BlockingTransaction`] guard.
//!
//! INSIDE AN ASYNC RUNTIME. A blocking connection drives its statements on
//! its own small tokio runtime. Called from a thread that is already inside
//! a tokio runtime (an `async fn` under `#[tokio::main]`, a `spawn`ed task),
//! tokio forbids blocking on another runtime there ("Cannot start a runtime
//! from within a runtime"), so the statement runs on a scoped helper thread
//! instead and the caller's thread waits for it. That works under every
//! runtime flavour, but it blocks the calling worker thread for the
//! statement's duration: async code should use [`Connection`].

use crate::connection::MAX_ATTEMPTS;
use crate::row::{Row, Rows};
use crate::{Connection, Database, Error, ErrorKind, Output, Prepared, Result};
use arrow::array::RecordBatch;
use datafusion::logical_expr::ScalarUDF;
use datafusion::scalar::ScalarValue;
use std::future::Future;
use std::ops::{Deref, DerefMut};

/// A [`Connection`] for synchronous code: it owns a small tokio runtime
/// (module docs for use inside async code).
///
/// ```
/// # fn main() -> entidb::Result<()> {
/// let db = entidb::Database::open_in_memory()?;
/// let mut conn = entidb::BlockingConnection::new(&db)?;
/// conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BlockingConnection {
    /// Always `Some` until dropped (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    conn: Connection,
}

impl Drop for BlockingConnection {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which tokio
        // forbids inside another runtime: there, let it end in the
        // background (no statement is running: they all completed).
        if let Some(runtime) = self.runtime.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            runtime.shutdown_background();
        }
    }
}

/// Drives `future` to completion on `runtime`, from any thread (module
/// docs).
fn block_on<F, T>(runtime: Option<&tokio::runtime::Runtime>, future: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    let Some(runtime) = runtime else {
        return Err(ErrorKind::TransactionState("the connection is closed".into()).into());
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(future);
    }
    std::thread::scope(|scope| {
        match scope.spawn(|| runtime.block_on(future)).join() {
            Ok(out) => out,
            // The statement panicked on the helper thread: re-raise it here
            // as if it had run on this one.
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}

impl BlockingConnection {
    /// A blocking connection to `db`.
    ///
    /// # Errors
    /// If the runtime cannot be created.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// let conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// # Ok(()) }
    /// ```
    pub fn new(db: &Database) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::from(ErrorKind::Io(e.to_string())))?;
        Ok(Self {
            runtime: Some(runtime),
            conn: db.connect(),
        })
    }

    /// See [`Connection::execute`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.execute("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)")?;
    /// # Ok(()) }
    /// ```
    pub fn execute(&mut self, sql: &str) -> Result<u64> {
        block_on(self.runtime.as_ref(), self.conn.execute(sql))
    }

    /// See [`Connection::execute_with`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.execute("CREATE TABLE t (x INT)")?;
    /// assert_eq!(conn.execute_with("INSERT INTO t VALUES ($1), ($2)", entidb::params![1, 2])?, 2);
    /// # Ok(()) }
    /// ```
    pub fn execute_with(&mut self, sql: &str, params: &[ScalarValue]) -> Result<u64> {
        block_on(self.runtime.as_ref(), self.conn.execute_with(sql, params))
    }

    /// See [`Connection::query`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let batches = conn.query("SELECT 1 AS one")?;
    /// assert_eq!(batches[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        block_on(self.runtime.as_ref(), self.conn.query(sql))
    }

    /// See [`Connection::query_with`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let batches = conn.query_with("SELECT ?1 AS x", entidb::params!["a"])?;
    /// # Ok(()) }
    /// ```
    pub fn query_with(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Vec<RecordBatch>> {
        block_on(self.runtime.as_ref(), self.conn.query_with(sql, params))
    }

    /// See [`Connection::query_rows`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let rows = conn.query_rows("SELECT * FROM generate_series(1, 5)", &[])?;
    /// assert_eq!(rows.len(), 5);
    /// # Ok(()) }
    /// ```
    pub fn query_rows(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Rows> {
        block_on(self.runtime.as_ref(), self.conn.query_rows(sql, params))
    }

    /// See [`Connection::query_one`].
    ///
    /// # Errors
    /// `NoRows` (P0002) without a row; as [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let row = conn.query_one("SELECT 'x' AS s", &[])?;
    /// assert_eq!(row.get::<String>("s")?, "x");
    /// # Ok(()) }
    /// ```
    pub fn query_one(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Row> {
        block_on(self.runtime.as_ref(), self.conn.query_one(sql, params))
    }

    /// See [`Connection::query_row`].
    ///
    /// # Errors
    /// `NoRows` (P0002) without a row; `f`'s error; as
    /// [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let n: i64 = conn.query_row("SELECT count(*) FROM generate_series(1, 9)", &[], |r| r.get(0))?;
    /// assert_eq!(n, 9);
    /// # Ok(()) }
    /// ```
    pub fn query_row<T>(
        &mut self,
        sql: &str,
        params: &[ScalarValue],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        f(&self.query_one(sql, params)?)
    }

    /// See [`Connection::append`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// use entidb::arrow::array::{Int64Array, RecordBatch};
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.execute("CREATE TABLE t (x BIGINT NOT NULL)")?;
    /// let batch = RecordBatch::try_from_iter([("x", std::sync::Arc::new(Int64Array::from(vec![1, 2, 3])) as _)]).unwrap();
    /// assert_eq!(conn.append("t", &batch)?, 3);
    /// # Ok(()) }
    /// ```
    pub fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<u64> {
        block_on(self.runtime.as_ref(), self.conn.append(table, batch))
    }

    /// See [`Connection::prepare`].
    ///
    /// # Errors
    /// As [`Connection::prepare`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let p = conn.prepare("SELECT $1")?;
    /// # Ok(()) }
    /// ```
    pub fn prepare(&self, sql: &str) -> Result<Prepared> {
        self.conn.prepare(sql)
    }

    /// See [`Connection::query_prepared`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let p = conn.prepare("SELECT ? AS v")?;
    /// let batches = conn.query_prepared(&p, entidb::params![1.5])?;
    /// # Ok(()) }
    /// ```
    pub fn query_prepared(
        &mut self,
        statement: &Prepared,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        block_on(
            self.runtime.as_ref(),
            self.conn.query_prepared(statement, params),
        )
    }

    /// See [`Connection::execute_prepared`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.execute("CREATE TABLE t (x INT)")?;
    /// let p = conn.prepare("INSERT INTO t VALUES ($1)")?;
    /// assert_eq!(conn.execute_prepared(&p, entidb::params![5])?, 1);
    /// # Ok(()) }
    /// ```
    pub fn execute_prepared(
        &mut self,
        statement: &Prepared,
        params: &[ScalarValue],
    ) -> Result<u64> {
        block_on(
            self.runtime.as_ref(),
            self.conn.execute_prepared(statement, params),
        )
    }

    /// See [`Connection::run_script`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let outputs = conn.run_script("SELECT 1; SELECT 2");
    /// assert_eq!(outputs.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn run_script(&mut self, sql: &str) -> Vec<Result<Output>> {
        let conn = &mut self.conn;
        block_on(self.runtime.as_ref(), async move {
            Ok(conn.run_script(sql).await)
        })
        .unwrap_or_else(|e| vec![Err(e)])
    }

    /// See [`Connection::catalog`].
    ///
    /// # Errors
    /// As [`Connection::catalog`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.execute("CREATE TABLE t (x INT)")?;
    /// assert_eq!(conn.catalog()?.tables.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn catalog(&mut self) -> Result<std::sync::Arc<entidb_catalog::Catalog>> {
        block_on(self.runtime.as_ref(), self.conn.catalog())
    }

    /// True inside `BEGIN … COMMIT`.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// assert!(!conn.in_transaction());
    /// # Ok(()) }
    /// ```
    pub fn in_transaction(&self) -> bool {
        self.conn.in_transaction()
    }

    /// See [`Connection::transaction`].
    ///
    /// # Errors
    /// `TransactionState` (25000) when a transaction is already open.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.execute("CREATE TABLE t (x INT)")?;
    /// let mut tx = conn.transaction()?;
    /// tx.execute("INSERT INTO t VALUES (1)")?;
    /// tx.commit()?;
    /// # Ok(()) }
    /// ```
    pub fn transaction(&mut self) -> Result<BlockingTransaction<'_>> {
        self.execute("BEGIN")?;
        Ok(BlockingTransaction {
            conn: self,
            finished: false,
        })
    }

    /// See [`Connection::retry_on_conflict`].
    ///
    /// # Errors
    /// `f`'s first non-retryable error, or the last conflict.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.execute("CREATE TABLE c (id INT PRIMARY KEY, n BIGINT); INSERT INTO c VALUES (1, 0)")?;
    /// conn.retry_on_conflict(|tx| tx.execute("UPDATE c SET n = n + 1 WHERE id = 1"))?;
    /// # Ok(()) }
    /// ```
    pub fn retry_on_conflict<T>(
        &mut self,
        mut f: impl FnMut(&mut BlockingTransaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 1;
        let mut backoff = entidb_engine::Backoff::new();
        loop {
            let mut tx = self.transaction()?;
            let result = match f(&mut tx) {
                Ok(value) => tx.commit().map(|()| value),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    backoff.wait();
                }
                other => return other,
            }
        }
    }

    /// See [`Connection::register_udf`].
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// use entidb::datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    /// use entidb::datafusion::scalar::ScalarValue;
    /// let answer = create_udf("answer", vec![], entidb::arrow::datatypes::DataType::Int64,
    ///     Volatility::Immutable,
    ///     std::sync::Arc::new(|_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(42))))));
    /// conn.register_udf(answer);
    /// # Ok(()) }
    /// ```
    pub fn register_udf(&self, udf: ScalarUDF) {
        self.conn.register_udf(udf);
    }

    /// The async connection inside.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// let partitions = conn.connection().session_context().state().config().target_partitions();
    /// # Ok(()) }
    /// ```
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// An open transaction of a [`BlockingConnection`]; dereferences to the
/// connection, commits with [`BlockingTransaction::commit`], rolls back
/// when dropped without it.
///
/// ```
/// # fn main() -> entidb::Result<()> {
/// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
/// conn.execute("CREATE TABLE t (x INT)")?;
/// {
///     let mut tx = conn.transaction()?;
///     tx.execute("INSERT INTO t VALUES (1)")?;
/// } // rolled back
/// assert_eq!(conn.query_row("SELECT count(*) FROM t", &[], |r| r.get::<i64>(0))?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BlockingTransaction<'c> {
    conn: &'c mut BlockingConnection,
    finished: bool,
}

impl BlockingTransaction<'_> {
    /// Commits.
    ///
    /// # Errors
    /// `Conflict` (40001) when a concurrent transaction changed the same
    /// rows first (the transaction is then rolled back); I/O errors.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.transaction()?.commit()?;
    /// # Ok(()) }
    /// ```
    pub fn commit(mut self) -> Result<()> {
        self.finished = true;
        if !self.conn.in_transaction() {
            return Ok(());
        }
        self.conn.execute("COMMIT").map(|_| ())
    }

    /// Rolls back.
    ///
    /// # Errors
    /// Only on internal failures.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// # let mut conn = entidb::BlockingConnection::new(&entidb::Database::open_in_memory()?)?;
    /// conn.transaction()?.rollback()?;
    /// # Ok(()) }
    /// ```
    pub fn rollback(mut self) -> Result<()> {
        self.finished = true;
        if !self.conn.in_transaction() {
            return Ok(());
        }
        self.conn.execute("ROLLBACK").map(|_| ())
    }
}

impl Deref for BlockingTransaction<'_> {
    type Target = BlockingConnection;

    fn deref(&self) -> &BlockingConnection {
        self.conn
    }
}

impl DerefMut for BlockingTransaction<'_> {
    fn deref_mut(&mut self) -> &mut BlockingConnection {
        self.conn
    }
}

impl Drop for BlockingTransaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.conn.session.abandon_transaction();
        }
    }
}
