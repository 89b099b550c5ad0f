//! The EntiDB command-line tools: the `entidb` shell ([`shell`]) and the
//! `entidb-slt` sqllogictest runner (binaries in `src/bin/`), and the
//! sqllogictest adapter they and `tests/sqllogictest.rs` share ([`slt`]).
//! Kept out of the `entidb` library so that library users do not compile
//! the tools' dependencies.

pub mod shell;
pub mod slt;
