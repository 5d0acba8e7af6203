//! Backup sets end to end: backups, status, verification, retention, pins and the lock.

use std::path::{Path, PathBuf};

use crate::support::{fresh_db, pgmirror, temp_dir, TestDb};

fn app_db(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.execute(
        "CREATE TABLE prompts (id serial PRIMARY KEY, title text NOT NULL);
         INSERT INTO prompts (title) SELECT 'prompt ' || g FROM generate_series(1, 500) g;
         CREATE TABLE tags (id int PRIMARY KEY, name text); INSERT INTO tags VALUES (1, 'fantasy');",
    );
    db
}

fn json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let output = pgmirror(args);
    let value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{args:?}: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code(), value)
}

fn backup_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn backups_status_and_verification() {
    let db = app_db("set_e2e");
    let scratch = fresh_db("set_e2e_drill");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let dir_text = dir.to_str().unwrap();
    let (code, first) = json(&[
        "backup",
        "--quiet",
        "--json",
        "--source",
        &db.url,
        "--dir",
        dir_text,
        "--kind",
        "both",
        "--compress",
        "zstd:3",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(first["kinds"], serde_json::json!(["mirror", "archive"]));
    assert_eq!(
        first["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "prompts")
            .unwrap()["rows"],
        500
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, second) = json(&[
        "backup", "--quiet", "--json", "--source", &db.url, "--dir", dir_text,
    ]);
    assert_eq!(code, Some(0));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let (code, status) = json(&["status", "--json", "--dir", dir_text, "--max-age", "1h"]);
    assert_eq!(code, Some(0), "{status}");
    let backups = status["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2);
    assert_eq!(backups[0]["id"], second["id"], "newest first");
    assert_eq!(backups[1]["kind"], "mirror+archive");
    assert!(backups.iter().all(|b| b["verified"] == true));
    let sizes: u64 = backups.iter().map(|b| b["size_bytes"].as_u64().unwrap()).sum();
    assert_eq!(status["total_bytes"].as_u64().unwrap(), sizes);
    assert!(status["free_bytes"].as_u64().unwrap() > 0);
    assert!(status["newest_age_seconds"].as_i64().unwrap() < 60);
    assert!(status["last_failure"].is_null());

    let sound = pgmirror(&[
        "verify",
        "--dir",
        dir_text,
        "--source",
        &db.url,
        "--drill",
        &scratch.url,
    ]);
    assert_eq!(
        sound.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sound.stdout)
    );
    assert_eq!(
        scratch.scalar("SELECT count(*) FROM prompts"),
        "500",
        "the drill restored the newest mirror"
    );

    // One flipped byte, then a truncation: verify lists them and exits 1.
    let first_dir = dir.join(first["id"].as_str().unwrap());
    let mirror = first_dir.join("mirror.db.zst");
    let original = std::fs::read(&mirror).unwrap();
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    std::fs::write(&mirror, &flipped).unwrap();
    let broken = pgmirror(&["verify", "--dir", dir_text]);
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("mirror.db.zst: sha256 is"), "{stdout}");
    std::fs::write(&mirror, &original).unwrap();
    let archive = first_dir.join("set_e2e.backup");
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() - 100]).unwrap();
    let broken = pgmirror(&["verify", "--dir", dir_text]);
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("set_e2e.backup: size is"), "{stdout}");

    // A failed run is recorded, and status turns to exit 1.
    let failed = pgmirror(&[
        "backup",
        "--quiet",
        "--source",
        "host=127.0.0.1 port=1 user=x dbname=x",
        "--dir",
        dir_text,
    ]);
    assert_eq!(failed.status.code(), Some(2));
    let (code, status) = json(&["status", "--json", "--dir", dir_text]);
    assert_eq!(code, Some(1));
    assert!(
        status["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("connecting"),
        "{status}"
    );
    assert_eq!(backup_dirs(&dir).len(), 2, "the failed run added nothing");
}

/// Fakes a backup of the set made at `created` (Unix seconds), copying a real one.
fn fake_backup(dir: &Path, template: &Path, created: i64) -> String {
    let id = format!("fake{created}");
    let target = dir.join(&id);
    std::fs::create_dir(&target).unwrap();
    for entry in std::fs::read_dir(template).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    let path = target.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["id"] = id.clone().into();
    manifest["created_unix"] = created.into();
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    id
}

#[test]
fn prune_keeps_the_policy_and_dry_run_predicts_it() {
    let db = app_db("set_prune");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let dir_text = dir.to_str().unwrap();
    assert!(
        pgmirror(&["backup", "--quiet", "--source", &db.url, "--dir", dir_text])
            .status
            .success()
    );
    let template = backup_dirs(&dir)[0].clone();
    let day = 86_400;
    let base = 1_735_689_600; // 2025-01-01 00:00 UTC
    let mut ids = Vec::new();
    for offset in [0, 1, 2, 3, 10, 40, 41, 70, 200] {
        ids.push(fake_backup(&dir, &template, base + offset * day + 3600));
    }
    std::fs::remove_dir_all(&template).unwrap();
    // The guide's own files and a foreign file live in the same directory.
    std::fs::write(dir.join("prompts_20240101_020000.backup"), b"old pg_dump").unwrap();
    std::fs::write(dir.join("notes.txt"), b"not a backup").unwrap();
    // Multi-byte names once made --include-unmanaged panic.
    std::fs::write(dir.join("notizen-übersicht-€.txt"), b"not a backup").unwrap();
    assert!(pgmirror(&["pin", "--dir", dir_text, &ids[0]]).status.success());

    let policy = [
        "--keep-daily",
        "2",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "2",
        "--keep-yearly",
        "0",
    ];
    let mut dry = vec!["prune", "--json", "--dry-run", "--dir", dir_text];
    dry.extend(policy);
    let (code, predicted) = json(&dry);
    assert_eq!(code, Some(0));
    let mut real = vec!["prune", "--json", "--dir", dir_text];
    real.extend(policy);
    let (code, done) = json(&real);
    assert_eq!(code, Some(0));
    assert_eq!(
        predicted["deleted"], done["deleted"],
        "dry run lists exactly what prune deletes"
    );
    assert_eq!(predicted["kept"], done["kept"]);
    let kept: Vec<String> = done["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    // Daily 2: day 200 and day 70; monthly 2: July (200) and March (70); pinned: day 0.
    let expected: Vec<String> = [&ids[8], &ids[7], &ids[0]]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(kept, expected, "{done}");
    let pinned = done["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == ids[0].as_str())
        .unwrap();
    assert_eq!(pinned["reasons"], serde_json::json!(["pinned"]));
    let remaining: Vec<String> = backup_dirs(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(remaining, expected_sorted);
    assert!(
        dir.join("notes.txt").exists() && dir.join("prompts_20240101_020000.backup").exists(),
        "unmanaged files untouched"
    );

    // With --include-unmanaged the guide's old file is under the policy too.
    let mut unmanaged = vec!["prune", "--json", "--include-unmanaged", "--dir", dir_text];
    unmanaged.extend(policy);
    let (code, done) = json(&unmanaged);
    assert_eq!(code, Some(0), "{done}");
    assert_eq!(
        done["deleted"],
        serde_json::json!([{ "name": "prompts_20240101_020000.backup" }])
    );
    assert!(
        dir.join("notes.txt").exists() && dir.join("notizen-übersicht-€.txt").exists(),
        "a file without the timestamp is never touched"
    );
}

#[test]
fn the_lock_refuses_a_second_run_naming_the_holder() {
    let db = app_db("set_lock");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    // Another process holds the OS lock (flock) and has written its pid.
    let lock_path = dir.join(".pgmirror.lock");
    // -o: only flock itself holds the lock, so killing it releases the lock.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&lock_path)
        .args(["sh", "-c", "echo 4242 > \"$0\"; sleep 30"])
        .arg(&lock_path)
        .spawn()
        .expect("starting flock(1)");
    let waiting = std::time::Instant::now();
    while std::fs::read_to_string(&lock_path).unwrap_or_default().trim() != "4242" {
        assert!(waiting.elapsed().as_secs() < 10, "the holder never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let refused = pgmirror(&["backup", "--source", &db.url, "--dir", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pid 4242"), "{stderr}");
    assert!(backup_dirs(&dir).is_empty());
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap().trim(),
        "4242",
        "the holder's file is untouched"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The lock died with its holder; the file it left behind is no obstacle.
    let taken = pgmirror(&[
        "backup",
        "--quiet",
        "--source",
        &db.url,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    assert_eq!(backup_dirs(&dir).len(), 1);
}

#[test]
fn verify_dir_reports_a_mirror_it_cannot_open_instead_of_matching_counts() {
    let db = app_db("set_unopenable");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let dir_text = dir.to_str().unwrap();
    let (code, _) = json(&[
        "backup", "--quiet", "--json", "--source", &db.url, "--dir", dir_text,
    ]);
    assert_eq!(code, Some(0));
    let backup = backup_dirs(&dir).pop().unwrap();
    let manifest_path = backup.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    // A plain SQLite file in the mirror's place, recorded in the manifest as if it belonged:
    // the checksums pass, so only opening the mirror can tell.
    let file = manifest["files"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["kind"] == "mirror")
        .unwrap();
    let mirror_path = backup.join(file["name"].as_str().unwrap());
    std::fs::remove_file(&mirror_path).unwrap();
    let plain = tmp.path().join("plain.db");
    rusqlite::Connection::open(&plain)
        .unwrap()
        .execute_batch("CREATE TABLE x (a int)")
        .unwrap();
    let bytes = std::fs::read(&plain).unwrap();
    let bytes = if mirror_path.extension().is_some_and(|e| e == "zst") {
        zstd::encode_all(&bytes[..], 3).unwrap()
    } else {
        bytes
    };
    std::fs::write(&mirror_path, &bytes).unwrap();
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    file["sha256"] = serde_json::json!(digest);
    file["size_bytes"] = serde_json::json!(bytes.len());
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();

    let output = pgmirror(&["verify", "--dir", dir_text]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("cannot open the mirror to compare its row counts"),
        "{stdout}"
    );
}
