//! `GET /metrics`: the pool in Prometheus' (OpenMetrics) text format.
//!
//! Peers, traffic and bytes per message kind are read from the pool at each scrape, so they
//! are never stale; handshakes, bans, evictions and departures are counted from the pool's
//! event bus as they happen; RPC calls are counted by the server.

use std::collections::BTreeMap;
use std::sync::Mutex;

use peerpool_net::bus::PoolEvent;
use peerpool_net::pool::{PoolHandle, PoolView};
use peerpool_net::Direction;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    peers: Family<Labels, Gauge>,
    bytes: Family<Labels, Gauge>,
    message_bytes: Family<Labels, Gauge>,
    messages: Family<Labels, Gauge>,
    handshakes: Counter,
    bans: Counter,
    evictions: Counter,
    disconnects: Family<Labels, Counter>,
    rpc_calls: Family<Labels, Counter>,
    auth_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics with nothing counted yet.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("peerpool");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            peers: Family::default(),
            bytes: Family::default(),
            message_bytes: Family::default(),
            messages: Family::default(),
            handshakes: Counter::default(),
            bans: Counter::default(),
            evictions: Counter::default(),
            disconnects: Family::default(),
            rpc_calls: Family::default(),
            auth_failures: Counter::default(),
        };
        registry.register(
            "peers",
            "Open connections by direction and network",
            m.peers.clone(),
        );
        registry.register(
            "bytes",
            "Bytes sent and received since start, closed connections included",
            m.bytes.clone(),
        );
        registry.register(
            "message_bytes",
            "Bytes per message kind over the open connections",
            m.message_bytes.clone(),
        );
        registry.register(
            "messages",
            "Messages sent and received over the open connections",
            m.messages.clone(),
        );
        registry.register(
            "handshakes",
            "Peers that completed the handshake",
            m.handshakes.clone(),
        );
        registry.register("bans", "Bans made", m.bans.clone());
        registry.register(
            "evictions",
            "Inbound peers evicted for a newcomer",
            m.evictions.clone(),
        );
        registry.register(
            "disconnects",
            "Joined peers that left, by reason",
            m.disconnects.clone(),
        );
        registry.register(
            "rpc_calls",
            "RPC calls by method and outcome",
            m.rpc_calls.clone(),
        );
        registry.register(
            "auth_failures",
            "Failed credential checks on the node RPC and the admin listener",
            m.auth_failures.clone(),
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        m
    }

    /// The counter of failed credential checks, for [`super::auth::FailedAuth::counting`].
    pub fn auth_failures(&self) -> Counter {
        self.auth_failures.clone()
    }

    /// Counts one RPC call (`method` is `other` for unknown names).
    pub fn rpc_call(&self, method: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.rpc_calls
            .get_or_create(&labels(&[("method", method), ("outcome", outcome)]))
            .inc();
    }

    /// Counts the pool's events until `stop` or the pool ends.
    pub async fn follow(&self, pool: PoolHandle, stop: CancellationToken) {
        let mut events = pool.subscribe();
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                Ok(Some(PoolEvent::PeerJoined(_))) => {
                    self.handshakes.inc();
                }
                Ok(Some(PoolEvent::PeerLeft { reason, .. })) => {
                    let reason = reason.to_string();
                    let kind = reason.split(':').next().unwrap_or("").to_owned();
                    self.disconnects
                        .get_or_create(&vec![("reason".to_owned(), kind)])
                        .inc();
                }
                Ok(Some(PoolEvent::Banned { .. })) => {
                    self.bans.inc();
                }
                Ok(Some(PoolEvent::Evicted { .. })) => {
                    self.evictions.inc();
                }
                // Lagged: events were missed; the counters undercount, the scrape goes on.
                Err(_) => {}
                Ok(None) => return,
            }
        }
    }

    /// The text of a scrape, with the pool's current figures.
    pub async fn render(&self, pool: &PoolHandle) -> String {
        self.peers.clear();
        self.message_bytes.clear();
        self.messages.clear();
        // Tallied inside the pool, one connection at a time: a scrape of a pool with
        // thousands of peers never holds a snapshot of every one at once.
        if let Ok(tally) = pool.query(tally).await {
            for ((dir, network), n) in tally.peers {
                self.peers
                    .get_or_create(&labels(&[("direction", dir), ("network", network)]))
                    .set(n);
            }
            for ((way, kind), b) in tally.bytes {
                self.message_bytes
                    .get_or_create(&labels(&[("direction", way), ("message", kind)]))
                    .inc_by(i64::try_from(b).unwrap_or(i64::MAX));
            }
            for (way, n) in [("sent", tally.sent), ("received", tally.received)] {
                self.messages
                    .get_or_create(&labels(&[("direction", way)]))
                    .inc_by(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if let Ok(t) = pool.net_totals().await {
            for (way, n) in [("sent", t.bytes_sent), ("received", t.bytes_recv)] {
                self.bytes
                    .get_or_create(&labels(&[("direction", way)]))
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

/// The pool's connections summed up for a scrape.
#[derive(Default)]
struct Tally {
    /// Connections by direction and network.
    peers: BTreeMap<(&'static str, &'static str), i64>,
    /// Bytes by way (sent, received) and message type.
    bytes: BTreeMap<(&'static str, &'static str), u64>,
    /// Messages sent and received.
    sent: u64,
    received: u64,
}

fn tally(view: &PoolView<'_>) -> Tally {
    let mut t = Tally::default();
    for (id, known) in view.machine().peers() {
        let dir = match known.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        };
        *t.peers
            .entry((dir, known.addr.network().as_str()))
            .or_default() += 1;
        let Some(s) = view.peer(id).and_then(|p| p.stats()) else {
            continue;
        };
        for (way, list) in [
            ("sent", &s.bytes_sent_per_msg),
            ("received", &s.bytes_recv_per_msg),
        ] {
            for (kind, b) in list {
                *t.bytes.entry((way, kind.as_str())).or_default() += b;
            }
        }
        t.sent += s.msgs_sent;
        t.received += s.msgs_recv;
    }
    t
}
