#![recursion_limit = "256"]
//! Golden request -> response tests of every node RPC method, error paths included, against
//! a real pool with loopback peers. Only values that truly vary (ids, ports, times, byte
//! counts) are masked.

use peerpool_testkit::rpc::node::{mask, pool, Node};
use peerpool_testkit::WAIT;
use serde_json::{json, Value};

/// Asserts a call's HTTP status and whole reply.
async fn golden(node: &Node, method: &str, params: Value, status: u16, expected: Value) {
    let (got_status, got) = node.call(method, params.clone()).await;
    assert_eq!(
        (got_status, &got),
        (status, &expected),
        "{method} {params}: got {got:#}"
    );
}

/// The reply of an error, with the request id the client used (1 on a fresh connection).
fn err(code: i32, message: &str) -> Value {
    json!({ "result": null, "error": { "code": code, "message": message }, "id": 1 })
}

fn ok(result: Value) -> Value {
    json!({ "result": result, "error": null, "id": 1 })
}

/// The help of `method`, as the server shows it (for wrong argument counts).
async fn help_of(node: &Node, method: &str) -> String {
    node.ok("help", json!([method]))
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getpeerinfo_lists_every_field() {
    let node = Node::start().await;
    let peer = pool().await;
    golden(&node, "getpeerinfo", json!([]), 200, ok(json!([]))).await;
    let target = node.connect_peer(&peer).await;
    let mut info = node.ok("getpeerinfo", json!([])).await;
    let p = &info[0];
    assert_eq!(p["addr"], json!(target));
    for kind in ["version", "verack"] {
        assert!(p["bytessent_per_msg"][kind].as_u64().unwrap() > 0, "{p:#}");
        assert!(p["bytesrecv_per_msg"][kind].as_u64().unwrap() > 0, "{p:#}");
    }
    assert!(p["conntime"].as_u64().unwrap() > 1_700_000_000);
    assert!(p["bytessent"].as_u64().unwrap() > 0);
    // The peer's own address arrives in an addr message some time after the handshake.
    assert!(p["addr_processed"].as_u64().unwrap() <= 1, "{p:#}");
    // Ping times are seconds with decimals, and absent (never zero) while unknown: a ping
    // goes out at the handshake, so whether its answer is in yet varies.
    for field in ["pingtime", "minping", "pingwait"] {
        if let Some(t) = p.get(field) {
            assert!(t.is_f64() && t.as_f64().unwrap() < 10.0, "{field}: {p:#}");
        }
    }
    assert!(
        p.get("pingtime").is_some() || p.get("pingwait").is_some(),
        "{p:#}"
    );
    // On loopback the peer sees us at our socket's address.
    assert_eq!(info[0]["addrlocal"], info[0]["addrbind"], "{info:#}");
    for field in ["pingtime", "minping", "pingwait"] {
        info[0].as_object_mut().unwrap().remove(field);
    }
    mask(
        &mut info,
        &[
            "id",
            "addr",
            "addrbind",
            "addrlocal",
            "lastsend",
            "lastrecv",
            "bytessent",
            "bytesrecv",
            "conntime",
            "timeoffset",
            "bytessent_per_msg",
            "bytesrecv_per_msg",
            "addr_processed",
        ],
    );
    let version = peerpool_wire::Network::Regtest.params().protocol_version;
    assert_eq!(
        info,
        json!([{
            "id": "*", "addr": "*", "addrbind": "*", "addrlocal": "*",
            "network": "not_publicly_routable",
            "services": "0000000000000000", "servicesnames": [],
            "relaytxes": true, "lastsend": "*", "lastrecv": "*",
            "last_transaction": 0, "last_block": 0,
            "bytessent": "*", "bytesrecv": "*", "conntime": "*", "timeoffset": "*",
            "version": version, "subver": format!("/peerpool:{}/", env!("CARGO_PKG_VERSION")),
            "inbound": false, "bip152_hb_to": false, "bip152_hb_from": false,
            "addnode": true, "startingheight": 0, "presynced_headers": -1, "banscore": 0,
            "synced_headers": -1, "synced_blocks": -1, "inflight": [], "whitelisted": false,
            "addr_relay_enabled": true, "permissions": [], "minfeefilter": 0.0,
            "bytessent_per_msg": "*", "bytesrecv_per_msg": "*",
            "connection_type": "manual", "transport_protocol_type": "v1", "session_id": "",
            "addr_processed": "*", "addr_rate_limited": 0,
            "inv_to_send": 0, "last_inv_sequence": 0,
        }])
    );
    golden(&node, "getconnectioncount", json!([]), 200, ok(json!(1))).await;
    // The peer's side lists us as inbound.
    let help = help_of(&node, "getpeerinfo").await;
    golden(&node, "getpeerinfo", json!([1]), 500, err(-1, &help)).await;
    peer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addnode_and_getaddednodeinfo() {
    let node = Node::start().await;
    let peer = pool().await;
    let target = peer.listening()[0].to_string();
    golden(&node, "getaddednodeinfo", json!([]), 200, ok(json!([]))).await;
    golden(
        &node,
        "addnode",
        json!([target, "add"]),
        200,
        ok(json!(null)),
    )
    .await;
    golden(
        &node,
        "addnode",
        json!([target, "add"]),
        500,
        err(-23, "Error: Node already added"),
    )
    .await;
    node.wait_for("getaddednodeinfo", json!([]), |r| {
        r[0]["connected"] == json!(true)
    })
    .await;
    golden(
        &node,
        "getaddednodeinfo",
        json!([target]),
        200,
        ok(json!([{
            "addednode": target, "connected": true,
            "addresses": [{ "address": target, "connected": "outbound" }],
        }])),
    )
    .await;
    let info = node.ok("getpeerinfo", json!([])).await;
    assert_eq!(info[0]["addnode"], json!(true));
    golden(
        &node,
        "addnode",
        json!([target, "remove"]),
        200,
        ok(json!(null)),
    )
    .await;
    // As in Bitcoin Core, the connection stays; only the redials stop.
    golden(&node, "getconnectioncount", json!([]), 200, ok(json!(1))).await;
    golden(
        &node,
        "addnode",
        json!([target, "remove"]),
        500,
        err(
            -24,
            "Error: Node could not be removed. It has not been added previously.",
        ),
    )
    .await;
    golden(
        &node,
        "getaddednodeinfo",
        json!([target]),
        500,
        err(-24, "Error: Node has not been added."),
    )
    .await;
    golden(
        &node,
        "getaddednodeinfo",
        json!(["nonsense"]),
        500,
        err(-24, "Error: Node has not been added."),
    )
    .await;
    // Errors of shape: a bad command gets the help, as Bitcoin Core; a bad address, -8.
    let help = help_of(&node, "addnode").await;
    golden(
        &node,
        "addnode",
        json!([target, "bogus"]),
        500,
        err(-1, &help),
    )
    .await;
    golden(&node, "addnode", json!([target]), 500, err(-1, &help)).await;
    golden(&node, "addnode", json!([]), 500, err(-1, &help)).await;
    golden(
        &node,
        "addnode",
        json!([target, "add", false, 4]),
        500,
        err(-1, &help),
    )
    .await;
    golden(
        &node,
        "addnode",
        json!(["not an address", "onetry"]),
        500,
        err(-8, "Error: Invalid node address \"not an address\""),
    )
    .await;
    golden(
        &node,
        "addnode",
        json!([target, "onetry", true]),
        500,
        err(
            -8,
            "Error: v2transport requested but not enabled (see --v2transport)",
        ),
    )
    .await;
    golden(
        &node,
        "addnode",
        json!([5, "add"]),
        500,
        err(
            -3,
            "JSON value of type number is not of expected type string",
        ),
    )
    .await;
    // Named parameters, and an unknown one.
    golden(
        &node,
        "addnode",
        json!({"node": target, "command": "add"}),
        200,
        ok(json!(null)),
    )
    .await;
    golden(
        &node,
        "addnode",
        json!({"node": target, "cmd": "add"}),
        500,
        err(-8, "Unknown named parameter cmd"),
    )
    .await;
    // Without a port, the chain's.
    golden(
        &node,
        "addnode",
        json!(["127.0.0.2", "add"]),
        200,
        ok(json!(null)),
    )
    .await;
    golden(
        &node,
        "getaddednodeinfo",
        json!(["127.0.0.2:18444"]),
        200,
        ok(json!([{ "addednode": "127.0.0.2:18444", "connected": false, "addresses": [] }])),
    )
    .await;
    peer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnectnode_by_address_and_id() {
    let node = Node::start().await;
    let a = pool().await;
    let b = pool().await;
    let target_a = node.connect_peer(&a).await;
    let target_b = node.connect_peer(&b).await;
    let info = node.ok("getpeerinfo", json!([])).await;
    let id_b = info
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["addr"] == json!(target_b))
        .unwrap()["id"]
        .clone();
    golden(
        &node,
        "disconnectnode",
        json!([target_a]),
        200,
        ok(json!(null)),
    )
    .await;
    golden(
        &node,
        "disconnectnode",
        json!({"nodeid": id_b}),
        200,
        ok(json!(null)),
    )
    .await;
    // As in Bitcoin Core, a peer told to disconnect stays listed until its connection is
    // torn down; only then does its id stop being found.
    node.wait_for("getconnectioncount", json!([]), |r| r == &json!(0))
        .await;
    golden(
        &node,
        "disconnectnode",
        json!(["", id_b]),
        500,
        err(-29, "Node not found in connected nodes"),
    )
    .await;
    golden(
        &node,
        "disconnectnode",
        json!([target_a]),
        500,
        err(-29, "Node not found in connected nodes"),
    )
    .await;
    golden(
        &node,
        "disconnectnode",
        json!(["garbage"]),
        500,
        err(-29, "Node not found in connected nodes"),
    )
    .await;
    // An empty address alone is an address that matches nobody, as in Bitcoin Core.
    golden(
        &node,
        "disconnectnode",
        json!([""]),
        500,
        err(-29, "Node not found in connected nodes"),
    )
    .await;
    golden(
        &node,
        "disconnectnode",
        json!([target_a, 3]),
        500,
        err(-32602, "Only one of address and nodeid should be provided."),
    )
    .await;
    golden(
        &node,
        "disconnectnode",
        json!([]),
        500,
        err(-32602, "Only one of address and nodeid should be provided."),
    )
    .await;
    golden(
        &node,
        "disconnectnode",
        json!(["", "3"]),
        500,
        err(
            -3,
            "JSON value of type string is not of expected type number",
        ),
    )
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans() {
    let node = Node::start().await;
    golden(&node, "listbanned", json!([]), 200, ok(json!([]))).await;
    golden(
        &node,
        "setban",
        json!(["10.0.0.0/24", "add"]),
        200,
        ok(json!(null)),
    )
    .await;
    golden(
        &node,
        "setban",
        json!(["10.0.0.0/255.255.255.0", "add"]),
        500,
        err(-23, "Error: IP/Subnet already banned"),
    )
    .await;
    // A single address inside a banned subnet is already banned; a narrower subnet is not
    // (Bitcoin Core compares subnets as they are).
    golden(
        &node,
        "setban",
        json!(["10.0.0.7", "add"]),
        500,
        err(-23, "Error: IP/Subnet already banned"),
    )
    .await;
    golden(
        &node,
        "setban",
        json!(["10.9.9.9", "add", 600]),
        200,
        ok(json!(null)),
    )
    .await;
    let mut list = node.ok("listbanned", json!([])).await;
    let first = &list[0];
    assert_eq!(first["ban_duration"], json!(86400));
    assert!(first["time_remaining"].as_u64().unwrap() > 86_390);
    mask(
        &mut list,
        &["ban_created", "banned_until", "time_remaining"],
    );
    assert_eq!(
        list,
        json!([
            { "address": "10.0.0.0/24", "ban_created": "*", "banned_until": "*", "ban_duration": 86400, "time_remaining": "*" },
            { "address": "10.9.9.9/32", "ban_created": "*", "banned_until": "*", "ban_duration": 600, "time_remaining": "*" },
        ])
    );
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1000;
    golden(
        &node,
        "setban",
        json!(["10.7.7.7", "add", future, true]),
        200,
        ok(json!(null)),
    )
    .await;
    golden(
        &node,
        "setban",
        json!(["10.7.7.8", "add", 1000, true]),
        500,
        err(-8, "Error: Absolute timestamp is in the past"),
    )
    .await;
    golden(
        &node,
        "setban",
        json!(["10.9.9.9", "remove"]),
        200,
        ok(json!(null)),
    )
    .await;
    golden(
        &node,
        "setban",
        json!(["10.9.9.9", "remove"]),
        500,
        err(
            -30,
            "Error: Unban failed. Requested address/subnet was not previously manually banned.",
        ),
    )
    .await;
    golden(
        &node,
        "setban",
        json!(["300.1.1.1", "add"]),
        500,
        err(-30, "Error: Invalid IP/Subnet"),
    )
    .await;
    golden(
        &node,
        "setban",
        json!(["10.0.0.0/99", "add"]),
        500,
        err(-30, "Error: Invalid IP/Subnet"),
    )
    .await;
    let help = help_of(&node, "setban").await;
    golden(
        &node,
        "setban",
        json!(["10.0.0.1", "ban"]),
        500,
        err(-1, &help),
    )
    .await;
    golden(
        &node,
        "setban",
        json!(["10.0.0.1", "add", "long"]),
        500,
        err(
            -3,
            "JSON value of type string is not of expected type number",
        ),
    )
    .await;
    golden(&node, "clearbanned", json!([]), 200, ok(json!(null))).await;
    golden(&node, "listbanned", json!([]), 200, ok(json!([]))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_state_methods() {
    let node = Node::start().await;
    let peer = pool().await;
    node.connect_peer(&peer).await;
    // Traffic so far, and after a ping (which is answered) it grows.
    let before = node.ok("getnettotals", json!([])).await;
    assert!(before["totalbytessent"].as_u64().unwrap() > 0);
    golden(&node, "ping", json!([]), 200, ok(json!(null))).await;
    node.wait_for("getnettotals", json!([]), |t| {
        t["totalbytesrecv"].as_u64() > before["totalbytesrecv"].as_u64()
    })
    .await;
    let mut totals = node.ok("getnettotals", json!([])).await;
    mask(
        &mut totals,
        &["totalbytesrecv", "totalbytessent", "timemillis"],
    );
    assert_eq!(
        totals,
        json!({
            "totalbytesrecv": "*", "totalbytessent": "*", "timemillis": "*",
            "uploadtarget": {
                "timeframe": 86400, "target": 0, "target_reached": false,
                "serve_historical_blocks": true, "bytes_left_in_cycle": 0, "time_left_in_cycle": 0,
            },
        })
    );
    let mut info = node.ok("getnetworkinfo", json!([])).await;
    mask(&mut info, &["port", "timeoffset"]);
    let chain = peerpool_wire::Network::Regtest.params();
    let net = |name: &str, reachable: bool| json!({ "name": name, "limited": !reachable, "reachable": reachable, "proxy": "", "proxy_randomize_credentials": false });
    assert_eq!(
        info,
        json!({
            "version": 310000, "subversion": "/peerpool:test/",
            "protocolversion": chain.protocol_version,
            "localservices": "0000000000000000", "localservicesnames": [],
            "localrelay": true, "timeoffset": "*", "networkactive": true,
            "connections": 1, "connections_in": 0, "connections_out": 1,
            "networks": [net("ipv4", true), net("ipv6", true), net("onion", false), net("i2p", false), net("cjdns", false)],
            "relayfee": 0.00001, "incrementalfee": 0.00001,
            "localaddresses": [{ "address": "127.0.0.1", "port": "*", "score": 1 }],
            "warnings": [],
        })
    );
    // Network activity off: peers go, and stay away until it is on again.
    golden(
        &node,
        "setnetworkactive",
        json!([false]),
        200,
        ok(json!(false)),
    )
    .await;
    node.wait_for("getconnectioncount", json!([]), |r| r == &json!(0))
        .await;
    let info = node.ok("getnetworkinfo", json!([])).await;
    assert_eq!(info["networkactive"], json!(false));
    golden(
        &node,
        "setnetworkactive",
        json!([true]),
        200,
        ok(json!(true)),
    )
    .await;
    golden(
        &node,
        "setnetworkactive",
        json!(["yes"]),
        500,
        err(-3, "JSON value of type string is not of expected type bool"),
    )
    .await;
    let help = help_of(&node, "setnetworkactive").await;
    golden(&node, "setnetworkactive", json!([]), 500, err(-1, &help)).await;
    peer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_book_methods() {
    let node = Node::start().await;
    let empty = json!({"new": 0, "tried": 0, "total": 0});
    golden(
        &node,
        "getaddrmaninfo",
        json!([]),
        200,
        ok(json!({"ipv4": empty, "ipv6": empty, "onion": empty, "i2p": empty, "cjdns": empty, "all_networks": empty})),
    )
    .await;
    golden(&node, "getnodeaddresses", json!([]), 200, ok(json!([]))).await;
    golden(
        &node,
        "addpeeraddress",
        json!(["1.2.3.4", 8333]),
        200,
        ok(json!({"success": true})),
    )
    .await;
    golden(
        &node,
        "addpeeraddress",
        json!(["2001:db8::1", 8333]),
        200,
        ok(json!({"success": true})),
    )
    .await;
    golden(
        &node,
        "addpeeraddress",
        json!(["not-an-ip", 8333]),
        500,
        err(-30, "Invalid IP address"),
    )
    .await;
    // Known already: Core's Add fails, and says so.
    golden(
        &node,
        "addpeeraddress",
        json!(["1.2.3.4", 8333]),
        200,
        ok(json!({"error": "failed-adding-to-new", "success": false})),
    )
    .await;
    golden(
        &node,
        "addpeeraddress",
        json!(["1.2.3.4", 8333, true]),
        200,
        ok(json!({"error": "failed-adding-to-new", "success": false})),
    )
    .await;
    golden(
        &node,
        "addpeeraddress",
        json!(["1.2.3.5", 70000]),
        500,
        err(-8, "Error: port out of range"),
    )
    .await;
    let one = json!({"new": 1, "tried": 0, "total": 1});
    golden(
        &node,
        "getaddrmaninfo",
        json!([]),
        200,
        ok(json!({"ipv4": one, "ipv6": one, "onion": empty, "i2p": empty, "cjdns": empty, "all_networks": {"new": 2, "tried": 0, "total": 2}})),
    )
    .await;
    // With `tried`, as Core: the address lands in the tried table.
    golden(
        &node,
        "addpeeraddress",
        json!({"address": "5.6.7.8", "port": 8333, "tried": true}),
        200,
        ok(json!({"success": true})),
    )
    .await;
    golden(
        &node,
        "addpeeraddress",
        json!(["5.6.7.9", 8333, "yes"]),
        500,
        err(-3, "JSON value of type string is not of expected type bool"),
    )
    .await;
    let two = json!({"new": 1, "tried": 1, "total": 2});
    golden(
        &node,
        "getaddrmaninfo",
        json!([]),
        200,
        ok(json!({"ipv4": two, "ipv6": one, "onion": empty, "i2p": empty, "cjdns": empty, "all_networks": {"new": 2, "tried": 1, "total": 3}})),
    )
    .await;
    let mut all = node.ok("getnodeaddresses", json!([0, "ipv4"])).await;
    mask(&mut all, &["time"]);
    let mut all = all.as_array().unwrap().clone();
    all.sort_by_key(|a| a["address"].as_str().unwrap().to_owned());
    assert_eq!(
        all,
        [
            json!({ "time": "*", "services": 9, "address": "1.2.3.4", "port": 8333, "network": "ipv4" }),
            json!({ "time": "*", "services": 9, "address": "5.6.7.8", "port": 8333, "network": "ipv4" }),
        ]
    );
    let all = node.ok("getnodeaddresses", json!({"count": 0})).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let one_only = node.ok("getnodeaddresses", json!([])).await;
    assert_eq!(one_only.as_array().unwrap().len(), 1);
    // Banned addresses are not handed out.
    node.ok("setban", json!(["1.2.3.4", "add"])).await;
    let unbanned = node.ok("getnodeaddresses", json!([0])).await;
    let listed: Vec<&str> = unbanned
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(!listed.contains(&"1.2.3.4"), "{listed:?}");
    node.ok("clearbanned", json!([])).await;
    golden(
        &node,
        "getnodeaddresses",
        json!([-1]),
        500,
        err(-8, "Address count out of range"),
    )
    .await;
    golden(
        &node,
        "getnodeaddresses",
        json!([1, "ipx"]),
        500,
        err(-8, "Network not recognized: ipx"),
    )
    .await;
    golden(
        &node,
        "getnodeaddresses",
        json!(["1"]),
        500,
        err(
            -3,
            "JSON value of type string is not of expected type number",
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_methods() {
    let node = Node::start().await;
    let up = node.ok("uptime", json!([])).await;
    assert!(up.as_u64().unwrap() < 60);
    let help = node.ok("help", json!([])).await;
    let help = help.as_str().unwrap();
    for m in [
        "getpeerinfo",
        "addnode",
        "getaddednodeinfo",
        "disconnectnode",
        "getconnectioncount",
        "getnettotals",
        "getnetworkinfo",
        "ping",
        "setban",
        "listbanned",
        "clearbanned",
        "getnodeaddresses",
        "setnetworkactive",
        "getaddrmaninfo",
        "uptime",
        "help",
        "stop",
    ] {
        assert!(
            help.lines().any(|l| l.split(' ').next() == Some(m)),
            "{m} missing from help"
        );
    }
    assert!(help.starts_with("== Network ==\ngetpeerinfo\n"), "{help}");
    golden(
        &node,
        "help",
        json!(["nosuch"]),
        200,
        ok(json!("help: unknown command: nosuch")),
    )
    .await;
    let uptime_help = help_of(&node, "uptime").await;
    assert_eq!(uptime_help, "uptime\n\nSeconds since the daemon started.");
    golden(&node, "uptime", json!([1]), 500, err(-1, &uptime_help)).await;
    golden(
        &node,
        "nosuchmethod",
        json!([]),
        404,
        err(-32601, "Method not found"),
    )
    .await;
    assert!(!node.shutdown.is_cancelled());
    golden(
        &node,
        "stop",
        json!([]),
        200,
        ok(json!("peerpool stopping")),
    )
    .await;
    tokio::time::timeout(WAIT, node.shutdown.cancelled())
        .await
        .expect("stop cancels the daemon's shutdown token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addnode_takes_more_than_eight_entries_as_core() {
    let node = Node::start().await;
    // Nothing listens on these loopback ports: each dial is refused at once.
    let nodes: Vec<String> = (1..=12).map(|i| format!("127.0.77.{i}:1")).collect();
    for n in &nodes {
        golden(&node, "addnode", json!([n, "add"]), 200, ok(json!(null))).await;
    }
    let listed = node.ok("getaddednodeinfo", json!([])).await;
    let mut names: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["addednode"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    let mut want = nodes.clone();
    want.sort();
    assert_eq!(names, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_parameters_may_bring_positional_ones_as_args() {
    let node = Node::start().await;
    golden(
        &node,
        "getnodeaddresses",
        json!({"args": [0], "network": "ipv4"}),
        200,
        ok(json!([])),
    )
    .await;
    golden(
        &node,
        "getnodeaddresses",
        json!({"args": [0], "count": 1}),
        500,
        err(
            -8,
            "Parameter count specified twice both as positional and named argument",
        ),
    )
    .await;
    golden(
        &node,
        "getnodeaddresses",
        json!({"args": 5}),
        500,
        err(-8, "Unknown named parameter args"),
    )
    .await;
    let help = help_of(&node, "getnodeaddresses").await;
    golden(
        &node,
        "getnodeaddresses",
        json!({"args": [0, "ipv4", 7]}),
        500,
        err(-1, &help),
    )
    .await;
}
