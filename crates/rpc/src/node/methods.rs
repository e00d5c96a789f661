//! The methods: Bitcoin Core's names, parameters and result shapes, each over the pool's
//! [`PoolHandle`](peerpool_net::pool::PoolHandle).

use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::ServiceFlags;
use peerpool_core::addr::{AddrSpec, NetAddr, Network};
use peerpool_core::peer::PeerConfig;
use peerpool_net::pool::{AddTried, ConnKind, PeerDetails, Subnet};
use peerpool_net::Direction;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::Context;
use crate::error::{self, RpcError};

/// How long `setban add` bans without a `bantime`. Bitcoin Core: `DEFAULT_MISBEHAVING_BANTIME`
/// (24 hours).
pub const DEFAULT_BANTIME: Duration = Duration::from_secs(24 * 60 * 60);

/// One parameter of a method.
struct Arg {
    name: &'static str,
    required: bool,
}

const fn req(name: &'static str) -> Arg {
    Arg {
        name,
        required: true,
    }
}

const fn opt(name: &'static str) -> Arg {
    Arg {
        name,
        required: false,
    }
}

/// A method's signature and help.
struct Method {
    name: &'static str,
    category: &'static str,
    args: &'static [Arg],
    /// The first help line: the call's shape.
    usage: &'static str,
    /// The rest of the help text.
    help: &'static str,
}

impl Method {
    fn help_text(&self) -> String {
        format!("{}\n\n{}", self.usage, self.help.trim_end())
    }
}

/// Every method, in `help`'s order.
static METHODS: &[Method] = &[
    Method {
        name: "getpeerinfo",
        category: "Network",
        args: &[],
        usage: "getpeerinfo",
        help: "Lists every connection with its statistics, one object per peer.\n\n\
Times are seconds since the UNIX epoch; ping times are in seconds, with decimals, and left\n\
out while unknown. Fields: id, addr, addrbind, addrlocal, network, services (hex),\n\
servicesnames, relaytxes, lastsend, lastrecv, last_transaction, last_block, bytessent,\n\
bytesrecv, conntime, timeoffset, pingtime, minping, pingwait, version, subver, inbound,\n\
bip152_hb_to, bip152_hb_from, addnode, startingheight, presynced_headers, banscore,\n\
synced_headers, synced_blocks, inflight, whitelisted, addr_relay_enabled, permissions,\n\
minfeefilter, bytessent_per_msg, bytesrecv_per_msg, connection_type,\n\
transport_protocol_type, session_id.\n",
    },
    Method {
        name: "addnode",
        category: "Network",
        args: &[req("node"), req("command"), opt("v2transport")],
        usage: "addnode \"node\" \"command\" ( v2transport )",
        help: "Adds a peer to keep connected, removes one, or connects to one once.\n\n\
Arguments:\n\
1. node       (string, required) IP:PORT, [IPv6]:PORT or NAME.onion:PORT (the chain's port if left out)\n\
2. command    (string, required) 'add' to keep it connected, 'remove' to stop, 'onetry' to connect once\n\
3. v2transport (boolean, optional) not supported: must be false\n\n\
Result: null\n",
    },
    Method {
        name: "getaddednodeinfo",
        category: "Network",
        args: &[opt("node")],
        usage: "getaddednodeinfo ( \"node\" )",
        help: "Lists the peers added with addnode (or only the given one) and whether each is connected.\n\n\
Result: [ { \"addednode\": str, \"connected\": bool, \"addresses\": [ { \"address\": str, \"connected\": \"outbound\" } ] } ]\n",
    },
    Method {
        name: "disconnectnode",
        category: "Network",
        args: &[opt("address"), opt("nodeid")],
        usage: "disconnectnode ( \"address\" nodeid )",
        help: "Disconnects a peer, by address or by the id getpeerinfo shows (give exactly one).\n\n\
Result: null\n",
    },
    Method {
        name: "getconnectioncount",
        category: "Network",
        args: &[],
        usage: "getconnectioncount",
        help: "The number of connections.\n\nResult: n (numeric)\n",
    },
    Method {
        name: "getnettotals",
        category: "Network",
        args: &[],
        usage: "getnettotals",
        help: "Bytes sent and received since start, over all connections, and the time.\n\n\
Result: { \"totalbytesrecv\": n, \"totalbytessent\": n, \"timemillis\": n, \"uploadtarget\": {...} }\n",
    },
    Method {
        name: "getnetworkinfo",
        category: "Network",
        args: &[],
        usage: "getnetworkinfo",
        help: "The node's P2P state: version, user agent, services, connections, networks, local addresses.\n",
    },
    Method {
        name: "ping",
        category: "Network",
        args: &[],
        usage: "ping",
        help: "Sends a ping to every peer that completed the handshake.\n\nResult: null\n",
    },
    Method {
        name: "setban",
        category: "Network",
        args: &[req("subnet"), req("command"), opt("bantime"), opt("absolute")],
        usage: "setban \"subnet\" \"command\" ( bantime absolute )",
        help: "Bans an IP or subnet (disconnecting its peers) or lifts a ban.\n\n\
Arguments:\n\
1. subnet   (string, required) an IP (1.2.3.4) or subnet (1.2.3.0/24, 1.2.3.0/255.255.255.0)\n\
2. command  (string, required) 'add' or 'remove'\n\
3. bantime  (numeric, optional, default 86400) seconds, or with absolute a UNIX time\n\
4. absolute (boolean, optional, default false)\n\n\
Result: null\n",
    },
    Method {
        name: "listbanned",
        category: "Network",
        args: &[],
        usage: "listbanned",
        help: "Lists the bans in force.\n\n\
Result: [ { \"address\": str, \"ban_created\": n, \"banned_until\": n, \"ban_duration\": n, \"time_remaining\": n } ]\n",
    },
    Method {
        name: "clearbanned",
        category: "Network",
        args: &[],
        usage: "clearbanned",
        help: "Lifts every ban.\n\nResult: null\n",
    },
    Method {
        name: "getnodeaddresses",
        category: "Network",
        args: &[opt("count"), opt("network")],
        usage: "getnodeaddresses ( count \"network\" )",
        help: "A random sample of the address book.\n\n\
Arguments:\n\
1. count   (numeric, optional, default 1) how many; 0 for all\n\
2. network (string, optional) only this network: ipv4, ipv6, onion, i2p, cjdns\n\n\
Result: [ { \"time\": n, \"services\": n, \"address\": str, \"port\": n, \"network\": str } ]\n",
    },
    Method {
        name: "addpeeraddress",
        category: "Hidden",
        args: &[req("address"), req("port"), opt("tried")],
        usage: "addpeeraddress \"address\" port ( tried )",
        help: "Adds an address to the address book, as if it had announced itself (for tests).\n\
With tried, it is also marked as connected once, which moves it to the tried table.\n\n\
Result: { \"success\": bool, \"error\": str (when it failed: failed-adding-to-new or failed-adding-to-tried) }\n",
    },
    Method {
        name: "setnetworkactive",
        category: "Network",
        args: &[req("state")],
        usage: "setnetworkactive state",
        help: "Turns all P2P activity off (every peer disconnected, no dial, no inbound) or back on.\n\n\
Result: bool, the new state\n",
    },
    Method {
        name: "getaddrmaninfo",
        category: "Network",
        args: &[],
        usage: "getaddrmaninfo",
        help: "The address book's counts per network and table.\n\n\
Result: { \"ipv4\": { \"new\": n, \"tried\": n, \"total\": n }, ..., \"all_networks\": {...} }\n",
    },
    Method {
        name: "uptime",
        category: "Control",
        args: &[],
        usage: "uptime",
        help: "Seconds since the daemon started.\n",
    },
    Method {
        name: "help",
        category: "Control",
        args: &[opt("command")],
        usage: "help ( \"command\" )",
        help: "Lists the methods, or shows the help of one.\n",
    },
    Method {
        name: "stop",
        category: "Control",
        args: &[],
        usage: "stop",
        help: "Stops the daemon.\n",
    },
];

fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// Whether `name` is a method (for metrics labels: unknown names are not recorded as such,
/// so a client cannot grow the label set).
pub(crate) fn exists(name: &str) -> bool {
    find(name).is_some()
}

/// Turns `params` (absent, positional or named) into positional arguments.
fn positional(m: &Method, params: Value) -> Result<Vec<Value>, RpcError> {
    let mut args = match params {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        Value::Object(mut named) => {
            // Positional arguments may come along as "args" (bitcoin-cli -named with words
            // that have no '='); named ones fill the places after them, as Bitcoin Core.
            let leading = match named.remove("args") {
                Some(Value::Array(a)) => a,
                Some(other) => {
                    named.insert("args".to_owned(), other);
                    Vec::new()
                }
                None => Vec::new(),
            };
            let mut out = vec![Value::Null; m.args.len()];
            let mut first_named: Option<usize> = None;
            for (k, v) in named {
                let i = m.args.iter().position(|a| a.name == k).ok_or_else(|| {
                    RpcError::invalid_parameter(format!("Unknown named parameter {k}"))
                })?;
                first_named = Some(first_named.map_or(i, |f| f.min(i)));
                out[i] = v;
            }
            if let Some(f) = first_named.filter(|f| leading.len() > *f) {
                return Err(RpcError::invalid_parameter(format!(
                    "Parameter {} specified twice both as positional and named argument",
                    m.args[f].name
                )));
            }
            let mut all = leading;
            if all.len() < out.len() {
                all.extend(out.drain(all.len()..));
            }
            all
        }
        _ => {
            return Err(RpcError::new(
                error::INVALID_REQUEST,
                "Params must be an array or object",
            ))
        }
    };
    while args.last().is_some_and(Value::is_null) {
        args.pop();
    }
    let required = m.args.iter().filter(|a| a.required).count();
    if args.len() > m.args.len() || args.len() < required {
        // Bitcoin Core answers a wrong argument count with the method's help.
        return Err(RpcError::new(error::MISC_ERROR, m.help_text()));
    }
    Ok(args)
}

fn arg(args: &[Value], i: usize) -> Option<&Value> {
    args.get(i).filter(|v| !v.is_null())
}

fn str_arg(args: &[Value], i: usize) -> Result<Option<&str>, RpcError> {
    match arg(args, i) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(RpcError::type_error(v, "string")),
    }
}

fn int_arg(args: &[Value], i: usize) -> Result<Option<i64>, RpcError> {
    match arg(args, i) {
        None => Ok(None),
        Some(v @ Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| RpcError::type_error(v, "integer")),
        Some(v) => Err(RpcError::type_error(v, "number")),
    }
}

fn bool_arg(args: &[Value], i: usize) -> Result<Option<bool>, RpcError> {
    match arg(args, i) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(RpcError::type_error(v, "bool")),
    }
}

/// A method's result: a JSON value, or JSON text already written (`getpeerinfo`, whose
/// result for thousands of peers is serialized straight from the statistics rather than
/// through a tree of values).
pub(crate) enum Output {
    /// A value.
    Value(Value),
    /// Serialized JSON.
    Text(String),
}

impl Output {
    /// The result as JSON text.
    pub(crate) fn into_text(self) -> String {
        match self {
            // A tree of values always serializes.
            Output::Value(v) => to_text(&v).unwrap_or_else(|_| "null".to_owned()),
            Output::Text(t) => t,
        }
    }
}

/// Writes decimals in plain notation (`0.00000097`, never `9.7e-7`): Bitcoin Core writes
/// amounts such as `minfeefilter` that way, and scripts compare them as text or read them
/// with decimal types that reject exponents.
struct PlainDecimals;

impl serde_json::ser::Formatter for PlainDecimals {
    fn write_f64<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        value: f64,
    ) -> std::io::Result<()> {
        // `Display` of a float never uses an exponent and round-trips.
        let text = value.to_string();
        w.write_all(text.as_bytes())?;
        if !text.contains('.') {
            w.write_all(b".0")?;
        }
        Ok(())
    }

    fn write_f32<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        value: f32,
    ) -> std::io::Result<()> {
        self.write_f64(w, f64::from(value))
    }
}

/// `value` as JSON text, decimals in plain notation (see [`PlainDecimals`]).
pub(crate) fn to_text<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PlainDecimals);
    value.serialize(&mut ser)?;
    // The serializer writes UTF-8 only.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs `method` with `params`.
pub(crate) async fn call(ctx: &Context, method: &str, params: Value) -> Result<Output, RpcError> {
    if method == "getpeerinfo" {
        if let Some(m) = find(method) {
            positional(m, params)?;
        }
        let details = ctx.daemon.pool.peer_details().await?;
        let rows: Vec<PeerRow<'_>> = details.iter().filter_map(PeerRow::of).collect();
        return to_text(&rows)
            .map(Output::Text)
            .map_err(|e| RpcError::new(error::INTERNAL_ERROR, e.to_string()));
    }
    call_value(ctx, method, params).await.map(Output::Value)
}

async fn call_value(ctx: &Context, method: &str, params: Value) -> Result<Value, RpcError> {
    let m =
        find(method).ok_or_else(|| RpcError::new(error::METHOD_NOT_FOUND, "Method not found"))?;
    let args = positional(m, params)?;
    let pool = &ctx.daemon.pool;
    match m.name {
        "addnode" => addnode(ctx, m, &args).await,
        "getaddednodeinfo" => getaddednodeinfo(ctx, &args).await,
        "disconnectnode" => disconnectnode(ctx, &args).await,
        "getconnectioncount" => Ok(json!(connections(ctx).await?.len())),
        "getnettotals" => {
            let t = pool.net_totals().await?;
            Ok(json!({
                "totalbytesrecv": t.bytes_recv,
                "totalbytessent": t.bytes_sent,
                "timemillis": now_millis(),
                "uploadtarget": {
                    "timeframe": 86400,
                    "target": 0,
                    "target_reached": false,
                    "serve_historical_blocks": true,
                    "bytes_left_in_cycle": 0,
                    "time_left_in_cycle": 0,
                },
            }))
        }
        "getnetworkinfo" => getnetworkinfo(ctx).await,
        "ping" => {
            pool.ping_all().await?;
            Ok(Value::Null)
        }
        "setban" => setban(ctx, m, &args).await,
        "listbanned" => {
            let now = now_secs();
            let bans = pool.list_bans().await?;
            Ok(Value::Array(
                bans.iter()
                    .map(|b| {
                        let created = b.created.as_secs();
                        let until = b.until.as_secs();
                        json!({
                            "address": b.subnet.to_string(),
                            "ban_created": created,
                            "banned_until": until,
                            "ban_duration": until.saturating_sub(created),
                            "time_remaining": until.saturating_sub(now),
                        })
                    })
                    .collect(),
            ))
        }
        "clearbanned" => {
            pool.clear_bans().await?;
            Ok(Value::Null)
        }
        "getnodeaddresses" => getnodeaddresses(ctx, &args).await,
        "addpeeraddress" => addpeeraddress(ctx, &args).await,
        "setnetworkactive" => {
            let state = bool_arg(&args, 0)?
                .ok_or_else(|| RpcError::new(error::MISC_ERROR, m.help_text()))?;
            pool.set_network_active(state).await?;
            Ok(json!(pool.network_active().await?))
        }
        "getaddrmaninfo" => {
            let info = pool.addrman_info().await?;
            let mut out = Map::new();
            for (net, c) in &info.networks {
                out.insert(
                    net.as_str().to_owned(),
                    json!({"new": c.new, "tried": c.tried, "total": c.total()}),
                );
            }
            let t = info.total;
            out.insert(
                "all_networks".to_owned(),
                json!({"new": t.new, "tried": t.tried, "total": t.total()}),
            );
            Ok(Value::Object(out))
        }
        "uptime" => Ok(json!(SystemTime::now()
            .duration_since(ctx.daemon.started)
            .unwrap_or_default()
            .as_secs())),
        "help" => help(str_arg(&args, 0)?),
        "stop" => {
            let token = ctx.daemon.shutdown.clone();
            // The reply goes out before the daemon starts closing: a short grace lets it be
            // written on this connection.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                token.cancel();
            });
            Ok(json!("peerpool stopping"))
        }
        other => Err(RpcError::new(
            error::INTERNAL_ERROR,
            format!("method {other} has no implementation"),
        )),
    }
}

fn help(command: Option<&str>) -> Result<Value, RpcError> {
    if let Some(name) = command {
        return Ok(match find(name) {
            Some(m) => json!(m.help_text()),
            None => json!(format!("help: unknown command: {name}")),
        });
    }
    let mut out = String::new();
    let mut category = "";
    for m in METHODS.iter().filter(|m| m.category != "Hidden") {
        if m.category != category {
            if !category.is_empty() {
                out.push('\n');
            }
            category = m.category;
            out.push_str(&format!("== {category} ==\n"));
        }
        out.push_str(m.usage);
        out.push('\n');
    }
    Ok(json!(out.trim_end()))
}

/// Connections that have statistics: the ones `getpeerinfo` lists.
async fn connections(ctx: &Context) -> Result<Vec<PeerDetails>, RpcError> {
    let mut d = ctx.daemon.pool.peer_details().await?;
    d.retain(|p| p.stats.is_some());
    Ok(d)
}

/// A node address as `addnode` and `disconnectnode` take it; the chain's port when none.
/// Host names are refused: the pool dials addresses. So is port 0 outside I2P, where no peer
/// can listen.
fn parse_node(ctx: &Context, s: &str) -> Option<NetAddr> {
    AddrSpec::parse(s, ctx.daemon.chain.default_port)
        .ok()?
        .addr()
        .filter(|a| a.port != 0 || a.network() == Network::I2p)
}

async fn addnode(ctx: &Context, m: &Method, args: &[Value]) -> Result<Value, RpcError> {
    let node = str_arg(args, 0)?.unwrap_or_default();
    let command = str_arg(args, 1)?.unwrap_or_default();
    if !matches!(command, "add" | "remove" | "onetry") {
        return Err(RpcError::new(error::MISC_ERROR, m.help_text()));
    }
    if bool_arg(args, 2)? == Some(true) {
        return Err(RpcError::invalid_parameter(
            "Error: v2transport requested but not enabled",
        ));
    }
    let addr = parse_node(ctx, node).ok_or_else(|| {
        RpcError::invalid_parameter(format!("Error: Invalid node address {node:?}"))
    })?;
    let pool = &ctx.daemon.pool;
    match command {
        "onetry" => pool.connect(addr).await?,
        "add" => pool.add_node(addr).await?,
        _ => pool.remove_node(addr).await?,
    }
    Ok(Value::Null)
}

async fn getaddednodeinfo(ctx: &Context, args: &[Value]) -> Result<Value, RpcError> {
    let wanted = match str_arg(args, 0)? {
        Some(s) => Some(parse_node(ctx, s).ok_or_else(not_added)?),
        None => None,
    };
    let added = ctx.daemon.pool.added_nodes().await?;
    let peers = connections(ctx).await?;
    let mut out = Vec::new();
    for node in added
        .iter()
        .filter(|n| wanted.map_or(true, |w| w == n.addr))
    {
        let conn = peers
            .iter()
            .find(|p| p.addr == node.addr && p.direction == Direction::Outbound);
        let mut entry = json!({
            "addednode": node.addr.to_string(),
            "connected": conn.is_some(),
        });
        if let Some(p) = conn {
            entry["addresses"] =
                json!([{ "address": p.addr.to_string(), "connected": "outbound" }]);
        } else {
            entry["addresses"] = json!([]);
        }
        out.push(entry);
    }
    if wanted.is_some() && out.is_empty() {
        return Err(not_added());
    }
    Ok(Value::Array(out))
}

fn not_added() -> RpcError {
    RpcError::new(error::NODE_NOT_ADDED, "Error: Node has not been added.")
}

async fn disconnectnode(ctx: &Context, args: &[Value]) -> Result<Value, RpcError> {
    let address = str_arg(args, 0)?;
    let nodeid = int_arg(args, 1)?;
    let not_found = || {
        RpcError::new(
            error::NODE_NOT_CONNECTED,
            "Node not found in connected nodes",
        )
    };
    let pool = &ctx.daemon.pool;
    // Bitcoin Core's cases: an address alone (even "", which matches nobody), or a node id
    // with no address or an empty one; anything else is invalid parameters.
    match (address, nodeid) {
        (Some(a), None) => {
            let addr = parse_node(ctx, a).ok_or_else(not_found)?;
            pool.disconnect_addr(addr).await?;
        }
        (None | Some(""), Some(id)) => {
            let id = u64::try_from(id).map_err(|_| not_found())?;
            pool.disconnect_peer(peerpool_net::PeerId(id)).await?;
        }
        _ => {
            return Err(RpcError::new(
                error::INVALID_PARAMS,
                "Only one of address and nodeid should be provided.",
            ))
        }
    }
    Ok(Value::Null)
}

async fn setban(ctx: &Context, m: &Method, args: &[Value]) -> Result<Value, RpcError> {
    let spec = str_arg(args, 0)?.unwrap_or_default();
    let command = str_arg(args, 1)?.unwrap_or_default();
    if !matches!(command, "add" | "remove") {
        return Err(RpcError::new(error::MISC_ERROR, m.help_text()));
    }
    let subnet = Subnet::from_str(spec)
        .map_err(|_| RpcError::new(error::INVALID_IP_OR_SUBNET, "Error: Invalid IP/Subnet"))?;
    let pool = &ctx.daemon.pool;
    if command == "remove" {
        if !pool.unban(subnet).await? {
            return Err(RpcError::new(
                error::INVALID_IP_OR_SUBNET,
                "Error: Unban failed. Requested address/subnet was not previously manually banned.",
            ));
        }
        return Ok(Value::Null);
    }
    let bantime = int_arg(args, 2)?.unwrap_or(0);
    let absolute = bool_arg(args, 3)?.unwrap_or(false);
    let duration = if absolute {
        let left = bantime - now_secs() as i64;
        if left < 0 {
            return Err(RpcError::invalid_parameter(
                "Error: Absolute timestamp is in the past",
            ));
        }
        Duration::from_secs(left as u64)
    } else if bantime > 0 {
        Duration::from_secs(bantime as u64)
    } else {
        DEFAULT_BANTIME
    };
    // Already banned, as Bitcoin Core decides it: a subnet by an identical ban, a single
    // address by any ban holding it.
    let host = subnet
        .network()
        .filter(|_| subnet.is_single_host())
        .map(peerpool_core::addr::Host::from_ip);
    if pool
        .list_bans()
        .await?
        .iter()
        .any(|b| b.subnet == subnet || host.as_ref().is_some_and(|h| b.subnet.contains(h)))
    {
        return Err(RpcError::new(
            error::NODE_ALREADY_ADDED,
            "Error: IP/Subnet already banned",
        ));
    }
    pool.ban(subnet, duration).await?;
    Ok(Value::Null)
}

fn parse_network(s: &str) -> Option<Network> {
    Network::ALL
        .into_iter()
        .find(|n| n.as_str() == s.to_ascii_lowercase())
}

async fn getnodeaddresses(ctx: &Context, args: &[Value]) -> Result<Value, RpcError> {
    let count = int_arg(args, 0)?.unwrap_or(1);
    if count < 0 {
        return Err(RpcError::invalid_parameter("Address count out of range"));
    }
    let network =
        match str_arg(args, 1)? {
            Some(s) => Some(parse_network(s).ok_or_else(|| {
                RpcError::invalid_parameter(format!("Network not recognized: {s}"))
            })?),
            None => None,
        };
    let list = ctx
        .daemon
        .pool
        .node_addresses(usize::try_from(count).unwrap_or(usize::MAX), network)
        .await?;
    Ok(Value::Array(
        list.iter()
            .map(|e| {
                json!({
                    "time": e.last_seen.as_secs(),
                    "services": e.services.to_u64(),
                    "address": host_string(&e.addr),
                    "port": e.addr.port,
                    "network": e.addr.network().as_str(),
                })
            })
            .collect(),
    ))
}

/// The host alone, as `getnodeaddresses` shows it (IPv6 without brackets).
fn host_string(a: &NetAddr) -> String {
    match a.to_socket() {
        Some(sa) => sa.ip().to_string(),
        None => a.host.to_string(),
    }
}

async fn addpeeraddress(ctx: &Context, args: &[Value]) -> Result<Value, RpcError> {
    let address = str_arg(args, 0)?.unwrap_or_default();
    let port = int_arg(args, 1)?.unwrap_or(0);
    let port =
        u16::try_from(port).map_err(|_| RpcError::invalid_parameter("Error: port out of range"))?;
    let tried = bool_arg(args, 2)?.unwrap_or(false);
    let addr = match IpAddr::from_str(address) {
        Ok(ip) => Some(NetAddr::from_socket((ip, port).into())),
        Err(_) => NetAddr::from_str(&format!("{address}:{port}")).ok(),
    };
    let Some(addr) = addr else {
        return Err(RpcError::new(
            error::INVALID_IP_OR_SUBNET,
            "Invalid IP address",
        ));
    };
    let pool = &ctx.daemon.pool;
    let outcome = if tried {
        pool.add_tried_address(addr).await?
    } else if pool.add_addresses(vec![addr]).await? > 0 {
        AddTried::Tried
    } else {
        AddTried::NotAdded
    };
    // Bitcoin Core's shape: `success`, with `error` saying which step failed.
    Ok(match outcome {
        AddTried::Tried => json!({ "success": true }),
        AddTried::NotAdded => json!({ "error": "failed-adding-to-new", "success": false }),
        AddTried::NotTried => json!({ "error": "failed-adding-to-tried", "success": false }),
    })
}

async fn getnetworkinfo(ctx: &Context) -> Result<Value, RpcError> {
    let d = &ctx.daemon;
    let peers = connections(ctx).await?;
    let inbound = peers
        .iter()
        .filter(|p| p.direction == Direction::Inbound)
        .count();
    let services = PeerConfig::new(d.chain.clone()).services;
    // Outbound peers only, as Bitcoin Core: peers that dial us cannot skew it.
    let mut offsets: Vec<i64> = peers
        .iter()
        .filter(|p| p.direction == Direction::Outbound)
        .filter_map(|p| p.stats.as_ref())
        .filter(|s| s.version != 0)
        .map(|s| s.time_offset)
        .collect();
    offsets.sort_unstable();
    let timeoffset = offsets.get(offsets.len() / 2).copied().unwrap_or(0);
    let networks: Vec<Value> = Network::ALL
        .iter()
        .map(|n| {
            let reachable = matches!(n, Network::Ipv4 | Network::Ipv6);
            json!({
                "name": n.as_str(),
                "limited": !reachable,
                "reachable": reachable,
                "proxy": "",
                "proxy_randomize_credentials": false,
            })
        })
        .collect();
    let local: Vec<Value> = d
        .listening
        .iter()
        .filter(|a| !a.ip().is_unspecified())
        .map(|a| json!({ "address": a.ip().to_string(), "port": a.port(), "score": 1 }))
        .collect();
    Ok(json!({
        "version": CORE_RPC_VERSION,
        "subversion": d.user_agent,
        "protocolversion": d.chain.protocol_version,
        "localservices": format!("{:016x}", services.to_u64()),
        "localservicesnames": service_names(services),
        "localrelay": true,
        "timeoffset": timeoffset,
        "networkactive": d.pool.network_active().await?,
        "connections": peers.len(),
        "connections_in": inbound,
        "connections_out": peers.len() - inbound,
        "networks": networks,
        "relayfee": 0.00001,
        "incrementalfee": 0.00001,
        "localaddresses": local,
        "warnings": "",
    }))
}

/// `getnetworkinfo`'s `version`: the Bitcoin Core release (in Core's 10000 * major + 100 *
/// minor form) whose network RPCs and pre-JSON-RPC-2.0 replies this server follows. Tools
/// check it before relying on fields (`bitcoin-cli -netinfo` wants at least 0.21); peerpool's
/// own name and version are in `subversion`.
pub const CORE_RPC_VERSION: u64 = 270_000;

/// Bitcoin Core's names of service bits (`GetServicesNames`); unknown bits as `UNKNOWN[2^n]`.
pub(crate) fn service_names(services: ServiceFlags) -> Vec<String> {
    let bits = services.to_u64();
    (0..64)
        .filter(|i| bits & (1u64 << i) != 0)
        .map(|i| match 1u64 << i {
            1 => "NETWORK".to_owned(),
            2 => "GETUTXO".to_owned(),
            4 => "BLOOM".to_owned(),
            8 => "WITNESS".to_owned(),
            64 => "COMPACT_FILTERS".to_owned(),
            1024 => "NETWORK_LIMITED".to_owned(),
            2048 => "P2P_V2".to_owned(),
            _ => format!("UNKNOWN[2^{i}]"),
        })
        .collect()
}

/// Bitcoin Core's network name for a peer: local and private addresses are
/// `not_publicly_routable`.
fn network_name(a: &NetAddr) -> &'static str {
    match a.network() {
        Network::Ipv4 | Network::Ipv6 if !a.is_routable() => "not_publicly_routable",
        n => n.as_str(),
    }
}

fn secs(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// Bytes per message kind, as a JSON object.
struct PerMsg<'a>(&'a [(peerpool_wire::MessageKind, u64)]);

impl Serialize for PerMsg<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, b)| (k.as_str(), b)))
    }
}

/// One `getpeerinfo` entry: Bitcoin Core's fields, old (the PeerInfoModel clients still
/// read: `addnode`, `banscore`, `whitelisted`) and current.
#[derive(Serialize)]
struct PeerRow<'a> {
    id: u64,
    addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    addrbind: Option<String>,
    /// Our address as the peer reported it in its `version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    addrlocal: Option<String>,
    network: &'static str,
    services: String,
    servicesnames: Vec<String>,
    relaytxes: bool,
    lastsend: u64,
    lastrecv: u64,
    last_transaction: u64,
    last_block: u64,
    bytessent: u64,
    bytesrecv: u64,
    conntime: u64,
    timeoffset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pingtime: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minping: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pingwait: Option<f64>,
    version: u32,
    subver: &'a str,
    inbound: bool,
    bip152_hb_to: bool,
    bip152_hb_from: bool,
    addnode: bool,
    startingheight: i32,
    presynced_headers: i64,
    banscore: u32,
    synced_headers: i64,
    synced_blocks: i64,
    inflight: [u64; 0],
    whitelisted: bool,
    addr_relay_enabled: bool,
    permissions: Vec<&'static str>,
    minfeefilter: f64,
    bytessent_per_msg: PerMsg<'a>,
    bytesrecv_per_msg: PerMsg<'a>,
    connection_type: &'static str,
    transport_protocol_type: &'static str,
    session_id: &'static str,
}

impl<'a> PeerRow<'a> {
    /// The entry of `d`; `None` for a connection that never started.
    fn of(d: &'a PeerDetails) -> Option<PeerRow<'a>> {
        let s = d.stats.as_ref()?;
        let local = s.local_addr.map(|a| a.to_string());
        Some(PeerRow {
            id: d.id.0,
            addr: d.addr.to_string(),
            addrbind: local,
            addrlocal: s.addr_local_reported.map(|a| a.to_string()),
            network: network_name(&d.addr),
            services: format!("{:016x}", s.services.to_u64()),
            servicesnames: service_names(s.services),
            relaytxes: s.relay,
            lastsend: s.last_send.map_or(0, |t| t.as_secs()),
            lastrecv: s.last_recv.map_or(0, |t| t.as_secs()),
            // peerpool relays no blocks or transactions: none ever received.
            last_transaction: 0,
            last_block: 0,
            bytessent: s.bytes_sent,
            bytesrecv: s.bytes_recv,
            conntime: s.conn_time.as_secs(),
            timeoffset: s.time_offset,
            pingtime: s.ping.last_rtt_micros.map(secs),
            minping: s.ping.min_rtt_micros.map(secs),
            pingwait: s.ping.wait_micros.map(secs),
            version: s.their_version,
            subver: &s.user_agent,
            inbound: d.direction == Direction::Inbound,
            bip152_hb_to: false,
            bip152_hb_from: false,
            addnode: d.kind == ConnKind::Manual,
            startingheight: s.starting_height,
            // No header or block sync in peerpool: Core's "unknown".
            presynced_headers: -1,
            banscore: s.ban_score,
            synced_headers: -1,
            synced_blocks: -1,
            inflight: [],
            whitelisted: !d.permissions.is_empty(),
            addr_relay_enabled: d.kind != ConnKind::Feeler,
            permissions: d.permissions.iter().map(|p| p.as_str()).collect(),
            // BIP133 fee filters are in sat/kvB; Core shows BTC/kvB.
            minfeefilter: s.fee_filter.unwrap_or(0) as f64 / 100_000_000.0,
            bytessent_per_msg: PerMsg(&s.bytes_sent_per_msg),
            bytesrecv_per_msg: PerMsg(&s.bytes_recv_per_msg),
            connection_type: d.kind.as_str(),
            transport_protocol_type: "v1",
            session_id: "",
        })
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_written_without_exponents_and_read_back_the_same() {
        let v = json!({
            "minfeefilter": 97.0 / 100_000_000.0,
            "fee": 0.000001,
            "zero": 0.0,
            "ping": 0.000089,
            "big": 1e21,
            "neg": -0.5,
            "int": 7,
            "list": [1e-7, 2.5],
        });
        let text = to_text(&v).unwrap();
        let exponent = text
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_digit() && (w[1] == b'e' || w[1] == b'E'));
        assert!(!exponent, "{text}");
        assert!(text.contains("\"minfeefilter\":0.00000097"), "{text}");
        assert!(text.contains("\"fee\":0.000001"), "{text}");
        assert!(text.contains("\"zero\":0.0"), "{text}");
        assert!(text.contains("\"int\":7,"), "{text}");
        assert!(text.contains("[0.0000001,2.5]"), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
