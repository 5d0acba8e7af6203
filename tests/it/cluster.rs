//! A PostgreSQL cluster of our own: initdb + pg_ctl in a directory, run as the `postgres`
//! OS user when we are root, on a Unix socket in that directory and a free loopback port.
//! Shared by the integration tests (a throwaway cluster) and the end-to-end benchmark (a
//! cluster kept between runs so its generated datasets are cached).
// Each of the two uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directory of the server binaries (and of the matching pg_dump).
pub fn postgres_bin_dir() -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").is_file() && dir.join("initdb").is_file() {
                // Follow a symlink (/usr/local/bin/pg_ctl) to the directory that also
                // holds the matching pg_dump.
                return std::fs::canonicalize(dir.join("pg_ctl"))
                    .ok()
                    .and_then(|real| real.parent().map(Path::to_path_buf))
                    .unwrap_or(dir);
            }
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.retain(|dir| dir.join("pg_ctl").is_file());
    candidates.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates
        .pop()
        .expect("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql/*/bin; install postgresql")
}

/// uid and gid of the `postgres` OS user, from /etc/passwd.
pub fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&"postgres") || fields.len() < 4 {
            return None;
        }
        Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

pub struct Cluster {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
    run_as: Option<(u32, u32)>,
}

impl Cluster {
    /// Creates `dir` (owned by the server's user) without touching a cluster in it.
    pub fn prepare(dir: PathBuf) -> Cluster {
        std::fs::create_dir_all(&dir).expect("creating the cluster directory");
        let run_as = if unsafe { libc::geteuid() } == 0 {
            let (uid, gid) =
                postgres_user().expect("running as root needs a `postgres` OS user to run the server");
            let status = Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {} failed", dir.display());
            Some((uid, gid))
        } else {
            None
        };
        Cluster {
            data: dir.join("data"),
            dir,
            bin: postgres_bin_dir(),
            port: 0,
            run_as,
        }
    }

    /// A command run as the server's user, in the cluster's directory.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        command.env_remove("PGDATA").current_dir(&self.dir);
        command
    }

    pub fn initdb(&self, auth: &[&str]) {
        let output = self
            .command(&self.bin.join("initdb"))
            .arg("-D")
            .arg(&self.data)
            .args(["-U", "postgres", "-E", "UTF8", "--no-sync"])
            .args(auth)
            .output()
            .expect("running initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server on a free port with `wal_level=logical` and `extra` settings.
    pub fn start(&mut self, extra: &str) {
        self.port = free_port();
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c wal_level=logical -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_wal_senders=10 -c max_replication_slots=30 -c timezone=UTC -c lc_messages=C {extra}",
            self.port,
            self.dir.display(),
        );
        let output = self
            .command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .expect("running pg_ctl start");
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    pub fn stop(&self) {
        let _ = self
            .command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// key=value connection string without a database name.
    pub fn conninfo(&self) -> String {
        format!("host={} port={} user=postgres", self.dir.display(), self.port)
    }
}

/// The single-threaded runtime a test or benchmark drives its client connections on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A plain client connection (the server is local: no TLS), driven on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
    tokio::spawn(connection);
    client
}

/// The benchmarks' PostgreSQL in `target/bench-cluster`, kept between runs so generated
/// datasets are made once, and started with memory for large COPYs.
pub fn bench_server(target: &Path) -> Cluster {
    let mut server = Cluster::prepare(target.join("bench-cluster"));
    if !server.data.join("PG_VERSION").exists() {
        server.initdb(&["--auth=trust"]);
    }
    server.start("-c shared_buffers=512MB -c max_connections=50 -c work_mem=64MB");
    server
}
