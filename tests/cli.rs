//! The `peerpool` binary, driven as an operator drives it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn peerpool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peerpool"))
}

fn run_to_end(args: &[&str]) -> Output {
    peerpool()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawning peerpool")
}

/// A daemon whose stderr lines are collected as they come.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(args: &[&str]) -> Daemon {
        let mut child = peerpool()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning peerpool run");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing every one of `needles`; returns it.
    fn expect(&mut self, needles: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needles:?} within {within:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for daemon") {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
fn chain_file_is_used_for_the_handshake_magic() {
    let dir = tempdir();
    let mut d = Daemon::start(&[
        "run",
        "--chain",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/litecoin.toml"),
        "--datadir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
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
    let mut a = Daemon::start(&[
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
    let mut b = Daemon::start(&[
        "run",
        "--network",
        "regtest",
        "--datadir",
        db.to_str().unwrap(),
        "--no-listen",
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
    let mut a2 = Daemon::start(&[
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
}

/// A fresh directory under the target directory, removed by nobody: small, and useful when a
/// test fails.
fn tempdir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("cli-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
