//! Server processes: the benchmark re-executes its own binary to run the server under test in
//! a separate process, so that the server's memory and CPU time can be read from `/proc`
//! without the load generator's in them.
//!
//! The child is selected by the environment variable [`CHILD_ENV`], not by command-line
//! arguments, so it works whatever the host binary's command line looks like: the host
//! (`peerpool-bench`, or a test with its own `main`) calls [`run_child_if_requested`] first
//! thing in `main`. (The child is also started with the argument `__server`, so that a host
//! which forgot the call fails on an unknown scenario instead of running a benchmark inside
//! the benchmark.)
//!
//! ## Control protocol
//! The child binds `127.0.0.1:0`, prints `ready <addr>` on stdout, then answers lines on
//! stdin, one answer line each:
//! - `stats` → `stats accepted=N disconnected=N refused=N handshakes=N msgs=N invs=N blobs=N bytes=N`
//! - `wait <counter> <value> <timeout-ms>` → `done <value>` once the counter reaches the value
//!   (polled every millisecond by the child's main thread), or `timeout <value>`
//! - `fanout <first> <count> <timeout-ms>` (servers started with a
//!   [`ServerSpec::fanout_batch`]) →
//!   announces entries `first..first + count` to every handshaken peer (the relays of
//!   `crates/bench/src/fanout_server.rs`), then `done <micros>`, or `error <message>`
//! - `quit` (or end of input, e.g. when the parent dies) → the child exits.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

use crate::fanout_server::{relay, Targets, WriteMode};
use crate::sys;

/// Environment variable that turns the process into a benchmark server; holds its
/// [`ServerSpec`].
pub const CHILD_ENV: &str = "PEERPOOL_BENCH_CHILD";

/// Environment variable with a command prefix to start server processes under, for profiling:
/// e.g. `valgrind --tool=massif` or `perf record -g -o server.data`.
pub const WRAPPER_ENV: &str = "PEERPOOL_BENCH_SERVER_WRAPPER";

/// Listen backlog of both servers, so that bursts of connections are not dropped by the
/// kernel before either gets to accept them (Linux caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// Longest wait for a child's answer on the control channel.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server a child runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// peerpool: `accept_loop` + `Peer`.
    Peerpool,
    /// The minimal reference server (`crates/bench/src/reference.rs`).
    Reference,
    /// The minimal fan-out server: a bounded queue per peer whose writer coalesces what is
    /// queued into one write (`crates/bench/src/fanout_server.rs`).
    FanoutCoalescing,
    /// The fan-out server with one write per frame.
    FanoutPerMessage,
}

impl Impl {
    /// Both, in the order runs alternate.
    pub const BOTH: [Impl; 2] = [Impl::Peerpool, Impl::Reference];

    fn as_str(self) -> &'static str {
        match self {
            Impl::Peerpool => "peerpool",
            Impl::Reference => "reference",
            Impl::FanoutCoalescing => "fanout-coalescing",
            Impl::FanoutPerMessage => "fanout-per-message",
        }
    }
}

impl std::fmt::Display for Impl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a child server is set up.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// The implementation.
    pub imp: Impl,
    /// Tokio worker threads.
    pub threads: usize,
    /// Most connections held at once; more are accepted and closed.
    pub max_conns: usize,
    /// Exact open-file soft limit to run under; `None` raises it to the hard limit.
    pub nofile: Option<u64>,
    /// Reference server only: read buffer size (0: unbuffered).
    pub read_buffer: usize,
    /// CPU to pin the whole server process to.
    pub cpu: Option<usize>,
    /// Fan-out servers: entries per relay batch (see `crates/bench/src/fanout_server.rs`); 0
    /// for every other scenario. A peerpool server keeps every accepted peer for the `fanout`
    /// command only when it is set, since holding finished peers would distort the memory
    /// figures of churn and idle.
    pub fanout_batch: u64,
    /// peerpool server only: whether the per-session cost limits (soft and hard, see
    /// `peerpool_core::cost`) apply. On everywhere but the throughput scenario, whose single
    /// flooding session is exactly what the limits exist to slow down and cut off; their
    /// effect is measured on its own by `cargo bench -p peerpool-net --bench priority`.
    pub cost_limits: bool,
}

impl ServerSpec {
    /// A spec with defaults: as many threads as CPUs, no connection cap, unbuffered reads.
    pub fn new(imp: Impl, threads: usize) -> ServerSpec {
        ServerSpec {
            imp,
            threads,
            max_conns: 1_000_000,
            nofile: None,
            read_buffer: 0,
            cpu: None,
            fanout_batch: 0,
            cost_limits: true,
        }
    }

    fn encode(&self) -> String {
        format!(
            "impl={} threads={} max_conns={} nofile={} read_buffer={} cpu={} fanout_batch={} cost_limits={}",
            self.imp,
            self.threads,
            self.max_conns,
            self.nofile.map_or_else(|| "max".into(), |n| n.to_string()),
            self.read_buffer,
            self.cpu.map_or_else(|| "any".into(), |n| n.to_string()),
            self.fanout_batch,
            self.cost_limits
        )
    }

    fn decode(s: &str) -> anyhow::Result<ServerSpec> {
        let mut spec = ServerSpec::new(Impl::Peerpool, 1);
        for kv in s.split_whitespace() {
            let (k, v) = kv.split_once('=').context("malformed server spec")?;
            match k {
                "impl" => {
                    spec.imp = match v {
                        "peerpool" => Impl::Peerpool,
                        "reference" => Impl::Reference,
                        "fanout-coalescing" => Impl::FanoutCoalescing,
                        "fanout-per-message" => Impl::FanoutPerMessage,
                        _ => bail!("unknown implementation {v:?}"),
                    }
                }
                "threads" => spec.threads = v.parse()?,
                "max_conns" => spec.max_conns = v.parse()?,
                "nofile" => spec.nofile = if v == "max" { None } else { Some(v.parse()?) },
                "read_buffer" => spec.read_buffer = v.parse()?,
                "cpu" => spec.cpu = if v == "any" { None } else { Some(v.parse()?) },
                "fanout_batch" => spec.fanout_batch = v.parse()?,
                "cost_limits" => spec.cost_limits = v.parse()?,
                _ => bail!("unknown server spec key {k:?}"),
            }
        }
        Ok(spec)
    }
}

/// Counters a server keeps; read through the control protocol.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) disconnected: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) handshakes: AtomicU64,
    pub(crate) msgs: AtomicU64,
    pub(crate) invs: AtomicU64,
    pub(crate) blobs: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn by_name(&self, name: &str) -> Option<&AtomicU64> {
        Some(match name {
            "accepted" => &self.accepted,
            "disconnected" => &self.disconnected,
            "refused" => &self.refused,
            "handshakes" => &self.handshakes,
            "msgs" => &self.msgs,
            "invs" => &self.invs,
            "blobs" => &self.blobs,
            "bytes" => &self.bytes,
            _ => return None,
        })
    }

    fn line(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "stats accepted={} disconnected={} refused={} handshakes={} msgs={} invs={} blobs={} bytes={}",
            g(&self.accepted),
            g(&self.disconnected),
            g(&self.refused),
            g(&self.handshakes),
            g(&self.msgs),
            g(&self.invs),
            g(&self.blobs),
            g(&self.bytes)
        )
    }
}

/// A snapshot of a child's [`Counters`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerStats {
    /// Connections accepted and kept.
    pub accepted: u64,
    /// Connections ended.
    pub disconnected: u64,
    /// Connections accepted and closed at once (reference only; peerpool does not report it).
    pub refused: u64,
    /// Handshakes completed (our verack read by the server).
    pub handshakes: u64,
    /// Frames read.
    pub msgs: u64,
    /// `inv` frames read.
    pub invs: u64,
    /// Large-payload frames read.
    pub blobs: u64,
    /// Bytes of frames read.
    pub bytes: u64,
}

impl ServerStats {
    fn parse(line: &str) -> anyhow::Result<ServerStats> {
        let rest = line
            .strip_prefix("stats ")
            .with_context(|| format!("unexpected answer {line:?}"))?;
        let mut s = ServerStats::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=').context("malformed stats")?;
            let v: u64 = v.parse()?;
            match k {
                "accepted" => s.accepted = v,
                "disconnected" => s.disconnected = v,
                "refused" => s.refused = v,
                "handshakes" => s.handshakes = v,
                "msgs" => s.msgs = v,
                "invs" => s.invs = v,
                "blobs" => s.blobs = v,
                "bytes" => s.bytes = v,
                _ => {}
            }
        }
        Ok(s)
    }

    /// Connections currently held.
    pub fn live(&self) -> u64 {
        self.accepted.saturating_sub(self.disconnected)
    }
}

/// If this process was started as a benchmark server, runs it and exits the process;
/// otherwise returns at once. Call it first thing in `main` of any binary that runs
/// [`crate::run`] (before installing a tracing subscriber, so the server is not slowed by
/// logging). Safe to call from inside or outside a tokio runtime.
pub fn run_child_if_requested() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let outcome = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || child_main(&spec))
        .map(|h| h.join());
    let code = match outcome {
        Ok(Ok(Ok(()))) => 0,
        Ok(Ok(Err(e))) => {
            eprintln!("peerpool-bench server: {e:#}");
            1
        }
        Ok(Err(_)) => 101,
        Err(e) => {
            eprintln!("peerpool-bench server: cannot start thread: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn child_main(spec: &str) -> anyhow::Result<()> {
    let spec = ServerSpec::decode(spec)?;
    match spec.nofile {
        Some(n) => sys::set_nofile(n)?,
        None => {
            sys::raise_nofile_to_hard()?;
        }
    }
    if let Some(cpu) = spec.cpu {
        // Threads inherit the affinity of the thread that creates them: pinning this thread
        // before the runtime exists pins every worker.
        crate::sys::pin_current_thread(cpu)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.threads.max(1))
        .enable_all()
        .build()
        .context("building the server runtime")?;
    let listener = rt.block_on(async { bind_listener() })?;
    let addr = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    let shutdown = CancellationToken::new();
    let c = Arc::clone(&counters);
    let s = shutdown.clone();
    let mut targets = None;
    match spec.imp {
        Impl::Peerpool => {
            let registry = (spec.fanout_batch > 0).then(|| Arc::new(Mutex::new(Vec::new())));
            if let Some(r) = &registry {
                targets = Some(Targets::Peerpool(Arc::clone(r), spec.fanout_batch));
            }
            rt.spawn(crate::peerpool_server::serve(
                listener,
                c,
                spec.max_conns,
                spec.cost_limits,
                registry,
                s,
            ));
        }
        Impl::FanoutCoalescing | Impl::FanoutPerMessage => {
            let queues = Arc::new(Mutex::new(Vec::new()));
            let batch = spec.fanout_batch.max(1);
            targets = Some(Targets::Queues(Arc::clone(&queues), batch));
            let mode = if spec.imp == Impl::FanoutCoalescing {
                WriteMode::Coalescing
            } else {
                WriteMode::PerMessage
            };
            rt.spawn(crate::fanout_server::serve_reference(
                listener, c, mode, batch, queues, s,
            ));
        }
        Impl::Reference => {
            rt.spawn(crate::reference::serve(
                listener,
                c,
                spec.max_conns,
                spec.read_buffer,
                s,
            ));
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {addr}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["stats"] => writeln!(out, "{}", counters.line())?,
            ["wait", name, value, timeout_ms] => {
                let counter = counters.by_name(name).context("unknown counter")?;
                let value: u64 = value.parse()?;
                let deadline = Instant::now() + Duration::from_millis(timeout_ms.parse()?);
                let reached = loop {
                    let v = counter.load(Ordering::Relaxed);
                    if v >= value {
                        break Some(v);
                    }
                    if Instant::now() >= deadline {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                match reached {
                    Some(v) => writeln!(out, "done {v}")?,
                    None => writeln!(out, "timeout {}", counter.load(Ordering::Relaxed))?,
                }
            }
            ["fanout", first, count, timeout_ms] => {
                let answer = match &targets {
                    Some(t) => {
                        let (first, count): (u64, u64) = (first.parse()?, count.parse()?);
                        let timeout = Duration::from_millis(timeout_ms.parse()?);
                        let t = t.clone();
                        let started = Instant::now();
                        let task = rt.spawn(async move {
                            tokio::time::timeout(timeout, relay(&t, first, count)).await
                        });
                        match rt.block_on(task) {
                            Ok(Ok(Ok(()))) => format!("done {}", started.elapsed().as_micros()),
                            Ok(Ok(Err(e))) => format!("error {e:#}"),
                            Ok(Err(_)) => format!("error relay not done within {timeout:?}"),
                            Err(e) => format!("error relay task failed: {e}"),
                        }
                    }
                    None => "error this server was not started for fanout".into(),
                };
                writeln!(out, "{answer}")?;
            }
            ["quit"] => break,
            _ => writeln!(out, "error unknown command {line:?}")?,
        }
        out.flush()?;
    }
    shutdown.cancel();
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

fn bind_listener() -> anyhow::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind("127.0.0.1:0".parse()?)?;
    Ok(socket.listen(BACKLOG)?)
}

/// A command that runs `program` under the prefix in [`WRAPPER_ENV`], if any.
pub(crate) fn wrapped(program: &std::path::Path) -> tokio::process::Command {
    let wrapper = std::env::var(WRAPPER_ENV).unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    match words.next() {
        Some(prefix) => {
            let mut c = tokio::process::Command::new(prefix);
            c.args(words).arg(program);
            c
        }
        None => tokio::process::Command::new(program),
    }
}

/// A running child server, seen from the benchmark process. Killed when dropped.
pub struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    addr: SocketAddr,
    imp: Impl,
}

impl ServerProcess {
    /// Starts a server process from this process's own executable.
    pub async fn spawn(spec: &ServerSpec) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("locating the benchmark executable")?;
        let mut child = wrapped(&exe)
            .arg("__server")
            .env(CHILD_ENV, spec.encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting server process {}", exe.display()))?;
        let pid = child.id().context("server process has no pid")?;
        let stdin = child.stdin.take().context("no stdin pipe")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
        let mut p = ServerProcess {
            child,
            stdin,
            stdout,
            pid,
            addr: "127.0.0.1:0".parse()?,
            imp: spec.imp,
        };
        let line = p.read_line().await.context(
            "the server process did not start; a host binary must call \
             peerpool_bench::run_child_if_requested() first thing in main",
        )?;
        p.addr = line
            .strip_prefix("ready ")
            .with_context(|| format!("unexpected first line {line:?} from server process"))?
            .parse()?;
        Ok(p)
    }

    async fn read_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(CONTROL_TIMEOUT, self.stdout.read_line(&mut line))
            .await
            .context("server process did not answer")??;
        if n == 0 {
            bail!("server process {} ({}) exited", self.pid, self.imp);
        }
        Ok(line.trim_end().to_owned())
    }

    async fn command(&mut self, cmd: &str) -> anyhow::Result<String> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        self.read_line().await
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's counters.
    pub async fn stats(&mut self) -> anyhow::Result<ServerStats> {
        let line = self.command("stats").await?;
        ServerStats::parse(&line)
    }

    /// Waits until counter `name` reaches `value`; returns its value then, or an error after
    /// `timeout`.
    pub async fn wait_for(
        &mut self,
        name: &str,
        value: u64,
        timeout: Duration,
    ) -> anyhow::Result<u64> {
        // The child's own deadline fires first; ours only guards against a hung child.
        let cmd = format!("wait {name} {value} {}", timeout.as_millis());
        let line = tokio::time::timeout(timeout + CONTROL_TIMEOUT, self.command(&cmd))
            .await
            .context("server process did not answer")??;
        match line.split_once(' ') {
            Some(("done", v)) => Ok(v.parse()?),
            Some(("timeout", v)) => {
                bail!(
                    "{}: counter {name} reached only {v} of {value} within {timeout:?}",
                    self.imp
                )
            }
            _ => bail!("unexpected answer {line:?}"),
        }
    }

    /// Runs the `fanout` command: announces entries `first..first + count` to every peer.
    /// Returns how long the server's relay took to queue them.
    pub async fn fanout(
        &mut self,
        first: u64,
        count: u64,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let cmd = format!("fanout {first} {count} {}", timeout.as_millis());
        let line = tokio::time::timeout(timeout + CONTROL_TIMEOUT, self.command(&cmd))
            .await
            .context("server process did not answer")??;
        match line.split_once(' ') {
            Some(("done", us)) => Ok(Duration::from_micros(us.parse()?)),
            Some(("error", e)) => bail!("{}: {e}", self.imp),
            _ => bail!("unexpected answer {line:?}"),
        }
    }

    /// Peak resident memory of the server so far, in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        sys::peak_rss_bytes(self.pid).context("reading server peak RSS")
    }

    /// Resident memory of the server, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        sys::rss_bytes(self.pid).context("reading server RSS")
    }

    /// CPU time the server has used.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        sys::cpu_time(self.pid).context("reading server CPU time")
    }

    /// Asks the server to exit and waits for it (kills it if it does not exit in time).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.stdin.flush().await;
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("server process {} exited with {status}", self.imp);
                }
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip() {
        let mut s = ServerSpec::new(Impl::Reference, 2);
        s.nofile = Some(20_000);
        s.read_buffer = 65_536;
        s.max_conns = 19_900;
        s.cpu = Some(1);
        s.fanout_batch = 256;
        let back = ServerSpec::decode(&s.encode()).unwrap();
        assert_eq!(back.imp, Impl::Reference);
        assert_eq!(back.threads, 2);
        assert_eq!(back.max_conns, 19_900);
        assert_eq!(back.nofile, Some(20_000));
        assert_eq!(back.read_buffer, 65_536);
        assert_eq!(back.cpu, Some(1));
        assert_eq!(back.fanout_batch, 256);
        let s = ServerSpec::new(Impl::FanoutPerMessage, 1);
        assert_eq!(
            ServerSpec::decode(&s.encode()).unwrap().imp,
            Impl::FanoutPerMessage
        );
    }

    #[test]
    fn stats_round_trip() {
        let c = Counters::default();
        Counters::add(&c.handshakes, 3);
        Counters::add(&c.accepted, 5);
        Counters::add(&c.disconnected, 1);
        let s = ServerStats::parse(&c.line()).unwrap();
        assert_eq!(s.handshakes, 3);
        assert_eq!(s.live(), 4);
    }
}
