//! Node RPC benchmark: `getpeerinfo` latency with many connected peers against `uptime` on
//! the same server in the same run, and calls per second on keep-alive connections against a
//! minimal axum JSON echo server in the same run.
//!
//! `cargo bench -p peerpool-rpc --bench rpc`. Environment: `PEERS` (default 10000),
//! `SECONDS` per throughput run (default 5), `CONNECTIONS` for throughput (default 4).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use peerpool_rpc::node::client::Client;
use peerpool_rpc::node::{Config, Credentials, Server};
use peerpool_testkit::pool::{pool_config, start_with};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const USER: &str = "bench";
const PASSWORD: &str = "bench";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Latencies of `n` calls of `method` on one keep-alive connection, sorted.
async fn latencies(addr: SocketAddr, method: &str, n: usize) -> Vec<Duration> {
    let mut c = Client::connect(addr, Some((USER, PASSWORD))).await.unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c.call(method, json!([])).await.unwrap();
        out.push(t.elapsed());
        assert_eq!(r.status.as_u16(), 200, "{method}");
    }
    out.sort();
    out
}

/// Calls per second of `method` over `conns` keep-alive connections for `secs`.
async fn throughput(
    addr: SocketAddr,
    path: &'static str,
    method: &'static str,
    conns: usize,
    secs: u64,
) -> f64 {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr, Some((USER, PASSWORD))).await.unwrap();
            let body =
                json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": []}).to_string();
            let mut n = 0u64;
            while Instant::now() < until {
                let r = c.post(path, body.clone()).await.unwrap();
                assert_eq!(r.status.as_u16(), 200);
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / secs as f64
}

/// A minimal axum server answering every JSON body with `{"result": <body>, "error": null, "id": 1}`.
async fn echo_server() -> SocketAddr {
    let app = Router::new().route(
        "/",
        post(|axum::Json(v): axum::Json<Value>| async move {
            axum::Json(json!({"result": v, "error": null, "id": 1}))
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

/// Set in the child process that holds the peers' ends: `ADDR,COUNT`.
const FARM_ENV: &str = "PEERPOOL_RPC_BENCH_FARM";

fn main() {
    raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match std::env::var(FARM_ENV) {
        Ok(spec) => runtime.block_on(farm(&spec)),
        Err(_) => runtime.block_on(run()),
    }
}

/// The soft open-file limit up to the hard one: each process holds one end of every peer
/// connection, so 10,000 peers need a little over 10,000 descriptors per process.
fn raise_nofile() {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < hard {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard).unwrap();
    }
}

/// The child: dials COUNT peers to ADDR (a few hundred at a time), says `ready`, and holds
/// them until its stdin closes.
async fn farm(spec: &str) {
    let (addr, count) = spec.split_once(',').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let count: usize = count.parse().unwrap();
    let chain = peerpool_wire::Network::Regtest.params();
    let peer_config = Arc::new(peerpool_net::Config::new(chain));
    let gate = Arc::new(Semaphore::new(256));
    let mut dials = Vec::with_capacity(count);
    for _ in 0..count {
        let permit = Arc::clone(&gate).acquire_owned().await.unwrap();
        let cfg = Arc::clone(&peer_config);
        dials.push(tokio::spawn(async move {
            let p = peerpool_net::dial(cfg, addr, Duration::from_secs(30)).await;
            drop(permit);
            p
        }));
    }
    let mut held = Vec::with_capacity(count);
    for d in dials {
        held.push(d.await.unwrap().expect("dialing the pool"));
    }
    println!("ready");
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    drop(held);
}

async fn run() {
    let peers = env_or("PEERS", 10_000) as usize;
    let secs = env_or("SECONDS", 5);
    let conns = env_or("CONNECTIONS", 4) as usize;

    let mut config = pool_config(0);
    config.machine.connman.max_connections = peers + 100;
    config.machine.connman.max_inbound_per_group = peers + 100;
    let chain = peerpool_wire::Network::Regtest.params();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let pool = start_with(bind, config, peerpool_net::Config::new(chain)).await;
    let p2p = pool.listening()[0];
    let daemon = peerpool_testkit::rpc::daemon(&pool, CancellationToken::new());
    let server = Server::start(
        Config::new(
            vec!["127.0.0.1:0".parse().unwrap()],
            Credentials::default().with_password(USER, PASSWORD),
        ),
        daemon,
    )
    .await
    .unwrap();
    let rpc = server.local_addrs()[0];

    // The peers' ends live in a child process (this one holds the pool's ends).
    let t = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(FARM_ENV, format!("{p2p},{peers}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "the peer process failed");
    let handle = pool.handle();
    let deadline = Instant::now() + Duration::from_secs(300);
    while handle.peer_count().await.unwrap() < peers {
        assert!(Instant::now() < deadline, "peers never all joined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{peers} peers connected and handshaken in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut c = Client::connect(rpc, Some((USER, PASSWORD))).await.unwrap();
    let r = c.call("getpeerinfo", json!([])).await.unwrap();
    let listed = r.json().unwrap()["result"].as_array().unwrap().len();
    assert_eq!(listed, peers);
    println!(
        "getpeerinfo reply: {} bytes for {listed} peers",
        r.body.len()
    );

    let gpi = latencies(rpc, "getpeerinfo", 50).await;
    let up = latencies(rpc, "uptime", 500).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "latency getpeerinfo ({peers} peers): p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&gpi, 0.5)),
        ms(percentile(&gpi, 0.99))
    );
    println!(
        "latency uptime (baseline, same server): p50 {:.3} ms, p99 {:.3} ms",
        ms(percentile(&up, 0.5)),
        ms(percentile(&up, 0.99))
    );

    // Where getpeerinfo's time goes: the pool's snapshot of every connection alone.
    let mut snap = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let d = handle.peer_details().await.unwrap();
        snap.push(t.elapsed());
        assert_eq!(d.len(), peers);
    }
    snap.sort();
    println!(
        "pool snapshot alone (peer_details): p50 {:.1} ms",
        ms(percentile(&snap, 0.5))
    );

    let echo = echo_server().await;
    let ours = throughput(rpc, "/", "uptime", conns, secs).await;
    let theirs = throughput(echo, "/", "uptime", conns, secs).await;
    println!(
        "keep-alive calls/s over {conns} connections, {secs} s each: peerpool uptime {ours:.0}, axum JSON echo {theirs:.0} ({:.0}%)",
        100.0 * ours / theirs
    );
    drop(child.stdin.take());
    let _ = child.wait();
    server.stop().await;
}
