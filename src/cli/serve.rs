//! `pgmirror serve`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use pgmirror::service::{self, ServeOptions, ServiceConfig};

use super::{parse_duration, print_stdout};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Run the config file's jobs on their schedules, with alerts, health and metrics.
///
/// Each [[jobs]] table names a job, what it runs (backup, prune, verify, sync or sql), a
/// cron schedule (5 fields, or 6 with leading seconds) read in `timezone` (default UTC),
/// and the one-shot command's options by their long names. A job never overlaps itself:
/// a run due while the previous one goes is skipped, logged and counted. Jobs writing the
/// same backup directory run one at a time. Every outcome is recorded in the set
/// (`status` shows it) and logged on stderr, one line per start, end, skip and failure.
///
///   source = "postgres://backup@db/prompts"
///   dir = "/backups"
///   max_age = "26h"          # /healthz and the stale alert: the newest backup's age
///   [[jobs]]
///   name = "nightly"
///   run = "backup"
///   schedule = "0 3 * * *"
///   timezone = "Europe/Berlin"
///   at_start = true          # also run once when the service starts
///   catch_up = true          # run at start if the last scheduled time was missed
///   retries = 3              # after connection errors, waiting retry_delay, doubling
///   retry_delay = "30s"
///   kind = "both"
///   [[jobs]]
///   name = "logs"
///   run = "sql"              # one statement in its own transaction
///   schedule = "30 4 * * *"
///   sql = "DELETE FROM \"ApplicationLogs\" WHERE \"TimeStamp\" < now() - interval '30 days'"
///   statement_timeout = "5m"
///   [alerts]
///   webhook = "https://hooks.example/backup"   # POST JSON on each event
///   command = "/usr/local/bin/notify"          # PGMIRROR_JOB, PGMIRROR_OUTCOME, PGMIRROR_ERROR...
///   on = ["failure", "recovery", "stale"]      # add "success" for every run
///
/// With --listen: GET / (a status page), /healthz (200, or 503 with the reasons),
/// /status (status --json plus the service's view) and /metrics (Prometheus).
/// SIGTERM/SIGINT: no new runs; running jobs get --grace, then are cancelled cleanly;
/// exit 0. SIGHUP: reload the config (an invalid one is logged and the old one kept).
///
/// Examples:
///   pgmirror serve --config /etc/pgmirror.toml --listen 127.0.0.1:9187
///   pgmirror serve --config /etc/pgmirror.toml --check
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// The config file with [[jobs]] [default: PGMIRROR_CONFIG].
    #[arg(long, value_name = "FILE", env = "PGMIRROR_CONFIG")]
    config: PathBuf,
    /// Serve the status page, /healthz, /status and /metrics here (e.g. 127.0.0.1:9187).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// How long running jobs may finish after SIGTERM before they are cancelled.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    grace: Duration,
    /// Validate the config, print each job's next 3 run times, exit.
    #[arg(long)]
    check: bool,
    /// With --check: count from this time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME", requires = "check")]
    now: Option<String>,
    /// With --check: print JSON.
    #[arg(long, requires = "check")]
    json: bool,
    /// Log lines as text or JSON (one object per line), on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        return check(&args);
    }
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false);
    match args.log_format {
        LogFormat::Text => subscriber.with_ansi(false).init(),
        LogFormat::Json => subscriber.json().flatten_event(true).init(),
    }
    pgmirror::stop::install_service_signal_handlers();
    service::serve(&ServeOptions {
        config: args.config,
        listen: args.listen,
        grace: args.grace,
    })?;
    Ok(ExitCode::SUCCESS)
}

fn check(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServiceConfig::load(&args.config)?;
    let now = match &args.now {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| anyhow::anyhow!("--now {text:?}: {e} (e.g. 2026-03-28T12:00:00Z)"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let plans = service::check(&config, now, 3);
    if args.json {
        print_stdout(&serde_json::to_string_pretty(&plans)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "config {} is valid; backups in {}\n",
        args.config.display(),
        config.dir.display()
    );
    for plan in &plans {
        let when = match (&plan.schedule, &plan.timezone) {
            (Some(schedule), Some(zone)) => format!("{schedule:?} in {zone}"),
            _ => "no schedule".into(),
        };
        let extras = [(plan.at_start, ", at start"), (plan.catch_up, ", catch up")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, text)| *text)
            .collect::<String>();
        text.push_str(&format!("job {} ({}): {when}{extras}\n", plan.name, plan.run));
        for next in &plan.next_runs {
            text.push_str(&format!("  next {next}\n"));
        }
    }
    print_stdout(text.trim_end())?;
    Ok(ExitCode::SUCCESS)
}
