//! EntiDB: an embedded transactional SQL database.
//!
//! ```
//! # fn main() -> entidb::Result<()> {
//! use entidb::{BlockingConnection, Database, params};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("my.db");
//! let db = Database::open(&path)?; // or Database::open_in_memory()
//! let mut conn = BlockingConnection::new(&db)?; // or db.connect() for async
//! conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")?;
//! conn.execute_with("INSERT INTO t VALUES (?, ?)", params![1, "one"])?;
//! let name: String = conn.query_row("SELECT name FROM t WHERE id = $1", params![1], |r| r.get("name"))?;
//! assert_eq!(name, "one");
//! # Ok(()) }
//! ```
//!
//! - [`Database`] owns the storage engine; opening the same path twice in
//!   one process shares it.
//! - Each [`Connection`] (async, tokio) or [`BlockingConnection`] is one SQL
//!   session with its own transaction state; [`Connection::transaction`]
//!   returns a guard that rolls back unless committed, and
//!   [`Connection::retry_on_conflict`] reruns a transaction on `Conflict`.
//! - Results are Arrow `RecordBatch`es ([`Connection::query`]) or typed rows
//!   ([`Connection::query_row`], [`Row::get`]); parameters are bound to
//!   `$1`, `?1` or `?` ([`params!`]).
//! - Errors are [`Error`]s with a PostgreSQL SQLSTATE
//!   ([`Error::sqlstate`], [`Error::is_retryable`]).
//! - [`arrow`] and [`datafusion`] are re-exported, so applications use
//!   exactly the versions EntiDB was built with.
//!
//! Files in and out go through SQL (`COPY t FROM 'f.csv'`, `COPY (query)
//! TO 'f.parquet'`, `SELECT * FROM 'f.parquet'`; see docs/sql.md).

#![deny(missing_docs)]

mod blocking;
mod connection;
mod database;
mod dbpath;
mod params;
mod row;

pub use blocking::{BlockingConnection, BlockingTransaction};
pub use connection::{Connection, MAX_ATTEMPTS, Transaction};
pub use database::{Database, OpenOptions};
pub use params::ToValue;
pub use row::{ColumnIndex, FromValue, Row, Rows};

/// The Arrow crate EntiDB is built with (`entidb::arrow::array::…`).
pub use arrow;
/// The DataFusion crate EntiDB is built with (functions, `ScalarValue`).
pub use datafusion;
/// The storage engine (no SQL): direct transactions, checkpoints, options.
/// The catalog types [`Connection::catalog`] returns.
pub use entidb_catalog as catalog;
pub use entidb_engine as engine;
pub use entidb_engine::storage::Secret;
pub use entidb_sql::{Error, ErrorKind, Output, Prepared, Result};
