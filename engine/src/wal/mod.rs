//! The write-ahead log.
//!
//! Every committed transaction is appended to the single file `WAL` as a run
//! of records and made durable with one fdatasync before the commit is
//! acknowledged. Records are never interleaved: a transaction's records are
//! encoded in full at commit time and appended as one contiguous write, so the
//! log reads as
//!
//! ```text
//!   BEGIN(txn 7, seq 41) PUT… DELETE… COMMIT(txn 7, seq 41)
//!   BEGIN(txn 9, seq 42) CREATE_TABLE PUT… COMMIT(txn 9, seq 42)
//!   CHECKPOINT(seq 42)
//! ```
//!
//! RECORD LAYOUT (little-endian; `docs/format.md` has the full table):
//!
//! ```text
//!   0      4  magic 0x4C415745 ("EWAL")
//!   4      1  format major version (1)
//!   5      1  format minor version (0)
//!   6      1  record type
//!   7      1  flags (0)
//!   8      4  payload length N
//!   12     N  payload
//!   12+N   4  CRC-32 (IEEE) of bytes 0..12+N
//! ```
//!
//! GROUP COMMIT. Committers append their bytes in commit order under the
//! engine's commit lock, then wait in [`writer::WalWriter::wait_durable`]. The
//! first waiter becomes the sync leader; if other committers are in flight
//! (announced, not yet appended) it waits for them up to 100 µs, then
//! fdatasyncs everything appended so far; the others sleep until a sync covers
//! their end offset. One fdatasync thus acknowledges every commit appended
//! before it started. A lone committer never waits.
//!
//! FAILURE. A failed append or fdatasync poisons the writer: the bytes may or
//! may not be on disk, so nothing more is written and every later commit gets
//! `Poisoned` until the database is re-opened and recovery decides from what
//! is actually on disk. The fsync is never retried.
//!
//! BASE RECORD. Every WAL file begins with a CHECKPOINT record naming the
//! checkpoint it follows (0 for a new database): written when the database
//! is created and each time a checkpoint empties the log. Recovery compares
//! it with the manifest's `checkpoint_seq`, so an old copy of either file is
//! refused instead of silently losing commits. It is not counted in
//! [`writer::WalWriter::len`]: a log holding only its base record is empty.
//!
//! RECOVERY (see [`reader`] and `docs/recovery.md`): a torn tail is cut off, a
//! damaged record followed by valid ones is corruption and refuses the open.

pub mod reader;
pub mod record;
pub mod writer;

pub use reader::{WalScan, scan_wal};
pub use record::{RecordType, WalRecord};
pub use writer::WalWriter;

/// Name of the log file in the database directory.
pub const WAL_FILE: &str = "WAL";
/// The next log while a checkpoint writes it (see `WalWriter::reset`).
pub const WAL_TMP: &str = "WAL.tmp";

/// The framed base record of a log that follows checkpoint `checkpoint_seq`
/// (see BASE RECORD above).
pub fn base_record(checkpoint_seq: u64) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    WalRecord::Checkpoint { checkpoint_seq }.encode_into(&mut out)?;
    Ok(out)
}
