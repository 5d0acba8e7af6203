//! Encrypted backup sets: files sealed with age before they are published, readable with
//! the stock `age` CLI, and restored, verified and read with `--identity`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{fresh_db, pgmirror, table_digests, temp_dir, TestDb};

const NEEDLE: &str = "needle-row-value-8842";

fn app_db(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.execute(&format!(
        "CREATE TABLE \"Prompts\" (\"Id\" serial PRIMARY KEY, \"Title\" text NOT NULL, \"Body\" text);
         INSERT INTO \"Prompts\" (\"Title\", \"Body\") SELECT 'prompt ' || g, repeat('{NEEDLE} ', 3) FROM generate_series(1, 400) g;
         CREATE TABLE \"Tags\" (\"Id\" int PRIMARY KEY, \"Name\" text); INSERT INTO \"Tags\" VALUES (1, '{NEEDLE}');"
    ));
    db
}

/// A key pair made by the stock `age-keygen`: (identity file, public key).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let output = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen is needed for the encryption tests: apt-get install age (.ci/run does)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = fs::read_to_string(&path).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_owned();
    (path, public)
}

fn run(args: &[&str]) -> std::process::Output {
    pgmirror(args)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn encrypted_backups_hold_no_plaintext_and_come_back_with_the_identity() {
    let db = app_db("enc_source");
    let tmp = temp_dir();
    let (key, public) = keygen(tmp.path(), "key.txt");
    let (other_key, _) = keygen(tmp.path(), "other.txt");
    let dir = tmp.path().join("backups");
    fs::write(
        tmp.path().join("recipients.txt"),
        format!("# the operators' key\n{public}\n"),
    )
    .unwrap();
    let config = tmp.path().join("pgmirror.toml");
    fs::write(
        &config,
        format!(
            "source = {:?}\ndir = {dir:?}\nkind = \"both\"\ncompress = \"zstd\"\n[encryption]\nrecipients_file = \"recipients.txt\"\n",
            db.url
        ),
    )
    .unwrap();
    let config_text = config.to_str().unwrap();
    // What a backup killed outright left behind (a plaintext mirror) goes with the next run.
    let abandoned = dir.join(".20200101T000000Z.partial");
    fs::create_dir_all(&abandoned).unwrap();
    fs::write(abandoned.join("mirror.db"), format!("SQLite format 3\0{NEEDLE}")).unwrap();
    for _ in 0..2 {
        let output = run(&["backup", "--quiet", "--config", config_text]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // No file of the set holds plaintext: no SQLite or pg_dump header, no row value.
    let all = files_under(&dir);
    assert!(all.len() >= 8, "{all:?}");
    for file in &all {
        let bytes = fs::read(file).unwrap();
        for marker in [&b"SQLite format 3"[..], b"PGDMP", NEEDLE.as_bytes()] {
            assert!(
                !contains(&bytes, marker),
                "{} holds {:?}",
                file.display(),
                String::from_utf8_lossy(marker)
            );
        }
    }
    let sealed: Vec<&PathBuf> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    assert_eq!(
        sealed.len(),
        4,
        "two backups, a mirror and an archive each: {all:?}"
    );

    // Every data file decrypts with the stock age CLI.
    for file in &sealed {
        let plain = tmp.path().join("plain");
        let output = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg("-o")
            .arg(&plain)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let bytes = fs::read(&plain).unwrap();
        let name = file.to_string_lossy();
        if name.ends_with(".db.zst.age") {
            let sqlite = zstd::decode_all(&bytes[..]).unwrap();
            assert!(sqlite.starts_with(b"SQLite format 3\0"), "{name}");
        } else {
            assert!(bytes.starts_with(b"PGDMP"), "{name}");
        }
        fs::remove_file(&plain).unwrap();
    }

    // verify: checksums without the identity (saying so), contents with it.
    let dir_text = dir.to_str().unwrap();
    let without = run(&["verify", "--dir", dir_text]);
    assert!(
        without.status.success(),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    assert!(String::from_utf8_lossy(&without.stderr)
        .contains("4 encrypted file(s) checked against their checksums only"));
    let key_text = key.to_str().unwrap();
    let with = run(&["verify", "--identity", key_text, "--dir", dir_text]);
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
    assert!(!String::from_utf8_lossy(&with.stderr).contains("checksums only"));

    // The drill restores the newest (encrypted) mirror: a missing identity is a usage
    // error, not a finding about the set.
    let scratch_db = fresh_db("enc_drill");
    let drill = run(&["verify", "--dir", dir_text, "--drill", &scratch_db.url]);
    assert_eq!(drill.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&drill.stderr).contains("which is encrypted: give --identity"));
    let drill = run(&[
        "verify",
        "--identity",
        key_text,
        "--dir",
        dir_text,
        "--drill",
        &scratch_db.url,
    ]);
    assert!(
        drill.status.success(),
        "{}",
        String::from_utf8_lossy(&drill.stderr)
    );

    // Restores from the encrypted mirror and the encrypted archive equal the source.
    let mirror = sealed
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".db.zst.age"))
        .unwrap();
    let archive = sealed
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".backup.age"))
        .unwrap();
    let from_mirror = fresh_db("enc_from_mirror");
    let output = run(&[
        "restore",
        "--quiet",
        "--identity",
        key_text,
        "--from",
        mirror.to_str().unwrap(),
        "--target",
        &from_mirror.url,
        "--create",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(table_digests(&from_mirror), table_digests(&db));
    let from_archive = fresh_db("enc_from_archive");
    let output = run(&[
        "restore",
        "--quiet",
        "--from",
        archive.to_str().unwrap(),
        "--target",
        &from_archive.url,
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an encrypted file without an identity is refused"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("is encrypted: give --identity"));
    let output = Command::new(env!("CARGO_BIN_EXE_pgmirror"))
        .args([
            "restore",
            "--quiet",
            "--from",
            archive.to_str().unwrap(),
            "--target",
            &from_archive.url,
        ])
        .env("PGMIRROR_IDENTITY", key_text)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(table_digests(&from_archive), table_digests(&db));

    // A key the backup was not encrypted to is refused by name; no decrypted copy is left.
    let wrong = run(&[
        "restore",
        "--identity",
        other_key.to_str().unwrap(),
        "--from",
        mirror.to_str().unwrap(),
        "--target",
        &from_mirror.url,
    ]);
    assert_eq!(wrong.status.code(), Some(2));
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        message.contains("no identity in") && message.contains("can decrypt it"),
        "{message}"
    );
    assert!(!message.contains("AGE-SECRET-KEY"), "{message}");

    // A truncated file fails inside decryption, after its temporary plaintext was begun:
    // that copy is removed, and the error says the file is damaged.
    let truncated = tmp.path().join("truncated.db.zst.age");
    let bytes = fs::read(mirror).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let scratch = tmp.path().join("tmp");
    fs::create_dir(&scratch).unwrap();
    let broken =
        crate::support::pgmirror_command(&["verify", "--identity", key_text, truncated.to_str().unwrap()])
            .env("TMPDIR", &scratch)
            .output()
            .unwrap();
    assert_ne!(broken.status.code(), Some(0));
    let message =
        String::from_utf8_lossy(&broken.stderr).into_owned() + &String::from_utf8_lossy(&broken.stdout);
    assert!(message.contains("damaged or was changed"), "{message}");
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "a decrypted copy was left behind"
    );

    // csv export reads the encrypted mirror too.
    let csv = tmp.path().join("tags.csv");
    let output = run(&[
        "csv",
        "export",
        "--quiet",
        "--identity",
        key_text,
        "--from",
        mirror.to_str().unwrap(),
        "--table",
        "Tags",
        "--output",
        csv.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(fs::read_to_string(&csv).unwrap().contains(&format!("1,{NEEDLE}")));

    // A changed byte is found: by its checksum, and by age's authentication on decryption.
    let mut bytes = fs::read(mirror).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(mirror, &bytes).unwrap();
    let damaged = run(&["verify", "--identity", key_text, "--dir", dir_text]);
    assert_eq!(damaged.status.code(), Some(1));
    let report =
        String::from_utf8_lossy(&damaged.stdout).into_owned() + &String::from_utf8_lossy(&damaged.stderr);
    assert!(
        report.contains(&*mirror.file_name().unwrap().to_string_lossy()),
        "{report}"
    );
}

#[test]
fn a_public_key_list_that_is_not_one_is_refused_before_any_work() {
    let tmp = temp_dir();
    let config = tmp.path().join("pgmirror.toml");
    let secret = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
    fs::write(
        &config,
        format!(
            "source = 'host=/nonexistent dbname=x'\ndir = {:?}\n[encryption]\nrecipients = [{secret:?}]\n",
            tmp.path().join("b")
        ),
    )
    .unwrap();
    let output = run(&["backup", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("give the public age1... key") && !message.contains("GFPYYSJZ"),
        "{message}"
    );
    assert!(!tmp.path().join("b").exists() || fs::read_dir(tmp.path().join("b")).unwrap().next().is_none());
}
