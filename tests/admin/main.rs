//! `peerpool admin` and `peerpool events` against a live daemon.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::sync::mpsc;

use peerpool_testkit::daemon::Binary;
use peerpool_testkit::{eventually, tempdir, WAIT};
use serde_json::Value;

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

fn admin(port: u16, args: &[&str]) -> Output {
    PEERPOOL
        .command()
        .args(["admin", "--port", &port.to_string()])
        .args(args)
        .output()
        .expect("running peerpool admin")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "peerpool admin failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn peerpool_admin_prints_aligned_tables_and_controls_sessions() {
    let (_hub, hub_p2p, port) = PEERPOOL.hub(&tempdir!("admin-hub"), "127.0.71.1:0", &[]);
    let _spoke = PEERPOOL.spoke(&tempdir!("admin-spoke"), "127.0.71.2:0", hub_p2p);
    let (header, row) = eventually("the spoke's session", || {
        let out = stdout(&admin(port, &["sessions"]));
        let header = out.lines().next()?.to_string();
        let row = out
            .lines()
            .find(|l| l.contains("127.0.71.2") && l.split_whitespace().nth(1) == Some("IP1"))?
            .to_string();
        Some((header, row))
    });
    assert!(header.starts_with("ID  Flags"), "{header}");
    // Aligned: the Peer column starts at the same place in the header and the row.
    assert_eq!(
        header.find("Peer"),
        row.find("127.0.71.2"),
        "\n{header}\n{row}"
    );
    let id = row.split_whitespace().next().unwrap().to_string();

    let info = stdout(&admin(port, &["getinfo"]));
    let chain = info.lines().find(|l| l.starts_with("chain")).unwrap();
    assert!(chain.ends_with("regtest"), "{info}");
    let inbound = info
        .lines()
        .find(|l| l.starts_with("sessions inbound"))
        .unwrap();
    assert!(inbound.ends_with(" 1"), "{info}");

    let groups = stdout(&admin(port, &["groups"]));
    assert!(groups.starts_with("Name"), "{groups}");
    assert!(
        groups.lines().any(|l| l.starts_with("127.0.71.2 ")),
        "{groups}"
    );
    assert!(stdout(&admin(port, &["peers"])).starts_with("Host"));

    // --json gives the answer itself.
    let json: Value = serde_json::from_str(&stdout(&admin(port, &["--json", "sessions"]))).unwrap();
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r[0].as_u64().map(|n| n.to_string()) == Some(id.clone())));

    assert_eq!(
        stdout(&admin(port, &["log", &id, "555"])),
        format!("logging session {id}\nunknown: 555\n")
    );
    assert_eq!(
        stdout(&admin(port, &["log", &id])),
        format!("not logging session {id}\n")
    );
    assert_eq!(
        stdout(&admin(port, &["disconnect", &id])),
        format!("disconnecting session {id}\n")
    );

    // Errors: the server's message and exit status 1.
    let out = admin(port, &["nosuchcommand"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown method") && err.contains("-32601"),
        "{err}"
    );
    let out = admin(port, &["disconnect"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("session IDs"));
}

#[test]
fn peerpool_admin_without_a_daemon_says_so() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = PEERPOOL
        .command()
        .args([
            "admin",
            "--admin-connect",
            &format!("127.0.0.1:{port}"),
            "getinfo",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to the admin listener"), "{err}");
}

#[test]
fn peerpool_events_prints_the_stream_as_json_lines() {
    let (_hub, hub_p2p, port) = PEERPOOL.hub(&tempdir!("events-hub"), "127.0.72.1:0", &[]);
    let mut events = PEERPOOL
        .command()
        .args([
            "events",
            "--port",
            &port.to_string(),
            "--filter",
            "events=peer_joined",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running peerpool events");
    let (tx, lines) = mpsc::channel();
    let out = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The spoke joins once the subscription is made.
    let mut err = BufReader::new(events.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.starts_with("subscribed: "), "{first}");
    assert!(
        first.contains("peer_joined") && !first.contains("peer_left"),
        "{first}"
    );
    let _spoke = PEERPOOL.spoke(&tempdir!("events-spoke"), "127.0.72.2:0", hub_p2p);
    let line = lines.recv_timeout(WAIT).expect("a peer_joined line");
    let _ = events.kill();
    let _ = events.wait();
    let n: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(n["method"], "peer_joined", "{line}");
    assert_eq!(n["params"]["direction"], "inbound");
    assert!(n["params"]["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.72.2:"));
}

#[test]
fn peerpool_events_refuses_bad_filters() {
    for bad in ["colour=red", "peers=x", "events"] {
        let out = PEERPOOL
            .command()
            .args(["events", "--port", "1", "--filter", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--filter"),
            "{bad}"
        );
    }
}

#[test]
fn an_admin_address_that_cannot_be_bound_stops_the_start_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempdir!("admin-taken");
    for (bind, needle) in [
        (addr.as_str(), "binding admin listener on"),
        ("not an address:::", "--admin-bind"),
    ] {
        let out = PEERPOOL
            .command()
            .args([
                "run",
                "--network",
                "regtest",
                "--datadir",
                dir.to_str().unwrap(),
            ])
            .args([
                "--listen",
                "127.0.73.1:0",
                "--no-dnsseed",
                "--rpc-bind",
                "127.0.0.1:0",
            ])
            .args(["--admin-bind", bind])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bind}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{bind}: {err}");
    }
}
