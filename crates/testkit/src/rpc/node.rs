//! A pool with the node RPC server in front ([`Node`]), loopback peers to connect it to
//! ([`pool`]), and the HTTP calls a test makes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerpool_net::pool::Pool;
use peerpool_rpc::node::client::{Client, HttpReply};
use peerpool_rpc::node::{Config, Credentials, Server};
use peerpool_wire::Network;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::pool::{pool_config, start_with};
use crate::WAIT;

/// The RPC user of a [`Node`].
pub const USER: &str = "alice";
/// The RPC password of [`USER`].
pub const PASSWORD: &str = "hunter2";

/// How often [`Node::wait_for`] calls again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// A regtest pool on 127.0.0.1 (port from the OS) with peerpool's default peer settings (its
/// own user agent, Core's timers) that dials nobody on its own: the tests decide every
/// connection.
pub async fn pool() -> Pool {
    let peers = peerpool_net::Config::new(Network::Regtest.params());
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    start_with(addr, pool_config(0), peers).await
}

/// The node under test: a [`pool`] and its RPC server on 127.0.0.1 (port from the OS), with
/// password credentials [`USER`] and [`PASSWORD`].
pub struct Node {
    /// The pool behind the server.
    pub pool: Pool,
    /// The RPC server.
    pub server: Server,
    /// Cancelled by the `stop` method.
    pub shutdown: CancellationToken,
}

impl Node {
    /// Starts a node with the default RPC settings.
    pub async fn start() -> Node {
        Node::start_with(|_| {}).await
    }

    /// Starts a node with the RPC settings `adjust` makes of the default ones.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Node {
        let pool = pool().await;
        let shutdown = CancellationToken::new();
        let mut config = Config::new(
            vec!["127.0.0.1:0".parse().expect("literal address")],
            Credentials::default().with_password(USER, PASSWORD),
        );
        adjust(&mut config);
        let server = Server::start(config, super::daemon(&pool, shutdown.clone()))
            .await
            .expect("starting the node RPC server");
        Node {
            pool,
            server,
            shutdown,
        }
    }

    /// Where the RPC server listens.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.server.local_addrs()[0]
    }

    /// A new authenticated connection.
    pub async fn client(&self) -> Client {
        Client::connect(self.rpc_addr(), Some((USER, PASSWORD)))
            .await
            .expect("connecting to the node RPC")
    }

    /// Posts `body` on a fresh authenticated connection.
    pub async fn post(&self, body: &str) -> HttpReply {
        self.client()
            .await
            .post("/", body.to_owned())
            .await
            .expect("posting to the node RPC")
    }

    /// Calls `method` and returns (HTTP status, reply), checking that the reply is JSON.
    pub async fn call(&self, method: &str, params: Value) -> (u16, Value) {
        let r = self
            .client()
            .await
            .call(method, params)
            .await
            .unwrap_or_else(|e| panic!("calling {method}: {e}"));
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        (r.status.as_u16(), r.json().expect("a JSON reply"))
    }

    /// The result of a call that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let (status, reply) = self.call(method, params).await;
        assert_eq!(status, 200, "{method}: {reply}");
        assert_eq!(reply["error"], Value::Null, "{method}: {reply}");
        reply["result"].clone()
    }

    /// Calls `method` until `pred` holds on its result, failing after [`WAIT`].
    pub async fn wait_for(
        &self,
        method: &str,
        params: Value,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.ok(method, params.clone()).await;
            if pred(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{method} never matched; last: {r:#}"
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Connects to `peer` (`addnode onetry`) and waits for the handshake to be complete on
    /// our side: the peer's verack received, not only its version (which arrives first, so
    /// `version` alone is set while the verack may still be on its way). Returns the peer's
    /// address as `getpeerinfo` shows it.
    pub async fn connect_peer(&self, peer: &Pool) -> String {
        let target = peer.listening()[0].to_string();
        self.ok("addnode", serde_json::json!([target, "onetry"]))
            .await;
        self.wait_for("getpeerinfo", Value::Null, |r| {
            let peers = r.as_array().expect("getpeerinfo answers a list");
            peers.iter().any(|p| {
                p["addr"] == Value::String(target.clone())
                    && p["version"].as_u64() != Some(0)
                    && p["bytesrecv_per_msg"].get("verack").is_some()
            })
        })
        .await;
        target
    }
}

/// Replaces the value of every key in `keys`, at any depth, with `"*"`: for comparing replies
/// whose timestamps, ports and counters vary with the run.
pub fn mask(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if keys.contains(&k.as_str()) {
                    *x = Value::String("*".into());
                } else {
                    mask(x, keys);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| mask(x, keys)),
        _ => {}
    }
}
