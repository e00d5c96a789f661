//! The `peerpool` binary, driven as an operator drives it.

use std::process::{Output, Stdio};
use std::time::Duration;

use peerpool_testkit::daemon::Binary;
use peerpool_testkit::raw::BlockingRawPeer;

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

fn run_to_end(args: &[&str]) -> Output {
    PEERPOOL
        .command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawning peerpool")
}

fn listening_port(line: &str) -> u16 {
    let addr = line
        .rsplit("listening on ")
        .next()
        .expect("address after 'listening on'");
    addr.trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in listen line")
}

#[test]
fn demo_network_handshakes_and_pings_everywhere() {
    let out = run_to_end(&[
        "demo",
        "--nodes",
        "4",
        "--seconds",
        "3",
        "--ping-interval",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .expect("summary line");
    // 4 nodes, each dialing two others: 8 links, 16 connection ends.
    assert!(summary.contains("links=8"), "{summary}");
    assert!(summary.contains("ready=16/16"), "{summary}");
    assert!(summary.contains("pinged=16/16"), "{summary}");
    assert!(stdout.contains("all 4 nodes stopped cleanly"), "{stdout}");
}

#[test]
fn bad_flags_and_config_fail_clearly() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run", "--bogus-flag"], 2, "--bogus-flag"),
        (
            &[
                "run",
                "--network",
                "moonnet",
                "--no-listen",
                "--connect",
                "127.0.0.1",
            ],
            1,
            "unknown network",
        ),
        (
            &["run", "--chain", "/nonexistent/chain.toml", "--no-listen"],
            1,
            "reading chain file",
        ),
        (
            &[
                "run",
                "--network",
                "regtest",
                "--chain",
                "examples/litecoin.toml",
            ],
            2,
            "cannot be used",
        ),
        (
            &[
                "run",
                "--network",
                "regtest",
                "--listen",
                "not an address:x",
            ],
            1,
            "--listen",
        ),
        (
            &["run", "--network", "regtest", "--user-agent-comment", "a/b"],
            1,
            "reserves",
        ),
        (
            &["run", "--network", "regtest", "--log-level", "info,[bad"],
            1,
            "--log-level",
        ),
        (
            &["run", "--network", "regtest", "--no-listen"],
            1,
            "nothing to do",
        ),
        (&["demo", "--nodes", "1"], 2, "--nodes"),
        (
            &[
                "run",
                "--network",
                "regtest",
                "--whitelist",
                "nobna@127.0.0.0/8",
            ],
            1,
            "unknown permission \"nobna\"",
        ),
        (
            &[
                "run",
                "--network",
                "regtest",
                "--whitelist",
                "noban@1.2.3.4/99",
            ],
            1,
            "--whitelist",
        ),
        (
            &[
                "run",
                "--network",
                "regtest",
                "--target-outbound",
                "9",
                "--max-connections",
                "4",
            ],
            1,
            "exceeds --max-connections",
        ),
        (
            &["run", "--network", "regtest", "--proxy", "localhost:x"],
            1,
            "--proxy",
        ),
        (
            &["run", "--network", "regtest", "--max-connections", "many"],
            2,
            "--max-connections",
        ),
        (
            &["run", "--network", "regtest", "--addnode", "300.1.1.1:5"],
            1,
            "--addnode",
        ),
        (
            &["run", "--config", "/nonexistent/peerpool.toml"],
            1,
            "reading config file",
        ),
        (
            &["run", "--network", "regtest", "--save-interval", "0"],
            1,
            "--save-interval must be at least 1",
        ),
    ];
    let dir = tempdir();
    for (args, code, needle) in cases {
        let mut full: Vec<&str> = args.to_vec();
        if args[0] == "run" && !args.contains(&"--bogus-flag") {
            full.extend(["--datadir", dir.to_str().unwrap()]);
        }
        let out = run_to_end(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{full:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{full:?}: expected {needle:?} in {stderr}"
        );
    }
}

#[test]
fn bad_config_files_fail_clearly() {
    let dir = tempdir();
    let cases: &[(&str, &str)] = &[
        ("max-conections = 3\n", "unknown field `max-conections`"),
        ("max-connections = \"many\"\n", "invalid type"),
        (
            "network = \"regtest\"\nchain = \"x.toml\"\n",
            "cannot both be set",
        ),
        (
            "network = \"regtest\"\nwhitelist = [\"noban@zz\"]\n",
            "--whitelist",
        ),
        ("network = \"moonnet\"\n", "unknown network"),
        ("this is not toml", "config file"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = run_to_end(&[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--datadir",
            dir.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{text:?}: expected {needle:?} in {stderr}"
        );
    }
}

#[test]
fn the_config_file_sets_every_key_and_flags_override_it() {
    let dir = tempdir();
    let config = dir.join("peerpool.toml");
    std::fs::write(
        &config,
        r#"
network = "regtest"
datadir = "data"
listen = ["127.0.53.1:0"]
user-agent-comment = ["from-file"]
dnsseed = false
max-connections = 20
target-outbound = 2
ban-threshold = 50
whitelist = ["noban,relay@127.0.53.0/24"]
allow-local-addresses = true
log-level = "info"
"#,
    )
    .unwrap();
    let mut d = PEERPOOL.start([
        "run",
        "--config",
        config.to_str().unwrap(),
        "--user-agent-comment",
        "from-cli",
    ]);
    let within = Duration::from_secs(20);
    let start = d.expect(&["starting"], within);
    assert!(start.contains("chain=regtest"), "{start}");
    assert!(
        start.contains("(from-cli)"),
        "the flag overrides the file: {start}"
    );
    let bound = d.listening(within);
    assert_eq!(bound.ip().to_string(), "127.0.53.1");
    assert!(d.terminate().success());
    // The relative datadir is the config file's neighbour.
    assert!(dir.join("data").join("regtest").join("debug.log").exists());
    assert!(dir.join("data").join("regtest").join("peers.dat").exists());
}

#[test]
fn daemons_find_each_other_and_keep_their_book_and_bans_across_restarts() {
    let within = Duration::from_secs(30);
    let dirs: Vec<_> = (0..4).map(|_| tempdir()).collect();
    let common = |i: usize| -> Vec<String> {
        [
            "run",
            "--network",
            "regtest",
            "--datadir",
            dirs[i].to_str().unwrap(),
            "--target-outbound",
            "2",
            "--ban-threshold",
            "30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let start = |v: Vec<String>| PEERPOOL.start(v);
    let mut a_args = common(0);
    a_args.extend(["--listen".into(), "127.0.54.1:0".into()]);
    let mut a = start(a_args);
    let a_addr = a.listening(within);
    // Each daemon is told of the ones started before it (A of none): B knows only A, and
    // learns C when C dials it and advertises itself.
    let mut others = Vec::new();
    let mut known = vec![a_addr];
    for i in 1..4 {
        let mut v = common(i);
        v.extend(["--listen".into(), format!("127.0.54.{}:0", i + 1)]);
        for k in &known {
            v.extend(["--seednode".into(), k.to_string()]);
        }
        let mut d = start(v);
        known.push(d.listening(within));
        others.push(d);
    }
    // Every daemon, A included (it learns the others from their self-advertisements), makes
    // its two automatic outbound connections.
    for d in others.iter_mut().chain(std::iter::once(&mut a)) {
        d.expect(&["peer joined", "outbound-full-relay"], within);
        d.expect(&["peer joined", "outbound-full-relay"], within);
    }

    // A misbehaving client is banned by A.
    a.get_banned("127.0.54.9".parse().unwrap(), a_addr);

    // A restarts on the same address with neither seed nor peer given: its book and its ban
    // come back from the data directory.
    assert!(a.terminate().success());
    let mut a_args = common(0);
    a_args.extend(["--listen".into(), a_addr.to_string()]);
    let mut a = start(a_args);
    a.expect(&["loaded 1 bans"], within);
    a.expect(&["peer joined", "outbound-full-relay"], within);
    a.expect(&["peer joined", "outbound-full-relay"], within);
    let loaded = a
        .seen
        .iter()
        .find(|l| l.contains("addresses from"))
        .cloned()
        .unwrap_or_default();
    assert!(loaded.contains("loaded"), "{:?}", a.seen);
    let mut raw = BlockingRawPeer::connect_from("127.0.54.9".parse().unwrap(), a_addr).unwrap();
    assert!(
        raw.read_to_close().is_empty(),
        "a banned address is closed at once"
    );
    assert!(a.terminate().success());
    for mut d in others {
        assert!(d.terminate().success());
    }
}

#[test]
fn chain_file_is_used_for_the_handshake_magic() {
    let dir = tempdir();
    let mut d = PEERPOOL.start([
        "run",
        "--chain",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/litecoin.toml"),
        "--datadir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-dnsseed",
    ]);
    d.expect(&["chain=litecoin"], Duration::from_secs(20));
    let line = d.expect(&["listening on"], Duration::from_secs(20));
    let port = listening_port(&line);
    // A peer speaking Litecoin's magic gets a version back; wrong magic gets nothing but a close.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut frame = vec![0xfb, 0xc0, 0xb6, 0xdb];
    frame.extend_from_slice(b"ping\0\0\0\0\0\0\0\0");
    frame.extend_from_slice(&8u32.to_le_bytes());
    frame.extend_from_slice(&[0u8; 4]); // wrong checksum: dropped, not fatal
    frame.extend_from_slice(&[0u8; 8]);
    s.write_all(&frame).unwrap();
    let mut bad = [0u8; 24];
    bad[..4].copy_from_slice(&[0xf9, 0xbe, 0xb4, 0xd9]); // Bitcoin's magic: fatal
    s.write_all(&bad).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        buf.is_empty(),
        "nothing may be sent to a peer before its version: {buf:?}"
    );
    assert!(d.terminate().success());
    assert!(dir.join("litecoin").join("debug.log").exists());
}

#[test]
fn two_daemons_connect_ping_and_redial_after_restart() {
    let (da, db) = (tempdir(), tempdir());
    let mut a = PEERPOOL.start([
        "run",
        "--network",
        "regtest",
        "--datadir",
        da.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let line = a.expect(&["listening on"], Duration::from_secs(20));
    let port = listening_port(&line);
    let target = format!("127.0.0.1:{port}");
    let mut b = PEERPOOL.start([
        "run",
        "--network",
        "regtest",
        "--datadir",
        db.to_str().unwrap(),
        // No --no-listen: --connect alone turns listening off, as in Bitcoin Core.
        "--connect",
        &target,
        "--user-agent-comment",
        "node-b",
    ]);
    let within = Duration::from_secs(20);
    b.expect(&["peer joined", "outbound", "/peerpool:"], within);
    a.expect(&["peer joined", "inbound", "node-b"], within);
    b.expect(&["ping", "rtt_ms"], within);
    a.expect(&["ping", "rtt_ms"], within);

    // A goes away: B notices, then redials once A is back on the same port.
    assert!(a.terminate().success(), "daemon A did not exit cleanly");
    b.expect(&["peer left"], within);
    let mut a2 = PEERPOOL.start([
        "run",
        "--network",
        "regtest",
        "--datadir",
        da.to_str().unwrap(),
        "--listen",
        &target,
    ]);
    a2.expect(&["listening on"], within);
    // The redial backoff starts at 5 s.
    b.expect(&["peer joined", "outbound"], Duration::from_secs(30));
    a2.expect(&["peer joined", "inbound"], within);
    assert!(b.terminate().success());
    assert!(a2.terminate().success());
    let log = std::fs::read_to_string(db.join("regtest").join("debug.log")).unwrap();
    assert!(
        log.contains("peer joined") && log.contains("stopped"),
        "{log}"
    );
    assert!(
        !log.contains("listening on"),
        "--connect alone must not listen: {log}"
    );
}

fn tempdir() -> std::path::PathBuf {
    peerpool_testkit::tempdir!("cli")
}
