//! The CSV round trip: mirror → CSV → `csv import` or plain `psql \copy` → identical tables.

use std::path::Path;
use std::process::Command;

use crate::support::{
    copy_schema, export, fixtures_dir, fresh_db, pgmirror, pgmirror_with_env, table_digests, temp_dir, TestDb,
};

fn run_ok(args: &[&str]) -> String {
    let output = pgmirror(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "pgmirror {args:?} failed: {stderr}");
    stderr
}

fn csv_export(mirror: &Path, table: &str, output: &Path) {
    run_ok(&[
        "csv",
        "export",
        "--quiet",
        "--from",
        mirror.to_str().unwrap(),
        "--table",
        table,
        "--output",
        output.to_str().unwrap(),
    ]);
}

fn csv_import(target: &TestDb, table: &str, input: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "csv",
        "import",
        "--quiet",
        "--target",
        &target.url,
        "--table",
        table,
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    pgmirror(&args)
}

fn psql_copy(target: &TestDb, relation: &str, input: &Path) {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &target.url, "-c"])
        .arg(format!(
            "\\copy {relation} FROM '{}' (FORMAT csv, HEADER true)",
            input.display()
        ))
        .output()
        .expect("running psql");
    assert!(
        output.status.success(),
        "psql \\copy {relation}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Foreign keys make per-table loads order-dependent; the round trip checks values.
fn drop_foreign_keys(db: &TestDb) {
    db.execute(
        "DO $$ DECLARE r record; BEGIN
           FOR r IN SELECT conrelid::regclass AS t, conname FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 LOOP
             EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname);
           END LOOP; END $$",
    );
}

/// Each table of `source` through mirror → CSV, loaded by pgmirror and by psql into two
/// empty copies of the schema; both must equal the source.
fn csv_round_trip(source: &TestDb, prefix: &str) {
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(source, &mirror, &[]);
    let by_pgmirror = fresh_db(&format!("{prefix}_csv_import"));
    let by_psql = fresh_db(&format!("{prefix}_psql_copy"));
    for target in [&by_pgmirror, &by_psql] {
        copy_schema(source, target);
        drop_foreign_keys(target);
    }
    let tables = source.query(
        "SELECT n.nspname || '.' || c.relname, format('%I.%I', n.nspname, c.relname) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    );
    for (index, row) in tables.iter().enumerate() {
        let (name, relation) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        let file = dir.path().join(format!("{index}.csv"));
        csv_export(&mirror, &name, &file);
        let output = csv_import(&by_pgmirror, &name, &file, &[]);
        assert!(
            output.status.success(),
            "csv import {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        psql_copy(&by_psql, &relation, &file);
    }
    let expected = table_digests(source);
    assert_eq!(
        table_digests(&by_pgmirror),
        expected,
        "{prefix}: mirror → CSV → csv import"
    );
    assert_eq!(
        table_digests(&by_psql),
        expected,
        "{prefix}: mirror → CSV → psql \\copy"
    );
}

fn types_db(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.psql_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/types.sql"));
    db
}

#[test]
fn every_type_round_trips_through_csv() {
    let source = types_db("csv_types");
    csv_round_trip(&source, "csv_types");

    // NULL and the empty string stay apart in the file itself.
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &["--table", "every_type"]);
    let file = dir.path().join("every_type.csv");
    csv_export(&mirror, "every_type", &file);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        format!("1{}", ",".repeat(41)),
        "row 1: every NULL is an unquoted empty field"
    );
    assert!(
        lines[2].starts_with("2,0,0,0,0,f,0,0,0,0.000,$0.00,\"\",\"\","),
        "row 2: empty strings are \"\": {}",
        lines[2]
    );
}

#[test]
fn shared_datasets_round_trip_through_csv() {
    let fixtures = fixtures_dir();
    let pagila = fresh_db("csv_pagila");
    pagila.psql_file(&fixtures.join("datasets/pagila/pagila-schema.sql"));
    pagila.psql_file(&fixtures.join("datasets/pagila/pagila-data.sql"));
    csv_round_trip(&pagila, "csv_pagila");
    let datatypes = fresh_db("csv_datatypes");
    datatypes.psql_file(&fixtures.join("datasets/pg-datatypes/ddl.sql"));
    datatypes.psql_file(&fixtures.join("datasets/pg-datatypes/dml.sql"));
    csv_round_trip(&datatypes, "csv_datatypes");
    let adp = fresh_db("csv_adp");
    adp.psql_file(&fixtures.join("aidungeonprompts/schema.sql"));
    adp.psql_file(&fixtures.join("aidungeonprompts/seed.sql"));
    csv_round_trip(&adp, "csv_adp");
}

#[test]
fn a_malformed_row_names_its_line_and_commits_nothing() {
    let db = fresh_db("csv_malformed");
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, amount int, note text); INSERT INTO t VALUES (1, 10, 'keep')",
    );
    let before = table_digests(&db);
    let dir = temp_dir();
    let bad_number = dir.path().join("bad_number.csv");
    std::fs::write(&bad_number, "id,amount,note\n1,5,a\n2,6,b\n3,seven,c\n4,8,d\n").unwrap();
    let output = csv_import(&db, "t", &bad_number, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 4, column amount"), "{stderr}");
    assert!(stderr.contains("the table is unchanged"), "{stderr}");
    assert_eq!(table_digests(&db), before);

    let unterminated = dir.path().join("unterminated.csv");
    std::fs::write(&unterminated, "id,amount,note\n1,5,\"never closed\n2,6,b\n").unwrap();
    let output = csv_import(&db, "t", &unterminated, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("unterminated CSV quoted field"), "{stderr}");
    assert_eq!(table_digests(&db), before);

    let unknown = dir.path().join("unknown.csv");
    std::fs::write(&unknown, "id,amount,colour\n1,5,red\n").unwrap();
    let stderr = String::from_utf8_lossy(&csv_import(&db, "t", &unknown, &[]).stderr).into_owned();
    assert!(
        stderr.contains("column \"colour\" of the header is not in table public.t"),
        "{stderr}"
    );
    assert_eq!(table_digests(&db), before);
}

#[test]
fn header_order_defaults_empty_as_null_upsert_and_zstd() {
    let db = fresh_db("csv_options");
    db.execute("CREATE TABLE t (id serial PRIMARY KEY, note text, flag bool DEFAULT true)");
    let dir = temp_dir();
    // Columns in any order; a missing column takes its default; sqlite3-style "" for NULL.
    let file = dir.path().join("sqlite3.csv");
    std::fs::write(&file, "note,id\n\"\",1\nhello,2\n").unwrap();
    let output = csv_import(&db, "t", &file, &["--empty-as-null"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        db.query("SELECT id, note IS NULL, flag FROM t ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("t".into()), Some("t".into())],
            vec![Some("2".into()), Some("f".into()), Some("t".into())]
        ]
    );
    db.execute("INSERT INTO t (note) VALUES ('after import')");
    assert_eq!(
        db.scalar("SELECT max(id) FROM t"),
        "3",
        "the serial sequence was moved past the imported ids"
    );

    // Without --empty-as-null, "" is the empty string.
    assert!(csv_import(&db, "t", &file, &[]).status.success());
    assert_eq!(db.scalar("SELECT count(*) FROM t WHERE note = ''"), "1");

    // Upsert from a zstd-compressed file: id 2 updated, id 9 added, id 1 kept.
    let compressed = dir.path().join("upsert.csv.zst");
    std::fs::write(
        &compressed,
        zstd::encode_all(&b"id,note\n2,updated\n9,new\n"[..], 3).unwrap(),
    )
    .unwrap();
    let output = csv_import(&db, "t", &compressed, &["--mode", "upsert"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        db.query("SELECT id, note FROM t ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("".into())],
            vec![Some("2".into()), Some("updated".into())],
            vec![Some("9".into()), Some("new".into())]
        ]
    );

    // csv export --source reads the live table; .zst output is compressed.
    let live = dir.path().join("live.csv.zst");
    run_ok(&[
        "csv",
        "export",
        "--quiet",
        "--source",
        &db.url,
        "--table",
        "t",
        "--output",
        live.to_str().unwrap(),
    ]);
    let text = String::from_utf8(zstd::decode_all(std::fs::File::open(&live).unwrap()).unwrap()).unwrap();
    assert_eq!(text, "id,note,flag\n1,\"\",t\n2,updated,t\n9,new,t\n");
}

#[test]
fn restore_reads_a_zstd_compressed_mirror() {
    let source = types_db("zst_source");
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let compressed = dir.path().join("mirror.db.zst");
    std::fs::write(
        &compressed,
        zstd::encode_all(std::fs::File::open(&mirror).unwrap(), 3).unwrap(),
    )
    .unwrap();
    let target = fresh_db("zst_target");
    copy_schema(&source, &target);
    // The decompressed copy goes to $TMPDIR and is gone afterwards, on success and failure.
    let scratch = temp_dir();
    let tmpdir = [("TMPDIR", scratch.path().to_str().unwrap())];
    let restored = pgmirror_with_env(
        &[
            "restore",
            "--quiet",
            "--from",
            compressed.to_str().unwrap(),
            "--target",
            &target.url,
        ],
        &tmpdir,
    );
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(table_digests(&target), table_digests(&source));
    // A target without the tables: the mirror is opened (and decompressed), then refused.
    let empty = fresh_db("zst_empty_target");
    let failed = pgmirror_with_env(
        &[
            "restore",
            "--quiet",
            "--from",
            compressed.to_str().unwrap(),
            "--target",
            &empty.url,
        ],
        &tmpdir,
    );
    assert_eq!(failed.status.code(), Some(2));
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

#[test]
fn csv_import_warns_of_firing_triggers_and_disable_triggers_loads_the_files_rows() {
    let target = fresh_db("csv_triggers");
    target.execute(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);
         CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.body := upper(NEW.body); RETURN NEW; END$$;
         CREATE TRIGGER shouting BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION shout();",
    );
    let dir = temp_dir();
    let input = dir.path().join("notes.csv");
    std::fs::write(&input, "id,body\n1,quiet\n2,calm\n").unwrap();
    let fired = csv_import(&target, "notes", &input, &[]);
    assert!(
        fired.status.success(),
        "{}",
        String::from_utf8_lossy(&fired.stderr)
    );
    let stderr = String::from_utf8_lossy(&fired.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("shouting on notes"),
        "{stderr}"
    );
    assert_eq!(
        target.scalar("SELECT string_agg(body, ',' ORDER BY id) FROM notes"),
        "QUIET,CALM"
    );
    let exact = csv_import(&target, "notes", &input, &["--disable-triggers"]);
    assert!(
        exact.status.success(),
        "{}",
        String::from_utf8_lossy(&exact.stderr)
    );
    assert!(!String::from_utf8_lossy(&exact.stderr).contains("warning"));
    assert_eq!(
        target.scalar("SELECT string_agg(body, ',' ORDER BY id) FROM notes"),
        "quiet,calm"
    );
    assert_eq!(
        target.scalar("SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'shouting'"),
        "O"
    );
}
