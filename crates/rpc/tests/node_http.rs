//! The HTTP and JSON-RPC envelope of the node RPC, and bad input: malformed JSON, wrong
//! shapes, bad credentials, huge bodies, slow and many clients. The P2P side must not notice.

use std::time::{Duration, Instant};

use peerpool_rpc::node::client::Client;
use peerpool_testkit::rpc::node::{pool, Node, PASSWORD, USER};
use peerpool_testkit::WAIT;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn legacy_err(code: i32, message: &str, id: Value) -> Value {
    json!({ "result": null, "error": { "code": code, "message": message }, "id": id })
}

/// Posts `body`; returns (status, JSON reply), checking the exact content type.
async fn post(node: &Node, body: &str) -> (u16, Value) {
    let r = node.post(body).await;
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/json"),
        "{body}"
    );
    (r.status.as_u16(), r.json().unwrap())
}

/// With JSON-RPC 2.0 replies off, every request gets the envelope of Core before 28; by
/// default, so does every request that does not say "2.0" (checked again on a default node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_follows_core_before_28() {
    let node = Node::start_with(|c| c.strict_jsonrpc2 = false).await;
    let cases: Vec<(&str, u16, Value)> = vec![
        (
            r#"{"method":"getconnectioncount","id":7}"#,
            200,
            json!({"result": 0, "error": null, "id": 7}),
        ),
        (
            r#"{"jsonrpc":"1.0","method":"getconnectioncount","id":"x","params":[]}"#,
            200,
            json!({"result": 0, "error": null, "id": "x"}),
        ),
        // A JSON-RPC 2.0 request without an id still gets a reply, with a null id.
        (
            r#"{"jsonrpc":"2.0","method":"getconnectioncount"}"#,
            200,
            json!({"result": 0, "error": null, "id": null}),
        ),
        (
            r#"{"jsonrpc":"2.0","method":"nosuch","id":3}"#,
            404,
            legacy_err(-32601, "Method not found", json!(3)),
        ),
        (
            r#"{"method":"getconnectioncount","params":{},"id":1}"#,
            200,
            json!({"result": 0, "error": null, "id": 1}),
        ),
        (
            r#"{"method":"getconnectioncount","params":null,"id":1}"#,
            200,
            json!({"result": 0, "error": null, "id": 1}),
        ),
        (
            r#"{"id":1}"#,
            400,
            legacy_err(-32600, "Missing method", json!(1)),
        ),
        (
            r#"{"method":5,"id":1}"#,
            400,
            legacy_err(-32600, "Method must be a string", json!(1)),
        ),
        (
            r#"{"method":"uptime","params":"x","id":1}"#,
            400,
            legacy_err(-32600, "Params must be an array or object", json!(1)),
        ),
        (
            r#"{"method":"getconnectioncount""#,
            500,
            legacy_err(-32700, "Parse error", Value::Null),
        ),
        ("", 500, legacy_err(-32700, "Parse error", Value::Null)),
        (
            "\u{0}\u{1}garbage",
            500,
            legacy_err(-32700, "Parse error", Value::Null),
        ),
        (
            "42",
            500,
            legacy_err(-32700, "Top-level object parse error", Value::Null),
        ),
        (
            r#""getpeerinfo""#,
            500,
            legacy_err(-32700, "Top-level object parse error", Value::Null),
        ),
        // Batches: HTTP 200, replies in order, errors inside.
        (
            r#"[{"method":"getconnectioncount","id":1},{"method":"nosuch","id":2},5,{"method":"listbanned","id":3}]"#,
            200,
            json!([
                {"result": 0, "error": null, "id": 1},
                {"result": null, "error": {"code": -32601, "message": "Method not found"}, "id": 2},
                {"result": null, "error": {"code": -32600, "message": "Invalid Request object"}, "id": null},
                {"result": [], "error": null, "id": 3},
            ]),
        ),
        ("[]", 200, json!([])),
    ];
    let default = Node::start().await;
    for (body, status, expected) in cases {
        let (got_status, got) = post(&node, body).await;
        assert_eq!((got_status, &got), (status, &expected), "{body:?}");
        if !body.contains(r#""2.0""#) {
            let (got_status, got) = post(&default, body).await;
            assert_eq!((got_status, &got), (status, &expected), "default: {body:?}");
        }
    }
    // The wallet path is served alike.
    let mut c = node.client().await;
    let r = c
        .post("/wallet/w1", r#"{"method":"getconnectioncount","id":1}"#)
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.json().unwrap()),
        (200, json!({"result": 0, "error": null, "id": 1}))
    );
    // Only POST.
    let r = c.get("/").await.unwrap();
    assert_eq!(r.status.as_u16(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonrpc2_replies_by_default() {
    let node = Node::start().await;
    let cases: Vec<(&str, u16, Option<Value>)> = vec![
        (
            r#"{"jsonrpc":"2.0","method":"getconnectioncount","id":1}"#,
            200,
            Some(json!({"jsonrpc": "2.0", "result": 0, "id": 1})),
        ),
        (
            r#"{"jsonrpc":"2.0","method":"nosuch","id":1}"#,
            200,
            Some(
                json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": 1}),
            ),
        ),
        // A notification gets no reply.
        (
            r#"{"jsonrpc":"2.0","method":"getconnectioncount"}"#,
            204,
            None,
        ),
        (
            r#"[{"jsonrpc":"2.0","method":"getconnectioncount"}]"#,
            204,
            None,
        ),
        // Requests without "2.0" keep the legacy replies.
        (
            r#"{"method":"nosuch","id":1}"#,
            404,
            Some(legacy_err(-32601, "Method not found", json!(1))),
        ),
    ];
    for (body, status, expected) in cases {
        let r = node.post(body).await;
        assert_eq!(r.status.as_u16(), status, "{body}");
        match expected {
            Some(e) => assert_eq!(r.json().unwrap(), e, "{body}"),
            None => assert!(r.body.is_empty(), "{body}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked() {
    let node = Node::start().await;
    let body = r#"{"method":"uptime","id":1}"#;
    let mut none = Client::connect(node.rpc_addr(), None).await.unwrap();
    let r = none.post("/", body).await.unwrap();
    assert_eq!(r.status.as_u16(), 401);
    assert_eq!(
        r.www_authenticate.as_deref(),
        Some("Basic realm=\"jsonrpc\"")
    );
    for (user, password) in [(USER, "wrong"), ("mallory", PASSWORD), ("", "")] {
        let mut c = Client::connect(node.rpc_addr(), Some((user, password)))
            .await
            .unwrap();
        let started = Instant::now();
        let r = c.post("/", body).await.unwrap();
        assert_eq!(r.status.as_u16(), 401);
        assert_eq!(
            r.www_authenticate.as_deref(),
            Some("Basic realm=\"jsonrpc\"")
        );
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "no delay for {user}"
        );
    }
    let mut c = node.client().await;
    assert_eq!(c.post("/", body).await.unwrap().status.as_u16(), 200);
}

/// The node's peer is still connected and answers a ping: the P2P side did not notice what
/// the RPC side went through.
async fn peer_still_answers(node: &Node, target: &str) {
    let info = node.ok("getpeerinfo", json!([])).await;
    assert_eq!(info[0]["addr"], json!(target));
    let before = node.ok("getnettotals", json!([])).await["totalbytesrecv"].as_u64();
    node.ok("ping", json!([])).await;
    node.wait_for("getnettotals", json!([]), |t| {
        t["totalbytesrecv"].as_u64() > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_slow_clients_get_clean_errors() {
    let node = Node::start_with(|c| {
        c.timeout = Duration::from_millis(500);
        c.max_body = 64 * 1024;
    })
    .await;
    let peer = pool().await;
    let target = node.connect_peer(&peer).await;

    // A body over the limit: 413 with a JSON error, the connection usable for nothing else.
    let huge = format!(
        r#"{{"method":"uptime","params":["{}"],"id":1}}"#,
        "x".repeat(200_000)
    );
    let r = node.post(&huge).await;
    assert_eq!(r.status.as_u16(), 413);
    assert_eq!(r.json().unwrap()["error"]["code"], json!(-32600));

    // Headers that never finish: the server closes the connection after its timeout.
    let mut slow = TcpStream::connect(node.rpc_addr()).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a client that never finishes its headers is dropped"
    );

    // A body that never finishes: 408 after the timeout.
    let mut slow = TcpStream::connect(node.rpc_addr()).await.unwrap();
    let auth = peerpool_rpc::node::auth::basic_header(USER, PASSWORD);
    slow.write_all(
        format!("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nContent-Length: 100\r\n\r\n{{\"method\"")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, slow.read(&mut buf))
        .await
        .expect("an answer to a body that never comes")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");

    peer_still_answers(&node, &target).await;
    peer.stop().await;
}

/// With the default timeout: a short one also closes keep-alive connections idle between
/// requests (the header read timer runs while the server waits for the next request), and
/// on a loaded machine a client task can be that late to send its next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_get_replies_or_clean_errors() {
    let node = Node::start().await;
    let peer = pool().await;
    let target = node.connect_peer(&peer).await;

    // Many concurrent clients, each with a few calls on a keep-alive connection: every
    // answer is a reply or the work queue's clean 503.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = node.rpc_addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr, Some((USER, PASSWORD))).await.unwrap();
            let mut ok = 0;
            for _ in 0..5 {
                let r = c.call("getpeerinfo", json!([])).await.unwrap();
                match r.status.as_u16() {
                    200 => ok += 1,
                    503 => {}
                    other => panic!("status {other}"),
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert!(ok > 0);

    peer_still_answers(&node, &target).await;
    peer.stop().await;
}

/// Scrapes `/metrics` until `pred` holds on the text, and returns it: the counters of pool
/// events are kept by a task that follows the pool's event bus, so they lag the pool a little.
async fn scrape_until(c: &mut Client, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = c.get("/metrics").await.unwrap();
        assert_eq!(r.status.as_u16(), 200);
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        if pred(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served() {
    let node = Node::start().await;
    let peer = pool().await;
    node.connect_peer(&peer).await;
    node.ok("getconnectioncount", json!([])).await;
    let _ = node.call("nosuch", json!([])).await;
    let mut c = Client::connect(node.rpc_addr(), None).await.unwrap();
    let text = scrape_until(&mut c, "the handshake", |t| {
        t.contains("peerpool_handshakes_total 1")
    })
    .await;
    for line in [
        "peerpool_peers{direction=\"outbound\",network=\"ipv4\"} 1",
        "peerpool_handshakes_total 1",
        "peerpool_rpc_calls_total{method=\"getconnectioncount\",outcome=\"ok\"} 1",
        "peerpool_rpc_calls_total{method=\"other\",outcome=\"error\"} 1",
        "peerpool_message_bytes{direction=\"sent\",message=\"version\"}",
        "peerpool_bans_total 0",
        "peerpool_evictions_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    node.ok("setban", json!(["10.0.0.1", "add"])).await;
    scrape_until(&mut c, "the ban", |t| t.contains("peerpool_bans_total 1")).await;
    peer.stop().await;
}
