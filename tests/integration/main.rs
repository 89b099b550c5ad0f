//! The facade's integration tests, one module per concern, built as one test
//! binary: every test binary links DataFusion (about 450 MB each in a debug
//! build), so one binary instead of eighteen keeps a clean build's disk use
//! and link time down. Run one module with
//! `cargo test --test integration isolation::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod alter_table;
mod api;
mod check_constraints;
mod copy_files;
mod deep_statements;
mod foreign_keys;
mod fuzz_sql;
mod identity;
mod indexes;
mod introspection;
mod isolation;
mod limits;
mod prepared;
mod read_only;
mod sql_basics;
mod sql_conformance;
mod sql_errors_and_traps;
mod sql_fixes;
mod types_roundtrip;
mod views_chained;
