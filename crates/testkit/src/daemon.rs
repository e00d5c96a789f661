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
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
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
        let mut child = self
            .command()
            .args(args)
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

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
