//! EntiDB: an embedded transactional SQL database.
//!
//! ```no_run
//! # async fn demo() -> entidb::Result<()> {
//! let db = entidb::Database::open("my.db")?;
//! let mut conn = db.connect();
//! conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)").await?;
//! conn.execute("INSERT INTO t VALUES (1, 'one')").await?;
//! let batches = conn.query("SELECT * FROM t").await?;
//! # Ok(()) }
//! ```
//!
//! [`Database`] owns the storage engine; each [`Connection`] is one SQL
//! session with its own transaction state. The API is async (tokio);
//! [`BlockingConnection`] wraps it for synchronous programs.

pub use entidb_engine as engine;
pub use entidb_sql::{Error, ErrorKind, Output, Prepared, Result};

use arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::scalar::ScalarValue;
pub use entidb_engine::storage::Secret;
use entidb_engine::storage::{EncryptedStorage, FileStorage};
use entidb_engine::{Engine, EngineOptions};
use entidb_sql::{DatabaseDir, Session, SessionOptions, register_database_dir};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options for [`Database::open_with`]. The default checkpoints the WAL when
/// the database is closed (its last handle dropped), so the next open has
/// nothing to replay.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Engine tunables (checkpoint size…).
    pub engine: EngineOptions,
    /// Encrypt every file with this key or passphrase (AES-256-GCM-SIV, see
    /// docs/encryption.md). Must be given again on every open.
    pub encryption: Option<Secret>,
    /// Memory each connection's queries may use (sorts, aggregates, joins;
    /// beyond it they spill or fail with SQLSTATE 53200). `None`: half the
    /// machine's memory. `SET entidb.memory_limit = '1GB'` changes it per
    /// connection.
    pub memory_limit: Option<usize>,
    /// Directory for spill files (`None`: the OS temporary directory).
    /// Ignored for encrypted databases, which never spill.
    pub temp_directory: Option<PathBuf>,
    /// Whether SQL may write files (`COPY … TO`); never inside an open
    /// database's directory. `SET entidb.external_access = false` turns it
    /// off for one connection.
    pub external_access: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            engine: EngineOptions {
                checkpoint_on_close: true,
                ..EngineOptions::default()
            },
            encryption: None,
            memory_limit: None,
            temp_directory: None,
            external_access: true,
        }
    }
}

impl OpenOptions {
    fn session(&self) -> SessionOptions {
        let defaults = SessionOptions::default();
        SessionOptions {
            memory_limit: self.memory_limit.unwrap_or(defaults.memory_limit),
            // Spill files are plaintext: an encrypted database never spills.
            spill: self.encryption.is_none(),
            temp_directory: self.temp_directory.clone(),
            external_access: self.external_access,
        }
    }
}

/// An open database.
#[derive(Debug, Clone)]
pub struct Database {
    engine: Engine,
    sql: SessionOptions,
    /// Keeps SQL from writing files into the database's directory.
    _dir: Option<Arc<DatabaseDir>>,
}

impl Database {
    /// Opens (creating if needed) the database in directory `path`.
    ///
    /// # Errors
    /// `Locked` (SQLSTATE 55006) if another process has it open,
    /// `Corruption` (XX001) for damaged files, I/O errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens with explicit options.
    ///
    /// # Errors
    /// As [`Database::open`].
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<Self> {
        let sql = options.session();
        let dir = path.as_ref().to_path_buf();
        let engine = match options.encryption {
            None => Engine::open_dir(path, options.engine)?,
            Some(secret) => {
                let dir = path.as_ref();
                let files = FileStorage::new(dir)
                    .map_err(|e| Error::from(ErrorKind::Io(format!("{}: {e}", dir.display()))))?;
                let storage = EncryptedStorage::open(Arc::new(files), secret)?;
                Engine::open(Arc::new(storage), options.engine)?
            }
        };
        Ok(Self {
            engine,
            sql,
            _dir: Some(Arc::new(register_database_dir(&dir))),
        })
    }

    /// A new, empty in-memory database.
    ///
    /// # Errors
    /// Only on internal failures.
    pub fn open_in_memory() -> Result<Self> {
        Ok(Self::from_engine(Engine::open_memory()?))
    }

    /// Wraps an engine opened on any storage backend (default session
    /// options: spilling allowed — see [`Database::from_engine_with`]).
    pub fn from_engine(engine: Engine) -> Self {
        Self::from_engine_with(engine, &OpenOptions::default())
    }

    /// Wraps an engine with the session settings of `options` (its
    /// `engine` field is not used; `encryption.is_some()` disables
    /// spilling).
    pub fn from_engine_with(engine: Engine, options: &OpenOptions) -> Self {
        Self {
            engine,
            sql: options.session(),
            _dir: None,
        }
    }

    /// A new connection (SQL session).
    pub fn connect(&self) -> Connection {
        Connection {
            session: Session::with_options(self.engine.clone(), self.sql.clone()),
            _dir: self._dir.clone(),
        }
    }

    /// The storage engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// One SQL session: its own transaction, shared data.
#[derive(Debug)]
pub struct Connection {
    pub(crate) session: Session,
    /// The database directory stays protected while a connection is open.
    _dir: Option<Arc<DatabaseDir>>,
}

impl Connection {
    /// Runs one or more statements; returns the rows affected by the last.
    ///
    /// # Errors
    /// The first failing statement's error, with its SQLSTATE and text.
    pub async fn execute(&mut self, sql: &str) -> Result<u64> {
        self.session.execute(sql, &[]).await
    }

    /// Like [`Connection::execute`], binding `$1`, `$2`, … to `params`.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub async fn execute_with(&mut self, sql: &str, params: &[ScalarValue]) -> Result<u64> {
        self.session.execute(sql, params).await
    }

    /// Runs statements and returns the rows of the last one.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.session.query(sql, &[]).await
    }

    /// Like [`Connection::query`], binding `$1`, `$2`, … to `params`.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub async fn query_with(
        &mut self,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        self.session.query(sql, params).await
    }

    /// Appends the rows of an Arrow batch to `table` — the bulk-load path,
    /// with the checks of INSERT (NOT NULL, keys, UNIQUE). Runs in the open
    /// transaction, or commits on its own.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub async fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<u64> {
        self.session.append(table, batch).await
    }

    /// Parses one statement for repeated execution. Point queries
    /// (`SELECT … FROM t WHERE k = $1`, `k` leading an index) then run
    /// without query planning.
    ///
    /// # Errors
    /// Syntax errors, or more than one statement.
    pub fn prepare(&self, sql: &str) -> Result<Prepared> {
        self.session.prepare(sql)
    }

    /// Runs a prepared query with `$1`, `$2`, … bound to `params`.
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub async fn query_prepared(
        &mut self,
        statement: &Prepared,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        match self.session.run_prepared(statement, params).await? {
            Output::Rows(_, batches) => Ok(batches),
            Output::Count(n) => Ok(vec![entidb_sql::count_batch(n)?]),
        }
    }

    /// Runs a prepared statement; returns the rows affected.
    ///
    /// # Errors
    /// As [`Connection::execute`].
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
    pub async fn query_stream(&mut self, sql: &str) -> Result<SendableRecordBatchStream> {
        self.session.query_stream(sql, &[]).await
    }

    /// Runs a script statement by statement, returning every statement's
    /// output; it stops after the first failure, which is the last element.
    pub async fn run_script(&mut self, sql: &str) -> Vec<Result<Output>> {
        self.session.run_all(sql).await
    }

    /// True inside `BEGIN … COMMIT`.
    pub fn in_transaction(&self) -> bool {
        self.session.in_transaction()
    }
}

/// A [`Connection`] for synchronous code: it owns a small tokio runtime.
#[derive(Debug)]
pub struct BlockingConnection {
    runtime: tokio::runtime::Runtime,
    conn: Connection,
}

impl BlockingConnection {
    /// A blocking connection to `db`.
    ///
    /// # Errors
    /// If the runtime cannot be created.
    pub fn new(db: &Database) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::from(ErrorKind::Io(e.to_string())))?;
        Ok(Self {
            runtime,
            conn: db.connect(),
        })
    }

    /// See [`Connection::execute`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub fn execute(&mut self, sql: &str) -> Result<u64> {
        self.runtime.block_on(self.conn.execute(sql))
    }

    /// See [`Connection::execute_with`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub fn execute_with(&mut self, sql: &str, params: &[ScalarValue]) -> Result<u64> {
        self.runtime.block_on(self.conn.execute_with(sql, params))
    }

    /// See [`Connection::query`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.runtime.block_on(self.conn.query(sql))
    }

    /// See [`Connection::query_with`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub fn query_with(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Vec<RecordBatch>> {
        self.runtime.block_on(self.conn.query_with(sql, params))
    }

    /// See [`Connection::append`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<u64> {
        self.runtime.block_on(self.conn.append(table, batch))
    }

    /// See [`Connection::prepare`].
    ///
    /// # Errors
    /// As [`Connection::prepare`].
    pub fn prepare(&self, sql: &str) -> Result<Prepared> {
        self.conn.prepare(sql)
    }

    /// See [`Connection::query_prepared`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub fn query_prepared(
        &mut self,
        statement: &Prepared,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        self.runtime
            .block_on(self.conn.query_prepared(statement, params))
    }

    /// See [`Connection::execute_prepared`].
    ///
    /// # Errors
    /// As [`Connection::execute`].
    pub fn execute_prepared(
        &mut self,
        statement: &Prepared,
        params: &[ScalarValue],
    ) -> Result<u64> {
        self.runtime
            .block_on(self.conn.execute_prepared(statement, params))
    }

    /// See [`Connection::run_script`].
    pub fn run_script(&mut self, sql: &str) -> Vec<Result<Output>> {
        self.runtime.block_on(self.conn.run_script(sql))
    }

    /// True inside `BEGIN … COMMIT`.
    pub fn in_transaction(&self) -> bool {
        self.conn.in_transaction()
    }
}
