//! `pgmirror sync`: a replica made under a concurrent write workload, followed and caught
//! up, holds exactly what a fresh export holds (cell by cell, storage class and bytes, exact
//! texts included) and restores to the source's rows; crashes lose and repeat nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;

use crate::support::{
    assert_ok, connect, copy_schema, exit_within, fixtures_dir, fresh_db, open_mirror, pgmirror,
    pgmirror_command, pgmirror_with_env, restore, runtime, signal, table_digests, temp_dir, wait_for, TestDb,
};

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn init(db: &TestDb, mirror: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "sync",
        "--init",
        "--quiet",
        "--source",
        &db.url,
        "--mirror",
        path_text(mirror),
    ];
    args.extend_from_slice(extra);
    pgmirror(&args)
}

fn sync_json(mirror: &Path) -> serde_json::Value {
    let output = pgmirror(&["sync", "--quiet", "--json", "--mirror", path_text(mirror)]);
    assert_ok(&output);
    serde_json::from_slice(&output.stdout).expect("sync --json prints JSON")
}

/// Each row of a mirror table as exactly what SQLite stores (storage class and bits), with
/// its kept exact texts; sorted, so two tables compare as multisets.
fn stored_rows(conn: &rusqlite::Connection, table: &str) -> Vec<String> {
    let mut exact: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut statement = conn
        .prepare("SELECT row, column_name, exact_text FROM _pgmirror_exact_text WHERE sqlite_table = ?1 ORDER BY row, column_name")
        .unwrap();
    let mut rows = statement.query([table]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let text = format!(
            "{}={}",
            row.get::<_, String>(1).unwrap(),
            row.get::<_, String>(2).unwrap()
        );
        exact.entry(row.get(0).unwrap()).or_default().push(text);
    }
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    let mut statement = conn.prepare(&format!("SELECT rowid, * FROM {quoted}")).unwrap();
    let columns = statement.column_count();
    let mut rows = statement.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let rowid: i64 = row.get(0).unwrap();
        let mut cells: Vec<String> = (1..columns)
            .map(|i| match row.get_ref(i).unwrap() {
                ValueRef::Null => "N".to_owned(),
                ValueRef::Integer(v) => format!("I{v}"),
                ValueRef::Real(v) => format!("R{:016x}", v.to_bits()),
                ValueRef::Text(t) => format!("T{:?}", String::from_utf8_lossy(t)),
                ValueRef::Blob(b) => format!("B{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
            })
            .collect();
        cells.extend(exact.remove(&rowid).unwrap_or_default());
        out.push(cells.join("|"));
    }
    assert!(
        exact.is_empty(),
        "table {table}: exact texts of rows it does not have: {exact:?}"
    );
    out.sort();
    out
}

fn recorded_row_count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(
        "SELECT row_count FROM _pgmirror_tables WHERE sqlite_name = ?1",
        [table],
        |r| r.get(0),
    )
    .unwrap()
}

fn followed_tables(conn: &rusqlite::Connection) -> Vec<String> {
    let text: String = conn
        .query_row("SELECT value FROM _pgmirror_sync WHERE key = 'tables'", [], |r| {
            r.get(0)
        })
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The replica's followed tables hold exactly the fresh export's cells; returns the rows compared.
fn assert_same_as_fresh_export(db: &TestDb, replica: &Path, dir: &Path) -> usize {
    let fresh = dir.join("fresh.db");
    crate::support::export(db, &fresh, &["--quiet"]);
    let (replica_conn, fresh_conn) = (open_mirror(replica), open_mirror(&fresh));
    let mut compared = 0;
    for table in followed_tables(&replica_conn) {
        let (got, want) = (
            stored_rows(&replica_conn, &table),
            stored_rows(&fresh_conn, &table),
        );
        if got != want {
            let missing: Vec<&String> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
            let extra: Vec<&String> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
            panic!(
                "table {table}: the replica differs from a fresh export ({} vs {} rows)\nmissing: {missing:#?}\nextra: {extra:#?}",
                got.len(),
                want.len()
            );
        }
        assert_eq!(
            recorded_row_count(&replica_conn, &table),
            got.len() as i64,
            "table {table}: _pgmirror_tables.row_count"
        );
        compared += got.len();
    }
    compared
}

/// Restores the replica into a copy of the schema and compares every table's digest.
fn assert_restores_to_source(db: &TestDb, replica: &Path, target_name: &str) {
    let target = fresh_db(target_name);
    copy_schema(db, &target);
    assert_ok(&restore(replica, &target, &[]));
    let (want, got) = (table_digests(db), table_digests(&target));
    assert_eq!(got, want, "restored replica vs source");
    // Sequences are not in the stream; sync records their values after each catch-up.
    let sequences = "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2";
    assert_eq!(
        target.query(sequences),
        db.query(sequences),
        "sequences after restore"
    );
}

/// A database loaded with fixtures/sync.sql and a replica of it made by `--init`.
fn new_replica(name: &str) -> (TestDb, tempfile::TempDir, std::path::PathBuf) {
    let db = load_fixture(name);
    let dir = temp_dir();
    let replica = dir.path().join("replica.db");
    assert_ok(&init(&db, &replica, &[]));
    (db, dir, replica)
}

/// The single number a query over the mirror returns.
fn count_rows(mirror: &Path, sql: &str) -> i64 {
    open_mirror(mirror).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A sync that the failpoint aborts where it says, as a crash would end it.
fn crash_at(replica: &Path, failpoint: &str) {
    let crashed = pgmirror_with_env(
        &["sync", "--quiet", "--mirror", path_text(replica)],
        &[("PGMIRROR_FAILPOINT", failpoint)],
    );
    assert_eq!(
        crashed.status.code(),
        None,
        "the failpoint {failpoint} aborts the run: {}",
        String::from_utf8_lossy(&crashed.stderr)
    );
}

/// Removes the replica's slot: slots are the cluster's, and each pins WAL.
fn drop_replica(replica: &Path) {
    assert_ok(&pgmirror(&[
        "sync",
        "--drop",
        "--quiet",
        "--mirror",
        path_text(replica),
    ]));
}

fn slot_count(db: &TestDb) -> String {
    db.scalar("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
}

/// A random write workload: inserts, upserts, TOAST-preserving updates, key changes,
/// deletes, duplicate rows, partition moves, TRUNCATE, rollbacks and savepoints, transfers.
struct Workload {
    stop: Arc<AtomicBool>,
    /// TRUNCATE asks for an ACCESS EXCLUSIVE lock, which queues behind the initial copy's
    /// locks and makes the copy's workers wait behind it: --init then fails after its
    /// --lock-wait-timeout, as export and pg_dump do. So it is allowed only after --init.
    truncates: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workload {
    fn start(db: &TestDb, seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let truncates = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let (url, stop_flag, count) = (db.url.clone(), stop.clone(), committed.clone());
        let truncates_allowed = truncates.clone();
        let thread = std::thread::spawn(move || {
            runtime().block_on(async {
                let client = connect(&url).await;
                let mut random = seed;
                let mut next_id = 1000u64;
                while !stop_flag.load(Ordering::Relaxed) {
                    let truncate = truncates_allowed.load(Ordering::Relaxed);
                    let sql = transaction(&mut random, &mut next_id, truncate);
                    if client.batch_execute(&sql).await.is_err() {
                        client.batch_execute("ROLLBACK").await.expect("rolling back");
                    } else {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        });
        Workload {
            stop,
            truncates,
            committed,
            thread: Some(thread),
        }
    }

    fn wait_for_transactions(&self, more: u64) {
        let target = self.committed.load(Ordering::Relaxed) + more;
        wait_for("workload transactions", Duration::from_secs(60), || {
            self.committed.load(Ordering::Relaxed) >= target
        });
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("workload thread");
        }
        self.committed.load(Ordering::Relaxed)
    }
}

fn next(random: &mut u64) -> u64 {
    *random = random
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *random >> 33
}

fn statement(random: &mut u64, next_id: &mut u64, truncate: bool) -> String {
    let id = next(random) % 400 + 1;
    let other = next(random) % 100 + 1;
    let specials = ["'NaN'", "'Infinity'", "'-0'", "1e300", "0.1", "-2.5"];
    let ratios = [
        "1.50",
        "12345678901234567890.123456789",
        "1e-40",
        "'NaN'",
        "7",
        "-0.000",
    ];
    match next(random) % 16 {
        0 | 1 => {
            *next_id += 1;
            format!(
                "INSERT INTO accounts (id, note, balance, ratio, score, weight, cash, feeling, tags, meta, seen, born, photo) \
                 VALUES ({n}, repeat('n{n}', 900), {n}.5, {ratio}, {special}, {special}, {n}.25, 'happy', \
                 ARRAY['x{n}', NULL, 'q\"{n}'], '{{\"n\": {n}, \"ü\": [true, null]}}', now(), '1999-12-31', '\\x00ff{n:04x}')",
                n = *next_id,
                ratio = ratios[next(random) as usize % ratios.len()],
                special = specials[next(random) as usize % specials.len()],
            )
        }
        2 | 3 => format!("UPDATE accounts SET balance = balance + 1, seen = now() WHERE id = {id}"),
        4 => format!("UPDATE accounts SET note = repeat('m', 3000 + {id}), score = {id} / 3.0 WHERE id = {id}"),
        5 => format!("UPDATE accounts SET id = id + 100000 WHERE id = {id}"),
        6 => format!("DELETE FROM accounts WHERE id = {id}"),
        7 => format!(
            "INSERT INTO items VALUES ({k}, 'k{k}', {id}.10) ON CONFLICT (k1, k2) DO UPDATE SET v = excluded.v * 2",
            k = id % 80
        ),
        8 => format!("DELETE FROM items WHERE k1 = {}", id % 80),
        9 => format!("INSERT INTO logs VALUES ({a}, 'line {a}'), ({a}, 'line {a}')", a = id % 10),
        10 => format!(
            "UPDATE logs SET b = b || '+' WHERE ctid = (SELECT ctid FROM logs WHERE a = {} LIMIT 1)",
            id % 10
        ),
        11 => format!(
            "DELETE FROM logs WHERE ctid = (SELECT ctid FROM logs WHERE a = {} LIMIT 1)",
            id % 10
        ),
        12 => format!("UPDATE parted SET region = 3 - region, v = v || '>' WHERE id = {}", id % 45),
        13 => match id % 3 {
            0 => format!("INSERT INTO \"Odd \"\"Name\"\" ü\" (\"välue\") VALUES ('neu {id}')"),
            1 => format!("UPDATE \"Odd \"\"Name\"\" ü\" SET \"välue\" = \"välue\" || 'ß' WHERE id = {}", id % 30),
            _ => format!("DELETE FROM \"Odd \"\"Name\"\" ü\" WHERE id = {}", id % 30),
        },
        14 if truncate && id.is_multiple_of(20) => "TRUNCATE items".to_owned(),
        _ => format!(
            "UPDATE bank SET balance = balance - {amount} WHERE id = {other}; \
             UPDATE bank SET balance = balance + {amount} WHERE id = {to}",
            amount = id,
            to = other % 100 + 1
        ),
    }
}

fn transaction(random: &mut u64, next_id: &mut u64, truncate: bool) -> String {
    let statements: Vec<String> = (0..next(random) % 4 + 1)
        .map(|_| statement(random, next_id, truncate))
        .collect();
    match next(random) % 20 {
        0 => format!("BEGIN; {}; ROLLBACK", statements.join("; ")),
        1 => format!(
            "BEGIN; {}; SAVEPOINT s; {}; ROLLBACK TO s; COMMIT",
            statements.join("; "),
            statement(random, next_id, truncate)
        ),
        _ => format!("BEGIN; {}; COMMIT", statements.join("; ")),
    }
}

fn load_fixture(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.psql_file(&fixtures_dir().join("sync.sql"));
    db
}

#[test]
fn replica_made_and_followed_under_load_equals_a_fresh_export() {
    let db = load_fixture("sync_under_load");
    let dir = temp_dir();
    let replica = dir.path().join("replica.db");
    let workload = Workload::start(&db, 7);
    workload.wait_for_transactions(50);
    // A second between the slot and the copy's snapshot: the transactions committed in it
    // are both in the copy and in the stream, and must be applied once.
    let made = pgmirror_with_env(
        &[
            "sync",
            "--init",
            "--quiet",
            "--jobs",
            "2",
            "--source",
            &db.url,
            "--mirror",
            path_text(&replica),
        ],
        &[("PGMIRROR_FAILPOINT", "sync-init:slot-created:pause")],
    );
    assert_ok(&made);
    workload.truncates.store(true, Ordering::Relaxed);
    workload.wait_for_transactions(100);

    // Follow while the workload goes on; a reader sees the bank's total at every moment.
    let mut follow = pgmirror_command(&[
        "sync",
        "--follow",
        "--quiet",
        "--json",
        "--interval",
        "100ms",
        "--mirror",
        path_text(&replica),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("starting sync --follow");
    let reader_conn = open_mirror(&replica);
    let mut reads = 0;
    let started = Instant::now();
    let before = workload.committed.load(Ordering::Relaxed);
    while started.elapsed() < Duration::from_secs(3)
        || workload.committed.load(Ordering::Relaxed) < before + 200
    {
        let total: i64 = reader_conn
            .query_row("SELECT sum(balance) FROM bank", [], |r| r.get(0))
            .expect("reading the mirror while it is synced");
        assert_eq!(total, 1_000_000, "a reader saw a state between source commits");
        reads += 1;
        std::thread::sleep(Duration::from_millis(10));
        assert!(started.elapsed() < Duration::from_secs(60), "workload too slow");
    }
    assert!(reads > 50);
    let transactions = workload.finish();
    assert!(transactions > 300, "only {transactions} workload transactions");
    signal(&follow, libc::SIGINT);
    let status = exit_within(&mut follow, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(follow.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "--follow ends with 0 on SIGINT: {stderr}");
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(follow.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let followed: serde_json::Value = serde_json::from_slice(&stdout).expect("--follow --json summary");
    assert_eq!(followed["interrupted"], true, "{followed}");
    assert!(
        followed["skipped_transactions"].as_u64().unwrap() > 0,
        "no transaction was both in the copy and in the stream: {followed}"
    );
    assert!(followed["transactions"].as_u64().unwrap() > 100, "{followed}");

    let summary = sync_json(&replica);
    assert_eq!(summary["consistent"], true, "{summary}");
    // Sequences are not in the stream: sync records their values after each catch-up
    // (rolled-back inserts moved them past any row's id).
    let source_sequences: Vec<(String, Option<i64>)> = db
        .query("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1")
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].as_ref().map(|v| v.parse().unwrap())))
        .collect();
    let recorded: Vec<(String, Option<i64>)> = open_mirror(&replica)
        .prepare("SELECT sequence_name, last_value FROM _pgmirror_sequences ORDER BY 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recorded, source_sequences, "the replica's recorded sequences");
    let rows = assert_same_as_fresh_export(&db, &replica, dir.path());
    assert!(rows > 300, "{rows} rows compared");
    assert_restores_to_source(&db, &replica, "sync_under_load_restored");
    drop(reader_conn);
    drop_replica(&replica);
}

#[test]
fn a_sigkill_while_applying_a_large_transaction_loses_and_repeats_nothing() {
    let (db, dir, replica) = new_replica("sync_sigkill");
    db.execute(
        "BEGIN; INSERT INTO items SELECT g, 'big' || g, g / 3.0 FROM generate_series(1000, 200999) g; \
         UPDATE accounts SET balance = balance * 2; COMMIT",
    );
    let wal = dir.path().join("replica.db-wal");
    let mut child = pgmirror_command(&["sync", "--quiet", "--mirror", path_text(&replica)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sync");
    // Killed once the transaction is being written (its pages spill to the WAL file).
    wait_for("the apply to be under way", Duration::from_secs(120), || {
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 4 << 20) || child.try_wait().unwrap().is_some()
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "sync finished before it could be killed"
    );
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let items: i64 = count_rows(&replica, "SELECT count(*) FROM items");
    assert_eq!(items, 50, "none of the killed transaction's rows are visible");

    let summary = sync_json(&replica);
    assert_eq!(summary["inserts"], 200_000, "{summary}");
    assert_same_as_fresh_export(&db, &replica, dir.path());
    drop_replica(&replica);
}

#[test]
fn a_crash_after_the_mirror_commit_and_before_the_slot_advance_applies_nothing_twice() {
    let (db, dir, replica) = new_replica("sync_crash_commit");
    db.execute("INSERT INTO logs VALUES (1, 'line 1'); UPDATE bank SET balance = balance + 1 WHERE id = 1");
    db.execute("UPDATE bank SET balance = balance - 1 WHERE id = 1");
    crash_at(&replica, "sync-commit:after:abort");
    // The changes are in the mirror, the slot still holds them.
    let conn = open_mirror(&replica);
    let logs: i64 = count_rows(&replica, "SELECT count(*) FROM logs");
    assert_eq!(logs, 61);
    drop(conn);

    let summary = sync_json(&replica);
    assert_eq!(summary["transactions"], 0, "{summary}");
    assert_eq!(summary["skipped_transactions"], 2, "{summary}");
    assert_same_as_fresh_export(&db, &replica, dir.path());

    // A crash before the commit leaves nothing: the same changes are applied next time.
    db.execute("DELETE FROM logs WHERE a = 1; UPDATE accounts SET balance = 0 WHERE id < 10");
    crash_at(&replica, "sync-commit:before:abort");
    let logs: i64 = count_rows(&replica, "SELECT count(*) FROM logs WHERE a = 1");
    assert!(
        logs > 0,
        "the aborted transaction's deletes are not in the mirror"
    );
    let summary = sync_json(&replica);
    assert_eq!(summary["transactions"], 1, "{summary}");
    assert_eq!(summary["skipped_transactions"], 0, "{summary}");
    assert_same_as_fresh_export(&db, &replica, dir.path());
    drop_replica(&replica);
}

#[test]
fn a_second_sync_on_the_same_replica_is_refused_while_one_runs() {
    let (_db, dir, replica) = new_replica("sync_concurrent");
    let mut follow = pgmirror_command(&["sync", "--follow", "--quiet", "--mirror", path_text(&replica)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sync --follow");
    let lock = dir.path().join("replica.db.sync-lock");
    wait_for("the follower's lock", Duration::from_secs(20), || {
        std::fs::read_to_string(&lock).is_ok_and(|pid| pid.trim() == follow.id().to_string())
    });
    let second = pgmirror(&["sync", "--quiet", "--mirror", path_text(&replica)]);
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another pgmirror run") && stderr.contains(&follow.id().to_string()),
        "{stderr}"
    );
    signal(&follow, libc::SIGTERM);
    let status = exit_within(&mut follow, Duration::from_secs(20));
    let mut said = String::new();
    std::io::Read::read_to_string(follow.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert_eq!(status.code(), Some(0), "--follow ends with 0 on SIGTERM: {said}");
    assert_ok(&pgmirror(&["sync", "--quiet", "--mirror", path_text(&replica)]));
    drop_replica(&replica);
}

#[test]
fn rows_of_a_table_without_key_are_told_apart_by_their_exact_numbers() {
    let db = fresh_db("sync_exact_identity");
    db.execute(
        "CREATE TABLE measures (v numeric, f double precision); ALTER TABLE measures REPLICA IDENTITY FULL; \
         INSERT INTO measures VALUES (1.000000000000000001, 1), (1.000000000000000002, 1), (1.5, 0.0), (1.50, -0.0)",
    );
    let dir = temp_dir();
    let replica = dir.path().join("replica.db");
    assert_ok(&init(&db, &replica, &[]));
    // Equal as doubles, different as numbers: each change must reach its own row.
    db.execute(
        "UPDATE measures SET f = 2 WHERE v = 1.000000000000000002; DELETE FROM measures WHERE v = 1.50 AND scale(v) = 2; \
         UPDATE measures SET f = 3 WHERE f = 0 AND v = 1.5",
    );
    assert_eq!(sync_json(&replica)["updates"], 2);
    assert_same_as_fresh_export(&db, &replica, dir.path());
    assert_restores_to_source(&db, &replica, "sync_exact_identity_restored");
    drop_replica(&replica);
}

#[test]
fn a_changed_table_stops_the_sync_naming_table_and_column() {
    let (db, _dir, replica) = new_replica("sync_schema_change");
    db.execute("INSERT INTO items VALUES (900, 'before', 1)");
    db.execute(
        "ALTER TABLE items ADD COLUMN extra int DEFAULT 42; INSERT INTO items VALUES (901, 'after', 2, 3)",
    );
    let output = pgmirror(&["sync", "--quiet", "--mirror", path_text(&replica)]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("public.items")
            && stderr.contains("column \"extra\" added")
            && stderr.contains("--resync public.items"),
        "{stderr}"
    );
    // What came before the change is applied and kept.
    let conn = open_mirror(&replica);
    let before: i64 = count_rows(&replica, "SELECT count(*) FROM items WHERE k1 = 900");
    assert_eq!(before, 1);
    drop(conn);
    drop_replica(&replica);
}

#[test]
fn a_table_without_key_is_refused_before_anything_is_created() {
    let db = load_fixture("sync_refused");
    db.execute("CREATE TABLE \"no key\" (a int, b text)");
    let dir = temp_dir();
    let replica = dir.path().join("replica.db");
    let output = init(&db, &replica, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("public.no key")
            && stderr.contains("ALTER TABLE \"public\".\"no key\" REPLICA IDENTITY FULL"),
        "{stderr}"
    );
    assert_eq!(slot_count(&db), "0");
    assert_eq!(db.scalar("SELECT count(*) FROM pg_publication"), "0");
    assert!(!replica.exists());
    // The source still takes updates and deletes of that table (no FOR ALL TABLES publication).
    db.execute(
        "INSERT INTO \"no key\" VALUES (1, 'x'); UPDATE \"no key\" SET b = 'y'; DELETE FROM \"no key\"",
    );
    // PostgreSQL does not identify rows by a deferrable key.
    db.execute("CREATE TABLE deferred (id int PRIMARY KEY DEFERRABLE, v text)");
    let output = init(&db, &replica, &["--exclude-table", "no key"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("public.deferred"));
    assert_eq!(slot_count(&db), "0");
    // Leaving them out works.
    assert_ok(&init(
        &db,
        &replica,
        &["--exclude-table", "no key", "--exclude-table", "deferred"],
    ));
    assert_eq!(slot_count(&db), "1");
    assert_ok(&pgmirror(&[
        "sync",
        "--drop",
        "--quiet",
        "--mirror",
        path_text(&replica),
    ]));
}

#[test]
fn drop_leaves_no_slot_or_publication_behind() {
    let db = load_fixture("sync_drop");
    let dir = temp_dir();
    let replica = dir.path().join("replica.db");
    assert_ok(&init(&db, &replica, &["--slot", "pgm_drop_test"]));
    assert_eq!(slot_count(&db), "1");
    // A slot of that name that is not ours is left alone.
    db.execute("SELECT pg_create_logical_replication_slot('pgm_foreign', 'pgoutput')");
    let taken = init(&db, &dir.path().join("other.db"), &["--slot", "pgm_foreign"]);
    assert_eq!(taken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("exists already"));
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgm_foreign'"),
        "1"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_publication WHERE pubname = 'pgm_foreign'"),
        "0"
    );
    db.execute("SELECT pg_drop_replication_slot('pgm_foreign')");
    // A replica is not replaced by another --init: its slot would be orphaned.
    let again = init(&db, &replica, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("pgm_drop_test"));
    assert_ok(&pgmirror(&[
        "sync",
        "--drop",
        "--quiet",
        "--mirror",
        path_text(&replica),
    ]));
    assert_eq!(slot_count(&db), "0");
    assert_eq!(db.scalar("SELECT count(*) FROM pg_publication"), "0");
    // The mirror stays, as a plain mirror that verifies.
    assert_ok(&pgmirror(&["verify", path_text(&replica)]));
    let plain = pgmirror(&["sync", "--quiet", "--mirror", path_text(&replica)]);
    assert!(String::from_utf8_lossy(&plain.stderr).contains("plain mirror"));

    // With the file gone, --slot names what to drop.
    assert_ok(&init(
        &db,
        &dir.path().join("second.db"),
        &["--slot", "pgm_second"],
    ));
    std::fs::remove_file(dir.path().join("second.db")).unwrap();
    assert_ok(&pgmirror(&[
        "sync",
        "--drop",
        "--quiet",
        "--slot",
        "pgm_second",
        "--source",
        &db.url,
    ]));
    assert_eq!(slot_count(&db), "0");
    assert_eq!(db.scalar("SELECT count(*) FROM pg_publication"), "0");
}

#[test]
fn the_recorded_source_holds_no_password_and_max_lag_is_enforced() {
    let db = load_fixture("sync_password");
    let dir = temp_dir();
    let replica = dir.path().join("replica.db");
    // Trust authentication over the socket ignores the password; it must still not be kept.
    let source = format!("{} password=hunter2-secret", db.url);
    let made = pgmirror(&[
        "sync",
        "--init",
        "--json",
        "--source",
        &source,
        "--mirror",
        path_text(&replica),
    ]);
    assert_ok(&made);
    let said = [made.stdout.clone(), made.stderr.clone()].concat();
    assert!(
        !said.windows(14).any(|w| w == b"hunter2-secret"),
        "the password is in the output"
    );
    let recorded: String = open_mirror(&replica)
        .query_row("SELECT value FROM _pgmirror_sync WHERE key = 'source'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(recorded.contains("dbname='sync_password'"), "{recorded}");

    db.execute("INSERT INTO items SELECT g, 'lag', g FROM generate_series(5000, 6000) g");
    // The slot keeps at least the WAL since its restart point: more than one byte.
    let lagging = pgmirror(&[
        "sync",
        "--quiet",
        "--json",
        "--max-lag",
        "1",
        "--mirror",
        path_text(&replica),
    ]);
    assert_eq!(lagging.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&lagging.stderr).contains("--max-lag"));
    let summary: serde_json::Value = serde_json::from_slice(&lagging.stdout).unwrap();
    assert_eq!(summary["inserts"], 1001, "applied before the warning: {summary}");
    assert_eq!(summary["max_lag_exceeded"], true, "{summary}");
    assert_eq!(sync_json(&replica)["inserts"], 0);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(14).any(|w| w == b"hunter2-secret"),
            "the password is in {}",
            path.display()
        );
    }
    let roomy = pgmirror(&[
        "sync",
        "--quiet",
        "--max-lag",
        "1GB",
        "--mirror",
        path_text(&replica),
    ]);
    assert_eq!(roomy.status.code(), Some(0));
    // Changes to tables the replica does not follow still let the slot move on.
    db.execute("CREATE TABLE unfollowed (a int); INSERT INTO unfollowed SELECT generate_series(1, 1000)");
    let before = sync_json(&replica)["applied_lsn"].as_str().unwrap().to_owned();
    db.execute("INSERT INTO unfollowed SELECT generate_series(1, 1000)");
    let after = sync_json(&replica);
    let parse = |text: &str| {
        let (high, low) = text.split_once('/').unwrap();
        u64::from_str_radix(high, 16).unwrap() << 32 | u64::from_str_radix(low, 16).unwrap()
    };
    assert!(
        parse(after["applied_lsn"].as_str().unwrap()) > parse(&before),
        "{after}"
    );
    assert_eq!(after["transactions"], 0, "{after}");
    let status = pgmirror(&["status", "--json", "--mirror", path_text(&replica)]);
    assert_ok(&status);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["wal_status"], "reserved", "{status}");
    assert!(status["retained_bytes"].as_i64().unwrap() > 0, "{status}");
    assert_eq!(status["consistent"], true, "{status}");
    let lagging = pgmirror(&["status", "--max-lag", "1", "--mirror", path_text(&replica)]);
    assert_eq!(lagging.status.code(), Some(1));
    drop_replica(&replica);
}

/// A cluster of the test's own, stopped and removed when dropped.
struct OwnCluster(crate::cluster::Cluster);

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.0.stop();
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

#[test]
fn a_lost_slot_and_a_server_without_logical_decoding_get_clear_errors() {
    use crate::cluster::{free_port, Cluster};
    let root = std::env::temp_dir().join(format!(
        "pgmirror-test-lost-{}-{}",
        std::process::id(),
        free_port()
    ));
    let mut cluster = OwnCluster(Cluster::prepare(root));
    cluster.0.initdb(&["--auth-local=trust"]);
    cluster.0.start("-c max_slot_wal_keep_size=1MB");
    let db = TestDb {
        name: "postgres".into(),
        url: format!("{} dbname=postgres", cluster.0.conninfo()),
    };
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')");
    let dir = temp_dir();
    let replica = dir.path().join("replica.db");
    assert_ok(&init(&db, &replica, &[]));
    // The shared cluster is another cluster: its changes are never applied here.
    let elsewhere = fresh_db("sync_other_cluster");
    let other = pgmirror(&[
        "sync",
        "--quiet",
        "--source",
        &elsewhere.url,
        "--mirror",
        path_text(&replica),
    ]);
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("another cluster"));
    wait_for("the slot to be invalidated", Duration::from_secs(60), || {
        db.execute(
            "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1000 + (random() * 1e6)::int, 1000 + (random() * 1e6)::int + 20000) g ON CONFLICT DO NOTHING; \
             SELECT pg_switch_wal(); CHECKPOINT",
        );
        db.scalar("SELECT wal_status FROM pg_replication_slots") == "lost"
    });
    let output = pgmirror(&["sync", "--quiet", "--mirror", path_text(&replica)]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalidated") && stderr.contains("--init"),
        "{stderr}"
    );
    assert_ok(&pgmirror(&[
        "sync",
        "--drop",
        "--quiet",
        "--mirror",
        path_text(&replica),
    ]));
    assert_eq!(db.scalar("SELECT count(*) FROM pg_replication_slots"), "0");

    cluster.0.stop();
    cluster.0.start("-c wal_level=replica");
    let db = TestDb {
        name: "postgres".into(),
        url: format!("{} dbname=postgres", cluster.0.conninfo()),
    };
    let output = init(&db, &dir.path().join("second.db"), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("wal_level = replica") && stderr.contains("wal_level = logical"),
        "{stderr}"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM pg_publication"), "0");
}

#[test]
fn resync_copies_a_changed_table_again_and_adds_a_new_one_under_load() {
    let (db, dir, replica) = new_replica("sync_resync");
    let workload = Workload::start(&db, 11);
    workload.wait_for_transactions(50);
    db.execute("ALTER TABLE items ADD COLUMN extra int DEFAULT 42");
    db.execute("CREATE TABLE \"later ü\" (id int PRIMARY KEY, v text); INSERT INTO \"later ü\" SELECT g, 'v' || g FROM generate_series(1, 30) g");
    workload.wait_for_transactions(50);
    // A failed --resync takes the table it added out of the publication again: a table
    // published but not followed would stop every later sync.
    let failed = pgmirror_with_env(
        &[
            "sync",
            "--quiet",
            "--mirror",
            path_text(&replica),
            "--resync",
            "later ü",
        ],
        &[("PGMIRROR_FAILPOINT", "sync-resync:graft")],
    );
    assert_eq!(failed.status.code(), Some(2));
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_publication_tables WHERE tablename = 'later ü'"),
        "0"
    );

    // Copied again while the workload keeps writing it, with the replica still behind the
    // ALTER: the old layout's changes are all in the copy. The new table joins the replica.
    let resynced = pgmirror(&[
        "sync",
        "--quiet",
        "--json",
        "--mirror",
        path_text(&replica),
        "--resync",
        "items",
        "--resync",
        "later ü",
    ]);
    assert_ok(&resynced);
    let resynced: serde_json::Value = serde_json::from_slice(&resynced.stdout).unwrap();
    assert!(
        resynced["changes_in_copies"].as_u64().unwrap() > 0,
        "no change of items was both in the copy and in the stream: {resynced}"
    );
    workload.wait_for_transactions(100);
    db.execute("INSERT INTO items (k1, k2, v, extra) VALUES (7000, 'new', 1.5, 7); UPDATE \"later ü\" SET v = 'w' WHERE id < 10; DELETE FROM \"later ü\" WHERE id = 30");
    workload.finish();
    let summary = sync_json(&replica);
    assert_eq!(summary["consistent"], true, "{summary}");
    let conn = open_mirror(&replica);
    assert!(followed_tables(&conn).contains(&"later ü".to_owned()));
    let extra: i64 = count_rows(&replica, "SELECT count(*) FROM items WHERE extra = 42");
    assert!(extra > 0, "the rows from before the new column have its default");
    drop(conn);
    assert_same_as_fresh_export(&db, &replica, dir.path());
    assert_ok(&pgmirror(&["verify", path_text(&replica)]));
    assert_restores_to_source(&db, &replica, "sync_resync_restored");
    drop_replica(&replica);
}
