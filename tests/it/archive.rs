//! Native archives: pg_dump/pg_restore wrapped, verified and version-checked.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{copy_schema, fresh_db, pgmirror, table_digests, temp_dir, TestDb};

fn types_db(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.psql_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/types.sql"));
    db
}

fn run_ok(args: &[&str]) -> std::process::Output {
    let output = pgmirror(args);
    assert!(
        output.status.success(),
        "pgmirror {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `pgmirror restore` of an archive into `target`, which must then equal `source`.
fn restore_and_compare(archive: &Path, target: &TestDb, source: &TestDb, extra: &[&str]) {
    let mut args = vec![
        "restore",
        "--quiet",
        "--from",
        archive.to_str().unwrap(),
        "--target",
        &target.url,
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
    assert_eq!(table_digests(target), table_digests(source));
}

fn single_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn custom_dump_restores_into_a_new_database_identically() {
    let source = types_db("archive_source");
    let dir = temp_dir();
    run_ok(&[
        "dump",
        "--quiet",
        "--source",
        &source.url,
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let archive = single_file(dir.path(), ".backup");
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("archive_source_") && name.len() == "archive_source_YYYYmmdd_HHMMSS.backup".len(),
        "{name}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.manifest.json", archive.display())).unwrap())
            .unwrap();
    assert_eq!(manifest["format"], "custom");
    assert_eq!(manifest["size_bytes"], std::fs::metadata(&archive).unwrap().len());
    assert!(
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "public.every_type"),
        "{manifest}"
    );
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600
    );
    run_ok(&["verify", archive.to_str().unwrap()]);

    let target = fresh_db("archive_target");
    restore_and_compare(&archive, &target, &source, &[]);
}

#[test]
fn one_table_restore_replaces_only_that_tables_rows() {
    let source = fresh_db("archive_table_source");
    source.execute(
        "CREATE TABLE \"Users\" (id int PRIMARY KEY, name text); INSERT INTO \"Users\" VALUES (1, 'ann'), (2, 'bob');
         CREATE TABLE other (id int); INSERT INTO other VALUES (1);",
    );
    let dir = temp_dir();
    let archive = dir.path().join("db.backup");
    run_ok(&[
        "dump",
        "--quiet",
        "--source",
        &source.url,
        "--output",
        archive.to_str().unwrap(),
    ]);
    let target = fresh_db("archive_table_target");
    copy_schema(&source, &target);
    target
        .execute("INSERT INTO \"Users\" VALUES (1, 'changed'), (3, 'extra'); INSERT INTO other VALUES (42)");
    run_ok(&[
        "restore",
        "--quiet",
        "--from",
        archive.to_str().unwrap(),
        "--target",
        &target.url,
        "--table",
        "Users",
    ]);
    assert_eq!(
        target.query("SELECT id, name FROM \"Users\" ORDER BY id"),
        source.query("SELECT id, name FROM \"Users\" ORDER BY id")
    );
    assert_eq!(
        target.query("SELECT id FROM other"),
        vec![vec![Some("42".into())]],
        "other tables untouched"
    );
}

#[test]
fn plain_zstd_dump_round_trips() {
    let source = types_db("archive_plain_source");
    let dir = temp_dir();
    let archive = dir.path().join("db.sql.zst");
    run_ok(&[
        "dump",
        "--quiet",
        "--source",
        &source.url,
        "--output",
        archive.to_str().unwrap(),
        "--format",
        "plain",
        "--compress",
        "zstd:5",
    ]);
    assert_eq!(
        &std::fs::read(&archive).unwrap()[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "zstd-compressed"
    );
    run_ok(&["verify", archive.to_str().unwrap()]);
    let target = fresh_db("archive_plain_target");
    restore_and_compare(&archive, &target, &source, &[]);
}

#[test]
fn truncated_or_altered_archives_fail_verify() {
    let source = types_db("archive_verify");
    let dir = temp_dir();
    let archive = dir.path().join("db.backup");
    run_ok(&[
        "dump",
        "--quiet",
        "--source",
        &source.url,
        "--output",
        archive.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&archive).unwrap();
    let manifest = std::fs::read(format!("{}.manifest.json", archive.display())).unwrap();
    let truncated = dir.path().join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let mut flipped_bytes = bytes.clone();
    let middle = flipped_bytes.len() / 2;
    flipped_bytes[middle] ^= 0x40;
    let flipped = dir.path().join("flipped.backup");
    std::fs::write(&flipped, &flipped_bytes).unwrap();
    for (file, needle) in [(&truncated, "size is"), (&flipped, "sha256 is")] {
        std::fs::write(format!("{}.manifest.json", file.display()), &manifest).unwrap();
        let output = pgmirror(&["verify", file.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains(needle), "{stdout}");
    }
    let usage = pgmirror(&["verify", "/nonexistent/archive.backup"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// Runs pgmirror with PATH set to `path` (a fake pg_dump first).
fn pgmirror_with_path(args: &[&str], path: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pgmirror"))
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

fn fake_pg_dump(dir: &Path, version: &str, body: &str) -> String {
    let script = dir.join("pg_dump");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo 'pg_dump (PostgreSQL) {version}'; exit 0; fi\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn an_old_pg_dump_first_on_path_is_refused_naming_both_versions() {
    let source = fresh_db("archive_old_pg_dump");
    let dir = temp_dir();
    let path = fake_pg_dump(dir.path(), "9.6.24", "exit 1");
    let out = dir.path().join("out");
    let output = pgmirror_with_path(
        &["dump", "--source", &source.url, "--dir", out.to_str().unwrap()],
        &path,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("version 9.6, older than the server's 15"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--pg-bin") || stderr.contains("postgresql-client-15"),
        "{stderr}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}

#[test]
fn the_password_travels_in_the_environment_never_in_argv() {
    let db = fresh_db("archive_password");
    db.execute(
        "DROP ROLE IF EXISTS dump_user; CREATE ROLE dump_user LOGIN SUPERUSER PASSWORD 'Pa55-in-env-only'",
    );
    let port = db.scalar("SELECT current_setting('port')");
    let dir = temp_dir();
    let record = dir.path().join("record");
    std::fs::create_dir(&record).unwrap();
    let path = fake_pg_dump(
        dir.path(),
        "15.99",
        &format!(
            "echo \"$@\" > '{0}/argv'; env > '{0}/env'; echo 'pg_dump: error: simulated failure' >&2; exit 1",
            record.display()
        ),
    );
    let out = dir.path().join("out");
    let source =
        format!("postgres://dump_user:Pa55-in-env-only@127.0.0.1:{port}/archive_password?sslmode=disable");
    let output = pgmirror_with_path(
        &["dump", "--source", &source, "--dir", out.to_str().unwrap()],
        &path,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("simulated failure"),
        "pg_dump's stderr is in the error: {stderr}"
    );
    assert!(!stderr.contains("Pa55-in-env-only"));
    let argv = std::fs::read_to_string(record.join("argv")).unwrap();
    assert!(!argv.contains("Pa55-in-env-only"), "argv: {argv}");
    assert!(argv.contains("--format=custom"), "argv: {argv}");
    let env = std::fs::read_to_string(record.join("env")).unwrap();
    assert!(
        env.lines().any(|l| l == "PGPASSWORD=Pa55-in-env-only"),
        "the password is passed in the environment"
    );
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing left behind"
    );
}

#[test]
fn a_failing_pg_dump_leaves_no_file() {
    let source = fresh_db("archive_missing_table");
    source.execute("CREATE TABLE present (id int)");
    let dir = temp_dir();
    let output = pgmirror(&[
        "dump",
        "--source",
        &source.url,
        "--dir",
        dir.path().to_str().unwrap(),
        "--table",
        "absent",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no matching tables were found"), "{stderr}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing left behind"
    );
}

#[test]
fn directory_and_tar_formats_round_trip() {
    let source = types_db("archive_formats_source");
    let dir = temp_dir();
    for (format, name, extra) in [
        ("directory", "db.dir", vec!["--jobs", "2"]),
        ("tar", "db.tar", vec![]),
    ] {
        let archive = dir.path().join(name);
        let mut args = vec![
            "dump",
            "--quiet",
            "--source",
            &source.url,
            "--output",
            archive.to_str().unwrap(),
            "--format",
            format,
        ];
        args.extend(extra.iter().copied());
        run_ok(&args);
        run_ok(&["verify", archive.to_str().unwrap()]);
        let target = fresh_db(&format!("archive_formats_{format}"));
        restore_and_compare(&archive, &target, &source, &extra);
    }
}

#[test]
fn a_pg_dump_that_cannot_be_started_says_why() {
    let source = fresh_db("archive_unstartable_pg_dump");
    let dir = temp_dir();
    let script = dir.path().join("pg_dump");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = dir.path().join("out");
    let output = pgmirror_with_path(
        &["dump", "--source", &source.url, "--dir", out.to_str().unwrap()],
        &path,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("running {} --version", script.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("No such file or directory"),
        "the cause is kept: {stderr}"
    );
    assert!(!stderr.contains("printed no PostgreSQL version"), "{stderr}");
}

#[test]
fn ctrl_c_terminates_a_running_pg_dump_and_keeps_nothing() {
    let source = fresh_db("archive_interrupted_pg_dump");
    let dir = temp_dir();
    let started = dir.path().join("started");
    // exec: the pid pgmirror started is the sleeping process itself.
    let path = fake_pg_dump(
        dir.path(),
        "15.99",
        &format!("echo \"$$\" > '{}'; exec sleep 60", started.display()),
    );
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgmirror"))
        .args(["dump", "--source", &source.url, "--dir", out.to_str().unwrap()])
        .env("PATH", &path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for(
        "the fake pg_dump to start",
        std::time::Duration::from_secs(60),
        || std::fs::read_to_string(&started).is_ok_and(|pid| !pid.trim().is_empty()),
    );
    let dump_pid: i32 = std::fs::read_to_string(&started).unwrap().trim().parse().unwrap();
    crate::support::signal(&child, libc::SIGINT);
    let status = crate::support::exit_within(&mut child, std::time::Duration::from_secs(2));
    let stderr = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(dump_pid, 0) } == 0;
    assert!(!alive, "pg_dump (pid {dump_pid}) outlived pgmirror");
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing left behind"
    );
}

#[test]
fn a_file_that_is_no_dump_is_refused_before_psql_sees_it() {
    let target = fresh_db("archive_not_a_dump");
    let dir = temp_dir();
    let ran = dir.path().join("psql-ran");
    let psql = dir.path().join("psql");
    std::fs::write(
        &psql,
        format!("#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo 'psql (PostgreSQL) 15.99'; exit 0; fi\ntouch '{}'\n", ran.display()),
    )
    .unwrap();
    std::fs::set_permissions(&psql, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "DROP TABLE important;\nremember the milk\n").unwrap();
    let binary = dir.path().join("photo.jpg");
    std::fs::write(&binary, [0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F']).unwrap();
    let bare_dir = dir.path().join("not-an-archive");
    std::fs::create_dir(&bare_dir).unwrap();
    for (file, needle) in [
        (&notes, "it is text without pg_dump's header"),
        (&binary, "it is binary data of no known kind"),
        (&bare_dir, "a directory without toc.dat"),
    ] {
        let output = pgmirror_with_path(
            &[
                "restore",
                "--from",
                file.to_str().unwrap(),
                "--target",
                &target.url,
            ],
            &path,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(
            !stderr.contains("important"),
            "the file's content is never echoed: {stderr}"
        );
        assert!(!ran.exists(), "psql was started for {}", file.display());
    }
    // A real plain dump is still taken.
    let dumped = dir.path().join("plain.sql");
    let source = fresh_db("archive_plain_still_works");
    source.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)");
    let dump = std::process::Command::new("pg_dump")
        .args(["-d", &source.url, "-f", dumped.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let output = pgmirror(&[
        "restore",
        "--from",
        dumped.to_str().unwrap(),
        "--target",
        &target.url,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(target.scalar("SELECT count(*) FROM kept"), "1");
}

#[test]
fn verify_and_restore_refuse_a_mirror_whose_metadata_no_longer_matches() {
    let source = fresh_db("archive_edited_mirror");
    source.execute(
        "CREATE TABLE people (id int PRIMARY KEY, name text); INSERT INTO people VALUES (1, 'a'), (2, 'b');
         CREATE TABLE pets (id int PRIMARY KEY); INSERT INTO pets VALUES (1);",
    );
    let dir = temp_dir();
    let pristine = dir.path().join("pristine.db");
    crate::support::export(&source, &pristine, &[]);
    let sound = pgmirror(&["verify", pristine.to_str().unwrap()]);
    assert_eq!(
        sound.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sound.stdout)
    );
    let edits = [
        (
            "DELETE FROM _pgmirror_columns WHERE sqlite_table = 'people' AND column_name = 'name'",
            "_pgmirror_columns records",
        ),
        ("DROP TABLE _pgmirror_meta", "_pgmirror_meta"),
        (
            "DELETE FROM _pgmirror_meta WHERE key = 'format_version'",
            "no format_version",
        ),
        ("ALTER TABLE people RENAME COLUMN name TO nom", "has columns"),
        ("DELETE FROM pets", "holds 0 rows, _pgmirror_tables says 1"),
        (
            "CREATE TABLE stray (x int)",
            "data table \"stray\" has no row in _pgmirror_tables",
        ),
        (
            "DELETE FROM _pgmirror_tables WHERE sqlite_name = 'pets'",
            "data table \"pets\" has no row",
        ),
        (
            "UPDATE _pgmirror_columns SET codec = 'bogus' WHERE sqlite_table = 'pets'",
            "bogus",
        ),
    ];
    let target = fresh_db("archive_edited_mirror_target");
    crate::support::copy_schema(&source, &target);
    for (index, (edit, needle)) in edits.iter().enumerate() {
        let edited = dir.path().join(format!("edited-{index}.db"));
        std::fs::copy(&pristine, &edited).unwrap();
        rusqlite::Connection::open(&edited)
            .unwrap()
            .execute_batch(edit)
            .unwrap();
        let verify = pgmirror(&["verify", edited.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&verify.stdout);
        assert_eq!(verify.status.code(), Some(1), "{edit}: {stdout}");
        assert!(stdout.contains(needle), "{edit}: {stdout}");
        let restore = pgmirror(&[
            "restore",
            "--quiet",
            "--from",
            edited.to_str().unwrap(),
            "--target",
            &target.url,
        ]);
        let stderr = String::from_utf8_lossy(&restore.stderr);
        // A table the metadata does not know is not restore's business: it reads only the
        // tables it restores, and those are sound.
        if needle.starts_with("data table") {
            assert!(restore.status.success(), "{edit}: {stderr}");
            assert_eq!(target.scalar("SELECT count(*) FROM people"), "2", "{edit}");
            target.execute("TRUNCATE people, pets");
            continue;
        }
        assert_eq!(restore.status.code(), Some(2), "{edit}: {stderr}");
        assert!(
            stderr.contains("does not match its data") || stderr.contains("reading the metadata"),
            "{edit}: {stderr}"
        );
        assert_eq!(
            target.scalar("SELECT count(*) FROM people"),
            "0",
            "{edit}: nothing restored"
        );
    }
}
