//! The admin commands, each answering with the JSON shape ElectrumX's RPC interface gives the
//! same command, so that ElectrumX's own `electrumx_rpc` client prints them.
//!
//! Row layouts (arrays, in this order, as ElectrumX's client reads them):
//! - `sessions`: id, flags, address, user agent, protocol version, cost, group cost, requests
//!   in flight (unanswered pings), transactions sent on the client's behalf (always 0: the
//!   admin interface sends none), subscriptions (0 likewise), messages received, bytes
//!   received, messages sent, bytes sent, seconds connected;
//! - `groups`: netgroup, sessions, combined cost, combined group cost, requests in flight,
//!   transactions, subscriptions, messages and bytes each way;
//! - `peers`: objects with `host`, `features` (`hosts` with the port as `tcp_port`,
//!   `server_version`, `protocol_min`, `protocol_max`, `pruning`), `status`, `last_good`,
//!   `last_try` (UNIX seconds or `null`), `try_count`, `source`, `ip_addr`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{Direction, PeerId};
use peerpool_core::Time;
use peerpool_net::pool::{KnownAddress, PoolError, SessionInfo};
use serde_json::{json, Value};

use super::jsonrpc::Request;
use crate::error::{RpcError, METHOD_NOT_FOUND};
use crate::Daemon;

/// Session flags. The first letter is the direction, then the transport, then the states.
pub mod flags {
    /// They connected to us.
    pub const INBOUND: char = 'I';
    /// We connected to them.
    pub const OUTBOUND: char = 'O';
    /// Version 1 plaintext transport (the only one peerpool speaks so far).
    pub const PLAINTEXT: char = 'P';
    /// A disconnect was asked and the socket is not closed yet.
    pub const CLOSING: char = 'C';
    /// Every message in and out is logged.
    pub const LOGGED: char = 'L';
}

/// An address not reached for this long counts as `stale` rather than `good` in `peers`.
/// ElectrumX: `STALE_SECS` (3 hours).
pub const STALE_AFTER: Duration = Duration::from_secs(3 * 3600);

/// Priority from which a session's messages are delayed: its cost has reached the soft limit
/// (see [`peerpool_core::cost::Limits::priority`]: one step per tenth of that limit). Such
/// sessions count as `paused` in `getinfo`, as ElectrumX counts its throttled ones.
pub const PAUSED_PRIORITY: u32 = 11;

/// The methods of the admin listener, for `METHOD_NOT_FOUND` messages and `help`.
pub const METHODS: &[&str] = &[
    "auth",
    "getinfo",
    "sessions",
    "groups",
    "peers",
    "disconnect",
    "log",
    "subscribe",
    "peer_count",
    "connected_peers",
    "connect",
];

/// What the commands work on.
#[derive(Clone, Debug)]
pub struct Context {
    /// The daemon served.
    pub daemon: Daemon,
}

impl Context {
    /// Answers every method but `subscribe` (which changes the connection, see
    /// [`crate::events`]).
    pub async fn call(&self, req: &Request) -> Result<Value, RpcError> {
        match req.method.as_str() {
            "getinfo" => {
                req.named(&[])?;
                self.getinfo().await
            }
            "sessions" => {
                req.named(&[])?;
                Ok(Value::Array(
                    self.sessions().await?.iter().map(session_row).collect(),
                ))
            }
            "groups" => {
                req.named(&[])?;
                Ok(Value::Array(groups(&self.sessions().await?)))
            }
            "peers" => {
                req.named(&[])?;
                let mut known = self
                    .daemon
                    .pool
                    .known_addresses()
                    .await
                    .map_err(RpcError::internal)?;
                let now = now();
                // As ElectrumX lists them: good ones first, the most recently reached first.
                known.sort_by_key(|k| {
                    (
                        k.banned,
                        std::cmp::Reverse(k.last_success.unwrap_or(Time::ZERO)),
                    )
                });
                Ok(Value::Array(
                    known.iter().map(|k| peer_entry(k, now)).collect(),
                ))
            }
            "disconnect" => self.disconnect(&session_ids(req)?).await.map(Value::from),
            "log" => self.log(&session_ids(req)?).await.map(Value::from),
            "peer_count" => {
                req.named(&[])?;
                let n = self
                    .daemon
                    .pool
                    .peer_count()
                    .await
                    .map_err(RpcError::internal)?;
                Ok(json!(n))
            }
            "connected_peers" => {
                req.named(&[])?;
                let peers = self
                    .daemon
                    .pool
                    .connected_peers()
                    .await
                    .map_err(RpcError::internal)?;
                Ok(Value::Array(
                    peers.iter().map(crate::events::peer_json).collect(),
                ))
            }
            "connect" => {
                let p = req.named(&["addr"])?;
                let addr = match p.get("addr") {
                    Some(Value::String(s)) => s.parse::<NetAddr>().map_err(|_| {
                        RpcError::invalid_params(format!("connect: not an address: {s:?}"))
                    })?,
                    _ => {
                        return Err(RpcError::invalid_params(
                            "connect takes an address: {\"addr\": \"IP:PORT\"}",
                        ))
                    }
                };
                self.daemon
                    .pool
                    .connect(addr)
                    .await
                    .map_err(RpcError::internal)?;
                Ok(json!(format!("connecting to {addr}")))
            }
            other => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("unknown method {other:?}; known: {}", METHODS.join(", ")),
            )),
        }
    }

    async fn sessions(&self) -> Result<Vec<SessionInfo>, RpcError> {
        let mut s = self
            .daemon
            .pool
            .sessions()
            .await
            .map_err(RpcError::internal)?;
        s.sort_by_key(|s| s.details.id);
        Ok(s)
    }

    async fn getinfo(&self) -> Result<Value, RpcError> {
        let pool = &self.daemon.pool;
        let sessions = self.sessions().await?;
        let book = pool.addrman_info().await.map_err(RpcError::internal)?;
        let bans = pool.list_bans().await.map_err(RpcError::internal)?;
        let count = |f: &dyn Fn(&SessionInfo) -> bool| sessions.iter().filter(|s| f(s)).count();
        let groups: std::collections::BTreeSet<&str> =
            sessions.iter().map(|s| s.netgroup.as_str()).collect();
        let uptime = SystemTime::now()
            .duration_since(self.daemon.started)
            .unwrap_or_default();
        Ok(json!({
            "chain": self.daemon.chain.name,
            "daemon version": self.daemon.user_agent,
            "pid": std::process::id(),
            "uptime": duration_text(uptime.as_secs()),
            "uptime secs": uptime.as_secs(),
            "listening": self.daemon.listening.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "sessions": {
                "count": sessions.len(),
                "inbound": count(&|s| s.details.direction == Direction::Inbound),
                "outbound": count(&|s| s.details.direction == Direction::Outbound),
                "handshaking": count(&|s| !s.details.joined),
                "closing": count(&|s| s.closing),
                "logged": count(&|s| s.logged),
                "paused": count(&|s| s.priority >= PAUSED_PRIORITY),
                "errors": sessions.iter().map(|s| u64::from(s.errors)).sum::<u64>(),
                "requests in flight": sessions.iter().map(requests_in_flight).sum::<u64>(),
            },
            "groups": groups.len(),
            "address book": {
                "new": book.total.new,
                "tried": book.total.tried,
                "total": book.total.new + book.total.tried,
            },
            "bans": bans.len(),
        }))
    }

    /// ElectrumX's answers: `disconnecting session N`, `disconnecting group G`,
    /// `disconnecting all sessions`, `unknown: X`.
    async fn disconnect(&self, ids: &[String]) -> Result<Vec<String>, RpcError> {
        let sessions = self.sessions().await?;
        let refs = References::resolve(ids, &sessions, &["all"]);
        let mut out = Vec::new();
        let mut targets: Vec<PeerId> = Vec::new();
        if refs.specials.iter().any(|s| s == "all") {
            out.push("disconnecting all sessions".to_string());
            targets.extend(sessions.iter().map(|s| s.details.id));
        } else {
            for id in &refs.sessions {
                out.push(format!("disconnecting session {id}"));
                targets.push(*id);
            }
            for (name, members) in &refs.groups {
                out.push(format!("disconnecting group {name}"));
                targets.extend(members);
            }
        }
        out.extend(refs.unknown.iter().map(|u| format!("unknown: {u}")));
        targets.sort();
        targets.dedup();
        for id in targets {
            match self.daemon.pool.disconnect_peer(id).await {
                // Gone between the listing and now: what was asked is done.
                Ok(()) | Err(PoolError::Conn(_)) => {}
                Err(e) => return Err(RpcError::internal(e)),
            }
        }
        Ok(out)
    }

    /// Toggles logging, ElectrumX's answers: `logging session N` / `not logging session N`,
    /// `logging all sessions`, `logging no sessions`, `logging new sessions` / `not logging
    /// new sessions`, `unknown: X`. `all` and `none` also set whether sessions connecting
    /// later are logged; `new` toggles only that.
    async fn log(&self, ids: &[String]) -> Result<Vec<String>, RpcError> {
        let sessions = self.sessions().await?;
        let refs = References::resolve(ids, &sessions, &["all", "none", "new"]);
        let mut out = Vec::new();
        // ElectrumX's order: all, none, then new, whatever order they were given in.
        let mut specials = refs.specials.clone();
        specials.sort_by_key(|s| ["all", "none", "new"].iter().position(|k| k == s));
        specials.dedup();
        for special in &specials {
            if special == "new" {
                let on = self
                    .daemon
                    .pool
                    .log_new_sessions(None)
                    .await
                    .map_err(RpcError::internal)?;
                out.push(if on { "logging" } else { "not logging" }.to_owned() + " new sessions");
                continue;
            }
            let want = special == "all";
            self.daemon
                .pool
                .log_new_sessions(Some(want))
                .await
                .map_err(RpcError::internal)?;
            for s in sessions.iter().filter(|s| s.logged != want) {
                self.daemon
                    .pool
                    .toggle_log(s.details.id)
                    .await
                    .map_err(RpcError::internal)?;
            }
            out.push(
                if want {
                    "logging all sessions"
                } else {
                    "logging no sessions"
                }
                .into(),
            );
        }
        let mut done = Vec::new();
        let group_members = refs.groups.iter().flat_map(|(_, m)| m.iter());
        for id in refs.sessions.iter().chain(group_members) {
            if done.contains(id) {
                continue;
            }
            done.push(*id);
            match self
                .daemon
                .pool
                .toggle_log(*id)
                .await
                .map_err(RpcError::internal)?
            {
                Some(true) => out.push(format!("logging session {id}")),
                Some(false) => out.push(format!("not logging session {id}")),
                None => out.push(format!("unknown: {id}")),
            }
        }
        out.extend(refs.unknown.iter().map(|u| format!("unknown: {u}")));
        Ok(out)
    }
}

/// Session ids of `disconnect` and `log`: `{"session_ids": [...]}` as `electrumx_rpc` sends
/// them, or the ids as positional parameters; strings or numbers.
fn session_ids(req: &Request) -> Result<Vec<String>, RpcError> {
    let list = match &req.params {
        Value::Object(map) => match map.get("session_ids") {
            Some(Value::Array(list)) => list.clone(),
            _ => return Err(RpcError::invalid_params("expected a list of session IDs")),
        },
        Value::Array(list) => match list.as_slice() {
            [Value::Array(inner)] => inner.clone(),
            _ => list.clone(),
        },
        _ => return Err(RpcError::invalid_params("expected a list of session IDs")),
    };
    if list.is_empty() {
        return Err(RpcError::invalid_params("expected a list of session IDs"));
    }
    list.into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(RpcError::invalid_params(format!(
                "not a session ID: {other}"
            ))),
        })
        .collect()
}

/// Session ids, netgroup names and special words, as ElectrumX resolves them.
struct References {
    sessions: Vec<PeerId>,
    groups: Vec<(String, Vec<PeerId>)>,
    specials: Vec<String>,
    unknown: Vec<String>,
}

impl References {
    fn resolve(items: &[String], sessions: &[SessionInfo], specials: &[&str]) -> References {
        let mut r = References {
            sessions: Vec::new(),
            groups: Vec::new(),
            specials: Vec::new(),
            unknown: Vec::new(),
        };
        for item in items {
            if let Ok(n) = item.parse::<u64>() {
                if sessions.iter().any(|s| s.details.id == PeerId(n)) {
                    if !r.sessions.contains(&PeerId(n)) {
                        r.sessions.push(PeerId(n));
                    }
                } else {
                    r.unknown.push(item.clone());
                }
                continue;
            }
            let lower = item.to_lowercase();
            if specials.contains(&lower.as_str()) {
                if !r.specials.contains(&lower) {
                    r.specials.push(lower);
                }
                continue;
            }
            let members: Vec<PeerId> = sessions
                .iter()
                .filter(|s| s.netgroup.eq_ignore_ascii_case(item))
                .map(|s| s.details.id)
                .collect();
            if members.is_empty() {
                r.unknown.push(item.clone());
            } else {
                r.groups.push((item.clone(), members));
            }
        }
        r
    }
}

fn requests_in_flight(s: &SessionInfo) -> u64 {
    s.details.stats.as_ref().map_or(0, |st| {
        u64::from(st.ping.last_nonce.is_some() && st.ping.wait_micros.is_some())
    })
}

/// The flags of a session: direction, transport, closing, logged, then its priority.
pub fn session_flags(s: &SessionInfo) -> String {
    let mut f = String::new();
    f.push(match s.details.direction {
        Direction::Inbound => flags::INBOUND,
        Direction::Outbound => flags::OUTBOUND,
    });
    f.push(flags::PLAINTEXT);
    if s.closing {
        f.push(flags::CLOSING);
    }
    if s.logged {
        f.push(flags::LOGGED);
    }
    f.push_str(&s.priority.to_string());
    f
}

fn session_row(s: &SessionInfo) -> Value {
    let st = s.details.stats.as_ref();
    let now = now();
    let connected = st.map_or(0.0, |st| now.since(st.conn_time).as_secs_f64());
    json!([
        s.details.id.0,
        session_flags(s),
        s.details.addr.to_string(),
        st.map_or(String::new(), |st| st.user_agent.clone()),
        st.map_or(String::new(), |st| {
            if st.version == 0 {
                String::new()
            } else {
                st.version.to_string()
            }
        }),
        s.cost,
        s.group_cost,
        requests_in_flight(s),
        0,
        0,
        st.map_or(0, |st| st.msgs_recv),
        st.map_or(0, |st| st.bytes_recv),
        st.map_or(0, |st| st.msgs_sent),
        st.map_or(0, |st| st.bytes_sent),
        connected,
    ])
}

fn groups(sessions: &[SessionInfo]) -> Vec<Value> {
    #[derive(Default)]
    struct Group {
        sessions: u64,
        cost: f64,
        group_cost: f64,
        reqs: u64,
        recv_count: u64,
        recv_size: u64,
        send_count: u64,
        send_size: u64,
    }
    let mut by_name: BTreeMap<&str, Group> = BTreeMap::new();
    for s in sessions {
        let g = by_name.entry(&s.netgroup).or_default();
        g.sessions += 1;
        g.cost += s.cost;
        g.group_cost += s.group_cost;
        g.reqs += requests_in_flight(s);
        if let Some(st) = &s.details.stats {
            g.recv_count += st.msgs_recv;
            g.recv_size += st.bytes_recv;
            g.send_count += st.msgs_sent;
            g.send_size += st.bytes_sent;
        }
    }
    by_name
        .into_iter()
        .map(|(name, g)| {
            json!([
                name,
                g.sessions,
                g.cost,
                g.group_cost,
                g.reqs,
                0,
                0,
                g.recv_count,
                g.recv_size,
                g.send_count,
                g.send_size
            ])
        })
        .collect()
}

/// `good` (reached within [`STALE_AFTER`], or connected now), `stale` (reached before),
/// `never` (never reached) or `bad` (banned): ElectrumX's words.
pub fn peer_status(k: &KnownAddress, now: Time) -> &'static str {
    if k.banned {
        "bad"
    } else if k.connected || k.last_success.is_some_and(|t| now.since(t) < STALE_AFTER) {
        "good"
    } else if k.last_success.is_some() {
        "stale"
    } else {
        "never"
    }
}

fn peer_entry(k: &KnownAddress, now: Time) -> Value {
    let host = k.addr.host.to_string();
    let ip = k.addr.to_socket().map(|sa| sa.ip().to_string());
    json!({
        "host": host,
        "features": {
            "hosts": { host.clone(): { "tcp_port": k.addr.port, "ssl_port": null } },
            "server_version": format!("services {:#x}", k.services.to_u64()),
            "protocol_min": "",
            "protocol_max": "",
            "pruning": null,
            "services": k.services.to_u64(),
        },
        "status": peer_status(k, now),
        "last_good": k.last_success.map(|t| t.as_secs()),
        "last_try": k.last_try.map(|t| t.as_secs()),
        "try_count": k.attempts,
        "source": k.source.to_string(),
        "ip_addr": ip,
        "tried": k.tried,
        "connected": k.connected,
    })
}

/// Seconds as days, hours, minutes and, below an hour, seconds: `1d02h03m`, `04m05s`.
pub fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h:02}h{m:02}m")
    } else {
        format!("{m:02}m{s:02}s")
    }
}

/// The current time, as the pool's clock counts it.
pub(crate) fn now() -> Time {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Time::from_micros(since.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_electrumx_uptimes() {
        assert_eq!(duration_text(0), "00m00s");
        assert_eq!(duration_text(65), "01m05s");
        assert_eq!(duration_text(3 * 3600 + 60), "03h01m");
        assert_eq!(duration_text(86400 + 7200 + 180), "1d02h03m");
    }
}
