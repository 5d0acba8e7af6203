//! Files in and out, with zstd handled transparently: inputs are recognised by their magic
//! number, outputs ending in `.zst` are compressed. `-` is stdin/stdout. Output files are
//! written under a partial name and renamed when complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_LEVEL: i32 = 3;

/// Whether the file starts with zstd's magic number.
pub fn is_zstd(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let read = file
        .read(&mut magic)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(read == 4 && magic == ZSTD_MAGIC)
}

/// Opens `-` (stdin) or a file, decompressing zstd and gzip.
pub fn open_input(path: &str) -> Result<Box<dyn Read>> {
    let raw: Box<dyn Read> = if path == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("opening {path}"))?)
    };
    let mut reader = BufReader::with_capacity(1 << 16, raw);
    let head = std::io::BufRead::fill_buf(&mut reader).with_context(|| format!("reading {path}"))?;
    if head.starts_with(&ZSTD_MAGIC) {
        let decoder = zstd::Decoder::with_buffer(reader).with_context(|| format!("decompressing {path}"))?;
        Ok(Box::new(decoder))
    } else if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

enum Sink {
    Plain(BufWriter<Box<dyn Write>>),
    Zstd(zstd::Encoder<'static, BufWriter<Box<dyn Write>>>),
}

/// An output that appears under its final name only when [`Output::finish`] succeeds.
pub struct Output {
    sink: Option<Sink>,
    partial: Option<PathBuf>,
    path: String,
}

impl Output {
    /// `-` for stdout; a path ending in `.zst` is zstd-compressed. Files are created 0600.
    pub fn create(path: &str) -> Result<Output> {
        let (raw, partial): (Box<dyn Write>, Option<PathBuf>) = if path == "-" {
            (Box::new(io::stdout().lock()), None)
        } else {
            let partial = PathBuf::from(format!("{path}.partial"));
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            (Box::new(file), Some(partial))
        };
        let buffered = BufWriter::with_capacity(1 << 16, raw);
        let sink = if path.ends_with(".zst") {
            Sink::Zstd(
                zstd::Encoder::new(buffered, ZSTD_LEVEL).with_context(|| format!("compressing {path}"))?,
            )
        } else {
            Sink::Plain(buffered)
        };
        Ok(Output {
            sink: Some(sink),
            partial,
            path: path.to_owned(),
        })
    }

    /// The path as given (`-` for stdout), for messages.
    pub fn name(&self) -> &str {
        &self.path
    }

    /// Flushes, ends the zstd frame, syncs and renames into place.
    pub fn finish(mut self) -> Result<()> {
        let context = || format!("writing {}", self.path);
        let buffered = match self.sink.take() {
            Some(Sink::Plain(writer)) => writer,
            Some(Sink::Zstd(encoder)) => encoder.finish().with_context(context)?,
            None => return Ok(()),
        };
        let mut inner = buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(context)?;
        inner.flush().with_context(context)?;
        drop(inner);
        if let Some(partial) = self.partial.take() {
            File::open(&partial)
                .and_then(|f| f.sync_all())
                .with_context(context)?;
            fs::rename(&partial, &self.path).with_context(context)?;
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Some(Sink::Plain(w)) => w.write(buf),
            Some(Sink::Zstd(w)) => w.write(buf),
            None => Err(io::Error::other("output already finished")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Some(Sink::Plain(w)) => w.flush(),
            Some(Sink::Zstd(w)) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(partial) = &self.partial {
            let _ = fs::remove_file(partial);
        }
    }
}

/// A zstd-compressed file decompressed into a temporary file (unpredictable name, 0600,
/// created exclusively so a planted file or symlink is never written through), removed on
/// drop.
pub struct Decompressed {
    file: tempfile::TempPath,
}

impl Decompressed {
    /// Decompresses `source` into the system's temporary directory ($TMPDIR).
    pub fn from(source: &Path) -> Result<Decompressed> {
        let name = source.file_name().and_then(|n| n.to_str()).unwrap_or("mirror");
        let suffix = format!("-{}", name.trim_end_matches(".zst"));
        let context = || format!("decompressing {}", source.display());
        let mut output = tempfile::Builder::new()
            .prefix("pgmirror-")
            .suffix(&suffix)
            .tempfile()
            .with_context(context)?;
        let mut input =
            zstd::Decoder::new(File::open(source).with_context(context)?).with_context(context)?;
        io::copy(&mut input, output.as_file_mut())
            .with_context(|| format!("{} into {}", context(), output.path().display()))?;
        Ok(Decompressed {
            file: output.into_temp_path(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// Removes a file or directory when dropped, unless [`RemoveOnDrop::keep`] was called: the
/// guard that makes a failed run leave nothing under a partial name.
pub struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub fn new(path: PathBuf) -> Self {
        RemoveOnDrop(Some(path))
    }

    /// The work is done (and renamed away): leave the path alone.
    pub fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
        }
    }
}

/// Writes JSON to `path` atomically (a partial file, fsync, rename), mode 0600.
pub fn write_private_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let context = || format!("writing {}", path.display());
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::error::Error::unsupported(context(), e.to_string()))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(context)?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(context)?;
    fs::rename(&partial, path).with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn decompressed_copies_are_private_unpredictable_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("mirror.db.zst");
        fs::write(&source, zstd::encode_all(&b"mirror bytes"[..], 3).unwrap()).unwrap();
        let first = Decompressed::from(&source).unwrap();
        let second = Decompressed::from(&source).unwrap();
        assert_ne!(
            first.path(),
            second.path(),
            "two copies of one file never share a name"
        );
        assert_eq!(fs::read(first.path()).unwrap(), b"mirror bytes");
        let mode = fs::metadata(first.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let path = first.path().to_path_buf();
        drop(first);
        assert!(!path.exists(), "removed on drop");
    }
}
