//! Peers the operator names: `addnode`, `getaddednodeinfo` and `disconnectnode`.

use peerpool_core::addr::{AddrSpec, NetAddr, Network};
use peerpool_net::Direction;
use serde_json::{json, Value};

use super::{handler, opt, req, Call, Method};
use crate::error::{self, RpcError};

pub(super) static ADDNODE: Method = Method {
    name: "addnode",
    category: "Network",
    args: &[req("node"), req("command"), opt("v2transport")],
    usage: "addnode \"node\" \"command\" ( v2transport )",
    help: "Adds a peer to keep connected, removes one, or connects to one once.\n\n\
Arguments:\n\
1. node       (string, required) IP:PORT, [IPv6]:PORT or NAME.onion:PORT (the chain's port if left out)\n\
2. command    (string, required) 'add' to keep it connected, 'remove' to stop, 'onetry' to connect once\n\
3. v2transport (boolean, optional, default: false) connect with BIP324 v2 transport (ignored by 'remove');\n\
   refused while v2 transport is not enabled, as Bitcoin Core with -v2transport=0\n\n\
Result: null\n",
    handler: handler!(addnode),
};

async fn addnode(c: Call<'_>) -> Result<Value, RpcError> {
    let node = c.str_arg(0)?.unwrap_or_default();
    let command = c.str_arg(1)?.unwrap_or_default();
    if !matches!(command, "add" | "remove" | "onetry") {
        return Err(c.method.usage_error());
    }
    // Bitcoin Core's answer on a node without v2 transport; `remove` ignores the flag.
    if c.bool_arg(2)? == Some(true) && command != "remove" {
        return Err(RpcError::invalid_parameter(
            "Error: v2transport requested but not enabled (see --v2transport)",
        ));
    }
    let addr = parse_node(&c, node).ok_or_else(|| {
        RpcError::invalid_parameter(format!("Error: Invalid node address {node:?}"))
    })?;
    let pool = c.pool();
    match command {
        "onetry" => pool.connect(addr).await?,
        "add" => pool.add_node(addr).await?,
        _ => pool.remove_node(addr).await?,
    }
    Ok(Value::Null)
}

pub(super) static GETADDEDNODEINFO: Method = Method {
    name: "getaddednodeinfo",
    category: "Network",
    args: &[opt("node")],
    usage: "getaddednodeinfo ( \"node\" )",
    help: "Lists the peers added with addnode (or only the given one) and whether each is connected.\n\n\
Result: [ { \"addednode\": str, \"connected\": bool, \"addresses\": [ { \"address\": str, \"connected\": \"outbound\" } ] } ]\n",
    handler: handler!(getaddednodeinfo),
};

async fn getaddednodeinfo(c: Call<'_>) -> Result<Value, RpcError> {
    let wanted = match c.str_arg(0)? {
        Some(s) => Some(parse_node(&c, s).ok_or_else(not_added)?),
        None => None,
    };
    let added = c.pool().added_nodes().await?;
    // The addresses of our outbound connections, with no snapshot of any peer.
    let outbound: Vec<NetAddr> = c
        .pool()
        .query(|v| {
            v.machine()
                .peers()
                .filter(|(id, p)| {
                    p.direction == Direction::Outbound && v.peer(*id).is_some_and(|p| p.started())
                })
                .map(|(_, p)| p.addr)
                .collect()
        })
        .await?;
    let mut out = Vec::new();
    for node in added
        .iter()
        .filter(|n| wanted.map_or(true, |w| w == n.addr))
    {
        let conn = outbound.iter().find(|a| **a == node.addr);
        let mut entry = json!({
            "addednode": node.addr.to_string(),
            "connected": conn.is_some(),
        });
        if let Some(a) = conn {
            entry["addresses"] = json!([{ "address": a.to_string(), "connected": "outbound" }]);
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

pub(super) static DISCONNECTNODE: Method = Method {
    name: "disconnectnode",
    category: "Network",
    args: &[opt("address"), opt("nodeid")],
    usage: "disconnectnode ( \"address\" nodeid )",
    help: "Disconnects a peer, by address or by the id getpeerinfo shows (give exactly one).\n\n\
Result: null\n",
    handler: handler!(disconnectnode),
};

async fn disconnectnode(c: Call<'_>) -> Result<Value, RpcError> {
    let address = c.str_arg(0)?;
    let nodeid = c.int_arg(1)?;
    let not_found = || {
        RpcError::new(
            error::NODE_NOT_CONNECTED,
            "Node not found in connected nodes",
        )
    };
    let pool = c.pool();
    // Bitcoin Core's cases: an address alone (even "", which matches nobody), or a node id
    // with no address or an empty one; anything else is invalid parameters.
    match (address, nodeid) {
        (Some(a), None) => {
            let addr = parse_node(&c, a).ok_or_else(not_found)?;
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

/// A node address as `addnode` and `disconnectnode` take it; the chain's port when none.
/// Host names are refused: the pool dials addresses. So is port 0 outside I2P, where no peer
/// can listen.
fn parse_node(c: &Call<'_>, s: &str) -> Option<NetAddr> {
    AddrSpec::parse(s, c.ctx.daemon.chain.default_port)
        .ok()?
        .addr()
        .filter(|a| a.port != 0 || a.network() == Network::I2p)
}
