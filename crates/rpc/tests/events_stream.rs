//! `subscribe` on the admin listener: live peer events and messages as notifications, the
//! filters, the requests answered on the same connection, and lag.

use bitcoin::p2p::message::NetworkMessage;
use peerpool_core::peer::PeerId;
use peerpool_net::bus::PoolEvent;
use peerpool_rpc::admin::client::Client;
use peerpool_rpc::admin::Config;
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::{joined, net_addr, start_idle};
use peerpool_testkit::rpc::admin::{call, serve_admin};
use peerpool_testkit::{init_logs, within};
use serde_json::{json, Value};

async fn next(c: &mut Client) -> Value {
    within("a notification", c.notification())
        .await
        .unwrap()
        .expect("a notification, not the end of the connection")
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_joining_and_leaving_are_notified_and_requests_still_answered() {
    init_logs();
    let hub = start_idle(ip(60, 1), "hub", 1024).await;
    let (_, addr) = serve_admin(&hub, Config::default()).await;
    let mut all = Client::connect(addr).await.unwrap();
    let filter = call(&mut all, "subscribe", json!({})).await;
    assert_eq!(
        filter,
        json!({"events": ["peer_joined", "peer_left", "ban", "eviction"], "commands": [], "peers": null})
    );
    let mut left_only = Client::connect(addr).await.unwrap();
    call(
        &mut left_only,
        "subscribe",
        json!({"events": ["peer_left"]}),
    )
    .await;

    let spoke = start_idle(ip(60, 2), "spoke", 1024).await;
    spoke.handle().connect(net_addr(&hub)).await.unwrap();
    let joined = next(&mut all).await;
    assert_eq!(joined["jsonrpc"], "2.0");
    assert_eq!(joined["method"], "peer_joined");
    assert!(joined.get("id").is_none(), "a notification has no id");
    let p = &joined["params"];
    assert!(p["user_agent"].as_str().unwrap().contains("spoke"), "{p}");
    assert_eq!(p["direction"], "inbound");
    assert_eq!(p["version"], 70016);
    let id = p["id"].as_u64().unwrap();

    // The bus's requests, on the subscribed connection.
    assert_eq!(call(&mut all, "peer_count", json!({})).await, 1);
    assert_eq!(
        call(&mut all, "connected_peers", json!({})).await[0]["id"],
        id
    );
    assert_eq!(
        call(&mut all, "disconnect", json!([id])).await,
        json!([format!("disconnecting session {id}")])
    );
    let left = next(&mut all).await;
    assert_eq!(left["method"], "peer_left", "{left}");
    assert_eq!(left["params"]["id"], id);
    assert!(left["params"]["reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    // The other subscriber saw only that.
    assert_eq!(next(&mut left_only).await, left);

    // `connect` dials out; the peer's joining follows on the stream.
    let target = spoke.listening()[0].to_string();
    let answer = call(&mut all, "connect", json!({"addr": target})).await;
    assert_eq!(answer, json!(format!("connecting to {target}")));
    let again = next(&mut all).await;
    assert_eq!(again["method"], "peer_joined");
    assert_eq!(again["params"]["direction"], "outbound");

    // A ban is told, and so is the banned peer's leaving.
    hub.handle()
        .ban(
            "127.0.60.2/32".parse().unwrap(),
            std::time::Duration::from_secs(600),
        )
        .await
        .unwrap();
    let mut methods = Vec::new();
    for _ in 0..2 {
        let n = next(&mut all).await;
        if n["method"] == "ban" {
            assert!(
                n["params"]["subnet"]
                    .as_str()
                    .unwrap()
                    .contains("127.0.60.2"),
                "{n}"
            );
            assert!(n["params"]["until"].as_u64().unwrap() > 0);
        }
        methods.push(n["method"].as_str().unwrap().to_string());
    }
    methods.sort();
    assert_eq!(methods, ["ban", "peer_left"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_of_the_chosen_commands_and_peers_arrive_in_order_and_decoded() {
    init_logs();
    let hub = start_idle(ip(61, 1), "hub", 1024).await;
    let (_, addr) = serve_admin(&hub, Config::default()).await;
    let a = start_idle(ip(61, 2), "a", 1024).await;
    let b = start_idle(ip(61, 3), "b", 1024).await;
    a.handle().connect(net_addr(&hub)).await.unwrap();
    b.handle().connect(net_addr(&hub)).await.unwrap();
    joined(&hub, 2).await;
    joined(&a, 1).await;
    joined(&b, 1).await;
    let hub_peers = hub.handle().connected_peers().await.unwrap();
    let from_a = hub_peers
        .iter()
        .find(|p| p.addr.ip() == ip(61, 2))
        .unwrap()
        .id;
    // A pings the hub right after the handshake; that ping must be in before the
    // subscription starts, or it would show among the test's own.
    within("A's handshake ping", async {
        loop {
            let details = hub.handle().peer_details().await.unwrap();
            let pinged = details.iter().any(|d| {
                d.id == from_a
                    && d.stats.as_ref().is_some_and(|s| {
                        s.bytes_recv_per_msg
                            .iter()
                            .any(|(k, _)| *k == peerpool_wire::MessageKind::Ping)
                    })
            });
            if pinged {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;

    let mut c = Client::connect(addr).await.unwrap();
    let filter = call(
        &mut c,
        "subscribe",
        json!({"events": [], "commands": ["ping", "feefilter"], "peers": [from_a.0]}),
    )
    .await;
    assert_eq!(filter["events"], json!(["peer_message"]));

    // Both spokes send pings and a fee filter; only A's reach the subscriber, in order.
    const N: u64 = 200;
    for (spoke, base) in [(&b, 10_000), (&a, 0)] {
        let h = spoke.handle();
        let hub_id: PeerId = h.connected_peers().await.unwrap()[0].id;
        for n in 0..N {
            h.send_message(hub_id, NetworkMessage::Ping(base + n))
                .await
                .unwrap();
        }
        h.send_message(hub_id, NetworkMessage::FeeFilter(1234))
            .await
            .unwrap();
    }
    // Messages of one command keep their order; commands are separate channels.
    let mut pings = Vec::new();
    let mut fees = Vec::new();
    for _ in 0..=N {
        let m = next(&mut c).await;
        assert_eq!(m["method"], "peer_message");
        let p = m["params"].clone();
        assert_eq!(p["peer"], from_a.0, "{m}");
        match p["command"].as_str() {
            Some("ping") => {
                assert_eq!(p["size"], 8);
                pings.push(p["message"]["nonce"].as_u64().unwrap());
            }
            Some("feefilter") => fees.push(p["message"]["feerate"].clone()),
            _ => panic!("not subscribed: {m}"),
        }
    }
    assert_eq!(pings, (0..N).collect::<Vec<_>>(), "in order, none lost");
    assert_eq!(fees, vec![json!(1234)]);
}

fn evicted(n: u64) -> PoolEvent {
    PoolEvent::Evicted {
        id: PeerId(n),
        addr: "127.0.62.9:1".parse().unwrap(),
    }
}

/// On one thread, events published without yielding all wait in the bus: exactly what a
/// subscriber that cannot keep up sees.
#[tokio::test(flavor = "current_thread")]
async fn nothing_is_lost_up_to_the_bus_bound_and_lag_beyond_it_drops_the_subscriber() {
    init_logs();
    const CAPACITY: usize = 16;
    let hub = start_idle(ip(62, 1), "hub", CAPACITY).await;
    let (_, addr) = serve_admin(&hub, Config::default()).await;
    let mut c = Client::connect(addr).await.unwrap();
    call(&mut c, "subscribe", json!({"events": ["eviction"]})).await;
    let mut other = Client::connect(addr).await.unwrap();

    // Exactly the bound: every event, in order.
    for n in 0..CAPACITY as u64 {
        hub.bus().publish(evicted(n));
    }
    for n in 0..CAPACITY as u64 {
        let e = next(&mut c).await;
        assert_eq!(e["method"], "eviction");
        assert_eq!(e["params"]["id"], n);
    }

    // Past it: a lag notice with the count of missed events, then the end of the connection.
    for n in 0..(CAPACITY as u64 + 24) {
        hub.bus().publish(evicted(100 + n));
    }
    let lag = next(&mut c).await;
    assert_eq!(
        lag,
        json!({"jsonrpc": "2.0", "method": "lagged", "params": {"missed": 24}})
    );
    assert!(
        within("the end of the connection", c.notification())
            .await
            .unwrap()
            .is_none(),
        "a lagging subscriber is dropped"
    );
    // The pool and the listener go on.
    assert_eq!(call(&mut other, "peer_count", json!({})).await, 0);
}
