//! The daemon's admin listener flags, `peerpool admin` and `peerpool events`.

use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr};

use anyhow::{bail, Context};
use clap::Args;
use peerpool_rpc::admin::client::{Client, ClientError};
use peerpool_rpc::admin::serde_json::{json, Map, Value};
use peerpool_rpc::admin::{table, AdminAuth, AdminServer, Config, DEFAULT_PORT};
use std::sync::Arc;
use tracing::{debug, info, warn};

use crate::cli::socket_addr;
use crate::config::{pick_list, FileConfig};

/// `peerpool run`'s flags for the admin listener.
#[derive(Args, Debug, Default)]
#[group(id = "admin-server")]
pub struct ServerArgs {
    /// Serve the ElectrumX-style admin interface (one JSON-RPC object per line, as
    /// `electrumx_rpc --port PORT` and `peerpool admin` speak it) on this address
    /// (repeatable). Without --admin-auth it has no authentication. Default: 127.0.0.1 and
    /// [::1] on port 8339.
    #[arg(long, value_name = "ADDR")]
    admin_bind: Vec<String>,
    /// Do not start the admin listener.
    #[arg(long, conflicts_with = "admin_bind")]
    no_admin: bool,
    /// Require the node RPC's credentials (cookie, --rpc-user/--rpc-password, --rpcauth) in
    /// a first `auth` request on every admin connection; `peerpool admin` and `peerpool
    /// events` send the cookie's by themselves.
    #[arg(long)]
    admin_auth: bool,
}

impl ServerArgs {
    /// Starts the admin listener for `daemon` (flags over `file`). It serves until the daemon
    /// shuts down.
    pub async fn start(
        &self,
        file: &FileConfig,
        daemon: &peerpool_rpc::Daemon,
        rpc: Option<&peerpool_rpc::node::Server>,
    ) -> anyhow::Result<Option<AdminServer>> {
        if self.no_admin || (self.admin_bind.is_empty() && file.no_admin == Some(true)) {
            return Ok(None);
        }
        let mut config = Config::default();
        if self.admin_auth || file.admin_auth == Some(true) {
            let Some(rpc) = rpc else {
                bail!("--admin-auth checks the node RPC's credentials, and the RPC server is not running (see --rpc-bind)");
            };
            config.auth = Some(AdminAuth {
                credentials: rpc.credentials().clone(),
                failed: Arc::clone(rpc.failed_auth()),
            });
        }
        let specs = pick_list(&self.admin_bind, &file.admin_bind);
        let mut bind = Vec::new();
        for spec in &specs {
            bind.push(
                socket_addr(spec, DEFAULT_PORT)
                    .await
                    .with_context(|| format!("--admin-bind {spec:?}"))?,
            );
        }
        let defaults = bind.is_empty();
        if defaults {
            bind.push(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
            bind.push(SocketAddr::from((Ipv6Addr::LOCALHOST, DEFAULT_PORT)));
        }
        let mut listeners = Vec::new();
        for addr in &bind {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => listeners.push(l),
                // The default [::1] is optional on hosts without IPv6.
                Err(e) if defaults && addr.is_ipv6() => {
                    debug!("binding admin listener on {addr}: {e}")
                }
                // A default port taken (by another daemon on this host) leaves the node
                // running without its operator interface; an address asked for must bind.
                Err(e) if defaults => {
                    warn!("admin listener not started: binding {addr}: {e} (choose one with --admin-bind)");
                    return Ok(None);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("binding admin listener on {addr}"))
                }
            }
        }
        let authenticated = config.auth.is_some();
        let server = AdminServer::start(listeners, daemon.clone(), config)
            .context("starting the admin listener")?;
        for addr in server.local_addrs() {
            if !addr.ip().is_loopback() && !authenticated {
                warn!("the admin listener on {addr} is reachable from other hosts and has no authentication");
            }
            info!("admin listener on {addr}");
        }
        Ok(Some(server))
    }
}

/// Where `peerpool admin` and `peerpool events` find the daemon.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The admin listener: HOST or HOST:PORT. Default: localhost on port 8339.
    #[arg(long, value_name = "ADDR")]
    admin_connect: Option<String>,
    /// The admin listener's port on localhost (as electrumx_rpc's --port).
    #[arg(short, long, value_name = "PORT", conflicts_with = "admin_connect")]
    port: Option<u16>,
    #[command(flatten)]
    credentials: crate::rpc::CredentialArgs,
}

impl ConnectArgs {
    /// Connects and, when credentials are at hand (given, or the daemon's cookie), sends
    /// `auth` with them first.
    async fn connect(&self) -> anyhow::Result<Client> {
        let mut client = self.connect_only().await?;
        if let Some((user, password)) = self.credentials.find()? {
            match client
                .call("auth", json!([user, password]))
                .await
                .context("authenticating to the admin listener")?
            {
                Ok(_) => {}
                Err(e) => bail!("the admin listener refused our credentials: {}", e.message),
            }
        }
        Ok(client)
    }

    async fn connect_only(&self) -> anyhow::Result<Client> {
        let target = match (&self.admin_connect, self.port) {
            (Some(a), _) if a.contains(':') && !a.ends_with(']') => a.clone(),
            (Some(a), _) => format!("{a}:{DEFAULT_PORT}"),
            (None, Some(p)) => format!("localhost:{p}"),
            (None, None) => format!("localhost:{DEFAULT_PORT}"),
        };
        Client::connect(target.as_str()).await.with_context(|| {
            format!("connecting to the admin listener at {target} (is peerpool run going, with its admin listener?)")
        })
    }
}

/// `peerpool admin COMMAND [ARGS...]`.
#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print the answer as JSON rather than as a table.
    #[arg(long)]
    json: bool,
    /// The command (getinfo, sessions, groups, peers, disconnect ID..., log ID...,
    /// peer_count, connected_peers, connect ADDR), then its arguments.
    #[arg(
        value_name = "COMMAND [ARGS]",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    words: Vec<String>,
}

/// The parameters of `command` from the command line.
fn params(command: &str, args: &[String]) -> Value {
    match command {
        "disconnect" | "log" => json!({ "session_ids": args }),
        "connect" if args.len() == 1 => json!({ "addr": args[0] }),
        _ if args.is_empty() => json!({}),
        _ => Value::Array(
            args.iter()
                .map(|a| peerpool_rpc::admin::serde_json::from_str(a).unwrap_or_else(|_| json!(a)))
                .collect(),
        ),
    }
}

/// Runs `peerpool admin`; returns the process exit code.
pub async fn client(args: ClientArgs) -> anyhow::Result<u8> {
    let (command, rest) = args.words.split_first().context("no command given")?;
    if command == "subscribe" {
        bail!("use `peerpool events` to follow the event stream");
    }
    let mut client = args.connect.connect().await?;
    let answer = client
        .call(command, params(command, rest))
        .await
        .context("calling the admin listener")?;
    match answer {
        Ok(result) => {
            let text = match (args.json, table::render(command, &result)) {
                (false, Some(t)) => t,
                _ => peerpool_rpc::admin::serde_json::to_string_pretty(&result)?,
            };
            println!("{text}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {} (code {})", e.message, e.code);
            Ok(1)
        }
    }
}

/// `peerpool events [--filter KEY=VALUES]...`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Follow only some events (repeatable): events=NAME,... (peer_joined, peer_left,
    /// peer_message, ban, eviction), commands=CMD,... (messages received: inv, ping, ...) or
    /// peers=ID,... Default: every peer joining, leaving, banned or evicted.
    #[arg(long, value_name = "KEY=VALUES")]
    filter: Vec<String>,
}

/// The `subscribe` parameters of `--filter` arguments.
fn filters(specs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for spec in specs {
        let Some((key, values)) = spec.split_once('=') else {
            bail!("--filter {spec:?}: expected KEY=VALUES (events=..., commands=... or peers=...)");
        };
        let values = values.split(',').map(str::trim).filter(|v| !v.is_empty());
        let list: Vec<Value> = match key {
            "events" | "commands" => values.map(|v| json!(v)).collect(),
            "peers" => values
                .map(|v| {
                    v.parse::<u64>()
                        .map(|n| json!(n))
                        .with_context(|| format!("--filter {spec:?}: {v:?} is not a peer id"))
                })
                .collect::<anyhow::Result<_>>()?,
            _ => bail!("--filter {spec:?}: unknown key {key:?} (events, commands or peers)"),
        };
        match out.get_mut(key) {
            Some(Value::Array(existing)) => existing.extend(list),
            _ => {
                out.insert(key.to_string(), Value::Array(list));
            }
        }
    }
    Ok(out)
}

/// Runs `peerpool events`: prints every notification as a JSON line until the daemon closes
/// the connection; returns the process exit code (1 if the daemon dropped us for lagging).
pub async fn events(args: EventsArgs) -> anyhow::Result<u8> {
    let params = filters(&args.filter)?;
    let mut client = args.connect.connect().await?;
    match client
        .call("subscribe", Value::Object(params))
        .await
        .context("subscribing")?
    {
        // On stderr, so that stdout carries only events.
        Ok(filter) => eprintln!("subscribed: {filter}"),
        Err(e) => {
            eprintln!("error: {} (code {})", e.message, e.code);
            return Ok(1);
        }
    }
    let stdout = std::io::stdout();
    loop {
        let n = match client.notification().await {
            Ok(Some(n)) => n,
            Ok(None) => {
                eprintln!("the daemon closed the connection");
                return Ok(0);
            }
            Err(ClientError::Io(e)) => return Err(e).context("reading events"),
            Err(e) => return Err(e.into()),
        };
        let mut out = stdout.lock();
        if writeln!(out, "{n}").and_then(|()| out.flush()).is_err() {
            // The reader went away (`peerpool events | head`): nothing left to do.
            return Ok(0);
        }
        if n["method"] == peerpool_rpc::events::LAGGED {
            eprintln!(
                "dropped by the daemon: fell behind by {} events",
                n["params"]["missed"]
            );
            return Ok(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_subscribe_parameters() {
        let p = filters(&[
            "events=peer_joined,peer_message".into(),
            "commands=inv".into(),
            "peers=1,2".into(),
            "peers=3".into(),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(p),
            json!({"events": ["peer_joined", "peer_message"], "commands": ["inv"], "peers": [1, 2, 3]})
        );
        assert!(filters(&["colour=red".into()]).is_err());
        assert!(filters(&["peers=x".into()]).is_err());
        assert!(filters(&["events".into()]).is_err());
    }

    #[test]
    fn the_config_file_has_the_admin_keys() {
        let file: FileConfig =
            toml::from_str("admin-bind = [\"127.0.0.1:0\"]\nno-admin = false\n").unwrap();
        assert_eq!(file.admin_bind, Some(vec!["127.0.0.1:0".to_string()]));
        assert_eq!(file.no_admin, Some(false));
        assert!(toml::from_str::<FileConfig>("admin-bind = \"x\"").is_err());
    }

    #[tokio::test]
    async fn admin_bind_takes_the_default_port() {
        let resolve = |spec| socket_addr(spec, DEFAULT_PORT);
        assert_eq!(resolve("127.0.0.1").await.unwrap().port(), DEFAULT_PORT);
        assert_eq!(resolve("[::1]:9").await.unwrap().port(), 9);
    }
}
