//! The session's current transaction, shared with the table providers the
//! session registered in DataFusion.
//!
//! A statement always runs inside a transaction: the session opens one before
//! the statement (an explicit `BEGIN` one, or an autocommit one) and the
//! providers' scans and sinks reach it through this slot. The lock is held
//! only for the duration of one engine call, never across an `.await`.

use datafusion::error::DataFusionError;
use entidb_engine::{Error as EngineError, Transaction};
use std::sync::{Mutex, MutexGuard};

use crate::error::to_df;

/// Holder of the current transaction.
#[derive(Debug, Default)]
pub struct TxnSlot {
    txn: Mutex<Option<Transaction>>,
}

impl TxnSlot {
    fn lock(&self) -> Result<MutexGuard<'_, Option<Transaction>>, EngineError> {
        self.txn.lock().map_err(|_| EngineError::Poisoned {
            cause: "session transaction lock poisoned".into(),
        })
    }

    /// Runs `f` on the current transaction.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Transaction) -> Result<R, EngineError>,
    ) -> Result<R, EngineError> {
        let mut guard = self.lock()?;
        let txn = guard.as_mut().ok_or(EngineError::TransactionClosed)?;
        f(txn)
    }

    /// Like [`TxnSlot::with`], for a closure that fails with a SQL error.
    pub fn with_sql<R>(
        &self,
        f: impl FnOnce(&mut Transaction) -> crate::Result<R>,
    ) -> crate::Result<R> {
        let mut guard = self.lock()?;
        let txn = guard.as_mut().ok_or(EngineError::TransactionClosed)?;
        f(txn)
    }

    /// Like [`TxnSlot::with`], with the error wrapped for DataFusion.
    pub fn with_df<R>(
        &self,
        f: impl FnOnce(&mut Transaction) -> Result<R, EngineError>,
    ) -> Result<R, DataFusionError> {
        self.with(f).map_err(to_df)
    }

    /// Installs a transaction.
    pub fn put(&self, txn: Transaction) -> Result<(), EngineError> {
        *self.lock()? = Some(txn);
        Ok(())
    }

    /// Removes and returns the transaction.
    pub fn take(&self) -> Result<Option<Transaction>, EngineError> {
        Ok(self.lock()?.take())
    }

    /// True when a transaction is installed.
    pub fn is_active(&self) -> bool {
        self.lock().map(|g| g.is_some()).unwrap_or(false)
    }
}
