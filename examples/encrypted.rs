//! An encrypted database: created with a key, reopened with it, and refused
//! with a wrong one (SQLSTATE 28P01) or none (28000).
//!
//! `cargo run --example encrypted`

use entidb::{BlockingConnection, Database, OpenOptions, Secret};

fn with_key(key: [u8; 32]) -> OpenOptions {
    OpenOptions {
        encryption: Some(Secret::Key(key)),
        ..OpenOptions::default()
    }
}

fn main() -> entidb::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| entidb::ErrorKind::Io(e.to_string()))?;
    let path = dir.path().join("secret.db");
    let key = [7u8; 32];

    {
        let db = Database::open_with(&path, with_key(key))?;
        let mut conn = BlockingConnection::new(&db)?;
        conn.execute("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT)")?;
        conn.execute("INSERT INTO notes VALUES (1, 'the launch codes are 0000')")?;
        conn.execute("CHECKPOINT")?; // segments are encrypted like the WAL
        println!("created an encrypted database at {}", path.display());
    }

    let db = Database::open_with(&path, with_key(key))?;
    let mut conn = BlockingConnection::new(&db)?;
    let body: String = conn.query_row("SELECT body FROM notes WHERE id = 1", &[], |r| r.get(0))?;
    println!("reopened with the key: {body:?}");
    drop(conn);
    drop(db);

    let wrong = Database::open_with(&path, with_key([8u8; 32])).err();
    match &wrong {
        Some(e) => println!("wrong key: {} (SQLSTATE {})", e.kind(), e.sqlstate()),
        None => println!("wrong key: unexpectedly opened"),
    }
    let none = Database::open(&path).err();
    match &none {
        Some(e) => println!("no key: {} (SQLSTATE {})", e.kind(), e.sqlstate()),
        None => println!("no key: unexpectedly opened"),
    }
    assert_eq!(wrong.map(|e| e.sqlstate()), Some("28P01"));
    assert_eq!(none.map(|e| e.sqlstate()), Some("28000"));
    Ok(())
}
