//! The one way a file or directory is published: written under a partial name beside its
//! final one (the same filesystem, so the rename is atomic), private (files 0600,
//! directories 0700), then fsynced, renamed into place and its directory fsynced. After
//! [`Pending::commit`] it survives a crash; before, nothing exists under the final name;
//! dropped without a commit (any failure, a stop), the partial is removed.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// `FILE.partial`: where `target` is written until it is complete.
pub fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// A file or directory being written under its partial name.
#[must_use = "dropping a Pending removes what was written"]
pub struct Pending {
    partial: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Pending {
    /// A new, empty private file at `target`'s partial name, and the file. A file an
    /// earlier run left there is removed first, so a planted symlink is unlinked, never
    /// followed; a directory of that name is someone's data and is refused.
    pub fn file(target: &Path) -> Result<(Pending, File)> {
        let partial = partial_path(target);
        if fs::symlink_metadata(&partial).is_ok_and(|meta| meta.is_dir()) {
            return Err(crate::error::Error::usage(format!(
                "{} is a directory; pgmirror writes {} there while it works: move it away",
                partial.display(),
                target.display()
            )));
        }
        let pending = Pending::reserve(target, partial)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pending.partial)
            .with_context(|| format!("creating {}", pending.partial.display()))?;
        Ok((pending, file))
    }

    /// A new private directory at `partial`, to become `target`.
    pub fn dir(target: &Path, partial: PathBuf) -> Result<Pending> {
        let pending = Pending::reserve(target, partial)?;
        DirBuilder::new()
            .mode(0o700)
            .create(&pending.partial)
            .with_context(|| format!("creating {}", pending.partial.display()))?;
        Ok(pending)
    }

    /// The partial name alone, for a program that creates the file or directory itself
    /// (pg_dump's --file), with whatever an earlier run left there removed.
    pub fn reserve(target: &Path, partial: PathBuf) -> Result<Pending> {
        remove(&partial).with_context(|| format!("removing the stale {}", partial.display()))?;
        Ok(Pending {
            partial,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// Where to write until the commit.
    pub fn path(&self) -> &Path {
        &self.partial
    }

    /// fsync what was written (a directory's files too), rename it into place, fsync the
    /// directory that holds it.
    pub fn commit(mut self) -> Result<()> {
        let context = || format!("publishing {}", self.target.display());
        sync_tree(&self.partial).with_context(context)?;
        fs::rename(&self.partial, &self.target).with_context(context)?;
        self.committed = true;
        // Published now: a filesystem that cannot fsync a directory (some FUSE and
        // network mounts) must not turn that into a failure to retry.
        match sync_dir(parent_of(&self.target)) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP)) => Ok(()),
            other => other.with_context(context),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove(&self.partial);
        }
    }
}

/// Writes `bytes` as a private file at `path`, published as above.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let (pending, mut file) = Pending::file(path)?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", pending.path().display()))?;
    drop(file);
    pending.commit()
}

/// fsync a directory, so that renames and new entries in it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// fsync a file, or a directory's files and then the directory. Anything else (a symlink,
/// a FIFO) holds no data of ours and is left alone: opening a FIFO would block.
fn sync_tree(path: &Path) -> std::io::Result<()> {
    let kind = fs::symlink_metadata(path)?.file_type();
    if kind.is_dir() {
        for entry in fs::read_dir(path)? {
            sync_tree(&entry?.path())?;
        }
    } else if !kind.is_file() {
        return Ok(());
    }
    File::open(path)?.sync_all()
}

/// Removes a file, a symlink (not its target) or a directory tree; absent is fine.
fn remove(path: &Path) -> std::io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == IoErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_file_appears_only_when_committed_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.db");
        let (pending, mut file) = Pending::file(&target).unwrap();
        file.write_all(b"rows").unwrap();
        assert!(!target.exists(), "nothing under the final name before the commit");
        assert_eq!(mode(pending.path()), 0o600);
        pending.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"rows");
        assert!(!partial_path(&target).exists());
    }

    #[test]
    fn a_dropped_file_or_directory_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (pending, _file) = Pending::file(&dir.path().join("a")).unwrap();
        drop(pending);
        let set = Pending::dir(&dir.path().join("b"), dir.path().join(".b.partial")).unwrap();
        fs::write(set.path().join("inside"), b"x").unwrap();
        assert_eq!(mode(set.path()), 0o700);
        drop(set);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_planted_symlink_at_the_partial_name_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let target = dir.path().join("out.csv");
        std::os::unix::fs::symlink(&victim, partial_path(&target)).unwrap();
        write_private(&target, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn a_directory_at_the_partial_name_is_refused_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data");
        fs::create_dir(partial_path(&target)).unwrap();
        fs::write(partial_path(&target).join("keep"), b"mine").unwrap();
        let refused = Pending::file(&target).err().expect("refused");
        assert!(refused.to_string().contains("is a directory"), "{refused}");
        assert_eq!(fs::read(partial_path(&target).join("keep")).unwrap(), b"mine");
    }

    #[test]
    fn a_directory_is_published_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("20261201T000000Z");
        let set = Pending::dir(&target, dir.path().join(".20261201T000000Z.partial")).unwrap();
        fs::write(set.path().join("manifest.json"), b"{}").unwrap();
        set.commit().unwrap();
        assert_eq!(fs::read(target.join("manifest.json")).unwrap(), b"{}");
    }
}
