//! Validated, clap-free configuration for the engine.

use std::path::PathBuf;
use std::time::Duration;

use crate::batch::BatchLimits;
use crate::error::{Error, Result};
use crate::pg::ConnectionSpec;

/// Which relations an export takes.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    schemas: Vec<glob::Pattern>,
    tables: Vec<glob::Pattern>,
    excluded: Vec<glob::Pattern>,
}

fn compile(option: &str, patterns: &[String]) -> Result<Vec<glob::Pattern>> {
    patterns
        .iter()
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| Error::usage(format!("{option} {p:?} is not a valid pattern: {e}")))
        })
        .collect()
}

impl TableFilter {
    /// Patterns are case-sensitive names as written, optionally `schema.table`, with globs.
    pub fn new(schemas: &[String], tables: &[String], excluded: &[String]) -> Result<Self> {
        Ok(TableFilter {
            schemas: compile("--schema", schemas)?,
            tables: compile("--table", tables)?,
            excluded: compile("--exclude-table", excluded)?,
        })
    }

    fn matches(pattern: &glob::Pattern, schema: &str, name: &str) -> bool {
        pattern.matches(name) || pattern.matches(&format!("{schema}.{name}"))
    }

    /// Whether every table is selected (no --schema, --table or --exclude-table).
    pub fn is_everything(&self) -> bool {
        self.schemas.is_empty() && self.tables.is_empty() && self.excluded.is_empty()
    }

    pub fn includes(&self, schema: &str, name: &str) -> bool {
        let schema_ok = self.schemas.is_empty() || self.schemas.iter().any(|p| p.matches(schema));
        let table_ok = self.tables.is_empty() || self.tables.iter().any(|p| Self::matches(p, schema, name));
        let excluded = self.excluded.iter().any(|p| Self::matches(p, schema, name));
        schema_ok && table_ok && !excluded
    }

    /// `--table` and `--schema` patterns that match nothing: a typo should not silently
    /// produce a mirror without the table the user asked for.
    pub fn unmatched<'a>(&self, relations: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Vec<String> {
        let mut unmatched: Vec<String> = self
            .tables
            .iter()
            .filter(|p| {
                !relations
                    .clone()
                    .any(|(schema, name)| Self::matches(p, schema, name))
            })
            .map(|p| format!("--table {}", p.as_str()))
            .collect();
        unmatched.extend(
            self.schemas
                .iter()
                .filter(|p| !relations.clone().any(|(schema, _)| p.matches(schema)))
                .map(|p| format!("--schema {}", p.as_str())),
        );
        unmatched
    }

    /// The original text of the filter, for the mirror's metadata.
    pub fn describe(&self) -> serde_json::Value {
        let texts = |ps: &[glob::Pattern]| ps.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>();
        serde_json::json!({
            "schemas": texts(&self.schemas),
            "tables": texts(&self.tables),
            "exclude_tables": texts(&self.excluded),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub source: ConnectionSpec,
    pub output: PathBuf,
    /// Worker connections reading tables in parallel.
    pub jobs: usize,
    pub filter: TableFilter,
    pub lock_wait_timeout: Duration,
    pub batch: BatchLimits,
    /// Heap tables larger than this are read in chunks of about this size by several
    /// workers at once (PostgreSQL 14+); `None` reads every table whole.
    pub chunk_bytes: Option<i64>,
    /// Read only about this many bytes of each relation (a sample, for `pgmirror bench`).
    pub sample_bytes: Option<i64>,
    pub curation: Curation,
    /// Hide the progress bars (the summary is the caller's business).
    pub quiet: bool,
    /// Set when the export is the initial copy of a replica (`pgmirror sync --init`).
    pub replica: Option<ReplicaStart>,
    pub writer: Writer,
}

/// How the data tables of a fresh mirror are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Writer {
    /// SQLite B-tree pages built directly, where the tables allow it (DESIGN §23);
    /// otherwise the insert loop.
    #[default]
    Pages,
    /// SQLite's insert path, batched multi-row INSERTs.
    Sqlite,
}

/// What an export that starts a replica does besides exporting.
#[derive(Debug, Clone)]
pub struct ReplicaStart {
    /// Relations (qualified names) locked before the snapshot is taken.
    pub lock_first: Vec<String>,
    /// Recorded in the mirror's `_pgmirror_sync`, with the snapshot and the WAL position
    /// the export fills in.
    pub state: crate::mirror::SyncState,
}

impl ExportOptions {
    pub fn new(source: ConnectionSpec, output: PathBuf) -> Self {
        ExportOptions {
            source,
            output,
            jobs: default_jobs(),
            filter: TableFilter::default(),
            lock_wait_timeout: Duration::from_secs(10),
            batch: BatchLimits::default(),
            chunk_bytes: Some(DEFAULT_CHUNK_BYTES),
            sample_bytes: None,
            curation: Curation::default(),
            quiet: true,
            replica: None,
            writer: Writer::default(),
        }
    }
}

/// Chunk size for splitting big tables; see the Performance section of the README.
pub const DEFAULT_CHUNK_BYTES: i64 = 64 << 20;

/// One worker per core, at least two: reading overlaps decoding on another connection.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_bare_and_qualified_names_case_sensitively() {
        let filter = TableFilter::new(&[], &["Users".into(), "audit.*".into()], &["*_old".into()]).unwrap();
        assert!(filter.includes("public", "Users"));
        assert!(!filter.includes("public", "users"));
        assert!(filter.includes("audit", "events"));
        assert!(!filter.includes("audit", "events_old"));
        let relations = [("public", "Users")];
        assert_eq!(
            filter.unmatched(relations.iter().copied()),
            vec!["--table audit.*".to_string()]
        );
    }
}

/// What a redacted column holds in the mirror.
#[derive(Clone, Default)]
pub enum RedactWith {
    /// NULL in every row.
    #[default]
    Null,
    /// HMAC-SHA256 of the value's text under a secret key, hex: equal values stay equal,
    /// so joins still work, and nobody without the key can test a guess.
    Hash { key: Vec<u8> },
}

impl std::fmt::Debug for RedactWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str(match self {
            RedactWith::Null => "Null",
            RedactWith::Hash { .. } => "Hash",
        })
    }
}

/// A curated export: row filters, column exclusions and redactions, queries and views as
/// tables. Table names are as written (case-sensitive), optionally `schema.table`.
#[derive(Debug, Clone, Default)]
pub struct Curation {
    /// (table, PostgreSQL boolean expression)
    pub wheres: Vec<(String, String)>,
    /// (table, column)
    pub excluded_columns: Vec<(String, String)>,
    /// (table, column)
    pub redacted_columns: Vec<(String, String)>,
    pub redact_with: RedactWith,
    /// (table name in the mirror, SELECT statement)
    pub queries: Vec<(String, String)>,
    pub include_views: Vec<String>,
    /// The data tables are created by this DDL file and filled by the queries or tables of
    /// their names (`--sqlite-schema`).
    pub sqlite_schema: Option<crate::plan::given::GivenSchema>,
}

impl Curation {
    /// `TABLE:CONDITION`, as `--where` takes it.
    pub fn parse_where(text: &str) -> Result<(String, String)> {
        match text.split_once(':') {
            Some((table, condition)) if !table.trim().is_empty() && !condition.trim().is_empty() => {
                Ok((table.trim().to_owned(), condition.trim().to_owned()))
            }
            _ => Err(Error::usage(format!(
                "--where {text:?}: expected TABLE:CONDITION"
            ))),
        }
    }

    /// `TABLE.COLUMN` (the last dot separates the column), as `--exclude-column` and
    /// `--redact` take it.
    pub fn parse_column(option: &str, text: &str) -> Result<(String, String)> {
        match text.rsplit_once('.') {
            Some((table, column)) if !table.is_empty() && !column.is_empty() => {
                Ok((table.to_owned(), column.to_owned()))
            }
            _ => Err(Error::usage(format!("{option} {text:?}: expected TABLE.COLUMN"))),
        }
    }

    /// `NAME=SELECT ...`, as `--query` takes it.
    pub fn parse_query(text: &str) -> Result<(String, String)> {
        match text.split_once('=') {
            Some((name, sql)) if !name.trim().is_empty() && !sql.trim().is_empty() => {
                Ok((name.trim().to_owned(), sql.trim().to_owned()))
            }
            _ => Err(Error::usage(format!(
                "--query {text:?}: expected NAME=SELECT ..."
            ))),
        }
    }
}

/// A `--profile` TOML file: what a curated export takes, so a nightly export is one line.
///
/// ```toml
/// tables = ["Prompts", "WorldInfos", "Tags", "PromptTags"]
/// exclude_tables = ["ApplicationLogs"]
/// exclude_columns = ["Users.Password"]
/// redact = ["Users.Username"]
/// redact_with = "null"            # or "hash" (key from PGMIRROR_REDACT_KEY)
/// include_views = ["NonDraftPrompts"]
/// [where]
/// Prompts = '"Id" IN (SELECT "Id" FROM "NonDraftPrompts")'
/// [queries]
/// PromptCount = 'SELECT count(*) AS n FROM "Prompts"'
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    #[serde(default, rename = "where")]
    pub wheres: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    #[serde(default)]
    pub redact: Vec<String>,
    pub redact_with: Option<String>,
    #[serde(default)]
    pub queries: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub include_views: Vec<String>,
    /// A SQLite DDL file the data tables are created from; relative to the profile's directory.
    pub sqlite_schema: Option<std::path::PathBuf>,
}

impl Profile {
    pub fn load(path: &std::path::Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::usage(format!("reading profile {}: {e}", path.display())))?;
        let mut profile: Profile =
            toml::from_str(&text).map_err(|e| toml_error("profile", path, &text, &e))?;
        // A path in a profile means the same wherever pgmirror is run from.
        if let (Some(schema), Some(dir)) = (&profile.sqlite_schema, path.parent()) {
            if schema.is_relative() {
                profile.sqlite_schema = Some(dir.join(schema));
            }
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod curation_tests {
    use super::*;

    #[test]
    fn toml_errors_name_the_place_but_never_quote_the_line() {
        let text = "source = \"postgres://u:hunter2@db/app\"\nwebhook = https://hooks/T/SECRET\n";
        let error = toml::from_str::<BackupConfig>(text).unwrap_err();
        let message = toml_error("config", std::path::Path::new("c.toml"), text, &error).to_string();
        assert!(
            message.starts_with("config c.toml, line 2, column 11: "),
            "{message}"
        );
        assert!(
            !message.contains("hunter2") && !message.contains("SECRET"),
            "{message}"
        );
    }

    #[test]
    fn flags_split_where_they_should() {
        assert_eq!(
            Curation::parse_where(r#"Prompts:"Id" IN (SELECT 1) AND x::text = 'a:b'"#).unwrap(),
            (
                "Prompts".into(),
                r#""Id" IN (SELECT 1) AND x::text = 'a:b'"#.into()
            )
        );
        assert_eq!(
            Curation::parse_column("--redact", "audit.Users.Password").unwrap(),
            ("audit.Users".into(), "Password".into())
        );
        assert_eq!(
            Curation::parse_query("Top=SELECT 1 = 1").unwrap(),
            ("Top".into(), "SELECT 1 = 1".into())
        );
        assert!(Curation::parse_where("Prompts").is_err());
        assert!(Curation::parse_column("--redact", "Password").is_err());
        let profile: Profile = toml::from_str("tables = ['a']\n[where]\na = 'x > 1'\n").unwrap();
        assert_eq!(profile.wheres.get("a").map(String::as_str), Some("x > 1"));
        assert!(
            toml::from_str::<Profile>("tabels = ['a']").is_err(),
            "typos are errors"
        );
    }
}

/// The backup config file: what a scheduled deployment needs; flags override it.
///
/// ```toml
/// source = "postgres://backup@localhost/prompts"
/// dir = "/var/backups/prompts"
/// kind = "both"            # mirror, archive or both
/// compress = "zstd:9"      # the mirror file
/// max_age = "26h"          # status and serve: the newest backup must be younger
/// [retention]
/// daily = 7
/// weekly = 4
/// monthly = 12
/// yearly = "all"
/// last = 0
/// [[jobs]]                 # pgmirror serve (see service::config)
/// name = "nightly"
/// run = "backup"
/// schedule = "0 3 * * *"
/// [alerts]
/// webhook = "https://hooks.example/backup"
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub source: Option<String>,
    pub dir: Option<std::path::PathBuf>,
    pub kind: Option<String>,
    pub compress: Option<String>,
    pub max_age: Option<String>,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// What `pgmirror serve` runs; the one-shot commands ignore it.
    #[serde(default)]
    pub jobs: Vec<crate::service::JobConfig>,
    pub alerts: Option<crate::service::AlertConfig>,
    pub encryption: Option<EncryptionConfig>,
    /// Where `backup` and `offsite push` copy each backup.
    #[serde(default)]
    pub offsite: Vec<crate::offsite::OffsiteConfig>,
}

/// `[encryption]`: the age public keys every backup file is encrypted to. The private
/// key is not needed to back up.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    #[serde(default)]
    pub recipients: Vec<String>,
    pub recipients_file: Option<std::path::PathBuf>,
}

/// A TOML file's error with its line and column but not the line itself: toml's own
/// text quotes the line, which may hold a password or a webhook token.
fn toml_error(what: &str, path: &std::path::Path, text: &str, error: &toml::de::Error) -> Error {
    let place = error
        .span()
        .map(|span| {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            format!(", line {line}, column {column}")
        })
        .unwrap_or_default();
    Error::usage(format!("{what} {}{place}: {}", path.display(), error.message()))
}

/// `mirror`, `archive` or `both`, as `--kind` and the config's `kind` take it.
pub fn parse_backup_kind(text: &str) -> Result<crate::backupset::BackupKind> {
    use crate::backupset::BackupKind;
    match text {
        "mirror" => Ok(BackupKind::Mirror),
        "archive" => Ok(BackupKind::Archive),
        "both" => Ok(BackupKind::Both),
        other => Err(Error::usage(format!(
            "kind must be mirror, archive or both, not {other:?}"
        ))),
    }
}

/// `zstd` or `zstd:LEVEL`, as `--compress` and the config's `compress` take it.
pub fn parse_zstd_level(text: &str) -> Result<i32> {
    let bad = || Error::usage(format!("compress {text:?}: expected zstd or zstd:LEVEL (1-22)"));
    match text.split_once(':') {
        None if text == "zstd" => Ok(3),
        Some(("zstd", level)) => level
            .parse()
            .ok()
            .filter(|l| (1..=22).contains(l))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A duration such as 26h, 2d or 90s, as the config file writes them.
pub fn parse_config_duration(key: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .map_err(|e| Error::usage(format!("{key} = {text:?}: {e} (try 90s, 26h or 2d)")))
}

/// A number of periods, or "all".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Keep {
    Count(usize),
    All(AllMarker),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllMarker {
    All,
}

impl Keep {
    pub fn limit(self) -> Option<usize> {
        match self {
            Keep::Count(n) => Some(n),
            Keep::All(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub last: Option<Keep>,
    pub daily: Option<Keep>,
    pub weekly: Option<Keep>,
    pub monthly: Option<Keep>,
    pub yearly: Option<Keep>,
}

/// Retention rules given on a command line or in a job, each overriding the config's.
#[derive(Debug, Clone, Default)]
pub struct RetentionOverrides {
    pub last: Option<usize>,
    pub daily: Option<usize>,
    pub weekly: Option<usize>,
    pub monthly: Option<usize>,
    pub yearly: Option<Keep>,
}

impl RetentionConfig {
    /// The policy: each rule from `overrides`, else from the config, else the guide's default.
    pub fn policy(&self, overrides: &RetentionOverrides) -> crate::backupset::Policy {
        let defaults = crate::backupset::Policy::default();
        let pick = |given: Option<usize>, configured: Option<Keep>, default: Option<usize>| match given {
            Some(n) => Some(n),
            None => configured.map(Keep::limit).unwrap_or(default),
        };
        crate::backupset::Policy {
            last: pick(overrides.last, self.last, defaults.last),
            daily: pick(overrides.daily, self.daily, defaults.daily),
            weekly: pick(overrides.weekly, self.weekly, defaults.weekly),
            monthly: pick(overrides.monthly, self.monthly, defaults.monthly),
            yearly: match overrides.yearly.or(self.yearly) {
                Some(keep) => keep.limit(),
                None => defaults.yearly,
            },
        }
    }
}

impl BackupConfig {
    /// The `[[offsite]]` targets of the set in `dir`. They belong to the config's own set
    /// (`dir`): another directory's backups would mix with that set's on the targets, and
    /// a prune of it there would delete the set's copies, so another directory (or any,
    /// when the config names no `dir`) gets none.
    pub fn offsite_for(&self, dir: &std::path::Path) -> &[crate::offsite::OffsiteConfig] {
        let own_set = self.dir.as_deref().is_some_and(|own| same_directory(own, dir));
        if own_set {
            &self.offsite
        } else {
            &[]
        }
    }

    /// The recipients of `[encryption]`, parsed; `None` when backups are not encrypted.
    pub fn recipients(&self) -> Result<Option<crate::crypt::Recipients>> {
        match &self.encryption {
            None => Ok(None),
            Some(encryption) => {
                let recipients = crate::crypt::Recipients::parse(
                    &encryption.recipients,
                    encryption.recipients_file.as_deref(),
                )?;
                if recipients.is_none() {
                    return Err(Error::usage(
                        "[encryption] lists no recipients: give recipients or recipients_file",
                    ));
                }
                Ok(recipients)
            }
        }
    }

    /// The config's `max_age`, parsed.
    pub fn max_age(&self) -> Result<Option<Duration>> {
        self.max_age
            .as_deref()
            .map(|text| parse_config_duration("max_age", text))
            .transpose()
    }

    /// `--config FILE`, else PGMIRROR_CONFIG, else $XDG_CONFIG_HOME (or ~/.config)
    /// /pgmirror/config.toml when it exists, else nothing.
    pub fn load(explicit: Option<&std::path::Path>) -> Result<BackupConfig> {
        let path = match explicit {
            Some(path) => Some(path.to_path_buf()),
            None => std::env::var_os("PGMIRROR_CONFIG")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    let base = std::env::var_os("XDG_CONFIG_HOME")
                        .map(std::path::PathBuf::from)
                        .or_else(|| {
                            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config"))
                        })?;
                    Some(base.join("pgmirror/config.toml")).filter(|p| p.is_file())
                }),
        };
        let Some(path) = path else {
            return Ok(BackupConfig::default());
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::usage(format!("reading config {}: {e}", path.display())))?;
        let mut config: BackupConfig =
            toml::from_str(&text).map_err(|e| toml_error("config", &path, &text, &e))?;
        // A path in the config means the same wherever pgmirror is run from.
        if let (Some(encryption), Some(dir)) = (config.encryption.as_mut(), path.parent()) {
            if let Some(file) = encryption.recipients_file.as_mut().filter(|f| f.is_relative()) {
                *file = dir.join(&*file);
            }
        }
        Ok(config)
    }
}

/// Whether two paths name one directory (however spelled, when both exist).
fn same_directory(a: &std::path::Path, b: &std::path::Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
