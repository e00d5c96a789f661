//! The real daemon as a server under test: `peerpool run` started from its own binary in a
//! child process, on loopback ports and a temporary data directory of its own, and asked
//! through its node RPC, as an operator's tools would ask it.
//!
//! The daemon is not linked into the benchmark: it is whatever binary sits next to the
//! benchmark's executable (`target/release/peerpool` beside `target/release/peerpool-bench`),
//! or the one given with `--daemon`. Building the benchmark does not build the daemon, so the
//! report says how old the binary is.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use peerpool_rpc::node::auth::{read_cookie, COOKIE_FILE};
use peerpool_rpc::node::client::Client;
use peerpool_rpc::node::serde_json::{json, Value};
use tokio::process::Child;

use crate::child::wrapped;
use crate::sys;

/// File name of the daemon binary, as Cargo builds it.
const DAEMON_NAME: &str = "peerpool";

/// Longest wait for a started daemon to write its cookie and answer RPC. A debug build with
/// an empty data directory starts in well under a second; the margin is for a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait between `stop` and the daemon's exit: it disconnects every peer and writes
/// its address book and bans first.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Interval between two `getconnectioncount` calls while waiting for a count. Each call makes
/// the daemon snapshot every connection (about 18 ms at 10,000 peers, see BENCHMARKS.md), so
/// polling faster would measure the RPC more than the peers.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Where the daemon binary is: `explicit` when given, else `peerpool` in the directory of
/// this process's executable, or in its parent when the executable is a test under `deps/`.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--daemon {}: no such file", path.display());
        }
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    let name = format!("{DAEMON_NAME}{}", std::env::consts::EXE_SUFFIX);
    let mut dirs = Vec::new();
    if let Some(dir) = exe.parent() {
        dirs.push(dir.to_owned());
        if dir.file_name().is_some_and(|n| n == "deps") {
            dirs.extend(dir.parent().map(Path::to_owned));
        }
    }
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join(&name)).collect();
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "no daemon binary at {}: run `cargo build --release` first (it builds the daemon \
             beside the benchmark), or give --daemon PATH",
            candidates
                .first()
                .map_or_else(|| name.clone(), |c| c.display().to_string())
        ),
    }
}

/// How long ago `binary` was last written, for the report: building the benchmark alone
/// leaves an older daemon in place.
pub fn age(binary: &Path) -> Option<Duration> {
    let modified = std::fs::metadata(binary).ok()?.modified().ok()?;
    SystemTime::now().duration_since(modified).ok()
}

/// A running daemon. Killed when dropped; its data directory is removed with it.
pub struct DaemonProcess {
    child: Child,
    pid: u32,
    p2p: SocketAddr,
    rpc: Client,
    stderr: PathBuf,
    // Last field: dropped after the child has been killed.
    _datadir: tempfile::TempDir,
}

impl DaemonProcess {
    /// Starts `binary run` on regtest with the pool, the node RPC and the admin listener on
    /// 127.0.0.1, `max_connections` connections, no automatic outbound peers, and the `noban`
    /// permission for 127.0.0.0/8. Returns once the node RPC answers.
    ///
    /// `noban` keeps the inbound policy out of the measurement: the pool takes at most 8
    /// inbound peers per network group and evicts peers when its slots are full, as Bitcoin
    /// Core does. Today every loopback address is a group of its own and the slots are sized
    /// to never fill, so neither bites; with `noban` a change to either cannot turn the
    /// benchmark's peers away either.
    pub async fn start(binary: &Path, max_connections: usize) -> anyhow::Result<DaemonProcess> {
        let datadir = tempfile::Builder::new()
            .prefix("peerpool-bench-daemon-")
            .tempdir()
            .context("creating the daemon's data directory")?;
        let [p2p, rpc, admin] = free_ports()?;
        let stderr = datadir.path().join("stderr.log");
        let stderr_file = std::fs::File::create(&stderr)
            .with_context(|| format!("creating {}", stderr.display()))?;
        // Under the servers' profiling prefix too, so the daemon's heap can be profiled
        // the same way (see BENCHMARKS.md, "Profiling a server").
        let mut cmd = wrapped(binary);
        cmd.arg("run")
            .args(["--network", "regtest"])
            .arg("--datadir")
            .arg(datadir.path())
            .args(["--listen", &p2p.to_string()])
            .args(["--rpc-bind", &rpc.to_string()])
            .args(["--admin-bind", &admin.to_string()])
            .arg("--no-dnsseed")
            .args(["--max-connections", &max_connections.to_string()])
            .args(["--target-outbound", "0"])
            .args(["--whitelist", "noban@127.0.0.0/8"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the daemon {}", binary.display()))?;
        let pid = child.id().context("daemon process has no pid")?;
        let cookie = datadir.path().join("regtest").join(COOKIE_FILE);
        let client = connect_rpc(&mut child, &stderr, rpc, &cookie).await?;
        Ok(DaemonProcess {
            child,
            pid,
            p2p,
            rpc: client,
            stderr,
            _datadir: datadir,
        })
    }

    /// The daemon's P2P listener.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.p2p
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resident memory of the daemon, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        sys::rss_bytes(self.pid).context("reading the daemon's RSS")
    }

    /// CPU time the daemon has used.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        sys::cpu_time(self.pid).context("reading the daemon's CPU time")
    }

    /// Calls `method` on the node RPC and returns its result.
    pub async fn call(&mut self, method: &str) -> anyhow::Result<Value> {
        let reply = self
            .rpc
            .call(method, json!([]))
            .await
            .with_context(|| format!("calling {method} on the daemon"))?;
        let body = reply
            .json()
            .with_context(|| format!("{method}: the reply is not JSON"))?;
        if !reply.status.is_success() {
            bail!("{method}: HTTP {}: {body}", reply.status);
        }
        Ok(body.get("result").cloned().unwrap_or(Value::Null))
    }

    /// `getconnectioncount`.
    pub async fn connection_count(&mut self) -> anyhow::Result<u64> {
        let result = self.call("getconnectioncount").await?;
        result
            .as_u64()
            .with_context(|| format!("getconnectioncount answered {result}"))
    }

    /// Polls `getconnectioncount` until it answers `count`; returns the number of calls made.
    pub async fn wait_for_count(&mut self, count: u64, timeout: Duration) -> anyhow::Result<u32> {
        let deadline = Instant::now() + timeout;
        let mut calls = 0;
        loop {
            let now = self.connection_count().await?;
            calls += 1;
            if now == count {
                return Ok(calls);
            }
            if Instant::now() >= deadline {
                bail!("the daemon counted {now} connections, not {count}, within {timeout:?}");
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the daemon exited with {status}{}", tail(&self.stderr));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops the daemon with the RPC `stop` and waits for it to exit; returns how long that
    /// took.
    pub async fn stop(mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.call("stop").await?;
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the daemon")?;
                if !status.success() {
                    bail!("the daemon exited with {status}{}", tail(&self.stderr));
                }
                Ok(started.elapsed())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("the daemon did not exit within {STOP_TIMEOUT:?} of `stop`; killed")
            }
        }
    }
}

/// Waits until the daemon has written its cookie file and its node RPC answers `uptime`.
async fn connect_rpc(
    child: &mut Child,
    stderr: &Path,
    rpc: SocketAddr,
    cookie: &Path,
) -> anyhow::Result<Client> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last_error = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("the daemon exited at start with {status}{}", tail(stderr));
        }
        match try_connect(rpc, cookie).await {
            Ok(client) => return Ok(client),
            Err(e) => last_error = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "the daemon's node RPC on {rpc} did not answer within {START_TIMEOUT:?} \
         (last error: {last_error}){}",
        tail(stderr)
    )
}

async fn try_connect(rpc: SocketAddr, cookie: &Path) -> anyhow::Result<Client> {
    let (user, password) =
        read_cookie(cookie).with_context(|| format!("reading {}", cookie.display()))?;
    let mut client = Client::connect(rpc, Some((&user, &password))).await?;
    let reply = client.call("uptime", json!([])).await?;
    if !reply.status.is_success() {
        bail!("uptime: HTTP {}", reply.status);
    }
    Ok(client)
}

/// Three loopback ports that were free a moment ago. The daemon binds them itself; another
/// process could take one in between, which would show as a failed start.
fn free_ports() -> anyhow::Result<[SocketAddr; 3]> {
    let bind = || TcpListener::bind("127.0.0.1:0").context("finding a free loopback port");
    // Held together, so that the three are distinct.
    let held = [bind()?, bind()?, bind()?];
    let mut out = [SocketAddr::from(([127, 0, 0, 1], 0)); 3];
    for (o, l) in out.iter_mut().zip(&held) {
        *o = l.local_addr()?;
    }
    Ok(out)
}

/// The last lines the daemon wrote to stderr, to explain a failure.
fn tail(stderr: &Path) -> String {
    let text = std::fs::read_to_string(stderr).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let last = &lines[lines.len().saturating_sub(10)..];
    if last.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n{}", last.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_daemon_must_exist() {
        let e = locate(Some(Path::new("/nonexistent/peerpool"))).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }

    #[test]
    fn free_ports_are_distinct_loopback_ports() {
        let [a, b, c] = free_ports().unwrap();
        assert!(a.ip().is_loopback());
        assert!(a.port() != b.port() && b.port() != c.port() && a.port() != c.port());
    }
}
