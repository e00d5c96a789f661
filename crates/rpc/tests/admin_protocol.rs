//! The admin listener's line protocol at its edges: partial lines, several requests per
//! packet, invalid JSON, unknown methods, batches, notifications, huge lines, and clients that
//! never read. Each gets a clean answer or a clean drop; the listener never stalls.

use std::time::Duration;

use peerpool_rpc::admin::client::Client;
use peerpool_rpc::admin::Config;
use peerpool_rpc::error::{INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR};
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::start_idle;
use peerpool_testkit::rpc::admin::{call, serve_admin};
use peerpool_testkit::{init_logs, within};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

struct Raw {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    wr: OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Raw {
        let (rd, wr) = TcpStream::connect(addr).await.unwrap().into_split();
        Raw {
            lines: BufReader::new(rd).lines(),
            wr,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    async fn answer(&mut self) -> Value {
        let line = within("an answer", self.lines.next_line())
            .await
            .unwrap()
            .expect("an answer, not the end of the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

async fn listener(net: u8, config: Config) -> (peerpool_net::Pool, std::net::SocketAddr) {
    init_logs();
    let p = start_idle(ip(net, 1), "hub", 1024).await;
    let (_, addr) = serve_admin(&p, config).await;
    (p, addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_split_over_packets_or_sharing_one_are_all_answered_in_order() {
    let (_pool, addr) = listener(50, Config::default()).await;
    let mut c = Raw::connect(addr).await;
    // One request written a few bytes at a time.
    let req = br#"{"jsonrpc":"2.0","id":1,"method":"peer_count"}"#;
    for chunk in req.chunks(5) {
        c.send(chunk).await;
        c.wr.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    c.send(b"\n").await;
    assert_eq!(
        c.answer().await,
        json!({"jsonrpc": "2.0", "id": 1, "result": 0})
    );
    // Three in one write, the last split from its newline, CRLF endings accepted.
    c.send(
        b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"peer_count\"}\r\n\
          {\"jsonrpc\":\"2.0\",\"id\":\"three\",\"method\":\"getinfo\"}\n\
          {\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"sessions\"}",
    )
    .await;
    c.send(b"\n").await;
    assert_eq!(c.answer().await["id"], 2);
    let info = c.answer().await;
    assert_eq!(info["id"], "three");
    assert_eq!(info["result"]["chain"], "regtest");
    assert_eq!(
        c.answer().await,
        json!({"jsonrpc": "2.0", "id": 4, "result": []})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_rpc_errors_and_the_connection_goes_on() {
    let (_pool, addr) = listener(51, Config::default()).await;
    let mut c = Raw::connect(addr).await;
    // Once a client has spoken JSON-RPC, its bad lines are answered and reading goes on.
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"peer_count\"}\n")
        .await;
    assert_eq!(c.answer().await["result"], 0);
    let deep = [vec![b'['; 5000], b"\n".to_vec()].concat();
    let cases: &[(&[u8], i32)] = &[
        (b"this is not json\n", PARSE_ERROR),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getinfo\"\n",
            PARSE_ERROR,
        ),
        (b"\xff\xfe\n", PARSE_ERROR),
        (b"42\n", INVALID_REQUEST),
        // Nested deeper than the JSON parser recurses.
        (&deep, PARSE_ERROR),
        (b"[]\n", INVALID_REQUEST),
        (b"{\"id\":1}\n", INVALID_REQUEST),
        (
            b"{\"id\":1,\"method\":\"getinfo\",\"params\":\"x\"}\n",
            INVALID_REQUEST,
        ),
        (b"{\"id\":1,\"method\":\"stop\"}\n", METHOD_NOT_FOUND),
        (
            b"{\"id\":1,\"method\":\"getinfo\",\"params\":[1]}\n",
            INVALID_PARAMS,
        ),
        (
            b"{\"id\":1,\"method\":\"connect\",\"params\":[\"nowhere\"]}\n",
            INVALID_PARAMS,
        ),
        (
            b"{\"id\":1,\"method\":\"subscribe\",\"params\":{\"events\":[\"x\"]}}\n",
            INVALID_PARAMS,
        ),
    ];
    for (line, code) in cases {
        c.send(line).await;
        let a = c.answer().await;
        assert_eq!(a["jsonrpc"], "2.0");
        assert_eq!(
            a["error"]["code"],
            *code,
            "{}: {a}",
            String::from_utf8_lossy(line)
        );
        assert!(a["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Blank lines and notifications get no answer; the next request's answer comes next.
    c.send(b"\n  \n{\"jsonrpc\":\"2.0\",\"method\":\"getinfo\"}\n")
        .await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"peer_count\"}\n")
        .await;
    assert_eq!(c.answer().await["id"], 9);
    // A batch is answered with an array, notifications left out.
    c.send(
        b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"peer_count\"},\
           {\"jsonrpc\":\"2.0\",\"method\":\"peer_count\"},\
           {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"}, 5]\n",
    )
    .await;
    let batch = c.answer().await;
    let batch = batch.as_array().unwrap();
    assert_eq!(batch.len(), 3, "{batch:?}");
    assert_eq!(batch[0]["result"], 0);
    assert_eq!(batch[1]["error"]["code"], METHOD_NOT_FOUND);
    assert_eq!(batch[2]["error"]["code"], INVALID_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_line_is_refused_and_skipped() {
    let config = Config {
        max_line_length: 4096,
        ..Config::default()
    };
    let (_pool, addr) = listener(52, config).await;
    let mut c = Raw::connect(addr).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"peer_count\"}\n")
        .await;
    assert_eq!(c.answer().await["result"], 0);
    // Ten times the limit, sent in pieces, then a normal request on the same line's heels.
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"log\",\"params\":[\"{}\"]}}\n",
        "9".repeat(40_000)
    );
    for chunk in huge.as_bytes().chunks(3000) {
        c.send(chunk).await;
    }
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"peer_count\"}\n")
        .await;
    let a = c.answer().await;
    assert_eq!(a["error"]["code"], INVALID_REQUEST, "{a}");
    assert!(a["error"]["message"].as_str().unwrap().contains("4096"));
    assert_eq!(c.answer().await["id"], 2, "the next line reads normally");
    // A huge line with no end, then the client leaves: no answer is owed, nothing breaks.
    let mut d = Raw::connect(addr).await;
    d.send(&vec![b'x'; 100_000]).await;
    drop(d);
    let mut e = Client::connect(addr).await.unwrap();
    assert_eq!(call(&mut e, "peer_count", json!({})).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_dropped_and_others_are_served() {
    let config = Config {
        write_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let (_pool, addr) = listener(53, config).await;
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    // Requests whose answers are much longer than they are, never read: the socket buffers
    // fill, the listener's write waits past its timeout and the client is dropped.
    let req = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getinfo\"}\n".repeat(100);
    let mut other = Client::connect(addr).await.unwrap();
    let dropped = within("the non-reading client being dropped", async {
        let mut sent = 0usize;
        loop {
            if wr.write_all(&req).await.is_err() {
                return sent;
            }
            sent += req.len();
            // Meanwhile another client is answered at once.
            if sent % (req.len() * 50) == 0 {
                assert_eq!(call(&mut other, "peer_count", json!({})).await, 0);
            }
        }
    })
    .await;
    assert!(dropped > 0);
    // What was written to it before the drop ends with the connection's end, not a stall.
    within("the end of the dropped connection", async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            use tokio::io::AsyncReadExt;
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(call(&mut other, "peer_count", json!({})).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_line_that_is_no_request_closes_the_connection() {
    let (_pool, addr) = listener(55, Config::default()).await;
    // A browser's POST: its request line comes first, the JSON body last.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"disconnect","params":{"session_ids":["all"]}}"#;
    let post = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}\n",
        body.len()
    );
    let mut c = Raw::connect(addr).await;
    c.send(post.as_bytes()).await;
    assert_eq!(c.answer().await["error"]["code"], PARSE_ERROR);
    assert!(
        within("the end", c.lines.next_line())
            .await
            .unwrap()
            .is_none(),
        "the body was read after an HTTP request line"
    );
    // JSON that is no request, first: closed too.
    let mut c = Raw::connect(addr).await;
    c.send(b"[1,2]\n{\"id\":1,\"method\":\"peer_count\"}\n")
        .await;
    assert!(c.answer().await["error"].is_object());
    assert!(within("the end", c.lines.next_line())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_listener_closes_its_idlest_connection_for_a_newcomer() {
    let config = Config {
        max_connections: 2,
        ..Config::default()
    };
    let (_pool, addr) = listener(54, config).await;
    let mut a = Client::connect(addr).await.unwrap();
    let mut b = Client::connect(addr).await.unwrap();
    call(&mut a, "peer_count", json!({})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    call(&mut b, "peer_count", json!({})).await;
    // `a` has been quiet the longest: the newcomer takes its place.
    let mut c = Client::connect(addr).await.unwrap();
    assert_eq!(call(&mut c, "peer_count", json!({})).await, 0);
    assert!(within("a's end", a.call("peer_count", json!({})))
        .await
        .is_err());
    call(&mut b, "peer_count", json!({})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_auth_gates_the_rest() {
    use peerpool_rpc::admin::AdminAuth;
    use peerpool_rpc::node::{Credentials, FailedAuth};
    let config = Config {
        idle_timeout: Duration::from_millis(300),
        auth: Some(AdminAuth {
            credentials: Credentials::default().with_password("op", "secret"),
            failed: std::sync::Arc::new(FailedAuth::default()),
        }),
        ..Config::default()
    };
    let (_pool, addr) = listener(56, config).await;
    let mut idle = Raw::connect(addr).await;
    assert!(within("the idle end", idle.lines.next_line())
        .await
        .unwrap()
        .is_none());
    // No auth first: refused and closed.
    let mut c = Client::connect(addr).await.unwrap();
    let refused = within("refusal", c.call("peer_count", json!({})))
        .await
        .unwrap()
        .unwrap_err();
    assert!(refused.message.contains("authenticate first"), "{refused}");
    assert!(within("the end", c.call("peer_count", json!({})))
        .await
        .is_err());
    // Wrong credentials: refused and closed.
    let mut c = Client::connect(addr).await.unwrap();
    let wrong = within("refusal", c.call("auth", json!(["op", "guess"])))
        .await
        .unwrap();
    assert!(wrong.is_err());
    assert!(within("the end", c.call("peer_count", json!({})))
        .await
        .is_err());
    // The right ones, by position or by name.
    for params in [
        json!(["op", "secret"]),
        json!({"user": "op", "password": "secret"}),
    ] {
        let mut c = Client::connect(addr).await.unwrap();
        assert_eq!(call(&mut c, "auth", params).await, true);
        assert_eq!(call(&mut c, "peer_count", json!({})).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_bounded_in_requests_and_answer_bytes() {
    let config = Config {
        max_batch: 10,
        max_reply: 2_000,
        ..Config::default()
    };
    let (_pool, addr) = listener(57, config).await;
    let mut c = Raw::connect(addr).await;
    let one = r#"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#;
    let batch = |n: usize| format!("[{}]\n", vec![one; n].join(","));
    c.send(batch(11).as_bytes()).await;
    assert_eq!(c.answer().await["error"]["code"], INVALID_REQUEST);
    // getinfo answers run to a few hundred bytes: the first few are run, the rest refused.
    c.send(batch(10).as_bytes()).await;
    let answers = c.answer().await;
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 10);
    let run = answers.iter().filter(|a| a["result"].is_object()).count();
    assert!((1..10).contains(&run), "{run} run");
    assert!(answers[9]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("longer than 2000"));
}
