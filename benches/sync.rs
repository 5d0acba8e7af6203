//! Replication benchmark: how fast `pgmirror sync` applies a backlog of changes, against a
//! full re-export of the same tables, and the lag while `sync --follow` keeps up with a
//! steady workload; everything measured in one run on this machine.
//!
//!   cargo bench --bench sync               # 500k accounts, 20k pgbench transactions, 500k bulk rows
//!   cargo bench --bench sync -- --quick    # a fifth of that
//!
//! It starts its own PostgreSQL in target/bench-cluster (shared with the export benchmark)
//! and makes a fresh database `sync_bench` each run.

#[path = "../tests/it/cluster.rs"]
mod cluster;

use cluster::{connect, runtime};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-follow") {
        child_follow(&args[2]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale: u64 = if quick { 5 } else { 1 };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let server = cluster::bench_server(&root);
    let out = root.join("bench-out");
    std::fs::create_dir_all(&out).expect("creating target/bench-out");
    let conninfo = server.conninfo();
    let result = std::panic::catch_unwind(|| run(&conninfo, &out, scale, quick));
    server.stop();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn run(conninfo: &str, out: &Path, scale: u64, quick: bool) {
    let url = format!("{conninfo} dbname=sync_bench");
    let accounts = 500_000 / scale;
    let transactions = 20_000 / scale;
    let bulk_rows = 500_000 / scale;
    let admin = format!("{conninfo} dbname=postgres");
    // The slot of an earlier, interrupted run would pin WAL forever (and keep its database).
    execute(
        &admin,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'pgmirror_bench'",
    );
    execute(&admin, "DROP DATABASE IF EXISTS sync_bench WITH (FORCE)");
    execute(&admin, "CREATE DATABASE sync_bench");
    execute(&url, &schema(accounts));
    println!(
        "pgmirror sync benchmark ({}), {} cores: {accounts} accounts",
        if quick { "--quick" } else { "full" },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let replica = out.join("sync-replica.db");
    let _ = std::fs::remove_file(&replica);
    let started = Instant::now();
    let source = pgmirror::pg::ConnectionSpec::parse(&url).expect("source");
    let mut export = pgmirror::ExportOptions::new(source.clone(), replica.clone());
    export.jobs = 2;
    pgmirror::sync::init(&pgmirror::sync::InitOptions {
        export,
        slot: Some("pgmirror_bench".into()),
    })
    .expect("sync --init");
    report(
        "sync --init (slot + initial copy)",
        started.elapsed().as_secs_f64(),
        None,
    );
    let seconds = if quick { 4 } else { 10 };
    follow_lag(&url, &replica, seconds, 0, "a fresh replica");

    // pgbench's TPC-B-like transaction: 3 updates and an insert, each transaction committed.
    execute(&url, &format!("CALL pgbench_transactions({transactions})"));
    let applied = timed_sync(&url, &replica);
    report(
        &format!("sync: {transactions} pgbench transactions"),
        applied.0,
        Some(applied.1),
    );

    execute(
        &url,
        &format!(
            "INSERT INTO bulk SELECT g, g % 1000, md5(g::text), now() FROM generate_series(1, {bulk_rows}) g"
        ),
    );
    let applied = timed_sync(&url, &replica);
    report(
        &format!("sync: one {bulk_rows}-row insert"),
        applied.0,
        Some(applied.1),
    );

    let fresh = out.join("sync-fresh.db");
    let started = Instant::now();
    let mut export = pgmirror::ExportOptions::new(source, fresh);
    export.jobs = 2;
    let summary = pgmirror::export(&export).expect("export");
    report(
        &format!("full re-export of the same tables ({} rows)", summary.rows),
        started.elapsed().as_secs_f64(),
        None,
    );

    // Each decoding call starts again at the slot's restart position, which PostgreSQL moves
    // on lazily (at its next running-transactions record): until it passes the large
    // transaction just applied, every call decodes that again.
    follow_lag(
        &url,
        &replica,
        seconds,
        1_000_000,
        "within seconds of the 500k-row transaction",
    );
    let _ = pgmirror::sync::drop(None, Some(&replica), None);
}

fn schema(accounts: u64) -> String {
    format!(
        "CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
         CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
         CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
         CREATE TABLE pgbench_history (hid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tid int, bid int,
                                       aid int, delta int, mtime timestamp, filler char(22));
         CREATE TABLE bulk (id bigint PRIMARY KEY, n int, s text, t timestamptz);
         CREATE TABLE heartbeat (seq bigint PRIMARY KEY, sent timestamptz);
         INSERT INTO pgbench_branches SELECT g, 0, '' FROM generate_series(1, 10) g;
         INSERT INTO pgbench_tellers SELECT g, (g - 1) / 10 + 1, 0, '' FROM generate_series(1, 100) g;
         INSERT INTO pgbench_accounts SELECT g, (g - 1) / 50000 + 1, 0, '' FROM generate_series(1, {accounts}) g;
         CREATE PROCEDURE pgbench_transactions(n int) LANGUAGE plpgsql AS $$
         DECLARE a int; t int; b int; d int;
         BEGIN
           FOR i IN 1..n LOOP
             a := 1 + (random() * ({accounts} - 1))::int; t := 1 + (random() * 99)::int;
             b := 1 + (random() * 9)::int; d := (random() * 10000)::int - 5000;
             UPDATE pgbench_accounts SET abalance = abalance + d WHERE aid = a;
             UPDATE pgbench_tellers SET tbalance = tbalance + d WHERE tid = t;
             UPDATE pgbench_branches SET bbalance = bbalance + d WHERE bid = b;
             INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (t, b, a, d, now());
             COMMIT;
           END LOOP;
         END $$;"
    )
}

fn execute(url: &str, sql: &str) {
    runtime().block_on(async {
        connect(url)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    });
}

/// One `sync` over the backlog: seconds and row changes applied. The cluster commits
/// asynchronously (as the tests' does); the WAL writer's flush delay is waited out first,
/// so the figure is the apply rate.
fn timed_sync(url: &str, replica: &Path) -> (f64, u64) {
    execute(
        url,
        "DO $$ DECLARE target pg_lsn := pg_current_wal_insert_lsn(); BEGIN \
           WHILE pg_current_wal_flush_lsn() < target LOOP PERFORM pg_sleep(0.01); END LOOP; END $$",
    );
    let started = Instant::now();
    let summary =
        pgmirror::sync::sync(&pgmirror::sync::SyncOptions::new(replica.to_path_buf())).expect("sync");
    (started.elapsed().as_secs_f64(), summary.counts.row_changes())
}

fn report(stage: &str, seconds: f64, changes: Option<u64>) {
    match changes {
        Some(changes) => println!(
            "  {stage:<52} {seconds:>8.2} s  {changes:>9} row changes  {:>9.0} changes/s",
            changes as f64 / seconds
        ),
        None => println!("  {stage:<52} {seconds:>8.2} s"),
    }
}

fn child_follow(mirror: &str) {
    pgmirror::stop::install_signal_handlers();
    let mut options = pgmirror::sync::SyncOptions::new(PathBuf::from(mirror));
    options.follow = true;
    options.interval = Duration::from_millis(100);
    pgmirror::sync::sync(&options).expect("sync --follow");
}

/// `sync --follow` (a child process) against 1,000 transactions/s for `seconds`: how long
/// after its source commit each change is visible in the mirror, sampled every 50 ms after
/// the first second (the follower's start).
fn follow_lag(url: &str, replica: &Path, seconds: u64, base: u64, when: &str) {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--child-follow", replica.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting sync --follow");
    let committed: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let driver = {
        let (url, committed, done) = (url.to_owned(), committed.clone(), done.clone());
        std::thread::spawn(move || {
            runtime().block_on(async {
                let client = connect(&url).await;
                let started = Instant::now();
                let mut seq: u64 = 0;
                while started.elapsed() < Duration::from_secs(seconds) {
                    let due = started + Duration::from_micros(seq * 1000);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    seq += 1;
                    let sql = format!(
                        "BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = {}; \
                         INSERT INTO heartbeat VALUES ({}, now()); COMMIT",
                        seq % 1000 + 1,
                        base + seq
                    );
                    client.batch_execute(&sql).await.expect("workload transaction");
                    committed.lock().unwrap().push(Instant::now());
                }
            });
            done.store(true, Ordering::Relaxed);
        })
    };
    let mirror = rusqlite::Connection::open_with_flags(replica, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("opening the replica");
    let mut lags = Vec::new();
    let started = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let seen: i64 = mirror
            .query_row(
                "SELECT coalesce(max(seq) - ?1, 0) FROM heartbeat WHERE seq > ?1",
                [base as i64],
                |r| r.get(0),
            )
            .unwrap_or(0);
        let now = Instant::now();
        let commits = committed.lock().unwrap();
        // The oldest commit not yet visible is how far behind the mirror is.
        let lag = commits.get(seen as usize).map_or(0.0, |oldest_missing| {
            now.duration_since(*oldest_missing).as_secs_f64()
        });
        if started.elapsed() > Duration::from_secs(1) {
            lags.push(lag);
        }
    }
    driver.join().expect("driver");
    let sent = committed.lock().unwrap().len();
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let _ = child.wait();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    println!(
        "  sync --follow --interval 100ms, {when}, under {:.0} transactions/s for {seconds} s: \
         lag p50 {:.2} s, p99 {:.2} s, max {:.2} s ({} samples)",
        sent as f64 / seconds as f64,
        at(0.5),
        at(0.99),
        at(1.0),
        lags.len()
    );
}
