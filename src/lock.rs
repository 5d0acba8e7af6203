//! One run at a time on a backup directory or a replica: an OS file lock (flock) on a lock
//! file beside what it guards, held for the run's lifetime and released by the kernel however
//! the process ends. The pid written inside only names the holder in the refusal message.
//! A leaf: any layer may take a lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Context, Error, Result};

/// Held while it lives; the file stays behind (unlinking it would race a new holder).
pub struct Lock(#[allow(dead_code)] File);

impl Lock {
    /// Takes DIR's lock (`DIR/.pgmirror.lock`), or fails naming the pid that holds it.
    pub fn acquire(dir: &Path) -> Result<Lock> {
        Self::acquire_file(&dir.join(".pgmirror.lock"), dir, "directory")
    }

    /// Takes the lock file `path` guarding `guarded` (a `what`: "directory", "replica"), or
    /// fails naming the pid that holds it.
    pub fn acquire_file(path: &Path, guarded: &Path, what: &str) -> Result<Lock> {
        let context = || format!("locking {}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(context)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "a process that has not written its pid yet".to_owned(),
                    pid => format!("pid {pid}"),
                };
                return Err(Error::unsupported(
                    format!("locking {}", guarded.display()),
                    format!(
                        "another pgmirror run ({holder}) is working on this {what}; it holds {}",
                        path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::new(context(), e.into())),
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(std::process::id().to_string().as_bytes()))
            .with_context(context)?;
        Ok(Lock(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_refuses_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path()).unwrap();
        let refused = Lock::acquire(dir.path()).err().expect("second acquire refused");
        assert!(
            refused
                .to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(first);
        Lock::acquire(dir.path()).expect("free again after release");
    }

    #[test]
    fn a_lock_file_without_a_holder_is_simply_taken() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed run leaves: the file, its pid, no lock.
        std::fs::write(dir.path().join(".pgmirror.lock"), "999999999").unwrap();
        let _lock = Lock::acquire(dir.path()).unwrap();
        let written = std::fs::read_to_string(dir.path().join(".pgmirror.lock")).unwrap();
        assert_eq!(written, std::process::id().to_string());
    }
}
