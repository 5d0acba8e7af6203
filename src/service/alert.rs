//! Alerts: a webhook POST and/or a command, delivered on a thread of their own so that a
//! slow or dead receiver never delays the schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use super::config::{AlertEvent, Alerts};

/// The facts of one alert: the webhook's JSON body, and the command's PGMIRROR_* variables.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub event: AlertEvent,
    pub job: Option<String>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub started: Option<String>,
    pub duration_seconds: Option<f64>,
    pub backup_id: Option<String>,
    pub size_bytes: Option<u64>,
    pub host: String,
    /// One line for people.
    pub message: String,
}

/// Tries per webhook delivery, the first retry after this delay, doubling.
const WEBHOOK_TRIES: u32 = 3;
const WEBHOOK_FIRST_RETRY: Duration = Duration::from_secs(1);

/// The address without what may be a secret: user info, path (Slack and Teams keep their
/// tokens there) and query. For logs and error messages.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let hidden = rest.len() > authority.len() || authority.contains('@');
    format!("{scheme}://{host}{}", if hidden { "/…" } else { "" })
}

pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or the result is cut at the first NUL below.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len() - 1) };
    if result != 0 {
        return "unknown".into();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// The sending end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Alerter {
    sender: Sender<(Arc<Alerts>, Alert)>,
}

impl Alerter {
    pub fn start() -> (Alerter, std::thread::JoinHandle<()>) {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name("pgmirror-alerts".into())
            .spawn(move || deliver_all(receiver))
            .expect("spawning the alert thread");
        (Alerter { sender }, handle)
    }

    /// Queues the alert if the config asks for its event.
    pub fn send(&self, alerts: &Arc<Alerts>, alert: Alert) {
        if alerts.on.contains(&alert.event) && (alerts.webhook.is_some() || alerts.command.is_some()) {
            let _ = self.sender.send((alerts.clone(), alert));
        }
    }
}

fn deliver_all(receiver: Receiver<(Arc<Alerts>, Alert)>) {
    for (alerts, alert) in receiver {
        if let Some(url) = &alerts.webhook {
            post_webhook(url, alerts.timeout, &alert);
        }
        if let Some(command) = &alerts.command {
            run_command(command, alerts.timeout, &alert);
        }
    }
}

fn post_webhook(url: &str, timeout: Duration, alert: &Alert) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(true)
        .build()
        .into();
    let shown = redact_url(url);
    let body = match serde_json::to_vec(alert) {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(target: "pgmirror::alert", %error, "alert could not be encoded");
            return;
        }
    };
    let mut delay = WEBHOOK_FIRST_RETRY;
    for attempt in 1..=WEBHOOK_TRIES {
        match agent.post(url).content_type("application/json").send(&body[..]) {
            Ok(_) => {
                tracing::info!(target: "pgmirror::alert", event = alert.event.name(), webhook = %shown, "alert delivered");
                return;
            }
            Err(error) => {
                // ureq's error text may hold the URL: name only the redacted one.
                let reason = describe_ureq_error(&error);
                tracing::warn!(target: "pgmirror::alert", event = alert.event.name(), webhook = %shown, attempt, error = %reason, "alert webhook failed");
                if attempt < WEBHOOK_TRIES {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
    }
}

fn describe_ureq_error(error: &ureq::Error) -> String {
    match error {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => io.kind().to_string(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => match other.to_string() {
            text if text.contains("://") => "request failed".into(),
            text => text,
        },
    }
}

fn alert_environment(alert: &Alert) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("PGMIRROR_EVENT", alert.event.name().to_owned()),
        ("PGMIRROR_HOST", alert.host.clone()),
        ("PGMIRROR_MESSAGE", alert.message.clone()),
    ];
    let optional = [
        ("PGMIRROR_JOB", alert.job.clone()),
        ("PGMIRROR_OUTCOME", alert.outcome.clone()),
        ("PGMIRROR_ERROR", alert.error.clone()),
        ("PGMIRROR_STARTED", alert.started.clone()),
        (
            "PGMIRROR_DURATION",
            alert.duration_seconds.map(|d| format!("{d:.3}")),
        ),
        ("PGMIRROR_BACKUP", alert.backup_id.clone()),
        ("PGMIRROR_SIZE", alert.size_bytes.map(|s| s.to_string())),
    ];
    vars.extend(
        optional
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?))),
    );
    vars
}

/// What the alert command inherits of the service's environment: enough to run a
/// script, nothing else (an env file often holds the database's passwords).
fn passed_on(name: &str) -> bool {
    matches!(
        name,
        "PATH" | "HOME" | "USER" | "LOGNAME" | "SHELL" | "LANG" | "TZ" | "TMPDIR"
    ) || name.starts_with("LC_")
}

/// Runs the alert command in a process group of its own, killed (with whatever it
/// started) when it outlives `timeout`. Not registered with the stop: the alerts of a
/// shutdown must still go out. Its output is not read, so a child it leaves behind cannot
/// hold this thread.
fn run_command(command: &std::path::Path, timeout: Duration, alert: &Alert) {
    use std::os::unix::process::CommandExt;
    let mut process = std::process::Command::new(command);
    let spawned = process
        .env_clear()
        .envs(std::env::vars_os().filter(|(name, _)| name.to_str().is_some_and(passed_on)))
        .envs(alert_environment(alert))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(target: "pgmirror::alert", command = %command.display(), %error, "alert command could not start");
            return;
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                tracing::warn!(target: "pgmirror::alert", command = %command.display(), %status, "alert command failed");
                return;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                if let Ok(group) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill has no memory-safety preconditions; the group is the
                    // child's own (process_group(0)), not yet reaped.
                    unsafe {
                        libc::kill(-group, libc::SIGKILL);
                    }
                }
                let _ = child.wait();
                tracing::warn!(target: "pgmirror::alert", command = %command.display(), "alert command killed after its timeout");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_secrets() {
        assert_eq!(redact_url("https://hooks.example"), "https://hooks.example");
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/SECRETTOKEN"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:8080?token=x"),
            "http://127.0.0.1:8080/…"
        );
        assert!(!redact_url("ftp://a:secret@b").contains("secret"));
    }
}
