//! The `peerpool` binary as a child process, with its log lines collected as they come, and a
//! raw P2P client to poke at it. Shared by the root tests that run daemons (`mod daemon;`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool::wire::frame::encode_frame;
use peerpool::wire::message::encode_message;
use peerpool::wire::{Command as WireCommand, Network};

pub fn peerpool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peerpool"))
}

/// A daemon whose stderr lines are collected as they come.
pub struct Daemon {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Daemon {
    pub fn start(args: &[&str]) -> Daemon {
        let mut child = peerpool()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
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
    pub fn expect(&mut self, needles: &[&str], within: Duration) -> String {
        self.expect_until(needles, Instant::now() + within)
            .unwrap_or_else(|| {
                panic!(
                    "no line with {needles:?} within {within:?}; output so far:\n{}",
                    self.seen.join("\n")
                )
            })
    }

    /// Like [`Daemon::expect`] against a deadline; `None` when it passes.
    pub fn expect_until(&mut self, needles: &[&str], deadline: Instant) -> Option<String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Lines seen so far (and any waiting) that contain every one of `needles`.
    pub fn count(&mut self, needles: &[&str]) -> usize {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Where the daemon listens, from its "listening on" line.
    pub fn listening(&mut self, within: Duration) -> SocketAddr {
        let line = self.expect(&["listening on"], within);
        line.rsplit("listening on ")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .expect("address after 'listening on'")
    }

    /// Where the node RPC listens, from its "RPC server listening on" line.
    pub fn rpc_addr(&mut self, within: Duration) -> String {
        let line = self.expect(&["RPC server listening on"], within);
        line.rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
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

/// Runs `peerpool rpc` on regtest against the node RPC at `rpc`, with the cookie of the
/// daemon whose data directory is `dir`; returns (exit code, stdout, stderr).
pub fn rpc_cli(dir: &Path, rpc: &str, args: &[&str]) -> (i32, String, String) {
    let out = peerpool()
        .args(["rpc", "--network", "regtest", "--datadir"])
        .arg(dir)
        .args(["--rpc-connect", rpc])
        .args(args)
        .output()
        .expect("running peerpool rpc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `peerpool run` on regtest with `dir` as data directory, listening on loopback with
/// no admin listener, plus `extra`, to its end: whether it succeeded, and its stderr.
pub fn run_regtest_to_end(dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = peerpool()
        .args(["run", "--network", "regtest", "--no-dnsseed", "--datadir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--no-admin"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("spawning peerpool run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory under the target directory, removed by nobody: small, and useful when a
/// test fails.
pub fn tempdir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A hand-driven regtest connection from a chosen local address.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    /// Connects from `from` (port 0: any) to `to`.
    pub fn connect(from: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<RawClient> {
        // std cannot bind a socket before connecting it; tokio's TcpSocket can.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::from((from, 0)))?;
            s.connect(to).await
        })?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(RawClient { stream })
    }

    pub fn send(&mut self, msg: &NetworkMessage) {
        let mut out = Vec::new();
        encode_message(Network::Regtest.params().magic, msg, &mut out);
        self.stream.write_all(&out).expect("raw write");
    }

    pub fn send_frame(&mut self, command: &str, payload: &[u8]) {
        let mut out = Vec::new();
        encode_frame(
            Network::Regtest.params().magic,
            WireCommand::new(command).expect("command"),
            payload,
            &mut out,
        );
        self.stream.write_all(&out).expect("raw write");
    }

    /// Sends `version` and `verack`; the daemon's answers are left unread.
    pub fn handshake(&mut self) {
        let any: SocketAddr = "127.0.0.1:18444".parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        self.send(&NetworkMessage::Version(VersionMessage {
            version: 70016,
            services: ServiceFlags::NETWORK,
            timestamp: now,
            receiver: Address::new(&any, ServiceFlags::NONE),
            sender: Address::new(&any, ServiceFlags::NONE),
            nonce: 0x5eed,
            user_agent: "/raw:0.1/".into(),
            start_height: 0,
            relay: true,
        }));
        self.send(&NetworkMessage::Verack);
    }

    /// Reads until the daemon closes the connection; the bytes it sent.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = self.stream.read_to_end(&mut buf);
        buf
    }
}
