//! `TRUNCATE [TABLE] name [, …] [CONTINUE IDENTITY] [RESTRICT]`.
//!
//! TRUNCATE never reads the rows: inside the session's transaction each
//! table's engine table is dropped and an empty one with the same columns
//! and primary key is created (a new engine id), and the catalog entry is
//! pointed at it. Indexes and UNIQUE constraints are catalog definitions
//! over the table's name and columns, so they carry over; their contents
//! start empty.
//!
//! It is transactional like any DDL: ROLLBACK (or a failing later
//! statement in autocommit) brings the rows back, and the old table's
//! segments are released by the next checkpoint after COMMIT, as for DROP
//! TABLE. Readers with an older snapshot still see the old rows. A
//! transaction that wrote the table concurrently fails at commit with
//! 40001 (the table it wrote was dropped), and so does a TRUNCATE that
//! races a committed write (the write-write rule on the dropped table).
//!
//! A table another table's FOREIGN KEY refers to is truncated only
//! together with that table (in the same statement), as in PostgreSQL;
//! alone it is 0A000.

use crate::error::{ErrorKind, Result};
use crate::session::Session;
use datafusion::sql::sqlparser::ast::{Truncate, TruncateIdentityOption};
use std::collections::HashSet;

/// Runs a TRUNCATE statement.
pub fn run(session: &mut Session, t: &Truncate) -> Result<()> {
    if t.partitions.is_some() || t.on_cluster.is_some() {
        return Err(ErrorKind::NotSupported("TRUNCATE … PARTITION / ON CLUSTER".into()).into());
    }
    if matches!(t.identity, Some(TruncateIdentityOption::Restart)) {
        return Err(ErrorKind::NotSupported("TRUNCATE … RESTART IDENTITY".into()).into());
    }
    if matches!(
        t.cascade,
        Some(datafusion::sql::sqlparser::ast::CascadeOption::Cascade)
    ) {
        return Err(ErrorKind::NotSupported("TRUNCATE … CASCADE".into()).into());
    }
    let mut catalog = session.catalog.as_ref().clone();
    let mut named = HashSet::new();
    for target in &t.table_names {
        named.insert(crate::schemas::resolve_for_ddl(&catalog, &target.name)?);
    }
    for child in &catalog.tables {
        if named.contains(&child.name) {
            continue;
        }
        if let Some(fk) = child
            .foreign_keys
            .iter()
            .find(|f| named.contains(&f.parent))
        {
            return Err(ErrorKind::NotSupported(format!(
                "cannot truncate a table referenced in a foreign key constraint: table {} \
                 references {} (truncate {} in the same statement)",
                child.name, fk.parent, child.name
            ))
            .into());
        }
    }
    let mut done = HashSet::new();
    for target in &t.table_names {
        let name = crate::schemas::resolve_for_ddl(&catalog, &target.name)?;
        if !done.insert(name.clone()) {
            continue;
        }
        let Some(meta) = catalog.tables.iter_mut().find(|m| m.name == name) else {
            if t.if_exists {
                continue;
            }
            if catalog.views.iter().any(|v| v.name == name) {
                return Err(ErrorKind::NotSupported(format!("TRUNCATE of view {name}")).into());
            }
            return Err(ErrorKind::UndefinedTable { name }.into());
        };
        let id = meta.table_id;
        let def = session.slot.with(|tx| {
            let old = tx.table_by_id(id)?;
            tx.drop_table(id)?;
            tx.create_table(&old.name, old.schema.clone(), old.key_columns.clone())
        })?;
        meta.table_id = def.id;
    }
    session.slot.with(|tx| catalog.save(tx))?;
    Ok(())
}
