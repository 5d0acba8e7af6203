//! Curated exports: row filters, excluded and redacted columns, queries and views as
//! tables, profiles, and restore's refusal to replace a table from a partial copy.

use std::path::Path;

use crate::support::{
    copy_schema, export, fixtures_dir, fresh_db, mirror_table_names, open_mirror, pgmirror, temp_dir, TestDb,
};

fn ids(rows: Vec<Vec<Option<String>>>) -> Vec<i64> {
    let mut ids: Vec<i64> = rows
        .into_iter()
        .map(|r| r[0].clone().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    ids
}

fn mirror_ids(mirror: &Path, sql: &str) -> Vec<i64> {
    let conn = open_mirror(mirror);
    let mut statement = conn.prepare(sql).unwrap();
    let mut ids: Vec<i64> = statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ids.sort();
    ids
}

fn profile() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/profiles/aidungeonprompts-public.toml")
        .display()
        .to_string()
}

#[test]
fn the_public_profile_holds_exactly_the_published_prompts() {
    let fixtures = fixtures_dir();
    let db = fresh_db("curated_public");
    db.psql_file(&fixtures.join("aidungeonprompts/schema.sql"));
    db.psql_file(&fixtures.join("aidungeonprompts/seed.sql"));
    let dir = temp_dir();
    let mirror = dir.path().join("public.db");
    export(&db, &mirror, &["--profile", &profile()]);

    assert_eq!(
        mirror_table_names(&mirror),
        vec!["PromptTags", "Prompts", "Tags", "Users", "WorldInfos"]
    );
    let published = ids(db.query("SELECT \"Id\" FROM \"NonDraftPrompts\""));
    assert!(
        published.len() < ids(db.query("SELECT \"Id\" FROM \"Prompts\"")).len(),
        "the seed has drafts"
    );
    assert_eq!(mirror_ids(&mirror, "SELECT Id FROM Prompts"), published);
    assert_eq!(
        mirror_ids(&mirror, "SELECT Id FROM WorldInfos"),
        ids(db.query("SELECT \"Id\" FROM \"WorldInfos\" WHERE \"PromptId\" IN (SELECT \"Id\" FROM \"NonDraftPrompts\")"))
    );
    let conn = open_mirror(&mirror);
    let password_columns: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('Users') WHERE name = 'Password'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(password_columns, 0, "no Password column");
    let recorded: Vec<(String, String)> = conn
        .prepare("SELECT sqlite_table, kind FROM _pgmirror_curation ORDER BY 1, 2")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        recorded.contains(&("Prompts".into(), "where".into())),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&("Users".into(), "exclude_column".into())),
        "{recorded:?}"
    );

    // Replacing a table from a filtered copy is refused; appending its rows is fine.
    let target = fresh_db("curated_public_target");
    copy_schema(&db, &target);
    target.execute(
        "INSERT INTO \"Users\" (\"Id\", \"Username\", \"DateCreated\") VALUES (1000, 'keep me', now())",
    );
    let url = target.url.clone();
    let refused = pgmirror(&[
        "restore",
        "--from",
        mirror.to_str().unwrap(),
        "--target",
        &url,
        "--table",
        "Prompts",
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("public.Prompts") && stderr.contains("filtered"),
        "{stderr}"
    );
    let appended = pgmirror(&[
        "restore",
        "--quiet",
        "--from",
        mirror.to_str().unwrap(),
        "--target",
        &url,
        "--mode",
        "append",
    ]);
    assert!(
        appended.status.success(),
        "{}",
        String::from_utf8_lossy(&appended.stderr)
    );
    assert_eq!(ids(target.query("SELECT \"Id\" FROM \"Prompts\"")), published);
    assert_eq!(
        target.scalar("SELECT count(*) FROM \"Users\" WHERE \"Password\" IS NOT NULL"),
        "0"
    );
    assert_eq!(
        target.scalar("SELECT count(*) FROM \"Users\" WHERE \"Username\" = 'keep me'"),
        "1"
    );
    // Tags alone: emptying it would cascade into PromptTags, which is not being restored.
    let forced = |tables: &[&str]| {
        let mut args = vec![
            "restore",
            "--quiet",
            "--from",
            mirror.to_str().unwrap(),
            "--target",
            &url,
            "--force",
        ];
        for table in tables {
            args.extend(["--table", table]);
        }
        pgmirror(&args)
    };
    let cascading = forced(&["Tags"]);
    let stderr = String::from_utf8_lossy(&cascading.stderr);
    assert_eq!(cascading.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PromptTags") && stderr.contains("ON DELETE"),
        "{stderr}"
    );
    let together = forced(&["Tags", "PromptTags"]);
    assert!(
        together.status.success(),
        "{}",
        String::from_utf8_lossy(&together.stderr)
    );
}

fn small_db(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.execute(
        "CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, team text, secret text);
         INSERT INTO people VALUES (1, 'a@x', 'red', 's1'), (2, 'b@x', 'blue', 's2'), (3, 'a@x', 'red', 's3');
         CREATE TABLE visits (id int, person_email text); INSERT INTO visits VALUES (1, 'a@x'), (2, 'b@x');
         CREATE VIEW red_team AS SELECT id, email FROM people WHERE team = 'red';",
    );
    db
}

#[test]
fn queries_views_and_redactions() {
    let db = small_db("curated_small");
    let dir = temp_dir();
    let mirror = dir.path().join("m.db");
    export(
        &db,
        &mirror,
        &[
            "--query",
            "team_sizes=SELECT team, count(*) AS members FROM people GROUP BY team",
            "--include-view",
            "red_team",
            "--redact",
            "people.secret",
            "--exclude-column",
            "people.team",
        ],
    );
    let conn = open_mirror(&mirror);
    let sizes: Vec<(String, i64)> = conn
        .prepare("SELECT team, members FROM team_sizes ORDER BY team")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sizes, vec![("blue".into(), 1), ("red".into(), 2)]);
    assert_eq!(mirror_ids(&mirror, "SELECT id FROM red_team"), vec![1, 3]);
    let secrets: i64 = conn
        .query_row("SELECT count(secret) FROM people", [], |r| r.get(0))
        .unwrap();
    assert_eq!(secrets, 0, "redacted to NULL");
    let team: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('people') WHERE name = 'team'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(team, 0, "excluded");
    let kinds: Vec<String> = conn
        .prepare("SELECT kind FROM _pgmirror_tables WHERE sqlite_name IN ('team_sizes', 'red_team') ORDER BY sqlite_name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds, vec!["view", "query"]);

    // Keyed hashes: equal values hash equally (joins work), the key changes them.
    let hashed = |key: &str, file: &str| {
        let path = dir.path().join(file);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgmirror"))
            .args([
                "export",
                "--quiet",
                "--source",
                &db.url,
                "--output",
                path.to_str().unwrap(),
            ])
            .args([
                "--redact",
                "people.email",
                "--redact",
                "visits.person_email",
                "--redact-with",
                "hash",
            ])
            .env("PGMIRROR_REDACT_KEY", key)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        path
    };
    let first = hashed("a-secret-key-of-32-bytes-length!", "h1.db");
    let conn = open_mirror(&first);
    let (distinct, joined): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(DISTINCT email) FROM people), \
                    (SELECT count(*) FROM visits v JOIN people p ON p.email = v.person_email)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((distinct, joined), (2, 3));
    let email: String = conn
        .query_row("SELECT email FROM people WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(email.len(), 64);
    assert!(!email.contains('@'));
    let other: String = open_mirror(&hashed("another-secret-key-of-32-bytes!!", "h2.db"))
        .query_row("SELECT email FROM people WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_ne!(email, other);

    // Query and view tables are derived: restore leaves them out and loads the real tables.
    let target = fresh_db("curated_small_target");
    crate::support::copy_schema(&db, &target);
    let restored = pgmirror(&[
        "restore",
        "--quiet",
        "--json",
        "--from",
        mirror.to_str().unwrap(),
        "--target",
        &target.url,
        "--force",
    ]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&restored.stdout).unwrap();
    let tables: Vec<&str> = summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, vec!["public.people", "public.visits"]);
    assert_eq!(
        target.scalar("SELECT count(*) FROM people WHERE secret IS NULL AND team IS NULL"),
        "3"
    );
}

#[test]
fn bad_curation_input_fails_before_any_work() {
    let db = small_db("curated_bad");
    let cases: [(&[&str], &str); 6] = [
        (&["--where", "nobody:1 = 1"], "--where names table \"nobody\""),
        (
            &["--where", "people:emale = 'x'"],
            "column \"emale\" does not exist",
        ),
        (&["--where", "people:id >"], "syntax error"),
        (&["--exclude-column", "people.nope"], "has no column \"nope\""),
        (
            &["--query", "people=SELECT 1 AS one"],
            "that name is taken by table public.people",
        ),
        (
            &["--redact", "people.secret", "--redact-with", "hash"],
            "needs a secret key",
        ),
    ];
    for (flags, needle) in cases {
        let stderr = refused_export(&db, flags);
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
    }
}

/// `pgmirror export` of `db` with `flags` fails (exit 2) before writing anything; its stderr.
fn refused_export(db: &TestDb, flags: &[&str]) -> String {
    let dir = temp_dir();
    let output = dir.path().join("never.db");
    let mut args = vec![
        "export",
        "--source",
        &db.url,
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    let result = pgmirror(&args);
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert_eq!(result.status.code(), Some(2), "{flags:?}: {stderr}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "{flags:?} left a file"
    );
    stderr
}

#[test]
fn excluding_a_foreign_key_column_drops_the_key_and_says_so() {
    let db = fresh_db("curated_fk_exclude");
    db.execute(
        "CREATE TABLE owners (id int PRIMARY KEY, code text UNIQUE, name text);
         CREATE TABLE pets (id int PRIMARY KEY, owner_id int REFERENCES owners (id),
                            owner_code text REFERENCES owners (code), name text);
         INSERT INTO owners VALUES (1, 'a', 'Ann'), (2, 'b', 'Bob');
         INSERT INTO pets VALUES (10, 1, 'a', 'Rex'), (11, 2, 'b', 'Tom');",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("m.db");
    // One key loses its own column, the other the column it references.
    let stderr = export(
        &db,
        &mirror,
        &[
            "--exclude-column",
            "pets.owner_id",
            "--exclude-column",
            "owners.code",
        ],
    );
    assert!(stderr.contains("pets_owner_id_fkey"), "{stderr}");
    assert!(
        stderr.contains("a column of it is excluded from the mirror"),
        "{stderr}"
    );
    assert!(stderr.contains("pets_owner_code_fkey"), "{stderr}");
    assert!(
        stderr.contains("a column it references is excluded from the mirror"),
        "{stderr}"
    );
    let conn = open_mirror(&mirror);
    let keys: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_list('pets')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(keys, 0, "no foreign key over a missing column");
    let recorded: Vec<(String, i64)> = conn
        .prepare("SELECT constraint_name, translated FROM _pgmirror_constraints WHERE kind = 'f' ORDER BY 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        recorded,
        vec![
            ("pets_owner_code_fkey".into(), 0),
            ("pets_owner_id_fkey".into(), 0)
        ]
    );
    assert_eq!(mirror_ids(&mirror, "SELECT id FROM pets"), vec![10, 11]);
}

#[test]
fn a_bare_name_in_several_schemas_is_refused_and_qualified_names_work() {
    let db = fresh_db("curated_ambiguous");
    db.execute(
        r#"CREATE SCHEMA audit;
         CREATE TABLE public."Users" (id int PRIMARY KEY, "Password" text);
         CREATE TABLE audit."Users" (id int PRIMARY KEY, "Password" text);
         INSERT INTO public."Users" VALUES (1, 'public-secret');
         INSERT INTO audit."Users" VALUES (1, 'audit-secret');
         CREATE VIEW public.v AS SELECT 1 AS one; CREATE VIEW audit.v AS SELECT 2 AS two;"#,
    );
    for flags in [
        &["--redact", "Users.Password"][..],
        &["--exclude-column", "Users.Password"],
        &["--where", "Users:id > 0"],
        &["--include-view", "v"],
    ] {
        let stderr = refused_export(&db, flags);
        assert!(
            stderr.contains("exists in several schemas"),
            "{flags:?}: {stderr}"
        );
        let (audit, public) = if flags[0] == "--include-view" {
            ("audit.v", "public.v")
        } else {
            ("audit.Users", "public.Users")
        };
        assert!(
            stderr.contains(audit) && stderr.contains(public),
            "{flags:?}: {stderr}"
        );
    }
    // The same in a profile.
    let dir = temp_dir();
    let profile = dir.path().join("p.toml");
    std::fs::write(&profile, "redact = [\"Users.Password\"]\n").unwrap();
    let stderr = refused_export(&db, &["--profile", profile.to_str().unwrap()]);
    assert!(stderr.contains("exists in several schemas"), "{stderr}");

    let mirror = dir.path().join("m.db");
    export(&db, &mirror, &["--redact", "public.Users.Password"]);
    let conn = open_mirror(&mirror);
    let passwords: Vec<Option<String>> = ["Users", "audit.Users"]
        .iter()
        .map(|table| {
            conn.query_row(&format!("SELECT \"Password\" FROM \"{table}\""), [], |r| r.get(0))
                .unwrap()
        })
        .collect();
    assert_eq!(passwords, vec![None, Some("audit-secret".to_owned())]);
}

#[test]
fn where_and_query_text_that_adds_statements_or_escapes_its_parentheses_is_refused() {
    let db = small_db("curated_where_injection");
    let stderr = refused_export(
        &db,
        &[
            "--where",
            "people:true); COMMIT; CREATE TABLE pwned (); SELECT (1",
        ],
    );
    assert!(stderr.contains("--where people:"), "{stderr}");
    assert_eq!(
        db.scalar("SELECT to_regclass('pwned') IS NULL"),
        "t",
        "the injected statement ran"
    );
    // Closing the parenthesis pgmirror puts around a condition would change the query
    // (rows read once per chunk): refused, naming the place.
    let stderr = refused_export(&db, &["--where", "people:id = 1) OR (id = 2"]);
    assert!(stderr.contains("closes one it did not open"), "{stderr}");
    let stderr = refused_export(&db, &["--query", "q=SELECT 1) AS q, (SELECT 2"]);
    assert!(
        stderr.contains("--query q") && stderr.contains("closes one it did not open"),
        "{stderr}"
    );
}

#[test]
fn a_foreign_key_survives_redaction_only_when_both_sides_are_hashed() {
    let db = fresh_db("curated_fk_redact");
    db.execute(
        "CREATE TABLE owners (id int PRIMARY KEY, name text);
         CREATE TABLE pets (id int PRIMARY KEY, owner_id int REFERENCES owners (id));
         INSERT INTO owners VALUES (1, 'Ann'); INSERT INTO pets VALUES (10, 1);",
    );
    let dir = temp_dir();
    let keys = |mirror: &Path| -> i64 {
        open_mirror(mirror)
            .query_row("SELECT count(*) FROM pragma_foreign_key_list('pets')", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    // The parent's key NULLed: the child's values point at nothing.
    let nulled = dir.path().join("nulled.db");
    let stderr = export(&db, &nulled, &["--redact", "owners.id"]);
    assert!(
        stderr.contains("pets_owner_id_fkey") && stderr.contains("is redacted"),
        "{stderr}"
    );
    assert_eq!(keys(&nulled), 0);
    // Both sides hashed under one key: equal values stay equal, the key holds.
    let hashed = dir.path().join("hashed.db");
    let result = crate::support::pgmirror_with_env(
        &[
            "export",
            "--quiet",
            "--source",
            &db.url,
            "--output",
            hashed.to_str().unwrap(),
            "--redact",
            "owners.id",
            "--redact",
            "pets.owner_id",
            "--redact-with",
            "hash",
        ],
        &[("PGMIRROR_REDACT_KEY", "a test key of some length")],
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(keys(&hashed), 1);
    let joined: i64 = open_mirror(&hashed)
        .query_row(
            "SELECT count(*) FROM pets p JOIN owners o ON o.id = p.owner_id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(joined, 1, "the hashed key still joins");
}
