//! UNIQUE checks at commit (see the UNIQUE section of [`crate::index`]).
//!
//! Runs under the commit lock, so "live" means: not deleted by any commit so
//! far. For every declared unique column set of a written table:
//!
//! - the transaction's own new rows must not share a non-NULL key;
//! - no live committed version with the same key may exist, unless its row
//!   key is one the transaction deletes or rewrites. A collision with a
//!   version committed after the snapshot is a `Conflict` (retrying sees it
//!   and reports the violation); an older one is a `ConstraintViolation`;
//! - for a set added over existing rows (`CREATE UNIQUE INDEX`), no key of
//!   the whole index may have two live versions.

use crate::changes::TableChange;
use crate::chunk::RowLoc;
use crate::error::{Error, Result};
use crate::index::{KeyRange, index_keys};
use crate::keys::display_key;
use crate::locks::read;
use crate::table::TableState;
use ahash::{AHashMap, AHashSet};
use arrow::array::{Array, ArrayRef, AsArray};

/// Validates the unique column sets of one table change.
pub(crate) fn check_commit(table: &TableState, change: &TableChange, snapshot: u64) -> Result<()> {
    if change.unique.is_empty() {
        return Ok(());
    }
    let own = own_keys(change)?;
    for (cols, existing) in &change.unique {
        let fresh = new_keys(table, change, cols)?;
        let index = table.index(cols)?;
        for key in fresh.keys() {
            let locs = index.lookup(&[KeyRange::point(key.to_vec())])?;
            if let Some(seq) = live_other(table, &locs, &own)?.into_iter().next() {
                return Err(if seq > snapshot {
                    Error::Conflict {
                        table: table.def.name.clone(),
                        key: format!("unique value {}", display_key(key)),
                    }
                } else {
                    violation(table, cols)
                });
            }
        }
        if *existing {
            index.for_each(|key, locs| {
                let live = live_other(table, locs, &own)?.len() + fresh.get(key).map_or(0, |_| 1);
                if live > 1 && !has_null(table, cols, locs)? {
                    return Err(violation(table, cols));
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Row keys the change writes or deletes.
fn own_keys(change: &TableChange) -> Result<AHashSet<Box<[u8]>>> {
    let mut own: AHashSet<Box<[u8]>> = change.deleted.iter().map(|(k, _)| k.clone()).collect();
    if let Some(rows) = &change.rows {
        let keys = crate::schema::col(rows, rows.num_columns().saturating_sub(2))?
            .as_binary_opt::<i32>()
            .ok_or_else(|| Error::InvalidArgument("stored batch lacks _key".into()))?;
        own.extend(keys.iter().flatten().map(Box::<[u8]>::from));
    }
    Ok(own)
}

/// The non-NULL unique keys of the change's new rows; fails on a duplicate.
fn new_keys(
    table: &TableState,
    change: &TableChange,
    cols: &[usize],
) -> Result<AHashMap<Box<[u8]>, ()>> {
    let mut out = AHashMap::new();
    let Some(rows) = &change.rows else {
        return Ok(out);
    };
    let def = table.latest_def()?;
    let arrays = cols
        .iter()
        .map(|c| crate::chunk::batch_column(&def, rows, *c))
        .collect::<Result<Vec<ArrayRef>>>()?;
    let (keys, nulls) = index_keys(&arrays)?;
    for (key, null) in keys.iter().zip(nulls) {
        if !null && out.insert(key.unwrap_or_default().into(), ()).is_some() {
            return Err(violation(table, cols));
        }
    }
    Ok(out)
}

/// Creation sequences of the live versions among `locs` whose row key is
/// not in `own`.
fn live_other(table: &TableState, locs: &[RowLoc], own: &AHashSet<Box<[u8]>>) -> Result<Vec<u64>> {
    let chunks = read(&table.chunks)?;
    let mut out = Vec::new();
    for loc in locs {
        let Some(chunk) = chunks.get(loc.chunk) else {
            continue;
        };
        if chunk.deleted_seq(loc.row)?.is_some() {
            continue;
        }
        let key = chunk.read_keys(&[loc.row])?;
        let key = key
            .as_binary_opt::<i32>()
            .filter(|k| !k.is_empty())
            .map(|k| k.value(0));
        if key.is_some_and(|k| own.contains(k)) {
            continue;
        }
        out.push(chunk.created_seq(loc.row)?);
    }
    Ok(out)
}

/// True when the versions at `locs` have a NULL in a unique column (NULLs
/// never collide).
fn has_null(table: &TableState, cols: &[usize], locs: &[RowLoc]) -> Result<bool> {
    let chunks = read(&table.chunks)?;
    let Some(loc) = locs.first() else {
        return Ok(false);
    };
    let Some(chunk) = chunks.get(loc.chunk) else {
        return Ok(false);
    };
    let arrays = chunk.read_rows(&table.latest_def()?, cols, &[loc.row])?;
    Ok(arrays.iter().any(|a| a.null_count() > 0))
}

fn violation(table: &TableState, cols: &[usize]) -> Error {
    // The newest definition names columns added since the table was made.
    let def = table.latest_def().unwrap_or_else(|_| table.def.clone());
    let names: Vec<String> = cols.iter().map(|c| def.column_name(*c)).collect();
    Error::ConstraintViolation {
        table: table.def.name.clone(),
        detail: format!("duplicate value in UNIQUE ({})", names.join(", ")),
    }
}
