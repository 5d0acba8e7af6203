//! `pgmirror serve` end to end: schedules, skips, alerts, health, metrics, the status page
//! in a real headless browser, signals, reload, and the deployment files.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::free_port;
use crate::support::{
    existing_db, exit_within, fresh_db, pgmirror, pgmirror_command, signal, temp_dir, wait_for, TestDb,
};

/// A running `pgmirror serve` whose JSON log goes to a file the test reads as it grows.
struct Served {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Served {
    fn start(config: &Path, env: &[(&str, &str)], extra: &[&str]) -> Served {
        let port = free_port();
        let log = config.with_extension("log");
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &listen,
            "--log-format",
            "json",
        ];
        args.extend_from_slice(extra);
        let child = pgmirror_command(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting pgmirror serve");
        let served = Served { child, log, port };
        wait_for("the service to listen", Duration::from_secs(20), || {
            served.try_get("/healthz").is_some()
        });
        served
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent.get(&self.url(path)).call().ok()?;
        let status = response.status().as_u16();
        Some((status, response.body_mut().read_to_string().ok()?))
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed; log:\n{}", self.log_text()))
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's events (one JSON object per line).
    fn events(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    fn count(&self, job: &str, message: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e["job"] == job && e["message"] == message)
            .count()
    }

    /// SIGTERM, then the exit status within `limit`.
    fn stop(mut self, limit: Duration) -> std::process::ExitStatus {
        signal(&self.child, libc::SIGTERM);
        let status = exit_within(&mut self.child, limit);
        std::mem::forget(self);
        status
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn app_db(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.execute(
        "CREATE TABLE \"Prompts\" (\"Id\" serial PRIMARY KEY, \"Title\" text NOT NULL);
         INSERT INTO \"Prompts\" (\"Title\") SELECT 'prompt ' || g FROM generate_series(1, 300) g;
         CREATE TABLE \"ApplicationLogs\" (\"Id\" serial PRIMARY KEY, \"TimeStamp\" timestamptz NOT NULL);
         INSERT INTO \"ApplicationLogs\" (\"TimeStamp\")
             SELECT now() - g * interval '1 day' FROM generate_series(1, 60) g;",
    );
    db
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pgmirror.toml");
    fs::write(&path, text).unwrap();
    path
}

/// The backups of a set: (id, manifest), oldest first.
fn backups(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut found: Vec<(String, serde_json::Value)> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let path = e.ok()?.path();
                    let manifest = fs::read(path.join("manifest.json")).ok()?;
                    Some((
                        path.file_name()?.to_string_lossy().into_owned(),
                        serde_json::from_slice(&manifest).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn partials(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".partial"))
        .collect()
}

/// Each run's (start, end) on the log's clock: the "job started" events paired in order
/// with the "job finished"/"job failed" ones (a job never overlaps itself, so the n-th end
/// belongs to the n-th start unless runs overlap, which the caller checks).
fn run_intervals(events: &[serde_json::Value], job: &str) -> Vec<(String, String)> {
    let times = |messages: &[&str]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["job"] == job && messages.iter().any(|m| e["message"] == *m))
            .map(|e| e["timestamp"].as_str().unwrap().to_owned())
            .collect()
    };
    let starts = times(&["job started"]);
    let ends = times(&["job finished", "job failed"]);
    starts.into_iter().zip(ends).collect()
}

fn assert_no_overlap(intervals: &[(String, String)], what: &str) {
    for pair in intervals.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "{what}: a run started before the previous one ended: {pair:?}"
        );
    }
}

/// The samples of a Prometheus text exposition, by name and labels.
fn metrics(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected sample {other:?}"),
            };
            let labels: BTreeMap<String, String> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ((sample.metric, labels), value)
        })
        .collect()
}

fn sample(
    samples: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    *samples
        .get(&(name.to_owned(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {samples:?}"))
}

#[test]
fn scheduled_backups_never_overlap_and_slow_jobs_are_skipped() {
    let db = app_db("serve_schedule");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let config = write_config(
        tmp.path(),
        &format!(
            "source = {source:?}\ndir = {dir:?}\nmax_age = \"1h\"\n\
             [[jobs]]\nname = \"often\"\nrun = \"backup\"\nschedule = \"*/2 * * * * *\"\nat_start = true\ncompress = \"zstd\"\n\
             [[jobs]]\nname = \"also\"\nrun = \"backup\"\nschedule = \"*/4 * * * * *\"\nat_start = true\n\
             [[jobs]]\nname = \"slow\"\nrun = \"sql\"\nschedule = \"* * * * * *\"\nsql = \"SELECT pg_sleep(2.5)\"\n\
             [[jobs]]\nname = \"logs\"\nrun = \"sql\"\nat_start = true\n\
             sql = \"DELETE FROM \\\"ApplicationLogs\\\" WHERE \\\"TimeStamp\\\" < now() - interval '30 days'\"\n",
            source = db.url,
        ),
    );
    let served = Served::start(&config, &[], &[]);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(9).saturating_sub(started.elapsed()));
    let in_nine_seconds = backups(&dir);
    assert!(
        in_nine_seconds.len() >= 3,
        "{} backups in 9 s; log:\n{}",
        in_nine_seconds.len(),
        served.log_text()
    );
    let events = served.events();
    // Two backup jobs on one directory: never two backups written at once.
    let mut backup_runs = run_intervals(&events, "often");
    let second_job = run_intervals(&events, "also");
    assert!(!second_job.is_empty());
    backup_runs.extend(second_job);
    backup_runs.sort();
    assert_no_overlap(&backup_runs, "backups");
    assert!(
        served.count("often", "waiting for another job on the backup directory")
            + served.count("also", "waiting for another job on the backup directory")
            > 0,
        "the jobs never met at the directory (both run at start)"
    );
    let slow_runs = run_intervals(&events, "slow");
    assert_no_overlap(&slow_runs, "the slow job");
    assert!(slow_runs.len() >= 2, "{slow_runs:?}");
    let skipped = served.count("slow", "skipped: the previous run is still going");
    assert!(
        skipped >= 2,
        "the slow job was skipped {skipped} times; log:\n{}",
        served.log_text()
    );
    // The log cleaner deleted exactly the rows older than 30 days.
    assert_eq!(db.scalar("SELECT count(*) FROM \"ApplicationLogs\""), "29");
    let logs_line = events
        .iter()
        .find(|e| e["job"] == "logs" && e["message"] == "job finished")
        .expect("the logs job finished");
    assert_eq!(logs_line["detail"], "31 rows affected");

    let (code, text) = served.get("/metrics");
    assert_eq!(code, 200);
    let samples = metrics(&text);
    let (_, status) = served.get("/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let now_backups = backups(&dir);
    let runs_of = |job: &str, outcome: &str| {
        sample(
            &samples,
            "pgmirror_job_runs_total",
            &[("job", job), ("outcome", outcome)],
        )
    };
    let successes = runs_of("often", "success") + runs_of("also", "success");
    // Read after /metrics: a backup may have finished in between, never fewer.
    // A backup is in the set a moment before its run is recorded: one may be uncounted.
    assert!(
        successes as usize <= now_backups.len() && successes as usize + 1 >= in_nine_seconds.len(),
        "{successes} successes, {} backups",
        now_backups.len()
    );
    let skipped_metric = runs_of("slow", "skipped");
    assert!(skipped_metric >= skipped as f64, "{skipped_metric} < {skipped}");
    assert_eq!(runs_of("often", "failure") + runs_of("also", "failure"), 0.0);
    assert!(
        sample(
            &samples,
            "pgmirror_job_last_success_timestamp_seconds",
            &[("job", "often")]
        ) > 1.7e9
    );
    assert!(sample(&samples, "pgmirror_job_duration_seconds", &[("job", "slow")]) >= 2.5);
    assert!(sample(&samples, "pgmirror_backup_newest_age_seconds", &[]) < 10.0);
    let set_bytes = sample(&samples, "pgmirror_backup_set_bytes", &[]);
    let on_disk: u64 = now_backups
        .iter()
        .flat_map(|(_, m)| m["files"].as_array().unwrap().clone())
        .map(|f| f["size_bytes"].as_u64().unwrap())
        .sum();
    assert!(
        set_bytes > 0.0 && set_bytes <= on_disk as f64,
        "{set_bytes} vs {on_disk}"
    );
    assert!(status["backups"].as_array().unwrap().len() >= in_nine_seconds.len());
    assert!(status["service"]["next_runs"]["often"].is_string(), "{status}");
    assert_eq!(status["jobs"]["logs"]["outcome"], "success", "{status}");
    assert_eq!(served.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(served.get("/nowhere").0, 404);

    let status = served.stop(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(partials(&dir).is_empty());
    let verify = pgmirror(&["verify", "--dir", dir.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// A local webhook receiver: every POST body, in order.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = String::new();
            let _ = request.as_reader().read_to_string(&mut body);
            if let Ok(value) = serde_json::from_str(&body) {
                sink.lock().unwrap().push(value);
            }
            let _ = request.respond(tiny_http::Response::empty(200));
        }
    });
    (
        format!("http://127.0.0.1:{port}/hooks/SECRET-HOOK-TOKEN"),
        received,
    )
}

fn events_of(received: &Mutex<Vec<serde_json::Value>>, event: &str) -> Vec<serde_json::Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v["event"] == event)
        .cloned()
        .collect()
}

/// The child's output; a watchdog kills it (and the test fails) when it runs longer than
/// `limit`. Reading and waiting at once: a large DOM cannot fill the pipe and stall it.
fn output_within(child: Child, limit: Duration) -> std::process::Output {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = finished.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < limit {
            if watched.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: kill has no memory-safety preconditions; the group is our child's own.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    });
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        started.elapsed() < limit,
        "chromium did not finish within {limit:?}"
    );
    output
}

/// Headless Chromium's DOM of `url` after rendering, and a screenshot at `png`.
fn browser_render(url: &str, png: &Path) -> String {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Chromium is needed for the status page test: apt-get install chromium (.ci/run does)");
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(chromium)
            // Its own group: the watchdog kills the renderers holding the pipes too.
            .process_group(0)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--disable-dev-shm-usage",
                "--window-size=420,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running chromium");
        let output = output_within(output, Duration::from_secs(90));
        assert!(
            output.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    run(&[&format!("--screenshot={}", png.display())]);
    String::from_utf8(run(&["--dump-dom"]).stdout).unwrap()
}

/// The connection string with `secret` as its password. A URL (PGMIRROR_TEST_URL) that
/// already has one cannot be checked this way and is refused.
fn secret_source(url: &str, secret: &str) -> String {
    if !url.contains("://") {
        // The harness's key=value string; its local connections are trusted.
        return format!("{url} password={secret}");
    }
    let (scheme, rest) = url.split_once("://").unwrap();
    match rest.split_once('@') {
        Some((user, host)) if !user.contains(':') => format!("{scheme}://{user}:{secret}@{host}"),
        Some(_) => panic!("PGMIRROR_TEST_URL has a password: this test cannot check that one is never shown"),
        None => format!("{scheme}://postgres:{secret}@{rest}"),
    }
}

#[test]
fn a_refusing_database_alerts_fails_health_and_recovers() {
    let db = app_db("serve_refusing");
    let admin = existing_db("postgres");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let (webhook, received) = webhook_receiver();
    let command_out = tmp.path().join("command.env");
    let command = tmp.path().join("notify.sh");
    fs::write(
        &command,
        format!(
            "#!/bin/sh\nenv | sort >> {:?}\necho ---- >> {:?}\n",
            command_out, command_out
        ),
    )
    .unwrap();
    fs::set_permissions(&command, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // A password in the source (unused: the harness trusts local connections) must never
    // be shown.
    let secret = "s3cr3t-pw-4711";
    let source = secret_source(&db.url, secret);
    let config = write_config(
        tmp.path(),
        &format!(
            "source = {source:?}\ndir = {dir:?}\n\
             [[jobs]]\nname = \"nightly\"\nrun = \"backup\"\nschedule = \"*/2 * * * * *\"\nat_start = true\nretries = 0\n\
             [alerts]\nwebhook = {webhook:?}\ncommand = {command:?}\non = [\"failure\", \"recovery\"]\n"
        ),
    );
    // A password the service's environment holds (as compose's env file does) is not
    // the alert command's business.
    let served = Served::start(&config, &[("POSTGRES_PASSWORD", "env-file-secret-99")], &[]);
    wait_for("a first backup", Duration::from_secs(20), || {
        !backups(&dir).is_empty()
    });
    admin.execute(&format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
        db.name
    ));
    wait_for("a failure alert", Duration::from_secs(20), || {
        !events_of(&received, "failure").is_empty()
    });
    let failure = events_of(&received, "failure").remove(0);
    assert_eq!(failure["job"], "nightly");
    assert_eq!(failure["outcome"], "failure");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("not currently accepting connections"),
        "{failure}"
    );
    assert!(failure["host"].as_str().is_some_and(|h| !h.is_empty()));
    let (code, reason) = served.get("/healthz");
    assert_eq!(code, 503, "{reason}");
    assert!(reason.contains("job nightly failed"), "{reason}");
    let (_, metrics_text) = served.get("/metrics");
    assert!(
        sample(
            &metrics(&metrics_text),
            "pgmirror_job_runs_total",
            &[("job", "nightly"), ("outcome", "failure")]
        ) >= 1.0
    );

    // The status page, rendered by a real browser: the backups and the failed run.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("serve-status-page.png");
    let dom = browser_render(&served.url("/"), &png);
    for (id, _) in backups(&dir) {
        assert!(
            dom.contains(&format!("data-id=\"{id}\"")),
            "backup {id} is not on the page:\n{dom}"
        );
    }
    assert!(
        dom.contains("data-outcome=\"failure\""),
        "no failed run on the page:\n{dom}"
    );
    assert!(dom.contains("not currently accepting connections"), "{dom}");
    assert!(
        dom.contains("id=\"chart-size\"") && dom.contains("<polyline"),
        "{dom}"
    );
    assert!(
        fs::metadata(&png).unwrap().len() > 1000,
        "the screenshot is empty"
    );

    admin.execute(&format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
        db.name
    ));
    wait_for("a recovery alert", Duration::from_secs(20), || {
        !events_of(&received, "recovery").is_empty()
    });
    let recovery = events_of(&received, "recovery").remove(0);
    assert_eq!(recovery["outcome"], "success");
    assert!(
        recovery["backup_id"].is_string() && recovery["size_bytes"].as_u64() > Some(0),
        "{recovery}"
    );
    wait_for("healthy again", Duration::from_secs(10), || {
        served.get("/healthz").0 == 200
    });
    // Recovery once, failure once per failed run: no success alerts (not asked for).
    assert_eq!(events_of(&received, "recovery").len(), 1);
    assert!(events_of(&received, "success").is_empty());
    wait_for("the alert command", Duration::from_secs(10), || {
        fs::read_to_string(&command_out).is_ok_and(|t| t.contains("PGMIRROR_EVENT=recovery"))
    });
    let command_env = fs::read_to_string(&command_out).unwrap();
    assert!(
        command_env.contains("PGMIRROR_JOB=nightly") && command_env.contains("PGMIRROR_OUTCOME=failure"),
        "{command_env}"
    );
    assert!(command_env.contains("\nPATH="), "{command_env}");
    assert!(!command_env.contains("env-file-secret-99"), "{command_env}");

    let (_, status) = served.get("/status");
    let (_, page) = served.get("/");
    let log = served.log_text();
    let status_code = served.stop(Duration::from_secs(15));
    assert!(status_code.success());
    let bodies = serde_json::to_string(&*received.lock().unwrap()).unwrap();
    for (what, text) in [
        ("log", &log),
        ("webhook bodies", &bodies),
        ("/status", &status),
        ("page", &page),
        ("command", &command_env),
    ] {
        assert!(!text.contains(secret), "the password is in the {what}");
        assert!(
            !text.contains("SECRET-HOOK-TOKEN"),
            "the webhook token is in the {what}"
        );
    }
}

/// `pgmirror backup` of `db` into `dir`, as an operator runs it by hand.
fn one_shot_backup(db: &TestDb, dir: &Path) {
    let output = pgmirror(&[
        "backup",
        "--quiet",
        "--source",
        &db.url,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn sigterm_mid_backup_exits_within_the_grace_period_leaving_nothing_partial() {
    let db = app_db("serve_sigterm");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    one_shot_backup(&db, &dir);
    let config = write_config(
        tmp.path(),
        &format!(
            "source = {:?}\ndir = {dir:?}\n[[jobs]]\nname = \"nightly\"\nrun = \"backup\"\nat_start = true\n",
            db.url
        ),
    );
    // Every row of Prompts pauses a second: the backup is still running when the signal comes.
    let served = Served::start(
        &config,
        &[("PGMIRROR_FAILPOINT", "decode:Prompts:pause")],
        &["--grace", "1s"],
    );
    wait_for("the backup to be under way", Duration::from_secs(20), || {
        !partials(&dir).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    let status = served.stop(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
    assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
    assert_eq!(backups(&dir).len(), 1, "only the one-shot backup");
    let verify = pgmirror(&["verify", "--dir", dir.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let status = pgmirror(&["status", "--json", "--dir", dir.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["jobs"]["nightly"]["outcome"], "cancelled", "{status}");
}

#[test]
fn sighup_reloads_and_a_broken_config_keeps_the_old_schedule() {
    let db = app_db("serve_reload");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let job = |name: &str, schedule: &str| {
        format!(
            "source = {:?}\ndir = {dir:?}\n[[jobs]]\nname = \"{name}\"\nrun = \"sql\"\nschedule = \"{schedule}\"\nsql = \"SELECT 1\"\n",
            db.url
        )
    };
    let config = write_config(tmp.path(), &job("tick", "* * * * * *"));
    let served = Served::start(&config, &[], &[]);
    wait_for("two runs", Duration::from_secs(10), || {
        served.count("tick", "job finished") >= 2
    });
    fs::write(&config, job("tick", "not a schedule")).unwrap();
    signal(&served.child, libc::SIGHUP);
    wait_for("the reload to fail", Duration::from_secs(10), || {
        served
            .events()
            .iter()
            .any(|e| e["message"] == "reload failed; keeping the config in force")
    });
    let failed = served
        .events()
        .into_iter()
        .find(|e| e["message"] == "reload failed; keeping the config in force");
    assert!(failed.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("not a schedule"));
    let before = served.count("tick", "job finished");
    wait_for("the old schedule to go on", Duration::from_secs(10), || {
        served.count("tick", "job finished") >= before + 2
    });
    fs::write(&config, job("renamed", "*/2 * * * * *")).unwrap();
    signal(&served.child, libc::SIGHUP);
    wait_for("the new job", Duration::from_secs(10), || {
        served.count("renamed", "job finished") >= 1
    });
    let ticks = served.count("tick", "job finished");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        served.count("tick", "job finished"),
        ticks,
        "the old job still runs after the reload"
    );
    assert!(served.stop(Duration::from_secs(15)).success());
}

#[test]
fn check_prints_next_runs_across_daylight_saving_changes_and_refuses_bad_configs() {
    let tmp = temp_dir();
    let config = write_config(
        tmp.path(),
        "source = 'host=/nonexistent dbname=app'\ndir = '/backups'\n\
         [[jobs]]\nname = \"nightly\"\nrun = \"backup\"\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n\
         [[jobs]]\nname = \"weekly\"\nrun = \"prune\"\nschedule = \"0 4 * * 0\"\n",
    );
    let check = |now: &str| {
        let output = pgmirror(&[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--check",
            "--now",
            now,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let spring = check("2026-03-28T12:00:00Z");
    assert!(
        spring.contains(
            "job nightly (backup): \"30 2 * * *\" in Europe/Berlin\n  next 2026-03-29T03:00:00+02:00\n  \
             next 2026-03-30T02:30:00+02:00\n  next 2026-03-31T02:30:00+02:00\n"
        ),
        "{spring}"
    );
    assert!(
        spring.contains("job weekly (prune): \"0 4 * * 0\" in UTC\n  next 2026-03-29T04:00:00+00:00"),
        "{spring}"
    );
    let autumn = check("2026-10-24T12:00:00Z");
    assert!(
        autumn.contains("next 2026-10-25T02:30:00+02:00\n  next 2026-10-26T02:30:00+01:00"),
        "{autumn}"
    );
    fs::write(
        &config,
        "dir = '/b'\n[[jobs]]\nname = \"x\"\nrun = \"backup\"\nschedule = \"0 25 * * *\"\n",
    )
    .unwrap();
    let refused = pgmirror(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("job \"x\"") && message.contains("0 25 * * *"),
        "{message}"
    );
}

#[test]
fn catch_up_runs_a_missed_job_once_at_start() {
    let db = app_db("serve_catch_up");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let config = write_config(
        tmp.path(),
        &format!(
            "source = {:?}\ndir = {dir:?}\n[[jobs]]\nname = \"daily\"\nrun = \"backup\"\nschedule = \"0 3 * * *\"\ncatch_up = true\n",
            db.url
        ),
    );
    // Never ran: its 03:00 passed without a run, so it runs at start...
    let served = Served::start(&config, &[], &[]);
    wait_for("the catch-up run", Duration::from_secs(20), || {
        served.count("daily", "job finished") == 1
    });
    assert!(served.stop(Duration::from_secs(15)).success());
    assert_eq!(backups(&dir).len(), 1);
    // ...and a restart after it does not run it again.
    let served = Served::start(&config, &[], &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(served.count("daily", "job started"), 0, "{}", served.log_text());
    assert!(served.stop(Duration::from_secs(15)).success());
    assert_eq!(backups(&dir).len(), 1);
}

#[test]
fn deployment_files_parse_and_point_at_the_health_endpoint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose = fs::read_to_string(root.join("docker/compose.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&compose).expect("docker/compose.yaml is YAML");
    let services = &docs[0]["services"];
    let pgmirror_service = &services["pgmirror"];
    assert!(!services["postgres"].is_badvalue(), "a postgres service");
    let volumes: Vec<&str> = pgmirror_service["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        volumes.contains(&"/media/main/AIPromptDossier/backups:/backups"),
        "{volumes:?}"
    );
    let health: Vec<&str> = pgmirror_service["healthcheck"]["test"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(health.iter().any(|part| part.contains("/healthz")), "{health:?}");
    assert!(pgmirror_service["env_file"]
        .as_vec()
        .is_some_and(|files| !files.is_empty()));
    assert!(
        compose
            .lines()
            .all(|line| !line.to_ascii_lowercase().contains("password:")),
        "no password in the compose file"
    );
    let build = pgmirror_service["build"]["dockerfile"].as_str().unwrap();
    assert!(
        root.join("docker").join(build).is_file() || root.join(build).is_file(),
        "{build}"
    );

    let unit = root.join("docker/pgmirror.service");
    let text = fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/pgmirror serve")
            && text.contains("ExecReload=/bin/kill -HUP $MAINPID")
    );
    if Path::new("/usr/bin/systemd-analyze").exists() {
        // The unit's binary is not installed here: verify a copy that points at this build.
        let copy_dir = temp_dir();
        let copy = copy_dir.path().join("pgmirror.service");
        fs::write(
            &copy,
            text.replace("/usr/local/bin/pgmirror", env!("CARGO_BIN_EXE_pgmirror")),
        )
        .unwrap();
        let output = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output()
            .unwrap();
        let complaints = String::from_utf8_lossy(&output.stderr).into_owned();
        let about_the_unit: Vec<&str> = complaints
            .lines()
            .filter(|l| l.contains("pgmirror.service"))
            .collect();
        assert!(about_the_unit.is_empty(), "systemd-analyze verify: {complaints}");
    }
}

#[test]
fn a_stale_set_alerts_once_and_fails_health_though_no_job_failed() {
    let db = app_db("serve_stale");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    one_shot_backup(&db, &dir);
    let (webhook, received) = webhook_receiver();
    let config = write_config(
        tmp.path(),
        &format!(
            "source = {:?}\ndir = {dir:?}\nmax_age = \"2s\"\n\
             [[jobs]]\nname = \"check\"\nrun = \"verify\"\nat_start = true\n\
             [alerts]\nwebhook = {webhook:?}\non = [\"stale\", \"failure\"]\n",
            db.url
        ),
    );
    let served = Served::start(&config, &[], &[]);
    wait_for("a stale alert", Duration::from_secs(20), || {
        !events_of(&received, "stale").is_empty()
    });
    let stale = events_of(&received, "stale").remove(0);
    assert!(
        stale["message"]
            .as_str()
            .unwrap()
            .contains("older than max_age 2s"),
        "{stale}"
    );
    assert!(stale["job"].is_null());
    wait_for("the verify job", Duration::from_secs(20), || {
        served.count("check", "job finished") == 1
    });
    let (code, reason) = served.get("/healthz");
    assert_eq!(code, 503);
    assert!(
        reason.contains("older than max_age") && !reason.contains("job check"),
        "{reason}"
    );
    assert_eq!(
        served.count("check", "job finished"),
        1,
        "the verify job succeeded"
    );
    // Once per stale spell, not once per check.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(events_of(&received, "stale").len(), 1);
    assert!(events_of(&received, "failure").is_empty());
    assert!(served.stop(Duration::from_secs(15)).success());
    // The one-shot status reads the same max_age from the config.
    let status = pgmirror(&["status", "--config", config.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stdout).contains("STALE"));
}

#[test]
fn connection_errors_are_retried_with_a_doubling_delay() {
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    // Nothing listens there: every connection is refused.
    let config = write_config(
        tmp.path(),
        &format!(
            "source = \"host=127.0.0.1 port={} user=nobody dbname=nothing connect_timeout=5\"\ndir = {dir:?}\n\
             [[jobs]]\nname = \"nightly\"\nrun = \"backup\"\nat_start = true\nretries = 2\nretry_delay = \"1s\"\n",
            free_port()
        ),
    );
    let served = Served::start(&config, &[], &[]);
    wait_for("the run to fail", Duration::from_secs(30), || {
        served.count("nightly", "job failed") == 1
    });
    let events = served.events();
    let retries: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["message"] == "connection failed; trying again")
        .collect();
    let delays: Vec<f64> = retries
        .iter()
        .map(|e| e["delay_seconds"].as_f64().unwrap())
        .collect();
    assert_eq!(delays, [1.0, 2.0], "{}", served.log_text());
    let failed = events.iter().find(|e| e["message"] == "job failed").unwrap();
    assert!(failed["duration_seconds"].as_f64().unwrap() >= 3.0, "{failed}");
    assert_eq!(served.count("nightly", "job started"), 1, "one run, three tries");
    assert!(served.stop(Duration::from_secs(15)).success());
}

#[test]
fn backup_jobs_copy_off_site_and_a_failed_copy_is_alerted_and_pruned_there_too() {
    let db = app_db("serve_offsite");
    let tmp = temp_dir();
    let dir = tmp.path().join("backups");
    let nas = tmp.path().join("nas");
    // A target that cannot be made: its directory would be under a regular file.
    let blocked = tmp.path().join("not-a-directory");
    fs::write(&blocked, "").unwrap();
    let (webhook, received) = webhook_receiver();
    let config = write_config(
        tmp.path(),
        &format!(
            "source = {:?}\ndir = {dir:?}\n\
             [[offsite]]\nname = \"nas\"\nurl = \"file://{}\"\n\
             [[offsite]]\nname = \"broken\"\nurl = \"file://{}/nas\"\n\
             [[jobs]]\nname = \"nightly\"\nrun = \"backup\"\nschedule = \"* * * * * *\"\nat_start = true\n\
             [[jobs]]\nname = \"prune\"\nrun = \"prune\"\nschedule = \"*/3 * * * * *\"\nkeep_last = 1\n\
             keep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\nkeep_yearly = 0\n\
             [alerts]\nwebhook = {webhook:?}\n",
            db.url,
            nas.display(),
            blocked.display()
        ),
    );
    let served = Served::start(&config, &[], &[]);
    wait_for("an offsite alert", Duration::from_secs(30), || {
        !events_of(&received, "offsite").is_empty()
    });
    let alert = events_of(&received, "offsite").remove(0);
    let backup = alert["backup_id"].as_str().unwrap().to_owned();
    assert_eq!(alert["job"], "nightly", "{alert}");
    assert!(
        alert["error"].as_str().unwrap().starts_with("broken: "),
        "{alert}"
    );
    assert!(alert["message"].as_str().unwrap().contains(&backup), "{alert}");
    // The good target holds it whole; the job itself succeeded.
    assert!(nas.join(&backup).join("manifest.json").is_file());
    assert!(events_of(&received, "failure").is_empty());
    // The prune job keeps one backup here and on the NAS; the broken target fails it.
    wait_for("a failed prune", Duration::from_secs(30), || {
        !events_of(&received, "failure").is_empty()
    });
    let failure = events_of(&received, "failure").remove(0);
    assert_eq!(failure["job"], "prune", "{failure}");
    assert!(
        failure["error"].as_str().unwrap().contains("offsite broken"),
        "{failure}"
    );
    wait_for("six backups", Duration::from_secs(30), || {
        served.count("nightly", "job finished") >= 6
    });
    let made = served.count("nightly", "job finished");
    assert!(served.stop(Duration::from_secs(20)).success());
    let status = pgmirror(&["status", "--json", "--config", config.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["offsite_failures"][0][0], "broken", "{status}");
    let local: Vec<String> = backups(&dir).into_iter().map(|(id, _)| id).collect();
    let mut remote: Vec<String> = fs::read_dir(&nas)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    remote.sort();
    assert!(local.len() < made, "prune deleted backups: {local:?} of {made}");
    // Backups and prunes take turns on the set: the NAS holds what the set holds, less
    // at most the copy the shutdown cut short, and nothing the prune deleted.
    assert!(
        remote.iter().all(|id| local.contains(id)),
        "{remote:?} vs {local:?}"
    );
    assert!(local.len() <= remote.len() + 1, "{remote:?} vs {local:?}");
}
