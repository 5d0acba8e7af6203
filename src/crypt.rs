//! Encryption of backup files with age (age-encryption.org/v1, X25519 recipients): files
//! decrypt with the stock `age -d -i key.txt`. A leaf: it imports nothing of the crate but
//! the error type and the stop flag.
//!
//! Backing up needs only the recipients' public keys. Reading an encrypted file needs an
//! identity file, given once per process (`--identity`, `PGMIRROR_IDENTITY`) through
//! [`use_identity_file`]; [`Plain`] then writes the plaintext to a private temporary
//! directory that is removed on drop, as `compress::Decompressed` does for zstd.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use crate::error::{Context, Error, Result};

/// The first line of every age file.
const AGE_HEADER: &[u8] = b"age-encryption.org/v1\n";

/// The public keys a backup is encrypted to.
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({})", self.0.len())
    }
}

impl Recipients {
    /// `age1...` keys, given inline and/or one per line in `file` (# comments allowed);
    /// `None` when there are none at all.
    pub fn parse(keys: &[String], file: Option<&Path>) -> Result<Option<Recipients>> {
        let mut texts: Vec<String> = keys.to_vec();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::usage(format!("reading recipients file {}: {e}", file.display())))?;
            texts.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        if texts.is_empty() {
            return Ok(None);
        }
        texts
            .iter()
            .map(|key| {
                age::x25519::Recipient::from_str(key).map_err(|e| {
                    Error::usage(format!(
                        "encryption recipient {:?} is not an age X25519 public key (age1...): {e}",
                        shorten(key)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(|keys| Some(Recipients(keys)))
    }
}

/// A key in an error message: enough to recognise it, not the whole line (which may be
/// a secret key pasted by mistake).
fn shorten(key: &str) -> String {
    let prefix: String = key.chars().take(12).collect();
    if key.starts_with("AGE-SECRET-KEY") {
        return "AGE-SECRET-KEY-… (a secret key: give the public age1... key)".into();
    }
    format!("{prefix}…")
}

/// Encrypts `plain` into `target` (created 0600, exclusively, fsynced).
pub fn encrypt_file(plain: &Path, target: &Path, recipients: &Recipients) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let context = || format!("encrypting {} into {}", plain.display(), target.display());
    let encryptor = age::Encryptor::with_recipients(recipients.0.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| Error::unsupported(context(), e.to_string()))?;
    let output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .with_context(context)?;
    let mut writer = encryptor
        .wrap_output(io::BufWriter::new(output))
        .with_context(context)?;
    io::copy(
        &mut BufReader::new(File::open(plain).with_context(context)?),
        &mut writer,
    )
    .with_context(context)?;
    let output = writer
        .finish()
        .and_then(|buffered| buffered.into_inner().map_err(|e| e.into_error()))
        .with_context(context)?;
    output.sync_all().with_context(context)
}

/// io::copy that gives up when a stop is requested: a first Ctrl-C ends a long decryption
/// (and its temporary plaintext is removed) instead of waiting for a second, which exits
/// without cleaning up.
fn copy_until_stopped(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        if crate::stop::stop_requested() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => to.write_all(&buffer[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether `path` starts with the age header.
pub fn is_encrypted(path: &Path) -> Result<bool> {
    let mut start = [0u8; AGE_HEADER.len()];
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut read = 0;
    while read < start.len() {
        match file.read(&mut start[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(read == start.len() && start == AGE_HEADER)
}

static IDENTITY_FILE: OnceLock<PathBuf> = OnceLock::new();

/// The age identity file that decrypts what this process reads; set once (the CLI's
/// `--identity` / PGMIRROR_IDENTITY). Checked now, so a wrong path fails before any work.
pub fn use_identity_file(path: &Path) -> Result<()> {
    load_identities(path)?;
    IDENTITY_FILE
        .set(path.to_path_buf())
        .map_err(|_| Error::usage("an identity file was already given"))
}

/// Whether encrypted files can be read in this process.
pub fn have_identity() -> bool {
    IDENTITY_FILE.get().is_some()
}

fn load_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity>>> {
    if path.as_os_str().to_string_lossy().starts_with("AGE-SECRET-KEY") {
        return Err(Error::usage(
            "--identity / PGMIRROR_IDENTITY takes the path of an identity file, not the key itself",
        ));
    }
    let shown = path.display().to_string();
    let file = File::open(path)
        .and_then(|f| age::IdentityFile::from_buffer(BufReader::new(f)))
        .map_err(|e| Error::usage(format!("reading identity file {shown}: {e}")))?;
    let identities = file
        .into_identities()
        .map_err(|e| Error::usage(format!("identity file {shown}: {e}")))?;
    if identities.is_empty() {
        return Err(Error::usage(format!(
            "identity file {shown} holds no age identity (AGE-SECRET-KEY-1...)"
        )));
    }
    Ok(identities)
}

/// A file as plaintext: the file itself when it is not encrypted, else its decryption in
/// a private temporary directory (0700, removed on drop), under its name without `.age`
/// and beside a copy of its plaintext sidecar manifest (`NAME.manifest.json`) if it has one,
/// so what reads archives finds what it expects.
pub struct Plain {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Plain {
    pub fn of(source: &Path) -> Result<Plain> {
        if !source.is_file() || !is_encrypted(source)? {
            return Ok(Plain {
                path: source.to_path_buf(),
                _dir: None,
            });
        }
        let context = || format!("decrypting {}", source.display());
        let Some(identity_file) = IDENTITY_FILE.get() else {
            return Err(Error::usage(format!(
                "{} is encrypted: give --identity FILE (or PGMIRROR_IDENTITY) with the age identity that decrypts it",
                source.display()
            )));
        };
        let identities = load_identities(identity_file)?;
        let decryptor = age::Decryptor::new(BufReader::new(File::open(source).with_context(context)?))
            .map_err(|e| Error::unsupported(context(), e.to_string()))?;
        let mut reader = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Error::usage(format!(
                    "{}: no identity in {} can decrypt it (it was encrypted to other recipients)",
                    source.display(),
                    identity_file.display()
                )),
                other => Error::unsupported(context(), other.to_string()),
            })?;
        let dir = tempfile::Builder::new()
            .prefix("pgmirror-")
            .tempdir()
            .with_context(context)?;
        let name = source
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.strip_suffix(".age").unwrap_or(n))
            .filter(|n| !n.is_empty())
            .unwrap_or("backup");
        let path = dir.path().join(name);
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(context)?;
            // A damaged or changed file fails here, on an authentication tag.
            copy_until_stopped(&mut reader, &mut output).map_err(|e| {
                if crate::stop::stop_requested() {
                    Error::new(context(), crate::error::ErrorKind::Interrupted)
                } else {
                    Error::unsupported(context(), format!("{e} (the file is damaged or was changed)"))
                }
            })?;
            output.flush().with_context(context)?;
        }
        let sidecar = format!("{name}.manifest.json");
        if let Some(beside) = source.parent().map(|p| p.join(&sidecar)).filter(|p| p.is_file()) {
            std::fs::copy(&beside, dir.path().join(&sidecar)).with_context(context)?;
        }
        Ok(Plain {
            path,
            _dir: Some(dir),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_bad_keys_are_named_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let public = identity.to_public().to_string();
        let recipients = Recipients::parse(&[public], None).unwrap().unwrap();
        let plain = dir.path().join("mirror.db");
        std::fs::write(&plain, b"SQLite format 3\0 rows").unwrap();
        let sealed = dir.path().join("mirror.db.age");
        encrypt_file(&plain, &sealed, &recipients).unwrap();
        assert!(is_encrypted(&sealed).unwrap() && !is_encrypted(&plain).unwrap());
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"SQLite"));
        assert!(
            encrypt_file(&plain, &sealed, &recipients).is_err(),
            "never written over"
        );

        let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
        let message = Recipients::parse(&[secret.into()], None).unwrap_err().to_string();
        assert!(
            !message.contains("QQQQQQQQQQQQQQQQ") && message.contains("public"),
            "{message}"
        );
        assert!(Recipients::parse(&[], None).unwrap().is_none());
    }
}
