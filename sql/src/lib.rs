//! The EntiDB SQL front: parses statements, handles transactions and DDL
//! itself, and runs queries and DML through Apache DataFusion with every table
//! an EntiDB [`provider::EntiTable`]. See [`session`] for the life of a
//! statement.

mod alter;
mod bare_columns;
mod checked;
pub mod checks;
mod copy;
mod ddl;
pub mod dialect;
mod dml;
pub mod error;
mod exposed_names;
pub mod files;
pub mod foreign_keys;
mod functions;
mod group_concat;
mod identity;
pub mod indexes;
mod info_schema;
mod insert;
pub mod introspect;
pub mod limits;
mod merge;
mod output_names;
mod placeholders;
pub mod pragma;
mod prepared;
pub mod provider;
mod pruning;
mod returning;
mod schemas;
pub mod session;
mod slot;
pub mod stack;
mod statement_cache;
mod subquery;
mod text_rewrite;
mod triggers;
mod truncate;
mod upsert;

pub use error::{Error, ErrorKind, Result};
pub use limits::{DatabaseDir, SessionOptions, register_database_dir};
pub use prepared::Prepared;
pub use session::{Output, Session, count_batch};
pub use statement_cache::CacheStats;
