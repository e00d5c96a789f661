//! The `peerpool` binary as a child process: started with [`Binary::start`], its log lines
//! (stderr) collected as they come and searched with [`Daemon::expect`], the addresses it
//! listens on read from them.
//!
//! Only the root package's tests know where the binary is (`CARGO_BIN_EXE_peerpool`), so each
//! names it once:
//!
//! ```ignore
//! const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));
//! let mut d = PEERPOOL.start(RunArgs::regtest(&dir).listen("127.0.0.1:0"));
//! let p2p = d.listening(WAIT);
//! ```

use std::any::type_name;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::raw::BlockingRawPeer;
use crate::WAIT;

/// How often [`Daemon::terminate`] looks whether the daemon has exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// The `peerpool` binary under test.
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    path: &'static str,
}

impl Binary {
    /// The binary at `path`: `env!("CARGO_BIN_EXE_peerpool")`.
    pub const fn new(path: &'static str) -> Binary {
        Binary { path }
    }

    /// A command running the binary, for a test to add arguments to.
    pub fn command(self) -> Command {
        Command::new(self.path)
    }

    /// Starts the binary with `args` (usually `run` and its flags, see [`RunArgs`]), its
    /// stderr collected line by line, without colours.
    pub fn start<I, S>(self, args: I) -> Daemon
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.start_with_env(args, &[])
    }

    /// As [`Binary::start`], with `env` added to the environment.
    pub fn start_with_env<I, S>(self, args: I, env: &[(&str, &str)]) -> Daemon
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = self
            .command()
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("spawning peerpool");
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

    /// Runs `peerpool rpc` on regtest against the node RPC at `rpc`, with the cookie of the
    /// daemon whose data directory is `dir`; returns (exit code, stdout, stderr).
    pub fn rpc_cli(self, dir: &Path, rpc: &str, args: &[&str]) -> (i32, String, String) {
        let out = self
            .command()
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
    /// no DNS seeds and no admin listener, plus `extra`, to its end: whether it succeeded, and
    /// its stderr. For settings that must stop the start.
    pub fn run_regtest_to_end(self, dir: &Path, extra: &[&str]) -> (bool, String) {
        let args = RunArgs::regtest(dir)
            .no_dnsseed()
            .listen("127.0.0.1:0")
            .no_admin()
            .args(extra.iter().copied());
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawning peerpool run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A regtest daemon on `listen` with its data in `dir`, its admin listener and its node
    /// RPC on 127.0.0.1 with ports from the OS, `extra` flags appended: the daemon, where it
    /// takes peers and its admin port.
    pub fn hub(self, dir: &Path, listen: &str, extra: &[&str]) -> (Daemon, SocketAddr, u16) {
        let args = RunArgs::regtest(dir)
            .listen(listen)
            .no_dnsseed()
            .admin_on_any_port()
            .rpc_on_any_port()
            .args(extra.iter().copied());
        let mut d = self.start(args);
        let p2p = d.listening(WAIT);
        let port = d.admin_port(WAIT);
        (d, p2p, port)
    }

    /// A regtest daemon on `listen` with its data in `dir` that keeps a connection to `to`,
    /// with its node RPC on a port from the OS and no admin listener.
    pub fn spoke(self, dir: &Path, listen: &str, to: SocketAddr) -> Daemon {
        self.start(
            RunArgs::regtest(dir)
                .listen(listen)
                .no_dnsseed()
                .no_admin()
                .rpc_on_any_port()
                .args(["--connect".to_owned(), to.to_string()]),
        )
    }
}

/// The arguments of a `peerpool run` on regtest, flag by flag. Nothing is added that the test
/// does not ask for.
#[derive(Clone, Debug)]
pub struct RunArgs {
    args: Vec<String>,
}

impl RunArgs {
    /// `run --network regtest --datadir DIR`.
    pub fn regtest(datadir: &Path) -> RunArgs {
        RunArgs {
            args: vec![
                "run".into(),
                "--network".into(),
                "regtest".into(),
                "--datadir".into(),
                datadir.to_string_lossy().into_owned(),
            ],
        }
    }

    /// `--listen ADDR`.
    pub fn listen(self, addr: impl ToString) -> RunArgs {
        self.args(["--listen".to_owned(), addr.to_string()])
    }

    /// `--no-dnsseed`.
    pub fn no_dnsseed(self) -> RunArgs {
        self.args(["--no-dnsseed"])
    }

    /// `--rpc-bind 127.0.0.1:0`: the node RPC on a port from the OS. Its default port is
    /// fixed, which two daemons at once cannot share.
    pub fn rpc_on_any_port(self) -> RunArgs {
        self.args(["--rpc-bind", "127.0.0.1:0"])
    }

    /// `--admin-bind 127.0.0.1:0`: the admin listener on a port from the OS.
    pub fn admin_on_any_port(self) -> RunArgs {
        self.args(["--admin-bind", "127.0.0.1:0"])
    }

    /// `--no-admin`: no admin listener (its default port is fixed too).
    pub fn no_admin(self) -> RunArgs {
        self.args(["--no-admin"])
    }

    /// Any further arguments, as they are.
    pub fn args<I, S>(mut self, more: I) -> RunArgs
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(more.into_iter().map(Into::into));
        self
    }
}

impl IntoIterator for RunArgs {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;

    fn into_iter(self) -> Self::IntoIter {
        self.args.into_iter()
    }
}

/// A running daemon whose stderr lines are collected as they come. Killed when dropped.
pub struct Daemon {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, in order.
    pub seen: Vec<String>,
}

impl Daemon {
    /// Waits up to `within` for a line containing every one of `needles`; returns it. Fails
    /// the test with the output so far when none comes.
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

    /// Where the daemon takes peers, from its "listening on" line.
    pub fn listening(&mut self, within: Duration) -> SocketAddr {
        self.field_of(&["listening on"], "listening on ", within)
    }

    /// Where the node RPC listens, from its "RPC server listening on" line.
    pub fn rpc_addr(&mut self, within: Duration) -> String {
        self.field_of(&["RPC server listening on"], " ", within)
    }

    /// The port of the admin listener, from its "admin listener on" line.
    pub fn admin_port(&mut self, within: Duration) -> u16 {
        self.field_of(&["admin listener on"], ":", within)
    }

    /// What follows the last `sep` in the first line with every one of `needles`, parsed.
    fn field_of<T: FromStr>(&mut self, needles: &[&str], sep: &str, within: Duration) -> T {
        let line = self.expect(needles, within);
        line.rsplit(sep)
            .next()
            .and_then(|field| field.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {} after {sep:?} in {line:?}", type_name::<T>()))
    }

    /// Connects to the daemon at `to` from `from`, completes a handshake and misbehaves until
    /// the daemon bans the address, each step seen in its log within [`WAIT`].
    pub fn get_banned(&mut self, from: Ipv4Addr, to: SocketAddr) {
        let mut raw = BlockingRawPeer::connect_from(from, to).expect("raw peer connects");
        raw.handshake();
        self.expect(&["peer joined", &from.to_string()], WAIT);
        // Four undecodable `inv`s at 10 points each: past a threshold of 30 even if the score
        // decays a little between them.
        for _ in 0..4 {
            raw.send_frame("inv", &[0xfd, 0xff]);
        }
        self.expect(&["banned", &format!("{from}/32")], WAIT);
        raw.read_to_close();
    }

    /// Sends SIGTERM and waits for the exit, failing the test after [`WAIT`].
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the daemon") {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// Sends SIGKILL and waits until the process is gone.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the killed daemon");
    }
}

/// Where a daemon serves, to check that it still does after an attack: its P2P listener,
/// node RPC, admin listener and the chain's data directory (for the cookie).
#[derive(Clone, Debug)]
pub struct Doors {
    /// The P2P listener.
    pub p2p: SocketAddr,
    /// The node RPC.
    pub rpc: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// `<datadir>/<chain>`, where the cookie is.
    pub chain_dir: PathBuf,
}

impl Doors {
    /// The cookie's `(user, password)`.
    pub fn cookie(&self) -> (String, String) {
        peerpool_rpc::node::auth::read_cookie(&self.chain_dir.join(".cookie"))
            .expect("reading the daemon's cookie")
    }

    /// A peer from `from` completes a handshake (the daemon's `verack` arrives).
    pub fn p2p_serves(&self, from: Ipv4Addr) {
        let mut raw = BlockingRawPeer::connect_from(from, self.p2p).expect("P2P connect");
        raw.handshake();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(7).any(|w| w == b"verack\0") {
            let n = raw
                .stream
                .read(&mut buf)
                .expect("reading the daemon's handshake");
            assert!(n > 0, "the daemon closed a handshaking peer");
            seen.extend_from_slice(&buf[..n]);
        }
    }

    /// `body` posted to the node RPC with the cookie and `extra` header lines: the status
    /// line and the body of the answer.
    pub fn rpc_post(&self, body: &str, extra: &[&str]) -> (String, String) {
        let (user, password) = self.cookie();
        let mut s = TcpStream::connect(self.rpc).expect("RPC connect");
        s.set_read_timeout(Some(WAIT)).expect("read timeout");
        let host = if extra.iter().any(|h| h.starts_with("Host:")) {
            String::new()
        } else {
            format!("Host: {}\r\n", self.rpc)
        };
        let mut head = format!(
            "POST / HTTP/1.1\r\n{host}Authorization: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            peerpool_rpc::node::auth::basic_header(&user, &password),
            body.len()
        );
        for h in extra {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("RPC write");
        s.write_all(body.as_bytes()).expect("RPC write");
        http_answer(&mut s)
    }

    /// The node RPC answers `getconnectioncount`.
    pub fn rpc_serves(&self) {
        let (status, body) = self.rpc_post(
            r#"{"method":"getconnectioncount","id":1}"#,
            &["Content-Type: application/json"],
        );
        assert!(status.contains("200"), "RPC: {status} {body}");
        assert!(body.contains("\"result\""), "RPC: {body}");
    }

    /// The admin listener answers `getinfo` (after `auth` with the cookie, which a listener
    /// without `--admin-auth` accepts too).
    pub fn admin_serves(&self) {
        let answer = self.admin_lines(&[r#"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#]);
        assert!(answer[1].contains("\"result\""), "admin: {answer:?}");
    }

    /// Sends `auth` with the cookie, then `lines`, one answer read per line: the answers,
    /// `auth`'s first.
    pub fn admin_lines(&self, lines: &[&str]) -> Vec<String> {
        let (user, password) = self.cookie();
        self.admin_lines_as(&user, &password, lines)
    }

    /// As [`Doors::admin_lines`], with `auth` carrying `user` and `password`; answers read
    /// until the daemon closes the connection.
    pub fn admin_lines_as(&self, user: &str, password: &str, lines: &[&str]) -> Vec<String> {
        let s = TcpStream::connect(self.admin).expect("admin connect");
        s.set_read_timeout(Some(WAIT)).expect("read timeout");
        let mut w = s.try_clone().expect("socket clone");
        let mut r = BufReader::new(s);
        let auth = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"auth","params":["{user}","{password}"]}}"#
        );
        let mut out = Vec::new();
        for line in std::iter::once(auth.as_str()).chain(lines.iter().copied()) {
            w.write_all(format!("{line}\n").as_bytes())
                .expect("admin write");
            let mut answer = String::new();
            if r.read_line(&mut answer).unwrap_or(0) == 0 {
                break;
            }
            out.push(answer);
        }
        out
    }

    /// `GET path` on the node RPC, no credentials: the status line and the body.
    pub fn rpc_get(&self, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(self.rpc).expect("RPC connect");
        s.set_read_timeout(Some(WAIT)).expect("read timeout");
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.rpc
        );
        s.write_all(head.as_bytes()).expect("RPC write");
        http_answer(&mut s)
    }

    /// Every door answers: P2P (a handshake from `from`), node RPC and admin.
    pub fn all_serve(&self, from: Ipv4Addr) {
        self.p2p_serves(from);
        self.rpc_serves();
        self.admin_serves();
    }
}

impl Daemon {
    /// The resident set size of the process, in bytes (Linux `/proc`).
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// A regtest daemon's three doors from its log lines: P2P, node RPC and admin, and its
    /// data directory `datadir`.
    pub fn doors(&mut self, datadir: &Path) -> Doors {
        let p2p = self.listening(WAIT);
        let rpc = self.rpc_addr(WAIT).parse().expect("RPC address");
        let admin = SocketAddr::from(([127, 0, 0, 1], self.admin_port(WAIT)));
        Doors {
            p2p,
            rpc,
            admin,
            chain_dir: datadir.join("regtest"),
        }
    }
}

/// An HTTP answer read to its end: the status line and the body.
fn http_answer(s: &mut TcpStream) -> (String, String) {
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The resident set size of process `pid`, in bytes; 0 if it cannot be read.
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
