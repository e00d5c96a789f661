//! npm packages that tests drive unchanged (the `bitcoin-core` RPC client), installed under the
//! target directory on first use from a `package.json` and `package-lock.json` kept with the
//! tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The `node_modules` folder of `dir`, holding exactly what the lock file in `from` names.
///
/// When `dir` was installed from another lock file, or never, `from`'s `package.json` and
/// `package-lock.json` are copied into a folder beside it, `npm ci --ignore-scripts` run there,
/// and the folder moved into place: a test process never sees half an installation. Needs
/// Node.js, npm, and the npm registry the first time.
pub fn install(from: &Path, dir: &Path) -> PathBuf {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lock_file = from.join("package-lock.json");
    let lock =
        fs::read(&lock_file).unwrap_or_else(|e| panic!("reading {}: {e}", lock_file.display()));
    let marker = dir.join(".peerpool-installed-from");
    let installed = || fs::read(&marker).is_ok_and(|have| have == lock);
    if installed() {
        return dir.join("node_modules");
    }

    let staging = dir.with_extension(format!("installing-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).unwrap_or_else(|e| panic!("creating {}: {e}", staging.display()));
    for file in ["package.json", "package-lock.json"] {
        fs::copy(from.join(file), staging.join(file))
            .unwrap_or_else(|e| panic!("copying {file} from {}: {e}", from.display()));
    }
    let out = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&staging)
        .output()
        .unwrap_or_else(|e| panic!("running npm (are Node.js and npm installed?): {e}"));
    assert!(
        out.status.success(),
        "npm ci in {} failed ({}):\n{}{}",
        staging.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(staging.join(".peerpool-installed-from"), &lock)
        .unwrap_or_else(|e| panic!("writing the marker in {}: {e}", staging.display()));
    let _ = fs::remove_dir_all(dir);
    if let Err(e) = fs::rename(&staging, dir) {
        // Another test process moved its own installation into place first.
        let _ = fs::remove_dir_all(&staging);
        assert!(
            installed(),
            "moving {} to {}: {e}",
            staging.display(),
            dir.display()
        );
    }
    dir.join("node_modules")
}
