//! Command-line interface and the `run` subcommand.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use peerpool::core::addr::{AddrSpec, NetAddr};
use peerpool::core::peer::{PeerConfig, UserAgent};
use peerpool::net::discovery;
use peerpool::net::pool::{self, Pool};
use peerpool::net::Config;
use peerpool::wire::chain::ChainParams;
use peerpool::wire::Network;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{parse_whitelist, pick, pick_list, FileConfig};

/// Peer-to-peer connections for Bitcoin-family networks.
#[derive(Parser, Debug)]
#[command(name = "peerpool", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: a pool of peers found through DNS seeds, given addresses and address
    /// relay, kept to its targets.
    Run(Box<RunArgs>),
    /// Start a small network of nodes on loopback and show them handshake and ping live.
    Demo(crate::demo::DemoArgs),
    /// Call the daemon's JSON-RPC server, as bitcoin-cli does: `peerpool rpc getpeerinfo`.
    Rpc(crate::rpc::ClientArgs),
    /// Call the daemon's admin listener: `peerpool admin sessions`.
    Admin(crate::admin::ClientArgs),
    /// Print the daemon's events as JSON lines.
    Events(crate::admin::EventsArgs),
}

/// Which chain to speak.
#[derive(Args, Debug, Clone)]
pub struct ChainArgs {
    /// Built-in network: mainnet (the default), testnet (testnet3), testnet4, signet or
    /// regtest.
    #[arg(long, value_name = "NAME", conflicts_with = "chain")]
    pub network: Option<String>,
    /// Any other Bitcoin-family chain, described in a TOML file (see examples/litecoin.toml).
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
}

impl ChainArgs {
    pub fn params(&self) -> anyhow::Result<ChainParams> {
        chain_params(self.network.as_deref(), self.chain.as_deref())
    }
}

fn chain_params(network: Option<&str>, chain: Option<&Path>) -> anyhow::Result<ChainParams> {
    match chain {
        Some(path) => {
            // Reading the file is the daemon's business; the chain crate only parses text.
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading chain file {}", path.display()))?;
            Ok(ChainParams::from_toml(&text, &path.display().to_string())?)
        }
        None => Ok(network.unwrap_or("mainnet").parse::<Network>()?.params()),
    }
}

/// `peerpool run`. Every flag also has a key in the `--config` file (see `crate::config`).
#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// TOML file with the same keys as these flags (`max-connections = 40`); flags given here
    /// override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: log (<datadir>/<chain>/debug.log), address book (peers.dat) and bans
    /// (banlist.dat). Default: ~/.peerpool
    #[arg(long, value_name = "DIR")]
    datadir: Option<PathBuf>,
    /// Accept peers on this address (repeatable). Default: all interfaces, the chain's port.
    /// A specific IP is also advertised to peers, so that they can tell others about us.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// Do not accept inbound peers.
    #[arg(long, conflicts_with = "listen")]
    no_listen: bool,
    /// Connect only to these peers, redialing with backoff, and make no automatic
    /// connections (repeatable). IP, IP:PORT, [IPv6]:PORT, NAME.onion:PORT or HOST:PORT.
    /// Turns listening off unless --listen is given, as Bitcoin Core does.
    #[arg(long, value_name = "ADDR")]
    connect: Vec<String>,
    /// Keep a connection to this peer besides the automatic ones, redialing with backoff
    /// (repeatable).
    #[arg(long, value_name = "ADDR")]
    addnode: Vec<String>,
    /// Put this address in the address book at start when the book is empty, to be dialed like
    /// any other: a first contact when there are no DNS seeds (repeatable).
    #[arg(long, value_name = "ADDR")]
    seednode: Vec<String>,
    /// Query the chain's DNS seeds when the address book is empty (the default).
    #[arg(long, overrides_with = "no_dnsseed")]
    dnsseed: bool,
    /// Do not query DNS seeds.
    #[arg(long)]
    no_dnsseed: bool,
    /// Make every outbound connection through this SOCKS5 proxy (IP:PORT; port 9050 if
    /// omitted); DNS seeds are then resolved through it too. Needed for .onion peers.
    #[arg(long, value_name = "ADDR")]
    proxy: Option<String>,
    /// Most connections in all (default 125, as Bitcoin Core).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Automatic outbound connections to keep (default 8, as Bitcoin Core).
    #[arg(long, value_name = "N")]
    target_outbound: Option<usize>,
    /// Most inbound peers at once, below what --max-connections leaves for them.
    #[arg(long, value_name = "N")]
    max_inbound: Option<usize>,
    /// Seconds between saves of the address book and bans (default 900, as Bitcoin Core;
    /// 1 to 2592000, 30 days); a node killed outright loses at most this much. They are also
    /// saved at shutdown.
    #[arg(long, value_name = "SECS")]
    save_interval: Option<u64>,
    /// Ban score at which a misbehaving peer's address is banned for 24 hours (default 100).
    #[arg(long, value_name = "SCORE")]
    ban_threshold: Option<u32>,
    /// Grant peers from SUBNET permissions, in Bitcoin Core's syntax: [PERMISSIONS@]SUBNET,
    /// e.g. noban,relay@127.0.0.0/8 (repeatable). Without permissions: noban, relay,
    /// mempool, download.
    #[arg(long, value_name = "[PERMS@]SUBNET")]
    whitelist: Vec<String>,
    /// Keep loopback and private addresses in the address book and ban misbehaving local
    /// peers, for test networks on 127.x.y.z. On by itself for regtest.
    #[arg(long)]
    allow_local_addresses: bool,
    /// Group peers by autonomous system with this asmap file (Bitcoin Core's format), for
    /// address-book buckets, outbound diversity and eviction; shown as mapped_as in
    /// getpeerinfo and getrawaddrman. A relative path is taken in the chain's data directory
    /// (in the config file: from the file's directory).
    #[arg(long, value_name = "FILE")]
    asmap: Option<PathBuf>,
    /// Comment added to the user agent, as in /peerpool:0.1.0(COMMENT)/ (repeatable).
    #[arg(long, value_name = "TEXT")]
    user_agent_comment: Vec<String>,
    /// Log level or filter (error, warn, info, debug, trace; or e.g. "info,peerpool_net=debug").
    /// Default: info.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    // --- Hardening: log file size, memory budget ---
    /// Rotate debug.log once it reaches this size: MiB, or with a K, M or G suffix (default
    /// 64 MiB; 0: never rotate).
    #[arg(long, value_name = "SIZE", value_parser = crate::logging::parse_size)]
    log_max_size: Option<u64>,
    /// Rotated log files kept (debug.log.1 ... debug.log.N; default 2, at most 100; 0: the
    /// file starts over).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=crate::logging::MAX_LOG_KEEP as u64))]
    log_keep: Option<u64>,
    // --- end of hardening flags ---
    #[command(flatten)]
    rpc: crate::rpc::ServerArgs,
    #[command(flatten)]
    admin: crate::admin::ServerArgs,
}

/// Runs the command; returns the process exit code.
pub fn execute(cli: Cli) -> anyhow::Result<u8> {
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)).map(|()| 0),
        Command::Demo(args) => runtime.block_on(crate::demo::demo(args)).map(|()| 0),
        Command::Rpc(args) => runtime.block_on(crate::rpc::client(args)),
        Command::Admin(args) => runtime.block_on(crate::admin::client(args)),
        Command::Events(args) => runtime.block_on(crate::admin::events(args)),
    }
}

/// Raises the soft open-file limit to the hard one: every peer is a socket.
fn raise_open_file_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise the open-file limit: {e}");
    }
}

/// Builds the user agent from the package name, version and comments.
pub fn user_agent(comments: &[String]) -> anyhow::Result<UserAgent> {
    let comments: Vec<&str> = comments.iter().map(String::as_str).collect();
    UserAgent::new("peerpool", env!("CARGO_PKG_VERSION"), &comments).context("--user-agent-comment")
}

/// The socket address `spec` names: IP, IP:PORT, [IPv6]:PORT or HOST[:PORT], `default_port`
/// where none is written. For listeners and RPC clients, so never through the proxy.
pub async fn socket_addr(spec: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    discovery::resolve(spec, default_port, None)
        .await?
        .to_socket()
        .with_context(|| format!("address {spec:?} is not an IP address"))
}

fn data_dir(base: Option<&Path>, chain: &ChainParams) -> anyhow::Result<PathBuf> {
    let base = match base {
        Some(d) => d.to_owned(),
        None => {
            let home = std::env::var_os("HOME").context("no --datadir and no $HOME")?;
            PathBuf::from(home).join(".peerpool")
        }
    };
    // Like Bitcoin Core, mainnet lives at the top and every other chain in a subdirectory.
    let dir = match chain.name.as_str() {
        "main" => base,
        "test" => base.join("testnet3"),
        other => base.join(other),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    Ok(dir)
}

/// Peer addresses: IP:PORT, [IPv6]:PORT and NAME.onion:PORT as they are, the chain's port
/// where none is written, host names resolved (through the proxy when there is one).
async fn peer_addrs(
    specs: Vec<String>,
    flag: &str,
    default_port: u16,
    proxy: Option<SocketAddr>,
) -> anyhow::Result<Vec<NetAddr>> {
    let mut out = Vec::new();
    for spec in &specs {
        out.push(
            discovery::resolve(spec, default_port, proxy)
                .await
                .with_context(|| format!("--{flag}"))?,
        );
    }
    Ok(out)
}

/// The port of a `--proxy` given without one: Tor's SOCKS port.
const DEFAULT_PROXY_PORT: u16 = 9050;

/// Everything `run` needs, from the flags over the file.
struct Settings {
    chain: ChainParams,
    dir: PathBuf,
    log_level: String,
    log_limits: crate::logging::FileLimits,
    max_connections: usize,
    listen: Vec<SocketAddr>,
    pool: pool::Config,
    user_agent: UserAgent,
    /// The manual peers, for the startup log.
    manual: Vec<NetAddr>,
    /// The configuration file (empty without `--config`), for the RPC listeners' keys.
    file: FileConfig,
    rpc: crate::rpc::ServerArgs,
    admin: crate::admin::ServerArgs,
}

async fn settings(args: RunArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let chain = if args.chain.chain.is_some() || args.chain.network.is_some() {
        args.chain.params()?
    } else {
        chain_params(file.network.as_deref(), file.chain.as_deref())?
    };
    let comments = pick_list(&args.user_agent_comment, &file.user_agent_comment);
    let user_agent = user_agent(&comments)?;
    let dir = data_dir(
        pick(args.datadir.clone(), file.datadir.clone()).as_deref(),
        &chain,
    )?;
    let log_level =
        pick(args.log_level.clone(), file.log_level.clone()).unwrap_or_else(|| "info".into());
    let mut log_limits = crate::logging::FileLimits::default();
    if let Some(size) = args.log_max_size {
        log_limits.max_size = size;
    } else if let Some(text) = &file.log_max_size {
        log_limits.max_size =
            crate::logging::parse_size(text).map_err(|e| anyhow::anyhow!("log-max-size {e}"))?;
    }
    if let Some(keep) = pick(args.log_keep, file.log_keep) {
        if keep > crate::logging::MAX_LOG_KEEP as u64 {
            bail!(
                "--log-keep {keep}: at most {} files are kept",
                crate::logging::MAX_LOG_KEEP
            );
        }
        log_limits.keep = keep as usize;
    }

    let proxy = match pick(args.proxy.clone(), file.proxy.clone()) {
        None => None,
        Some(p) => Some(
            AddrSpec::parse(&p, DEFAULT_PROXY_PORT)
                .ok()
                .and_then(|spec| spec.addr())
                .and_then(NetAddr::to_socket)
                .with_context(|| {
                    format!(
                        "--proxy {p:?}: expected IP:PORT (or IP, for port {DEFAULT_PROXY_PORT})"
                    )
                })?,
        ),
    };
    let port = chain.default_port;
    let connect = peer_addrs(
        pick_list(&args.connect, &file.connect),
        "connect",
        port,
        proxy,
    )
    .await?;
    let addnode = peer_addrs(
        pick_list(&args.addnode, &file.addnode),
        "addnode",
        port,
        proxy,
    )
    .await?;
    let seednode = peer_addrs(
        pick_list(&args.seednode, &file.seednode),
        "seednode",
        port,
        proxy,
    )
    .await?;

    let listen_specs = pick_list(&args.listen, &file.listen);
    // As Bitcoin Core: `--connect` turns listening off unless addresses to listen on are given.
    let no_listen = args.no_listen
        || (listen_specs.is_empty() && (file.no_listen == Some(true) || !connect.is_empty()));
    let mut listen = Vec::new();
    if !no_listen {
        for spec in listen_specs {
            listen.push(socket_addr(&spec, port).await.context("--listen")?);
        }
        if listen.is_empty() {
            listen.push(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
            listen.push(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port));
        }
    }
    if connect.is_empty() && addnode.is_empty() && listen.is_empty() && seednode.is_empty() {
        let dnsseed = !args.no_dnsseed && (args.dnsseed || file.dnsseed != Some(false));
        if !dnsseed || chain.dns_seeds.is_empty() {
            bail!("nothing to do: give --connect, --addnode or --seednode ADDR, or let the daemon listen");
        }
    }

    let mut pool = pool::Config::default();
    let allow_local = args.allow_local_addresses
        || file.allow_local_addresses == Some(true)
        || chain.name == "regtest";
    if allow_local {
        pool = pool.allow_local_addresses();
    }
    let connman = &mut pool.machine.connman;
    if let Some(n) = pick(args.max_connections, file.max_connections) {
        connman.max_connections = n;
    }
    if let Some(n) = pick(args.target_outbound, file.target_outbound) {
        connman.target_outbound = n;
    }
    if connman.target_outbound > connman.max_connections {
        bail!(
            "--target-outbound {} exceeds --max-connections {}",
            connman.target_outbound,
            connman.max_connections
        );
    }
    if !connect.is_empty() {
        connman.connect_only = true;
    }
    if let Some(t) = pick(args.ban_threshold, file.ban_threshold) {
        if t == 0 {
            bail!("--ban-threshold must be at least 1");
        }
        pool.machine.banman.threshold = t;
        pool.machine.banman.warning = pool.machine.banman.warning.min(t);
    }
    for spec in pick_list(&args.whitelist, &file.whitelist) {
        pool.machine.whitelist.push(parse_whitelist(&spec)?);
    }
    pool.dns_seed = if args.no_dnsseed {
        false
    } else if args.dnsseed {
        true
    } else {
        file.dnsseed.unwrap_or(true)
    };
    if let Some(secs) = pick(args.save_interval, file.save_interval) {
        pool.save_interval = std::time::Duration::from_secs(
            save_interval_secs(&secs.to_string())
                .map_err(|e| anyhow::anyhow!("--save-interval {e}"))?,
        );
    }
    pool.proxy = proxy;
    if let Some(path) = pick(args.asmap.clone(), file.asmap.clone()) {
        let path = if path.is_relative() {
            dir.join(path)
        } else {
            path
        };
        let map = crate::config::load_asmap(&path)?;
        pool.asmap = Some(std::sync::Arc::new(map));
    }
    pool.max_inbound = pick(args.max_inbound, file.max_inbound);
    pool.data_dir = Some(dir.clone());
    let mut manual = connect;
    manual.extend(addnode);
    pool.add_nodes = manual.clone();
    pool.seeds = seednode;
    Ok(Settings {
        chain,
        dir,
        log_level,
        log_limits,
        max_connections: pool.machine.connman.max_connections,
        listen,
        pool,
        user_agent,
        manual,
        file,
        rpc: args.rpc,
        admin: args.admin,
    })
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let signal = wait_for_signal();
    let s = settings(args).await?;
    // Before anything is written there: a second daemon must not touch the first's files.
    let _lock = crate::guard::DirLock::acquire(&s.dir)?;
    crate::logging::init(&s.log_level, Some((&s.dir.join("debug.log"), s.log_limits)))?;
    let shutdown = CancellationToken::new();
    crate::guard::stop_on_panic(shutdown.clone());
    if let Some(map) = &s.pool.asmap {
        info!("Using asmap version {} for IP bucketing", map.version_hex());
    }
    let mut peer = PeerConfig::new(s.chain.clone());
    peer.user_agent = s.user_agent;
    info!(
        chain = %s.chain.name,
        user_agent = %peer.user_agent,
        datadir = %s.dir.display(),
        "peerpool {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let mut listeners = Vec::new();
    for addr in &s.listen {
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            // Dual-stack hosts refuse [::] after 0.0.0.0 took the port; one is enough.
            Err(e) if addr.ip().is_unspecified() && !listeners.is_empty() => {
                tracing::debug!("binding P2P listener on {addr}: {e}")
            }
            Err(e) => return Err(e).with_context(|| format!("binding P2P listener on {addr}")),
        }
    }
    let user_agent = peer.user_agent.to_string();
    let pool = Pool::start(
        s.pool,
        Config::from_peer_config(peer),
        listeners,
        shutdown.clone(),
    )
    .await;
    for bound in pool.listening() {
        info!("listening on {bound}");
    }
    for addr in &s.manual {
        info!("connecting to {addr}");
    }
    let daemon = peerpool_rpc::Daemon {
        pool: pool.handle(),
        chain: s.chain.clone(),
        data_dir: Some(s.dir.clone()),
        started: std::time::SystemTime::now(),
        user_agent,
        listening: pool.listening().to_vec(),
        shutdown: shutdown.clone(),
    };
    check_descriptors(s.max_connections);
    let rpc = s.rpc.start(&s.file, &daemon).await?;
    let admin = s.admin.start(&s.file, &daemon, rpc.as_ref()).await?;
    if crate::guard::test_panic_requested() {
        tokio::spawn(async { panic!("test panic requested by PEERPOOL_TEST_PANIC") });
    }
    // `stop` over RPC cancels the token, as a signal does, and so does a panic.
    tokio::select! {
        () = signal => {}
        () = shutdown.cancelled() => {}
    }
    info!("shutting down");
    let stopping = async {
        if let Some(admin) = admin {
            admin.stop().await;
        }
        pool.stop().await;
    };
    match crate::guard::panicked() {
        // A panicked task may be one that the rest waits for: the stop gets a bound.
        Some(reason) => {
            if tokio::time::timeout(PANIC_STOP_TIMEOUT, stopping)
                .await
                .is_err()
            {
                tracing::error!(
                    "the daemon did not stop within {PANIC_STOP_TIMEOUT:?} after a panic"
                );
            }
            bail!("stopped after a panic: {reason}");
        }
        None => stopping.await,
    }
    info!("stopped");
    Ok(())
}

/// Descriptors kept aside for the daemon's own files (log, snapshots, lock, DNS) besides
/// its connections. Bitcoin Core: `MIN_CORE_FILEDESCRIPTORS` (150), which also covers its
/// databases.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Warns when the open-file limit cannot hold every connection the daemon may serve at once:
/// P2P peers, RPC and admin connections (each listener capped), and the reserve.
fn check_descriptors(p2p: usize) {
    let needed = p2p as u64
        + peerpool_rpc::node::DEFAULT_MAX_CONNECTIONS as u64
        + peerpool_rpc::admin::MAX_CONNECTIONS as u64
        + RESERVED_DESCRIPTORS;
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        if soft < needed {
            tracing::warn!(
                "the open-file limit ({soft}) is below the {needed} descriptors the daemon may \
                 need (peers, RPC and admin connections, files): raise it, or lower \
                 --max-connections"
            );
        }
    }
}

/// How long a daemon stopping after a panic waits for the rest to stop cleanly.
const PANIC_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A `--save-interval` in seconds: 1 to [`pool::MAX_SAVE_INTERVAL`].
fn save_interval_secs(text: &str) -> Result<u64, String> {
    let max = pool::MAX_SAVE_INTERVAL.as_secs();
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 second".into()),
        Ok(n) if n <= max => Ok(n),
        Ok(n) => Err(format!("{n} is more than {max} seconds (30 days)")),
        Err(_) => Err(format!("{text:?} is not a number of seconds")),
    }
}

/// A future that resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal arriving in between (while the
/// daemon is still starting) stops it cleanly instead of killing it.
pub fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
