//! Property tests: the WAL, segment and manifest decoders, fed arbitrary
//! bytes, return `Ok` or a typed error — never a panic, never an allocation
//! sized by an unchecked length.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use entidb_engine::manifest::Manifest;
use entidb_engine::segment::{Footer, SegmentReader, segment_file_name};
use entidb_engine::storage::{SimDisk, Storage};
use entidb_engine::wal::record::frame;
use entidb_engine::wal::scan_wal;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wal_scan_of_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = scan_wal(&bytes, "WAL");
    }

    /// CRC-valid frames around arbitrary payloads reach every payload decoder,
    /// including the Arrow IPC decoding of PUT batches and table schemas.
    #[test]
    fn wal_scan_of_framed_arbitrary_payloads(
        records in proptest::collection::vec(
            (1u8..=12, proptest::collection::vec(any::<u8>(), 0..512)), 1..6)
    ) {
        let mut wal = Vec::new();
        for (kind, payload) in &records {
            frame(*kind, payload, &mut wal).unwrap();
        }
        let _ = scan_wal(&wal, "WAL");
    }

    #[test]
    fn manifest_decode_of_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Manifest::decode(&bytes);
    }

    /// A correctly framed manifest with an arbitrary payload.
    #[test]
    fn manifest_decode_of_framed_arbitrary_payload(payload in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut bytes = b"EMAN".to_vec();
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let _ = Manifest::decode(&bytes);
    }

    #[test]
    fn segment_footer_decode_of_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        file_len in any::<u64>(),
    ) {
        let _ = Footer::decode(&bytes, "seg", 0, file_len);
    }

    #[test]
    fn segment_open_of_arbitrary_file(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let disk = SimDisk::new();
        let name = segment_file_name(7);
        disk.open(&name, true).unwrap();
        disk.set_contents(&name, bytes).unwrap();
        if let Ok(seg) = SegmentReader::open(&disk, 7) {
            for g in 0..seg.footer.row_groups.len() {
                for c in 0..seg.footer.columns as usize {
                    let _ = seg.read_column(g, c);
                }
            }
        }
    }
}
