//! Progress display: an indicatif bar on a terminal, nothing otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shared by all workers; every method is cheap and thread-safe.
pub struct Progress {
    bar: ProgressBar,
    bytes: AtomicU64,
    active: Mutex<Vec<String>>,
}

impl Progress {
    /// A bar over `estimated_rows`, drawn only when stderr is a terminal and not `quiet`.
    pub fn new(estimated_rows: u64, quiet: bool) -> Self {
        Self::drawn(Some(estimated_rows.max(1)), quiet, |bar| {
            bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/~{human_len} rows {rate} eta {eta}\n  {msg}",
            )
            .map(|style| {
                style.with_key("rate", |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.0} rows/s", state.per_sec());
                })
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
            )
        })
    }

    /// A status line without a bar (`sync --follow`), drawn only on a terminal and not `quiet`.
    pub fn status_line(quiet: bool) -> Self {
        Self::drawn(None, quiet, |bar| {
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            )
        })
    }

    /// A bar of `length` styled by `style`, ticking on a terminal, hidden otherwise.
    fn drawn(length: Option<u64>, quiet: bool, style: impl FnOnce(&ProgressBar)) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let bar = if visible {
            ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        style(&bar);
        if visible {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Progress {
            bar,
            bytes: AtomicU64::new(0),
            active: Mutex::new(Vec::new()),
        }
    }

    pub fn rows_done(&self, rows: u64, bytes: u64) {
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.bar.inc(rows);
        if self.bar.position() > self.bar.length().unwrap_or(0) {
            self.bar.set_length(self.bar.position());
        }
        self.refresh_message(total);
    }

    pub fn table_started(&self, name: &str) {
        if let Ok(mut active) = self.active.lock() {
            active.push(name.to_owned());
        }
        self.refresh_message(self.bytes.load(Ordering::Relaxed));
    }

    pub fn table_finished(&self, name: &str) {
        if let Ok(mut active) = self.active.lock() {
            if let Some(at) = active.iter().position(|n| n == name) {
                active.remove(at);
            }
        }
        self.refresh_message(self.bytes.load(Ordering::Relaxed));
    }

    pub fn set_stage(&self, stage: &str) {
        self.bar.set_message(stage.to_owned());
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn refresh_message(&self, bytes: u64) {
        if self.bar.is_hidden() {
            return;
        }
        let active = self.active.lock().map(|a| a.join(", ")).unwrap_or_default();
        self.bar
            .set_message(format!("{} read; reading: {active}", HumanBytes(bytes)));
    }
}
