//! Fuzzing the catalog blob decoder: a real catalog's encoding, mutated
//! (bit flips, overwritten bytes, interesting 32-bit counts and lengths,
//! truncation, insertion, deletion), must decode to `Ok` or a typed error —
//! never a panic — and whatever decodes must re-encode and decode to the
//! same catalog. `FUZZ_SECONDS` (default 2) and `FUZZ_SEED` as in the
//! engine's fuzz targets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use entidb_catalog::{Catalog, ColumnMeta, IndexMeta, TableMeta, ViewMeta};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

fn sample() -> Catalog {
    let column = |name: &str, default: Option<&str>| ColumnMeta {
        name: name.into(),
        default: default.map(Into::into),
        identity: None,
    };
    Catalog {
        triggers: vec![entidb_catalog::TriggerMeta {
            name: "t_log".into(),
            table: "t".into(),
            sql: "CREATE TRIGGER t_log AFTER INSERT ON t BEGIN SELECT NEW.id; END".into(),
        }],
        sequences: vec![entidb_catalog::SequenceMeta {
            name: "t_id_seq".into(),
            owner: Some("t".into()),
        }],
        tables: vec![
            TableMeta {
                name: "t".into(),
                table_id: 7,
                columns: vec![
                    column("id", None),
                    column("v", Some("'x'")),
                    column("n", Some("1 + 2")),
                ],
                primary_key: vec![0],
                unique: vec![vec![1], vec![1, 2]],
                checks: vec![entidb_catalog::CheckMeta {
                    name: "t_n_check".into(),
                    sql: "n > 0".into(),
                }],
                foreign_keys: Vec::new(),
            },
            TableMeta {
                name: "u".into(),
                table_id: 9,
                columns: vec![column("a", None)],
                primary_key: Vec::new(),
                unique: Vec::new(),
                checks: Vec::new(),
                foreign_keys: vec![entidb_catalog::ForeignKeyMeta {
                    name: "u_a_fkey".into(),
                    columns: vec!["a".into()],
                    parent: "t".into(),
                    parent_columns: vec!["id".into()],
                    on_delete: entidb_catalog::FkAction::Cascade,
                    on_update: entidb_catalog::FkAction::NoAction,
                }],
            },
        ],
        views: vec![ViewMeta {
            name: "w".into(),
            sql: "SELECT id FROM t WHERE v <> 'y'".into(),
        }],
        indexes: vec![IndexMeta {
            name: "t_n".into(),
            table: "t".into(),
            columns: vec!["n".into(), "v".into()],
            unique: false,
        }],
        schemas: vec!["s".into()],
    }
}

fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        match rng.random_range(0..6) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                bytes[i] = rng.random();
            }
            2 if len >= 4 => {
                let i = rng.random_range(0..len - 3);
                let v: u32 = [0, 1, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF][rng.random_range(0..5)];
                bytes[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            3 if len > 0 => bytes.truncate(rng.random_range(0..len)),
            4 => {
                let i = rng.random_range(0..=len);
                let extra: Vec<u8> = (0..rng.random_range(1..12)).map(|_| rng.random()).collect();
                bytes.splice(i..i, extra);
            }
            _ if len > 1 => {
                let a = rng.random_range(0..len - 1);
                bytes.drain(a..(a + rng.random_range(1..8)).min(len));
            }
            _ => bytes.push(rng.random()),
        }
    }
}

#[test]
fn catalog_decoder_never_panics_and_round_trips() {
    let seconds: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xCA7);
    let blob = sample().encode().unwrap();
    assert_eq!(Catalog::decode(&blob).unwrap(), sample());
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut cases, mut decoded) = (0u64, 0u64);
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    while Instant::now() < deadline {
        let case_seed = seed ^ cases.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = StdRng::seed_from_u64(case_seed);
        let mut bytes = blob.clone();
        mutate(&mut rng, &mut bytes);
        let outcome = std::panic::catch_unwind(|| match Catalog::decode(&bytes) {
            Ok(c) => {
                let again = Catalog::decode(&c.encode().unwrap()).unwrap();
                assert_eq!(again, c, "re-encoding changed the catalog");
                true
            }
            Err(_) => false,
        });
        match outcome {
            Ok(ok) => decoded += u64::from(ok),
            Err(_) => failures.push(format!("case seed {case_seed}: panic")),
        }
        cases += 1;
    }
    let _ = std::panic::take_hook();
    println!("catalog fuzz: {cases} cases ({decoded} decoded) in {seconds} s");
    assert!(failures.is_empty(), "{failures:?}");
}
