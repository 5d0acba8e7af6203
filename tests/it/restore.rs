//! Source → mirror → restore: every table identical to the source, sequences usable,
//! and a failed restore changes nothing.

use std::path::Path;

use crate::support::{
    assert_ok, copy_schema, export, fixtures_dir, fresh_db, pgmirror, restore, table_digests, temp_dir,
    TestDb,
};

/// Exports `source`, restores every table into an empty copy of its schema, and asserts
/// that every table's rows are identical. Returns the target.
fn round_trip(source: &TestDb, target_name: &str) -> TestDb {
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(source, &mirror, &[]);
    let target = fresh_db(target_name);
    copy_schema(source, &target);
    assert_ok(&restore(&mirror, &target, &[]));
    let (expected, actual) = (table_digests(source), table_digests(&target));
    assert!(!expected.is_empty());
    assert_eq!(
        actual, expected,
        "target tables differ from the source after the round trip"
    );
    target
}

#[test]
fn every_type_round_trips_through_restore() {
    let source = fresh_db("restore_types_source");
    source.execute("ALTER DATABASE restore_types_source SET timezone = 'Asia/Kolkata'");
    source.psql_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/types.sql"));
    let target = round_trip(&source, "restore_types_target");
    for db in [&source, &target] {
        assert_eq!(
            db.scalar("SELECT count(*) FROM every_type WHERE c_text = ''"),
            "1",
            "{}: the empty string",
            db.name
        );
        assert_eq!(
            db.scalar("SELECT count(*) FROM every_type WHERE c_text IS NULL"),
            "2",
            "{}: NULLs",
            db.name
        );
    }
}

#[test]
fn shared_datasets_round_trip_through_restore() {
    let fixtures = fixtures_dir();
    let pagila = fresh_db("restore_pagila_source");
    pagila.psql_file(&fixtures.join("datasets/pagila/pagila-schema.sql"));
    pagila.psql_file(&fixtures.join("datasets/pagila/pagila-data.sql"));
    let target = round_trip(&pagila, "restore_pagila_target");
    target.execute("INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR')");
    assert_eq!(
        target.scalar("SELECT max(actor_id) FROM actor"),
        "201",
        "the sequence moved past the restored ids"
    );

    let datatypes = fresh_db("restore_datatypes_source");
    datatypes.psql_file(&fixtures.join("datasets/pg-datatypes/ddl.sql"));
    datatypes.psql_file(&fixtures.join("datasets/pg-datatypes/dml.sql"));
    let target = round_trip(&datatypes, "restore_datatypes_target");
    // dml.sql gives explicit ids and never calls the sequences: the trap for restore tools.
    target.execute("INSERT INTO uuid_child_table (uuid_table_id) VALUES (NULL); INSERT INTO money_table (money) VALUES (1)");

    let adp = fresh_db("restore_adp_source");
    adp.psql_file(&fixtures.join("aidungeonprompts/migrations-replay.sql"));
    adp.psql_file(&fixtures.join("aidungeonprompts/seed.sql"));
    let target = round_trip(&adp, "restore_adp_target");
    target.execute(r#"INSERT INTO "Tags" ("Name", "DateCreated") VALUES ('brand new tag', now())"#);
}

#[test]
fn a_failure_in_the_last_table_leaves_the_target_unchanged() {
    let source = fresh_db("restore_fail_source");
    source.execute(
        "CREATE TABLE a_first (id int PRIMARY KEY, v text); INSERT INTO a_first SELECT g, 'new ' || g FROM generate_series(1, 50) g;
         CREATE TABLE z_last (id int PRIMARY KEY, amount int); INSERT INTO z_last SELECT g, g FROM generate_series(1, 50) g;",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_fail_target");
    target.execute(
        "CREATE TABLE a_first (id int PRIMARY KEY, v text); INSERT INTO a_first VALUES (1, 'old');
         CREATE TABLE z_last (id int PRIMARY KEY, amount int CHECK (amount < 40)); INSERT INTO z_last VALUES (7, 7);",
    );
    let before = table_digests(&target);
    let result = restore(&mirror, &target, &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("public.z_last") && stderr.contains("line 40"),
        "names the table and row: {stderr}"
    );
    assert!(stderr.contains("target is unchanged"), "{stderr}");
    assert_eq!(table_digests(&target), before);
}

#[test]
fn column_differences_are_listed_before_anything_is_written() {
    let source = fresh_db("restore_diff_source");
    source.execute(
        "CREATE TABLE t (id int, name text, born date); INSERT INTO t VALUES (1, 'x', '2000-01-01')",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_diff_target");
    target.execute("CREATE TABLE t (id bigint, name text, extra int); INSERT INTO t VALUES (5, 'keep', 1)");
    let before = table_digests(&target);
    let result = restore(&mirror, &target, &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2));
    for needle in [
        "\"id\" is integer in the mirror but bigint in the target",
        "\"born\" (date) is missing",
        "column \"extra\"",
    ] {
        assert!(stderr.contains(needle), "lacks {needle:?}: {stderr}");
    }
    assert_eq!(table_digests(&target), before);

    let missing = fresh_db("restore_missing_target");
    let result = restore(&mirror, &missing, &[]);
    assert!(String::from_utf8_lossy(&result.stderr)
        .contains("table public.t does not exist in the target (use --create"));
}

#[test]
fn inheritance_parent_and_child_are_restored_without_touching_each_other() {
    let source = fresh_db("restore_inherit_source");
    source.execute(
        "CREATE TABLE animals (id serial PRIMARY KEY, name text); CREATE TABLE dogs (breed text) INHERITS (animals);
         INSERT INTO animals (name) VALUES ('cat'); INSERT INTO dogs (name, breed) VALUES ('rex', 'collie');",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_inherit_target");
    copy_schema(&source, &target);
    target.execute("INSERT INTO animals (id, name) VALUES (100, 'old'); INSERT INTO dogs (id, name, breed) VALUES (200, 'fido', 'pug')");
    assert_ok(&restore(&mirror, &target, &["--table", "animals"]));
    assert_eq!(
        target.query("SELECT id, name FROM ONLY animals ORDER BY id"),
        vec![vec![Some("1".into()), Some("cat".into())]]
    );
    assert_eq!(
        target.query("SELECT id, name FROM dogs"),
        vec![vec![Some("200".into()), Some("fido".into())]]
    );
    assert_ok(&restore(&mirror, &target, &["--table", "dogs"]));
    assert_eq!(
        target.query("SELECT name FROM ONLY animals"),
        vec![vec![Some("cat".into())]]
    );
    assert_eq!(
        target.query("SELECT name FROM dogs"),
        vec![vec![Some("rex".into())]]
    );
}

#[test]
fn append_upsert_and_create_modes() {
    let source = fresh_db("restore_modes_source");
    source.execute(
        "CREATE TABLE parent (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL UNIQUE);
         CREATE TABLE child (id bigserial PRIMARY KEY, parent_id int REFERENCES parent (id), note text,
                             note_length int GENERATED ALWAYS AS (length(note)) STORED);
         CREATE INDEX child_note ON child (note);
         INSERT INTO parent (name) VALUES ('a'), ('b');
         INSERT INTO child (parent_id, note) VALUES (1, 'x'), (2, ''), (2, NULL);",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);

    // --create builds the tables, keys, indexes and foreign keys; the child is loaded after the parent.
    let target = fresh_db("restore_modes_target");
    assert_ok(&restore(&mirror, &target, &["--create"]));
    assert_eq!(table_digests(&target), table_digests(&source));
    assert_eq!(
        target.scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'child_parent_id_fkey'"),
        "1"
    );
    assert_eq!(
        target.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'child_note'"),
        "1"
    );
    target.execute(
        "INSERT INTO parent (name) VALUES ('c'); INSERT INTO child (parent_id, note) VALUES (3, 'yy')",
    );
    assert_eq!(
        target.scalar("SELECT note_length FROM child WHERE note = 'yy'"),
        "2",
        "generated by the server"
    );

    // upsert: changed rows come back, rows the mirror lacks stay.
    target.execute("UPDATE parent SET name = 'changed' WHERE id = 1");
    assert_ok(&restore(
        &mirror,
        &target,
        &["--table", "parent", "--mode", "upsert"],
    ));
    assert_eq!(
        target.query("SELECT id, name FROM parent ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("a".into())],
            vec![Some("2".into()), Some("b".into())],
            vec![Some("3".into()), Some("c".into())]
        ]
    );
    // append onto existing keys collides, and the error says where.
    let result = restore(&mirror, &target, &["--table", "parent", "--mode", "append"]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr.contains("duplicate key") && stderr.contains("public.parent"),
        "{stderr}"
    );
}

#[test]
fn create_makes_the_recorded_enums_domains_composites_and_extensions() {
    let source = fresh_db("restore_create_types_source");
    source.psql_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/types.sql"));
    source.execute(
        "CREATE EXTENSION hstore; CREATE TABLE settings (id int PRIMARY KEY, kv hstore);
         INSERT INTO settings VALUES (1, 'a=>1, b=>\"two words\"'), (2, NULL);",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_create_types_target");
    assert_ok(&restore(&mirror, &target, &["--create"]));
    assert_eq!(table_digests(&target), table_digests(&source));
    assert_eq!(target.scalar("SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'mood'::regtype"), "sad,ok,happy");
    assert_eq!(
        target.scalar("SELECT count(*) FROM pg_constraint WHERE contypid = 'positive_int'::regtype"),
        "1",
        "the domain keeps its CHECK"
    );
}

#[test]
fn create_rebuilds_a_partition_tree() {
    let source = fresh_db("restore_partitions_source");
    source.execute(
        "CREATE TABLE measurements (id bigint, taken date NOT NULL, value numeric, PRIMARY KEY (id, taken))
             PARTITION BY RANGE (taken);
         CREATE TABLE measurements_2023 PARTITION OF measurements FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
             PARTITION BY LIST (id);
         CREATE TABLE measurements_2024_a PARTITION OF measurements_2024 FOR VALUES IN (1, 2, 3);
         CREATE TABLE measurements_2024_b PARTITION OF measurements_2024 DEFAULT;
         CREATE TABLE measurements_other PARTITION OF measurements DEFAULT;
         CREATE INDEX measurements_value ON measurements (value);
         INSERT INTO measurements SELECT g, date '2022-12-25' + g * 3, g * 1.5 FROM generate_series(1, 300) g;",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_partitions_target");
    assert_ok(&restore(&mirror, &target, &["--create"]));
    assert_eq!(table_digests(&target), table_digests(&source));
    let per_partition = "SELECT tableoid::regclass::text, count(*) FROM measurements GROUP BY 1 ORDER BY 1";
    assert_eq!(
        target.query(per_partition),
        source.query(per_partition),
        "rows land in the same partitions"
    );
    assert_eq!(
        target.scalar(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
        ),
        "0",
        "no invalid partitioned index"
    );
}

#[test]
fn partitions_inheritance_matviews_and_hostile_names_round_trip() {
    let source = fresh_db("restore_relations_source");
    source.execute(crate::relations::RELATIONS);
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);

    // Into a copy of the schema: the materialized view is refreshed, not loaded.
    let copy = fresh_db("restore_relations_copy");
    copy_schema(&source, &copy);
    assert_ok(&restore(&mirror, &copy, &[]));
    assert_eq!(table_digests(&copy), table_digests(&source));
    assert_eq!(copy.scalar("SELECT count(*) FROM dog_names"), "2");

    // Into an empty database: everything created, the materialized view from its query.
    let created = fresh_db("restore_relations_created");
    assert_ok(&restore(&mirror, &created, &["--create"]));
    assert_eq!(table_digests(&created), table_digests(&source));
    assert_eq!(
        created.scalar("SELECT relkind::text FROM pg_class WHERE relname = 'dog_names'"),
        "m"
    );
    assert_eq!(created.scalar("SELECT count(*) FROM dog_names"), "2");
    created.execute("INSERT INTO animals (name) VALUES ('after restore')");
}

#[test]
fn a_refused_truncate_is_reported_with_its_cause_and_changes_nothing() {
    let source = fresh_db("restore_truncate_source");
    source.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'mirror')");
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_truncate_target");
    target.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (7, 'kept');
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN RAISE EXCEPTION 'truncate forbidden here'; END$$;
         CREATE TRIGGER no_truncate BEFORE TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION refuse();",
    );
    let before = table_digests(&target);
    let output = restore(&mirror, &target, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("TRUNCATE") && stderr.contains("truncate forbidden here"),
        "{stderr}"
    );
    assert_eq!(table_digests(&target), before, "the target is unchanged");
}

#[test]
fn create_names_a_recorded_type_it_could_not_make_and_why() {
    let source = fresh_db("restore_bad_extension_source");
    source.execute(
        "CREATE EXTENSION hstore; CREATE TABLE settings (id int PRIMARY KEY, kv hstore);
         INSERT INTO settings VALUES (1, 'a=>1');",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    // An edited record: the extension's CREATE now fails on the target.
    let conn = rusqlite::Connection::open(&mirror).unwrap();
    let edited = conn
        .execute(
            "UPDATE _pgmirror_types SET create_sql = 'CREATE EXTENSION IF NOT EXISTS hstore SCHEMA no_such_schema' \
             WHERE kind = 'extension' AND type_name = 'hstore'",
            [],
        )
        .unwrap();
    assert_eq!(edited, 1, "the mirror records the extension");
    drop(conn);
    let target = fresh_db("restore_bad_extension_target");
    let output = restore(&mirror, &target, &["--create"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("extension hstore"), "{stderr}");
    assert!(stderr.contains("no_such_schema"), "the cause is kept: {stderr}");
    assert_eq!(target.scalar("SELECT to_regclass('settings') IS NULL"), "t");
}

#[test]
fn a_role_allowed_delete_but_not_truncate_still_replaces_the_rows() {
    let source = fresh_db("restore_delete_only_source");
    source.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'mirror'), (2, 'rows')",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_delete_only_target");
    target.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (7, 'old');
         DROP ROLE IF EXISTS app_writer; CREATE ROLE app_writer LOGIN;
         GRANT SELECT, INSERT, DELETE ON t TO app_writer;",
    );
    let as_writer = TestDb {
        name: target.name.clone(),
        url: format!("{} user=app_writer", target.url),
    };
    assert_ok(&restore(&mirror, &as_writer, &[]));
    assert_eq!(table_digests(&target), table_digests(&source));
}

#[test]
fn emptying_a_table_never_cascades_into_tables_outside_the_restore() {
    let source = fresh_db("restore_cascade_source");
    source.execute("CREATE TABLE owners (id int PRIMARY KEY); INSERT INTO owners VALUES (1), (2)");
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_cascade_target");
    target.execute(
        "CREATE TABLE owners (id int PRIMARY KEY); INSERT INTO owners VALUES (1);
         CREATE TABLE orders (id int PRIMARY KEY, owner int REFERENCES owners ON DELETE CASCADE);
         INSERT INTO orders VALUES (100, 1);",
    );
    let before = table_digests(&target);
    // TRUNCATE is refused (orders references owners); DELETE would take orders' row with it.
    let output = restore(&mirror, &target, &["--table", "owners"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("orders") && stderr.contains("ON DELETE"),
        "{stderr}"
    );
    assert_eq!(
        table_digests(&target),
        before,
        "nothing changed, in orders least of all"
    );
}

#[test]
fn int2vector_and_oidvector_round_trip_in_their_own_text_form() {
    let source = fresh_db("restore_vectors_source");
    source.execute(
        "CREATE TABLE vectors (id int PRIMARY KEY, keys int2vector, types oidvector);
         INSERT INTO vectors VALUES (1, '1 2 3', '23 25'), (2, '', ''), (3, NULL, NULL), (4, '-32768 32767', '4294967295');",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let stored: String = crate::support::open_mirror(&mirror)
        .query_row("SELECT keys || '|' || types FROM vectors WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        stored, "1 2 3|23 25",
        "PostgreSQL's text form, not an array literal"
    );
    let target = fresh_db("restore_vectors_target");
    copy_schema(&source, &target);
    assert_ok(&restore(&mirror, &target, &[]));
    assert_eq!(table_digests(&target), table_digests(&source));
    // csv import reads the same text.
    let csv = dir.path().join("vectors.csv");
    let exported = pgmirror(&[
        "csv",
        "export",
        "--from",
        mirror.to_str().unwrap(),
        "--table",
        "vectors",
        "--output",
        csv.to_str().unwrap(),
    ]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let imported = fresh_db("restore_vectors_csv");
    copy_schema(&source, &imported);
    let loaded = pgmirror(&[
        "csv",
        "import",
        "--target",
        &imported.url,
        "--table",
        "vectors",
        "--input",
        csv.to_str().unwrap(),
    ]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(table_digests(&imported), table_digests(&source));
}

#[test]
fn disable_triggers_restores_the_mirrors_rows_and_leaves_the_triggers_as_they_were() {
    let source = fresh_db("restore_triggers_source");
    source.execute("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'quiet'), (2, 'calm')");
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let triggered = |name: &str| {
        let target = fresh_db(name);
        target.execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.body := upper(NEW.body); RETURN NEW; END$$;
             CREATE TRIGGER shouting BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION shout();
             CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'no manual manipulation of notes'; END$$;
             CREATE TRIGGER guard BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION refuse();
             ALTER TABLE notes DISABLE TRIGGER guard;",
        );
        target
    };
    // Without the flag the rewriting trigger fires, and the restore says so.
    let target = triggered("restore_triggers_fired");
    let output = restore(&mirror, &target, &[]);
    assert_ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("shouting on notes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("guard"),
        "a disabled trigger does not fire: {stderr}"
    );
    assert_eq!(
        target.scalar("SELECT string_agg(body, ',' ORDER BY id) FROM notes"),
        "QUIET,CALM"
    );

    // With it, the rows are the mirror's; shouting is on again, guard still off.
    let target = triggered("restore_triggers_disabled");
    assert_ok(&restore(&mirror, &target, &["--disable-triggers"]));
    assert_eq!(table_digests(&target), table_digests(&source));
    assert_eq!(
        target.scalar("SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal"),
        "guard=D,shouting=O"
    );

    // A trigger that aborts: the error says triggers fired and what turns them off.
    let target = triggered("restore_triggers_abort");
    target.execute("ALTER TABLE notes ENABLE TRIGGER guard");
    let output = restore(&mirror, &target, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no manual manipulation of notes") && stderr.contains("--disable-triggers"),
        "{stderr}"
    );
    assert_ok(&restore(&mirror, &target, &["--disable-triggers"]));
    assert_eq!(table_digests(&target), table_digests(&source));

    // A role that does not own the table is told what --disable-triggers needs.
    target.execute(
        "DROP ROLE IF EXISTS notes_writer; CREATE ROLE notes_writer LOGIN;
         GRANT SELECT, INSERT, DELETE, TRUNCATE ON notes TO notes_writer;",
    );
    let as_writer = TestDb {
        name: target.name.clone(),
        url: format!("{} user=notes_writer", target.url),
    };
    let output = restore(&mirror, &as_writer, &["--disable-triggers"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs its owner"), "{stderr}");
}

#[test]
fn a_table_without_columns_keeps_its_rows_through_the_mirror() {
    let source = fresh_db("restore_columnless_source");
    source.execute(
        "CREATE TABLE nothing (); INSERT INTO nothing SELECT FROM generate_series(1, 3);
         CREATE TABLE something (id int PRIMARY KEY); INSERT INTO something VALUES (1);",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    let stderr = export(&source, &mirror, &[]);
    assert!(!stderr.contains("no columns"), "not skipped: {stderr}");
    let recorded: i64 = crate::support::open_mirror(&mirror)
        .query_row(
            "SELECT row_count FROM _pgmirror_tables WHERE sqlite_name = 'nothing'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 3);
    let verified = pgmirror(&["verify", mirror.to_str().unwrap()]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    // Every column excluded is a curation, not a table without columns: left out, as before.
    let curated = dir.path().join("curated.db");
    let stderr = export(&source, &curated, &["--exclude-column", "something.id"]);
    assert!(stderr.contains("something has every column excluded"), "{stderr}");
    assert_eq!(crate::support::mirror_table_names(&curated), Vec::<String>::new());
    for (name, extra) in [
        ("restore_columnless_copy", &[][..]),
        ("restore_columnless_create", &["--create"][..]),
    ] {
        let target = fresh_db(name);
        if extra.is_empty() {
            copy_schema(&source, &target);
            target.execute("INSERT INTO nothing SELECT FROM generate_series(1, 5)");
        }
        assert_ok(&restore(&mirror, &target, extra));
        assert_eq!(target.scalar("SELECT count(*) FROM nothing"), "3", "{name}");
        assert_eq!(table_digests(&target), table_digests(&source), "{name}");
    }
}

#[test]
fn disable_triggers_puts_back_always_and_per_partition_states_and_survives_deferred_keys() {
    let source = fresh_db("restore_trigger_states_source");
    let schema = "CREATE TABLE owners (id int PRIMARY KEY);
         CREATE TABLE events (id int, at date NOT NULL,
             owner int REFERENCES owners DEFERRABLE INITIALLY DEFERRED) PARTITION BY RANGE (at);
         CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');";
    source.execute(schema);
    source.execute(
        "INSERT INTO owners VALUES (1), (2);
         INSERT INTO events VALUES (1, '2023-05-01', 1), (2, '2024-05-01', 2);",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("mirror.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("restore_trigger_states_target");
    target.execute(schema);
    target.execute(
        "CREATE FUNCTION mark() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.id := -NEW.id; RETURN NEW; END$$;
         CREATE TRIGGER marking BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION mark();
         ALTER TABLE events_2024 DISABLE TRIGGER marking;
         CREATE TRIGGER always_mark BEFORE INSERT ON owners FOR EACH ROW EXECUTE FUNCTION mark();
         ALTER TABLE owners ENABLE ALWAYS TRIGGER always_mark;",
    );
    let states = || {
        target.scalar(
            "SELECT string_agg(tgrelid::regclass || '.' || tgname || '=' || tgenabled::text, ',' \
             ORDER BY tgrelid::regclass::text, tgname) FROM pg_trigger WHERE NOT tgisinternal",
        )
    };
    let before = states();
    assert_ok(&restore(&mirror, &target, &["--disable-triggers"]));
    assert_eq!(
        table_digests(&target),
        table_digests(&source),
        "the mirror's rows, unmarked"
    );
    assert_eq!(
        states(),
        before,
        "every trigger as it was: ALWAYS stays ALWAYS, the partition's stays off"
    );
}
