//! Encryption at rest: known answers, typed key errors, tamper detection,
//! no plaintext on disk, power loss, and a nonce ledger proving that no
//! nonce is ever reused under one key for different plaintext or AAD.

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::storage::crypto::{Key, seal};
use entidb_engine::storage::{
    EncryptedStorage, NonceUse, PowerLoss, Secret, SimDisk, Storage, TornFill,
};
use entidb_engine::{Engine, EngineOptions, Error, OpenError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const KEY: [u8; 32] = [7; 32];

fn open_enc(disk: &SimDisk, secret: Secret, options: EngineOptions) -> Result<Engine, Error> {
    let storage = EncryptedStorage::open(Arc::new(disk.clone()), secret)?;
    Ok(Engine::open(Arc::new(storage), options)?)
}

fn open_key(disk: &SimDisk) -> Engine {
    open_enc(disk, Secret::Key(KEY), EngineOptions::default()).unwrap()
}

/// RFC 8452 Appendix C.2 (AEAD_AES_256_GCM_SIV) through our sealing function.
#[test]
fn rfc8452_known_answers() {
    let mut key = [0u8; 32];
    key[0] = 1;
    let mut nonce = [0u8; 12];
    nonce[0] = 3;
    let key = Key::from_bytes(key);
    assert_eq!(
        seal(&key, &nonce, b"", b"").unwrap(),
        [
            0x07, 0xf5, 0xf4, 0x16, 0x9b, 0xbf, 0x55, 0xa8, 0x40, 0x0c, 0xd4, 0x7e, 0xa6, 0xfd,
            0x40, 0x0f
        ]
    );
    assert_eq!(
        seal(&key, &nonce, b"", &[1, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
        [
            0xc2, 0xef, 0x32, 0x8e, 0x5c, 0x71, 0xc8, 0x3b, 0x84, 0x31, 0x22, 0x13, 0x0f, 0x73,
            0x64, 0xb7, 0x61, 0xe0, 0xb9, 0x74, 0x27, 0xe3, 0xdf, 0x28
        ]
    );
}

fn populate(engine: &Engine) {
    let mut t = engine.begin();
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new("ssn_column", arrow::datatypes::DataType::Utf8, true),
    ]));
    t.create_table("customers", schema, vec![0]).unwrap();
    t.set_catalog(b"catalog mentions customers".to_vec())
        .unwrap();
    t.commit().unwrap();
    let kv = create_kv(&engine.clone());
    let mut t = engine.begin();
    t.insert(
        kv,
        &kv_batch(&[(1, "SECRET-VALUE-one"), (2, "SECRET-VALUE-two")]),
    )
    .unwrap();
    t.commit().unwrap();
    engine.checkpoint().unwrap();
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(3, "SECRET-VALUE-three")]))
        .unwrap();
    t.commit().unwrap();
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_plaintext_on_disk() {
    let disk = SimDisk::new();
    let engine = open_key(&disk);
    populate(&engine);
    drop(engine);
    let names = disk.list().unwrap();
    assert!(names.iter().any(|n| n.ends_with(".eseg")) && names.contains(&"WAL".to_string()));
    for name in names {
        let bytes = disk.contents(&name).unwrap();
        // Needles are long enough not to occur in random ciphertext by chance
        // (a 2-byte name like "kv" would, once in ~64 KiB).
        for needle in [&b"SECRET-VALUE"[..], b"customers", b"ssn_column"] {
            assert!(
                !contains(&bytes, needle),
                "{name} contains {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
    let engine = open_key(&disk);
    let rows = snapshot_kv(&engine).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[&3], "SECRET-VALUE-three");
}

#[test]
fn wrong_key_and_missing_key_are_typed() {
    let disk = SimDisk::new();
    populate(&open_key(&disk));
    let err = open_enc(&disk, Secret::Key([8; 32]), EngineOptions::default()).unwrap_err();
    assert!(matches!(err, Error::WrongKey), "{err}");
    let err = Engine::open(Arc::new(disk.clone()), EngineOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::EncryptionRequired), "{err}");
    // A plain database opened with a key is refused, not garbled.
    let plain = SimDisk::new();
    drop(open_sim(&plain, EngineOptions::default()).unwrap());
    assert!(open_enc(&plain, Secret::Key(KEY), EngineOptions::default()).is_err());
}

#[test]
fn passphrase_round_trip() {
    let disk = SimDisk::new();
    let secret = Secret::Passphrase("correct horse".into());
    populate(&open_enc(&disk, secret.clone(), EngineOptions::default()).unwrap());
    let engine = open_enc(&disk, secret, EngineOptions::default()).unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 3);
    drop(engine);
    let err = open_enc(
        &disk,
        Secret::Passphrase("wrong".into()),
        EngineOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::WrongKey));
}

/// Offsets of the chunks of an encrypted file image.
fn chunks(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 256;
    while at + 32 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let size = 16 + len + 16;
        if at + size > bytes.len() {
            break;
        }
        out.push((at, size));
        at += size;
    }
    out
}

fn wal_with_commits(n: i64) -> SimDisk {
    let disk = SimDisk::new();
    let engine = open_key(&disk);
    let kv = create_kv(&engine);
    for i in 0..n {
        let mut t = engine.begin();
        t.insert(kv, &kv_batch(&[(i, "x")])).unwrap();
        t.commit().unwrap();
    }
    disk
}

fn open_and_read(disk: &SimDisk) -> Result<Model, Error> {
    let engine = open_enc(disk, Secret::Key(KEY), EngineOptions::default())?;
    snapshot_kv(&engine)
}

#[test]
fn bit_flips_in_any_chunk_but_the_torn_tail_are_corruption() {
    let disk = wal_with_commits(5);
    let wal = disk.contents("WAL").unwrap();
    let cs = chunks(&wal);
    assert!(cs.len() >= 5);
    for &(at, size) in &cs[..cs.len() - 1] {
        for offset in [0, 5, 16, size / 2, size - 1] {
            let mut bad = wal.clone();
            bad[at + offset] ^= 0x04;
            disk.set_contents("WAL", bad).unwrap();
            let err = open_and_read(&disk).unwrap_err();
            assert!(
                matches!(err, Error::Corruption { .. }),
                "chunk at {at}+{offset}: {err}"
            );
        }
    }
    disk.set_contents("WAL", wal).unwrap();
    assert_eq!(open_and_read(&disk).unwrap().len(), 5);
}

#[test]
fn swapped_chunks_are_corruption() {
    let disk = wal_with_commits(4);
    let wal = disk.contents("WAL").unwrap();
    let cs = chunks(&wal);
    // Commits 2 and 3 have the same size: swap them.
    let (a, b) = (cs[2], cs[3]);
    assert_eq!(a.1, b.1);
    let mut bad = wal.clone();
    bad[a.0..a.0 + a.1].copy_from_slice(&wal[b.0..b.0 + b.1]);
    bad[b.0..b.0 + b.1].copy_from_slice(&wal[a.0..a.0 + a.1]);
    disk.set_contents("WAL", bad).unwrap();
    assert!(matches!(
        open_and_read(&disk),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn chunk_moved_from_another_file_is_corruption() {
    let disk = wal_with_commits(3);
    let other = wal_with_commits(3);
    let wal = disk.contents("WAL").unwrap();
    let foreign = other.contents("WAL").unwrap();
    let (a, b) = (chunks(&wal)[1], chunks(&foreign)[1]);
    assert_eq!(a.1, b.1);
    let mut bad = wal.clone();
    bad[a.0..a.0 + a.1].copy_from_slice(&foreign[b.0..b.0 + b.1]);
    disk.set_contents("WAL", bad).unwrap();
    assert!(matches!(
        open_and_read(&disk),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn old_epoch_replay_is_corruption() {
    let disk = wal_with_commits(3);
    let old_wal = disk.contents("WAL").unwrap();
    let engine = open_key(&disk);
    engine.checkpoint().unwrap(); // truncates the WAL: new epoch
    let kv = engine.begin().table("kv").unwrap().id;
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(100, "new")])).unwrap();
    t.commit().unwrap();
    drop(engine);
    let new_wal = disk.contents("WAL").unwrap();
    // Append a chunk recorded before the truncation.
    let (at, size) = chunks(&old_wal)[1];
    let mut bad = new_wal.clone();
    bad.extend_from_slice(&old_wal[at..at + size]);
    bad.extend_from_slice(&new_wal[chunks(&new_wal)[0].0..]);
    disk.set_contents("WAL", bad).unwrap();
    assert!(matches!(
        open_and_read(&disk),
        Err(Error::Corruption { .. })
    ));
}

/// `(key fingerprint, nonce)` → `(plaintext hash, AAD)`.
type NonceMap = HashMap<(u64, [u8; 12]), (u64, Vec<u8>)>;

/// Records every (key, nonce) and fails on reuse with other plaintext or AAD.
#[derive(Default)]
struct Ledger {
    seen: Mutex<NonceMap>,
    reused: Mutex<Vec<String>>,
}

impl Ledger {
    fn record(&self, u: NonceUse) {
        let mut seen = self.seen.lock().unwrap();
        match seen.get(&(u.key, u.nonce)) {
            Some((pt, aad)) if *pt != u.plaintext || *aad != u.aad => {
                self.reused
                    .lock()
                    .unwrap()
                    .push(format!("{:x} {:?}", u.key, u.nonce));
            }
            Some(_) => {}
            None => {
                seen.insert((u.key, u.nonce), (u.plaintext, u.aad));
            }
        }
    }
}

fn open_ledgered(
    disk: &SimDisk,
    ledger: &Arc<Ledger>,
    options: EngineOptions,
) -> Result<Engine, Error> {
    let l = ledger.clone();
    let storage = EncryptedStorage::open(Arc::new(disk.clone()), Secret::Key(KEY))?
        .with_observer(Arc::new(move |u| l.record(u)));
    Ok(Engine::open(Arc::new(storage), options)?)
}

/// The power-loss suite on the encrypted backend, with the nonce ledger
/// watching every seal across crashes, truncations, checkpoints and reopens.
#[test]
fn power_loss_on_encrypted_backend_never_reuses_a_nonce() {
    const TXNS: i64 = 40;
    let options = EngineOptions {
        checkpoint_wal_bytes: 8 * 1024,
        // Deterministic I/O order: the crash points are enumerated.
        background_checkpoints: false,
        ..EngineOptions::default()
    };
    let run = |disk: &SimDisk, ledger: &Arc<Ledger>| -> i64 {
        let Ok(engine) = open_ledgered(disk, ledger, options.clone()) else {
            return 0;
        };
        let mut t = engine.begin();
        if t.create_table("kv", kv_schema(), vec![0]).is_err() || t.commit().is_err() {
            return 0;
        }
        for i in 1..=TXNS {
            let mut t = engine.begin();
            let Ok(def) = t.table("kv") else { return i - 1 };
            if put(&mut t, def.id, i % 9, &format!("v{i}")).is_err() || t.commit().is_err() {
                return i - 1;
            }
        }
        TXNS
    };
    let ledger = Arc::new(Ledger::default());
    let clean = SimDisk::new();
    assert_eq!(run(&clean, &ledger), TXNS);
    let total = clean.op_count();
    let modes = [
        PowerLoss::DropUnsynced,
        PowerLoss::TearLastWrite {
            sectors_kept: 1,
            fill: TornFill::Garbage,
        },
        PowerLoss::TearLastWrite {
            sectors_kept: 0,
            fill: TornFill::Zero,
        },
    ];
    for k in 0..total {
        let disk = SimDisk::new();
        disk.crash_after(k).unwrap();
        let acked = run(&disk, &ledger);
        disk.power_loss(modes[(k % 3) as usize]).unwrap();
        let engine = open_ledgered(&disk, &ledger, options.clone())
            .unwrap_or_else(|e| panic!("crash at op {k}: reopen failed: {e}"));
        let state = match snapshot_kv(&engine) {
            Ok(m) => m,
            Err(Error::TableNotFound { .. }) => Model::new(),
            Err(e) => panic!("crash at op {k}: {e}"),
        };
        // Every acknowledged commit is there: the newest acknowledged value
        // of each key is present (or a newer one from the commit in flight).
        for key in 0..9 {
            let last_acked = (1..=acked).rev().find(|i| i % 9 == key);
            if let Some(i) = last_acked {
                let v = state
                    .get(&key)
                    .unwrap_or_else(|| panic!("op {k}: key {key} lost"));
                let n: i64 = v[1..].parse().unwrap();
                assert!(n >= i, "op {k}: key {key} has v{n}, acknowledged v{i}");
            }
        }
        // Write more after recovery: new epochs, still no reuse.
        if let Ok(def) = engine.begin().table("kv") {
            let mut t = engine.begin();
            put(&mut t, def.id, 0, "after").unwrap();
            t.commit().unwrap();
            engine.checkpoint().unwrap();
        }
    }
    let reused = ledger.reused.lock().unwrap();
    assert!(
        reused.is_empty(),
        "{} nonces reused, first: {:?}",
        reused.len(),
        reused.iter().take(3).collect::<Vec<_>>()
    );
    assert!(ledger.seen.lock().unwrap().len() > 100);
}
