//! The public engine API refuses bad arguments with a typed error instead of
//! panicking (issue 12.4: out-of-range column indexes panicked with "index
//! out of bounds" in `declare_unique`, `build_index` and the insert path).

#![allow(clippy::disallowed_methods)] // tests may index batches freely
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use entidb_engine::{Engine, Error, IndexScanRequest};

fn invalid<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) {
    match r {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn out_of_range_columns_are_errors_not_panics() {
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let mut t = engine.begin();
    t.insert(kv, &kv_batch(&[(1, "a")])).unwrap();
    t.commit().unwrap();

    let mut t = engine.begin();
    invalid("declare_unique", t.declare_unique(kv, &[7]));
    invalid("declare_unique []", t.declare_unique(kv, &[]));
    invalid("add_unique", t.add_unique(kv, &[2]));
    invalid("build_index", t.build_index(kv, &[5]));
    invalid(
        "index_scan",
        t.index_scan(
            kv,
            &IndexScanRequest {
                index: vec![9],
                ranges: Vec::new(),
                projection: None,
                include_key: false,
                max_candidates: None,
                build: true,
            },
        ),
    );
    // The transaction is still usable and inserts still work.
    t.insert(kv, &kv_batch(&[(2, "b")])).unwrap();
    t.commit().unwrap();
    assert_eq!(snapshot_kv(&engine).unwrap().len(), 2);
}

#[test]
fn a_null_primary_key_is_a_not_null_violation() {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let engine = Engine::open_memory().unwrap();
    let kv = create_kv(&engine);
    let nullable = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, true),
        arrow::datatypes::Field::new("v", arrow::datatypes::DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        nullable,
        vec![
            Arc::new(Int64Array::from(vec![None])),
            Arc::new(StringArray::from(vec![Some("x")])),
        ],
    )
    .unwrap();
    let mut t = engine.begin();
    match t.insert(kv, &batch) {
        Err(e @ Error::NotNullViolation { .. }) => assert!(e.to_string().contains("id")),
        other => panic!("expected NotNullViolation, got {other:?}"),
    }
}
