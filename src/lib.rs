//! EntiDB: an embedded transactional SQL database.
//!
//! This facade re-exports the layers below it; the SQL-level `Database` and
//! `Connection` API is built on top of them.

pub use entidb_engine as engine;
pub use entidb_engine::{Engine, EngineOptions, Error, Result, Transaction};
