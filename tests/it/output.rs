//! The output file: atomic, private, summarised; a full disk loses nothing.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::support::{export, fresh_db, open_mirror, pgmirror, temp_dir};

#[test]
fn mirror_is_private_and_the_json_summary_describes_it() {
    let db = fresh_db("output_json");
    db.execute("CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 10); CREATE TABLE b (x text)");
    let dir = temp_dir();
    let mirror = dir.path().join("out.db");
    let result = pgmirror(&[
        "export",
        "--quiet",
        "--json",
        "--source",
        &db.url,
        "--output",
        mirror.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(result.stderr.is_empty(), "--quiet prints nothing on success");
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).expect("--json prints JSON");
    assert_eq!(summary["tables"], 2);
    assert_eq!(summary["rows"], 10);
    assert_eq!(summary["table_rows"][0]["table"], "a");
    assert!(summary["snapshot_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        std::fs::metadata(&mirror).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let conn = open_mirror(&mirror);
    let (application_id, user_version): (i64, i64) = conn
        .query_row(
            "SELECT * FROM pragma_application_id, pragma_user_version",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (application_id, user_version),
        (0x5047_4d52, i64::from(pgmirror::mirror::FORMAT_VERSION))
    );
}

#[test]
fn a_full_disk_fails_cleanly_and_keeps_the_previous_mirror() {
    let db = fresh_db("full_disk");
    db.execute("CREATE TABLE big (id int, payload text); INSERT INTO big SELECT g, repeat('z', 1000) FROM generate_series(1, 20000) g");
    let dir = temp_dir();
    let mirror = dir.path().join("out.db");
    std::fs::write(&mirror, b"the previous mirror").unwrap();
    // RLIMIT_FSIZE makes writes past 2 MB fail with EFBIG, as a full disk fails them with
    // ENOSPC; SIGXFSZ is ignored (inherited through exec) so the write returns the error.
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmirror"));
    command.args([
        "export",
        "--quiet",
        "--source",
        &db.url,
        "--output",
        mirror.to_str().unwrap(),
    ]);
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 2 << 20,
                rlim_max: 2 << 20,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let result = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("out.db.partial") && stderr.contains("is the disk full"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&mirror).unwrap(),
        b"the previous mirror",
        "the old mirror is untouched"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["out.db"], "no partial file left");
}

#[test]
fn an_existing_mirror_is_replaced_whole() {
    let db = fresh_db("replace");
    db.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)");
    let dir = temp_dir();
    let mirror = dir.path().join("out.db");
    export(&db, &mirror, &[]);
    db.execute("INSERT INTO t VALUES (2)");
    export(&db, &mirror, &[]);
    let total: i64 = open_mirror(&mirror)
        .query_row("SELECT sum(v) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, 3);
}

#[test]
fn chunked_reading_of_big_and_partitioned_tables_is_exact() {
    let db = fresh_db("chunked");
    db.execute(
        "CREATE TABLE big (id bigint PRIMARY KEY, payload text, amount numeric);
         INSERT INTO big SELECT g, repeat(md5(g::text), 3), g / 7.0 FROM generate_series(1, 30000) g;
         DELETE FROM big WHERE id % 10 = 0;
         CREATE TABLE parts (id int, payload text) PARTITION BY RANGE (id);
         CREATE TABLE parts_a PARTITION OF parts FOR VALUES FROM (0) TO (10000);
         CREATE TABLE parts_b PARTITION OF parts FOR VALUES FROM (10000) TO (30000);
         INSERT INTO parts SELECT g, md5(g::text) FROM generate_series(0, 29999) g;",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("chunked.db");
    let result = pgmirror(&[
        "export",
        "--quiet",
        "--json",
        "--jobs",
        "3",
        "--chunk-size",
        "128kB",
        "--source",
        &db.url,
        "--output",
        mirror.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert!(
        summary["copy_tasks"].as_u64().unwrap() > 10,
        "the tables were split: {summary}"
    );
    assert_eq!(summary["rows"], 27000 + 30000);
    crate::compare::assert_mirror_matches(&db, &mirror);
}

#[test]
fn bench_tries_each_setting_on_a_sample_and_names_the_fastest() {
    let db = fresh_db("tune");
    db.execute(
        "CREATE TABLE big (id bigint, payload text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 40000) g;
         CREATE TABLE small (id int); INSERT INTO small VALUES (1);",
    );
    let result = pgmirror(&[
        "bench",
        "--json",
        "--source",
        &db.url,
        "--tables",
        "1",
        "--sample-size",
        "1MB",
        "--jobs",
        "1,2",
        "--chunk-size",
        "256kB",
        "--batch-rows",
        "500",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["tables"], serde_json::json!(["public.big"]));
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    // 1MB of a ~3MB table: the sample stops at the first 128 pages, not at the whole table.
    for trial in trials {
        let rows = trial["rows"].as_u64().unwrap();
        assert!(rows > 1000 && rows < 40000, "{trial}");
    }
    let best = report["best"]["rows_per_second"].as_f64().unwrap();
    assert!(trials
        .iter()
        .all(|t| t["rows_per_second"].as_f64().unwrap() <= best));
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("pgmirror-bench-") && name.ends_with(".db")
        })
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}

#[test]
fn plan_shows_tables_codecs_and_chunks_without_writing() {
    let db = fresh_db("plan_only");
    db.execute(
        "CREATE TABLE big (id bigint, payload text, price money);
         INSERT INTO big SELECT g, repeat(md5(g::text), 4), g FROM generate_series(1, 20000) g;",
    );
    let dir = temp_dir();
    let result = pgmirror(&[
        "export",
        "--plan",
        "--source",
        &db.url,
        "--chunk-size",
        "256kB",
        "--where",
        "big:id > 10",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let columns = &plan["tables"][0]["columns"];
    assert_eq!(columns[2]["pg_type"], "money");
    assert_eq!(
        columns[2]["codec"], "decimal(2)",
        "money travels as numeric, stored as a number of scale 2"
    );
    let tasks = plan["tasks"].as_array().unwrap();
    assert!(tasks.len() > 3, "chunked: {plan}");
    assert!(tasks
        .iter()
        .all(|t| t["query"].as_str().unwrap().contains("(id > 10)")));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
