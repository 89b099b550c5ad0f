//! EntiDB: an embedded transactional SQL database.
pub use entidb_engine as engine;
