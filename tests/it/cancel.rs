//! SIGINT/SIGTERM stop a run at once: the statements it runs on the server are cancelled,
//! nothing partial is left, and the exit code is 2.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{exit_within, fresh_db, pgmirror_command, signal, temp_dir, wait_for, TestDb};

/// pgmirror's sessions on `db` that are running a statement (not idle).
fn busy_sessions(db: &TestDb) -> Vec<String> {
    db.query(&format!(
        "SELECT query FROM pg_stat_activity WHERE application_name = 'pgmirror' \
         AND datname = '{}' AND state <> 'idle'",
        db.name
    ))
    .into_iter()
    .map(|row| row[0].clone().unwrap_or_default())
    .collect()
}

/// Starts `args`, waits until one of its statements runs a COPY on the server, stops it
/// with `stop`, and checks it ended within 2 s, exit code 2, with the server idle and the
/// directory empty.
fn stops_while_copying(db: &TestDb, dir: &Path, args: &[&str], stop: libc::c_int) {
    let mut child = pgmirror_command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pgmirror");
    wait_for(
        "a COPY of pgmirror on the server",
        Duration::from_secs(60),
        || busy_sessions(db).iter().any(|q| q.starts_with("COPY")),
    );
    signal(&child, stop);
    let status = exit_within(&mut child, Duration::from_secs(2));
    let output = child.wait_with_output().expect("stderr");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // The cancel request is asynchronous on the server's side: give it a moment.
    wait_for(
        "the server to end pgmirror's statements",
        Duration::from_secs(2),
        || busy_sessions(db).is_empty(),
    );
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("reading the output directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn ctrl_c_cancels_a_slow_where_scan_on_the_server() {
    let db = fresh_db("cancel_slow_where");
    db.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10)");
    let dir = temp_dir();
    let output = dir.path().join("out.db");
    let output = output.to_str().unwrap();
    // Each row sleeps a minute: without a cancel request the backend would run for ten.
    stops_while_copying(
        &db,
        dir.path(),
        &[
            "export",
            "--quiet",
            "--source",
            &db.url,
            "--output",
            output,
            "--where",
            "t:pg_sleep(60) IS NOT NULL",
        ],
        libc::SIGINT,
    );
}

#[test]
fn sigterm_stops_a_large_export_mid_copy() {
    let db = fresh_db("cancel_large_export");
    db.execute(
        "CREATE TABLE big (id bigint PRIMARY KEY, label text, at timestamptz);
         INSERT INTO big SELECT g, 'row number ' || g, now() FROM generate_series(1, 1000000) g;",
    );
    let dir = temp_dir();
    let output = dir.path().join("out.db");
    let output = output.to_str().unwrap();
    stops_while_copying(
        &db,
        dir.path(),
        &[
            "export",
            "--quiet",
            "--jobs",
            "2",
            "--chunk-size",
            "8MB",
            "--source",
            &db.url,
            "--output",
            output,
        ],
        libc::SIGTERM,
    );
}
