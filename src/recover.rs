//! Disaster recovery, the backup guide's procedure as library calls: find the backup to
//! restore (in a local set or at an off-site address), make sure the target database is
//! there and empty, and, after the restore, compare its row counts with the manifest's.
//!
//! Restoring itself is `restore` (mirrors) and `archive` (pg_dump archives): this module
//! only decides what they read and checks what they wrote.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backupset::{self, BackupFileKind, BackupManifest, TableCount};
use crate::error::{Context, Error, Result};
use crate::offsite::{self, Fetched, OffsiteConfig};
use crate::pg::{qualified, quote_ident, ConnectionSpec};

/// What the restore is for, which decides the file it reads from a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole database: the native archive, else the mirror.
    Database,
    /// Chosen tables: the mirror, else the archive.
    Tables,
}

/// The file to restore, checked against its backup's manifest.
pub struct Located {
    /// The data file (possibly encrypted: the caller decrypts it).
    pub file: PathBuf,
    /// The backup it belongs to, when it came from a set or a backup's directory.
    pub backup: Option<BackupManifest>,
    /// Whether its size and sha256 were checked against a manifest.
    pub checked: bool,
    /// Where it was downloaded (removed on drop).
    _download: Option<tempfile::TempDir>,
}

/// Finds what `from` names: an off-site address (a file, a backup or a set), a local
/// backup's directory or a local set, with `backup` picking one of a set's backups.
/// `None` when `from` is a local file or a pg_dump directory archive, which restore reads
/// as they are.
pub fn locate(
    from: &str,
    targets: &[OffsiteConfig],
    backup: Option<&str>,
    scope: Scope,
) -> Result<Option<Located>> {
    if offsite::is_address(from) {
        let download = tempfile::Builder::new()
            .prefix("pgmirror-download-")
            .tempdir()
            .with_context(|| format!("making a private directory to download {from} into"))?;
        let located = match offsite::fetch(from, targets, backup, download.path())? {
            Fetched::File { path, checked } => Located {
                file: path,
                backup: None,
                checked,
                _download: None,
            },
            Fetched::Backup { dir, manifest } => in_backup(&dir, *manifest, scope)?,
        };
        return Ok(Some(Located {
            _download: Some(download),
            ..located
        }));
    }
    let path = Path::new(from);
    let from_set = path.is_dir() && !path.join("toc.dat").is_file();
    if !from_set {
        if backup.is_some() {
            return Err(Error::usage(format!(
                "--backup picks a backup of a set; {from} is a single file"
            )));
        }
        return Ok(None);
    }
    let manifest = if path.join("manifest.json").is_file() {
        let manifest = backupset::read_manifest(path)?;
        if backup.is_some_and(|wanted| wanted != manifest.id) {
            return Err(Error::usage(format!(
                "{from} is backup {}; --backup names another",
                manifest.id
            )));
        }
        (path.to_path_buf(), manifest)
    } else {
        let mut backups = backupset::list(path)?;
        if backups.is_empty() {
            return Err(Error::usage(format!(
                "{from} is a directory without toc.dat (no pg_dump directory archive) and holds no backup of a set"
            )));
        }
        let manifests: Vec<BackupManifest> = backups.iter().map(|(_, m)| m.clone()).collect();
        backups.swap_remove(backupset::pick_backup(&manifests, backup, from)?)
    };
    backupset::check_files(&manifest.0, &manifest.1)?;
    in_backup(&manifest.0, manifest.1, scope).map(Some)
}

/// The backup's file for `scope` (its files already checked).
fn in_backup(dir: &Path, manifest: BackupManifest, scope: Scope) -> Result<Located> {
    let preferred = match scope {
        Scope::Database => [BackupFileKind::Archive, BackupFileKind::Mirror],
        Scope::Tables => [BackupFileKind::Mirror, BackupFileKind::Archive],
    };
    let file = preferred
        .iter()
        .find_map(|kind| manifest.files.iter().find(|f| f.kind == *kind))
        .ok_or_else(|| Error::unsupported(format!("backup {}", manifest.id), "its manifest lists no file"))?;
    Ok(Located {
        file: dir.join(&file.name),
        checked: true,
        backup: Some(manifest),
        _download: None,
    })
}

/// What [`prepare_database`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Prepared {
    Created,
    /// There already; not looked into (a restore of chosen tables).
    Existing,
    Empty,
    /// Not empty, and `--clean` was given.
    Cleaning,
}

/// Makes sure the target database exists (creating it when `create` is given; nothing is
/// ever dropped) and, with `require_empty`, that it holds no table, view or sequence
/// unless `clean` is given.
pub fn prepare_database(
    target: &ConnectionSpec,
    create: bool,
    require_empty: bool,
    clean: bool,
) -> Result<Prepared> {
    let runtime = crate::pg::runtime()?;
    runtime.block_on(crate::stop::until_stopped(None, async {
        let database = target.database().to_owned();
        let client = match target.connect().await {
            Ok(client) => client,
            // 3D000: invalid_catalog_name, the database does not exist.
            Err(error) if error.sqlstate() == Some("3D000") => {
                if !create {
                    return Err(Error::usage(format!(
                        "the target database {database:?} does not exist: --create-database creates it"
                    )));
                }
                let maintenance = target.with_database("postgres");
                let admin = maintenance.connect().await?;
                admin
                    .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&database)))
                    .await
                    .with_context(|| format!("creating database {database:?}"))?;
                return Ok(Prepared::Created);
            }
            Err(error) => return Err(error),
        };
        if !require_empty {
            return Ok(Prepared::Existing);
        }
        let rows = client
            .query(
                "SELECT n.nspname AS schema, c.relname AS name FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                  ORDER BY 1, 2",
                &[],
            )
            .await
            .with_context(|| format!("looking for relations in database {database:?}"))?;
        if rows.is_empty() {
            return Ok(Prepared::Empty);
        }
        if clean {
            return Ok(Prepared::Cleaning);
        }
        let mut names = Vec::new();
        for row in rows.iter().take(5) {
            let schema: String = crate::pg::field(row, "relations", "schema")?;
            let name: String = crate::pg::field(row, "relations", "name")?;
            names.push(qualified(&schema, &name));
        }
        Err(Error::usage(format!(
            "the target database {database:?} is not empty ({} relations: {}{}); nothing was changed. \
             --clean drops and recreates the backup's objects in it, or name an empty or new database",
            rows.len(),
            names.join(", "),
            if rows.len() > names.len() { ", ..." } else { "" }
        )))
    }))
}

/// One table's rows in the manifest and in the restored database.
#[derive(Debug, Clone, Serialize)]
pub struct CountCheck {
    pub table: String,
    pub manifest_rows: u64,
    /// `None` when the table is not in the target.
    pub restored_rows: Option<u64>,
}

impl CountCheck {
    pub fn matches(&self) -> bool {
        self.restored_rows == Some(self.manifest_rows)
    }
}

/// Counts the rows of each manifest table (by its mirror name) in the target; with
/// `only`, of the tables it selects.
pub fn count_rows(
    target: &ConnectionSpec,
    expected: &[TableCount],
    only: Option<&crate::TableFilter>,
) -> Result<Vec<CountCheck>> {
    let runtime = crate::pg::runtime()?;
    runtime.block_on(crate::stop::until_stopped(None, async {
        let client = target.connect().await?;
        let rows = client
            .query(
                "SELECT n.nspname AS schema, c.relname AS name FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
                &[],
            )
            .await
            .context("listing the restored tables")?;
        let mut tables = std::collections::HashMap::new();
        for row in &rows {
            let schema: String = crate::pg::field(row, "relations", "schema")?;
            let name: String = crate::pg::field(row, "relations", "name")?;
            tables.insert(crate::mirror::sqlite_table_name(&schema, &name), (schema, name));
        }
        let mut checks = Vec::new();
        for table in expected {
            let found = tables.get(&table.table);
            if let (Some(filter), Some((schema, name))) = (only, found) {
                if !filter.includes(schema, name) {
                    continue;
                }
            }
            let restored_rows = match found {
                Some((schema, name)) => {
                    let relation = qualified(schema, name);
                    let row = client
                        .query_one(&format!("SELECT count(*) AS rows FROM {relation}"), &[])
                        .await
                        .with_context(|| format!("counting the rows of {relation}"))?;
                    let rows: i64 = crate::pg::field(&row, &relation, "rows")?;
                    Some(rows.max(0) as u64)
                }
                // A table the restore left out on purpose is not a missing one.
                None if only.is_some() => continue,
                None => None,
            };
            checks.push(CountCheck {
                table: table.table.clone(),
                manifest_rows: table.rows,
                restored_rows,
            });
        }
        Ok(checks)
    }))
}
