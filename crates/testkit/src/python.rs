//! Python clients that tests drive unchanged (python-bitcoinrpc, ElectrumX's `electrumx_rpc`),
//! from virtual environments under the target directory, made and filled from PyPI on first
//! use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The virtual environment at `dir`, in which `ready` holds: when it does not, the environment
/// is made (`python3 -m venv`), `package` installed into it with pip, and `ready` asked again.
/// Needs python3 with its venv module, and PyPI.
pub fn venv(dir: &Path, package: &str, ready: impl Fn(&Path) -> bool) -> PathBuf {
    if ready(dir) {
        return dir.to_owned();
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "python3 -m venv {} failed: install python3 and python3-venv",
        dir.display()
    );
    let installed = Command::new(dir.join("bin").join("pip"))
        .args(["install", "--quiet", package])
        .status();
    assert!(
        installed.is_ok_and(|s| s.success()),
        "pip install {package} failed (is PyPI reachable?)"
    );
    assert!(
        ready(dir),
        "{package} is installed in {}, yet not usable",
        dir.display()
    );
    dir.to_owned()
}
