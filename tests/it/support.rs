//! Test support: a throwaway PostgreSQL cluster per test binary, one database per test,
//! helpers to run SQL and the pgmirror binary, and the mirror-vs-source comparison.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::cluster::{free_port, postgres_bin_dir, Cluster};

/// Where the cluster (or `PGMIRROR_TEST_URL`) is reached: a key=value or URL string
/// without a database name.
struct Server {
    /// Connection string for a given database.
    base: String,
    is_url: bool,
    certificate: Option<PathBuf>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| match std::env::var("PGMIRROR_TEST_URL") {
        Ok(url) if !url.is_empty() => Server {
            is_url: url.starts_with("postgres"),
            base: url,
            certificate: None,
        },
        _ => start_cluster(),
    })
}

impl Server {
    fn connection_string(&self, database: &str) -> String {
        if self.is_url {
            let (without_query, query) = match self.base.split_once('?') {
                Some((base, query)) => (base, format!("?{query}")),
                None => (self.base.as_str(), String::new()),
            };
            let scheme_end = without_query.find("://").map(|i| i + 3).unwrap_or(0);
            let authority_end = without_query[scheme_end..]
                .find('/')
                .map(|i| i + scheme_end)
                .unwrap_or(without_query.len());
            format!("{}/{database}{query}", &without_query[..authority_end])
        } else {
            format!("{} dbname={database}", self.base)
        }
    }
}

/// initdb + pg_ctl start in a temp dir, as the postgres OS user when we are root. A watchdog
/// process stops the server and removes the directory once this test process is gone.
fn start_cluster() -> Server {
    let dir = std::env::temp_dir().join(format!("pgmirror-test-{}-{}", std::process::id(), free_port()));
    let mut cluster = Cluster::prepare(dir);
    cluster.initdb(&["--auth-local=trust", "--auth-host=scram-sha-256"]);
    let dir = cluster.dir.clone();
    // TLS: a test CA and a server certificate for "localhost" signed by it, and a role
    // that may only come over TLS.
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("writing the certificate extensions");
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pgmirror-test-ca -keyout ca.key -out ca.crt",
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt",
    ] {
        let output = cluster
            .command(Path::new("openssl"))
            .args(args.split(' '))
            .output()
            .expect("running openssl to make the test server's certificate");
        assert!(output.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let hba = cluster.data.join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
    std::fs::write(&hba, format!("hostnossl all {TLS_ONLY_ROLE} all reject\n{rules}"))
        .expect("writing pg_hba.conf");
    cluster.start(&format!(
        "-c max_connections=200 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        dir.join("server.crt").display(),
        dir.join("server.key").display(),
    ));
    let watchdog = format!(
        "while [ -d /proc/{pid} ]; do sleep 0.5; done; '{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = cluster.bin.join("pg_ctl").display(),
        data = cluster.data.display(),
        dir = dir.display()
    );
    // The watchdog must outlive this process, so it is deliberately never waited for.
    #[allow(clippy::zombie_processes)]
    cluster
        .command(Path::new("sh"))
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the cluster watchdog");
    Server {
        base: cluster.conninfo(),
        is_url: false,
        certificate: Some(dir.join("ca.crt")),
    }
}

/// A role that pg_hba.conf of the harness's cluster rejects without TLS.
pub const TLS_ONLY_ROLE: &str = "tls_only";

/// The CA certificate that signed the harness's cluster's certificate (`None` under PGMIRROR_TEST_URL).
pub fn server_certificate() -> Option<PathBuf> {
    server().certificate.clone()
}

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

pub use crate::cluster::{connect, runtime};

/// Drops and recreates database `name`.
pub fn fresh_db(name: &str) -> TestDb {
    let server = server();
    let admin = server.connection_string("postgres");
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&admin).await;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .expect("dropping the test database");
        client
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"
            ))
            .await
            .expect("creating the test database");
    });
    TestDb {
        name: name.to_owned(),
        url: server.connection_string(name),
    }
}

/// A database name that does not exist (dropped if it did), for restores that create it.
pub fn absent_db(name: &str) -> TestDb {
    let db = fresh_db(name);
    let admin = server().connection_string("postgres");
    runtime().block_on(async {
        connect(&admin)
            .await
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .expect("dropping the test database");
    });
    db
}

/// Whether database `name` exists on the test server.
pub fn database_exists(name: &str) -> bool {
    let admin = TestDb {
        name: "postgres".into(),
        url: server().connection_string("postgres"),
    };
    admin.scalar(&format!(
        "SELECT count(*) FROM pg_database WHERE datname = '{}'",
        name.replace('\'', "''")
    )) == "1"
}

impl TestDb {
    pub fn execute(&self, sql: &str) {
        let rt = runtime();
        rt.block_on(async {
            let client = connect(&self.url).await;
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        });
    }

    /// Rows as text (PostgreSQL's output form), NULL as None.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rt = runtime();
        rt.block_on(async {
            let client = connect(&self.url).await;
            simple_rows(&client, sql).await
        })
    }

    pub fn scalar(&self, sql: &str) -> String {
        self.query(sql)[0][0].clone().unwrap_or_default()
    }

    /// Runs a SQL file with psql (the shared datasets use psql's COPY FROM stdin and \c).
    pub fn psql_file(&self, file: &Path) {
        let output = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &self.url, "-f"])
            .arg(file)
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql -f {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

pub async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// The project's fixtures/ directory: real public datasets (licences noted beside each) and
/// small self-written files.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pgmirror-it-")
        .tempdir()
        .expect("temp dir")
}

/// Runs the pgmirror binary with none of the libpq environment variables set.
pub fn pgmirror(args: &[&str]) -> Output {
    pgmirror_with_env(args, &[])
}

/// Runs the pgmirror binary with exactly these libpq environment variables.
pub fn pgmirror_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = pgmirror_command(args)
        .envs(env.iter().copied())
        .output()
        .expect("running pgmirror");
    if args.first() == Some(&"export") && output.status.success() {
        if let Some(mirror) = args
            .iter()
            .position(|a| *a == "--output")
            .and_then(|i| args.get(i + 1))
        {
            assert_intact(Path::new(mirror));
        }
    }
    output
}

/// Every mirror a test writes must pass SQLite's own full check: the page writer's
/// B-trees, overflow chains and freelist, and the indexes SQLite built over them.
pub fn assert_intact(mirror: &Path) {
    if !mirror.is_file() {
        return;
    }
    let conn = open_mirror(mirror);
    let findings: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("running integrity_check");
    assert_eq!(findings, ["ok"], "integrity_check of {}", mirror.display());
}

/// The pgmirror binary with these arguments and none of the libpq environment variables,
/// for tests that start it and act on it while it runs.
pub fn pgmirror_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmirror"));
    for name in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    ] {
        command.env_remove(name);
    }
    command.args(args);
    command
}

/// `pgmirror export --quiet` of `db` into `output`; panics with stderr on failure.
pub fn export(db: &TestDb, output: &Path, extra: &[&str]) -> String {
    let output_text = output.to_str().expect("utf-8 path");
    let mut args = vec!["export", "--source", &db.url, "--output", output_text];
    args.extend_from_slice(extra);
    let result = pgmirror(&args);
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "export of {} failed: {stderr}", db.name);
    stderr
}

pub fn open_mirror(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("opening the mirror")
}

/// A database that a script created itself (for example chinook's `CREATE DATABASE`).
pub fn existing_db(name: &str) -> TestDb {
    TestDb {
        name: name.to_owned(),
        url: server().connection_string(name),
    }
}

/// Names of the data tables in a mirror (without the `_pgmirror_` metadata tables).
pub fn mirror_table_names(mirror: &Path) -> Vec<String> {
    let conn = open_mirror(mirror);
    let mut statement = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_pgmirror\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
        .expect("listing tables");
    statement
        .query_map([], |row| row.get(0))
        .expect("listing tables")
        .collect::<Result<_, _>>()
        .expect("listing tables")
}

/// `pg_dump --schema-only --no-owner --no-privileges` of `db`.
pub fn schema_dump(db: &TestDb) -> Vec<u8> {
    let dump = Command::new(postgres_bin_dir().join("pg_dump"))
        .args(["--schema-only", "--no-owner", "--no-privileges", "-d", &db.url])
        .output()
        .expect("running pg_dump");
    assert!(
        dump.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    dump.stdout
}

/// `pgmirror restore --quiet --from MIRROR --target TARGET EXTRA...`.
pub fn restore(mirror: &Path, target: &TestDb, extra: &[&str]) -> Output {
    let mut args = vec![
        "restore",
        "--quiet",
        "--from",
        mirror.to_str().expect("utf-8 path"),
        "--target",
        &target.url,
    ];
    args.extend_from_slice(extra);
    pgmirror(&args)
}

/// `pgmirror csv export --quiet FROM --table TABLE --output OUTPUT`; FROM is `--from MIRROR` or
/// `--source URL`.
pub fn csv_export(from: (&str, &str), table: &str, output: &Path) {
    let result = try_csv_export(from, table, output);
    assert!(
        result.status.success(),
        "csv export {from:?} --table {table}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// [`csv_export`] that returns the outcome instead of asserting success.
pub fn try_csv_export(from: (&str, &str), table: &str, output: &Path) -> Output {
    pgmirror(&[
        "csv",
        "export",
        "--quiet",
        from.0,
        from.1,
        "--table",
        table,
        "--output",
        output.to_str().unwrap(),
    ])
}

pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "pgmirror failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Copies `source`'s schema (no rows) into `target` with pg_dump | psql.
pub fn copy_schema(source: &TestDb, target: &TestDb) {
    let dump = schema_dump(source);
    let mut psql = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &target.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running psql");
    use std::io::Write;
    psql.stdin
        .take()
        .expect("psql stdin")
        .write_all(&dump)
        .expect("feeding psql");
    let output = psql.wait_with_output().expect("waiting for psql");
    assert!(
        output.status.success(),
        "loading the schema failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Per table (`schema.table`), the row count and an md5 over the sorted full-row texts.
pub fn table_digests(db: &TestDb) -> Vec<(String, String, String)> {
    let tables = db.query(
        "SELECT format('%I.%I', n.nspname, c.relname), n.nspname || '.' || c.relname, c.relkind = 'p' \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' ORDER BY 2",
    );
    tables
        .into_iter()
        .map(|row| {
            let relation = row[0].clone().unwrap();
            let only = if row[2].as_deref() == Some("t") { "" } else { "ONLY " };
            // The same instant prints differently under each database's TimeZone.
            let digest = db.query(&format!(
                "SET TimeZone = 'UTC'; SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {only}{relation} t"
            ));
            (row[1].clone().unwrap(), digest[0][0].clone().unwrap(), digest[0][1].clone().unwrap())
        })
        .collect()
}

/// Polls `condition` every 50 ms; fails the test naming `what` after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Sends `signal` to a child process of the test.
pub fn signal(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill");
}

/// Waits for `child` to exit; fails the test if it is still running after `limit`.
pub fn exit_within(child: &mut std::process::Child, limit: std::time::Duration) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "still running {limit:?} after the signal"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
