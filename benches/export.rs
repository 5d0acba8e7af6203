//! End-to-end benchmark: PostgreSQL → SQLite mirror (and back) against the limits and
//! the tools people would otherwise use, measured in one run on this machine.
//!
//!   cargo bench --bench export               # narrow 5M rows, wide 500k, app with 1M logs
//!   cargo bench --bench export -- --quick    # a fifth of that (narrow 1M rows), for development
//!   cargo bench --bench export -- --dataset narrow --runs 1
//!   cargo bench --bench export -- --scaling  # only the scaling series (1M, 5M, 20M narrow)
//!
//! It starts its own PostgreSQL in target/bench-cluster and keeps it between runs, so the
//! generated datasets are made once. Every stage is timed `--runs` times (default 3) and the
//! median is shown, all in this one run. Per dataset: the read limit (binary COPY into
//! nothing), the write limit (a bare rusqlite insert loop of the same rows already in
//! memory, in the best configuration measured: 50-row statements, 64 KiB pages, exclusive
//! locking, 256 MB cache), the naive pipeline (psql CSV + sqlite3 .import), DuckDB with its
//! postgres and sqlite extensions (`pip install duckdb duckdb-ext-postgres duckdb-ext-sqlite`;
//! skipped when missing), `pgmirror export` with the page writer at jobs 1, 2 and 4 and with
//! `--writer sqlite` (seconds, rows/s, peak RSS of the process), and for the single-table
//! datasets the restore rate against `psql \copy FROM`. Then the scaling series: the
//! default export of 1M, 5M and 20M narrow rows (a fifth with --quick), time and peak RSS.

#[path = "../tests/it/cluster.rs"]
mod cluster;

use cluster::{connect, runtime};

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{Command, Stdio};
use std::time::Instant;

use futures_util::StreamExt;
use rusqlite::types::Value;

struct Dataset {
    name: &'static str,
    database: String,
    /// Tables as written in SQL (quoted where needed).
    tables: Vec<String>,
    /// Whether the restore comparison runs (single tables without foreign keys).
    restore: bool,
}

/// One measured stage.
struct Measure {
    stage: String,
    seconds: f64,
    rows: u64,
    peak_rss_mb: Option<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-export") {
        child_export(&args[2..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scaling_only = args.iter().any(|a| a == "--scaling");
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = value_of("--dataset");
    let runs: usize = value_of("--runs").map_or(3, |r| r.parse().expect("--runs N"));
    let scale = if quick { 5 } else { 1 };

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let server = cluster::bench_server(&root);
    let out = root.join("bench-out");
    std::fs::create_dir_all(&out).expect("creating target/bench-out");
    let conninfo = server.conninfo();
    let result = std::panic::catch_unwind(|| {
        println!(
            "pgmirror end-to-end benchmark ({}), {} cores, medians of {runs}",
            if quick { "--quick" } else { "full" },
            cores()
        );
        if !scaling_only {
            let datasets = prepare_datasets(&conninfo, scale);
            let mut goals = Vec::new();
            for dataset in datasets
                .iter()
                .filter(|d| only.as_deref().is_none_or(|o| o == d.name))
            {
                goals.push((dataset.name, run_dataset(&conninfo, dataset, &out, runs)));
            }
            print_goals(&goals);
        }
        if only.is_none() || scaling_only {
            scaling_series(&conninfo, &out, scale, runs);
        }
    });
    server.stop();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The median of `runs` measurements of one stage (by seconds; its RSS goes with it).
fn median_of(runs: usize, mut measure: impl FnMut() -> Measure) -> Measure {
    let mut all: Vec<Measure> = (0..runs.max(1)).map(|_| measure()).collect();
    all.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let peak = all.iter().filter_map(|m| m.peak_rss_mb).reduce(f64::max);
    let mut median = all.swap_remove(all.len() / 2);
    median.peak_rss_mb = peak;
    median
}

/// The stages the goals compare, per dataset.
struct GoalTimes {
    export: f64,
    write_limit: f64,
    naive: f64,
    duckdb: Option<f64>,
    peak_rss_mb: f64,
}

/// Ratios for the goals: narrow against the write limit, narrow + wide (summed) against
/// the naive pipeline and DuckDB, and the largest peak RSS.
fn print_goals(goals: &[(&str, GoalTimes)]) {
    let find = |name: &str| goals.iter().find(|(n, _)| *n == name).map(|(_, g)| g);
    println!("\ngoals (the default export: page writer, jobs = cores)");
    if let Some(narrow) = find("narrow") {
        println!(
            "  narrow: export / write limit = {:.2} (goal <= 0.8)",
            narrow.export / narrow.write_limit
        );
    }
    if let (Some(narrow), Some(wide)) = (find("narrow"), find("wide")) {
        let export = narrow.export + wide.export;
        println!(
            "  narrow + wide: export / naive = {:.2} (goal <= 0.25)",
            export / (narrow.naive + wide.naive)
        );
        match (narrow.duckdb, wide.duckdb) {
            (Some(a), Some(b)) => println!(
                "  narrow + wide: export / DuckDB = {:.2} (goal <= 0.4)",
                export / (a + b)
            ),
            _ => println!("  narrow + wide: DuckDB not measured"),
        }
    }
    if let Some(peak) = goals.iter().map(|(_, g)| g.peak_rss_mb).reduce(f64::max) {
        println!("  peak RSS of the default export: {peak:.0} MB (goal <= 200 MB)");
    }
}

/// The default export of growing narrow tables: time should grow linearly, peak RSS not.
fn scaling_series(conninfo: &str, out: &Path, scale: u64, runs: usize) {
    println!("\nscaling: pgmirror export (page writer, jobs = cores) of the narrow table");
    println!(
        "{:>12} {:>9} {:>12} {:>14} {:>10}",
        "rows", "seconds", "rows/s", "s per M rows", "peak RSS"
    );
    for millions in [1, 5, 20] {
        let rows = millions * 1_000_000 / scale;
        let dataset = make_dataset(
            conninfo,
            "narrow",
            rows,
            &narrow_sql(rows),
            vec!["narrow".into()],
            true,
        );
        let url = db_url(conninfo, &dataset.database);
        let mirror = out.join(format!("scaling-{rows}.db"));
        let m = median_of(runs, || pgmirror_export(&url, &mirror, cores(), "pages"));
        println!(
            "{:>12} {:>9.2} {:>12.0} {:>14.2} {:>7.0} MB",
            m.rows,
            m.seconds,
            m.rows as f64 / m.seconds,
            m.seconds / (m.rows as f64 / 1e6),
            m.peak_rss_mb.unwrap_or(0.0)
        );
        let _ = std::fs::remove_file(&mirror);
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn db_url(conninfo: &str, database: &str) -> String {
    format!("{conninfo} dbname={database}")
}

fn narrow_sql(rows: u64) -> String {
    format!(
        "CREATE TABLE narrow (id bigint, n int, x double precision, s text, b bool, t timestamptz);
         INSERT INTO narrow SELECT g, (g % 100000)::int, g * 0.25, substr(md5(g::text), 1, 12), g % 3 = 0,
                timestamptz '2020-01-01 00:00+00' + g * interval '1 second' FROM generate_series(1, {rows}) g;"
    )
}

/// Creates each dataset's database unless a previous run left it complete.
fn prepare_datasets(conninfo: &str, scale: u64) -> Vec<Dataset> {
    let narrow_rows = 5_000_000 / scale;
    let wide_rows = 500_000 / scale;
    let log_rows = 1_000_000 / scale;
    let narrow = narrow_sql(narrow_rows);
    let wide = format!(
        "CREATE TABLE wide (id bigint PRIMARY KEY, amount numeric(14,2), ratio numeric, ident uuid, doc jsonb,
                            body text, blob bytea, tags int[], born date, seen timestamp, seen_tz timestamptz,
                            flag bool, small smallint, count int, score double precision, name varchar(64),
                            code char(8), note text, big bigint, day date);
         INSERT INTO wide SELECT g,
                CASE WHEN g % 10 = 0 THEN NULL ELSE (g * 1.37)::numeric(14,2) END, g / 7.0, md5(g::text)::uuid,
                CASE WHEN g % 10 = 1 THEN NULL ELSE jsonb_build_object('id', g, 'name', 'user ' || g,
                     'tags', jsonb_build_array('a', 'b', g % 7), 'text', repeat('x', 120)) END,
                CASE WHEN g % 10 = 2 THEN NULL ELSE repeat(md5(g::text), 9) END,
                CASE WHEN g % 10 = 3 THEN NULL ELSE decode(repeat(md5(g::text), 6), 'hex') END,
                ARRAY[g % 10, g % 100, g % 1000], date '1970-01-01' + (g % 20000),
                timestamp '2000-01-01' + g * interval '1 minute',
                CASE WHEN g % 10 = 4 THEN NULL ELSE timestamptz '2000-01-01 00:00+00' + g * interval '37 seconds' END,
                g % 2 = 0, (g % 30000)::smallint, (g % 1000000)::int, g * 0.001, 'name ' || g,
                lpad((g % 100000)::text, 8, '0'), CASE WHEN g % 10 = 5 THEN NULL ELSE 'note ' || g END,
                g * 1000, date '2020-01-01' + (g % 365)
         FROM generate_series(1, {wide_rows}) g;"
    );
    let mut datasets = vec![
        make_dataset(
            conninfo,
            "narrow",
            narrow_rows,
            &narrow,
            vec!["narrow".into()],
            true,
        ),
        make_dataset(conninfo, "wide", wide_rows, &wide, vec!["wide".into()], true),
    ];
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/aidungeonprompts");
    {
        let read = |file: &str| std::fs::read_to_string(fixture.join(file)).expect("reading the app fixture");
        let app = format!(
            "{}\n{}\nINSERT INTO \"ApplicationLogs\" (\"Level\", \"TimeStamp\", \"Properties\", \"LogEvent\", \"Message\", \"RenderedMessage\")
             SELECT 'Information', timestamptz '2021-07-18 00:00+00' + g * interval '1 second',
                    jsonb_build_object('SourceContext', 'Job' || (g % 50), 'RequestId', md5(g::text)),
                    jsonb_build_object('Level', 'Information', 'MessageTemplate', 'Handled request {{Id}}', 'Id', g),
                    'Handled request ' || g, 'Handled request ' || g || ' in ' || (g % 997) || ' ms'
             FROM generate_series(1, {log_rows}) g;",
            read("schema.sql"),
            read("seed.sql")
        );
        let tables = [
            "__EFMigrationsHistory",
            "Users",
            "Prompts",
            "Tags",
            "PromptTags",
            "WorldInfos",
            "Reports",
            "AuditPrompts",
            "ServerFlags",
            "DataProtectionKeys",
            "ApplicationLogs",
        ]
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect();
        datasets.push(make_dataset(conninfo, "app", log_rows, &app, tables, false));
    }
    datasets
}

fn make_dataset(
    conninfo: &str,
    name: &'static str,
    rows: u64,
    sql: &str,
    tables: Vec<String>,
    restore: bool,
) -> Dataset {
    let database = format!("bench_{name}_{rows}");
    runtime().block_on(async {
        let admin = connect(&db_url(conninfo, "postgres")).await;
        let exists = !admin
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await
            .unwrap()
            .is_empty();
        if exists {
            let client = connect(&db_url(conninfo, &database)).await;
            // Marked on the database, not by a table the exports would then mirror.
            let ready = client
                .query(
                    "SELECT 1 FROM pg_database WHERE datname = current_database() \
                     AND shobj_description(oid, 'pg_database') = 'bench dataset complete'",
                    &[],
                )
                .await
                .unwrap();
            if !ready.is_empty() {
                return;
            }
            drop(client);
            admin
                .batch_execute(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
                .await
                .unwrap();
        }
        eprintln!("generating dataset {name} ({rows} rows); kept in target/bench-cluster for later runs");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{database}\""))
            .await
            .unwrap();
        let client = connect(&db_url(conninfo, &database)).await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("generating {name}: {e:?}"));
        // VACUUM cannot share a multi-statement batch (an implicit transaction).
        client.batch_execute("VACUUM ANALYZE").await.unwrap();
        client
            .batch_execute(&format!(
                "COMMENT ON DATABASE \"{database}\" IS 'bench dataset complete'"
            ))
            .await
            .unwrap();
    });
    Dataset {
        name,
        database,
        tables,
        restore,
    }
}

fn run_dataset(conninfo: &str, dataset: &Dataset, out: &Path, runs: usize) -> GoalTimes {
    let url = db_url(conninfo, &dataset.database);
    let heap_mb: f64 = runtime().block_on(async {
        let client = connect(&url).await;
        let row = client
            .query_one("SELECT sum(pg_relation_size(c.oid))::float8 FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace", &[])
            .await
            .unwrap();
        row.get::<_, f64>(0) / 1e6
    });
    let read = median_of(runs, || read_limit(&url, dataset));
    let mut exports = Vec::new();
    for (jobs, writer) in [(1, "pages"), (2, "pages"), (4, "pages"), (2, "sqlite")] {
        let mirror = out.join(format!("{}-{writer}-jobs{jobs}.db", dataset.name));
        exports.push(median_of(runs, || pgmirror_export(&url, &mirror, jobs, writer)));
    }
    let mirror = out.join(format!("{}-pages-jobs2.db", dataset.name));
    let write = median_of(runs, || write_limit(&mirror, out, dataset.name));
    let naive = median_of(runs, || naive_pipeline(&url, dataset, out));
    let duckdb = duckdb_available().then(|| median_of(runs, || duckdb_export(&url, dataset, out)));
    let restore = dataset
        .restore
        .then(|| restore_pair(conninfo, dataset, &mirror, out));

    println!(
        "\ndataset {}: {} rows in {} tables, heap {:.0} MB",
        dataset.name,
        write.rows,
        dataset.tables.len(),
        heap_mb
    );
    println!(
        "{:<46} {:>8} {:>11} {:>9} {:>10} {:>9} {:>9}",
        "stage", "seconds", "rows/s", "peak RSS", "/ write", "/ naive", "/ DuckDB"
    );
    let default_jobs = cores().clamp(1, 4);
    let default = exports
        .iter()
        .find(|m| m.stage == export_stage(default_jobs, "pages"))
        .unwrap_or(&exports[1]);
    let goals = GoalTimes {
        export: default.seconds,
        write_limit: write.seconds,
        naive: naive.seconds,
        duckdb: duckdb.as_ref().map(|m| m.seconds),
        peak_rss_mb: default.peak_rss_mb.unwrap_or(0.0),
    };
    let stages = [&read, &write, &naive]
        .into_iter()
        .chain(duckdb.as_ref())
        .chain(&exports);
    for m in stages {
        let rss = m
            .peak_rss_mb
            .map(|mb| format!("{mb:.0} MB"))
            .unwrap_or_else(|| "-".into());
        let duck = goals
            .duckdb
            .map(|d| format!("{:.2}", m.seconds / d))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<46} {:>8.2} {:>11.0} {:>9} {:>10.2} {:>9.2} {:>9}",
            m.stage,
            m.seconds,
            m.rows as f64 / m.seconds,
            rss,
            m.seconds / write.seconds,
            m.seconds / naive.seconds,
            duck
        );
    }
    if duckdb.is_none() {
        println!("(DuckDB not measured: pip install duckdb duckdb-ext-postgres duckdb-ext-sqlite)");
    }
    if let Some((ours, psql)) = restore {
        println!(
            "restore: pgmirror restore {:.2} s ({:.0} rows/s), psql \\copy FROM {:.2} s ({:.0} rows/s): rate ratio {:.2}",
            ours.seconds,
            ours.rows as f64 / ours.seconds,
            psql.seconds,
            psql.rows as f64 / psql.seconds,
            psql.seconds / ours.seconds
        );
    }
    goals
}

const DUCKDB_SCRIPT: &str = include_str!("duckdb_export.py");

fn duckdb_available() -> bool {
    Command::new("python3")
        .args(["-c", DUCKDB_SCRIPT, "--check"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// DuckDB 1.4 with its postgres and sqlite extensions: ATTACH both, CREATE TABLE AS per
/// table. Timed by the script from the first ATTACH (the interpreter's start-up excluded).
fn duckdb_export(url: &str, dataset: &Dataset, out: &Path) -> Measure {
    let db = out.join(format!("{}-duckdb.db", dataset.name));
    let _ = std::fs::remove_file(&db);
    let stdout = succeed(
        Command::new("python3")
            .args(["-c", DUCKDB_SCRIPT, url, db.to_str().unwrap()])
            .args(dataset.tables.iter().map(|t| t.trim_matches('"'))),
        "duckdb (python3)",
    );
    // The result is the last line: whatever DuckDB prints before it is not ours to parse.
    let report = String::from_utf8_lossy(&stdout);
    let mut fields = report.lines().last().unwrap_or_default().split_whitespace();
    let (seconds, rows): (f64, u64) = match (fields.next().map(str::parse), fields.next().map(str::parse)) {
        (Some(Ok(seconds)), Some(Ok(rows))) => (seconds, rows),
        _ => panic!("duckdb printed {report:?}, not \"SECONDS ROWS\""),
    };
    Measure {
        stage: "DuckDB: ATTACH postgres + sqlite, CREATE TABLE AS".into(),
        seconds,
        rows,
        peak_rss_mb: None,
    }
}

/// Runs a tool the comparison drives; panics with its stderr when it fails. Returns stdout.
fn succeed(command: &mut Command, what: &str) -> Vec<u8> {
    let output = command.output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn export_stage(jobs: usize, writer: &str) -> String {
    format!("pgmirror export --writer {writer} --jobs {jobs}")
}

/// PostgreSQL's own binary COPY of every table, into nothing, on one connection.
fn read_limit(url: &str, dataset: &Dataset) -> Measure {
    runtime().block_on(async {
        let client = connect(url).await;
        let started = Instant::now();
        for table in &dataset.tables {
            let stream = client
                .copy_out(format!("COPY (SELECT * FROM ONLY {table}) TO STDOUT (FORMAT binary)").as_str())
                .await
                .unwrap();
            let mut stream = pin!(stream);
            while let Some(chunk) = stream.next().await {
                chunk.unwrap();
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let rows: i64 = client
            .query_one(
                &format!(
                    "SELECT {}",
                    dataset
                        .tables
                        .iter()
                        .map(|t| format!("(SELECT count(*) FROM {t})"))
                        .collect::<Vec<_>>()
                        .join(" + ")
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        Measure {
            stage: "read limit: binary COPY into nothing".into(),
            seconds,
            rows: rows as u64,
            peak_rss_mb: None,
        }
    })
}

/// Runs the export in a child process (this benchmark re-executed), which reports its own
/// peak RSS.
fn pgmirror_export(url: &str, mirror: &Path, jobs: usize, writer: &str) -> Measure {
    let started = Instant::now();
    let child = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--child-export",
            url,
            mirror.to_str().unwrap(),
            &jobs.to_string(),
            writer,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the export child");
    let output = child.wait_with_output().expect("waiting for the export child");
    assert!(output.status.success(), "export child failed");
    let seconds = started.elapsed().as_secs_f64();
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("child summary");
    Measure {
        stage: export_stage(jobs, writer),
        seconds,
        rows: summary["rows"].as_u64().unwrap_or(0),
        peak_rss_mb: Some(summary["peak_rss_kb"].as_u64().unwrap_or(0) as f64 / 1024.0),
    }
}

fn child_export(args: &[String]) {
    pgmirror::sink::disable_memory_statistics();
    let source = pgmirror::pg::ConnectionSpec::parse(&args[0]).expect("source");
    let mut options = pgmirror::ExportOptions::new(source, PathBuf::from(&args[1]));
    options.jobs = args[2].parse().expect("jobs");
    options.writer = match args[3].as_str() {
        "sqlite" => pgmirror::config::Writer::Sqlite,
        _ => pgmirror::config::Writer::Pages,
    };
    let summary = pgmirror::export(&options).expect("export");
    let mut report = serde_json::to_value(&summary).unwrap();
    report["peak_rss_kb"] = peak_rss_kb().into();
    println!("{report}");
}

/// This process's peak resident set (VmHWM). Read by the child itself: the rusage of a
/// forked child also counts the parent's pages it started with.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The bare SQLite insert loop: the mirror's rows, already in memory, into a fresh file
/// with the same tables, prepared 50-row INSERTs in one transaction, journal off, 64 KiB
/// pages, exclusive locking, a 256 MB cache: the fastest configuration measured.
fn write_limit(mirror: &Path, out: &Path, name: &str) -> Measure {
    let source = rusqlite::Connection::open(mirror).unwrap();
    let tables: Vec<(String, String)> = source
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_pgmirror\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut loaded: Vec<(String, String, usize, Vec<Value>)> = Vec::new();
    for (table, sql) in tables {
        let mut statement = source
            .prepare(&format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")))
            .unwrap();
        let columns = statement.column_count();
        let mut values = Vec::new();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                values.push(row.get::<_, Value>(i).unwrap());
            }
        }
        loaded.push((table, sql, columns, values));
    }
    let path = out.join(format!("{name}-write-limit.db"));
    let _ = std::fs::remove_file(&path);
    let target = rusqlite::Connection::open(&path).unwrap();
    target
        .execute_batch(
            "PRAGMA page_size = 65536; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
             PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -262144; PRAGMA foreign_keys = OFF",
        )
        .unwrap();
    for (_, sql, _, _) in &loaded {
        target.execute_batch(sql).unwrap();
    }
    let started = Instant::now();
    target.execute_batch("BEGIN").unwrap();
    let mut total = 0;
    for (table, _, columns, values) in &loaded {
        let per_statement = (32_766 / columns).clamp(1, 50);
        let row = format!("({})", vec!["?"; *columns].join(","));
        let insert = |rows: usize| {
            format!(
                "INSERT INTO \"{}\" VALUES {}",
                table.replace('"', "\"\""),
                vec![row.as_str(); rows].join(",")
            )
        };
        let mut full = target.prepare(&insert(per_statement)).unwrap();
        let mut single = target.prepare(&insert(1)).unwrap();
        let mut chunks = values.chunks_exact(columns * per_statement);
        for chunk in &mut chunks {
            full.execute(rusqlite::params_from_iter(chunk.iter())).unwrap();
        }
        for row in chunks.remainder().chunks(*columns) {
            single.execute(rusqlite::params_from_iter(row.iter())).unwrap();
        }
        total += values.len() / columns;
    }
    target.execute_batch("COMMIT").unwrap();
    Measure {
        stage: "write limit: bare rusqlite insert loop".into(),
        seconds: started.elapsed().as_secs_f64(),
        rows: total as u64,
        peak_rss_mb: None,
    }
}

/// What people script today: psql \copy to CSV, then sqlite3 .import.
fn naive_pipeline(url: &str, dataset: &Dataset, out: &Path) -> Measure {
    let db = out.join(format!("{}-naive.db", dataset.name));
    let _ = std::fs::remove_file(&db);
    let started = Instant::now();
    let mut rows = 0u64;
    for (index, table) in dataset.tables.iter().enumerate() {
        let csv = csv_path(out, dataset, index);
        succeed(
            Command::new("psql")
                .args(["-X", "-q", "-d", url, "-c"])
                .arg(format!(
                    "\\copy (SELECT * FROM ONLY {table}) TO '{}' (FORMAT csv, HEADER true)",
                    csv.display()
                )),
            "psql",
        );
        let bare = table.trim_matches('"');
        succeed(
            Command::new("sqlite3")
                .arg(&db)
                .arg(format!(".import --csv '{}' '{bare}'", csv.display())),
            "sqlite3 (install the sqlite3 package)",
        );
        rows += std::fs::read(&csv)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(1)
            - 1;
    }
    Measure {
        stage: "naive: psql \\copy CSV + sqlite3 .import".into(),
        seconds: started.elapsed().as_secs_f64(),
        rows,
        peak_rss_mb: None,
    }
}

fn csv_path(out: &Path, dataset: &Dataset, index: usize) -> PathBuf {
    out.join(format!("{}-{index}.csv", dataset.name))
}

/// pgmirror restore of the mirror into an empty copy of the table, against psql \copy FROM
/// of the naive pipeline's CSV into the same table.
fn restore_pair(conninfo: &str, dataset: &Dataset, mirror: &Path, out: &Path) -> (Measure, Measure) {
    let target = format!("{}_restore", dataset.database);
    let target_url = db_url(conninfo, &target);
    runtime().block_on(async {
        let admin = connect(&db_url(conninfo, "postgres")).await;
        // Each alone: DROP and CREATE DATABASE refuse a multi-statement batch.
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{target}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{target}\""),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
    });
    let bin = cluster::postgres_bin_dir();
    let schema = Command::new(bin.join("pg_dump"))
        .args([
            "--schema-only",
            "--no-owner",
            "-d",
            &db_url(conninfo, &dataset.database),
        ])
        .args(dataset.tables.iter().flat_map(|t| ["-t".to_owned(), t.clone()]))
        .output()
        .expect("pg_dump");
    let mut psql = Command::new("psql")
        .args(["-X", "-q", "-d", &target_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut psql.stdin.take().unwrap(), &schema.stdout).unwrap();
    assert!(psql.wait().unwrap().success());

    let options = pgmirror::restore::RestoreOptions {
        from: mirror.to_path_buf(),
        target: pgmirror::pg::ConnectionSpec::parse(&target_url).unwrap(),
        filter: pgmirror::TableFilter::default(),
        mode: pgmirror::restore::RestoreMode::Replace,
        create: false,
        force: false,
        disable_triggers: false,
        quiet: true,
    };
    let started = Instant::now();
    let summary = pgmirror::restore::restore(&options).expect("restore");
    let ours = Measure {
        stage: "pgmirror restore".into(),
        seconds: started.elapsed().as_secs_f64(),
        rows: summary.rows,
        peak_rss_mb: None,
    };
    let truncate = Command::new("psql")
        .args(["-X", "-q", "-d", &target_url, "-c"])
        .arg(format!("TRUNCATE {}", dataset.tables.join(", ")))
        .status()
        .unwrap();
    assert!(truncate.success());
    let started = Instant::now();
    for (index, table) in dataset.tables.iter().enumerate() {
        succeed(
            Command::new("psql")
                .args(["-X", "-q", "-d", &target_url, "-c"])
                .arg(format!(
                    "\\copy {table} FROM '{}' (FORMAT csv, HEADER true)",
                    csv_path(out, dataset, index).display()
                )),
            "psql \\copy FROM",
        );
    }
    let psql = Measure {
        stage: "psql \\copy FROM".into(),
        seconds: started.elapsed().as_secs_f64(),
        rows: summary.rows,
        peak_rss_mb: None,
    };
    (ours, psql)
}
