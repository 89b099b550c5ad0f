//! EntiDB storage engine.
//!
//! A crash-safe, multi-version store of Arrow tables:
//!
//! - [`storage`]: the backend trait every byte goes through (real files,
//!   memory, and a simulated disk that loses power on command);
//! - [`wal`]: the write-ahead log, with CRC-checked records and group commit;
//! - [`segment`]: immutable columnar files written by checkpoints;
//! - [`manifest`]: the atomically replaced root of the durable state;
//! - [`mvcc`]: snapshot isolation with before-image conflict detection;
//! - [`Engine`] and [`Transaction`]: the API the SQL layer uses.
//!
//! Internally: `engine.rs` holds the shared state (`Inner`, with the one
//! table of which lock guards which field and the lock order), `commit.rs`
//! the commit pipeline, `checkpoint.rs` checkpoints and their background
//! thread, `recovery.rs` opening, `chunk.rs` chunks and row locations (the
//! base of `table.rs` and `index.rs`), `locks.rs` poison-aware lock helpers.
//! The seeded simulator that checks all of it lives in the `entidb-sim`
//! crate (`sim/`).
//!
//! The on-disk formats are documented in `docs/format.md`, the recovery
//! policy in `docs/recovery.md`.

pub mod backoff;
mod changes;
mod checkpoint;
mod chunk;
pub mod codec;
pub mod columnar;
mod commit;
mod engine;
pub mod error;
mod hidden;
pub mod index;
mod index_run;
mod integrity;
pub mod keys;
mod load;
mod locks;
mod lookup;
pub mod manifest;
pub mod mvcc;
mod recovery;
mod scan;
pub mod schema;
pub mod segment;
pub mod storage;
mod table;
mod txn;
mod unique;
pub mod wal;

pub use backoff::Backoff;
pub use engine::{Engine, EngineOptions};
pub use error::{CheckpointError, CommitError, Error, OpenError, Result, StorageError};
pub use index::KeyRange;
pub use index_run::IndexRunStats;
pub use lookup::IndexScanRequest;
pub use scan::{RowGroupFilter, ScanRequest, ScanStats, TableScan};
pub use schema::TableDef;
pub use txn::{Savepoint, Transaction};
