//! Bans: `setban`, `listbanned` and `clearbanned`.

use std::str::FromStr;
use std::time::Duration;

use peerpool_core::addr::Host;
use peerpool_core::pool::banman::DEFAULT_BAN_DURATION;
use peerpool_net::pool::Subnet;
use serde_json::{json, Value};

use super::{handler, now_secs, opt, req, Call, Method};
use crate::error::{self, RpcError};

pub(super) static SETBAN: Method = Method {
    name: "setban",
    category: "Network",
    args: &[
        req("subnet"),
        req("command"),
        opt("bantime"),
        opt("absolute"),
    ],
    usage: "setban \"subnet\" \"command\" ( bantime absolute )",
    help: "Bans an IP or subnet (disconnecting its peers) or lifts a ban.\n\n\
Arguments:\n\
1. subnet   (string, required) an IP (1.2.3.4) or subnet (1.2.3.0/24, 1.2.3.0/255.255.255.0)\n\
2. command  (string, required) 'add' or 'remove'\n\
3. bantime  (numeric, optional, default 86400) seconds, or with absolute a UNIX time\n\
4. absolute (boolean, optional, default false)\n\n\
Result: null\n",
    handler: handler!(setban),
};

async fn setban(c: Call<'_>) -> Result<Value, RpcError> {
    let spec = c.str_arg(0)?.unwrap_or_default();
    let command = c.str_arg(1)?.unwrap_or_default();
    if !matches!(command, "add" | "remove") {
        return Err(c.method.usage_error());
    }
    let subnet = Subnet::from_str(spec)
        .map_err(|_| RpcError::new(error::INVALID_IP_OR_SUBNET, "Error: Invalid IP/Subnet"))?;
    let pool = c.pool();
    if command == "remove" {
        if !pool.unban(subnet).await? {
            return Err(RpcError::new(
                error::INVALID_IP_OR_SUBNET,
                "Error: Unban failed. Requested address/subnet was not previously manually banned.",
            ));
        }
        return Ok(Value::Null);
    }
    let bantime = c.int_arg(2)?.unwrap_or(0);
    let absolute = c.bool_arg(3)?.unwrap_or(false);
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
        DEFAULT_BAN_DURATION
    };
    // Already banned, as Bitcoin Core decides it: a subnet by an identical ban, a single
    // address by any ban holding it.
    let host = subnet
        .network()
        .filter(|_| subnet.is_single_host())
        .map(Host::from_ip);
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

pub(super) static LISTBANNED: Method = Method {
    name: "listbanned",
    category: "Network",
    args: &[],
    usage: "listbanned",
    help: "Lists the bans in force.\n\n\
Result: [ { \"address\": str, \"ban_created\": n, \"banned_until\": n, \"ban_duration\": n, \"time_remaining\": n } ]\n",
    handler: handler!(listbanned),
};

async fn listbanned(c: Call<'_>) -> Result<Value, RpcError> {
    let now = now_secs();
    let bans = c.pool().list_bans().await?;
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

pub(super) static CLEARBANNED: Method = Method {
    name: "clearbanned",
    category: "Network",
    args: &[],
    usage: "clearbanned",
    help: "Lifts every ban.\n\nResult: null\n",
    handler: handler!(clearbanned),
};

async fn clearbanned(c: Call<'_>) -> Result<Value, RpcError> {
    c.pool().clear_bans().await?;
    Ok(Value::Null)
}
