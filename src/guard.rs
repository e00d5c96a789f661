//! What keeps one daemon's process sound: the data directory's lock, and panics turned into
//! a stop with a non-zero exit.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

/// The lock file's name in the chain's data directory. Bitcoin Core: `.lock`.
pub const LOCK_FILE: &str = ".lock";

/// The data directory held for this process: an exclusive `flock` on `<dir>/.lock`, which
/// holds the owner's process id. The lock goes with the process (the OS drops it when the
/// descriptor closes, even after a crash or SIGKILL), so a stale lock file never blocks a
/// start.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir`, or fails naming the process that holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = owner.trim();
                let who = if owner.is_empty() {
                    "another process".to_owned()
                } else {
                    format!("another peerpool (process {owner})")
                };
                bail!(
                    "the data directory {} is in use by {who}: stop it, or give this one \
                     another --datadir",
                    dir.display()
                );
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()))
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(DirLock { _file: file })
    }
}

/// The first panic of the process, as logged.
static PANIC: OnceLock<String> = OnceLock::new();
/// Cancelled by a panic: the daemon's shutdown.
static STOP: OnceLock<CancellationToken> = OnceLock::new();

/// Makes every panic, on any thread or task, log its reason and cancel `stop`: a daemon with a
/// dead task serves nothing, so it stops and exits non-zero (see [`panicked`]) rather than
/// lingering. Tokio would otherwise keep the panic inside the task's join handle.
pub fn stop_on_panic(stop: CancellationToken) {
    let _ = STOP.set(stop);
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let place = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        let thread = std::thread::current();
        let reason = format!(
            "panic in thread {}{place}: {message}",
            thread.name().unwrap_or("unnamed")
        );
        tracing::error!("{reason}; stopping the daemon");
        let _ = PANIC.set(reason);
        if let Some(stop) = STOP.get() {
            stop.cancel();
        }
    }));
}

/// The reason of the first panic, if one happened.
pub fn panicked() -> Option<&'static str> {
    PANIC.get().map(String::as_str)
}

/// Test hook: with `PEERPOOL_TEST_PANIC=1` in its environment the daemon panics in a task of
/// its own once it serves, so that tests see what any panic leads to.
pub fn test_panic_requested() -> bool {
    std::env::var_os("PEERPOOL_TEST_PANIC").is_some_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_names_the_first_owner() {
        let dir = std::env::temp_dir().join(format!("peerpool-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::acquire(&dir).unwrap();
        // A second open file description conflicts with the first, as another process would.
        let e = DirLock::acquire(&dir).unwrap_err().to_string();
        assert!(e.contains("in use by another peerpool"), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        drop(first);
        let again = DirLock::acquire(&dir).unwrap();
        assert!(dir.join(LOCK_FILE).exists());
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
