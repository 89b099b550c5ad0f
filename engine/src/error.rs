//! The engine's error types.
//!
//! [`Error`] is the umbrella: every failure of the engine is one of its
//! variants, with typed fields a caller can match on and a message that says
//! what to do next. Nothing in the engine panics on bad input or bad files:
//! decoders return [`Error::Corruption`], I/O failures return [`Error::Io`],
//! and after a failed write or fsync the database answers
//! [`Error::Poisoned`] until it is re-opened.
//!
//! The three operations whose failures a caller must handle differently get
//! errors of their own, holding only what that operation can fail with (as
//! in redb): [`OpenError`] ([`crate::Engine::open`]), [`CommitError`]
//! ([`crate::Transaction::commit`]) and [`CheckpointError`]
//! ([`crate::Engine::checkpoint`]). Their disk failures share
//! [`StorageError`]. Each converts into [`Error`] without loss (`?` works in
//! a function returning `Error`).
//!
//! Inside the engine everything returns [`Error`]; the public operation
//! classifies it on the way out (`OpenError::from(Error)` and so on). A
//! variant the operation cannot produce would be a bug in the engine: it
//! becomes [`StorageError::Internal`] rather than a guess.
//!
//! Every error is `Clone` (I/O and Arrow sources are shared behind `Arc`),
//! so the SQL layer can keep an engine error as it is.

use std::io;
use std::sync::Arc;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error on {file}: {source}")]
    Io {
        /// The file (relative to the database directory) the call was about.
        file: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Bytes on disk failed a checksum or could not be decoded. The database
    /// refuses to open rather than guess; nothing on disk was modified.
    #[error(
        "corruption in {file} at offset {offset}: {reason}; restore the database from a backup"
    )]
    Corruption {
        /// The damaged file.
        file: String,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A file was written by an incompatible (newer major) format version.
    #[error(
        "{file} has format version {found}, this build reads major version {supported}; open it with a newer EntiDB"
    )]
    IncompatibleVersion {
        /// The file.
        file: String,
        /// Version found on disk, as `major.minor`.
        found: String,
        /// The major version this build understands.
        supported: u16,
    },
    /// Another process (or another handle) holds the database's LOCK file.
    #[error("database {path} is locked by another process; close it there first")]
    Locked {
        /// The database directory.
        path: String,
    },
    /// A previous write or fsync failed; the in-memory state may be ahead of the
    /// disk, so every later write is refused.
    #[error("database is poisoned by an earlier I/O failure ({cause}); close and re-open it")]
    Poisoned {
        /// The failure that poisoned the database.
        cause: String,
    },
    /// Optimistic concurrency control found that another transaction committed
    /// a change to a row this transaction also changed. Nothing of this
    /// transaction was applied; retry it from the start.
    #[error(
        "write conflict on table {table}, key {key}: a concurrent transaction committed first; retry the transaction"
    )]
    Conflict {
        /// Name of the table.
        table: String,
        /// Printable form of the row key.
        key: String,
    },
    /// A uniqueness or other constraint enforced by the engine failed.
    #[error("constraint violation on table {table}: {detail}")]
    ConstraintViolation {
        /// Name of the table.
        table: String,
        /// What was violated.
        detail: String,
    },
    /// A NULL in a column that cannot hold one (a primary-key column).
    #[error("null value in column {column} of table {table} violates not-null constraint")]
    NotNullViolation {
        /// Name of the table.
        table: String,
        /// Name of the column.
        column: String,
    },
    /// No table with this name or id exists in the transaction's view.
    #[error("table {name} does not exist")]
    TableNotFound {
        /// Name (or `#id`) of the missing table.
        name: String,
    },
    /// A table with this name already exists.
    #[error("table {name} already exists")]
    TableExists {
        /// Name of the table.
        name: String,
    },
    /// The transaction was already committed or rolled back.
    #[error("transaction is no longer active; begin a new one")]
    TransactionClosed,
    /// A write was attempted in a read-only transaction, or in a database
    /// opened read-only.
    #[error("cannot write: the transaction or the database is read-only")]
    ReadOnly,
    /// The key (or passphrase) does not match the database's key check.
    #[error("wrong encryption key or passphrase for this database")]
    WrongKey,
    /// The database is encrypted and was opened without a key.
    #[error("this database is encrypted; open it with its key (--key-file) or passphrase")]
    EncryptionRequired,
    /// The caller passed something the engine cannot store.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An Arrow kernel failed.
    #[error("arrow error: {0}")]
    Arrow(#[source] Arc<arrow::error::ArrowError>),
    /// Something the operation cannot fail with happened: a bug in the
    /// engine. The database's files are unchanged by it.
    #[error("internal error: {0}; please report this bug")]
    Internal(String),
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Arrow(Arc::new(e))
    }
}

impl Error {
    /// True when retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Builds a [`Error::Corruption`].
    pub fn corruption(file: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Returns a closure that wraps an [`io::Error`] about `file`. An
    /// authentication failure of the encrypted backend becomes `Corruption`.
    pub fn io(file: &str) -> impl FnOnce(io::Error) -> Error + '_ {
        move |source| {
            if let Some(auth) = source
                .get_ref()
                .and_then(|e| e.downcast_ref::<crate::storage::AuthFailure>())
            {
                return Error::corruption(file, auth.offset, auth.reason.clone());
            }
            Error::Io {
                file: file.to_string(),
                source: Arc::new(source),
            }
        }
    }
}

/// A failure of the disk (or of the engine itself) under any operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating-system I/O call failed.
    #[error("I/O error on {file}: {source}")]
    Io {
        /// The file (relative to the database directory) the call was about.
        file: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Bytes on disk failed a checksum or could not be decoded.
    #[error(
        "corruption in {file} at offset {offset}: {reason}; restore the database from a backup"
    )]
    Corruption {
        /// The damaged file.
        file: String,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An earlier write or fsync failed: every write is refused until the
    /// database is re-opened.
    #[error("database is poisoned by an earlier I/O failure ({cause}); close and re-open it")]
    Poisoned {
        /// The failure that poisoned the database.
        cause: String,
    },
    /// A bug in the engine (see [`Error::Internal`]).
    #[error("internal error: {0}; please report this bug")]
    Internal(String),
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Io { file, source } => Error::Io { file, source },
            StorageError::Corruption {
                file,
                offset,
                reason,
            } => Error::Corruption {
                file,
                offset,
                reason,
            },
            StorageError::Poisoned { cause } => Error::Poisoned { cause },
            StorageError::Internal(m) => Error::Internal(m),
        }
    }
}

impl StorageError {
    /// The storage part of `e`; `Err(e)` for the failures that are not the
    /// disk's.
    fn classify(e: Error) -> Result<Self, Error> {
        match e {
            Error::Io { file, source } => Ok(StorageError::Io { file, source }),
            Error::Corruption {
                file,
                offset,
                reason,
            } => Ok(StorageError::Corruption {
                file,
                offset,
                reason,
            }),
            Error::Poisoned { cause } => Ok(StorageError::Poisoned { cause }),
            Error::Internal(m) => Ok(StorageError::Internal(m)),
            other => Err(other),
        }
    }

    /// `e`, which the operation `op` cannot fail with, as a bug.
    fn unexpected(op: &str, e: &Error) -> Self {
        StorageError::Internal(format!("{op} failed unexpectedly: {e}"))
    }
}

/// Why [`crate::Engine::open`] failed. Nothing on disk was modified.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or another handle) holds the database's LOCK file.
    #[error("database {path} is locked by another process; close it there first")]
    Locked {
        /// The database directory.
        path: String,
    },
    /// A file was written by an incompatible (newer major) format version.
    #[error(
        "{file} has format version {found}, this build reads major version {supported}; open it with a newer EntiDB"
    )]
    IncompatibleVersion {
        /// The file.
        file: String,
        /// Version found on disk, as `major.minor`.
        found: String,
        /// The major version this build understands.
        supported: u16,
    },
    /// The key (or passphrase) does not match the database's key check.
    #[error("wrong encryption key or passphrase for this database")]
    WrongKey,
    /// The database is encrypted and was opened without a key.
    #[error("this database is encrypted; open it with its key (--key-file) or passphrase")]
    EncryptionRequired,
    /// The options or the path cannot be used.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The files could not be read, are damaged, or recovery could not write.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<Error> for OpenError {
    fn from(e: Error) -> Self {
        match StorageError::classify(e) {
            Ok(storage) => OpenError::Storage(storage),
            Err(Error::Locked { path }) => OpenError::Locked { path },
            Err(Error::IncompatibleVersion {
                file,
                found,
                supported,
            }) => OpenError::IncompatibleVersion {
                file,
                found,
                supported,
            },
            Err(Error::WrongKey) => OpenError::WrongKey,
            Err(Error::EncryptionRequired) => OpenError::EncryptionRequired,
            Err(Error::InvalidArgument(m)) => OpenError::InvalidArgument(m),
            // Recovery decodes with Arrow: a batch it cannot rebuild is a
            // damaged file, not a bug.
            Err(Error::Arrow(a)) => OpenError::Storage(StorageError::Corruption {
                file: "<recovery>".into(),
                offset: 0,
                reason: a.to_string(),
            }),
            Err(other) => OpenError::Storage(StorageError::unexpected("open", &other)),
        }
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Locked { path } => Error::Locked { path },
            OpenError::IncompatibleVersion {
                file,
                found,
                supported,
            } => Error::IncompatibleVersion {
                file,
                found,
                supported,
            },
            OpenError::WrongKey => Error::WrongKey,
            OpenError::EncryptionRequired => Error::EncryptionRequired,
            OpenError::InvalidArgument(m) => Error::InvalidArgument(m),
            OpenError::Storage(s) => s.into(),
        }
    }
}

/// Why [`crate::Transaction::commit`] failed. Nothing of the transaction
/// became visible; after a `Storage` failure the database is poisoned (the
/// commit pipeline in `commit.rs`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// A concurrent transaction committed a change to a row (or the schema)
    /// this transaction also changed; retry the transaction from the start.
    #[error(
        "write conflict on table {table}, key {key}: a concurrent transaction committed first; retry the transaction"
    )]
    Conflict {
        /// Name of the table.
        table: String,
        /// Printable form of the row key, or why.
        key: String,
    },
    /// A uniqueness constraint failed.
    #[error("constraint violation on table {table}: {detail}")]
    ConstraintViolation {
        /// Name of the table.
        table: String,
        /// What was violated.
        detail: String,
    },
    /// A NULL in a primary-key column.
    #[error("null value in column {column} of table {table} violates not-null constraint")]
    NotNullViolation {
        /// Name of the table.
        table: String,
        /// Name of the column.
        column: String,
    },
    /// The transaction was already committed or rolled back.
    #[error("transaction is no longer active; begin a new one")]
    TransactionClosed,
    /// A read-only transaction wrote.
    #[error("cannot write: the transaction or the database is read-only")]
    ReadOnly,
    /// The transaction cannot be stored (a WAL record over its size limit).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Writing or syncing the WAL failed (the database is now poisoned), or
    /// it already was.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl CommitError {
    /// True when retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CommitError::Conflict { .. })
    }
}

impl From<Error> for CommitError {
    fn from(e: Error) -> Self {
        match StorageError::classify(e) {
            Ok(storage) => CommitError::Storage(storage),
            Err(Error::Conflict { table, key }) => CommitError::Conflict { table, key },
            Err(Error::ConstraintViolation { table, detail }) => {
                CommitError::ConstraintViolation { table, detail }
            }
            Err(Error::NotNullViolation { table, column }) => {
                CommitError::NotNullViolation { table, column }
            }
            Err(Error::TransactionClosed) => CommitError::TransactionClosed,
            Err(Error::ReadOnly) => CommitError::ReadOnly,
            Err(Error::InvalidArgument(m)) => CommitError::InvalidArgument(m),
            Err(other) => CommitError::Storage(StorageError::unexpected("commit", &other)),
        }
    }
}

impl From<CommitError> for Error {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Conflict { table, key } => Error::Conflict { table, key },
            CommitError::ConstraintViolation { table, detail } => {
                Error::ConstraintViolation { table, detail }
            }
            CommitError::NotNullViolation { table, column } => {
                Error::NotNullViolation { table, column }
            }
            CommitError::TransactionClosed => Error::TransactionClosed,
            CommitError::ReadOnly => Error::ReadOnly,
            CommitError::InvalidArgument(m) => Error::InvalidArgument(m),
            CommitError::Storage(s) => s.into(),
        }
    }
}

/// Why [`crate::Engine::checkpoint`] failed. The committed data is intact
/// (in the WAL and the previous segments); a failed write poisons the
/// database for writes.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The database was opened read-only.
    #[error("cannot checkpoint a database opened read-only")]
    ReadOnly,
    /// Reading the old segments or writing the new ones failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<Error> for CheckpointError {
    fn from(e: Error) -> Self {
        match StorageError::classify(e) {
            Ok(storage) => CheckpointError::Storage(storage),
            Err(Error::ReadOnly) => CheckpointError::ReadOnly,
            Err(other) => CheckpointError::Storage(StorageError::unexpected("checkpoint", &other)),
        }
    }
}

impl From<CheckpointError> for Error {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::ReadOnly => Error::ReadOnly,
            CheckpointError::Storage(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_errors_round_trip_through_the_umbrella() {
        let conflict = Error::Conflict {
            table: "t".into(),
            key: "1".into(),
        };
        let commit = CommitError::from(conflict);
        assert!(commit.is_retryable());
        assert!(matches!(Error::from(commit), Error::Conflict { .. }));
        let locked = OpenError::from(Error::Locked { path: "db".into() });
        assert!(matches!(Error::from(locked), Error::Locked { .. }));
        let io = Error::io("WAL")(io::Error::other("disk gone"));
        let checkpoint = CheckpointError::from(io);
        assert!(matches!(
            &checkpoint,
            CheckpointError::Storage(StorageError::Io { file, .. }) if file == "WAL"
        ));
        assert!(matches!(Error::from(checkpoint), Error::Io { .. }));
    }

    #[test]
    fn a_variant_an_operation_cannot_produce_is_internal() {
        let e = CheckpointError::from(Error::WrongKey);
        assert!(
            matches!(&e, CheckpointError::Storage(StorageError::Internal(m)) if m.contains("checkpoint")),
            "{e}"
        );
    }
}
