//! Finding pg_dump, pg_restore and psql of a suitable major version, and running them with
//! the connection in their environment and their stderr captured for our errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::error::{Context, Error, Result};
use crate::pg::ConnectionSpec;

/// A PostgreSQL client program and its major version.
#[derive(Debug, Clone)]
pub struct Tool {
    pub path: PathBuf,
    pub major: u32,
    /// What `--version` printed, e.g. `pg_dump (PostgreSQL) 15.18`.
    pub version: String,
}

/// Parses the major version from `pg_dump (PostgreSQL) 15.18 (Debian ...)` or `9.6.24`.
pub fn parse_major(version_output: &str) -> Option<u32> {
    let number = version_output
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let mut parts = number.split('.');
    let leading_digits = |part: &str| part.chars().take_while(char::is_ascii_digit).collect::<String>();
    let first: u32 = leading_digits(parts.next()?).parse().ok()?;
    // Before 10 the major version had two parts (9.6).
    if first < 10 {
        Some(
            first * 100
                + parts
                    .next()
                    .and_then(|p| leading_digits(p).parse().ok())
                    .unwrap_or(0),
        )
    } else {
        Some(first * 100)
    }
}

/// Runs `path --version`; the error says whether it could not be run or printed no version.
fn version_of(path: &Path) -> Result<Tool> {
    let context = || format!("running {} --version", path.display());
    let output = Command::new(path)
        .arg("--version")
        .output()
        .with_context(context)?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match parse_major(&text) {
        Some(major) => Ok(Tool {
            path: path.to_path_buf(),
            major,
            version: text,
        }),
        None => Err(Error::unsupported(
            context(),
            format!(
                "it printed no PostgreSQL version ({}; stdout {text:?}, stderr {:?})",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        )),
    }
}

/// Shows a major version as PostgreSQL names it (15, 9.6).
pub fn major_name(major: u32) -> String {
    if major >= 1000 {
        (major / 100).to_string()
    } else {
        format!("{}.{}", major / 100, major % 100)
    }
}

/// The server's major version in the same encoding as [`parse_major`] (15 → 1500).
pub fn server_major(version_num: i32) -> u32 {
    let version_num = version_num.max(0) as u32;
    if version_num >= 100_000 {
        version_num / 10_000 * 100
    } else {
        version_num / 10_000 * 100 + version_num / 100 % 100
    }
}

fn installed_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    dirs.into_iter().map(|(_, dir)| dir).collect()
}

/// Finds `program` for a server of major version `needed`: the one in `pg_bin` if given,
/// else the first on PATH, else the newest under /usr/lib/postgresql/*/bin. A program that
/// is too old is an error naming both versions and what to do.
pub fn find(program: &str, needed: u32, pg_bin: Option<&Path>) -> Result<Tool> {
    let on_path = || {
        std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(program))
                    .find(|p| p.is_file())
            })
            .unwrap_or(None)
    };
    let chosen = match pg_bin {
        Some(dir) => Some(dir.join(program)),
        None => on_path().or_else(|| {
            installed_dirs()
                .into_iter()
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        }),
    };
    let Some(path) = chosen else {
        return Err(Error::unsupported(
            format!("finding {program}"),
            format!(
                "no {program} on PATH or under /usr/lib/postgresql/*/bin; install the PostgreSQL {} client \
                 (Debian/Ubuntu: apt-get install postgresql-client-{}) or pass --pg-bin DIR",
                major_name(needed),
                major_name(needed)
            ),
        ));
    };
    let tool = version_of(&path)?;
    if tool.major >= needed {
        return Ok(tool);
    }
    let better = installed_dirs()
        .into_iter()
        .filter_map(|dir| version_of(&dir.join(program)).ok())
        .find(|t| t.major >= needed);
    let advice = match better {
        Some(t) => format!("a suitable one is installed: pass --pg-bin {}", t.path.parent().unwrap_or(&t.path).display()),
        None => format!(
            "install the PostgreSQL {} client (Debian/Ubuntu: apt-get install postgresql-client-{}) or pass --pg-bin DIR",
            major_name(needed),
            major_name(needed)
        ),
    };
    Err(Error::unsupported(
        format!("choosing {program}"),
        format!(
            "{} is version {}, older than the server's {}; {program} must be at least the server's version: {advice}",
            tool.path.display(),
            major_name(tool.major),
            major_name(needed)
        ),
    ))
}

/// A command for `tool` with the connection in its environment (never in argv) and the
/// ambient libpq variables removed, so only `spec` decides where it connects.
pub fn command(tool: &Tool, spec: &ConnectionSpec) -> Command {
    let mut command = Command::new(&tool.path);
    for name in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGSERVICE",
        "PGOPTIONS",
    ] {
        command.env_remove(name);
    }
    command.envs(spec.libpq_env());
    command
}

/// A started child: its stderr collected on a thread (so a chatty child never blocks on a
/// full pipe), and registered so that a stop request (SIGINT/SIGTERM) terminates it.
pub struct Running {
    pub child: Child,
    stderr: std::thread::JoinHandle<String>,
    _stop: crate::stop::Registration,
}

/// Starts `command` with stderr captured; the caller sets stdin and stdout.
pub fn spawn(command: &mut Command, what: &str) -> Result<Running> {
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stop = crate::stop::register_child(child.id());
    let stderr = child.stderr.take();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    });
    Ok(Running {
        child,
        stderr,
        _stop: stop,
    })
}

impl Running {
    /// Waits for the child; a failure carries the last lines of its stderr.
    pub fn wait(self, what: &str) -> Result<String> {
        let Running {
            mut child,
            stderr,
            _stop: registration,
        } = self;
        let status = child.wait().with_context(|| format!("waiting for {what}"))?;
        // Reaped: its pid may be reused from now on, so a stop must no longer signal it.
        drop(registration);
        let stderr = stderr.join().unwrap_or_default();
        if status.success() {
            return Ok(stderr);
        }
        // A child that failed after a stop request was stopped by it (pg_dump cancels and
        // exits 1, psql exits 3): that is the stop, not a failure to explain.
        if crate::stop::stop_requested() {
            return Err(Error::new(what.to_owned(), crate::error::ErrorKind::Interrupted));
        }
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(Error::unsupported(
            what.to_owned(),
            format!(
                "failed ({status}): {}",
                if tail.is_empty() {
                    "no message".to_owned()
                } else {
                    tail.join("\n")
                }
            ),
        ))
    }
}

/// Runs a command to completion with stderr captured; returns its stdout.
pub fn run(mut command: Command, what: &str) -> Result<Vec<u8>> {
    let mut running = spawn(command.stdin(Stdio::null()).stdout(Stdio::piped()), what)?;
    let mut stdout = Vec::new();
    if let Some(mut out) = running.child.stdout.take() {
        out.read_to_end(&mut stdout)
            .with_context(|| format!("reading the output of {what}"))?;
    }
    running.wait(what)?;
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_old_and_new_numbering() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(1500)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(906));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta1"), Some(1700));
        assert_eq!(server_major(150018), 1500);
        assert_eq!(server_major(90624), 906);
        assert_eq!(major_name(906), "9.6");
        assert_eq!(major_name(1500), "15");
    }
}
