//! `--listen`: the status page, `/healthz`, `/status` and `/metrics`, read-only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tiny_http::{Header, Method, Request, Response, Server};

use super::state::SetView;
use super::Service;
use crate::error::{Error, Result};

pub fn start(address: SocketAddr, service: Arc<Service>) -> Result<std::thread::JoinHandle<()>> {
    let server = Server::http(address)
        .map_err(|e| Error::usage(format!("--listen {address}: cannot listen there: {e}")))?;
    std::thread::Builder::new()
        .name("pgmirror-http".into())
        .spawn(move || {
            while !service.finished() {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(request)) => respond(&service, request),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "the HTTP listener failed");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .map_err(|e| Error::new("starting the HTTP thread", crate::error::ErrorKind::Io(e)))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid static header")
}

fn respond(service: &Service, request: Request) {
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let (status, content_type, body) = if !matches!(request.method(), Method::Get | Method::Head) {
        (405, "text/plain; charset=utf-8", "only GET and HEAD\n".to_owned())
    } else {
        route(service, &path)
    };
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    if let Err(error) = request.respond(response) {
        tracing::debug!(%error, "an HTTP client went away");
    }
}

fn route(service: &Service, path: &str) -> (u16, &'static str, String) {
    let dir = service.dir();
    let set = SetView::read(&dir);
    let now = Utc::now();
    match path {
        "/" => {
            let free = crate::backupset::free_bytes(&dir).ok();
            let state = service.state();
            (
                200,
                "text/html; charset=utf-8",
                super::page::render(&state, &set, free, now),
            )
        }
        "/healthz" => {
            let problems = service.state().health_problems(&set, now);
            if problems.is_empty() {
                (200, "text/plain; charset=utf-8", "ok\n".into())
            } else {
                (503, "text/plain; charset=utf-8", problems.join("\n") + "\n")
            }
        }
        "/status" => match status_json(service, &set, now) {
            Ok(json) => (200, "application/json", json),
            Err(error) => (500, "text/plain; charset=utf-8", format!("{error}\n")),
        },
        "/metrics" => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            service.state().metrics(&set, now),
        ),
        _ => (
            404,
            "text/plain; charset=utf-8",
            "not found: try /, /healthz, /status or /metrics\n".into(),
        ),
    }
}

/// `status --json`, with what only the service knows: what runs, what runs next, health.
fn status_json(service: &Service, set: &SetView, now: chrono::DateTime<Utc>) -> Result<String> {
    let dir = service.dir();
    let mut status = match crate::backupset::status(&dir) {
        Ok(status) => serde_json::to_value(status),
        Err(_) if !dir.exists() => Ok(serde_json::json!({ "dir": dir.display().to_string(), "backups": [] })),
        Err(error) => return Err(error),
    }
    .map_err(|e| Error::unsupported("encoding the status", e.to_string()))?;
    let state = service.state();
    let service_part = serde_json::json!({
        "started": state.started.to_rfc3339(),
        "running": state.running,
        "next_runs": state.next_runs.iter().map(|(job, at)| (job.clone(), at.to_rfc3339())).collect::<std::collections::BTreeMap<_, _>>(),
        "problems": state.health_problems(set, now),
    });
    if let Some(object) = status.as_object_mut() {
        object.insert("service".into(), service_part);
    }
    serde_json::to_string_pretty(&status)
        .map_err(|e| Error::unsupported("encoding the status", e.to_string()))
}
