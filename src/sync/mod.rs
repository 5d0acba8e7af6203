//! `pgmirror sync`: a mirror that follows its database through logical decoding.
//!
//! ```text
//! --init: checks → publication (chosen tables) → pgoutput slot → export whose snapshot is
//!         taken after the slot, its tables locked first; `_pgmirror_sync` records slot,
//!         snapshot and positions in the same file
//! sync:   L := insert LSN, once flushed; peek pgoutput (binary) up to L over an ordinary connection →
//!         decode (pgoutput.rs) → skip what the copy holds (visibility.rs) or what was
//!         applied → apply whole transactions (apply.rs) + applied LSN in one SQLite
//!         transaction → COMMIT → advance the slot
//! ```
//! Nothing is advanced on the server before SQLite holds it durably, and a transaction
//! whose commit is before the recorded applied LSN is skipped, so a crash at any point
//! neither loses nor repeats a change (notes/replication.md §8.3).

mod apply;
mod pgoutput;
mod setup;
mod visibility;

use std::path::PathBuf;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::Client;

use crate::config::{ExportOptions, ReplicaStart};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::mirror::{Mirror, SyncState};
use crate::pg::catalog::{self, RelationKind};
use crate::pg::ConnectionSpec;
pub use apply::ChangeCounts;
use pgoutput::{Lsn, Message};
pub use setup::{Dropped, SlotStatus};

/// `pgmirror sync --init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The export that makes the initial copy (source, output, jobs, table filter).
    pub export: ExportOptions,
    /// The slot and publication name; a fresh `pgmirror_...` name when `None`.
    pub slot: Option<String>,
}

/// What `--init` did.
#[derive(Debug, serde::Serialize)]
pub struct InitSummary {
    pub slot: String,
    pub publication: String,
    /// Tables whose changes are followed.
    pub followed: Vec<String>,
    /// Copied by the export but not followed (materialized views).
    pub not_followed: Vec<String>,
    pub export: crate::ExportSummary,
}

/// Sets up replication and writes the initial mirror. On any failure the slot and the
/// publication it created are dropped again: an abandoned slot would pin WAL on the source.
pub fn init(options: &InitOptions) -> Result<InitSummary> {
    let name = options.slot.clone().unwrap_or_else(setup::new_name);
    setup::check_name(&name)?;
    let _lock = lock_replica(&options.export.output)?;
    refuse_existing_replica(&options.export.output)?;
    let runtime = crate::pg::runtime()?;
    let client = runtime.block_on(options.export.source.connect())?;
    let catalog = runtime.block_on(crate::stop::until_stopped(None, catalog::load(&client)))?;
    runtime.block_on(setup::check_server(&client, &catalog))?;
    let selected = crate::plan::select(&catalog, &options.export.filter, &[])?;
    runtime.block_on(setup::check_tables(&client, &catalog, &selected))?;
    let lock_first = setup::qualified_names(&selected);
    if lock_first.is_empty() {
        return Err(Error::usage(
            "no table to follow: the selection holds no tables (views and materialized views are not followed)",
        ));
    }
    let followed: Vec<String> = selected
        .iter()
        .filter(|r| matches!(r.kind, RelationKind::Table | RelationKind::PartitionedTable))
        .map(|r| crate::mirror::sqlite_table_name(&r.schema, &r.name))
        .collect();
    let not_followed: Vec<String> = selected
        .iter()
        .filter(|r| r.kind == RelationKind::MaterializedView)
        .map(|r| r.display_name())
        .collect();
    let system_identifier = runtime.block_on(setup::system_identifier(&client))?;
    runtime.block_on(setup::check_names_free(&client, &name))?;

    runtime.block_on(setup::create_publication(&client, &name, &lock_first))?;
    let mut slot_created = false;
    let created = runtime
        .block_on(setup::create_slot(&client, &name))
        .and_then(|start_lsn| {
            slot_created = true;
            // Tests make transactions commit between the slot and the snapshot here.
            crate::failpoint::hit("sync-init", "slot-created");
            let mut export = options.export.clone();
            export.replica = Some(ReplicaStart {
                lock_first,
                state: SyncState {
                    slot: name.clone(),
                    publication: name.clone(),
                    source: options.export.source.without_password(),
                    system_identifier,
                    snapshot: None,
                    consistent_lsn: String::new(),
                    applied_lsn: start_lsn,
                    applied_commit_time: None,
                    tables: followed.clone(),
                    resyncs: Vec::new(),
                },
            });
            crate::pipeline::export(&export)
        });
    match created {
        Ok(export) => Ok(InitSummary {
            slot: name.clone(),
            publication: name,
            followed,
            not_followed,
            export,
        }),
        Err(error) => {
            // A fresh connection: the first may be the one that failed.
            let cleanup = async {
                let client = options.export.source.connect().await?;
                setup::drop_created(&client, slot_created.then_some(name.as_str()), &name).await
            };
            if let Err(cleanup_error) = runtime.block_on(cleanup) {
                return Err(Error::new(
                    error.context.clone(),
                    ErrorKind::Unsupported(format!(
                        "{}; dropping the new slot and publication {name} failed too ({cleanup_error}): drop them \
                         with pgmirror sync --drop --slot {name}",
                        error.kind
                    )),
                ));
            }
            Err(error)
        }
    }
}

fn refuse_existing_replica(path: &std::path::Path) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let Ok(mirror) = Mirror::open(path) else {
        return Ok(());
    };
    if let Some(state) = SyncState::read(&mirror.conn, &mirror.path)? {
        return Err(Error::usage(format!(
            "{} is a replica already (slot {}); replacing it would leave that slot pinning WAL on the \
             source: run pgmirror sync --drop on it first, or choose another --mirror",
            mirror.path, state.slot
        )));
    }
    Ok(())
}

/// `pgmirror sync` and `sync --follow`.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Where the changes come from; `None` takes the connection the mirror recorded.
    pub source: Option<ConnectionSpec>,
    pub mirror: PathBuf,
    /// Keep applying until stopped, polling every `interval`.
    pub follow: bool,
    pub interval: Duration,
    /// Stop with a warning when the slot retains more WAL than this.
    pub max_lag: Option<i64>,
    /// Changes asked for per decoding call (whole transactions always arrive whole).
    pub changes_per_call: i32,
    /// `--resync`: how long to wait for each table's lock, and for running transactions.
    pub lock_wait_timeout: Duration,
    pub quiet: bool,
}

impl SyncOptions {
    pub fn new(mirror: PathBuf) -> Self {
        SyncOptions {
            source: None,
            mirror,
            follow: false,
            interval: Duration::from_secs(1),
            max_lag: None,
            changes_per_call: 50_000,
            lock_wait_timeout: Duration::from_secs(10),
            quiet: true,
        }
    }
}

/// What a sync run did and where the mirror stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncSummary {
    #[serde(flatten)]
    pub counts: ChangeCounts,
    pub applied_lsn: String,
    /// The source commit time of the last applied transaction.
    pub applied_commit_time: Option<String>,
    /// Bytes of WAL written on the source since the applied position.
    pub lag_bytes: i64,
    /// Seconds between the last applied commit and now, when changes are still pending; 0
    /// when caught up.
    pub lag_seconds: f64,
    /// WAL the slot keeps on the source.
    pub retained_wal_bytes: i64,
    pub wal_status: String,
    /// Whether the initial copy's overlap with the stream is behind it.
    pub consistent: bool,
    pub seconds: f64,
    /// `--max-lag` was exceeded.
    pub max_lag_exceeded: bool,
    /// Stopped by SIGINT/SIGTERM (`--follow`'s normal end).
    pub interrupted: bool,
}

impl SyncSummary {
    pub fn line(&self) -> String {
        format!(
            "applied {} transactions ({} inserts, {} updates, {} deletes, {} truncates; {} skipped) in {:.1}s; \
             at {}, {} bytes behind, slot retains {} bytes",
            self.counts.transactions,
            self.counts.inserts,
            self.counts.updates,
            self.counts.deletes,
            self.counts.truncates,
            self.counts.skipped_transactions,
            self.seconds,
            self.applied_lsn,
            self.lag_bytes,
            self.retained_wal_bytes
        )
    }
}

/// Applies everything committed on the source so far (and, with `follow`, keeps doing so
/// until a stop is requested).
pub fn sync(options: &SyncOptions) -> Result<SyncSummary> {
    let _lock = lock_replica(&options.mirror)?;
    sync_locked(options)
}

/// One run at a time on a replica: two would both read the same applied position and
/// apply the same transactions.
fn lock_replica(mirror: &std::path::Path) -> Result<crate::lock::Lock> {
    // The same file under another name (a symlink) takes the same lock.
    let mirror = &std::fs::canonicalize(mirror).unwrap_or_else(|_| mirror.to_path_buf());
    let mut name = mirror.as_os_str().to_owned();
    name.push(".sync-lock");
    crate::lock::Lock::acquire_file(std::path::Path::new(&name), mirror, "replica")
}

/// The replica, opened for changes, and its state.
fn open_replica(path: &std::path::Path) -> Result<(Mirror, SyncState)> {
    let mirror = Mirror::open_writable(path)?;
    let state = SyncState::read(&mirror.conn, &mirror.path)?.ok_or_else(|| {
        Error::usage(format!(
            "{} is a plain mirror, not a replica; make one with pgmirror sync --init",
            mirror.path
        ))
    })?;
    prepare_mirror(&mirror)?;
    Ok((mirror, state))
}

fn sync_locked(options: &SyncOptions) -> Result<SyncSummary> {
    let started = Instant::now();
    let (mirror, mut state) = open_replica(&options.mirror)?;
    let runtime = crate::pg::runtime()?;
    let (_, client) = runtime.block_on(connect_to_source(options.source.as_ref(), &state))?;
    let catalog = runtime.block_on(crate::stop::until_stopped(None, catalog::load(&client)))?;
    let mut follower = Follower {
        applier: apply::Applier::new(&mirror, &state.tables, &catalog)?,
        mirror: &mirror,
        snapshot: state
            .snapshot
            .as_deref()
            .map(|text| parse_snapshot(text, &mirror.path))
            .transpose()?,
        resyncs: state
            .resyncs
            .iter()
            .map(|r| {
                Ok((
                    r.table.clone(),
                    parse_snapshot(&r.snapshot, &mirror.path)?,
                    parse_lsn(&r.lsn, &mirror.path)?,
                ))
            })
            .collect::<Result<_>>()?,
        confirmed: Lsn::default(),
        last_commit_micros: None,
        sequences: mirror
            .sequences
            .iter()
            .map(|s| ((s.schema.clone(), s.name.clone()), s.last_value))
            .collect(),
        applied: parse_lsn(&state.applied_lsn, &mirror.path)?,
        consistent_lsn: parse_lsn(&state.consistent_lsn, &mirror.path)?,
        commit_time: state.applied_commit_time.clone(),
        options,
    };
    let ending = runtime.block_on(follower.run(&client, &mut state))?;
    let status = match runtime.block_on(setup::slot_status(&client, &state.slot)) {
        Ok(status) => status,
        // A stop may have cancelled the statement; the summary still says what was applied.
        Err(_) if ending.interrupted => SlotStatus::default(),
        Err(e) => return Err(e),
    };
    Ok(SyncSummary {
        counts: follower.applier.counts,
        applied_lsn: follower.applied.to_string(),
        applied_commit_time: follower.commit_time.clone(),
        lag_bytes: status.lag_bytes.max(0),
        lag_seconds: if ending.caught_up {
            0.0
        } else {
            seconds_since(follower.commit_time.as_deref())
        },
        retained_wal_bytes: status.retained_bytes,
        wal_status: status.wal_status,
        consistent: follower.snapshot.is_none(),
        seconds: started.elapsed().as_secs_f64(),
        max_lag_exceeded: ending.max_lag_exceeded,
        interrupted: ending.interrupted,
    })
}

/// Connects to the replica's source (the given one, else the one it recorded) and checks
/// that it is the same cluster.
async fn connect_to_source(
    source: Option<&ConnectionSpec>,
    state: &SyncState,
) -> Result<(ConnectionSpec, Client)> {
    let spec = source_spec(source, Some(state))?;
    let client = spec.connect().await?;
    let identifier = setup::system_identifier(&client).await?;
    if identifier != state.system_identifier {
        return Err(Error::unsupported(
            format!("source {}", spec.redacted()),
            format!(
                "it is another cluster than the mirror's (system identifier {identifier}, the mirror's {})",
                state.system_identifier
            ),
        ));
    }
    Ok((spec, client))
}

/// The connection given, else the one the replica recorded, else the environment's.
fn source_spec(source: Option<&ConnectionSpec>, state: Option<&SyncState>) -> Result<ConnectionSpec> {
    match (source, state) {
        (Some(spec), _) => Ok(spec.clone()),
        (None, Some(state)) => ConnectionSpec::parse(&state.source),
        (None, None) => ConnectionSpec::parse(""),
    }
}

/// `sync --resync TABLE...`: copies the tables again (adding those not followed yet to the
/// publication), each from a new snapshot whose transactions the stream then skips for
/// that table, and replaces them in the replica in one SQLite transaction; then syncs.
pub fn resync(options: &SyncOptions, tables: &[String]) -> Result<SyncSummary> {
    let _lock = lock_replica(&options.mirror)?;
    {
        let (mirror, mut state) = open_replica(&options.mirror)?;
        let runtime = crate::pg::runtime()?;
        let (spec, client) = runtime.block_on(connect_to_source(options.source.as_ref(), &state))?;
        let catalog = runtime.block_on(crate::stop::until_stopped(None, catalog::load(&client)))?;
        let filter = crate::config::TableFilter::new(&[], tables, &[])?;
        let selected = crate::plan::select(&catalog, &filter, &[])?;
        runtime.block_on(setup::check_tables(&client, &catalog, &selected))?;
        let qualified = setup::qualified_names(&selected);
        if qualified.len() != selected.len() {
            return Err(Error::usage(
                "--resync takes tables; views and materialized views are not followed",
            ));
        }
        let mut added = Vec::new();
        let copied = runtime
            .block_on(publish_missing(
                &client,
                &state.publication,
                &selected,
                options.lock_wait_timeout,
                &mut added,
            ))
            .and_then(|_| {
                runtime.block_on(setup::wait_for_running_transactions(
                    &client,
                    options.lock_wait_timeout,
                ))
            })
            .and_then(|_| {
                // A bug while copying still takes the added tables out of the publication.
                crate::error::catch_panic(
                    || "copying the tables again".to_owned(),
                    || copy_and_graft(options, &spec, &mirror, &mut state, &selected, qualified),
                )
            });
        if let Err(error) = copied {
            // A table published but not followed would stop every later sync.
            for table in &added {
                let _ = runtime.block_on(setup::remove_from_publication(&client, &state.publication, table));
            }
            return Err(error);
        }
    }
    sync_locked(options)
}

/// Adds the tables the publication lacks, noting which it added.
async fn publish_missing(
    client: &Client,
    publication: &str,
    selected: &[&crate::pg::catalog::Relation],
    timeout: Duration,
    added: &mut Vec<String>,
) -> Result<()> {
    for relation in selected {
        if !setup::publishes(client, publication, &relation.schema, &relation.name).await? {
            setup::add_to_publication(client, publication, &relation.qualified_name(), timeout).await?;
            added.push(relation.qualified_name());
        }
    }
    Ok(())
}

/// Exports `selected` from a new snapshot (its tables locked first) and swaps them into
/// the replica with the copy's snapshot and position, in one SQLite transaction.
fn copy_and_graft(
    options: &SyncOptions,
    spec: &ConnectionSpec,
    mirror: &Mirror,
    state: &mut SyncState,
    selected: &[&crate::pg::catalog::Relation],
    lock_first: Vec<String>,
) -> Result<()> {
    let names: Vec<String> = selected
        .iter()
        .map(|r| crate::mirror::sqlite_table_name(&r.schema, &r.name))
        .collect();
    let copy = resync_copy_path(&options.mirror);
    let mut export = ExportOptions::new(spec.clone(), copy.clone());
    // Names as patterns that match only themselves (a table may be called "v[12]").
    let patterns: Vec<String> = selected
        .iter()
        .map(|r| glob::Pattern::escape(&r.display_name()))
        .collect();
    export.filter = crate::config::TableFilter::new(&[], &patterns, &[])?;
    export.quiet = true;
    export.lock_wait_timeout = options.lock_wait_timeout;
    export.replica = Some(ReplicaStart {
        lock_first,
        state: state.clone(),
    });
    let grafted = crate::pipeline::export(&export).and_then(|_| {
        let fresh = Mirror::open(&copy)?;
        let point = SyncState::read(&fresh.conn, &fresh.path)?.ok_or_else(|| {
            Error::new(
                format!("reading {}", copy.display()),
                ErrorKind::Internal("the copy has no _pgmirror_sync".into()),
            )
        })?;
        for name in &names {
            if !state.tables.contains(name) {
                state.tables.push(name.clone());
            }
            state.resyncs.retain(|r| &r.table != name);
            state.resyncs.push(crate::mirror::TableResync {
                table: name.clone(),
                snapshot: point.snapshot.clone().unwrap_or_default(),
                lsn: point.consistent_lsn.clone(),
            });
        }
        crate::failpoint::hit("sync-resync", "graft");
        crate::mirror::graft_tables(&mirror.conn, &copy, &names, |conn| state.write(conn))
            .with_context(|| format!("replacing the copied tables in {}", mirror.path))
    });
    let _ = std::fs::remove_file(&copy);
    grafted
}

/// Where `--resync` writes its copy: beside the replica, on the same filesystem.
fn resync_copy_path(mirror: &std::path::Path) -> PathBuf {
    let mut name = mirror.as_os_str().to_owned();
    name.push(".resync");
    PathBuf::from(name)
}

/// Where a replica stands, for `pgmirror status --mirror`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicaStatus {
    pub mirror: String,
    pub slot: String,
    pub applied_lsn: String,
    pub applied_commit_time: Option<String>,
    /// Whether the initial copy's overlap with the stream is behind it.
    pub consistent: bool,
    pub tables: usize,
    #[serde(flatten)]
    pub slot_status: SlotStatus,
}

/// Reads a replica's state and its slot's health without applying anything.
pub fn status(source: Option<&ConnectionSpec>, path: &std::path::Path) -> Result<ReplicaStatus> {
    let mirror = Mirror::open(path)?;
    let state = SyncState::read(&mirror.conn, &mirror.path)?
        .ok_or_else(|| Error::usage(format!("{} is a plain mirror, not a replica", mirror.path)))?;
    let runtime = crate::pg::runtime()?;
    let (_, client) = runtime.block_on(connect_to_source(source, &state))?;
    let slot_status = runtime.block_on(setup::slot_status(&client, &state.slot))?;
    Ok(ReplicaStatus {
        mirror: mirror.path.clone(),
        slot: state.slot,
        applied_lsn: state.applied_lsn,
        applied_commit_time: state.applied_commit_time,
        consistent: state.snapshot.is_none(),
        tables: state.tables.len(),
        slot_status,
    })
}

/// Removes the slot and publication; the mirror (if given and present) stays a plain mirror.
pub fn drop(
    source: Option<&ConnectionSpec>,
    mirror: Option<&std::path::Path>,
    slot: Option<&str>,
) -> Result<Dropped> {
    let _lock = match mirror {
        Some(path) if path.is_file() => Some(lock_replica(path)?),
        _ => None,
    };
    let opened = match mirror {
        Some(path) if path.is_file() => Some(Mirror::open_writable(path)?),
        _ => None,
    };
    let state = match &opened {
        Some(mirror) => SyncState::read(&mirror.conn, &mirror.path)?,
        None => None,
    };
    if let (Some(named), Some(state)) = (slot, &state) {
        if named != state.slot {
            return Err(Error::usage(format!(
                "the replica's slot is {}, not {named}; dropping {named} would leave {} pinning WAL: \
                 leave out --slot, or --mirror",
                state.slot, state.slot
            )));
        }
    }
    let (slot, publication) = match (slot, &state) {
        (Some(slot), _) => (slot.to_owned(), slot.to_owned()),
        (None, Some(state)) => (state.slot.clone(), state.publication.clone()),
        (None, None) => {
            return Err(Error::usage(match mirror {
                Some(path) if path.is_file() => format!(
                    "{} is not a replica; name the slot to drop with --slot",
                    path.display()
                ),
                _ => "no mirror to read the slot's name from: name it with --slot".to_owned(),
            }))
        }
    };
    setup::check_name(&slot)?;
    let spec = source_spec(source, state.as_ref())?;
    let runtime = crate::pg::runtime()?;
    let client = runtime.block_on(spec.connect())?;
    let dropped = runtime.block_on(setup::drop_replication(&client, &slot, &publication))?;
    if let (Some(mirror), Some(_)) = (&opened, &state) {
        SyncState::remove(&mirror.conn).with_context(|| format!("making {} a plain mirror", mirror.path))?;
    }
    Ok(dropped)
}

fn parse_snapshot(text: &str, path: &str) -> Result<visibility::Snapshot> {
    visibility::Snapshot::parse(text).ok_or_else(|| {
        Error::unsupported(
            format!("mirror {path}"),
            format!("_pgmirror_sync has an unreadable snapshot {text:?}"),
        )
    })
}

fn parse_lsn(text: &str, path: &str) -> Result<Lsn> {
    Lsn::parse(text).ok_or_else(|| {
        Error::unsupported(
            format!("mirror {path}"),
            format!("_pgmirror_sync has an unreadable position {text:?}"),
        )
    })
}

/// WAL mode so readers see committed states while changes are applied; full sync so a
/// commit is on disk before the slot is advanced past it.
fn prepare_mirror(mirror: &Mirror) -> Result<()> {
    mirror
        .conn
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; \
             PRAGMA busy_timeout = 5000;",
        )
        .with_context(|| format!("opening {} for changes", mirror.path))?;
    mirror.conn.set_prepared_statement_cache_capacity(256);
    Ok(())
}

fn seconds_since(time: Option<&str>) -> f64 {
    time.and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Microseconds since 2000-01-01 UTC as RFC 3339.
fn commit_time_text(micros: i64) -> String {
    const UNIX_TO_2000: u64 = 946_684_800;
    // RFC 3339 has four-digit years: the end of 9999 at most.
    const LAST_MICROS: u64 = 252_455_615_999_999_999;
    let time = std::time::UNIX_EPOCH
        + Duration::from_secs(UNIX_TO_2000)
        + Duration::from_micros((micros.max(0) as u64).min(LAST_MICROS));
    let mut text = String::new();
    let _ = std::fmt::Write::write_fmt(
        &mut text,
        format_args!("{}", humantime::format_rfc3339_micros(time)),
    );
    text
}

/// How a run ended.
#[derive(Default)]
struct Ending {
    caught_up: bool,
    max_lag_exceeded: bool,
    interrupted: bool,
}

/// Changes in one SQLite transaction before it is committed (whole source transactions).
const CHANGES_PER_COMMIT: u64 = 100_000;

struct Follower<'m> {
    applier: apply::Applier<'m>,
    mirror: &'m Mirror,
    /// The initial copy's snapshot, until the stream is past it.
    snapshot: Option<visibility::Snapshot>,
    /// Tables copied again by --resync: (table, its copy's snapshot, the position past it).
    resyncs: Vec<(String, visibility::Snapshot, Lsn)>,
    /// The mirror's sequences and the values last recorded for them.
    sequences: std::collections::HashMap<(String, String), Option<i64>>,
    applied: Lsn,
    consistent_lsn: Lsn,
    /// The slot's confirmed position: nothing is advanced below it.
    confirmed: Lsn,
    /// RFC 3339 time of the last applied commit, as recorded.
    commit_time: Option<String>,
    /// The last applied commit's time as the stream sends it, formatted only when recorded.
    last_commit_micros: Option<i64>,
    options: &'m SyncOptions,
}

impl Follower<'_> {
    async fn run(&mut self, client: &Client, state: &mut SyncState) -> Result<Ending> {
        let progress = crate::progress::Progress::status_line(self.options.quiet || !self.options.follow);
        let ending = match self.rounds(client, state, &progress).await {
            // SIGINT/SIGTERM is how --follow is meant to end, wherever it lands.
            Err(e) if self.options.follow && crate::stop::stop_requested() && e.is_stop() => Ok(Ending {
                interrupted: true,
                ..Ending::default()
            }),
            other => other,
        };
        progress.finish();
        ending
    }

    async fn rounds(
        &mut self,
        client: &Client,
        state: &mut SyncState,
        progress: &crate::progress::Progress,
    ) -> Result<Ending> {
        let mut ending = Ending::default();
        // A zero interval would poll without pause.
        let interval = self.options.interval.max(Duration::from_millis(10));
        let mut idle = interval;
        loop {
            let round = self.catch_up(client, state).await?;
            ending.caught_up = true;
            let status = setup::slot_status(client, &state.slot).await?;
            if self
                .options
                .max_lag
                .is_some_and(|limit| status.retained_bytes > limit)
            {
                ending.max_lag_exceeded = true;
                return Ok(ending);
            }
            if !self.options.follow {
                return Ok(ending);
            }
            progress.set_stage(&format!(
                "at {}: {} transactions applied, {} bytes behind, the slot keeps {} bytes of WAL",
                self.applied, self.applier.counts.transactions, status.lag_bytes, status.retained_bytes
            ));
            // Poll at the interval while changes come; back off to 10x when idle.
            idle = if round > 0 {
                interval
            } else {
                idle.saturating_mul(2).min(interval.saturating_mul(10))
            };
            if sleep_unless_stopped(idle).await {
                ending.interrupted = true;
                return Ok(ending);
            }
        }
    }

    /// Applies everything committed up to the flush position at the start; returns the
    /// number of transactions applied.
    async fn catch_up(&mut self, client: &Client, state: &mut SyncState) -> Result<u64> {
        let before = self.applier.counts.transactions;
        // A lost or missing slot is an error that says what to do, before decoding fails.
        let status = setup::slot_status(client, &state.slot).await?;
        self.confirmed = Lsn::parse(&status.confirmed_flush_lsn).unwrap_or_default();
        let (target, complete) = decodable_position(client).await?;
        loop {
            crate::stop::check_stop()?;
            let messages = crate::stop::until_stopped(None, self.apply_call(client, state, target)).await;
            let messages = match messages {
                Ok(messages) => messages,
                Err(e) => {
                    self.keep_complete_transactions(state);
                    return Err(e);
                }
            };
            self.advance(client, state).await?;
            // Fewer rows than asked for: decoding reached the target. Each call decodes
            // again from the slot's restart position, so an empty call is not free.
            if messages < self.options.changes_per_call.max(1) as u64 {
                break;
            }
        }
        if complete && self.applied < target {
            // Nothing of ours before `target`, a record boundary every record before which
            // was decodable: the slot may let go of the WAL up to it.
            self.applied = target;
            self.commit(state, false)?;
            self.advance(client, state).await?;
        }
        self.record_sequences(client).await?;
        Ok(self.applier.counts.transactions - before)
    }

    /// Sequences are not in the change stream: their values are read after the changes are
    /// applied, so each is at least what any applied row took from it.
    async fn record_sequences(&mut self, client: &Client) -> Result<()> {
        if self.sequences.is_empty() {
            return Ok(());
        }
        let rows = client
            .query(
                "SELECT n.nspname::text AS schema_name, c.relname::text AS name, \
                        CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') THEN pg_sequence_last_value(c.oid) END AS last_value \
                 FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace",
                &[],
            )
            .await
            .context("reading the source's sequences")?;
        let q = "the sequences";
        let mut changed = Vec::new();
        for row in &rows {
            let key = (
                crate::pg::field::<String>(row, q, "schema_name")?,
                crate::pg::field::<String>(row, q, "name")?,
            );
            let value: Option<i64> = crate::pg::field(row, q, "last_value")?;
            if let Some(recorded) = self.sequences.get_mut(&key) {
                if *recorded != value {
                    *recorded = value;
                    changed.push((key, value));
                }
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let conn = &self.mirror.conn;
        let context = || format!("recording sequence values in {}", self.mirror.path);
        conn.execute_batch("BEGIN IMMEDIATE").with_context(context)?;
        let written = changed
            .iter()
            .try_for_each(|((schema, name), value)| {
                crate::mirror::record_sequence_value(conn, schema, name, *value)
            })
            .and_then(|_| conn.execute_batch("COMMIT"));
        if written.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        written.with_context(context)
    }

    /// One decoding call: its messages applied and committed. Returns how many came.
    async fn apply_call(&mut self, client: &Client, state: &mut SyncState, target: Lsn) -> Result<u64> {
        let sql = "SELECT lsn::text AS lsn, data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, $3, \
                   'proto_version', '1', 'publication_names', $4, 'binary', 'true')";
        let publication = setup::publication_option(&state.publication);
        let target_text = target.to_string();
        let slot = state.slot.clone();
        let context = || format!("reading changes from replication slot {slot}");
        let stream = client
            .query_raw(
                sql,
                [
                    &state.slot as &(dyn postgres_types::ToSql + Sync),
                    &target_text,
                    &self.options.changes_per_call,
                    &publication,
                ],
            )
            .await
            .with_context(context)?;
        let mut stream = pin!(stream);
        self.mirror
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .with_context(|| format!("starting a transaction on {}", self.mirror.path))?;
        let mut messages = 0u64;
        let mut skipping = false;
        let mut changes_since_commit = 0u64;
        let mut in_transaction = false;
        let mut current_xid = 0;
        let mut current_final_lsn = Lsn::default();
        while let Some(row) = stream.next().await {
            let row = row.with_context(context)?;
            let lsn_text: &str = crate::pg::field(&row, "a change", "lsn")?;
            let data: &[u8] = crate::pg::field(&row, "a change", "data")?;
            let at = apply::At {
                lsn: Lsn::parse(lsn_text).unwrap_or_default(),
            };
            messages += 1;
            let message = pgoutput::decode(data).map_err(|e| {
                Error::new(
                    format!("replication slot {slot}, change at LSN {}", at.lsn),
                    ErrorKind::Unsupported(e.to_string()),
                )
            })?;
            match message {
                Message::Begin { final_lsn, xid } => {
                    if in_transaction {
                        return Err(Error::unsupported(
                            context(),
                            format!("a BEGIN at {} inside a transaction", at.lsn),
                        ));
                    }
                    in_transaction = true;
                    current_xid = xid;
                    current_final_lsn = final_lsn;
                    // Only a transaction that committed before the copy's snapshot can be in it.
                    let in_copy = final_lsn < self.consistent_lsn
                        && self.snapshot.as_ref().is_some_and(|s| s.sees(xid));
                    skipping = final_lsn < self.applied || in_copy;
                    if skipping {
                        self.applier.counts.skipped_transactions += 1;
                    } else {
                        self.applier.begin_transaction()?;
                    }
                }
                Message::Commit {
                    end_lsn, commit_time, ..
                } => {
                    if !in_transaction {
                        return Err(Error::unsupported(
                            context(),
                            format!("a COMMIT at {} outside a transaction", at.lsn),
                        ));
                    }
                    in_transaction = false;
                    if !skipping {
                        self.applier.end_transaction()?;
                        self.applier.counts.transactions += 1;
                        self.last_commit_micros = Some(commit_time);
                    }
                    self.applied = self.applied.max(end_lsn);
                    skipping = false;
                    if changes_since_commit >= CHANGES_PER_COMMIT {
                        self.commit(state, true)?;
                        changes_since_commit = 0;
                    }
                }
                Message::Relation(relation) => self.applier.relation(&relation)?,
                Message::Type | Message::Origin | Message::Logical => {}
                _ if !in_transaction => {
                    return Err(Error::unsupported(
                        context(),
                        format!("a change at {} outside a transaction", at.lsn),
                    ));
                }
                _ if skipping => {}
                Message::Insert { relation, .. }
                | Message::Update { relation, .. }
                | Message::Delete { relation, .. }
                    if self.copied_again(relation, current_xid, current_final_lsn) =>
                {
                    self.applier.counts.changes_in_copies += 1;
                }
                Message::Insert { relation, new } => {
                    self.applier.insert(relation, &new, at)?;
                    changes_since_commit += 1;
                }
                Message::Update { relation, old, new } => {
                    self.applier.update(relation, old.as_ref(), &new, at)?;
                    changes_since_commit += 1;
                }
                Message::Delete {
                    relation,
                    old: (kind, old),
                } => {
                    self.applier.delete(relation, kind, &old, at)?;
                    changes_since_commit += 1;
                }
                Message::Truncate { relations, .. } => {
                    let relations: Vec<u32> = relations
                        .into_iter()
                        .filter(|&r| !self.copied_again(r, current_xid, current_final_lsn))
                        .collect();
                    self.applier.truncate(&relations, at)?;
                    changes_since_commit += 1;
                }
            }
        }
        if in_transaction {
            return Err(Error::unsupported(
                context(),
                "the decoding call ended inside a transaction",
            ));
        }
        self.commit(state, false)?;
        Ok(messages)
    }

    /// Whether a change of `relation` in the transaction (`xid`, committing at `final_lsn`)
    /// is in a --resync copy already.
    fn copied_again(&self, relation: u32, xid: u32, final_lsn: Lsn) -> bool {
        if self.resyncs.is_empty() {
            return false;
        }
        let Some(table) = self.applier.table_name(relation) else {
            return false;
        };
        self.resyncs
            .iter()
            .any(|(name, snapshot, lsn)| name == table && final_lsn < *lsn && snapshot.sees(xid))
    }

    /// After a failure: undoes the unfinished source transaction and commits the whole ones
    /// before it, so what was applied is kept; if even that fails, nothing of the call is.
    fn keep_complete_transactions(&mut self, state: &mut SyncState) {
        if self.mirror.conn.is_autocommit() {
            return;
        }
        let kept = self
            .applier
            .rollback_transaction()
            .and_then(|_| self.commit(state, false));
        if kept.is_err() {
            let _ = self.mirror.conn.execute_batch("ROLLBACK");
            let _ = self.applier.reload_row_counts();
        }
    }

    /// Records the position with the changes and commits them; `reopen` starts the next
    /// transaction.
    fn commit(&mut self, state: &mut SyncState, reopen: bool) -> Result<()> {
        let conn = &self.mirror.conn;
        let context = || format!("committing changes to {}", self.mirror.path);
        if conn.is_autocommit() {
            conn.execute_batch("BEGIN IMMEDIATE").with_context(context)?;
        }
        if self.snapshot.is_some() && self.applied >= self.consistent_lsn {
            self.snapshot = None;
        }
        let applied = self.applied;
        self.resyncs.retain(|(_, _, lsn)| *lsn > applied);
        state
            .resyncs
            .retain(|r| Lsn::parse(&r.lsn).is_some_and(|lsn| lsn > applied));
        if let Some(micros) = self.last_commit_micros.take() {
            self.commit_time = Some(commit_time_text(micros));
        }
        state.applied_lsn = self.applied.to_string();
        state.applied_commit_time = self.commit_time.clone();
        state.snapshot = match self.snapshot {
            Some(_) => state.snapshot.take(),
            None => None,
        };
        self.applier.record_row_counts()?;
        state.write(conn).with_context(context)?;
        crate::failpoint::hit("sync-commit", "before");
        conn.execute_batch("COMMIT").with_context(context)?;
        crate::failpoint::hit("sync-commit", "after");
        if reopen {
            conn.execute_batch("BEGIN IMMEDIATE").with_context(context)?;
        }
        Ok(())
    }

    /// Lets the slot go of everything the mirror holds durably.
    async fn advance(&mut self, client: &Client, state: &SyncState) -> Result<()> {
        // The replica's lock makes this run the slot's only consumer: its position is ours.
        if self.applied <= self.confirmed {
            return Ok(());
        }
        let target = self.applied.to_string();
        client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&state.slot, &target],
            )
            .await
            .with_context(|| format!("advancing replication slot {} to {target}", state.slot))?;
        self.confirmed = self.applied;
        Ok(())
    }
}

/// How long to wait for WAL already written to reach the disk (asynchronous commit leaves
/// it to the WAL writer, which flushes within a few wal_writer_delay).
const FLUSH_WAIT: Duration = Duration::from_secs(3);

/// The position up to which to decode, and whether every transaction that committed
/// before it can be decoded now: the current insert position (a record boundary) once the
/// server has flushed up to it (decoding reads only flushed WAL), else the flush position,
/// which may fall inside a record and so is only a limit for this call, never a place to
/// advance an idle slot to.
async fn decodable_position(client: &Client) -> Result<(Lsn, bool)> {
    let context = "reading the source's WAL position";
    let row = client
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text AS inserted, pg_current_wal_flush_lsn()::text AS flushed",
            &[],
        )
        .await
        .context(context)?;
    let read = |row: &tokio_postgres::Row, column: &str| -> Result<Lsn> {
        let text: String = crate::pg::field(row, "the WAL position", column)?;
        Lsn::parse(&text).ok_or_else(|| Error::unsupported(context, format!("unreadable position {text:?}")))
    };
    let inserted = read(&row, "inserted")?;
    let mut flushed = read(&row, "flushed")?;
    let deadline = Instant::now() + FLUSH_WAIT;
    while flushed < inserted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let row = client
            .query_one("SELECT pg_current_wal_flush_lsn()::text AS flushed", &[])
            .await
            .context(context)?;
        flushed = read(&row, "flushed")?;
    }
    Ok((inserted.min(flushed), flushed >= inserted))
}

/// Sleeps, waking early for a stop request; true when one came.
async fn sleep_unless_stopped(duration: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < duration {
        if crate::stop::stop_requested() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50).min(duration.saturating_sub(started.elapsed()))).await;
    }
    crate::stop::stop_requested()
}
