//! `pgmirror dump`: pg_dump into a partial file, verified, checksummed, renamed.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::manifest::{checksum, manifest_path, structural_check, Manifest};
use super::{table_pattern, tools, ArchiveFormat};
use crate::compress::write_private_json;
use crate::error::{Context, Error, Result};
use crate::pg::ConnectionSpec;

/// How a plain dump is compressed while it streams out of pg_dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainCompression {
    None,
    Zstd(i32),
    Gzip(u32),
}

#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub source: ConnectionSpec,
    /// The archive to write; or, with `dir`, None to name it `<database>_<YYYYmmdd_HHMMSS>`.
    pub output: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub format: ArchiveFormat,
    /// For custom/directory/tar: pg_dump's `--compress` value (default: zstd where pg_dump
    /// supports it, PostgreSQL 16+). For plain: see `plain_compression`.
    pub compress: Option<String>,
    pub plain_compression: PlainCompression,
    pub schema_only: bool,
    pub data_only: bool,
    pub tables: Vec<String>,
    pub exclude_tables: Vec<String>,
    pub exclude_table_data: Vec<String>,
    /// Parallel pg_dump workers (directory format only).
    pub jobs: Option<usize>,
    pub pg_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DumpSummary {
    pub path: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
}

async fn server_identity(source: &ConnectionSpec) -> Result<(String, i32, String)> {
    let client = source.connect().await?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version') AS version, \
             current_setting('server_version_num')::int4 AS version_num, current_database()::text AS database",
            &[],
        )
        .await
        .context("reading the server version")?;
    let q = "the server version";
    Ok((
        crate::pg::field(&row, q, "version")?,
        crate::pg::field(&row, q, "version_num")?,
        crate::pg::field(&row, q, "database")?,
    ))
}

/// `YYYYmmdd_HHMMSS` in UTC, as the backup guide's scripts name their files.
fn timestamp(now: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}_{}", &digits[..8], &digits[8..14])
}

fn file_name(database: &str, format: ArchiveFormat, plain: PlainCompression) -> String {
    let stamp = timestamp(SystemTime::now());
    let extension = match (format, plain) {
        (ArchiveFormat::Custom, _) => ".backup",
        (ArchiveFormat::Directory, _) => ".dir",
        (ArchiveFormat::Tar, _) => ".tar",
        (ArchiveFormat::Plain, PlainCompression::Zstd(_)) => ".sql.zst",
        (ArchiveFormat::Plain, PlainCompression::Gzip(_)) => ".sql.gz",
        (ArchiveFormat::Plain, PlainCompression::None) => ".sql",
    };
    format!("{database}_{stamp}{extension}")
}

fn private(path: &Path) -> Result<()> {
    let set = |p: &Path, mode| fs::set_permissions(p, fs::Permissions::from_mode(mode));
    if path.is_dir() {
        set(path, 0o700).with_context(|| format!("restricting {}", path.display()))?;
        for entry in fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            set(&entry.path(), 0o600).with_context(|| format!("restricting {}", entry.path().display()))?;
        }
        Ok(())
    } else {
        set(path, 0o600).with_context(|| format!("restricting {}", path.display()))
    }
}

pub fn dump(options: &DumpOptions) -> Result<DumpSummary> {
    if options.schema_only && options.data_only {
        return Err(Error::usage("--schema-only and --data-only exclude each other"));
    }
    if options.jobs.is_some_and(|j| j > 1) && options.format != ArchiveFormat::Directory {
        return Err(Error::usage(
            "--jobs needs --format directory (pg_dump dumps in parallel only into a directory)",
        ));
    }
    let started = Instant::now();
    let runtime = crate::pg::runtime()?;
    let (server_version, version_num, database) = runtime.block_on(server_identity(&options.source))?;
    let pg_dump = tools::find(
        "pg_dump",
        tools::server_major(version_num),
        options.pg_bin.as_deref(),
    )?;

    let path = match (&options.output, &options.dir) {
        (Some(output), _) => output.clone(),
        (None, Some(dir)) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join(file_name(&database, options.format, options.plain_compression))
        }
        (None, None) => return Err(Error::usage("give --output FILE or --dir DIR")),
    };
    // pg_dump creates the file (or directory) itself.
    let pending = crate::publish::Pending::reserve(&path, crate::publish::partial_path(&path))?;
    let partial_path = pending.path().to_path_buf();

    let mut command = tools::command(&pg_dump, &options.source);
    command.arg(options.format.flag()).arg("--no-password");
    let compression = match options.format {
        ArchiveFormat::Plain => match options.plain_compression {
            PlainCompression::None => "none".to_owned(),
            PlainCompression::Zstd(level) => format!("zstd:{level}"),
            PlainCompression::Gzip(level) => format!("gzip:{level}"),
        },
        _ => {
            let value = options
                .compress
                .clone()
                .or_else(|| (pg_dump.major >= 1600).then(|| "zstd".to_owned()));
            if let Some(value) = &value {
                command.arg(format!("--compress={value}"));
            }
            value.unwrap_or_else(|| "pg_dump default".to_owned())
        }
    };
    if options.format != ArchiveFormat::Plain {
        command.arg(format!("--file={}", partial_path.display()));
    }
    if let Some(jobs) = options.jobs {
        command.arg(format!("--jobs={jobs}"));
    }
    if options.schema_only {
        command.arg("--schema-only");
    }
    if options.data_only {
        command.arg("--data-only");
    }
    for (flag, names) in [
        ("--table", &options.tables),
        ("--exclude-table", &options.exclude_tables),
        ("--exclude-table-data", &options.exclude_table_data),
    ] {
        for name in names {
            command.arg(format!("{flag}={}", table_pattern(name)));
        }
    }
    let what = format!("pg_dump of {}", options.source.redacted());
    if options.format == ArchiveFormat::Plain {
        stream_plain(command, &partial_path, options.plain_compression, &what)?;
    } else {
        tools::run(command, &what)?;
    }

    // The check's errors already name the file.
    let tables = structural_check(
        &partial_path,
        options.format,
        pg_dump.major,
        options.pg_bin.as_deref(),
    )?;
    private(&partial_path)?;
    let (sha256, size_bytes) = checksum(&partial_path)?;
    pending.commit()?;
    let manifest = Manifest {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        format: options.format,
        compression,
        sha256,
        size_bytes,
        database,
        server_version,
        pg_dump_version: pg_dump.version.clone(),
        created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        duration_seconds: started.elapsed().as_secs_f64(),
        tables,
        verified: true,
        verify_method: match options.format {
            ArchiveFormat::Plain => "decompressed to the end-of-dump marker".to_owned(),
            _ => "pg_restore --list".to_owned(),
        },
    };
    let manifest_file = manifest_path(&path);
    write_private_json(&manifest_file, &manifest)?;
    Ok(DumpSummary {
        path,
        manifest_path: manifest_file,
        manifest,
    })
}

/// Runs a plain pg_dump, compressing its stdout in-process into `partial`.
fn stream_plain(
    mut command: std::process::Command,
    partial: &Path,
    compression: PlainCompression,
    what: &str,
) -> Result<()> {
    let context = || format!("writing {}", partial.display());
    // Pending::reserve removed any stale partial: create it exclusively, never through a link.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(context)?;
    let mut running = tools::spawn(command.stdin(Stdio::null()).stdout(Stdio::piped()), what)?;
    let mut stdout = running
        .child
        .stdout
        .take()
        .ok_or_else(|| Error::unsupported(what.to_owned(), "no stdout"))?;
    let buffered = std::io::BufWriter::with_capacity(1 << 16, file);
    let copied: std::io::Result<()> = (|| match compression {
        PlainCompression::None => {
            let mut out = buffered;
            std::io::copy(&mut stdout, &mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        }
        PlainCompression::Zstd(level) => {
            let mut encoder = zstd::Encoder::new(buffered, level)?;
            std::io::copy(&mut stdout, &mut encoder)?;
            encoder
                .finish()?
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
        }
        PlainCompression::Gzip(level) => {
            let mut encoder = flate2::write::GzEncoder::new(buffered, flate2::Compression::new(level));
            std::io::copy(&mut stdout, &mut encoder)?;
            encoder
                .finish()?
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
        }
    })();
    // Drain what is left so pg_dump can finish even if our side failed.
    let _ = std::io::copy(&mut stdout.by_ref().take(u64::MAX), &mut std::io::sink());
    running.wait(what)?;
    copied.with_context(context)
}
