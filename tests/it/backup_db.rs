//! Export into a given SQLite schema: the app's public backup.db, reproduced from its
//! profile (fixtures/profiles/aidungeonprompts-backup.toml), checked against the reference
//! DDL and against the app's rules computed here, independently, from the source rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;

use crate::support::{export, fixtures_dir, fresh_db, open_mirror, pgmirror, restore, temp_dir, TestDb};

fn profile() -> PathBuf {
    fixtures_dir().join("profiles/aidungeonprompts-backup.toml")
}

fn app_db(name: &str, schema: &str) -> TestDb {
    let db = fresh_db(name);
    db.psql_file(&fixtures_dir().join("aidungeonprompts").join(schema));
    db.psql_file(&fixtures_dir().join("aidungeonprompts/seed.sql"));
    // Tags whose PromptTags order is not their tag order, and a date whose fraction ends in
    // zeros (EF Core's FFFFFFF drops them).
    db.execute(
        "INSERT INTO \"PromptTags\" (\"Id\", \"PromptId\", \"TagId\", \"DateCreated\") VALUES \
           (100, 8, 5, '2021-06-20 12:01:00'), (101, 8, 1, '2021-06-20 12:01:00'); \
         UPDATE \"Prompts\" SET \"DateEdited\" = '2021-06-21 10:00:00.120000' WHERE \"Id\" = 8",
    );
    db
}

/// `sqlite_master` rows of the data tables: what the reference DDL creates.
fn definitions(conn: &rusqlite::Connection) -> Vec<(String, String, String, Option<String>)> {
    conn.prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name IN ('Prompts', 'WorldInfos') \
         ORDER BY type, name",
    )
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// A SQLite value as text to compare with PostgreSQL's output.
fn text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8(t.to_vec()).unwrap()),
        ValueRef::Blob(b) => Some(format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
    }
}

/// A row as text values, NULL as None.
type Row = Vec<Option<String>>;

fn file_rows(conn: &rusqlite::Connection, sql: &str) -> Vec<Row> {
    let mut statement = conn.prepare(sql).unwrap();
    let columns = statement.column_count();
    let mut rows = statement.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        out.push((0..columns).map(|i| text(row.get_ref(i).unwrap())).collect());
    }
    out
}

/// The app's rules, computed from the source rows: a prompt is written when its root is
/// not a draft; prompts in id order get ids 1..n; world infos are those whose PromptId1
/// names a written prompt, in (prompt, world info id) order, pointing at the new id.
fn expected_rows(db: &TestDb) -> (Vec<Row>, Vec<Row>) {
    let prompts = db.query(
        "SELECT \"Id\", \"ParentId\", \"IsDraft\", \"AuthorsNote\", \"Description\", \"Memory\", \
                CASE WHEN \"Nsfw\" THEN '1' ELSE '0' END, \"PromptContent\", \"PublishDate\", \"Quests\", \
                \"Title\", \"DateCreated\", \"DateEdited\", \"ScriptZip\", \"NovelAiScenario\", \"HoloAiScenario\" \
         FROM \"Prompts\" ORDER BY \"Id\"",
    );
    let by_id: BTreeMap<i64, &Vec<Option<String>>> = prompts
        .iter()
        .map(|p| (p[0].as_ref().unwrap().parse().unwrap(), p))
        .collect();
    let root_is_draft = |mut id: i64| loop {
        let prompt = by_id[&id];
        match &prompt[1] {
            Some(parent) => id = parent.parse().unwrap(),
            None => return prompt[2].as_deref() == Some("t"),
        }
    };
    let mut new_ids = BTreeMap::new();
    let mut expected_prompts = Vec::new();
    for (&id, prompt) in &by_id {
        if root_is_draft(id) {
            continue;
        }
        let new_id = new_ids.len() as i64 + 1;
        new_ids.insert(id, new_id);
        let mut row = vec![Some(new_id.to_string()), Some(id.to_string())];
        row.extend(prompt[3..].iter().cloned());
        row.push(prompt[1].clone());
        expected_prompts.push(row);
    }
    let world_infos = db.query(
        "SELECT \"PromptId1\", \"Id\", \"Entry\", \"Keys\", \"DateCreated\", \"DateEdited\" FROM \"WorldInfos\" \
         WHERE \"PromptId1\" IS NOT NULL ORDER BY \"PromptId1\", \"Id\"",
    );
    let mut expected_world_infos = Vec::new();
    for info in world_infos {
        let prompt: i64 = info[0].as_ref().unwrap().parse().unwrap();
        let Some(new_prompt) = new_ids.get(&prompt) else {
            continue;
        };
        let mut row = vec![
            Some((expected_world_infos.len() + 1).to_string()),
            Some(new_prompt.to_string()),
        ];
        row.extend(info[1..].iter().cloned());
        expected_world_infos.push(row);
    }
    (expected_prompts, expected_world_infos)
}

/// Each prompt's tag names joined with ", " in the order EF loads them (PromptTags.Id), by
/// PostgreSQL id.
fn expected_tags(db: &TestDb) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for row in db.query(
        "SELECT pt.\"PromptId\", pt.\"Id\", t.\"Name\" FROM \"PromptTags\" pt JOIN \"Tags\" t ON t.\"Id\" = pt.\"TagId\"",
    ) {
        tags.entry(row[0].clone().unwrap())
            .or_default()
            .push((row[1].as_ref().unwrap().parse().unwrap(), row[2].clone().unwrap()));
    }
    tags.into_iter()
        .map(|(prompt, mut names)| {
            names.sort();
            (
                prompt,
                names
                    .into_iter()
                    .map(|(_, name)| name)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
        .collect()
}

fn assert_is_the_apps_backup(db: &TestDb, file: &Path) {
    let conn = open_mirror(file);
    // The data tables are exactly what the reference DDL creates.
    let reference = rusqlite::Connection::open_in_memory().unwrap();
    reference
        .execute_batch(
            &std::fs::read_to_string(fixtures_dir().join("aidungeonprompts/backup-sqlite-schema.sql"))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(definitions(&conn), definitions(&reference));
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert!(file_rows(&conn, "PRAGMA foreign_key_check").is_empty());

    let (expected_prompts, expected_world_infos) = expected_rows(db);
    assert!(expected_prompts.len() >= 2 && expected_world_infos.len() >= 2);
    let prompts = file_rows(
        &conn,
        "SELECT Id, CorrelationId, AuthorsNote, Description, Memory, Nsfw, PromptContent, PublishDate, Quests, \
                Title, DateCreated, DateEdited, ScriptZip, NovelAiScenario, HoloAiScenario, ParentId \
         FROM Prompts ORDER BY Id",
    );
    assert_eq!(prompts, expected_prompts, "Prompts, value by value");
    let world_infos = file_rows(
        &conn,
        "SELECT Id, PromptId, CorrelationId, Entry, Keys, DateCreated, DateEdited FROM WorldInfos ORDER BY Id",
    );
    assert_eq!(world_infos, expected_world_infos, "WorldInfos, value by value");

    // Tags: the names joined with ", " in EF's load order, "" without tags.
    let tags = expected_tags(db);
    for row in file_rows(&conn, "SELECT CorrelationId, Tags FROM Prompts") {
        let want = tags.get(row[0].as_deref().unwrap()).cloned().unwrap_or_default();
        assert_eq!(
            row[1].as_deref(),
            Some(want.as_str()),
            "tags of prompt {:?}",
            row[0]
        );
    }
    let minimal = file_rows(
        &conn,
        "SELECT Tags, DateEdited FROM Prompts WHERE CorrelationId = 8",
    );
    assert_eq!(
        minimal,
        vec![vec![
            Some("日本語, fantasy".to_owned()),
            Some("2021-06-21 10:00:00.12".to_owned())
        ]],
        "PromptTags order, not tag order; EF Core's date text"
    );
}

#[test]
fn the_apps_public_backup_is_reproduced_from_its_profile() {
    for (name, schema) in [
        ("backup_db_schema", "schema.sql"),
        ("backup_db_replay", "migrations-replay.sql"),
    ] {
        let db = app_db(name, schema);
        let dir = temp_dir();
        let file = dir.path().join("backup.db");
        export(&db, &file, &["--quiet", "--profile", profile().to_str().unwrap()]);
        assert_is_the_apps_backup(&db, &file);
        let verified = pgmirror(&["verify", file.to_str().unwrap()]);
        assert_eq!(
            verified.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&verified.stdout)
        );
        // A draft root's descendants and a world info without PromptId1 are not in it.
        let conn = open_mirror(&file);
        let correlations: Vec<i64> = conn
            .prepare("SELECT CorrelationId FROM Prompts")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for hidden in db.query(
            "SELECT p.\"Id\" FROM \"Prompts\" p WHERE p.\"Id\" NOT IN (SELECT \"Id\" FROM \"NonDraftPrompts\")",
        ) {
            let hidden: i64 = hidden[0].as_ref().unwrap().parse().unwrap();
            assert!(!correlations.contains(&hidden), "prompt {hidden} of a draft tree is in the file");
        }
        let orphan: i64 = db
            .scalar("SELECT \"Id\" FROM \"WorldInfos\" WHERE \"PromptId1\" IS NULL LIMIT 1")
            .parse()
            .unwrap();
        let present: i64 = conn
            .query_row(
                "SELECT count(*) FROM WorldInfos WHERE CorrelationId = ?1",
                [orphan],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(present, 0, "world info {orphan} has no PromptId1");
        // It is not a mirror of tables: restore says so.
        let target = fresh_db(&format!("{name}_target"));
        let refused = restore(&file, &target, &[]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("not a mirror of the database's tables"));
    }
}

#[test]
fn a_query_that_does_not_fit_the_given_schema_is_refused_naming_both_sides() {
    let db = app_db("backup_db_mismatch", "schema.sql");
    let dir = temp_dir();
    let schema = fixtures_dir().join("aidungeonprompts/backup-sqlite-schema.sql");
    let output = dir.path().join("out.db");
    let run = |queries: &[&str]| {
        let mut args = vec![
            "export".to_owned(),
            "--quiet".into(),
            "--source".into(),
            db.url.clone(),
            "--output".into(),
            output.to_str().unwrap().into(),
            "--sqlite-schema".into(),
            schema.to_str().unwrap().into(),
        ];
        for query in queries {
            args.push("--query".into());
            args.push((*query).into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pgmirror(&args)
    };
    let world_infos =
        "WorldInfos=SELECT \"Id\", \"Entry\", \"Keys\", \"PromptId\", \"Id\" AS \"CorrelationId\", \
                       \"DateCreated\", \"DateEdited\" FROM \"WorldInfos\"";
    // A DDL column with no source column, and a source column with no DDL column.
    let refused = run(&[
        "Prompts=SELECT \"Id\", \"Title\", 1 AS \"Unknown\" FROM \"Prompts\"",
        world_infos,
    ]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--query Prompts has no column")
            && stderr.contains("\"CorrelationId\"")
            && stderr.contains("has no column \"Unknown\""),
        "{stderr}"
    );
    assert!(!output.exists(), "nothing is written");
    // A query for a table the DDL does not create, beside the profile's fitting ones.
    let refused = pgmirror(&[
        "export",
        "--quiet",
        "--source",
        &db.url,
        "--output",
        output.to_str().unwrap(),
        "--profile",
        profile().to_str().unwrap(),
        "--query",
        "Extra=SELECT 1 AS a",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--query Extra fills a table \"Extra\""),
        "{stderr}"
    );
    // A number into a TEXT column would become SQLite's rendering of it.
    let numeric_title = "Prompts=SELECT row_number() OVER () AS \"Id\", \"AuthorsNote\", \"Description\", \"Memory\", \
        \"Nsfw\", \"ParentId\", \"PromptContent\", \"PublishDate\", \"Quests\", '' AS \"Tags\", 1.5 AS \"Title\", \
        \"Id\" AS \"CorrelationId\", \"DateCreated\", \"DateEdited\", \"ScriptZip\", \"NovelAiScenario\", \"HoloAiScenario\" \
        FROM \"Prompts\"";
    let refused = run(&[numeric_title, world_infos]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("column \"Title\"") && stderr.contains("::text"),
        "{stderr}"
    );
    // Rows the DDL's foreign keys refuse: world infos pointing at prompts not in the file.
    let fitting_prompts = numeric_title.replace("1.5 AS \"Title\"", "\"Title\"");
    let refused = run(&[
        &fitting_prompts,
        &world_infos.replace("\"PromptId\",", "\"PromptId\" + 1000 AS \"PromptId\","),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("WorldInfos") && stderr.contains("refers to a row table \"Prompts\" does not have"),
        "{stderr}"
    );
    assert!(!output.exists());
    // The source table of the DDL's name fills it when no query does: the app's Prompts has
    // columns the DDL lacks, named.
    let refused = run(&[world_infos]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("table public.Prompts") && stderr.contains("\"IsDraft\""),
        "{stderr}"
    );
}
