//! The node RPC as Bitcoin Core 31 answers: the manual-connection flag, `onetry` to a peer
//! already connected, the `/wallet/` prefix, `-deprecatedrpc`, and a peer seen before its
//! `version`.

use std::time::Duration;

use peerpool_rpc::node::deprecated::{Deprecated, Deprecation};
use peerpool_testkit::raw::RawPeer;
use peerpool_testkit::rpc::node::{pool, Node};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onetry_to_a_connected_address_opens_nothing() {
    let node = Node::start().await;
    let peer = pool().await;
    let target = node.connect_peer(&peer).await;
    for _ in 0..3 {
        // Core answers null and opens no connection ("already connected").
        assert_eq!(
            node.ok("addnode", json!([target, "onetry"])).await,
            Value::Null
        );
    }
    // `add` makes it a manual peer without a second connection either.
    node.ok("addnode", json!([target, "add"])).await;
    // The other side would see a second inbound connection: count there after a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = node.ok("getpeerinfo", json!([])).await;
    assert_eq!(info.as_array().unwrap().len(), 1, "{info:#}");
    assert_eq!(info[0]["addnode"], json!(true));
    assert_eq!(info[0]["connection_type"], json!("manual"));
    let theirs = peer.handle().peer_details().await.unwrap();
    assert_eq!(theirs.len(), 1, "the peer saw {} connections", theirs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_prefix_is_served_like_the_root() {
    let node = Node::start().await;
    let body = r#"{"jsonrpc":"1.0","id":7,"method":"getconnectioncount","params":[]}"#;
    for path in ["/wallet/", "/wallet/w1", "/wallet/a/b", "/wallet/%20"] {
        let r = node
            .client()
            .await
            .post(path, body.to_owned())
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 200, "{path}");
        assert_eq!(
            r.json().unwrap(),
            json!({"result": 0, "error": null, "id": 7}),
            "{path}"
        );
    }
    // Outside the prefix: nothing.
    let r = node
        .client()
        .await
        .post("/walletx", body.to_owned())
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecatedrpc_warnings_gives_the_string_back() {
    let current = Node::start().await;
    let info = current.ok("getnetworkinfo", json!([])).await;
    assert_eq!(info["version"], json!(310000));
    assert_eq!(info["warnings"], json!([]));
    let old = Node::start_with(|c| c.deprecated = Deprecated::new([Deprecation::Warnings])).await;
    let info = old.ok("getnetworkinfo", json!([])).await;
    assert_eq!(info["warnings"], json!(""));
    assert_eq!(info["version"], json!(310000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_before_its_version_has_every_field() {
    let node = Node::start().await;
    // A connection that says nothing: the node knows nothing of the peer yet.
    let _silent = RawPeer::connect(node.pool.listening()[0]).await;
    let info = node
        .wait_for("getpeerinfo", json!([]), |r| {
            r.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let p = &info[0];
    assert_eq!(p["inbound"], json!(true));
    assert_eq!(p["version"], json!(0));
    assert_eq!(p["subver"], json!(""));
    assert_eq!(p["startingheight"], json!(-1));
    assert_eq!(p["addnode"], json!(false));
    // Core's functional test reads these before the version arrives.
    assert_eq!(p["addr_processed"], json!(0));
    assert_eq!(p["addr_rate_limited"], json!(0));
    assert_eq!(p["inv_to_send"], json!(0));
    assert_eq!(p["last_inv_sequence"], json!(0));
    assert_eq!(p["connection_type"], json!("inbound"));
    assert!(
        p.get("mapped_as").is_none(),
        "no asmap, no mapped_as: {p:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getrawaddrman_lists_every_slot() {
    let node = Node::start().await;
    assert_eq!(
        node.ok("getrawaddrman", json!([])).await,
        json!({"new": {}, "tried": {}})
    );
    node.ok("addpeeraddress", json!(["1.2.3.4", 8333])).await;
    node.ok("addpeeraddress", json!(["2001:db8:1::5", 18444, true]))
        .await;
    let raw = node.ok("getrawaddrman", json!([])).await;
    let new = raw["new"].as_object().unwrap();
    let tried = raw["tried"].as_object().unwrap();
    assert_eq!((new.len(), tried.len()), (1, 1), "{raw:#}");
    let (slot, entry) = new.iter().next().unwrap();
    let (bucket, position) = slot.split_once('/').unwrap();
    assert!(bucket.parse::<u16>().unwrap() < 1024);
    assert!(position.parse::<u8>().unwrap() < 64);
    let mut entry = entry.clone();
    assert!(entry["time"].as_u64().unwrap() > 1_700_000_000);
    entry["time"] = json!("*");
    assert_eq!(
        entry,
        json!({
            "address": "1.2.3.4", "port": 8333, "network": "ipv4", "services": 9,
            "time": "*", "source": "1.2.3.4", "source_network": "ipv4",
        })
    );
    let (_, entry) = tried.iter().next().unwrap();
    assert_eq!(entry["address"], json!("2001:db8:1::5"));
    // Documentation addresses are not publicly routable (Core's network class).
    assert_eq!(entry["network"], json!("not_publicly_routable"));
    assert_eq!(entry["port"], json!(18444));
    // Hidden from help, as in Core, yet documented on request.
    let all = node.ok("help", json!([])).await;
    assert!(!all.as_str().unwrap().contains("getrawaddrman"));
    let one = node.ok("help", json!(["getrawaddrman"])).await;
    assert!(one.as_str().unwrap().contains("bucket/position"));
}
