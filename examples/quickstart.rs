//! Create a database, insert, query, close and reopen it.
//!
//! `cargo run --example quickstart`

use entidb::{BlockingConnection, Database, params};

fn main() -> entidb::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| entidb::ErrorKind::Io(e.to_string()))?;
    let path = dir.path().join("quickstart.db");

    {
        let db = Database::open(&path)?;
        let mut conn = BlockingConnection::new(&db)?;
        conn.execute("CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, age INT)")?;
        for (id, name, age) in [(1, "ada", 36), (2, "alan", 41), (3, "grace", 85)] {
            conn.execute_with("INSERT INTO users VALUES (?, ?, ?)", params![id, name, age])?;
        }
        let oldest: String = conn.query_row(
            "SELECT name FROM users ORDER BY age DESC LIMIT 1",
            &[],
            |r| r.get(0),
        )?;
        println!("oldest user: {oldest}");
    } // last handle dropped: the database is checkpointed and closed

    let db = Database::open(&path)?;
    let mut conn = BlockingConnection::new(&db)?;
    let rows = conn.query_rows("SELECT id, name, age FROM users ORDER BY id", &[])?;
    println!("after reopening, {} users:", rows.len());
    for row in rows.iter() {
        let (id, name, age): (i64, String, i32) =
            (row.get("id")?, row.get("name")?, row.get("age")?);
        println!("  {id} {name} {age}");
    }
    assert_eq!(rows.len(), 3);
    Ok(())
}
