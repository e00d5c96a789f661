//! A pool with the node RPC server in front, and loopback peers to connect it to.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use peerpool_net::pool::{self, Pool};
use peerpool_rpc::node::client::{Client, HttpReply};
use peerpool_rpc::node::{Config, Credentials, Server};
use peerpool_rpc::Daemon;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "hunter2";

/// Longest a poll waits for the pool to reach a state: the pool gets there in milliseconds,
/// this only bounds a test on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// A pool on loopback.
pub async fn pool() -> Pool {
    let chain = peerpool_wire::Network::Regtest.params();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = pool::Config::default().allow_local_addresses();
    config.dns_seed = false;
    // No automatic dials: the tests decide every connection.
    config.machine.connman.target_outbound = 0;
    config.machine.connman.feeler_interval = None;
    Pool::start(
        config,
        peerpool_net::Config::new(chain),
        vec![listener],
        CancellationToken::new(),
    )
    .await
}

/// The node under test: a pool and its RPC server.
pub struct Node {
    pub pool: Pool,
    pub server: Server,
    pub shutdown: CancellationToken,
}

impl Node {
    pub async fn start() -> Node {
        Node::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Node {
        let pool = pool().await;
        let shutdown = CancellationToken::new();
        let daemon = Daemon {
            pool: pool.handle(),
            chain: peerpool_wire::Network::Regtest.params(),
            data_dir: None,
            started: SystemTime::now(),
            user_agent: "/peerpool:test/".to_owned(),
            listening: pool.listening().to_vec(),
            shutdown: shutdown.clone(),
        };
        let mut config = Config::new(
            vec!["127.0.0.1:0".parse().unwrap()],
            Credentials::default().with_password(USER, PASSWORD),
        );
        adjust(&mut config);
        let server = Server::start(config, daemon).await.unwrap();
        Node {
            pool,
            server,
            shutdown,
        }
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        self.server.local_addrs()[0]
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.rpc_addr(), Some((USER, PASSWORD)))
            .await
            .unwrap()
    }

    /// Posts `body` on a fresh authenticated connection.
    pub async fn post(&self, body: &str) -> HttpReply {
        self.client()
            .await
            .post("/", body.to_owned())
            .await
            .unwrap()
    }

    /// Calls `method` and returns (HTTP status, reply).
    pub async fn call(&self, method: &str, params: Value) -> (u16, Value) {
        let r = self.client().await.call(method, params).await.unwrap();
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        (r.status.as_u16(), r.json().unwrap())
    }

    /// The result of a call that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let (status, reply) = self.call(method, params).await;
        assert_eq!(status, 200, "{method}: {reply}");
        assert_eq!(reply["error"], Value::Null, "{method}: {reply}");
        reply["result"].clone()
    }

    /// Polls `method` until `pred` holds on its result.
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Connects to a new loopback peer (`addnode onetry`) and waits for the handshake to be
    /// complete on our side: the peer's verack received, not only its version (which arrives
    /// first, so `version` alone is set while the verack may still be on its way).
    pub async fn connect_peer(&self, peer: &Pool) -> String {
        let target = peer.listening()[0].to_string();
        self.ok("addnode", serde_json::json!([target, "onetry"]))
            .await;
        self.wait_for("getpeerinfo", Value::Null, |r| {
            r.as_array().unwrap().iter().any(|p| {
                p["addr"] == Value::String(target.clone())
                    && p["version"].as_u64() != Some(0)
                    && p["bytesrecv_per_msg"].get("verack").is_some()
            })
        })
        .await;
        target
    }
}

/// Replaces the value of every key in `keys`, at any depth, with "*".
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
