//! Failures end with exit code 2, a message naming the object, and no file left behind.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{connect, fresh_db, pgmirror, runtime, temp_dir};

fn assert_failed_cleanly(result: &std::process::Output, dir: &Path, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert_eq!(result.status.code(), Some(2), "exit code; stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    stderr
}

fn export_args<'a>(source: &'a str, output: &'a str) -> Vec<&'a str> {
    vec!["export", "--quiet", "--source", source, "--output", output]
}

#[test]
fn unreachable_server() {
    let dir = temp_dir();
    let output = dir.path().join("out.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = format!("host=127.0.0.1 port={port} user=nobody dbname=nothing connect_timeout=5");
    let result = pgmirror(&export_args(&source, output.to_str().unwrap()));
    assert_failed_cleanly(
        &result,
        dir.path(),
        &["connecting to nobody@127.0.0.1", "no mirror was written"],
    );
}

#[test]
fn wrong_password_is_reported_without_the_password() {
    let db = fresh_db("wrong_password");
    db.execute(
        "DROP ROLE IF EXISTS mirror_reader; CREATE ROLE mirror_reader LOGIN PASSWORD 'right-horse-battery'",
    );
    let port = db.scalar("SELECT current_setting('port')");
    let dir = temp_dir();
    let output = dir.path().join("out.db");
    let secret = "Wr0ng-S3cret-Pa55";
    let source = format!("postgres://mirror_reader:{secret}@127.0.0.1:{port}/wrong_password?sslmode=disable");
    let result = pgmirror(&export_args(&source, output.to_str().unwrap()));
    let stderr = assert_failed_cleanly(
        &result,
        dir.path(),
        &["mirror_reader", "password authentication failed"],
    );
    assert!(!stderr.contains(secret), "the password leaked: {stderr}");
    assert!(!String::from_utf8_lossy(&result.stdout).contains(secret));
}

#[test]
fn a_table_locked_longer_than_the_lock_wait_timeout_fails_naming_it() {
    let db = fresh_db("lock_timeout");
    db.execute("CREATE TABLE free (a int); CREATE TABLE \"Held Table\" (a int); INSERT INTO \"Held Table\" VALUES (1)");
    let rt = runtime();
    let holder = rt.block_on(async {
        let client = connect(&db.url).await;
        client
            .batch_execute("BEGIN; LOCK TABLE \"Held Table\" IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        client
    });
    let dir = temp_dir();
    let output = dir.path().join("out.db");
    let mut args = export_args(&db.url, output.to_str().unwrap());
    args.extend(["--lock-wait-timeout", "300ms"]);
    let started = Instant::now();
    let result = pgmirror(&args);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_failed_cleanly(
        &result,
        dir.path(),
        &["locking table public.Held Table", "--lock-wait-timeout"],
    );
    drop(holder);
}

/// A database with a table large enough that its COPY is seen running.
fn big_table_db(name: &str) -> crate::support::TestDb {
    let db = fresh_db(name);
    db.execute(
        "CREATE TABLE big (id bigint, payload text); \
         INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g",
    );
    db
}

/// Starts pgmirror with `args`, waits until a COPY matching `copy_like` runs in `db`, then
/// runs `on_copy(pid of the COPY's backend, the pgmirror child, db)`; returns the child's output.
fn interrupt_mid_copy(
    db: &crate::support::TestDb,
    args: &[&str],
    copy_like: &str,
    on_copy: impl FnOnce(i32, &std::process::Child, &crate::support::TestDb),
) -> std::process::Output {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pgmirror"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting pgmirror");
    let rt = runtime();
    let backend = rt.block_on(async {
        let client = connect(&db.url).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let rows = client
                .query(
                    "SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND query LIKE $1 AND state = 'active'",
                    &[&copy_like],
                )
                .await
                .unwrap();
            if let Some(row) = rows.first() {
                return Some(row.get::<_, i32>(0));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    });
    let backend = backend.expect("the COPY was never seen running");
    on_copy(backend, &child, db);
    child.wait_with_output().expect("waiting for pgmirror")
}

#[test]
fn a_backend_killed_mid_copy_fails_the_run() {
    let db = big_table_db("killed_backend");
    let dir = temp_dir();
    let output = dir.path().join("out.db");
    let result = interrupt_mid_copy(
        &db,
        &export_args(&db.url, output.to_str().unwrap()),
        "COPY (SELECT%",
        |backend, _, db| {
            assert_eq!(db.scalar(&format!("SELECT pg_terminate_backend({backend})")), "t");
        },
    );
    assert_failed_cleanly(&result, dir.path(), &["reading table public.big"]);
}

#[test]
fn sigint_mid_copy_stops_cleanly() {
    let db = big_table_db("sigint");
    let dir = temp_dir();
    let output = dir.path().join("out.db");
    let result = interrupt_mid_copy(
        &db,
        &export_args(&db.url, output.to_str().unwrap()),
        "COPY (SELECT%",
        |_, child, _| {
            let pid = i32::try_from(child.id()).unwrap();
            assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        },
    );
    assert_failed_cleanly(&result, dir.path(), &["interrupted"]);
}

#[test]
fn an_output_directory_that_cannot_be_written() {
    let dir = temp_dir();
    let not_a_directory = dir.path().join("plain-file");
    std::fs::write(&not_a_directory, b"x").unwrap();
    let output = not_a_directory.join("out.db");
    // Nothing is contacted: the destination is checked before the server.
    let result = pgmirror(&export_args(
        "host=127.0.0.1 port=1 user=x dbname=x",
        output.to_str().unwrap(),
    ));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("out.db.partial"), "{stderr}");
    assert_eq!(std::fs::read(&not_a_directory).unwrap(), b"x");
}

#[test]
fn a_restore_whose_connection_is_killed_changes_nothing() {
    let source = big_table_db("killed_restore_source");
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    crate::support::export(&source, &mirror, &[]);
    let target = fresh_db("killed_restore_target");
    crate::support::copy_schema(&source, &target);
    target.execute("INSERT INTO big VALUES (-1, 'kept')");
    let before = crate::support::table_digests(&target);
    let args = [
        "restore",
        "--quiet",
        "--from",
        mirror.to_str().unwrap(),
        "--target",
        &target.url,
    ];
    let result = interrupt_mid_copy(&target, &args, "COPY %FROM STDIN%", |backend, _, db| {
        assert_eq!(db.scalar(&format!("SELECT pg_terminate_backend({backend})")), "t");
    });
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("public.big") && stderr.contains("target is unchanged"),
        "{stderr}"
    );
    assert_eq!(crate::support::table_digests(&target), before);
}

/// A bug (a panic) in one table's reading or writing ends the run like any error: exit 2,
/// the table named, nothing left behind. PGMIRROR_FAILPOINT injects it (debug builds).
#[test]
fn a_panic_in_a_worker_or_the_writer_is_an_error_naming_the_table() {
    let db = fresh_db("failpoint_panics");
    db.execute(
        "CREATE TABLE calm (id int); INSERT INTO calm SELECT generate_series(1, 1000);
         CREATE TABLE troubled (id int); INSERT INTO troubled SELECT generate_series(1, 1000);",
    );
    for (failpoint, needle) in [
        ("decode:troubled", "reading table public.troubled"),
        ("write:troubled", "writing table public.troubled"),
    ] {
        let dir = temp_dir();
        let output = dir.path().join("out.db");
        let result = crate::support::pgmirror_command(&export_args(&db.url, output.to_str().unwrap()))
            .env("PGMIRROR_FAILPOINT", failpoint)
            .output()
            .unwrap();
        let stderr = assert_failed_cleanly(&result, dir.path(), &[needle, "internal error"]);
        assert!(
            stderr.contains(&format!("failpoint {}", failpoint.replace(':', " reached for "))),
            "{stderr}"
        );
    }
}
