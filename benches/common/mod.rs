//! Data shared by the benchmarks: the same rows for every system.

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The fastest of `runs` runs of `f`.
pub fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// `id BIGINT NOT NULL, k BIGINT, v DOUBLE, s VARCHAR` as Arrow.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
    ]))
}

/// xorshift64: deterministic data for every system.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `rows` rows in batches of 65,536: ids in order, `k` random in 0..1e6,
/// `v` random with two decimals, `s` a 15-character string.
pub fn batches(rows: usize) -> Vec<RecordBatch> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    (0..rows)
        .step_by(65536)
        .map(|start| {
            let n = 65536.min(rows - start);
            let ids: Vec<i64> = (start..start + n).map(|i| i as i64).collect();
            let ks: Vec<i64> = (0..n).map(|_| (rng.next() % 1_000_000) as i64).collect();
            let vs: Vec<f64> = (0..n)
                .map(|_| (rng.next() % 10_000) as f64 / 100.0)
                .collect();
            let ss: Vec<String> = ids.iter().map(|i| format!("s{i:014}")).collect();
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(Int64Array::from(ks)),
                    Arc::new(Float64Array::from(vs)),
                    Arc::new(StringArray::from(ss)),
                ],
            )
            .unwrap()
        })
        .collect()
}
