//! The daemon's Bitcoin Core-compatible RPC server flags, and `peerpool rpc`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use peerpool_rpc::node::deprecated::{Deprecated, Deprecation};
use peerpool_rpc::node::serde_json::{self, Map, Value};
use peerpool_rpc::node::{auth, client, default_port, Config, Credentials, RpcAuth, Server};

use crate::cli::socket_addr;
use crate::config::{pick, pick_list, FileConfig};
use peerpool_core::pool::banman::Subnet;

/// `peerpool run`'s flags for the RPC server.
#[derive(Args, Debug, Default)]
#[group(id = "rpc-server")]
pub struct ServerArgs {
    /// Serve JSON-RPC on this address (repeatable). Default: 127.0.0.1 and [::1] on the
    /// chain's RPC port (8332 on mainnet, 18443 on regtest, as Bitcoin Core).
    #[arg(long, value_name = "ADDR")]
    rpc_bind: Vec<String>,
    /// Admit RPC clients from this subnet besides loopback (repeatable; an address, a
    /// network/CIDR such as 10.0.0.0/8, or a network/netmask; Bitcoin Core's rpcallowip).
    /// Required for an --rpc-bind address that is not loopback.
    #[arg(long, value_name = "SUBNET")]
    rpc_allow_ip: Vec<String>,
    /// RPC user name; with --rpc-password, replaces the cookie file.
    #[arg(long, value_name = "USER", requires = "rpc_password")]
    rpc_user: Option<String>,
    /// RPC password.
    #[arg(long, value_name = "PASSWORD", requires = "rpc_user")]
    rpc_password: Option<String>,
    /// A salted credential, USER:SALT$HMAC-SHA256-HEX as Bitcoin Core's rpcauth.py prints
    /// it (repeatable).
    #[arg(long, value_name = "ENTRY")]
    rpcauth: Vec<String>,
    /// Answer requests that say "jsonrpc": "2.0" with JSON-RPC 2.0 replies, as Bitcoin Core
    /// 28 and later (the default). --rpc-strict-jsonrpc2=false gives every request the older
    /// replies, for clients that say "2.0" yet read replies the old way.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    rpc_strict_jsonrpc2: Option<bool>,
    /// Give back a result shape Bitcoin Core has since changed, as Core's -deprecatedrpc
    /// (repeatable): `warnings` (getnetworkinfo's warnings as a string, as before Core 28),
    /// `startingheight` (accepted; getpeerinfo always has it).
    #[arg(long, value_name = "NAME")]
    deprecatedrpc: Vec<String>,
}

impl ServerArgs {
    /// Starts the RPC server for `daemon` (flags over `file`). The server runs until the
    /// returned value is dropped or the daemon shuts down.
    pub async fn start(
        &self,
        file: &FileConfig,
        daemon: &peerpool_rpc::Daemon,
    ) -> anyhow::Result<Option<Server>> {
        let port = default_port(&daemon.chain.name);
        let specs = pick_list(&self.rpc_bind, &file.rpc_bind);
        let mut bind = Vec::new();
        for spec in &specs {
            bind.push(
                socket_addr(spec, port)
                    .await
                    .with_context(|| format!("--rpc-bind {spec:?}"))?,
            );
        }
        if bind.is_empty() {
            bind.push(SocketAddr::from(([127, 0, 0, 1], port)));
            bind.push(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
        }
        let mut allow = Vec::new();
        for spec in pick_list(&self.rpc_allow_ip, &file.rpc_allow_ip) {
            let subnet = spec.parse::<Subnet>().map_err(|e| {
                anyhow::anyhow!(
                    "invalid --rpc-allow-ip {spec:?}: {e}; valid values are a single IP \
                     (1.2.3.4), a network/CIDR (1.2.3.0/24), a network/netmask \
                     (1.2.3.0/255.255.255.0), all IPv4 (0.0.0.0/0) or all IPv6 (::/0)"
                )
            })?;
            if subnet.prefix().is_none() {
                bail!("invalid --rpc-allow-ip {spec:?}: RPC clients connect over IP only");
            }
            allow.push(subnet);
        }
        // Only loopback clients could use a listener elsewhere (the others get 403): that is
        // a mistake worth stopping for, where Bitcoin Core falls back to loopback silently.
        if allow.is_empty() {
            if let Some(open) = bind.iter().find(|a| !a.ip().is_loopback()) {
                bail!(
                    "--rpc-bind {open} is not a loopback address, and only loopback clients are \
                     admitted: give --rpc-allow-ip SUBNET for the clients to admit"
                );
            }
        }
        let user = pick(self.rpc_user.clone(), file.rpc_user.clone());
        let password = pick(self.rpc_password.clone(), file.rpc_password.clone());
        let mut credentials = Credentials::default();
        match (&user, &password) {
            (Some(u), Some(p)) => credentials = credentials.with_password(u, p),
            (None, None) => {}
            _ => bail!("rpc-user and rpc-password go together"),
        }
        for entry in pick_list(&self.rpcauth, &file.rpcauth) {
            credentials = credentials.with_rpcauth(RpcAuth::parse(&entry)?);
        }
        let mut config = Config::new(Vec::new(), credentials);
        config.allow = allow;
        // As Bitcoin Core: the cookie unless a password is configured.
        if password.is_none() {
            config.cookie_dir = daemon.data_dir.clone();
        }
        config.strict_jsonrpc2 = self
            .rpc_strict_jsonrpc2
            .or(file.rpc_strict_jsonrpc2)
            .unwrap_or(true);
        let mut deprecated = Vec::new();
        for name in pick_list(&self.deprecatedrpc, &file.deprecatedrpc) {
            deprecated.push(name.parse::<Deprecation>()?);
        }
        config.deprecated = Deprecated::new(deprecated);
        let mut listeners = Vec::new();
        for addr in &bind {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => listeners.push(l),
                // The defaults are optional: [::1] on hosts without IPv6, and see below.
                Err(e) if specs.is_empty() => {
                    tracing::debug!("binding RPC listener on {addr}: {e}")
                }
                Err(e) => return Err(e).with_context(|| format!("binding RPC listener on {addr}")),
            }
        }
        if listeners.is_empty() {
            // Only the default addresses were tried (a given --rpc-bind that fails is an
            // error above): another daemon on this host holds the chain's RPC port. The P2P
            // side does not need the RPC server, so it runs without one.
            tracing::warn!(
                "RPC server not started: port {port} on localhost is taken (see --rpc-bind)"
            );
            return Ok(None);
        }
        let server = Server::start_on(config, daemon.clone(), listeners).await?;
        Ok(Some(server))
    }
}

/// Whose credentials a client of the daemon uses: given ones, or the cookie of the daemon's
/// data directory for the chain.
#[derive(Args, Debug)]
pub struct CredentialArgs {
    #[command(flatten)]
    pub chain: crate::cli::ChainArgs,
    /// Data directory of the daemon, for its cookie file. Default: ~/.peerpool
    #[arg(long, value_name = "DIR")]
    datadir: Option<PathBuf>,
    /// RPC user name (default: the cookie's).
    #[arg(long, value_name = "USER")]
    rpc_user: Option<String>,
    /// RPC password (default: the cookie's).
    #[arg(long, value_name = "PASSWORD")]
    rpc_password: Option<String>,
}

impl CredentialArgs {
    /// The chain's directory in the daemon's data directory, where the cookie is.
    pub fn chain_dir(&self) -> anyhow::Result<PathBuf> {
        let chain = self.chain.params()?;
        let base = match &self.datadir {
            Some(d) => d.clone(),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".peerpool"),
        };
        Ok(match chain.name.as_str() {
            "main" => base,
            "test" => base.join("testnet3"),
            other => base.join(other),
        })
    }

    /// `(user, password)`: the ones given, else the cookie's; `None` when neither is there.
    pub fn find(&self) -> anyhow::Result<Option<(String, String)>> {
        if let (Some(u), Some(p)) = (&self.rpc_user, &self.rpc_password) {
            return Ok(Some((u.clone(), p.clone())));
        }
        Ok(auth::read_cookie(&self.chain_dir()?.join(auth::COOKIE_FILE)).ok())
    }
}

/// `peerpool rpc METHOD [ARGS...]`.
#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    credentials: CredentialArgs,
    /// The server: HOST or HOST:PORT. Default: 127.0.0.1 on the chain's RPC port.
    #[arg(long, value_name = "ADDR")]
    rpc_connect: Option<String>,
    /// Pass arguments by name, as NAME=VALUE (bitcoin-cli's -named, also accepted).
    #[arg(long)]
    named: bool,
    /// The method, then its arguments: each is parsed as JSON when it is valid JSON, else
    /// taken as a string.
    #[arg(
        value_name = "METHOD [ARGS]",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    words: Vec<String>,
}

/// One argument: JSON when it parses, a string otherwise.
fn parse_arg(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

/// What the shell sees of Bitcoin Core's exit code for an RPC error: its absolute value,
/// truncated to a byte by the OS.
fn exit_code(code: i64) -> u8 {
    (code.unsigned_abs() % 256) as u8
}

/// Runs `peerpool rpc`; returns the process exit code.
pub async fn client(args: ClientArgs) -> anyhow::Result<u8> {
    let mut words = args.words.as_slice();
    let mut named = args.named;
    while let Some(first) = words.first() {
        if first == "-named" || first == "--named" {
            named = true;
            words = &words[1..];
        } else {
            break;
        }
    }
    let Some((method, rest)) = words.split_first() else {
        bail!("no method given");
    };
    let params = if named {
        // As bitcoin-cli: NAME=VALUE words are named, the others positional, sent as "args".
        let mut map = Map::new();
        let mut positional = Vec::new();
        for w in rest {
            match w.split_once('=') {
                Some((k, v)) => {
                    map.insert(k.to_owned(), parse_arg(v));
                }
                None => positional.push(parse_arg(w)),
            }
        }
        if !positional.is_empty() && !map.contains_key("args") {
            map.insert("args".to_owned(), Value::Array(positional));
        }
        Value::Object(map)
    } else {
        Value::Array(rest.iter().map(|s| parse_arg(s)).collect())
    };
    let chain = args.credentials.chain.params()?;
    let port = default_port(&chain.name);
    let target = args
        .rpc_connect
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{port}"));
    let addr = socket_addr(&target, port)
        .await
        .with_context(|| format!("--rpc-connect {target:?}"))?;
    let (user, password) = match args.credentials.find()? {
        Some(c) => c,
        None => {
            eprintln!(
                "error: Could not locate RPC credentials. No authentication cookie could \
                 be found in {}, and no --rpc-user/--rpc-password were given.",
                args.credentials.chain_dir()?.display()
            );
            return Ok(1);
        }
    };
    let mut conn = match client::Client::connect(addr, Some((&user, &password))).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: Could not connect to the server {addr} ({e})\n\nMake sure the peerpool \
                 daemon is running and that you are connecting to the correct RPC port."
            );
            return Ok(1);
        }
    };
    let reply = match conn.call(method, params).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: no answer from {addr}: {e}");
            return Ok(1);
        }
    };
    if reply.status.as_u16() == 401 {
        eprintln!("error: Authorization failed: Incorrect rpcuser or rpcpassword");
        return Ok(1);
    }
    let Ok(body) = reply.json() else {
        eprintln!(
            "error: server returned HTTP error {}",
            reply.status.as_u16()
        );
        return Ok(1);
    };
    match &body["error"] {
        Value::Null => {}
        err => {
            let code = err["code"].as_i64().unwrap_or(-1);
            let message = err["message"].as_str().unwrap_or_default();
            eprintln!("error code: {code}\nerror message:\n{message}");
            return Ok(exit_code(code));
        }
    }
    match &body["result"] {
        Value::Null => {}
        Value::String(s) => println!("{s}"),
        other => println!("{}", serde_json::to_string_pretty(other)?),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_json_when_they_parse() {
        assert_eq!(parse_arg("5"), Value::from(5));
        assert_eq!(parse_arg("true"), Value::Bool(true));
        assert_eq!(parse_arg("add"), Value::String("add".into()));
        assert_eq!(
            parse_arg("127.0.0.1:8333"),
            Value::String("127.0.0.1:8333".into())
        );
        assert_eq!(parse_arg("[1,2]"), serde_json::json!([1, 2]));
        assert_eq!(exit_code(-24), 24);
        assert_eq!(exit_code(-32601), (32601 % 256) as u8);
    }
}
