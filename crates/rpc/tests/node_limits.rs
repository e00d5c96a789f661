//! The node RPC's bounds on what one client can cost: requests per batch, reply bytes,
//! connections held, and answers a client never reads.

use std::time::Duration;

use peerpool_rpc::node::auth::basic_header;
use peerpool_testkit::rpc::node::{Node, PASSWORD, USER};
use peerpool_testkit::{within, WAIT};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn batch(method: &str, n: usize) -> String {
    let one = format!(r#"{{"method":"{method}","id":1}}"#);
    format!("[{}]", vec![one.as_str(); n].join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_in_requests_and_reply_bytes() {
    let node = Node::start_with(|c| {
        c.max_batch = 50;
        c.max_reply = 4_000;
    })
    .await;
    let r = node.post(&batch("uptime", 51)).await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.json().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 50"));
    // getnetworkinfo replies run to some hundreds of bytes: a few run, the rest do not.
    let r = node.post(&batch("getnetworkinfo", 50)).await;
    assert_eq!(r.status.as_u16(), 200);
    let replies = r.json().unwrap();
    let replies = replies.as_array().unwrap();
    assert_eq!(replies.len(), 50);
    let run = replies.iter().filter(|r| r["error"].is_null()).count();
    assert!((1..50).contains(&run), "{run} ran");
    assert!(replies[49]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("longer than 4000"));
    // A single reply past the bound is an error too.
    let node = Node::start_with(|c| c.max_reply = 100).await;
    let r = node.post(r#"{"method":"getnetworkinfo","id":1}"#).await;
    assert_eq!(r.status.as_u16(), 500);
    assert_eq!(r.json().unwrap()["error"]["code"], -32603);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_loses_its_connection_and_others_are_served() {
    let node = Node::start_with(|c| c.write_timeout = Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(node.rpc_addr()).await.unwrap();
    let body = batch("help", 1000);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        basic_header(USER, PASSWORD),
        body.len()
    );
    // Requests whose replies outgrow the socket buffers, never read.
    for _ in 0..20 {
        if s.write_all(request.as_bytes()).await.is_err() {
            break;
        }
        assert_eq!(
            node.call("getconnectioncount", Value::Null).await.0,
            200,
            "another client waits"
        );
    }
    // Reading nothing, the client learns of the close when its next bytes are refused (the
    // server closes a socket with unread input: a reset).
    within("the end of the non-reading client's connection", async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b" ").await.is_err() {
                return;
            }
        }
    })
    .await;
    assert_eq!(node.call("getconnectioncount", Value::Null).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_make_room_for_a_working_client() {
    let node = Node::start_with(|c| c.max_connections = 8).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(node.rpc_addr()).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The cap is reached: a client that calls still gets its answer, and the idlest goes.
    assert_eq!(node.call("uptime", Value::Null).await.0, 200);
    let mut first = idle.remove(0);
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, first.read(&mut buf))
        .await
        .expect("the idlest connection closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}
