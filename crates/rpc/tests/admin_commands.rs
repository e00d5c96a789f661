//! The admin commands against a real pool with live loopback peers: the shapes ElectrumX's
//! client reads, and the effects of `disconnect` and `log`.

use peerpool_net::bus::PoolEvent;
use peerpool_rpc::admin::client::Client;
use peerpool_rpc::admin::Config;
use peerpool_rpc::error::INVALID_PARAMS;
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::{joined, net_addr, start_idle};
use peerpool_testkit::rpc::admin::{call, serve_admin};
use peerpool_testkit::{init_logs, within};
use serde_json::{json, Value};

/// A hub with two spokes dialed in, and a client of the hub's admin listener.
async fn hub_and_spokes(net: u8) -> (peerpool_net::Pool, Vec<peerpool_net::Pool>, Client) {
    init_logs();
    let hub = start_idle(ip(net, 1), "hub", 1024).await;
    let mut spokes = Vec::new();
    for i in 0..2 {
        let s = start_idle(ip(net, 10 + i), &format!("spoke{i}"), 1024).await;
        s.handle().connect(net_addr(&hub)).await.unwrap();
        spokes.push(s);
    }
    joined(&hub, 2).await;
    // The listener serves until its daemon's token is cancelled: dropping it is fine.
    let (_, addr) = serve_admin(&hub, Config::default()).await;
    let client = Client::connect(addr).await.unwrap();
    (hub, spokes, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_groups_and_getinfo_describe_the_live_peers() {
    let (hub, _spokes, mut c) = hub_and_spokes(40).await;
    let details = hub.handle().peer_details().await.unwrap();
    let mut ids: Vec<u64> = details.iter().map(|d| d.id.0).collect();
    ids.sort();

    let sessions = call(&mut c, "sessions", json!({})).await;
    let rows = sessions.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{sessions}");
    let got: Vec<u64> = rows.iter().map(|r| r[0].as_u64().unwrap()).collect();
    assert_eq!(got, ids, "one row per connection, by id");
    for (i, r) in rows.iter().enumerate() {
        let r = r.as_array().unwrap();
        assert_eq!(r.len(), 15, "ElectrumX's 15 columns: {r:?}");
        let flags = r[1].as_str().unwrap();
        assert!(flags.starts_with("IP"), "inbound, plaintext: {flags}");
        assert!(flags.ends_with('1'), "priority 1 at no cost: {flags}");
        assert_eq!(
            r[2].as_str().unwrap().split(':').next().unwrap(),
            ip(40, 10 + i as u8).to_string()
        );
        assert!(
            r[3].as_str().unwrap().contains(&format!("spoke{i}")),
            "user agent: {r:?}"
        );
        assert_eq!(r[4], "70016");
        for n in [5, 6] {
            assert!(r[n].is_number(), "costs are numbers: {r:?}");
        }
        for n in 7..14 {
            assert!(r[n].is_u64(), "counts are integers: {r:?}");
        }
        assert!(
            r[10].as_u64().unwrap() >= 2,
            "version and verack received: {r:?}"
        );
        assert!(r[11].as_u64().unwrap() > 0 && r[13].as_u64().unwrap() > 0);
        assert!(r[14].as_f64().unwrap() >= 0.0);
    }

    let groups = call(&mut c, "groups", Value::Null).await;
    let groups = groups.as_array().unwrap();
    // Loopback addresses each form their own group.
    assert_eq!(groups.len(), 2, "{groups:?}");
    for g in groups {
        let g = g.as_array().unwrap();
        assert_eq!(g.len(), 11);
        assert_eq!(g[1], 1, "one session each: {g:?}");
    }

    let info = call(&mut c, "getinfo", json!([])).await;
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["pid"], std::process::id());
    assert_eq!(info["sessions"]["count"], 2);
    assert_eq!(info["sessions"]["inbound"], 2);
    assert_eq!(info["sessions"]["outbound"], 0);
    assert_eq!(info["sessions"]["closing"], 0);
    assert_eq!(info["sessions"]["paused"], 0);
    assert_eq!(info["groups"], 2);
    assert_eq!(info["bans"], 0);
    assert!(info["address book"]["total"].is_u64());
    assert!(info["uptime"].is_string());

    // The bus's requests answer on the same connection.
    assert_eq!(call(&mut c, "peer_count", json!({})).await, 2);
    let peers = call(&mut c, "connected_peers", json!({})).await;
    assert_eq!(peers.as_array().unwrap().len(), 2);
    assert_eq!(peers[0]["direction"], "inbound");
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_lists_the_address_book_with_electrumx_fields() {
    let (_hub, spokes, _c) = hub_and_spokes(41).await;
    // The spokes dialed the hub: the hub is in their books, tried and connected. The hub
    // counting a spoke says nothing of the spoke's own side (it takes the hub's verack, sent
    // before the spoke's), so wait for the spoke to count the hub too.
    joined(&spokes[0], 1).await;
    let (_server, addr) = serve_admin(&spokes[0], Config::default()).await;
    let mut c = Client::connect(addr).await.unwrap();
    let peers = call(&mut c, "peers", json!({})).await;
    let list = peers.as_array().unwrap();
    let hub = list
        .iter()
        .find(|p| p["host"] == ip(41, 1).to_string())
        .unwrap_or_else(|| panic!("the hub in {peers}"));
    let host = hub["host"].as_str().unwrap();
    assert!(hub["features"]["hosts"][host]["tcp_port"].is_u64());
    for key in ["server_version", "protocol_min", "protocol_max", "pruning"] {
        assert!(hub["features"].get(key).is_some(), "features.{key}: {hub}");
    }
    assert_eq!(hub["status"], "good", "{hub}");
    assert!(hub["try_count"].is_u64());
    assert!(hub["source"].is_string());
    assert_eq!(hub["ip_addr"], ip(41, 1).to_string());
    assert_eq!(hub["connected"], true);

    // Addresses heard of but never reached, and banned ones, in ElectrumX's words.
    let h = spokes[0].handle();
    // The book's buckets are keyed by a random secret: an address may find its slot taken
    // (the add is refused), so each is added on its own until one lands.
    let mut added = Vec::new();
    for net in [41u8, 42] {
        let landed = async {
            for host in 1..=20u8 {
                let a: peerpool_core::addr::NetAddr =
                    format!("10.{net}.0.{host}:18444").parse().unwrap();
                if h.add_addresses(vec![a]).await.unwrap() == 1 {
                    return a;
                }
            }
            panic!("no address of 10.{net}.0.0/24 taken by the book");
        };
        added.push(landed.await);
    }
    let (never, banned) = (added[0], added[1]);
    h.ban(
        "10.42.0.0/16".parse().unwrap(),
        std::time::Duration::from_secs(600),
    )
    .await
    .unwrap();
    let peers = call(&mut c, "peers", json!({})).await;
    let find = |host: &str| {
        peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["host"] == host)
            .unwrap_or_else(|| panic!("{host} in {peers}"))
            .clone()
    };
    let n = find(&never.host.to_string());
    assert_eq!(n["status"], "never", "{n}");
    assert_eq!(n["last_good"], Value::Null);
    assert_eq!(n["try_count"], 0);
    assert_eq!(find(&banned.host.to_string())["status"], "bad");
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnect_answers_per_id_and_disconnects() {
    let (hub, _spokes, mut c) = hub_and_spokes(42).await;
    let mut events = hub.bus().subscribe();
    let id = hub.handle().peer_details().await.unwrap()[0].id;
    let answer = call(
        &mut c,
        "disconnect",
        json!({"session_ids": [id.to_string(), "999", "nonsense"]}),
    )
    .await;
    assert_eq!(
        answer,
        json!([
            format!("disconnecting session {id}"),
            "unknown: 999",
            "unknown: nonsense"
        ])
    );
    within("the peer leaving", async {
        loop {
            if let Ok(Some(PoolEvent::PeerLeft { id: left, .. })) = events.recv().await {
                if left == id {
                    return;
                }
            }
        }
    })
    .await;
    joined(&hub, 1).await;

    // Not a list of ids: a clean error, and the connection goes on.
    for bad in [
        json!({}),
        json!({"session_ids": "1"}),
        json!({"session_ids": []}),
        json!([{"a": 1}]),
    ] {
        let e = c
            .call("disconnect", bad.clone())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code, INVALID_PARAMS, "{bad}: {e}");
    }
    assert_eq!(
        call(&mut c, "disconnect", json!(["12345"])).await,
        json!(["unknown: 12345"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_toggles_and_shows_in_the_flags() {
    let (hub, _spokes, mut c) = hub_and_spokes(43).await;
    let id = hub.handle().peer_details().await.unwrap()[0].id;
    let flags_of = |sessions: &Value| {
        sessions
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == id.0)
            .map(|r| r[1].as_str().unwrap().to_string())
            .unwrap()
    };
    let ids = json!({"session_ids": [id.to_string(), "77"]});
    assert_eq!(
        call(&mut c, "log", ids.clone()).await,
        json!([format!("logging session {id}"), "unknown: 77"])
    );
    let logged = flags_of(&call(&mut c, "sessions", json!({})).await);
    assert!(logged.contains('L'), "{logged}");
    assert_eq!(
        call(&mut c, "getinfo", json!({})).await["sessions"]["logged"],
        1
    );
    assert_eq!(
        call(&mut c, "log", ids).await,
        json!([format!("not logging session {id}"), "unknown: 77"])
    );
    assert!(!flags_of(&call(&mut c, "sessions", json!({})).await).contains('L'));

    assert_eq!(
        call(&mut c, "log", json!({"session_ids": ["all"]})).await,
        json!(["logging all sessions"])
    );
    assert_eq!(
        call(&mut c, "getinfo", json!({})).await["sessions"]["logged"],
        2
    );
    assert_eq!(
        call(&mut c, "log", json!({"session_ids": ["none"]})).await,
        json!(["logging no sessions"])
    );
    assert_eq!(
        call(&mut c, "getinfo", json!({})).await["sessions"]["logged"],
        0
    );
}
