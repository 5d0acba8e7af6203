//! One snapshot for all workers: a concurrent writer moving value between rows and rows
//! between tables never shows a torn state in the mirror.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::support::{connect, export, fresh_db, open_mirror, runtime, temp_dir};

const ACCOUNTS: i64 = 20_000;
const BALANCE: i64 = 1_000;
const ITEMS: i64 = 50_000;

#[test]
fn concurrent_transfers_never_tear_the_mirror() {
    let db = fresh_db("consistency");
    db.execute(&format!(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
         INSERT INTO accounts SELECT g, {BALANCE} FROM generate_series(1, {ACCOUNTS}) g;
         CREATE TABLE inbox (id int PRIMARY KEY, amount bigint NOT NULL, pad text);
         CREATE TABLE archive (id int PRIMARY KEY, amount bigint NOT NULL, pad text);
         INSERT INTO inbox SELECT g, g % 97, repeat('p', 200) FROM generate_series(1, {ITEMS}) g;
         CREATE TABLE filler (id int, pad text);
         INSERT INTO filler SELECT g, repeat('f', 300) FROM generate_series(1, 100000) g;"
    ));
    let items_total = db.scalar("SELECT sum(amount) FROM inbox");
    let stop = Arc::new(AtomicBool::new(false));
    let transactions = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, transactions, url) = (stop.clone(), transactions.clone(), db.url.clone());
        std::thread::spawn(move || {
            runtime().block_on(async {
                let client = connect(&url).await;
                let mut n: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (from, to) = (n * 7919 % ACCOUNTS + 1, n * 104_729 % ACCOUNTS + 1);
                    let item = n % ITEMS + 1;
                    let sql = format!(
                        "BEGIN;
                         UPDATE accounts SET balance = balance - 3 WHERE id = {from};
                         UPDATE accounts SET balance = balance + 3 WHERE id = {to};
                         WITH moved AS (DELETE FROM inbox WHERE id = {item} RETURNING *)
                           INSERT INTO archive SELECT * FROM moved;
                         WITH moved AS (DELETE FROM archive WHERE id = {item} - 1 RETURNING *)
                           INSERT INTO inbox SELECT * FROM moved;
                         COMMIT;"
                    );
                    client.batch_execute(&sql).await.expect("transfer");
                    transactions.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
    };
    while transactions.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let dir = temp_dir();
    let mirror = dir.path().join("consistent.db");
    let before = transactions.load(Ordering::Relaxed);
    // Small chunks: the accounts and inbox tables are read by several workers at once.
    export(&db, &mirror, &["--jobs", "4", "--chunk-size", "256kB"]);
    let during = transactions.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(during > 0, "the writer committed nothing while the export ran");

    let conn = open_mirror(&mirror);
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(one("SELECT sum(balance) FROM accounts"), ACCOUNTS * BALANCE);
    assert_eq!(one("SELECT count(*) FROM accounts"), ACCOUNTS);
    assert_eq!(
        one("SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM archive)"),
        ITEMS
    );
    assert_eq!(
        one("SELECT (SELECT sum(amount) FROM inbox) + (SELECT coalesce(sum(amount), 0) FROM archive)")
            .to_string(),
        items_total
    );
    assert_eq!(
        one("SELECT count(*) FROM inbox JOIN archive USING (id)"),
        0,
        "no row in both tables"
    );
    eprintln!("consistency: {during} transactions committed during the export");
}
