//! Directories for a test's files, under the target directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty directory under the target directory's scratch space
/// (`CARGO_TARGET_TMPDIR`), named after `name`, the test process and a counter.
///
/// Nobody removes it: it is small, and useful when a test fails. `CARGO_TARGET_TMPDIR` is
/// only known when the test crate itself is compiled, hence a macro that names it there.
///
/// ```ignore
/// let dir = peerpool_testkit::tempdir!("restart");
/// ```
#[macro_export]
macro_rules! tempdir {
    ($name:expr) => {
        $crate::dirs::fresh_dir(env!("CARGO_TARGET_TMPDIR"), $name)
    };
}

/// A fresh, empty directory `base/name-PID-N`: what [`tempdir!`](crate::tempdir) makes, for a
/// base the caller names itself.
pub fn fresh_dir(base: impl AsRef<Path>, name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = base
        .as_ref()
        .join(format!("{name}-{}-{n}", std::process::id()));
    // Left over from a process that had the same PID.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("creating the test directory {}: {e}", dir.display()));
    dir
}
