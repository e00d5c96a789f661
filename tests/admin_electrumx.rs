//! ElectrumX's own admin client, `electrumx_rpc` (PyPI package `e-x`), unchanged, against a
//! daemon with live peers: every command it has for sessions prints without errors.
//!
//! The client is taken from `$ELECTRUMX_RPC` when set; otherwise it is installed into a
//! virtual environment under the target directory on first use (`python3 -m venv`, then
//! `pip install e-x`), which needs python3 with its venv module and access to PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use peerpool_testkit::daemon::Binary;
use peerpool_testkit::{eventually, python, tempdir};
use serde_json::Value;

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

/// The version of `e-x` the test installs: its tables are what the answers are shaped for.
const E_X: &str = "e-x==2.0.0";

fn electrumx_rpc() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("ELECTRUMX_RPC").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("electrumx-venv");
        let has_client = |env: &Path| env.join("bin/electrumx_rpc").exists();
        python::venv(&venv, E_X, has_client).join("bin/electrumx_rpc")
    })
    .clone()
}

/// Runs `electrumx_rpc --port PORT ARGS...`; its stdout, after checking it succeeded and
/// printed no error.
fn ex(port: u16, args: &[&str]) -> String {
    let out = Command::new(electrumx_rpc())
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("running electrumx_rpc");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && !stdout.contains("error making request")
            && !stdout.contains("cannot connect")
            && !stderr.contains("Traceback"),
        "electrumx_rpc {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn electrumx_rpc_shows_and_controls_the_sessions_of_a_live_daemon() {
    let (_hub, hub_p2p, port) = PEERPOOL.hub(
        &tempdir!("ex-hub"),
        "127.0.70.1:0",
        // A book entry nobody answers at, for `peers`.
        &["--seednode", "127.0.70.9:18444"],
    );
    let _spoke = PEERPOOL.spoke(&tempdir!("ex-spoke"), "127.0.70.2:0", hub_p2p);

    // The spoke's session, as the table's one row.
    let row = eventually("the spoke's session", || {
        let out = ex(port, &["sessions"]);
        let mut lines = out.lines();
        let header = lines.next().unwrap_or_default().to_string();
        assert!(header.starts_with("ID") && header.contains("Peer"), "{out}");
        // The spoke's inbound session (the hub may also dial the spoke it learns of).
        lines
            .find(|l| l.contains("127.0.70.2") && l.split_whitespace().nth(1) == Some("IP1"))
            .map(str::to_string)
    });
    let cells: Vec<&str> = row.split_whitespace().collect();
    let id = cells[0];
    assert!(id.parse::<u64>().is_ok(), "{row}");
    assert_eq!(cells[1], "IP1", "inbound, plaintext, priority 1: {row}");
    assert!(row.contains("/peerpool:0.1.0/"), "{row}");
    assert!(row.contains("70016"), "{row}");

    let info = json(&ex(port, &["getinfo"]));
    assert_eq!(info["chain"], "regtest");
    assert!(info["sessions"]["count"].as_u64().unwrap() >= 1, "{info}");
    assert_eq!(info["sessions"]["inbound"], 1, "{info}");
    assert!(info["pid"].is_u64());

    let groups = ex(port, &["groups"]);
    let group = groups
        .lines()
        .find(|l| l.starts_with("127.0.70.2"))
        .unwrap_or_else(|| panic!("the spoke's group in\n{groups}"));
    let n: u64 = group.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n >= 1, "{group}");

    let peers = ex(port, &["peers"]);
    assert!(peers.starts_with("Host"), "{peers}");
    let seed = peers
        .lines()
        .find(|l| l.starts_with("127.0.70.9"))
        .unwrap_or_else(|| panic!("the seed node in\n{peers}"));
    assert!(seed.contains("never"), "never reached: {seed}");

    // `log` toggles and answers per id; the flag shows it.
    let logged = json(&ex(port, &["log", id, "4242"]));
    assert_eq!(
        logged,
        serde_json::json!([format!("logging session {id}"), "unknown: 4242"])
    );
    let sessions = ex(port, &["sessions"]);
    assert!(
        sessions
            .lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains("IPL1")),
        "{sessions}"
    );
    let unlogged = json(&ex(port, &["log", id]));
    assert_eq!(
        unlogged,
        serde_json::json!([format!("not logging session {id}")])
    );

    // `disconnect` closes the session.
    let answer = json(&ex(port, &["disconnect", id, "x"]));
    assert_eq!(
        answer,
        serde_json::json!([format!("disconnecting session {id}"), "unknown: x"])
    );
    eventually("the session to be gone", || {
        let out = ex(port, &["sessions"]);
        (!out.lines().any(|l| l.starts_with(&format!("{id} ")))).then_some(())
    });
}
