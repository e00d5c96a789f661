//! `--asmap` on a running daemon: peers grouped and shown by autonomous system, the map's
//! checksum in `getnetworkinfo`, the address book re-bucketed under a new map, and bad map
//! files refused with a clear error. The maps are built here from the format's definition
//! (`peerpool_core::asmap::encode`), for loopback ranges.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use peerpool::core::asmap::encode;
use peerpool_testkit::daemon::{Binary, Daemon, RunArgs};
use peerpool_testkit::tempdir;
use serde_json::Value;

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));
const WAIT: Duration = Duration::from_secs(20);

/// 127.0.1.0/24 in AS 64500, 127.0.2.0/24 in AS 64501.
fn write_map(path: &Path, second_as: u32) {
    let bytes = encode(&[
        (IpAddr::from([127, 0, 1, 0]), 24, 64_500),
        (IpAddr::from([127, 0, 2, 0]), 24, second_as),
    ])
    .unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn start(dir: &Path, listen: &str, extra: &[&str]) -> (Daemon, String, String) {
    let mut d = PEERPOOL.start(
        RunArgs::regtest(dir)
            .listen(listen)
            .rpc_on_any_port()
            .no_admin()
            .args(extra.iter().copied()),
    );
    let p2p = d.listening(WAIT).to_string();
    let rpc = d.rpc_addr(WAIT);
    (d, p2p, rpc)
}

fn rpc(dir: &Path, addr: &str, args: &[&str]) -> Value {
    let (code, out, err) = PEERPOOL.rpc_cli(dir, addr, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    if out.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn wait_for(dir: &Path, addr: &str, args: &[&str], pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = rpc(dir, addr, args);
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{args:?} never matched: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the daemon printed a line containing `needle` so far (lines read while waiting
/// for its addresses included).
fn assert_logged(d: &Daemon, needle: &str) {
    assert!(
        d.seen.iter().any(|l| l.contains(needle)),
        "no {needle:?} in:\n{}",
        d.seen.join("\n")
    );
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[test]
fn peers_and_book_entries_carry_their_as() {
    let peer_dir = tempdir!("asmap-peer");
    let (_peer, peer_p2p, _) = start(&peer_dir, "127.0.2.1:0", &[]);
    let dir = tempdir!("asmap-node");
    std::fs::create_dir_all(dir.join("regtest")).unwrap();
    // A relative path is taken in the chain's data directory, as Core does.
    write_map(&dir.join("regtest").join("ip_asn.map"), 64_501);
    let (mut node, _, node_rpc) = start(&dir, "127.0.1.1:0", &["--asmap", "ip_asn.map"]);
    assert_logged(&node, "Using asmap version");

    let info = rpc(&dir, &node_rpc, &["getnetworkinfo"]);
    assert_eq!(
        info["asmap_version"],
        Value::String(sha256sum(&dir.join("regtest").join("ip_asn.map")))
    );

    rpc(&dir, &node_rpc, &["addnode", &peer_p2p, "onetry"]);
    let peers = wait_for(&dir, &node_rpc, &["getpeerinfo"], |v| {
        v.as_array().is_some_and(|a| a.len() == 1)
    });
    assert_eq!(peers[0]["mapped_as"], 64_501, "{peers:#}");

    // The peer announces itself; its book entry and source both carry an AS.
    let raw = wait_for(&dir, &node_rpc, &["getrawaddrman"], |v| {
        v["new"].as_object().is_some_and(|m| !m.is_empty())
            || v["tried"].as_object().is_some_and(|m| !m.is_empty())
    });
    let entries: Vec<&Value> = ["new", "tried"]
        .iter()
        .flat_map(|t| raw[t].as_object().unwrap().values())
        .collect();
    let e = entries
        .iter()
        .find(|e| e["address"] == "127.0.2.1")
        .unwrap_or_else(|| panic!("{raw:#}"));
    assert_eq!(e["mapped_as"], 64_501);
    assert_eq!(e["network"], "not_publicly_routable");
    assert_eq!(e["source"], "127.0.2.1");
    assert_eq!(e["source_mapped_as"], 64_501);
    for key in raw["new"].as_object().unwrap().keys() {
        let (b, p) = key.split_once('/').unwrap();
        assert!(b.parse::<u16>().unwrap() < 1024 && p.parse::<u8>().unwrap() < 64);
    }
    assert!(node.terminate().success());

    // A different map: the saved book is re-bucketed on load, and the daemon serves on.
    write_map(&dir.join("regtest").join("ip_asn.map"), 64_777);
    let (mut node, _, node_rpc) = start(&dir, "127.0.1.1:0", &["--asmap", "ip_asn.map"]);
    assert_logged(&node, "Using asmap version");
    let raw = rpc(&dir, &node_rpc, &["getrawaddrman"]);
    let text = raw.to_string();
    assert!(text.contains("64777"), "{raw:#}");
    assert!(!text.contains("64501"), "{raw:#}");
    assert!(node.terminate().success());

    // Without a map: no AS anywhere, no asmap_version.
    let (mut node, _, node_rpc) = start(&dir, "127.0.1.1:0", &[]);
    let raw = rpc(&dir, &node_rpc, &["getrawaddrman"]);
    assert!(!raw.to_string().contains("mapped_as"), "{raw:#}");
    assert!(rpc(&dir, &node_rpc, &["getnetworkinfo"])
        .get("asmap_version")
        .is_none());
    assert!(node.terminate().success());
}

#[test]
fn bad_asmap_files_stop_the_daemon_with_a_clear_error() {
    let dir = tempdir!("asmap-bad");
    let run = |extra: &[&str]| PEERPOOL.run_regtest_to_end(&dir, extra);
    let missing = dir.join("nope.map");
    let (ok, err) = run(&["--asmap", missing.to_str().unwrap()]);
    assert!(
        !ok && err.contains("--asmap") && err.contains("nope.map"),
        "{err}"
    );

    let garbage = dir.join("garbage.map");
    std::fs::write(&garbage, [0xff; 64]).unwrap();
    let (ok, err) = run(&["--asmap", garbage.to_str().unwrap()]);
    assert!(!ok && err.contains("not a valid asmap"), "{err}");

    let empty = dir.join("empty.map");
    std::fs::write(&empty, []).unwrap();
    let (ok, err) = run(&["--asmap", empty.to_str().unwrap()]);
    assert!(!ok && err.contains("the asmap is empty"), "{err}");

    // A directory, and a FIFO nobody writes to: refused at once, never waited on.
    let (ok, err) = run(&["--asmap", dir.to_str().unwrap()]);
    assert!(!ok && err.contains("not a regular file"), "{err}");
    let fifo = dir.join("fifo.map");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (ok, err) = run(&["--asmap", fifo.to_str().unwrap()]);
    assert!(!ok && err.contains("not a regular file"), "{err}");

    // In the config file too, relative to the file.
    let config = dir.join("bad.toml");
    std::fs::write(&config, "asmap = \"garbage.map\"\n").unwrap();
    let (ok, err) = run(&["--config", config.to_str().unwrap()]);
    assert!(!ok && err.contains("not a valid asmap"), "{err}");
}
