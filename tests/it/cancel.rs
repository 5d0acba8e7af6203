//! SIGINT/SIGTERM stop a run at once: the statements it runs on the server are cancelled,
//! nothing partial is left, and the exit code is 2.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{exit_within, fresh_db, pgmirror_command, signal, temp_dir, wait_for, TestDb};

/// The sessions of `application` on `db` that are running a statement (not idle).
fn busy_sessions(db: &TestDb, application: &str) -> Vec<String> {
    db.query(&format!(
        "SELECT query FROM pg_stat_activity WHERE application_name = '{application}' \
         AND datname = '{}' AND state <> 'idle'",
        db.name
    ))
    .into_iter()
    .map(|row| row[0].clone().unwrap_or_default())
    .collect()
}

/// What a stop test waits for before it signals: a statement of `application` on `db`
/// starting with `statement`.
struct Busy<'a> {
    db: &'a TestDb,
    application: &'a str,
    statement: &'a str,
}

/// Starts pgmirror with `args`, waits until `busy` runs on the server, stops it with
/// `stop`, and checks it ended within 2 s with exit code 2, the server idle, and `dir`
/// holding only `kept`.
fn stops_while(busy: Busy<'_>, dir: &Path, kept: &[&str], args: &[&str], stop: libc::c_int) {
    let mut child = pgmirror_command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pgmirror");
    wait_for(
        &format!("{} on the server", busy.statement),
        Duration::from_secs(60),
        || {
            busy_sessions(busy.db, busy.application)
                .iter()
                .any(|q| q.starts_with(busy.statement))
        },
    );
    signal(&child, stop);
    let status = exit_within(&mut child, Duration::from_secs(2));
    let output = child.wait_with_output().expect("stderr");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(stderr.contains("interrupted at your request"), "{stderr}");
    assert!(
        !stderr.contains("while stopping"),
        "the stop's own errors are not reported: {stderr}"
    );
    // The cancel request is asynchronous on the server's side: give it a moment.
    wait_for("the server to end the statements", Duration::from_secs(2), || {
        busy_sessions(busy.db, busy.application).is_empty()
    });
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .expect("reading the output directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, kept, "files left behind");
}

/// `pgmirror export` of `db` with `extra` flags, stopped with `stop` while it copies.
fn export_stops_while_copying(db: &TestDb, extra: &[&str], stop: libc::c_int) {
    let dir = temp_dir();
    let output = dir.path().join("out.db");
    let mut args = vec![
        "export",
        "--quiet",
        "--source",
        &db.url,
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let busy = Busy {
        db,
        application: "pgmirror",
        statement: "COPY",
    };
    stops_while(busy, dir.path(), &[], &args, stop);
}

#[test]
fn ctrl_c_cancels_a_slow_where_scan_on_the_server() {
    let db = fresh_db("cancel_slow_where");
    db.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10)");
    // Each row sleeps a minute: without a cancel request the backend would run for ten.
    export_stops_while_copying(&db, &["--where", "t:pg_sleep(60) IS NOT NULL"], libc::SIGINT);
}

#[test]
fn sigterm_stops_a_large_export_mid_copy() {
    let db = fresh_db("cancel_large_export");
    db.execute(
        "CREATE TABLE big (id bigint PRIMARY KEY, label text, at timestamptz);
         INSERT INTO big SELECT g, 'row number ' || g, now() FROM generate_series(1, 1000000) g;",
    );
    export_stops_while_copying(&db, &["--jobs", "2", "--chunk-size", "8MB"], libc::SIGTERM);
}

#[test]
fn ctrl_c_cancels_a_restore_and_leaves_the_target_as_it_was() {
    let source = fresh_db("cancel_restore_source");
    source.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 200) g");
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    crate::support::export(&source, &mirror, &[]);
    let target = fresh_db("cancel_restore_target");
    // Every restored row takes a second on the target: the COPY runs for minutes.
    target.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (-1, 'kept');
         CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(1); RETURN NEW; END$$;
         CREATE TRIGGER slow BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION slow();",
    );
    let busy = Busy {
        db: &target,
        application: "pgmirror",
        statement: "COPY",
    };
    stops_while(
        busy,
        dir.path(),
        &["mirror.db"],
        &[
            "restore",
            "--quiet",
            "--from",
            mirror.to_str().unwrap(),
            "--target",
            &target.url,
        ],
        libc::SIGINT,
    );
    assert_eq!(
        target.scalar("SELECT string_agg(id || ':' || v, ',') FROM t"),
        "-1:kept"
    );
}

#[test]
fn ctrl_c_reaches_the_statement_psql_runs_for_a_plain_dump() {
    let target = fresh_db("cancel_plain_restore");
    let dir = temp_dir();
    let dump = dir.path().join("slow.sql");
    // psql cancels its statement only on SIGINT; SIGTERM would leave the sleep running.
    std::fs::write(
        &dump,
        "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE slow_marker (id int);\nSELECT pg_sleep(60);\n\n\
         --\n-- PostgreSQL database dump complete\n--\n",
    )
    .unwrap();
    let busy = Busy {
        db: &target,
        application: "pgmirror",
        statement: "SELECT pg_sleep",
    };
    stops_while(
        busy,
        dir.path(),
        &["slow.sql"],
        &[
            "restore",
            "--quiet",
            "--from",
            dump.to_str().unwrap(),
            "--target",
            &target.url,
        ],
        libc::SIGTERM,
    );
    assert_eq!(
        target.scalar("SELECT to_regclass('slow_marker') IS NULL"),
        "t",
        "psql's transaction rolled back"
    );
}
