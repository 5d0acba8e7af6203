//! Real-world databases from fixtures/datasets and fixtures/aidungeonprompts: each mirrors completely and exactly.

use crate::compare::assert_mirror_matches;
use crate::support::{
    existing_db, export, fixtures_dir, fresh_db, mirror_table_names, open_mirror, temp_dir,
};

#[test]
fn aidungeonprompts_mirrors_and_is_queryable_with_its_own_names() {
    let fixtures = fixtures_dir();
    let fixture = fixtures.join("aidungeonprompts");
    for (name, schema) in [
        ("adp_schema", "schema.sql"),
        ("adp_replay", "migrations-replay.sql"),
    ] {
        let db = fresh_db(name);
        db.psql_file(&fixture.join(schema));
        db.psql_file(&fixture.join("seed.sql"));
        let dir = temp_dir();
        let mirror = dir.path().join("backup.db");
        let stderr = export(&db, &mirror, &["--jobs", "3"]);
        assert!(stderr.contains("exported 11 tables"), "{name}: {stderr}");
        assert_eq!(assert_mirror_matches(&db, &mirror), 11, "{name}");

        let conn = open_mirror(&mirror);
        let users: i64 = conn
            .query_row("SELECT count(*) FROM Users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users.to_string(), db.scalar("SELECT count(*) FROM \"Users\""));
        let published: Vec<String> = conn
            .prepare("SELECT \"Title\" FROM \"Prompts\" WHERE \"IsDraft\" = 0 ORDER BY \"Id\"")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<String> = db
            .query("SELECT \"Title\" FROM \"Prompts\" WHERE NOT \"IsDraft\" ORDER BY \"Id\"")
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect();
        assert_eq!(published, expected, "{name}");
        // Joins over the declared foreign keys work with plain SQL.
        let joined: i64 = conn
            .query_row(
                "SELECT count(*) FROM WorldInfos w JOIN Prompts p ON p.Id = w.PromptId",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            joined.to_string(),
            db.scalar(
                "SELECT count(*) FROM \"WorldInfos\" w JOIN \"Prompts\" p ON p.\"Id\" = w.\"PromptId\""
            )
        );
        // The view is kept as a definition; the identity columns are recorded.
        let view: String = conn
            .query_row(
                "SELECT definition FROM _pgmirror_views WHERE view_name = 'NonDraftPrompts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(view.contains("IsDraft"), "{view}");
        let identity: String = conn
            .query_row(
                "SELECT identity FROM _pgmirror_columns WHERE sqlite_table = 'Users' AND column_name = 'Id'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(identity, "by default");
        let dropped: i64 = conn
            .query_row(
                "SELECT count(*) FROM _pgmirror_columns WHERE column_name LIKE '%pg.dropped%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(dropped, 0, "dropped columns never reach the mirror");
    }
}

#[test]
fn pagila_mirrors_completely_with_partitions_merged() {
    let fixtures = fixtures_dir();
    let db = fresh_db("pagila");
    db.psql_file(&fixtures.join("datasets/pagila/pagila-schema.sql"));
    db.psql_file(&fixtures.join("datasets/pagila/pagila-data.sql"));
    let dir = temp_dir();
    let mirror = dir.path().join("pagila.db");
    let stderr = export(&db, &mirror, &["--jobs", "4"]);
    assert!(stderr.contains("rental_by_category is not populated"), "{stderr}");
    eprintln!("pagila: {}", stderr.lines().last().unwrap_or(""));
    assert_mirror_matches(&db, &mirror);
    let tables = mirror_table_names(&mirror);
    assert!(tables.contains(&"payment".to_owned()));
    assert!(
        !tables.iter().any(|t| t.starts_with("payment_p")),
        "partition leaves are merged: {tables:?}"
    );
    let conn = open_mirror(&mirror);
    let payments: i64 = conn
        .query_row("SELECT count(*) FROM payment", [], |r| r.get(0))
        .unwrap();
    assert_eq!(payments.to_string(), db.scalar("SELECT count(*) FROM payment"));
    let sequences: i64 = conn
        .query_row(
            "SELECT count(*) FROM _pgmirror_sequences WHERE last_value IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        sequences.to_string(),
        db.scalar("SELECT count(*) FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL")
    );
}

#[test]
fn chinook_mirrors_completely() {
    let fixtures = fixtures_dir();
    let loader = fresh_db("chinook_loader");
    loader.psql_file(&fixtures.join("datasets/chinook/Chinook_PostgreSql_AutoIncrementPKs.sql"));
    let db = existing_db("chinook_auto_increment");
    let dir = temp_dir();
    let mirror = dir.path().join("chinook.db");
    export(&db, &mirror, &["--jobs", "2"]);
    assert_eq!(assert_mirror_matches(&db, &mirror), 11);
    let conn = open_mirror(&mirror);
    let identity: String = conn
        .query_row(
            "SELECT identity FROM _pgmirror_columns WHERE sqlite_table = 'artist' AND ordinal = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(identity, "always");
}

#[test]
fn pg_datatypes_mirrors_completely() {
    let fixtures = fixtures_dir();
    let db = fresh_db("pg_datatypes");
    db.psql_file(&fixtures.join("datasets/pg-datatypes/ddl.sql"));
    db.psql_file(&fixtures.join("datasets/pg-datatypes/dml.sql"));
    let dir = temp_dir();
    let mirror = dir.path().join("datatypes.db");
    export(&db, &mirror, &[]);
    assert!(assert_mirror_matches(&db, &mirror) >= 15);
}
