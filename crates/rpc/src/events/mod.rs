//! The pool's event bus as a stream of JSON-RPC notifications, served on the admin listener.
//!
//! A client sends `subscribe` (with optional filters) and the connection starts carrying
//! notifications, one per line, besides the answers to its further requests (`peer_count`,
//! `connected_peers`, `connect`, `disconnect` and every other admin command):
//!
//! ```text
//! -> {"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"events":["peer_joined"],"peers":[3]}}
//! <- {"jsonrpc":"2.0","id":1,"result":{"events":["peer_joined"],"commands":[],"peers":[3]}}
//! <- {"jsonrpc":"2.0","method":"peer_joined","params":{"id":3,"addr":"127.0.0.1:18444",...}}
//! ```
//!
//! Notifications: `peer_joined` (the peer), `peer_left` (`id`, `addr`, `reason`), `ban`
//! (`subnet`, `until`, `reason`), `eviction` (`id`, `addr`) and `peer_message` (`peer`,
//! `addr`, `command`, `size`, and `message`: the payload decoded for common kinds, see
//! [`decode`]).
//!
//! Filters, all optional: `events` (names above; default: every lifecycle event, plus
//! `peer_message` when `commands` is given), `commands` (message commands to follow; with
//! `peer_message` but no `commands`, every command) and `peers` (peer ids; bans concern no
//! peer and always pass). A new `subscribe` replaces the filters.
//!
//! **Lag.** Events wait in the bus's bounded channels, never in the pool: a subscriber that
//! falls more than the bus capacity behind is sent a `lagged` notification with the number of
//! events it missed, and the connection is closed. Below that bound nothing is lost, and
//! events of one channel (lifecycle, or one message command) arrive in order.

pub mod decode;

use std::collections::BTreeSet;

use peerpool_net::bus::{
    EventBus, Lagged, MessageSubscription, PeerInfo, PeerMessage, PoolEvent, Subscription,
};
use peerpool_net::Direction;
use peerpool_wire::MessageKind;
use serde_json::{json, Map, Value};

use crate::admin::jsonrpc::notification;
use crate::RpcError;

/// The kinds of notification a subscriber can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A peer completed its handshake.
    PeerJoined,
    /// A peer that had joined left.
    PeerLeft,
    /// A message was received.
    PeerMessage,
    /// An address or subnet was banned.
    Ban,
    /// An inbound peer was evicted for a new one.
    Eviction,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 5] = [
        EventKind::PeerJoined,
        EventKind::PeerLeft,
        EventKind::PeerMessage,
        EventKind::Ban,
        EventKind::Eviction,
    ];

    /// The notification's method name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PeerJoined => "peer_joined",
            EventKind::PeerLeft => "peer_left",
            EventKind::PeerMessage => "peer_message",
            EventKind::Ban => "ban",
            EventKind::Eviction => "eviction",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// The notification sent before a lagging subscriber is dropped.
pub const LAGGED: &str = "lagged";

/// What a subscriber follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Notification kinds.
    pub events: BTreeSet<EventKind>,
    /// Message commands, for `peer_message`.
    pub commands: Vec<MessageKind>,
    /// Only these peers (`None`: all).
    pub peers: Option<BTreeSet<u64>>,
}

impl Default for Filter {
    /// Every lifecycle event of every peer, no messages.
    fn default() -> Filter {
        Filter {
            events: EventKind::ALL
                .into_iter()
                .filter(|k| *k != EventKind::PeerMessage)
                .collect(),
            commands: Vec::new(),
            peers: None,
        }
    }
}

impl Filter {
    /// Reads `subscribe`'s parameters (see the module docs).
    pub fn from_params(params: &Map<String, Value>) -> Result<Filter, RpcError> {
        for key in params.keys() {
            if !["events", "commands", "peers"].contains(&key.as_str()) {
                return Err(RpcError::invalid_params(format!(
                    "subscribe: unknown filter {key:?} (known: events, commands, peers)"
                )));
            }
        }
        let mut filter = Filter::default();
        if let Some(v) = params.get("commands") {
            for name in strings(v, "commands")? {
                let kind = MessageKind::from_command(&name);
                if kind == MessageKind::Unknown {
                    return Err(RpcError::invalid_params(format!(
                        "subscribe: unknown message command {name:?}"
                    )));
                }
                if !filter.commands.contains(&kind) {
                    filter.commands.push(kind);
                }
            }
        }
        if let Some(v) = params.get("events") {
            filter.events.clear();
            for name in strings(v, "events")? {
                let kind = EventKind::parse(&name).ok_or_else(|| {
                    RpcError::invalid_params(format!(
                        "subscribe: unknown event {name:?} (known: {})",
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    ))
                })?;
                filter.events.insert(kind);
            }
        }
        if !filter.commands.is_empty() {
            filter.events.insert(EventKind::PeerMessage);
        } else if filter.events.contains(&EventKind::PeerMessage) {
            filter.commands = MessageKind::ALL.to_vec();
        }
        if let Some(v) = params.get("peers") {
            let list = v.as_array().ok_or_else(|| {
                RpcError::invalid_params("subscribe: \"peers\" must be a list of ids")
            })?;
            let mut peers = BTreeSet::new();
            for id in list {
                let n = id
                    .as_u64()
                    .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| {
                        RpcError::invalid_params(format!("subscribe: not a peer id: {id}"))
                    })?;
                peers.insert(n);
            }
            filter.peers = Some(peers);
        }
        Ok(filter)
    }

    /// The filter as `subscribe` answers it.
    pub fn to_json(&self) -> Value {
        json!({
            "events": self.events.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            "commands": self.commands.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            "peers": self.peers,
        })
    }

    fn passes_peer(&self, id: u64) -> bool {
        self.peers.as_ref().map_or(true, |p| p.contains(&id))
    }

    fn lifecycle(&self) -> bool {
        self.events.iter().any(|k| *k != EventKind::PeerMessage)
    }

    /// The notification for `event`, if it passes.
    pub fn pool_event(&self, event: &PoolEvent) -> Option<Value> {
        let (kind, peer, params) = match event {
            PoolEvent::PeerJoined(p) => (EventKind::PeerJoined, Some(p.id.0), peer_json(p)),
            PoolEvent::PeerLeft { id, addr, reason } => (
                EventKind::PeerLeft,
                Some(id.0),
                json!({"id": id.0, "addr": addr.to_string(), "reason": reason.to_string()}),
            ),
            PoolEvent::Banned {
                subnet,
                until,
                reason,
            } => (
                EventKind::Ban,
                None,
                json!({
                    "subnet": subnet.to_string(),
                    "until": until.as_secs(),
                    "reason": reason.to_string(),
                }),
            ),
            PoolEvent::Evicted { id, addr } => (
                EventKind::Eviction,
                Some(id.0),
                json!({"id": id.0, "addr": addr.to_string()}),
            ),
        };
        (self.events.contains(&kind) && peer.map_or(true, |p| self.passes_peer(p)))
            .then(|| notification(kind.as_str(), params))
    }

    /// The notification for `msg`, if it passes.
    pub fn message(&self, msg: &PeerMessage) -> Option<Value> {
        (self.events.contains(&EventKind::PeerMessage)
            && self.commands.contains(&msg.kind)
            && self.passes_peer(msg.peer.0))
        .then(|| {
            notification(
                EventKind::PeerMessage.as_str(),
                json!({
                    "peer": msg.peer.0,
                    "addr": msg.addr.to_string(),
                    "command": msg.message.command().to_string(),
                    "size": decode::payload_size(&msg.message),
                    "message": decode::message_json(&msg.message),
                }),
            )
        })
    }
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, RpcError> {
    let list = v.as_array().ok_or_else(|| {
        RpcError::invalid_params(format!("subscribe: {what:?} must be a list of names"))
    })?;
    list.iter()
        .map(|s| {
            s.as_str().map(str::to_owned).ok_or_else(|| {
                RpcError::invalid_params(format!("subscribe: not a name in {what:?}: {s}"))
            })
        })
        .collect()
}

/// A connected peer as notifications and `connected_peers` show it.
pub fn peer_json(p: &PeerInfo) -> Value {
    json!({
        "id": p.id.0,
        "addr": p.addr.to_string(),
        "direction": match p.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        },
        "user_agent": p.user_agent,
        "version": p.version,
        "services": p.services.to_u64(),
    })
}

/// What [`EventStream::next`] produced.
#[derive(Debug)]
pub enum Next {
    /// A notification to send.
    Notify(Value),
    /// The subscriber fell behind and missed this many events; it is to be dropped.
    Lagged(u64),
    /// The pool is gone.
    Closed,
}

/// A filtered subscription to the bus.
#[derive(Debug)]
pub struct EventStream {
    filter: Filter,
    lifecycle: Option<Subscription>,
    messages: Option<MessageSubscription>,
}

impl EventStream {
    /// Subscribes to `bus` for what `filter` lets through.
    pub fn new(bus: &EventBus, filter: Filter) -> EventStream {
        let lifecycle = filter.lifecycle().then(|| bus.subscribe());
        let messages =
            (!filter.commands.is_empty()).then(|| bus.subscribe_messages(&filter.commands));
        EventStream {
            filter,
            lifecycle,
            messages,
        }
    }

    /// The filter in force.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The next notification that passes the filter. Cancel-safe: an event is only taken
    /// from the bus when it is returned or filtered out.
    pub async fn next(&mut self) -> Next {
        let filter = &self.filter;
        loop {
            // Lifecycle first, so that a peer's joining is told before its messages.
            let got: Result<Option<Option<Value>>, Lagged> = tokio::select! {
                biased;
                r = recv_lifecycle(&mut self.lifecycle) => {
                    r.map(|e| e.map(|e| filter.pool_event(&e)))
                }
                r = recv_message(&mut self.messages) => r.map(|m| m.map(|m| filter.message(&m))),
            };
            match got {
                Err(Lagged(n)) => return Next::Lagged(n),
                Ok(None) => return Next::Closed,
                Ok(Some(None)) => continue,
                Ok(Some(Some(v))) => return Next::Notify(v),
            }
        }
    }
}

/// The next lifecycle event; `Ok(None)` once the bus is gone; never without a subscription.
async fn recv_lifecycle(sub: &mut Option<Subscription>) -> Result<Option<PoolEvent>, Lagged> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The next message; `Ok(None)` once the bus is gone; never without a subscription.
async fn recv_message(
    sub: &mut Option<MessageSubscription>,
) -> Result<Option<PeerMessage>, Lagged> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The lag notice.
pub fn lagged_notice(missed: u64) -> Value {
    notification(LAGGED, json!({"missed": missed}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn filters_default_to_lifecycle_and_follow_commands() {
        let f = Filter::from_params(&Map::new()).unwrap();
        assert!(!f.events.contains(&EventKind::PeerMessage));
        assert!(f.commands.is_empty());
        let f = Filter::from_params(&params(json!({"commands": ["inv", "ping"]}))).unwrap();
        assert!(f.events.contains(&EventKind::PeerMessage));
        assert_eq!(f.commands, vec![MessageKind::Inv, MessageKind::Ping]);
        let f = Filter::from_params(&params(json!({"events": ["peer_message"]}))).unwrap();
        assert_eq!(f.commands.len(), MessageKind::ALL.len());
        assert!(!f.lifecycle());
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        for bad in [
            json!({"events": ["nope"]}),
            json!({"events": "peer_joined"}),
            json!({"commands": ["notacommand"]}),
            json!({"peers": [-1]}),
            json!({"peers": 3}),
            json!({"colour": "red"}),
        ] {
            let e = Filter::from_params(&params(bad.clone())).unwrap_err();
            assert!(e.message.starts_with("subscribe:"), "{bad}: {e}");
        }
    }
}
