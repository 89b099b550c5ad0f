//! Two connections update the same row: the second committer gets a
//! conflict (SQLSTATE 40001), and `retry_on_conflict` runs it again.
//!
//! `cargo run --example transactions`

use entidb::{BlockingConnection, Database, params};

fn balance(conn: &mut BlockingConnection, id: i64) -> entidb::Result<i64> {
    conn.query_row(
        "SELECT balance FROM accounts WHERE id = $1",
        params![id],
        |r| r.get(0),
    )
}

fn main() -> entidb::Result<()> {
    let db = Database::open_in_memory()?;
    let mut alice = BlockingConnection::new(&db)?;
    let mut bob = BlockingConnection::new(&db)?;
    alice.execute(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL);
         INSERT INTO accounts VALUES (1, 100), (2, 0)",
    )?;

    // A conflict, by hand: both change account 1, Bob commits first.
    let mut tx = alice.transaction()?;
    tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")?;
    bob.execute("UPDATE accounts SET balance = balance + 5 WHERE id = 1")?;
    match tx.commit() {
        Err(e) if e.is_retryable() => {
            println!("alice's commit: {} (SQLSTATE {})", e.kind(), e.sqlstate())
        }
        other => println!("unexpected: {other:?}"),
    }
    println!(
        "balance of 1 after bob's deposit: {}",
        balance(&mut alice, 1)?
    );

    // The same transfer with a retry: the first attempt conflicts again
    // (Bob deposits in between), the second succeeds.
    let mut attempts = 0;
    alice.retry_on_conflict(|tx| {
        attempts += 1;
        tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")?;
        tx.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")?;
        if attempts == 1 {
            bob.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")?;
        }
        Ok(())
    })?;
    println!("transfer committed after {attempts} attempts");
    let (one, two) = (balance(&mut alice, 1)?, balance(&mut alice, 2)?);
    println!("balances: 1 = {one}, 2 = {two}");
    assert_eq!((one, two, attempts), (96, 10, 2));
    Ok(())
}
