//! Generate a CSV file, load it with COPY, query it; a malformed file loads
//! nothing and its error names the line.
//!
//! `cargo run --example import_csv`

use entidb::{BlockingConnection, Database};
use std::io::Write;

fn io(e: std::io::Error) -> entidb::Error {
    entidb::ErrorKind::Io(e.to_string()).into()
}

fn main() -> entidb::Result<()> {
    let dir = tempfile::tempdir().map_err(io)?;
    let path = dir.path().join("trips.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
    writeln!(file, "id,city,km,day").map_err(io)?;
    let cities = ["Lisbon", "Porto", "Faro"];
    for i in 0..50_000 {
        let day = 1 + i % 28;
        writeln!(
            file,
            "{i},{},{:.1},2024-02-{day:02}",
            cities[i % 3],
            (i % 400) as f64 / 4.0
        )
        .map_err(io)?;
    }
    file.flush().map_err(io)?;
    drop(file);

    let db = Database::open_in_memory()?;
    let mut conn = BlockingConnection::new(&db)?;
    conn.execute(
        "CREATE TABLE trips (id BIGINT PRIMARY KEY, city TEXT NOT NULL, km DOUBLE, day DATE)",
    )?;
    let loaded = conn.execute(&format!("COPY trips FROM '{}'", path.display()))?;
    println!("COPY loaded {loaded} rows from {}", path.display());

    let rows = conn.query_rows(
        "SELECT city, count(*) AS trips, round(sum(km), 1) AS km FROM trips GROUP BY city ORDER BY km DESC",
        &[],
    )?;
    for row in rows.iter() {
        let (city, trips, km): (String, i64, f64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        println!("  {city:<7} {trips:>6} trips {km:>10.1} km");
    }

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "id,city,km,day\n1,Lisbon,2.5,2024-02-01\n2,Porto,far,2024-02-02\n",
    )
    .map_err(io)?;
    conn.execute("CREATE TABLE more (id BIGINT PRIMARY KEY, city TEXT, km DOUBLE, day DATE)")?;
    let e = conn
        .execute(&format!("COPY more FROM '{}'", bad.display()))
        .err();
    if let Some(e) = &e {
        println!("malformed file: {} (SQLSTATE {})", e.kind(), e.sqlstate());
        println!("  where: {}", e.context().unwrap_or("?"));
    }
    let kept: i64 = conn.query_row("SELECT count(*) FROM more", &[], |r| r.get(0))?;
    println!("rows loaded from the malformed file: {kept}");
    assert_eq!((loaded, kept), (50_000, 0));
    Ok(())
}
