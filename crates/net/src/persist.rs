//! Snapshot files: state the node keeps across restarts (address book, ban list), written so
//! that a crash never leaves a half-written file and damage is noticed rather than believed.
//!
//! [`save`] writes a whole snapshot and [`load`] reads one back; the bytes inside are the
//! business of whoever serializes the state (for example
//! `peerpool_core::pool::banman::BanList::encode`).
//!
//! ## Writing
//! [`save`] never writes into the file it replaces. It writes a temporary file in the same
//! directory (named `.NAME.XXXXXX.tmp`), flushes it to disk with `fsync`, renames it over the
//! target and then flushes the directory (on Unix), so that the rename itself is durable. A
//! rename within one file system is atomic: at every instant the target is either the complete
//! old snapshot or the complete new one. If the process dies before the rename, the old file is
//! untouched and a stray temporary file may be left behind; nothing reads those, and they can
//! be deleted at leisure. On an error, the temporary file is removed.
//!
//! ## File layout
//! Integers are little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic: ASCII `PEERPOOL` ([`MAGIC`]) |
//! | 8 | 4 | format version of this layout ([`FORMAT_VERSION`], 1) |
//! | 12 | 16 | kind: ASCII tag naming the contents (`banlist`, `peers`), padded with zero bytes |
//! | 28 | 8 | payload length in bytes |
//! | 36 | 32 | SHA-256 of bytes 0..36 followed by the payload |
//! | 68 | length | payload |
//!
//! The checksum covers the header as well as the payload, so a damaged kind tag is reported as
//! damage, and a tag that checks out but differs from the one asked for is a file of another
//! kind (a configuration pointing two stores at one path).
//!
//! ## Reading, and what happens to a bad file
//! [`load`] returns:
//! - `Ok(None)` when there is no file: a first start;
//! - `Ok(Some(payload))` when the file is whole and of the expected kind;
//! - [`LoadError::Corrupt`] when the file exists but cannot be trusted: shorter than a header,
//!   wrong magic, a layout version we do not know, a length that does not match, a checksum
//!   mismatch, or another kind. The file is then **renamed aside** to
//!   `NAME.corrupt-<unix seconds>` (with `-1`, `-2`, ... appended if that name is taken) and
//!   the error says where it went. The bytes are kept for a post-mortem, and the next [`save`]
//!   does not overwrite them; the caller logs the error and starts with empty state;
//! - [`LoadError::Io`] when the path cannot be read at all (permissions, a directory in the
//!   way). Nothing is moved: what is there may not be ours to move.
//!
//! A snapshot is only ever a regular file of bounded size. The path is opened without
//! waiting (a FIFO would otherwise block the start until a writer comes), and anything that
//! is not a regular file once opened (a FIFO, a device such as `/dev/zero` behind a symbolic
//! link, a socket) is [`Corruption::NotAFile`]; a file longer than the header and the
//! largest payload the caller allows ([`load_bounded`]) is [`Corruption::TooLarge`] and is
//! judged from its size alone, before any of it is read. Both are set aside like any other
//! damage (the link or FIFO itself is renamed; what it points to is never touched).
//!
//! Neither error is a reason to stop: a node without its address book or bans can still start,
//! so callers log the error and carry on empty. The same goes for a payload that passes these
//! checks but that the state's own decoder refuses (say, a newer format): [`move_aside`] is
//! public so the caller can set such a file aside the same way.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"PEERPOOL";

/// Version of the file layout (not of the payload, which versions itself).
pub const FORMAT_VERSION: u32 = 1;

/// Longest kind tag, in bytes.
pub const MAX_KIND_LEN: usize = 16;

/// Size of the header before the payload.
pub const HEADER_LEN: usize = 68;

const KIND_AT: usize = 12;
const LEN_AT: usize = KIND_AT + MAX_KIND_LEN;
const SUM_AT: usize = LEN_AT + 8;

/// How many `-N` suffixes [`move_aside`] tries when the plain name is taken.
const ASIDE_ATTEMPTS: u32 = 1_000;

/// Why a snapshot could not be loaded; see the module docs for what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file exists but could not be read; it was left where it is.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is damaged or of another kind; it has been moved aside if possible.
    #[error("{}: {problem}; {aside}", path.display())]
    Corrupt {
        /// The file as it was named.
        path: PathBuf,
        /// What is wrong with it.
        problem: Corruption,
        /// Where it went.
        aside: Aside,
    },
    /// The kind asked for cannot be written in a header.
    #[error("invalid snapshot kind {0:?}: expected 1 to 16 printable ASCII characters")]
    InvalidKind(String),
}

impl LoadError {
    /// Where a corrupt file was moved, if it was.
    pub fn moved_to(&self) -> Option<&Path> {
        match self {
            LoadError::Corrupt {
                aside: Aside::Moved(p),
                ..
            } => Some(p),
            _ => None,
        }
    }
}

/// What is wrong with a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// Not even a whole header.
    #[error("{len} bytes is too short for a snapshot header of {HEADER_LEN} bytes")]
    TooShort {
        /// File length.
        len: usize,
    },
    /// The file does not start with [`MAGIC`].
    #[error("not a peerpool snapshot (bad magic)")]
    BadMagic,
    /// A layout version this code does not know.
    #[error("snapshot layout version {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    /// Fewer payload bytes than the header promises.
    #[error("truncated: header promises {expected} payload bytes, file holds {actual}")]
    Truncated {
        /// Length in the header.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// More payload bytes than the header promises.
    #[error("{extra} unexpected bytes after the payload")]
    TrailingBytes {
        /// Bytes beyond the promised length.
        extra: u64,
    },
    /// The SHA-256 does not match.
    #[error("checksum mismatch")]
    ChecksumMismatch,
    /// Not a regular file: a FIFO, a device, a socket.
    #[error("not a regular file ({0})")]
    NotAFile(&'static str),
    /// Longer than any snapshot of its kind can be.
    #[error("{len} bytes is more than a snapshot of this kind can hold ({max} at most)")]
    TooLarge {
        /// File length.
        len: u64,
        /// The largest file accepted.
        max: u64,
    },
    /// A sound file of another kind.
    #[error("holds {found:?} data, expected {expected:?}")]
    WrongKind {
        /// The kind asked for.
        expected: String,
        /// The kind in the file.
        found: String,
    },
}

/// What became of a corrupt file.
#[derive(Debug)]
pub enum Aside {
    /// Renamed to this path.
    Moved(PathBuf),
    /// Renaming failed; the file is still in place.
    NotMoved(io::Error),
}

impl fmt::Display for Aside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aside::Moved(p) => write!(f, "moved aside to {}", p.display()),
            Aside::NotMoved(e) => write!(f, "could not move it aside: {e}"),
        }
    }
}

/// The kind tag as it sits in the header, if `kind` is a valid tag.
fn kind_field(kind: &str) -> Option<[u8; MAX_KIND_LEN]> {
    let valid =
        (1..=MAX_KIND_LEN).contains(&kind.len()) && kind.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return None;
    }
    let mut field = [0u8; MAX_KIND_LEN];
    field[..kind.len()].copy_from_slice(kind.as_bytes());
    Some(field)
}

fn checksum(header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&header[..SUM_AT]);
    h.update(payload);
    h.finalize().into()
}

/// The directory a path lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An error that names the file it is about, keeping the kind for callers that match on it.
fn with_path(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Writes `bytes` as a snapshot of `kind` at `path`, atomically replacing any file there; see
/// the module docs. `kind` is 1 to [`MAX_KIND_LEN`] printable ASCII characters.
pub fn save(path: &Path, kind: &str, bytes: &[u8]) -> io::Result<()> {
    let kind_tag = kind_field(kind).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid snapshot kind {kind:?}: expected 1 to 16 printable ASCII characters"),
        )
    })?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("snapshot path {} names no file", path.display()),
        )
    })?;
    let dir = parent_dir(path);

    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(&MAGIC);
    header[MAGIC.len()..KIND_AT].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[KIND_AT..LEN_AT].copy_from_slice(&kind_tag);
    header[LEN_AT..SUM_AT].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    let sum = checksum(&header, bytes);
    header[SUM_AT..].copy_from_slice(&sum);

    // Same directory, so the rename below stays within one file system and is atomic.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| with_path(dir, "creating a temporary file in", e))?;
    let written = tmp
        .write_all(&header)
        .and_then(|()| tmp.write_all(bytes))
        .and_then(|()| tmp.as_file().sync_all());
    written.map_err(|e| with_path(tmp.path(), "writing", e))?;
    // On failure the temporary file comes back inside the error and is deleted with it.
    tmp.persist(path)
        .map_err(|e| with_path(path, "replacing", e.error))?;
    sync_dir(dir).map_err(|e| with_path(dir, "flushing directory", e))
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened as files here; the rename is as durable as the OS makes it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Largest payload [`load`] accepts: far above any snapshot peerpool writes, small enough that
/// reading one cannot exhaust memory.
pub const DEFAULT_MAX_PAYLOAD: u64 = 32 << 20;

/// Reads the snapshot of `kind` at `path`: `Ok(None)` if there is none. A damaged file or one
/// of another kind is an error and is moved aside; see the module docs. Payloads above
/// [`DEFAULT_MAX_PAYLOAD`] count as damage; [`load_bounded`] sets another bound.
pub fn load(path: &Path, kind: &str) -> Result<Option<Vec<u8>>, LoadError> {
    load_bounded(path, kind, DEFAULT_MAX_PAYLOAD)
}

/// As [`load`], with payloads above `max_payload` bytes refused (and set aside) before any
/// of the file is read.
pub fn load_bounded(
    path: &Path,
    kind: &str,
    max_payload: u64,
) -> Result<Option<Vec<u8>>, LoadError> {
    let expected = kind_field(kind).ok_or_else(|| LoadError::InvalidKind(kind.to_owned()))?;
    let io_error = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    let max = max_payload.saturating_add(HEADER_LEN as u64);
    let mut data = match read_regular(path, max) {
        Ok(Some(data)) => data,
        Ok(None) => return Ok(None),
        Err(Refused::Io(e)) => return Err(io_error(e)),
        Err(Refused::Bad(problem)) => return Err(set_aside(path, problem)),
    };
    if let Err(problem) = check(&data, &expected) {
        return Err(set_aside(path, problem));
    }
    data.drain(..HEADER_LEN);
    Ok(Some(data))
}

/// Why [`read_regular`] read nothing.
enum Refused {
    /// The path could not be opened or read.
    Io(io::Error),
    /// What is there is no snapshot, whatever its bytes.
    Bad(Corruption),
}

/// The bytes of the regular file at `path`, at most `max` of them; `Ok(None)` if there is
/// nothing at `path`.
fn read_regular(path: &Path, max: u64) -> Result<Option<Vec<u8>>, Refused> {
    use std::io::Read;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO opened for reading waits for a writer; without waiting, it opens at once
        // and is refused below for what it is.
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Refused::Io(e)),
    };
    let meta = file.metadata().map_err(Refused::Io)?;
    if meta.is_dir() {
        // A directory in the way is not ours to move (see the module docs).
        return Err(Refused::Io(io::Error::other("is a directory")));
    }
    if !meta.is_file() {
        return Err(Refused::Bad(Corruption::NotAFile(file_type_name(&meta))));
    }
    if meta.len() > max {
        return Err(Refused::Bad(Corruption::TooLarge {
            len: meta.len(),
            max,
        }));
    }
    // The size can change between the look and the read: the read is bounded all the same.
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(Refused::Io)?;
    if data.len() as u64 > max {
        return Err(Refused::Bad(Corruption::TooLarge {
            len: data.len() as u64,
            max,
        }));
    }
    Ok(Some(data))
}

/// What a file that is not a regular one is, for the error.
fn file_type_name(meta: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

/// Moves the file at `path` aside and makes the error that says so.
fn set_aside(path: &Path, problem: Corruption) -> LoadError {
    let aside = match move_aside(path) {
        Ok(to) => Aside::Moved(to),
        Err(e) => Aside::NotMoved(e),
    };
    LoadError::Corrupt {
        path: path.to_owned(),
        problem,
        aside,
    }
}

/// Checks the header of `data` against its payload and the kind expected.
fn check(data: &[u8], expected: &[u8; MAX_KIND_LEN]) -> Result<(), Corruption> {
    let Some((header, payload)) = data.split_first_chunk::<HEADER_LEN>() else {
        return Err(Corruption::TooShort { len: data.len() });
    };
    if header[..MAGIC.len()] != MAGIC {
        return Err(Corruption::BadMagic);
    }
    let version = u32::from_le_bytes(le_bytes(&header[MAGIC.len()..KIND_AT]));
    if version != FORMAT_VERSION {
        return Err(Corruption::UnsupportedVersion(version));
    }
    let promised = u64::from_le_bytes(le_bytes(&header[LEN_AT..SUM_AT]));
    let actual = payload.len() as u64;
    if actual < promised {
        return Err(Corruption::Truncated {
            expected: promised,
            actual,
        });
    }
    if actual > promised {
        return Err(Corruption::TrailingBytes {
            extra: actual - promised,
        });
    }
    if header[SUM_AT..] != checksum(header, payload) {
        return Err(Corruption::ChecksumMismatch);
    }
    let found = &header[KIND_AT..LEN_AT];
    if found != expected {
        let name = |tag: &[u8]| {
            let end = tag.iter().position(|&b| b == 0).unwrap_or(tag.len());
            String::from_utf8_lossy(&tag[..end]).into_owned()
        };
        return Err(Corruption::WrongKind {
            expected: name(expected),
            found: name(found),
        });
    }
    Ok(())
}

/// A fixed-size integer field; the callers pass slices of the right length.
fn le_bytes<const N: usize>(field: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(field);
    out
}

/// Renames the file at `path` to `NAME.corrupt-<unix seconds>` beside it (adding `-1`, `-2`,
/// ... if that exists) and returns the new path. Used by [`load`]; public for payloads that
/// pass the file checks but that their own decoder refuses.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let base = format!(
        "{}.corrupt-{}",
        name.to_string_lossy(),
        crate::clock::now().as_secs()
    );
    for n in 0..ASIDE_ATTEMPTS {
        let candidate = if n == 0 {
            path.with_file_name(&base)
        } else {
            path.with_file_name(format!("{base}-{n}"))
        };
        // Checked then renamed: not safe against a concurrent writer, which snapshots do not
        // have (one process owns its data directory).
        match fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(path, &candidate)?;
                return Ok(candidate);
            }
            Err(e) => return Err(e),
            Ok(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{ASIDE_ATTEMPTS} names for {base} are taken"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_that_fit_a_header() {
        assert!(kind_field("banlist").is_some());
        assert!(kind_field("sixteen-chars-ok").is_some());
        assert!(kind_field("seventeen-chars-x").is_none());
        assert!(kind_field("").is_none());
        assert!(kind_field("a b").is_none());
        assert!(kind_field("a\0").is_none());
        assert!(kind_field("ünï").is_none());
    }

    #[test]
    fn bare_file_names_live_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("peers.dat")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/peers.dat")), Path::new("/a"));
    }

    #[test]
    fn header_offsets_add_up() {
        assert_eq!(SUM_AT + 32, HEADER_LEN);
        assert_eq!(KIND_AT, MAGIC.len() + 4);
    }
}
