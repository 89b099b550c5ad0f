//! A million rows loaded through Arrow, aggregated, exported to Parquet and
//! read back.
//!
//! `cargo run --example analytics`

use entidb::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use entidb::{BlockingConnection, Database};
use std::sync::Arc;
use std::time::Instant;

const ROWS: i64 = 1_000_000;
const BATCH: i64 = 100_000;

fn main() -> entidb::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| entidb::ErrorKind::Io(e.to_string()))?;
    let db = Database::open_in_memory()?;
    let mut conn = BlockingConnection::new(&db)?;
    conn.execute(
        "CREATE TABLE sales (id BIGINT PRIMARY KEY, region TEXT NOT NULL, amount DOUBLE)",
    )?;

    let start = Instant::now();
    let regions = ["north", "south", "east", "west"];
    let mut tx = conn.transaction()?;
    for first in (0..ROWS).step_by(BATCH as usize) {
        let ids: Vec<i64> = (first..first + BATCH).collect();
        let region: Vec<&str> = ids.iter().map(|i| regions[(*i % 4) as usize]).collect();
        let amount: Vec<f64> = ids.iter().map(|i| (*i % 1000) as f64 / 10.0).collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as _),
            ("region", Arc::new(StringArray::from(region)) as _),
            ("amount", Arc::new(Float64Array::from(amount)) as _),
        ])
        .map_err(|e| entidb::ErrorKind::Execution(e.to_string()))?;
        tx.append("sales", &batch)?;
    }
    tx.commit()?;
    println!(
        "loaded {ROWS} rows through Arrow in {:.2?}",
        start.elapsed()
    );

    let start = Instant::now();
    let rows = conn.query_rows(
        "SELECT region, count(*) AS n, round(sum(amount), 1) AS total, round(avg(amount), 3) AS mean
         FROM sales GROUP BY region ORDER BY region",
        &[],
    )?;
    println!("aggregated in {:.2?}:", start.elapsed());
    for row in rows.iter() {
        let (region, n, total, mean): (String, i64, f64, f64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        println!("  {region:<6} {n:>8} rows  total {total:>12.1}  mean {mean:.3}");
    }

    let file = dir.path().join("sales.parquet");
    let file = file.display();
    let start = Instant::now();
    let written = conn.execute(&format!(
        "COPY (SELECT * FROM sales WHERE amount > 50) TO '{file}'"
    ))?;
    println!(
        "exported {written} rows to Parquet in {:.2?}",
        start.elapsed()
    );
    let back: i64 = conn.query_row(
        &format!("SELECT count(*) FROM '{file}' WHERE region = 'north'"),
        &[],
        |r| r.get(0),
    )?;
    println!("read back from the Parquet file: {back} rows of region north");
    assert_eq!(written, 499_000);
    Ok(())
}
