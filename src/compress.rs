//! Files in and out, with zstd handled transparently: inputs are recognised by their magic
//! number, outputs ending in `.zst` are compressed. `-` is stdin/stdout. Output files are
//! published through `publish::Pending`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

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
    /// None for stdout.
    pending: Option<crate::publish::Pending>,
    path: String,
}

impl Output {
    /// `-` for stdout; a path ending in `.zst` is zstd-compressed. Files are created 0600.
    pub fn create(path: &str) -> Result<Output> {
        let (raw, pending): (Box<dyn Write>, _) = if path == "-" {
            (Box::new(io::stdout().lock()), None)
        } else {
            let (pending, file) = crate::publish::Pending::file(Path::new(path))?;
            (Box::new(file), Some(pending))
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
            pending,
            path: path.to_owned(),
        })
    }

    /// The path as given (`-` for stdout), for messages.
    pub fn name(&self) -> &str {
        &self.path
    }

    /// Flushes, ends the zstd frame, and publishes the file.
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
        match self.pending.take() {
            Some(pending) => pending.commit(),
            None => Ok(()),
        }
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

/// Writes JSON to `path` as a private file, published atomically.
pub fn write_private_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        crate::error::Error::unsupported(format!("writing {}", path.display()), e.to_string())
    })?;
    crate::publish::write_private(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
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
