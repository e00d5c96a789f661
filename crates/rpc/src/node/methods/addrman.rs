//! The address book: `getnodeaddresses`, `addpeeraddress`, `getaddrmaninfo` and
//! `getrawaddrman`.

use std::net::IpAddr;
use std::str::FromStr;

use peerpool_core::addr::{NetAddr, Network};
use peerpool_net::pool::AddTried;
use serde_json::{json, Map, Value};

use peerpool_core::pool::addrman::Table;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::{handler, network_name, opt, req, to_text, Call, Method, Output};
use crate::error::{self, RpcError};

pub(super) static GETNODEADDRESSES: Method = Method {
    name: "getnodeaddresses",
    category: "Network",
    args: &[opt("count"), opt("network")],
    usage: "getnodeaddresses ( count \"network\" )",
    help: "A random sample of the address book.\n\n\
Arguments:\n\
1. count   (numeric, optional, default 1) how many; 0 for all\n\
2. network (string, optional) only this network: ipv4, ipv6, onion, i2p, cjdns\n\n\
Result: [ { \"time\": n, \"services\": n, \"address\": str, \"port\": n, \"network\": str } ]\n",
    handler: handler!(getnodeaddresses),
};

async fn getnodeaddresses(c: Call<'_>) -> Result<Value, RpcError> {
    let count = c.int_arg(0)?.unwrap_or(1);
    if count < 0 {
        return Err(RpcError::invalid_parameter("Address count out of range"));
    }
    let network =
        match c.str_arg(1)? {
            Some(s) => Some(parse_network(s).ok_or_else(|| {
                RpcError::invalid_parameter(format!("Network not recognized: {s}"))
            })?),
            None => None,
        };
    let list = c
        .pool()
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
                    "network": network_name(&e.addr),
                })
            })
            .collect(),
    ))
}

fn parse_network(s: &str) -> Option<Network> {
    Network::ALL
        .into_iter()
        .find(|n| n.as_str() == s.to_ascii_lowercase())
}

/// The host alone, as `getnodeaddresses` shows it (IPv6 without brackets).
fn host_string(a: &NetAddr) -> String {
    match a.to_socket() {
        Some(sa) => sa.ip().to_string(),
        None => a.host.to_string(),
    }
}

pub(super) static ADDPEERADDRESS: Method = Method {
    name: "addpeeraddress",
    category: "Hidden",
    args: &[req("address"), req("port"), opt("tried")],
    usage: "addpeeraddress \"address\" port ( tried )",
    help: "Adds an address to the address book, as if it had announced itself (for tests).\n\
With tried, it is also marked as connected once, which moves it to the tried table.\n\n\
Result: { \"success\": bool, \"error\": str (when it failed: failed-adding-to-new or failed-adding-to-tried) }\n",
    handler: handler!(addpeeraddress),
};

async fn addpeeraddress(c: Call<'_>) -> Result<Value, RpcError> {
    let address = c.str_arg(0)?.unwrap_or_default();
    let port = c.int_arg(1)?.unwrap_or(0);
    let port =
        u16::try_from(port).map_err(|_| RpcError::invalid_parameter("Error: port out of range"))?;
    let tried = c.bool_arg(2)?.unwrap_or(false);
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
    let pool = c.pool();
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

pub(super) static GETADDRMANINFO: Method = Method {
    name: "getaddrmaninfo",
    category: "Network",
    args: &[],
    usage: "getaddrmaninfo",
    help: "The address book's counts per network and table.\n\n\
Result: { \"ipv4\": { \"new\": n, \"tried\": n, \"total\": n }, ..., \"all_networks\": {...} }\n",
    handler: handler!(getaddrmaninfo),
};

async fn getaddrmaninfo(c: Call<'_>) -> Result<Value, RpcError> {
    let info = c.pool().addrman_info().await?;
    let mut out = Map::new();
    for (net, counts) in &info.networks {
        out.insert(
            net.as_str().to_owned(),
            json!({"new": counts.new, "tried": counts.tried, "total": counts.total()}),
        );
    }
    let t = info.total;
    out.insert(
        "all_networks".to_owned(),
        json!({"new": t.new, "tried": t.tried, "total": t.total()}),
    );
    Ok(Value::Object(out))
}

pub(super) static GETRAWADDRMAN: Method = Method {
    name: "getrawaddrman",
    category: "Hidden",
    args: &[],
    usage: "getrawaddrman",
    help: "Every address book entry, by table, with the bucket and position it occupies (for\n\
monitoring tools). An entry in several new buckets appears once per bucket.\n\n\
Result: { \"new\": { \"bucket/position\": { \"address\": str, \"mapped_as\": n (with an asmap),\n\
\"port\": n, \"network\": str, \"services\": n, \"time\": n, \"source\": str,\n\
\"source_network\": str, \"source_mapped_as\": n (with an asmap) }, ... }, \"tried\": { ... } }\n",
    handler: handler!(getrawaddrman),
};

/// One occupied slot.
#[derive(Serialize)]
struct RawEntry {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mapped_as: Option<u32>,
    port: u16,
    network: &'static str,
    services: u64,
    time: u64,
    source: String,
    source_network: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_mapped_as: Option<u32>,
}

/// A table's slots in table order, keyed `"bucket/position"` as Core writes them.
struct Slots(Vec<(usize, usize, RawEntry)>);

impl Serialize for Slots {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (bucket, position, entry) in &self.0 {
            map.serialize_entry(&format!("{bucket}/{position}"), entry)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct RawAddrMan {
    new: Slots,
    tried: Slots,
}

async fn getrawaddrman(c: Call<'_>) -> Result<Output, RpcError> {
    let raw = c
        .pool()
        .query(|view| {
            let machine = view.machine();
            let groups = machine.groups();
            let table = |t: Table| {
                Slots(
                    machine
                        .addrman()
                        .slots(t)
                        .map(|(bucket, position, e)| {
                            let entry = RawEntry {
                                address: host_string(&e.addr),
                                mapped_as: groups.mapped_as(&e.addr),
                                port: e.addr.port,
                                network: network_name(&e.addr),
                                services: e.services.to_u64(),
                                time: e.last_seen.as_secs(),
                                source: host_string(&e.source),
                                source_network: network_name(&e.source),
                                source_mapped_as: groups.mapped_as(&e.source),
                            };
                            (bucket, position, entry)
                        })
                        .collect(),
                )
            };
            RawAddrMan {
                new: table(Table::New),
                tried: table(Table::Tried),
            }
        })
        .await?;
    to_text(&raw).map(Output::Text).map_err(RpcError::internal)
}
