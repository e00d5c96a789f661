//! A hub daemon with its admin listener on a port from the OS, and spoke daemons dialing it,
//! for the tests of `peerpool admin`, `peerpool events` and ElectrumX's `electrumx_rpc`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::daemon::{tempdir, Daemon};

/// Longest any wait may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// A regtest daemon on `listen` with its admin listener on 127.0.0.1 (port from the OS) and
/// its RPC server on a port from the OS too; `extra` flags appended.
pub fn hub(name: &str, listen: &str, extra: &[&str]) -> (Daemon, SocketAddr, u16) {
    let dir = tempdir(name);
    let mut args = vec![
        "run",
        "--network",
        "regtest",
        "--datadir",
        dir.to_str().unwrap(),
        "--listen",
        listen,
        "--no-dnsseed",
        "--admin-bind",
        "127.0.0.1:0",
        "--rpc-bind",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut d = Daemon::start(&args);
    let p2p = d.listening(WAIT);
    let line = d.expect(&["admin listener on"], WAIT);
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("a port in {line:?}"));
    (d, p2p, port)
}

/// A regtest daemon on `listen` that keeps a connection to `to`, with no admin listener.
pub fn spoke(name: &str, listen: &str, to: SocketAddr) -> Daemon {
    let dir = tempdir(name);
    let to = to.to_string();
    Daemon::start(&[
        "run",
        "--network",
        "regtest",
        "--datadir",
        dir.to_str().unwrap(),
        "--listen",
        listen,
        "--no-dnsseed",
        "--no-admin",
        "--rpc-bind",
        "127.0.0.1:0",
        "--connect",
        &to,
    ])
}

/// Polls `f` until it returns `Some`, failing after [`WAIT`].
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
