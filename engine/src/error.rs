//! The engine's error type.
//!
//! Every failure of the engine is one variant of [`Error`], with typed fields a
//! caller can match on and a message that says what to do next. Nothing in the
//! engine panics on bad input or bad files: decoders return
//! [`Error::Corruption`], I/O failures return [`Error::Io`], and after a failed
//! write or fsync the database answers [`Error::Poisoned`] until it is re-opened.

use std::io;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error on {file}: {source}")]
    Io {
        /// The file (relative to the database directory) the call was about.
        file: String,
        /// The underlying error.
        #[source]
        source: io::Error,
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
    /// A write was attempted in a read-only transaction.
    #[error("cannot write in a read-only transaction")]
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
    Arrow(#[from] arrow::error::ArrowError),
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
                source,
            }
        }
    }
}
