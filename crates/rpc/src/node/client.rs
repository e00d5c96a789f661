//! A small JSON-RPC client over one keep-alive HTTP/1.1 connection: what `peerpool rpc`,
//! the tests and the benchmark use to talk to a [`Server`](super::Server).

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::auth::basic_header;

/// An HTTP answer: status, `Content-Type` and body.
#[derive(Clone, Debug)]
pub struct HttpReply {
    /// The status.
    pub status: StatusCode,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `WWW-Authenticate` header, if any.
    pub www_authenticate: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl HttpReply {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// One connection to an RPC server.
#[derive(Debug)]
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    authorization: Option<String>,
    next_id: u64,
}

impl Client {
    /// Connects to `addr`, to call with `user` and `password` (`None`: no credentials).
    pub async fn connect(addr: SocketAddr, auth: Option<(&str, &str)>) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            // Ends when the server closes or the client is dropped; nothing to report.
            let _ = conn.await;
        });
        Ok(Client {
            sender,
            addr,
            authorization: auth.map(|(u, p)| basic_header(u, p)),
            next_id: 0,
        })
    }

    /// Sends `body` with `POST path` and returns the answer.
    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> io::Result<HttpReply> {
        self.request(Method::POST, path, body.into()).await
    }

    /// Sends `GET path` and returns the answer.
    pub async fn get(&mut self, path: &str) -> io::Result<HttpReply> {
        self.request(Method::GET, path, Bytes::new()).await
    }

    async fn request(&mut self, method: Method, path: &str, body: Bytes) -> io::Result<HttpReply> {
        self.sender.ready().await.map_err(io::Error::other)?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        if let Some(a) = &self.authorization {
            req = req.header(AUTHORIZATION, a);
        }
        let req = req.body(Full::new(body)).map_err(io::Error::other)?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(io::Error::other)?;
        let status = resp.status();
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(CONTENT_TYPE);
        let www_authenticate = header(hyper::header::WWW_AUTHENTICATE);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        Ok(HttpReply {
            status,
            content_type,
            www_authenticate,
            body,
        })
    }

    /// Calls `method` with `params` (an array or object) in the JSON-RPC 1.0 style of
    /// bitcoin-cli, and returns the whole reply.
    pub async fn call(&mut self, method: &str, params: Value) -> io::Result<HttpReply> {
        self.next_id += 1;
        let body =
            json!({ "jsonrpc": "1.0", "id": self.next_id, "method": method, "params": params });
        self.post("/", body.to_string()).await
    }
}
