//! The tracing subscriber: the only place one is installed. The log file is capped: past
//! [`FileLimits::max_size`] bytes it is renamed `NAME.1` (older ones shifting to `NAME.2`,
//! ...) and a new one started, keeping [`FileLimits::keep`] old files.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Default cap on the log file before it is rotated, in bytes.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 64 << 20;

/// Default number of rotated files kept besides the current one.
pub const DEFAULT_LOG_KEEP: usize = 2;

/// Most rotated files kept.
pub const MAX_LOG_KEEP: usize = 100;

/// How large the log file grows and how many old ones stay.
#[derive(Clone, Copy, Debug)]
pub struct FileLimits {
    /// Bytes after which the file is rotated; 0: never.
    pub max_size: u64,
    /// Rotated files kept (`debug.log.1` ... `debug.log.N`); 0: the file starts over.
    pub keep: usize,
}

impl Default for FileLimits {
    fn default() -> FileLimits {
        FileLimits {
            max_size: DEFAULT_LOG_MAX_SIZE,
            keep: DEFAULT_LOG_KEEP,
        }
    }
}

/// Parses a size: a number of MiB, or a number with a `K`, `M` or `G` suffix (KiB, MiB,
/// GiB). `0` turns the cap off.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'M'),
    };
    let shift = match unit {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("{text:?}: the unit is K, M or G")),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 64, 512K or 1G"))?;
    n.checked_mul(1 << shift)
        .filter(|b| *b <= 1 << 50)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Installs logging to stderr and, with `file`, to that file as well (appending, no colours,
/// rotated within its limits).
///
/// `level` is a level (`info`) or a full filter (`info,peerpool_net=debug`).
pub fn init(level: &str, file: Option<(&Path, FileLimits)>) -> anyhow::Result<()> {
    let filter = || {
        EnvFilter::builder().parse(level).with_context(|| {
            format!("invalid --log-level {level:?} (try error, warn, info, debug, trace)")
        })
    };
    let stderr = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter()?);
    let file_layer = match file {
        Some((path, limits)) => Some(
            fmt::layer()
                .with_ansi(false)
                .with_writer(Arc::new(Rotating::open(path, limits)?))
                .with_filter(filter()?),
        ),
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(())
}

/// A log file that rotates itself. Each event arrives as one write, so a line is never split
/// between two files.
#[derive(Debug)]
pub struct Rotating {
    path: PathBuf,
    limits: FileLimits,
    state: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    file: Option<File>,
    size: u64,
}

impl Rotating {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, limits: FileLimits) -> anyhow::Result<Rotating> {
        let file = append(path).with_context(|| format!("opening log file {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Rotating {
            path: path.to_owned(),
            limits,
            state: Mutex::new(Current {
                file: Some(file),
                size,
            }),
        })
    }

    /// `NAME.n`.
    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts the old files by one, the current one to `NAME.1`, and starts a new one. On an
    /// error the current file goes on growing: losing the log is worse than a large one.
    fn rotate(&self, current: &mut Current) {
        current.file = None;
        let shifted = (|| -> std::io::Result<()> {
            if self.limits.keep == 0 {
                return std::fs::remove_file(&self.path);
            }
            let _ = std::fs::remove_file(self.numbered(self.limits.keep));
            for n in (1..self.limits.keep).rev() {
                let from = self.numbered(n);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.numbered(1))
        })();
        if let Ok(file) = append(&self.path) {
            current.size = if shifted.is_ok() {
                0
            } else {
                file.metadata().map(|m| m.len()).unwrap_or(0)
            };
            current.file = Some(file);
        }
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for &Rotating {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut current = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let max = self.limits.max_size;
        if max > 0 && current.size > 0 && current.size + buf.len() as u64 > max {
            self.rotate(&mut current);
        }
        let Some(file) = current.file.as_mut() else {
            // Reopening failed after a rotation: the line is lost, not the daemon.
            return Ok(buf.len());
        };
        file.write_all(buf)?;
        current.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut current = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match current.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_mib_by_default_and_k_m_g_suffixes() {
        assert_eq!(parse_size("64"), Ok(64 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn the_file_rotates_past_its_size_and_keeps_n_old_ones() {
        let dir = std::env::temp_dir().join(format!("peerpool-logrot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("debug.log");
        let log = Rotating::open(
            &path,
            FileLimits {
                max_size: 100,
                keep: 2,
            },
        )
        .unwrap();
        for i in 0..20 {
            (&log)
                .write_all(format!("line {i:03} {}\n", "x".repeat(30)).as_bytes())
                .unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 100);
        assert!(size(&log.numbered(1)) <= 100 && size(&log.numbered(1)) > 0);
        assert!(size(&log.numbered(2)) > 0);
        assert!(!log.numbered(3).exists());
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with(&format!("line 019 {}\n", "x".repeat(30))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
