//! Off-site copies against a real S3 protocol server on loopback (moto's server mode,
//! started by the test) and a `file://` directory: encrypted objects, checked copies,
//! status, verify --offsite, and a copy interrupted by the server going away.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cluster::free_port;
use crate::support::{fresh_db, pgmirror_command, table_digests, temp_dir, wait_for, TestDb};

const NEEDLE: &str = "offsite-needle-5521";

/// moto's S3 server on a loopback port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(port: u16) -> Moto {
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto[server] is needed: pip install 'moto[server]' (.ci/run does)");
        let moto = Moto { child, port };
        wait_for("moto to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        moto
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// Makes the bucket (moto takes an unsigned PUT for that).
    fn create_bucket(&self, bucket: &str) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent.put(&self.url(bucket)).send_empty().unwrap();
        assert_eq!(response.status().as_u16(), 200, "creating bucket {bucket}");
    }

    /// The test's own view of the bucket, as a client with the same credentials.
    fn store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("backups")
            .with_region("us-east-1")
            .with_access_key_id("testing-key-id")
            .with_secret_access_key("testing-secret-key-value")
            .with_endpoint(format!("http://127.0.0.1:{}", self.port))
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    fn get(&self, key: &str) -> Vec<u8> {
        use object_store::ObjectStore;
        let store = self.store();
        crate::cluster::runtime().block_on(async {
            let found = store.get(&object_store::path::Path::from(key)).await;
            found
                .unwrap_or_else(|e| panic!("{key}: {e}"))
                .bytes()
                .await
                .unwrap()
                .to_vec()
        })
    }

    fn put(&self, key: &str, bytes: &'static [u8]) {
        use object_store::ObjectStore;
        let store = self.store();
        crate::cluster::runtime().block_on(async {
            store
                .put(&object_store::path::Path::from(key), bytes.into())
                .await
                .unwrap();
        });
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("key.txt");
    let output = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (apt-get install age)");
    assert!(output.status.success());
    let public = fs::read_to_string(&path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(String::from))
        .unwrap();
    (path, public)
}

fn app_db() -> TestDb {
    let db = fresh_db("offsite_source");
    db.execute(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, note text);
         INSERT INTO items SELECT g, '{NEEDLE} ' || g FROM generate_series(1, 300) g;"
    ));
    db
}

fn pgmirror_s3(args: &[&str]) -> std::process::Output {
    pgmirror_command(args)
        .env("AWS_ACCESS_KEY_ID", "testing-key-id")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret-key-value")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap()
}

fn status(config: &str) -> serde_json::Value {
    let output = pgmirror_s3(&["status", "--json", "--config", config]);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)))
}

fn holds_plaintext(bytes: &[u8]) -> bool {
    [&b"SQLite format 3"[..], b"PGDMP", NEEDLE.as_bytes()]
        .iter()
        .any(|marker| bytes.windows(marker.len()).any(|w| w == *marker))
}

#[test]
fn encrypted_backups_are_copied_checked_and_completed_after_an_outage() {
    let db = app_db();
    let tmp = temp_dir();
    let (key, public) = keygen(tmp.path());
    let port = free_port();
    let moto = Moto::start(port);
    moto.create_bucket("backups");
    let dir = tmp.path().join("backups");
    let nas = tmp.path().join("nas");
    let config = tmp.path().join("pgmirror.toml");
    fs::write(
        &config,
        format!(
            "source = {:?}\ndir = {dir:?}\nkind = \"both\"\ncompress = \"zstd\"\n\
             [encryption]\nrecipients = [{public:?}]\n\
             [[offsite]]\nname = \"s3\"\nurl = \"s3://backups/prompts\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\n\
             [[offsite]]\nname = \"nas\"\nurl = \"file://{}\"\n",
            db.url,
            nas.display()
        ),
    )
    .unwrap();
    let config_text = config.to_str().unwrap();
    for _ in 0..2 {
        let output = pgmirror_s3(&["backup", "--config", config_text]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(
            said.contains("offsite s3: 1 copied") && said.contains("offsite nas: 1 copied"),
            "{said}"
        );
    }
    let status_now = status(config_text);
    let ids: Vec<String> = status_now["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    for backup in status_now["backups"].as_array().unwrap() {
        assert_eq!(backup["offsite"], serde_json::json!(["nas", "s3"]), "{backup}");
    }

    // The objects are the encrypted files, byte for byte, and decrypt with the stock CLI.
    for id in &ids {
        let manifest: serde_json::Value =
            serde_json::from_slice(&moto.get(&format!("prompts/{id}/manifest.json"))).unwrap();
        for file in manifest["files"].as_array().unwrap() {
            let name = file["name"].as_str().unwrap();
            let object = moto.get(&format!("prompts/{id}/{name}"));
            assert!(!holds_plaintext(&object), "{id}/{name} holds plaintext");
            assert_eq!(object, fs::read(dir.join(id).join(name)).unwrap(), "{id}/{name}");
            let on_nas = fs::read(nas.join(id).join(name)).unwrap();
            assert_eq!(on_nas, object);
            let sealed = tmp.path().join("object.age");
            fs::write(&sealed, &object).unwrap();
            let decrypted = Command::new("age")
                .arg("-d")
                .arg("-i")
                .arg(&key)
                .arg(&sealed)
                .output()
                .unwrap();
            assert!(
                decrypted.status.success() && !decrypted.stdout.is_empty(),
                "{name}"
            );
        }
    }

    let verify = |name: &str| pgmirror_s3(&["verify", "--config", config_text, "--offsite", name]);
    for name in ["s3", "nas"] {
        let output = verify(name);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    // One object overwritten on the store: verify names it and exits 1.
    moto.put(
        &format!("prompts/{}/mirror.db.zst.age", ids[0]),
        b"not the backup",
    );
    let output = verify("s3");
    assert_eq!(output.status.code(), Some(1));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains(&format!("prompts/{}/mirror.db.zst.age", ids[0])),
        "{report}"
    );

    // The store goes away: the backup still stands locally, the failure is recorded.
    drop(moto);
    std::thread::sleep(Duration::from_millis(1100));
    let output = pgmirror_s3(&["backup", "--config", config_text]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let warned = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(warned.contains("offsite s3: copy failed"), "{warned}");
    let record = fs::read_to_string(dir.join(".pgmirror-offsite.json")).unwrap();
    for text in [&warned, &record] {
        assert!(
            !text.contains("testing-secret-key-value") && !text.contains("testing-key-id"),
            "{text}"
        );
    }
    let after = status(config_text);
    assert_eq!(after["backups"].as_array().unwrap().len(), 3);
    assert_eq!(
        after["backups"][0]["offsite"],
        serde_json::json!(["nas"]),
        "{after}"
    );
    assert_eq!(after["offsite_failures"][0][0], "s3", "{after}");
    let everything = serde_json::to_string(&after).unwrap();
    assert!(!everything.contains("testing-secret-key-value"));

    // Back again (an empty store): offsite push copies what is missing.
    let moto = Moto::start(port);
    moto.create_bucket("backups");
    let output = pgmirror_s3(&["offsite", "push", "--config", config_text]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("offsite s3: 3 copied"));
    let healed = status(config_text);
    for backup in healed["backups"].as_array().unwrap() {
        assert_eq!(backup["offsite"], serde_json::json!(["nas", "s3"]), "{backup}");
    }
    assert!(healed["offsite_failures"].as_array().unwrap().is_empty());
    assert!(verify("s3").status.success());
}

/// The config file of a set with both targets, encrypted to `public`.
fn both_targets_config(tmp: &Path, db: &TestDb, public: &str, port: u16) -> std::path::PathBuf {
    let config = tmp.join("pgmirror.toml");
    fs::write(
        &config,
        format!(
            "source = {:?}\ndir = {:?}\nkind = \"both\"\ncompress = \"zstd\"\n\
             [encryption]\nrecipients = [{public:?}]\n\
             [[offsite]]\nname = \"s3\"\nurl = \"s3://backups/prompts\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\n\
             [[offsite]]\nname = \"nas\"\nurl = \"file://{}\"\n",
            db.url,
            tmp.join("backups"),
            tmp.join("nas").display()
        ),
    )
    .unwrap();
    config
}

fn remote_ids(moto: &Moto) -> Vec<String> {
    use object_store::ObjectStore;
    let store = moto.store();
    let mut ids: Vec<String> = crate::cluster::runtime().block_on(async {
        use futures_util::StreamExt;
        let listed: Vec<_> = store
            .list(Some(&object_store::path::Path::from("prompts")))
            .collect()
            .await;
        listed
            .into_iter()
            .map(|m| m.unwrap().location.to_string())
            .filter(|key| key.ends_with("/manifest.json"))
            .map(|key| key.split('/').nth(1).unwrap().to_owned())
            .collect()
    });
    ids.sort();
    ids
}

#[test]
fn backups_come_back_straight_from_the_store_and_prune_applies_there() {
    let db = fresh_db("offsite_restore_source");
    db.execute(&format!(
        "CREATE TABLE \"Prompts\" (id int PRIMARY KEY, body text, tags text[]);
         INSERT INTO \"Prompts\" SELECT g, '{NEEDLE} ' || g, ARRAY['x', 'y ' || g] FROM generate_series(1, 500) g;"
    ));
    let tmp = temp_dir();
    let (key, public) = keygen(tmp.path());
    let key_text = key.to_str().unwrap();
    let port = free_port();
    let moto = Moto::start(port);
    moto.create_bucket("backups");
    let config = both_targets_config(tmp.path(), &db, &public, port);
    let config_text = config.to_str().unwrap();
    let mut ids = Vec::new();
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(1100));
        }
        let output = pgmirror_s3(&["backup", "--config", config_text, "--quiet", "--json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let manifest: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        ids.push(manifest["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(remote_ids(&moto), ids);
    // The targets belong to the config's set: a backup (and a prune) of another
    // directory copies nothing there and deletes nothing there.
    let on_nas = || fs::read_dir(tmp.path().join("nas")).unwrap().count();
    let on_nas_before = on_nas();
    let other = tmp.path().join("other set");
    let other_text = other.to_str().unwrap();
    for command in [&["backup"][..], &["prune", "--keep-last", "1"][..]] {
        let mut args = command.to_vec();
        args.extend(["--config", config_text, "--dir", other_text]);
        let output = pgmirror_s3(&args);
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{said}");
        assert!(said.contains("belong to the set in"), "{said}");
    }
    assert_eq!(
        remote_ids(&moto),
        ids,
        "another set's backup or prune reached the bucket"
    );
    assert_eq!(on_nas(), on_nas_before, "another set's backup reached the NAS");

    // The whole database straight from the bucket: the newest verified backup, decrypted.
    let restored = crate::support::absent_db("offsite_restored");
    let from_bucket = |target: &TestDb, from: &str, extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--config",
            config_text,
            "--identity",
            key_text,
            "--from",
            from,
            "--target",
            &target.url,
        ];
        args.extend_from_slice(extra);
        pgmirror_s3(&args)
    };
    let output = from_bucket(&restored, "s3://backups/prompts", &["--create-database"]);
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{said}");
    assert!(said.contains(&format!("restoring backup {}", ids[2])), "{said}");
    assert!(said.contains("row counts match"), "{said}");
    assert_eq!(table_digests(&restored), table_digests(&db));
    for secret in ["testing-secret-key-value", "AGE-SECRET-KEY"] {
        assert!(!said.contains(secret), "{said}");
    }

    // One file by its address (a mirror, so --create makes its table), and the NAS by
    // file:// with no config at all.
    let one_file = crate::support::absent_db("offsite_one_file");
    let address = format!("s3://backups/prompts/{}/mirror.db.zst.age", ids[1]);
    let output = from_bucket(&one_file, &address, &["--backup", &ids[0]]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is a single object"));
    assert!(!crate::support::database_exists(&one_file.name));
    let output = from_bucket(&one_file, &address, &["--create-database", "--create"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("not checked"));
    assert_eq!(table_digests(&one_file), table_digests(&db));
    let from_nas = crate::support::absent_db("offsite_from_nas");
    let nas = format!("file://{}", tmp.path().join("nas").display());
    let output = pgmirror_s3(&[
        "restore",
        "--identity",
        key_text,
        "--from",
        &nas,
        "--backup",
        &ids[0],
        "--target",
        &from_nas.url,
        "--create-database",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(table_digests(&from_nas), table_digests(&db));

    // An object changed on the store is refused before any database is made; nothing of
    // the download is left behind.
    let archive_name = fs::read_dir(tmp.path().join("backups").join(&ids[2]))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".backup.age"))
        .unwrap();
    moto.put(&format!("prompts/{}/{archive_name}", ids[2]), b"not the archive");
    let refused = crate::support::absent_db("offsite_refused");
    let downloads = tmp.path().join("downloads");
    fs::create_dir(&downloads).unwrap();
    let output = pgmirror_command(&[
        "restore",
        "--config",
        config_text,
        "--identity",
        key_text,
        "--from",
        "s3://backups/prompts",
        "--target",
        &refused.url,
        "--create-database",
    ])
    .env("AWS_ACCESS_KEY_ID", "testing-key-id")
    .env("AWS_SECRET_ACCESS_KEY", "testing-secret-key-value")
    .env("AWS_REGION", "us-east-1")
    .env("TMPDIR", &downloads)
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&archive_name) && said.contains("its manifest says"),
        "{said}"
    );
    assert!(!crate::support::database_exists(&refused.name));
    assert_eq!(fs::read_dir(&downloads).unwrap().count(), 0, "downloads removed");

    // Prune: the policy (keep the last one) on both targets; a pinned backup stays everywhere.
    let output = pgmirror_s3(&["pin", "--config", config_text, &ids[0]]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = pgmirror_s3(&[
        "prune",
        "--config",
        config_text,
        "--keep-last",
        "1",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
        "--keep-yearly",
        "0",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["deleted"],
        serde_json::json!([{ "name": ids[1] }]),
        "{report}"
    );
    for target in report["offsite"].as_array().unwrap() {
        assert_eq!(target["deleted"], serde_json::json!([ids[1]]), "{report}");
        assert!(target["error"].is_null(), "{report}");
    }
    assert_eq!(remote_ids(&moto), vec![ids[0].clone(), ids[2].clone()]);
    let mut on_nas: Vec<String> = fs::read_dir(tmp.path().join("nas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_nas.sort();
    assert_eq!(on_nas, vec![ids[0].clone(), ids[2].clone()]);
    let after = status(config_text);
    for backup in after["backups"].as_array().unwrap() {
        assert_eq!(backup["offsite"], serde_json::json!(["nas", "s3"]), "{backup}");
    }
}
