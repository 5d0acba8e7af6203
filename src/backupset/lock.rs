//! One backup run per directory: a lock file holding the runner's pid.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

pub struct Lock(PathBuf);

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

impl Lock {
    /// Takes DIR's lock, or fails naming the pid that holds it. A lock left by a process
    /// that no longer exists is taken over.
    pub fn acquire(dir: &Path) -> Result<Lock> {
        let path = dir.join(".pgmirror.lock");
        for _ in 0..2 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(std::process::id().to_string().as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(Lock(path));
                }
                Err(e) if e.kind() == IoErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let pid: i32 = holder.trim().parse().unwrap_or(0);
                    if alive(pid) {
                        return Err(Error::unsupported(
                            format!("locking {}", dir.display()),
                            format!(
                                "another pgmirror run (pid {pid}) is working in this directory; it holds {}",
                                path.display()
                            ),
                        ));
                    }
                    fs::remove_file(&path)
                        .with_context(|| format!("removing the stale lock {}", path.display()))?;
                }
                Err(e) => return Err(Error::new(format!("creating {}", path.display()), e.into())),
            }
        }
        Err(Error::unsupported(
            format!("locking {}", dir.display()),
            "the lock file keeps reappearing",
        ))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
