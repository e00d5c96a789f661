//! Real clients against a real daemon: python-bitcoinrpc's `AuthServiceProxy` unchanged (in
//! a virtualenv under the target directory, made and filled from PyPI when missing), with the
//! daemon's JSON-RPC 2.0 replies on (the default) and off, and `peerpool rpc` as bitcoin-cli is used. The other
//! client libraries are in `rpc_clients.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use peerpool_testkit::daemon::{Binary, Daemon, RunArgs};
use peerpool_testkit::{python, tempdir};

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

/// A daemon on loopback with its RPC server on an OS-chosen port, and no admin listener (its
/// fixed default port would collide between the daemons of one test): the daemon, where it
/// takes peers and where its RPC server listens.
fn start_daemon(dir: &Path, extra: &[&str]) -> (Daemon, String, String) {
    let mut d = PEERPOOL.start(
        RunArgs::regtest(dir)
            .listen("127.0.0.1:0")
            .rpc_on_any_port()
            .no_admin()
            .args(extra.iter().copied()),
    );
    let p2p = d.listening(Duration::from_secs(20)).to_string();
    let rpc = d.rpc_addr(Duration::from_secs(20));
    (d, p2p, rpc)
}

/// The virtualenv's python with python-bitcoinrpc, made if missing.
fn python() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let has_module = |env: &Path| {
        Command::new(env.join("bin").join("python"))
            .args(["-c", "import bitcoinrpc.authproxy"])
            .status()
            .is_ok_and(|s| s.success())
    };
    let env = python::venv(&target.join("pyenv"), "python-bitcoinrpc", has_module);
    env.join("bin").join("python")
}

/// Runs `tests/rpc/authproxy_check.py` against a node with user and password and two peers for
/// it, all without automatic connections (every connection is one the script asked for);
/// `strict` leaves the node's JSON-RPC 2.0 replies on (the default); otherwise it starts
/// with `--rpc-strict-jsonrpc2=false`.
fn authproxy_session(name: &str, strict: bool) {
    let py = python();
    let quiet = ["--target-outbound", "0"];
    let (_peer1, peer1, _) = start_daemon(&tempdir!(&format!("{name}-peer1")), &quiet);
    let (_peer2, peer2, _) = start_daemon(&tempdir!(&format!("{name}-peer2")), &quiet);
    let mut flags = vec!["--rpc-user", "pyuser", "--rpc-password", "pypass"];
    flags.extend(quiet);
    if !strict {
        flags.push("--rpc-strict-jsonrpc2=false");
    }
    let (mut node, _, rpc) = start_daemon(&tempdir!(&format!("{name}-node")), &flags);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rpc/authproxy_check.py");
    let out = Command::new(py)
        .arg(script)
        .arg(format!("http://pyuser:pypass@{rpc}"))
        .arg(format!("http://pyuser:wrong@{rpc}"))
        .arg(&peer1)
        .arg(&peer2)
        .args(strict.then_some("strict"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "stdout: {stdout}\nstderr: {stderr}\ndaemon:\n{}",
        node.seen.join("\n")
    );
    assert!(node.terminate().success());
}

#[test]
fn python_bitcoinrpc_drives_the_daemon_unchanged() {
    authproxy_session("rpc-py", false);
}

/// Single calls work as before (the proxy says JSON-RPC 1.1); `batch_` says 2.0 and cannot
/// read the replies, as against Core 28+.
#[test]
fn python_bitcoinrpc_with_strict_jsonrpc2_all_but_batches() {
    authproxy_session("rpc-py-strict", true);
}

/// Runs `peerpool rpc` with `args`; returns (exit code, stdout, stderr).
fn cli(dir: &Path, rpc: &str, args: &[&str]) -> (i32, String, String) {
    PEERPOOL.rpc_cli(dir, rpc, args)
}

#[test]
fn peerpool_rpc_works_as_bitcoin_cli() {
    let dir = tempdir!("rpc-cli-node");
    let (_peer, peer, _) = start_daemon(&tempdir!("rpc-cli-peer"), &[]);
    let (mut node, _, rpc) = start_daemon(&dir, &[]);
    let cookie = dir.join("regtest").join(".cookie");
    assert!(cookie.exists(), "the cookie is written at start");

    // Results: JSON pretty-printed, strings bare, null as nothing.
    let (code, out, err) = cli(&dir, &rpc, &["getconnectioncount"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "0\n", ""));
    let (code, out, _) = cli(&dir, &rpc, &["addnode", &peer, "onetry"]);
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out, _) = cli(&dir, &rpc, &["help", "uptime"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "uptime\n\nSeconds since the daemon started.\n")
    );
    let (code, out, _) = cli(&dir, &rpc, &["listbanned"]);
    assert_eq!((code, out.as_str()), (0, "[]\n"));
    let (code, _, _) = cli(&dir, &rpc, &["setban", "10.0.0.0/8", "add", "600"]);
    assert_eq!(code, 0);
    let (_, out, _) = cli(&dir, &rpc, &["listbanned"]);
    assert!(
        out.starts_with("[\n  {\n    \"address\": \"10.0.0.0/8\",\n"),
        "{out}"
    );

    // Named arguments.
    let (code, out, err) = cli(
        &dir,
        &rpc,
        &["-named", "getnodeaddresses", "count=0", "network=ipv6"],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "[]\n", ""));
    // Words without '=' are positional, as in bitcoin-cli (sent as "args").
    let (code, out, err) = cli(
        &dir,
        &rpc,
        &["-named", "getnodeaddresses", "0", "network=ipv6"],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "[]\n", ""));
    let (code, _, err) = cli(&dir, &rpc, &["-named", "getnodeaddresses", "count"]);
    assert_eq!(code, 3);
    assert!(err.contains("not of expected type number"), "{err}");

    // Errors: Core's text on stderr and its code as the exit status.
    let (code, out, err) = cli(&dir, &rpc, &["addnode", &peer, "remove"]);
    assert_eq!((code, out.as_str()), (24, ""));
    assert_eq!(
        err,
        "error code: -24\nerror message:\nError: Node could not be removed. It has not been added previously.\n"
    );
    let (code, _, err) = cli(&dir, &rpc, &["getnodeaddresses", "-1"]);
    assert_eq!(code, 8);
    assert_eq!(
        err,
        "error code: -8\nerror message:\nAddress count out of range\n"
    );
    let (code, _, err) = cli(&dir, &rpc, &["nosuch"]);
    assert_eq!(code, 32601 % 256);
    assert!(err.starts_with("error code: -32601\n"), "{err}");
    let out = PEERPOOL
        .command()
        .args([
            "rpc",
            "--rpc-connect",
            &rpc,
            "--rpc-user",
            "x",
            "--rpc-password",
            "y",
            "uptime",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Authorization failed"));
    let nowhere = tempdir!("rpc-cli-nocookie");
    let (code, _, err) = cli(&nowhere, &rpc, &["uptime"]);
    assert_eq!(code, 1);
    assert!(err.contains("Could not locate RPC credentials"), "{err}");

    // The peer from onetry shows; then stop ends the daemon and removes the cookie.
    let (_, out, _) = cli(&dir, &rpc, &["getpeerinfo"]);
    assert!(out.contains(&format!("\"addr\": \"{peer}\"")), "{out}");
    let (code, out, _) = cli(&dir, &rpc, &["stop"]);
    assert_eq!((code, out.as_str()), (0, "peerpool stopping\n"));
    let status = node.child.wait().unwrap();
    assert!(status.success());
    assert!(!cookie.exists(), "the cookie is removed at stop");
    let (code, _, err) = cli(&dir, &rpc, &["uptime"]);
    assert_eq!(code, 1);
    assert!(err.contains("Could not"), "{err}");
}

#[test]
fn bad_rpc_settings_fail_clearly() {
    let dir = tempdir!("rpc-bad-settings");
    let run = |extra: &[&str]| PEERPOOL.run_regtest_to_end(&dir, extra);
    let (ok, err) = run(&["--rpcauth", "alice:nohash"]);
    assert!(!ok && err.contains("invalid rpcauth entry"), "{err}");
    let (ok, err) = run(&["--rpc-user", "alice"]);
    assert!(!ok && err.contains("--rpc-password"), "{err}");
    let (ok, err) = run(&["--deprecatedrpc", "bip125"]);
    assert!(!ok && err.contains("unknown --deprecatedrpc name"), "{err}");
    let (ok, err) = run(&["--rpc-bind", "127.0.0.1:99999"]);
    assert!(!ok && err.contains("--rpc-bind"), "{err}");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "rpc-bind = 5\n").unwrap();
    let (ok, err) = run(&["--config", config.to_str().unwrap()]);
    assert!(!ok && err.contains("rpc-bind"), "{err}");
    std::fs::write(&config, "rpcauth = [\"bob:salt$00\"]\n").unwrap();
    let (ok, err) = run(&["--config", config.to_str().unwrap()]);
    assert!(!ok && err.contains("invalid rpcauth entry"), "{err}");
}
