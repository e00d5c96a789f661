//! The node's P2P side as a whole: `getnettotals`, `getnetworkinfo`, `ping` and
//! `setnetworkactive`.

use peerpool_core::addr::Network;
use peerpool_core::peer::PeerConfig;
use peerpool_net::Direction;
use serde_json::{json, Value};

use super::peers::service_names;
use super::{handler, now_millis, req, Call, Method};
use crate::error::RpcError;
use crate::node::deprecated::Deprecation;

/// `getnetworkinfo`'s `version`: the Bitcoin Core release (in Core's 10000 * major + 100 *
/// minor form) whose network RPC shapes this server follows. Clients pick the shapes they
/// decode by it (`warnings` became an array in 28; `bitcoin-cli -netinfo` wants at least
/// 0.21); peerpool's own name and version are in `subversion`.
const CORE_RPC_VERSION: u64 = 310_000;

pub(super) static GETNETTOTALS: Method = Method {
    name: "getnettotals",
    category: "Network",
    args: &[],
    usage: "getnettotals",
    help: "Bytes sent and received since start, over all connections, and the time.\n\n\
Result: { \"totalbytesrecv\": n, \"totalbytessent\": n, \"timemillis\": n, \"uploadtarget\": {...} }\n",
    handler: handler!(getnettotals),
};

async fn getnettotals(c: Call<'_>) -> Result<Value, RpcError> {
    let t = c.pool().net_totals().await?;
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

pub(super) static GETNETWORKINFO: Method = Method {
    name: "getnetworkinfo",
    category: "Network",
    args: &[],
    usage: "getnetworkinfo",
    help: "The node's P2P state: version, user agent, services, connections, networks, local\n\
addresses, warnings (an array; a string with --deprecatedrpc warnings), and with --asmap the\n\
map's SHA-256 as asmap_version.\n",
    handler: handler!(getnetworkinfo),
};

async fn getnetworkinfo(c: Call<'_>) -> Result<Value, RpcError> {
    let d = &c.ctx.daemon;
    // Counted in place, and only outbound peers looked at closely: a pool of thousands of
    // inbound peers answers without a snapshot of each.
    let (counts, mut offsets, asmap_version) = c
        .pool()
        .query(|v| {
            // Outbound peers only, as Bitcoin Core: peers that dial us cannot skew it.
            let offsets: Vec<i64> = v
                .machine()
                .peers()
                .filter(|(_, p)| p.direction == Direction::Outbound)
                .filter_map(|(id, _)| v.peer(id)?.stats())
                .filter(|s| s.version != 0)
                .map(|s| s.time_offset)
                .collect();
            let asmap = v.machine().groups().asmap().map(|m| m.version_hex());
            (v.connection_counts(), offsets, asmap)
        })
        .await?;
    let services = PeerConfig::new(d.chain.clone()).services;
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
    let mut info = json!({
        "version": CORE_RPC_VERSION,
        "subversion": d.user_agent,
        "protocolversion": d.chain.protocol_version,
        "localservices": format!("{:016x}", services.to_u64()),
        "localservicesnames": service_names(services),
        "localrelay": true,
        "timeoffset": timeoffset,
        "networkactive": d.pool.network_active().await?,
        "connections": counts.total(),
        "connections_in": counts.inbound,
        "connections_out": counts.outbound,
        "networks": networks,
        "relayfee": 0.00001,
        "incrementalfee": 0.00001,
        "localaddresses": local,
        // peerpool raises no node warnings: an empty list, or Core's old empty string.
        "warnings": if c.ctx.deprecated.enabled(Deprecation::Warnings) {
            json!("")
        } else {
            json!([])
        },
    });
    // With an asmap, its SHA-256 as sha256sum prints it (Core master's `asmap_version`).
    if let (Some(version), Some(obj)) = (asmap_version, info.as_object_mut()) {
        obj.insert("asmap_version".into(), json!(version));
    }
    Ok(info)
}

pub(super) static PING: Method = Method {
    name: "ping",
    category: "Network",
    args: &[],
    usage: "ping",
    help: "Sends a ping to every peer that completed the handshake.\n\nResult: null\n",
    handler: handler!(ping),
};

async fn ping(c: Call<'_>) -> Result<Value, RpcError> {
    c.pool().ping_all().await?;
    Ok(Value::Null)
}

pub(super) static SETNETWORKACTIVE: Method = Method {
    name: "setnetworkactive",
    category: "Network",
    args: &[req("state")],
    usage: "setnetworkactive state",
    help:
        "Turns all P2P activity off (every peer disconnected, no dial, no inbound) or back on.\n\n\
Result: bool, the new state\n",
    handler: handler!(setnetworkactive),
};

async fn setnetworkactive(c: Call<'_>) -> Result<Value, RpcError> {
    let state = c.bool_arg(0)?.ok_or_else(|| c.method.usage_error())?;
    let pool = c.pool();
    pool.set_network_active(state).await?;
    Ok(json!(pool.network_active().await?))
}
