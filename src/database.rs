//! Opening databases: [`Database`], [`OpenOptions`], and the process-wide
//! registry that makes a second open of the same path share the first.
//!
//! SHARING. A database directory is locked by the process that opens it
//! (the engine's `LOCK` file). Within one process, [`Database::open`] of a
//! path that is already open returns a handle to the same open database,
//! as DuckDB does: both see the same data and transactions, and the engine
//! closes (checkpointing, by default) when the last handle — `Database`,
//! `Connection` or `BlockingConnection` — is dropped. The registry keys are
//! canonical paths, so `./db` and `/abs/db` are one database. The second
//! open must give the same encryption secret as the first (else 22023);
//! its engine options are ignored (the engine is already running), its
//! session options (memory limit, temp directory, file access) apply to the
//! connections made from its handle.

use crate::Connection;
use entidb_engine::storage::{EncryptedStorage, FileStorage, Secret, Storage};
use entidb_engine::{self as engine, Engine, EngineOptions};
use entidb_sql::{DatabaseDir, Error, ErrorKind, Result, SessionOptions, register_database_dir};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// Options for [`Database::open_with`]. The default checkpoints the WAL when
/// the database is closed (its last handle dropped), so the next open has
/// nothing to replay.
///
/// ```
/// # fn main() -> entidb::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let options = entidb::OpenOptions {
///     memory_limit: Some(256 << 20),
///     ..entidb::OpenOptions::default()
/// };
/// let db = entidb::Database::open_with(dir.path().join("db"), options)?;
/// # Ok(()) }
/// ```
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
    /// Whether SQL may read and write files (`COPY`, `SELECT … FROM
    /// 'f.csv'`); never inside an open database's directory. `SET
    /// entidb.external_access = false` turns it off for one connection.
    pub external_access: bool,
    /// Open without writing anything: no recovery repair, no checkpoint,
    /// every write fails with SQLSTATE 25006. Several read-only opens of a
    /// database may coexist (in any processes); a writer is refused while
    /// one is open. [`Database::open`] falls back to it by itself when the
    /// database cannot be written (a read-only file system, no write
    /// permission). The database must exist.
    pub read_only: bool,
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
            read_only: false,
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

/// What every handle of one open database shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    /// Keeps SQL from reading or writing files inside the directory.
    _dir: Option<DatabaseDir>,
    secret: Option<Secret>,
}

/// Open databases of this process, by canonical path.
static OPEN: Mutex<Vec<(PathBuf, Weak<Shared>)>> = Mutex::new(Vec::new());

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn same_secret(a: Option<&Secret>, b: Option<&Secret>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Secret::Key(a)), Some(Secret::Key(b))) => a == b,
        (Some(Secret::Passphrase(a)), Some(Secret::Passphrase(b))) => a == b,
        _ => false,
    }
}

/// An open database: cheap to clone, shared by every open of its path in
/// the process (module docs).
///
/// ```
/// # fn main() -> entidb::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let db = entidb::Database::open(dir.path().join("app.db"))?;
/// let mut conn = entidb::BlockingConnection::new(&db)?;
/// conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Database {
    shared: Arc<Shared>,
    sql: SessionOptions,
}

impl Database {
    /// Opens (creating if needed) the database in directory `path`; if this
    /// process has it open already, shares that database (module docs).
    ///
    /// # Errors
    /// `Locked` (SQLSTATE 55006) if another process has it open,
    /// `EncryptionRequired` (28000) for an encrypted database,
    /// `Corruption` (XX001) for damaged files, I/O errors;
    /// `InvalidArgument` (22023) for a path that is a file, or a non-empty
    /// directory that is not a database ([`Database::check_path`]).
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("db");
    /// let a = entidb::Database::open(&path)?;
    /// let b = entidb::Database::open(&path)?; // the same database
    /// entidb::BlockingConnection::new(&a)?.execute("CREATE TABLE t (x INT)")?;
    /// entidb::BlockingConnection::new(&b)?.execute("INSERT INTO t VALUES (1)")?;
    /// # Ok(()) }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens with explicit options.
    ///
    /// # Errors
    /// As [`Database::open`]; `WrongKey` (28P01) for a wrong key or
    /// passphrase; `InvalidArgument` (22023) when the process has the path
    /// open with other encryption settings.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// use entidb::{Database, OpenOptions, Secret};
    /// let dir = tempfile::tempdir().unwrap();
    /// let options = OpenOptions {
    ///     encryption: Some(Secret::Passphrase("correct horse".into())),
    ///     ..OpenOptions::default()
    /// };
    /// let db = Database::open_with(dir.path().join("secret.db"), options)?;
    /// # Ok(()) }
    /// ```
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<Self> {
        let sql = options.session();
        let path = path.as_ref();
        Self::check_path(path)?;
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        let key = canonical(path);
        let mut closing = false;
        if let Some((_, weak)) = open.iter().find(|(p, _)| *p == key) {
            match weak.upgrade() {
                Some(shared) => {
                    if !same_secret(shared.secret.as_ref(), options.encryption.as_ref()) {
                        return Err(ErrorKind::InvalidArgument(format!(
                            "{} is already open in this process with other encryption settings; \
                             open it with the same key or passphrase",
                            path.display()
                        ))
                        .into());
                    }
                    return Ok(Self { shared, sql });
                }
                // Its last handle is being dropped right now: wait below
                // for the engine to release the lock.
                None => closing = true,
            }
        }
        open.retain(|(_, w)| w.strong_count() > 0);
        let engine = open_engine(path, &options, closing)?;
        let shared = Arc::new(Shared {
            engine,
            _dir: Some(register_database_dir(path)),
            secret: options.encryption,
        });
        open.push((canonical(path), Arc::downgrade(&shared)));
        Ok(Self { shared, sql })
    }

    /// Whether `path` may be opened as a database, or created as a new
    /// one: a database directory, a path that does not exist or an empty
    /// directory. A plain file, or a directory with other files and no
    /// EntiDB file, is refused, so an open never turns something else into
    /// a database.
    ///
    /// # Errors
    /// `InvalidArgument` (22023), saying why.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    /// assert!(entidb::Database::check_path(dir.path().join("new.db")).is_ok());
    /// let err = entidb::Database::check_path(dir.path()).unwrap_err();
    /// assert_eq!(err.sqlstate(), "22023");
    /// ```
    pub fn check_path(path: impl AsRef<Path>) -> Result<()> {
        crate::dbpath::check_database_path(path.as_ref())
            .map_err(|m| Error::from(ErrorKind::InvalidArgument(m)))
    }

    /// A new, empty in-memory database (not shared: every call is a new
    /// one).
    ///
    /// # Errors
    /// Only on internal failures.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// let db = entidb::Database::open_in_memory()?;
    /// # Ok(()) }
    /// ```
    pub fn open_in_memory() -> Result<Self> {
        Ok(Self::from_engine(Engine::open_memory()?))
    }

    /// Wraps an engine opened on any storage backend (default session
    /// options: spilling allowed — see [`Database::from_engine_with`]).
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// let engine = entidb::engine::Engine::open_memory()?;
    /// let db = entidb::Database::from_engine(engine);
    /// # Ok(()) }
    /// ```
    pub fn from_engine(engine: Engine) -> Self {
        Self::from_engine_with(engine, &OpenOptions::default())
    }

    /// Wraps an engine with the session settings of `options` (its
    /// `engine` field is not used; `encryption.is_some()` disables
    /// spilling).
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// let engine = entidb::engine::Engine::open_memory()?;
    /// let options = entidb::OpenOptions { external_access: false, ..Default::default() };
    /// let db = entidb::Database::from_engine_with(engine, &options);
    /// # Ok(()) }
    /// ```
    pub fn from_engine_with(engine: Engine, options: &OpenOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                engine,
                _dir: None,
                secret: None,
            }),
            sql: options.session(),
        }
    }

    /// A new connection (SQL session) for async code.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> entidb::Result<()> {
    /// let db = entidb::Database::open_in_memory()?;
    /// let mut conn = db.connect();
    /// assert_eq!(conn.execute("CREATE TABLE t (x INT)").await?, 0);
    /// # Ok(()) }
    /// ```
    pub fn connect(&self) -> Connection {
        Connection::new(self.shared.clone(), self.sql.clone())
    }

    /// The storage engine.
    ///
    /// ```
    /// # fn main() -> entidb::Result<()> {
    /// let db = entidb::Database::open_in_memory()?;
    /// db.engine().checkpoint()?;
    /// # Ok(()) }
    /// ```
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// True when the database is open read-only ([`OpenOptions::read_only`],
    /// or because its files cannot be written): every write fails with
    /// SQLSTATE 25006.
    pub fn is_read_only(&self) -> bool {
        self.shared.engine.is_read_only()
    }
}

/// Opens the engine; when a previous open of the path is closing, waits
/// (up to about a second) for it to release the lock.
fn open_engine(path: &Path, options: &OpenOptions, closing: bool) -> Result<Engine> {
    let mut waited = 0;
    loop {
        match open_engine_once(path, options) {
            Err(e) if closing && e.sqlstate() == "55006" && waited < 100 => {
                waited += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Opens read-write, or read-only when asked to or when the existing
/// database cannot be written.
fn open_engine_once(path: &Path, options: &OpenOptions) -> Result<Engine> {
    if options.read_only {
        return open_storage(path, options, true);
    }
    match open_storage(path, options, false) {
        Err(e) if cannot_write(&e) && path.is_dir() => open_storage(path, options, true),
        other => other,
    }
}

fn open_storage(path: &Path, options: &OpenOptions, read_only: bool) -> Result<Engine> {
    let io = |e: std::io::Error| Error::from(ErrorKind::Io(format!("{}: {e}", path.display())));
    let files = if read_only {
        FileStorage::open_read_only(path).map_err(io)?
    } else {
        FileStorage::new(path).map_err(io)?
    };
    let engine_options = if read_only {
        EngineOptions {
            read_only: true,
            checkpoint_on_close: false,
            ..options.engine.clone()
        }
    } else {
        options.engine.clone()
    };
    let storage: Arc<dyn Storage> = match &options.encryption {
        None => Arc::new(files),
        Some(secret) => Arc::new(EncryptedStorage::open(Arc::new(files), secret.clone())?),
    };
    Ok(Engine::open(storage, engine_options)?)
}

/// True when `e` says the database's files cannot be written: a read-only
/// file system, or no permission.
fn cannot_write(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Engine(engine::Error::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            )
    )
}
