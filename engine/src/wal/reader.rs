//! Reading the WAL back and applying the recovery policy.
//!
//! [`scan_wal`] walks the log from offset 0 and classifies how it ends:
//!
//! - **clean end**: the last record ends exactly at end of file;
//! - **torn tail** (tolerated): the log ends in a short header, a length that
//!   runs past end of file, zero fill, or a record whose CRC fails — and no
//!   valid record follows anywhere after it. The partial transaction is not
//!   applied; the caller truncates the file to [`WalScan::valid_len`];
//! - **corruption** (fatal): a damaged record *followed by a valid record*,
//!   a record of an unknown major version, or a CRC-valid record whose payload
//!   does not decode. The scan returns [`Error::Corruption`] and the caller
//!   must not modify anything.
//!
//! `valid_len` is the end of the last *complete* transaction (its COMMIT or
//! ABORT record) or CHECKPOINT record, so that a transaction whose append was
//! cut short never has new records appended after its prefix.
#![deny(clippy::indexing_slicing)]

use super::record::{Framed, MAGIC, RecordType, WalRecord, known_type, unframe};
use crate::error::{Error, Result};

/// The outcome of reading a WAL.
#[derive(Debug, Default)]
pub struct WalScan {
    /// Every decoded record with its offset, in log order (skipped
    /// newer-minor records are not included).
    pub records: Vec<(u64, WalRecord)>,
    /// Length of the prefix ending at the last complete transaction.
    pub valid_len: u64,
    /// True when bytes after `valid_len` exist (a torn tail to cut off).
    pub torn: bool,
}

/// Reads every record of a WAL image, applying the recovery policy above.
pub fn scan_wal(buf: &[u8], file: &str) -> Result<WalScan> {
    let mut scan = WalScan::default();
    let mut offset = 0usize;
    loop {
        let rest = buf.get(offset..).unwrap_or_default();
        if rest.is_empty() {
            break;
        }
        match unframe(rest) {
            Framed::Record {
                kind,
                minor,
                payload,
                len,
            } => {
                let at = offset as u64;
                let kind = known_type(kind, minor).map_err(|r| Error::corruption(file, at, r))?;
                if let Some(kind) = kind {
                    let rec = WalRecord::decode(kind, payload, file, at + 12)?;
                    let ends_unit = matches!(
                        kind,
                        RecordType::Commit | RecordType::Abort | RecordType::Checkpoint
                    );
                    scan.records.push((at, rec));
                    offset += len;
                    if ends_unit {
                        scan.valid_len = offset as u64;
                    }
                } else {
                    offset += len;
                }
            }
            Framed::UnknownMajor(major) => {
                return Err(Error::corruption(
                    file,
                    offset as u64,
                    format!("record of unknown major version {major}"),
                ));
            }
            Framed::Truncated | Framed::Damaged(_) => {
                if let Some(next) = next_valid_record(buf, offset + 1) {
                    let reason = match unframe(rest) {
                        Framed::Damaged(r) => r,
                        _ => "record length runs into later records".to_string(),
                    };
                    return Err(Error::corruption(
                        file,
                        offset as u64,
                        format!("{reason}, followed by a valid record at offset {next}"),
                    ));
                }
                break;
            }
        }
    }
    scan.torn = (buf.len() as u64) > scan.valid_len;
    Ok(scan)
}

/// Offset of the first CRC-valid record starting at or after `from`.
fn next_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut at = from;
    while let Some(window) = buf.get(at..) {
        let pos = window.windows(4).position(|w| w == magic)?;
        let candidate = at + pos;
        if matches!(
            unframe(buf.get(candidate..).unwrap_or_default()),
            Framed::Record { .. }
        ) {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}
