//! Off-site copies of a backup set: S3-compatible object storage and `file://` directories,
//! one `object_store` API for both. A backup is copied file by file (multipart for large
//! files), each object checked against the manifest (size and sha256 of what the store
//! returns, not just the upload's answer), and its manifest uploaded last: a target holds
//! a backup only when `<id>/manifest.json` is there.
//!
//! What each target holds is recorded in the set (`.pgmirror-offsite.json`), so `status`
//! answers without the network; `verify --offsite` asks the target itself.

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::backupset::copies::OffsiteRecord;
use crate::backupset::{self, BackupManifest};
use crate::error::{Context, Error, Result};

mod fetch;
mod prune;
pub use fetch::{fetch, is_address, Fetched};
pub use prune::{prune, TargetPrune};

/// `[[offsite]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteConfig {
    pub name: String,
    /// `s3://bucket/prefix` or `file:///absolute/dir`.
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// An open target.
pub struct Target {
    pub name: String,
    /// The URL without credentials (there are none in it: they come from the environment).
    pub url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

const MANIFEST: &str = "manifest.json";

fn store_error(context: String, error: object_store::Error) -> Error {
    Error::unsupported(context, error.to_string())
}

impl Target {
    pub fn open(config: &OffsiteConfig) -> Result<Target> {
        let bad = |why: &str| Error::usage(format!("offsite {:?}: {why}", config.name));
        // Credentials come from the environment; in an address they would be shown.
        let authority = |url: &str| {
            url.split_once("://")
                .map_or(url, |(_, r)| r)
                .split('/')
                .next()
                .unwrap_or("")
                .contains('@')
        };
        if authority(&config.url) || config.endpoint.as_deref().is_some_and(authority) {
            return Err(bad(
                "credentials do not belong in url or endpoint: use the AWS_* environment variables",
            ));
        }
        let (store, prefix): (Arc<dyn ObjectStore>, String) =
            if let Some(rest) = config.url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("url s3:// needs a bucket (s3://bucket/prefix)"));
                }
                let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(region) = &config.region {
                    builder = builder.with_region(region);
                }
                // A store that does not answer fails in seconds, not after minutes of retries.
                builder = builder
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: std::time::Duration::from_secs(30),
                        ..Default::default()
                    })
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_connect_timeout(std::time::Duration::from_secs(10))
                            .with_timeout(std::time::Duration::from_secs(300)),
                    );
                if let Some(endpoint) = &config.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                let store = builder.build().map_err(|e| bad(&e.to_string()))?;
                (Arc::new(store), prefix.trim_matches('/').to_owned())
            } else if let Some(dir) = config.url.strip_prefix("file://") {
                if !dir.starts_with('/') {
                    return Err(bad(
                        "url file:// needs an absolute path (file:///mnt/nas/backups)",
                    ));
                }
                backupset::ensure_dir(Path::new(dir))?;
                // A pruned backup leaves no empty directory behind.
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| bad(&e.to_string()))?
                    .with_automatic_cleanup(true);
                (Arc::new(store), String::new())
            } else {
                return Err(bad("url must start with s3:// or file://"));
            };
        Ok(Target {
            name: config.name.clone(),
            url: config.url.clone(),
            store,
            prefix: ObjectPath::from(prefix),
        })
    }

    fn object(&self, id: &str, file: &str) -> ObjectPath {
        self.prefix.child(id).child(file)
    }

    async fn upload(&self, local: &Path, object: &ObjectPath) -> Result<()> {
        let context = || format!("uploading {} to {} ({})", local.display(), object, self.name);
        let mut file = tokio::fs::File::open(local).await.with_context(context)?;
        // Multipart above the writer's buffer (10 MiB), one PUT below.
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), object.clone());
        let written = match tokio::io::copy(&mut file, &mut writer).await {
            Ok(_) => writer.shutdown().await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            // No half-made multipart upload left on the store (S3 keeps and bills its parts).
            let _ = writer.abort().await;
            return Err(error).with_context(context);
        }
        Ok(())
    }

    /// The object's size and sha256, as the store returns it.
    async fn checksum(&self, object: &ObjectPath) -> Result<(u64, String)> {
        let context = || format!("reading {} on {}", object, self.name);
        let result = self
            .store
            .get(object)
            .await
            .map_err(|e| store_error(context(), e))?;
        let mut stream = result.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_error(context(), e))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((size, format!("{:x}", hasher.finalize())))
    }

    async fn has_manifest(&self, id: &str) -> Result<bool> {
        match self.store.head(&self.object(id, MANIFEST)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(
                format!("looking for backup {id} on {}", self.name),
                e,
            )),
        }
    }

    /// Copies one backup: its files, each checked, then its manifest.
    async fn push_backup(&self, backup_dir: &Path, manifest: &BackupManifest) -> Result<()> {
        for file in &manifest.files {
            let object = self.object(&manifest.id, &file.name);
            self.upload(&backup_dir.join(&file.name), &object).await?;
            let (size, sha256) = self.checksum(&object).await?;
            if size != file.size_bytes || sha256 != file.sha256 {
                return Err(Error::unsupported(
                    format!("checking {object} on {}", self.name),
                    format!(
                        "the stored object has {size} bytes, sha256 {sha256}; the manifest says {} bytes, sha256 {}",
                        file.size_bytes, file.sha256
                    ),
                ));
            }
        }
        // Side files (an archive's own manifest) go with it; the backup's manifest last.
        for entry in
            std::fs::read_dir(backup_dir).with_context(|| format!("listing {}", backup_dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", backup_dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let listed = manifest.files.iter().any(|f| f.name == name);
            if !listed && name != MANIFEST && !name.starts_with('.') && entry.path().is_file() {
                let object = self.object(&manifest.id, &name);
                self.upload(&entry.path(), &object).await?;
                let (sha256, size_bytes) = crate::archive::manifest::checksum(&entry.path())?;
                if self.checksum(&object).await? != (size_bytes, sha256) {
                    return Err(Error::unsupported(
                        format!("checking {object} on {}", self.name),
                        "the stored object differs from the local file",
                    ));
                }
            }
        }
        self.upload(&backup_dir.join(MANIFEST), &self.object(&manifest.id, MANIFEST))
            .await
    }

    /// Every backup the target holds whole, with its manifest as stored there.
    pub(super) async fn remote_backups(&self) -> Result<Vec<BackupManifest>> {
        self.backups_under(&self.prefix).await
    }

    /// Every backup held whole under `prefix` (`<prefix>/<id>/manifest.json`).
    pub(super) async fn backups_under(&self, prefix: &ObjectPath) -> Result<Vec<BackupManifest>> {
        let mut listing = self.store.list(Some(prefix));
        let mut manifests = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| store_error(format!("listing {}", self.name), e))?;
            // Only <prefix>/<id>/manifest.json: anything else in the bucket is not ours.
            let parts: Vec<String> = meta.location.parts().map(|p| p.as_ref().to_owned()).collect();
            let depth = prefix.parts().count();
            if parts.len() != depth + 2 || parts[depth + 1] != MANIFEST {
                continue;
            }
            let context = || format!("reading {} on {}", meta.location, self.name);
            // Deleted between the listing and the read: not held any more.
            let Some(manifest) = self.read_manifest(&meta.location).await? else {
                continue;
            };
            if manifest.id != parts[depth] {
                return Err(Error::unsupported(
                    context(),
                    format!("it describes backup {}", manifest.id),
                ));
            }
            manifests.push(manifest);
        }
        manifests.sort_by(|a, b| a.created_unix.cmp(&b.created_unix).then_with(|| a.id.cmp(&b.id)));
        Ok(manifests)
    }

    /// Deletes one backup: its manifest first, so a deletion cut short leaves an
    /// incomplete backup (never listed, never restored), then everything under `<id>/`.
    pub(super) async fn delete_backup(&self, id: &str) -> Result<()> {
        let context = || format!("deleting backup {id} on {}", self.name);
        match self.store.delete(&self.object(id, MANIFEST)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(context(), e)),
        }
        let mut listing = self.store.list(Some(&self.prefix.child(id)));
        let mut objects = Vec::new();
        while let Some(meta) = listing.next().await {
            objects.push(meta.map_err(|e| store_error(context(), e))?.location);
        }
        for object in objects {
            match self.store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(context(), e)),
            }
        }
        Ok(())
    }
}

/// What one push did on one target.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub target: String,
    pub copied: Vec<String>,
    pub already_there: usize,
    pub error: Option<String>,
}

/// Copies every local backup a target lacks, oldest first, to each target; a failure is
/// recorded (and reported) per target, never raised: the local backups stand.
pub fn push(dir: &Path, targets: &[OffsiteConfig]) -> Result<Vec<PushReport>> {
    let runtime = crate::pg::runtime()?;
    let backups = backupset::list(dir)?;
    let mut record = OffsiteRecord::load(dir);
    let mut reports = Vec::new();
    for config in targets {
        let mut report = PushReport {
            target: config.name.clone(),
            copied: Vec::new(),
            already_there: 0,
            error: None,
        };
        let mut missing = Vec::new();
        let outcome = Target::open(config).and_then(|target| {
            runtime.block_on(crate::stop::until_stopped(None, async {
                for (path, manifest) in &backups {
                    if target.has_manifest(&manifest.id).await? {
                        report.already_there += 1;
                    } else {
                        missing.push(manifest.id.clone());
                        target.push_backup(path, manifest).await?;
                        report.copied.push(manifest.id.clone());
                    }
                }
                Ok(())
            }))
        });
        let entry = record.targets.entry(config.name.clone()).or_default();
        let local: Vec<&str> = backups.iter().map(|(_, m)| m.id.as_str()).collect();
        // Copies of backups deleted locally are not counted, nor those the target was
        // found to lack (a wiped bucket) unless this push made them.
        entry.complete.retain(|id| {
            local.contains(&id.as_str()) && (!missing.contains(id) || report.copied.contains(id))
        });
        for id in report.copied.iter().cloned().chain(
            backups
                .iter()
                .map(|(_, m)| m.id.clone())
                .filter(|_| outcome.is_ok()),
        ) {
            if !entry.complete.contains(&id) {
                entry.complete.push(id);
            }
        }
        entry.complete.sort();
        match outcome {
            Ok(()) => {
                entry.last_error = None;
                entry.last_error_time = None;
            }
            Err(error) => {
                report.error = Some(error.to_string());
                entry.last_error = Some(error.to_string());
                entry.last_error_time =
                    Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
            }
        }
        reports.push(report);
    }
    record.save(dir)?;
    Ok(reports)
}

/// Checks every object of every backup a target holds against its manifest there; the
/// problems, each naming its object. Local backups missing on the target are problems too.
pub fn verify(dir: &Path, config: &OffsiteConfig) -> Result<Vec<String>> {
    let runtime = crate::pg::runtime()?;
    let target = Target::open(config)?;
    let local = backupset::list(dir)?;
    runtime.block_on(crate::stop::until_stopped(None, async {
        let remote = target.remote_backups().await?;
        let mut problems = Vec::new();
        for (_, manifest) in &local {
            if !remote.iter().any(|r| r.id == manifest.id) {
                problems.push(format!("{}: backup {} is not there (no complete copy)", target.name, manifest.id));
            }
        }
        for manifest in &remote {
            for file in &manifest.files {
                let object = target.object(&manifest.id, &file.name);
                match target.checksum(&object).await {
                    Ok((size, sha256)) if size == file.size_bytes && sha256 == file.sha256 => {}
                    Ok((size, _)) => problems.push(format!(
                        "{}: {object} differs from its manifest ({size} bytes, {} expected, or another sha256)",
                        target.name, file.size_bytes
                    )),
                    Err(e) => problems.push(format!("{}: {object}: {e}", target.name)),
                }
            }
        }
        Ok(problems)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, endpoint: Option<&str>) -> Result<Target> {
        Target::open(&OffsiteConfig {
            name: "t".into(),
            url: url.into(),
            endpoint: endpoint.map(String::from),
            region: Some("us-east-1".into()),
        })
    }

    #[test]
    fn addresses_are_checked_and_credentials_in_them_refused_unshown() {
        for (url, endpoint, expected) in [
            ("s3://AKIA:SECRETKEY@bucket/p", None, "credentials do not belong"),
            (
                "s3://bucket/p",
                Some("http://user:SECRETKEY@127.0.0.1:9000"),
                "credentials do not belong",
            ),
            ("s3://", None, "needs a bucket"),
            ("file://relative/dir", None, "absolute path"),
            ("ftp://host/x", None, "s3:// or file://"),
        ] {
            let message = target(url, endpoint).err().expect(url).to_string();
            assert!(
                message.contains(expected) && !message.contains("SECRETKEY"),
                "{url}: {message}"
            );
        }
        let store = target("s3://bucket/a b/c%d", Some("http://127.0.0.1:9")).unwrap();
        let object = store.object("20261202T000000Z", "manifest.json");
        assert_eq!(object.parts().count(), 4, "{object}");
        assert_eq!(object.filename(), Some("manifest.json"));
    }
}
