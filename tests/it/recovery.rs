//! Disaster recovery from a local backup set in one command: the newest verified backup
//! (or --backup ID), the archive for a whole database, the mirror for chosen tables, a
//! missing database created, a non-empty one refused, a damaged file refused before
//! anything is written, and the row counts checked against the manifest.

use std::fs;
use std::path::Path;

use crate::support::{absent_db, database_exists, fresh_db, pgmirror, table_digests, temp_dir, TestDb};

/// Hostile names: a schema with a space, quotes and unicode in a table, a foreign key.
fn source_db(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.execute(
        r#"CREATE SCHEMA "app space";
           CREATE TABLE "Users" (id serial PRIMARY KEY, name text NOT NULL);
           CREATE TABLE "app space"."Prompts ""quoted"" ü" (
               id bigint PRIMARY KEY, user_id int REFERENCES "Users", body text, tags text[]);
           INSERT INTO "Users" (name) SELECT 'user ' || g FROM generate_series(1, 40) g;
           INSERT INTO "app space"."Prompts ""quoted"" ü"
               SELECT g, 1 + g % 40, 'prompt ' || g || ' ✓', ARRAY['a', 'b ' || g] FROM generate_series(1, 250) g;
           CREATE MATERIALIZED VIEW "user names" AS SELECT name FROM "Users";"#,
    );
    db
}

fn backup(db: &TestDb, dir: &Path) -> String {
    let output = pgmirror(&[
        "backup",
        "--source",
        &db.url,
        "--dir",
        dir.to_str().unwrap(),
        "--kind",
        "both",
        "--compress",
        "zstd",
        "--quiet",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    manifest["id"].as_str().unwrap().to_owned()
}

fn restore(from: &Path, target: &TestDb, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "restore",
        "--from",
        from.to_str().unwrap(),
        "--target",
        &target.url,
    ];
    args.extend_from_slice(extra);
    pgmirror(&args)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_whole_database_comes_back_from_the_set_in_one_command() {
    let db = source_db("recovery_source");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let first = backup(&db, &dir);
    let first_digests = table_digests(&db);
    db.execute(
        r#"INSERT INTO "Users" (name) VALUES ('late ''one''');
           DELETE FROM "app space"."Prompts ""quoted"" ü" WHERE id > 200;
           REFRESH MATERIALIZED VIEW "user names";"#,
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = backup(&db, &dir);
    assert_ne!(first, second);

    // A database that does not exist: refused without --create-database, named.
    let target = absent_db("recovery_target");
    let output = restore(&dir, &target, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--create-database creates it"),
        "{}",
        stderr(&output)
    );
    assert!(!database_exists(&target.name));
    // Flags that do not apply to the archive are refused before anything is created.
    for flags in [&["--mode", "append"][..], &["--create"][..]] {
        let mut args = vec!["--create-database"];
        args.extend_from_slice(flags);
        let output = restore(&dir, &target, &args);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(flags[0]), "{}", stderr(&output));
        assert!(!database_exists(&target.name), "{flags:?} created the database");
    }

    let output = restore(&dir, &target, &["--create-database"]);
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("created database"), "{said}");
    assert!(
        said.contains(&format!("restoring backup {second} (mirror+archive")),
        "{said}"
    );
    assert!(
        said.contains("row counts match backup") && said.contains("for all 3 tables"),
        "{said}"
    );
    assert_eq!(table_digests(&target), table_digests(&db));
    // The archive brought the sequence along: the application's next insert works.
    target.execute(r#"INSERT INTO "Users" (name) VALUES ('after the restore')"#);

    // Not empty now: refused, nothing changed, unless --clean.
    let before = table_digests(&target);
    let output = restore(&dir, &target, &["--create-database"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("is not empty"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(r#""app space"."Prompts ""quoted"" ü""#),
        "{}",
        stderr(&output)
    );
    assert_eq!(table_digests(&target), before);
    let output = restore(&dir, &target, &["--clean"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(table_digests(&target), table_digests(&db));

    // --backup picks the older one; a backup's own directory works the same way.
    let older = absent_db("recovery_older");
    let output = restore(&dir, &older, &["--create-database", "--backup", &first]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(table_digests(&older), first_digests);
    let output = restore(&dir, &older, &["--backup", "20000101T000000Z"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("holds no complete backup 20000101T000000Z"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains(&second),
        "the newest are listed: {}",
        stderr(&output)
    );

    // Chosen tables come from the mirror, counted against the manifest.
    let tables = absent_db("recovery_tables");
    let output = restore(
        &dir.join(&second),
        &tables,
        &["--create-database", "--create", "--table", "Users"],
    );
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("(mirror+archive"), "{said}");
    assert!(said.contains("for all 1 tables"), "{said}");
    let digests = table_digests(&tables);
    assert_eq!(digests.len(), 1);
    let source_users = table_digests(&db).into_iter().find(|d| d.0 == "public.Users");
    assert_eq!(Some(digests[0].clone()), source_users);

    // The newest backup damaged: refused before anything is written, naming the file.
    let archive = fs::read_dir(dir.join(&second))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".backup"))
        .unwrap();
    let mut bytes = fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&archive, bytes).unwrap();
    let damaged = absent_db("recovery_damaged");
    let output = restore(&dir, &damaged, &["--create-database"]);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&archive.display().to_string()) && said.contains("the manifest says"),
        "{said}"
    );
    assert!(!database_exists(&damaged.name), "nothing was created");
}

#[test]
fn counts_that_differ_from_the_manifest_are_named() {
    let db = source_db("recovery_counts_source");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let id = backup(&db, &dir);
    // The manifest edited to claim another count for one table: the check must see it.
    let manifest_path = dir.join(&id).join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    let tables = manifest["tables"].as_array_mut().unwrap();
    let users = tables.iter_mut().find(|t| t["table"] == "Users").unwrap();
    users["rows"] = serde_json::json!(41);
    fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let target = absent_db("recovery_counts");
    let output = restore(&dir, &target, &["--create-database"]);
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("1 of 3 tables differ") && said.contains("Users"),
        "{said}"
    );
    assert!(said.contains("DIFFERS"), "{said}");
    // A table the manifest lists that the restore did not bring back fails the restore.
    let tables = manifest["tables"].as_array_mut().unwrap();
    tables.push(serde_json::json!({"table": "Ghost \"table\"", "rows": 3}));
    fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let target = absent_db("recovery_counts_missing");
    let output = restore(&dir, &target, &["--create-database"]);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("1 of 4 tables of backup")
            && said.contains("not in the target")
            && said.contains("Ghost \"table\""),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|line| line.contains("Ghost") && line.contains("missing")),
        "{said}"
    );
    // A manifest naming a file outside its backup is refused before anything is read.
    let name = manifest["files"][0]["name"].as_str().unwrap().to_owned();
    manifest["files"][0]["name"] = serde_json::json!(format!("../{id}/{name}"));
    fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let target = absent_db("recovery_hostile_manifest");
    let output = restore(&dir, &target, &["--create-database"]);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains("outside its backup"), "{said}");
    assert!(!database_exists(&target.name), "nothing was created");
}
