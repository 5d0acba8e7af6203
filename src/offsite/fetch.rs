//! Reading backups back from a target: an address (`s3://bucket/prefix/...`, `file:///...`)
//! names one file, one backup or a whole set; what it names is downloaded into a private
//! directory and every file checked against its manifest before anything reads it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};

use super::{store_error, OffsiteConfig, Target, MANIFEST};
use crate::backupset::{self, BackupManifest};
use crate::error::{Context, Error, Result};

/// What an address named, now on local disk.
pub enum Fetched {
    /// One file; `checked` when a manifest beside it listed it and its checksum matched.
    File { path: PathBuf, checked: bool },
    /// One backup: its files and its manifest (all checked) in the download directory.
    Backup {
        dir: PathBuf,
        manifest: Box<BackupManifest>,
    },
}

/// True for the addresses this module reads (the rest are local paths).
pub fn is_address(from: &str) -> bool {
    from.starts_with("s3://") || from.starts_with("file://")
}

/// Downloads what `address` names into `into` (a private directory the caller owns): a file
/// as itself, a backup's directory as that backup, a set's prefix as its newest complete,
/// verified backup (or `backup`). The `[[offsite]]` target whose url the address starts
/// with gives endpoint and region; otherwise the standard AWS settings apply.
pub fn fetch(address: &str, targets: &[OffsiteConfig], backup: Option<&str>, into: &Path) -> Result<Fetched> {
    let (target, path) = resolve(address, targets)?;
    let runtime = crate::pg::runtime()?;
    runtime.block_on(crate::stop::until_stopped(None, async {
        match target.store.head(&path).await {
            Ok(_) if backup.is_some() => {
                return Err(Error::usage(format!(
                    "--backup picks a backup of a set; {address} is a single object"
                )))
            }
            Ok(_) => return target.fetch_file(&path, into).await,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(format!("reading {address}"), e)),
        }
        if let Some(manifest) = target.read_manifest(&path.child(MANIFEST)).await? {
            if backup.is_some_and(|wanted| wanted != manifest.id) {
                return Err(Error::usage(format!(
                    "{address} is backup {}; --backup names another",
                    manifest.id
                )));
            }
            return target.fetch_backup(&path, manifest, into).await;
        }
        let mut manifests = target.backups_under(&path).await?;
        let manifest = manifests.swap_remove(backupset::pick_backup(&manifests, backup, address)?);
        target
            .fetch_backup(&path.child(manifest.id.as_str()), manifest, into)
            .await
    }))
}

/// The target an address belongs to, and the object path it names there.
fn resolve(address: &str, targets: &[OffsiteConfig]) -> Result<(Target, ObjectPath)> {
    let authority = address.split_once("://").map_or("", |(_, rest)| rest);
    if authority.split('/').next().unwrap_or("").contains('@') {
        return Err(Error::usage(
            "credentials do not belong in an address: use the AWS_* environment variables",
        ));
    }
    let configured = targets
        .iter()
        .filter_map(|config| {
            let base = config.url.trim_end_matches('/');
            let rest = address.strip_prefix(base)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| (config.clone(), rest.to_owned()))
        })
        .max_by_key(|(config, _)| config.url.len());
    let (config, rest) = match configured {
        Some(found) => found,
        None => ad_hoc(address)?,
    };
    let target = Target::open(&config)?;
    let path = rest
        .split('/')
        .filter(|part| !part.is_empty())
        .fold(target.prefix.clone(), |path, part| path.child(part));
    Ok((target, path))
}

/// An address no `[[offsite]]` target covers: its bucket (standard AWS settings), or the
/// filesystem's root.
fn ad_hoc(address: &str) -> Result<(OffsiteConfig, String)> {
    let config = |url: String| OffsiteConfig {
        name: url.clone(),
        url,
        endpoint: None,
        region: None,
    };
    if let Some(rest) = address.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        Ok((config(format!("s3://{bucket}")), key.to_owned()))
    } else if let Some(path) = address.strip_prefix("file://") {
        Ok((config("file:///".to_owned()), path.to_owned()))
    } else {
        Err(Error::usage(format!(
            "{address}: an address starts with s3:// or file://"
        )))
    }
}

/// A file name from the store that may be written into a local directory.
fn local_name(object: &ObjectPath) -> Option<String> {
    let name = object.filename()?;
    backupset::is_plain_file_name(name).then(|| name.to_owned())
}

impl Target {
    pub(super) async fn read_manifest(&self, object: &ObjectPath) -> Result<Option<BackupManifest>> {
        let context = || format!("reading {object} on {}", self.name);
        let bytes = match self.store.get(object).await {
            Ok(found) => found.bytes().await.map_err(|e| store_error(context(), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(context(), e)),
        };
        backupset::parse_manifest(&bytes, context).map(Some)
    }

    /// Streams an object into a new 0600 file; its size and sha256.
    async fn download(&self, object: &ObjectPath, local: &Path) -> Result<(u64, String)> {
        let context = || format!("downloading {object} from {} to {}", self.name, local.display());
        let mut stream = self
            .store
            .get(object)
            .await
            .map_err(|e| store_error(context(), e))?
            .into_stream();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(local)
            .with_context(context)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_error(context(), e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).with_context(context)?;
        }
        file.sync_all().with_context(context)?;
        Ok((size, format!("{:x}", hasher.finalize())))
    }

    /// One file, checked against the manifest beside it when there is one, with the
    /// archive's sidecar manifest if it has one.
    async fn fetch_file(&self, object: &ObjectPath, into: &Path) -> Result<Fetched> {
        let name = local_name(object).ok_or_else(|| {
            Error::usage(format!(
                "{object} on {} is not a file name pgmirror reads",
                self.name
            ))
        })?;
        let parts: Vec<_> = object.parts().collect();
        let parent: ObjectPath = parts[..parts.len().saturating_sub(1)].iter().cloned().collect();
        let path = into.join(&name);
        let (size, sha256) = self.download(object, &path).await?;
        let listed = self
            .read_manifest(&parent.child(MANIFEST))
            .await?
            .and_then(|manifest| manifest.files.into_iter().find(|f| f.name == name));
        if let Some(file) = &listed {
            check(object, &self.name, (size, &sha256), file)?;
        }
        let sidecar = format!("{}.manifest.json", name.strip_suffix(".age").unwrap_or(&name));
        let sidecar_object = parent.child(sidecar.as_str());
        if self.store.head(&sidecar_object).await.is_ok() {
            self.download(&sidecar_object, &into.join(&sidecar)).await?;
        }
        Ok(Fetched::File {
            path,
            checked: listed.is_some(),
        })
    }

    /// Every object of one backup (under `prefix`), each listed file checked, all of them
    /// required.
    async fn fetch_backup(
        &self,
        prefix: &ObjectPath,
        manifest: BackupManifest,
        into: &Path,
    ) -> Result<Fetched> {
        let mut listing = self.store.list(Some(prefix));
        let mut objects = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| store_error(format!("listing {prefix} on {}", self.name), e))?;
            // Only the backup's own files, one level down.
            if meta.location.parts().count() == prefix.parts().count() + 1 {
                objects.push(meta.location);
            }
        }
        // Every listed file by its name as pushed, checked; then the side files (an
        // archive's own manifest), nothing else the prefix may hold.
        for file in &manifest.files {
            let object = prefix.child(file.name.as_str());
            if !objects.contains(&object) {
                return Err(Error::unsupported(
                    format!("backup {} on {}", manifest.id, self.name),
                    format!("{object} is missing"),
                ));
            }
            let got = self.download(&object, &into.join(&file.name)).await?;
            check(&object, &self.name, (got.0, &got.1), file)?;
        }
        for file in &manifest.files {
            let side = crate::archive::manifest::manifest_path(Path::new(&file.name));
            let side = side.to_string_lossy();
            let object = prefix.child(side.as_ref());
            if objects.contains(&object) {
                self.download(&object, &into.join(side.as_ref())).await?;
            }
        }
        crate::compress::write_private_json(&into.join(MANIFEST), &manifest)?;
        Ok(Fetched::Backup {
            dir: into.to_path_buf(),
            manifest: Box::new(manifest),
        })
    }
}

fn check(
    object: &ObjectPath,
    target: &str,
    (size, sha256): (u64, &str),
    file: &backupset::BackupFile,
) -> Result<()> {
    if size == file.size_bytes && sha256 == file.sha256 {
        return Ok(());
    }
    Err(Error::unsupported(
        format!("checking {object} from {target}"),
        format!(
            "it has {size} bytes, sha256 {sha256}; its manifest says {} bytes, sha256 {}: the copy is damaged or was changed",
            file.size_bytes, file.sha256
        ),
    ))
}
