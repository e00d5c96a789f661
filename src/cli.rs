//! Command-line interface and the `run` subcommand.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use peerpool::core::peer::{PeerConfig, UserAgent};
use peerpool::net::Listeners;
use peerpool::wire::chain::ChainParams;
use peerpool::wire::Network;
use tracing::info;

use crate::node::{Node, Reporting};

/// Peer-to-peer connections for Bitcoin-family networks.
#[derive(Parser, Debug)]
#[command(name = "peerpool", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: listen for peers and keep connections to the given ones.
    Run(RunArgs),
    /// Start a small network of nodes on loopback and show them handshake and ping live.
    Demo(crate::demo::DemoArgs),
}

/// Which chain to speak.
#[derive(Args, Debug, Clone)]
pub struct ChainArgs {
    /// Built-in network: mainnet, testnet (testnet3), testnet4, signet or regtest.
    #[arg(long, default_value = "mainnet", conflicts_with = "chain")]
    pub network: String,
    /// Any other Bitcoin-family chain, described in a TOML file (see examples/litecoin.toml).
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
}

impl ChainArgs {
    pub fn params(&self) -> anyhow::Result<ChainParams> {
        match &self.chain {
            Some(path) => Ok(ChainParams::from_file(path)?),
            None => Ok(self.network.parse::<Network>()?.params()),
        }
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Data directory; logs go to <datadir>/<chain>/debug.log. Default: ~/.peerpool
    #[arg(long, value_name = "DIR")]
    datadir: Option<PathBuf>,
    /// Accept peers on this address (repeatable). Default: all interfaces, the chain's port.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// Do not accept inbound peers.
    #[arg(long, conflicts_with = "listen")]
    no_listen: bool,
    /// Connect to exactly these peers, redialing with backoff (repeatable). IP, IP:PORT,
    /// [IPv6]:PORT or HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    connect: Vec<String>,
    /// Do not query the chain's DNS seeds. peerpool reaches peers only through --connect
    /// until address discovery is configured, so this is implied today.
    #[arg(long)]
    no_dnsseed: bool,
    /// Comment added to the user agent, as in /peerpool:0.1.0(COMMENT)/ (repeatable).
    #[arg(long, value_name = "TEXT")]
    user_agent_comment: Vec<String>,
    /// Log level or filter (error, warn, info, debug, trace; or e.g. "info,peerpool_net=debug").
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,
    /// Most inbound peers at once; further connections are refused.
    #[arg(long, default_value_t = 114, value_name = "N")]
    max_inbound: usize,
}

pub fn execute(cli: Cli) -> anyhow::Result<()> {
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Demo(args) => runtime.block_on(crate::demo::demo(args)),
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

/// Parses IP, IP:PORT, [IPv6]:PORT or HOST:PORT; a missing port is the chain's default.
pub async fn resolve(spec: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(sa) = spec.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = spec
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if spec
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        spec.to_owned()
    } else {
        format!("{spec}:{default_port}")
    };
    let mut found = tokio::net::lookup_host(&with_port)
        .await
        .with_context(|| format!("address {spec:?} is not IP[:PORT] and did not resolve"))?;
    found
        .next()
        .with_context(|| format!("address {spec:?} resolved to nothing"))
}

fn data_dir(args: &RunArgs, chain: &ChainParams) -> anyhow::Result<PathBuf> {
    let base = match &args.datadir {
        Some(d) => d.clone(),
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

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let chain = args.chain.params()?;
    let user_agent = user_agent(&args.user_agent_comment)?;
    let dir = data_dir(&args, &chain)?;
    crate::logging::init(&args.log_level, Some(&dir.join("debug.log")))?;

    let mut connect = Vec::new();
    for spec in &args.connect {
        connect.push(
            resolve(spec, chain.default_port)
                .await
                .context("--connect")?,
        );
    }
    let mut listen = Vec::new();
    for spec in &args.listen {
        listen.push(
            resolve(spec, chain.default_port)
                .await
                .context("--listen")?,
        );
    }
    if listen.is_empty() && !args.no_listen {
        listen.push(SocketAddr::new(
            Ipv4Addr::UNSPECIFIED.into(),
            chain.default_port,
        ));
        listen.push(SocketAddr::new(
            Ipv6Addr::UNSPECIFIED.into(),
            chain.default_port,
        ));
    }
    if connect.is_empty() && listen.is_empty() {
        bail!("nothing to do: give --connect ADDR, or let the daemon listen");
    }

    let mut peer = PeerConfig::new(chain.clone());
    peer.user_agent = user_agent;
    let mut node = Node::new("node", peer, Listeners::new(), Reporting::Log);
    node.max_inbound = args.max_inbound;
    info!(
        chain = %chain.name,
        user_agent = %node.config.peer.user_agent,
        datadir = %dir.display(),
        "peerpool {} starting",
        env!("CARGO_PKG_VERSION")
    );
    for addr in listen {
        match node.listen(addr).await {
            Ok(bound) => info!("listening on {bound}"),
            // Dual-stack hosts refuse [::] after 0.0.0.0 took the port; one is enough.
            Err(e) if addr.ip().is_unspecified() && !node.listening.is_empty() => {
                tracing::debug!("{e:#}")
            }
            Err(e) => return Err(e),
        }
    }
    for addr in connect {
        info!("connecting to {addr}");
        node.connect(addr);
    }
    wait_for_signal().await;
    info!("shutting down");
    node.stop().await;
    info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
