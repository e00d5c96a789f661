//! Bitcoin Core-compatible JSON-RPC over HTTP: `getpeerinfo`, `addnode`, `setban`, ...
//!
//! Start reading at [`Server::start`]. The server answers the way Bitcoin Core did before
//! version 28, so that existing clients (bitcoin-cli, python-bitcoinrpc's `AuthServiceProxy`,
//! monitoring scripts) work unchanged:
//!
//! - every reply is an object with `result`, `error` and `id` (`id` null when the request had
//!   none), whatever the request's `jsonrpc` member says;
//! - `Content-Type: application/json`; HTTP 200 on success, 500 on an RPC error except 404
//!   for an unknown method and 400 for an invalid request object; a batch (a JSON array) is
//!   answered with HTTP 200 and an array of replies in request order;
//! - parameters positional or named; `POST /` and everything under `POST /wallet/` (the empty
//!   wallet name too) served alike;
//! - HTTP Basic credentials ([`auth`]); bad or missing ones get 401 with `WWW-Authenticate`,
//!   wrong ones after waiting their turn in the daemon's [`FailedAuth`] budget (250 ms each,
//!   one at a time across every connection and listener).
//!
//! **Web pages.** A page open in the operator's browser can send requests to loopback, so
//! nothing a browser sends may change state: requests carrying an `Origin` or `Sec-Fetch-*`
//! header (which browsers add and RPC clients do not) get HTTP 403, and so do requests whose
//! `Host` is neither an IP address nor `localhost` (a DNS-rebinding page names its own host).
//! Methods other than the read-only ones ([`READ_ONLY_METHODS`]) further need a body sent as
//! `Content-Type: application/json`, or with no content type at all (bitcoin-cli before 0.21
//! sent none): a browser cannot send JSON cross-site without asking first.
//!
//! Requests that say `"jsonrpc": "2.0"` get JSON-RPC 2.0 replies, as from Bitcoin Core 28 on:
//! `jsonrpc` echoed, `result` or `error` only, HTTP 200 for RPC errors, and no reply at all to
//! notifications (requests without an `id`). Requests without it (`"1.0"`, `"1.1"`, none) get
//! the replies above. [`Config::strict_jsonrpc2`] off gives every request the older replies,
//! for clients that say "2.0" yet read replies the old way (python-bitcoinrpc's batches).
//!
//! Connections are kept alive. Every request must arrive whole within [`Config::timeout`]
//! (headers and body), bodies are capped at [`Config::max_body`], and at most
//! [`Config::work_queue`] requests run at once (more get HTTP 503, as Core's work queue).
//!
//! `GET /metrics` serves [`metrics`] without credentials.
//!
//! **Who may connect** (Bitcoin Core's `-rpcallowip`): clients on loopback (127.0.0.0/8 and
//! ::1) and in [`Config::allow`]; any other client's requests get HTTP 403 Forbidden with an
//! empty body before credentials are looked at.

pub mod auth;
pub mod client;
pub mod deprecated;
mod guarded;
mod methods;
pub mod metrics;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

pub use auth::{Cookie, Credentials, FailedAuth, RpcAuth};
pub use metrics::Metrics;
/// The JSON library of requests and replies, for callers of [`client`].
pub use serde_json;

use crate::error::{self, RpcError};
use crate::slots::Slots;
use crate::Daemon;
use peerpool_core::addr::Host;
use peerpool_core::pool::banman::Subnet;

/// Delay before answering wrong credentials, to slow down guessing; see [`FailedAuth`].
pub const AUTH_FAILURE_DELAY: Duration = FailedAuth::DELAY;

/// Methods that change nothing: the only ones a request sent with another content type than
/// JSON may call. Any other method, including ones added later, needs a JSON body.
pub const READ_ONLY_METHODS: &[&str] = &[
    "getpeerinfo",
    "getaddednodeinfo",
    "getconnectioncount",
    "getnettotals",
    "getnetworkinfo",
    "listbanned",
    "getnodeaddresses",
    "getaddrmaninfo",
    "getrawaddrman",
    "uptime",
    "help",
];

/// Default time a request has to arrive whole. Bitcoin Core: `DEFAULT_HTTP_SERVER_TIMEOUT`
/// (30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default cap on a request body: 1 MiB, far above any request of these methods (Bitcoin
/// Core's 32 MB `MAX_SIZE` exists for raw blocks and transactions, which peerpool has none of).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Default number of requests handled at once. Bitcoin Core: `DEFAULT_HTTP_WORKQUEUE` (64).
pub const DEFAULT_WORK_QUEUE: usize = 64;

/// Default number of connections served at once (the work queue bounds requests, not
/// connections); past it a newcomer takes the place of the connection quiet the longest.
/// Bitcoin Core bounds its RPC connections by the descriptors it keeps aside for them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// Default time an answer may wait for the client to take it before the connection is
/// closed: a client that does not read pays with its connection, not with our memory.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default cap on the requests of one batch. Bitcoin Core sets none; peerpool's methods are
/// answered from the pool, and a thousand of them is more than any monitoring script sends.
pub const DEFAULT_MAX_BATCH: usize = 1_000;

/// Default cap on one reply's bytes (a whole batch's): past it, the rest of a batch is not
/// run and is answered with errors, and a single answer is replaced by an error. Bitcoin Core:
/// `MAX_SIZE` (32 MiB), its bound on one serialized object.
pub const DEFAULT_MAX_REPLY: usize = 32 << 20;

/// Largest request head (request line and headers) read. Bitcoin Core: `MAX_HEADERS_SIZE`
/// (8,192 bytes), which is also the smallest buffer hyper accepts.
pub const MAX_HEADERS_SIZE: usize = 8192;

/// The RPC port Bitcoin Core uses for `network` ("main", "test", "testnet4", "signet",
/// "regtest"); peerpool's default is the same so clients find it.
pub fn default_port(chain_name: &str) -> u16 {
    match chain_name {
        "test" | "testnet" | "testnet3" => 18332,
        "testnet4" => 48332,
        "signet" => 38332,
        "regtest" => 18443,
        _ => 8332,
    }
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen; Bitcoin Core's default is loopback only.
    pub bind: Vec<SocketAddr>,
    /// Accepted credentials besides the cookie.
    pub credentials: Credentials,
    /// Write a cookie file here (`.cookie`) and accept it; `None`: no cookie.
    pub cookie_dir: Option<PathBuf>,
    /// JSON-RPC 2.0 replies to `"jsonrpc": "2.0"` requests, as Bitcoin Core 28 and later
    /// (default on); off, the older replies to every request.
    pub strict_jsonrpc2: bool,
    /// See [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// See [`DEFAULT_MAX_BODY`].
    pub max_body: usize,
    /// See [`DEFAULT_WORK_QUEUE`].
    pub work_queue: usize,
    /// Clients admitted besides loopback ones (see the module docs); empty: loopback only.
    pub allow: Vec<Subnet>,
    /// Older result shapes to give back ([`deprecated`]).
    pub deprecated: deprecated::Deprecated,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// See [`DEFAULT_MAX_BATCH`].
    pub max_batch: usize,
    /// See [`DEFAULT_MAX_REPLY`].
    pub max_reply: usize,
}

impl Config {
    /// Listens on `bind`, accepting `credentials`; the rest default.
    pub fn new(bind: Vec<SocketAddr>, credentials: Credentials) -> Config {
        Config {
            bind,
            credentials,
            cookie_dir: None,
            strict_jsonrpc2: true,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            work_queue: DEFAULT_WORK_QUEUE,
            allow: Vec::new(),
            deprecated: deprecated::Deprecated::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_batch: DEFAULT_MAX_BATCH,
            max_reply: DEFAULT_MAX_REPLY,
        }
    }
}

/// Whether a client at `ip` may use the server: loopback always (Bitcoin Core admits
/// 127.0.0.0/8 and ::1 whatever `-rpcallowip` says), else when a subnet of `allow` holds it.
/// IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn client_allowed(allow: &[Subnet], ip: IpAddr) -> bool {
    let host = Host::from_ip(ip);
    match host {
        Host::Ipv4(v4) if v4.is_loopback() => return true,
        Host::Ipv6(v6) if v6.is_loopback() => return true,
        _ => {}
    }
    allow.iter().any(|s| s.contains(&host))
}

/// What the handlers share.
pub(crate) struct Context {
    pub(crate) daemon: Daemon,
    pub(crate) deprecated: deprecated::Deprecated,
    metrics: Arc<Metrics>,
    credentials: Credentials,
    failed: Arc<FailedAuth>,
    strict: bool,
    timeout: Duration,
    max_body: usize,
    max_batch: usize,
    max_reply: usize,
    work: Semaphore,
}

/// A running server. Dropping it stops accepting, ends open connections and removes the
/// cookie file.
#[derive(Debug)]
pub struct Server {
    addrs: Vec<SocketAddr>,
    stop: CancellationToken,
    tracker: TaskTracker,
    cookie: Option<Cookie>,
    metrics: Arc<Metrics>,
    credentials: Credentials,
    failed: Arc<FailedAuth>,
    accept: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds every address of `config.bind`, writes the cookie if asked, and serves `daemon`
    /// until [`Server::stop`] or the daemon's shutdown.
    pub async fn start(config: Config, daemon: Daemon) -> io::Result<Server> {
        let mut listeners = Vec::new();
        for addr in &config.bind {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                io::Error::new(e.kind(), format!("binding RPC listener on {addr}: {e}"))
            })?;
            listeners.push(l);
        }
        Server::start_on(config, daemon, listeners).await
    }

    /// As [`Server::start`], on listeners already bound (`config.bind` is ignored).
    pub async fn start_on(
        config: Config,
        daemon: Daemon,
        listeners: Vec<TcpListener>,
    ) -> io::Result<Server> {
        let mut credentials = config.credentials.clone();
        let cookie = match &config.cookie_dir {
            Some(dir) => {
                let c = Cookie::create(dir).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("writing the RPC cookie in {}: {e}", dir.display()),
                    )
                })?;
                credentials = credentials.with_password(auth::COOKIE_USER, c.password());
                Some(c)
            }
            None => None,
        };
        let stop = daemon.shutdown.child_token();
        let metrics = Arc::new(Metrics::new());
        let failed = Arc::new(FailedAuth::counting(metrics.auth_failures()));
        let ctx = Arc::new(Context {
            daemon: daemon.clone(),
            deprecated: config.deprecated.clone(),
            metrics: Arc::clone(&metrics),
            credentials: credentials.clone(),
            failed: Arc::clone(&failed),
            strict: config.strict_jsonrpc2,
            timeout: config.timeout,
            max_body: config.max_body,
            max_batch: config.max_batch,
            max_reply: config.max_reply,
            work: Semaphore::new(config.work_queue.max(1)),
        });
        let router = Router::new()
            .route("/", post(rpc))
            // Core serves the whole `/wallet/` prefix, the empty wallet name (where clients in
            // default-wallet mode send everything) included.
            .route("/wallet/", post(rpc))
            .route("/wallet/{*name}", post(rpc))
            .route("/metrics", get(scrape))
            .with_state(Arc::clone(&ctx));
        let gate = Gate::new(router, config.allow.clone());
        let tracker = TaskTracker::new();
        {
            let metrics = Arc::clone(&metrics);
            let pool = daemon.pool.clone();
            let stop = stop.clone();
            tracker.spawn(async move { metrics.follow(pool, stop).await });
        }
        let mut addrs = Vec::new();
        let mut accept = Vec::new();
        let conns = ConnLimits {
            header_timeout: config.timeout,
            write_timeout: config.write_timeout,
            max: config.max_connections,
            slots: Slots::default(),
        };
        for listener in listeners {
            let addr = listener.local_addr()?;
            info!("RPC server listening on {addr}");
            addrs.push(addr);
            accept.push(tokio::spawn(accept_loop(
                listener,
                gate.clone(),
                conns.clone(),
                stop.clone(),
                tracker.clone(),
            )));
        }
        Ok(Server {
            addrs,
            stop,
            tracker,
            cookie,
            metrics,
            credentials,
            failed,
            accept,
        })
    }

    /// The addresses it listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The cookie file, if one was written.
    pub fn cookie(&self) -> Option<&Cookie> {
        self.cookie.as_ref()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The credentials it accepts, the cookie's included: for the admin listener's `auth`.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The failure budget its credential checks share (see [`FailedAuth`]): for the other
    /// listeners of the daemon.
    pub fn failed_auth(&self) -> &Arc<FailedAuth> {
        &self.failed
    }

    /// Stops accepting, lets requests in progress finish, and removes the cookie.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for a in self.accept.drain(..) {
            let _ = a.await;
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The routes, and what clients outside the allowed subnets get instead.
#[derive(Clone)]
struct Gate {
    router: Router,
    forbidden: Router,
    allow: Arc<Vec<Subnet>>,
}

impl Gate {
    fn new(router: Router, allow: Vec<Subnet>) -> Gate {
        Gate {
            router,
            forbidden: Router::new().fallback(|| async { StatusCode::FORBIDDEN }),
            allow: Arc::new(allow),
        }
    }

    /// What serves a client at `from`.
    fn routes_for(&self, from: SocketAddr) -> Router {
        if client_allowed(&self.allow, from.ip()) {
            self.router.clone()
        } else {
            // Answered rather than closed, as Bitcoin Core, so the client sees why.
            peerpool_net::log_limited!(
                tracing::Level::WARN,
                "RPC client {from} rejected: its network is not allowed RPC access (see --rpc-allow-ip)"
            );
            self.forbidden.clone()
        }
    }
}

/// How connections are kept: see [`Config`].
#[derive(Clone)]
struct ConnLimits {
    header_timeout: Duration,
    write_timeout: Duration,
    max: usize,
    slots: Slots,
}

async fn accept_loop(
    listener: TcpListener,
    gate: Gate,
    limits: ConnLimits,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    while let Some((stream, from)) = peerpool_net::next_connection(&listener, &stop).await {
        let _ = stream.set_nodelay(true);
        let (slot, evicted) = limits.slots.take(limits.max, &stop);
        if evicted {
            debug!(%from, "RPC connections full: closed the idlest one for a new one");
        }
        let service = TowerToHyperService::new(gate.routes_for(from));
        let limits = limits.clone();
        tracker.spawn(async move {
            let io = guarded::Guarded::new(stream, Arc::clone(&slot), limits.write_timeout);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_HEADERS_SIZE)
                .keep_alive(true)
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%from, "RPC connection ended: {e}");
                    }
                }
                () = slot.close.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
            limits.slots.release(&slot);
        });
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn unauthorized() -> Response {
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"jsonrpc\""),
    );
    r
}

/// The HTTP status of a single request's error reply (Bitcoin Core's `JSONErrorReply`).
fn status_of(code: i32) -> StatusCode {
    match code {
        error::INVALID_REQUEST => StatusCode::BAD_REQUEST,
        error::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn reply_too_long(max: usize) -> RpcError {
    RpcError::new(
        error::INTERNAL_ERROR,
        format!("reply longer than {max} bytes: not sent (ask for less at a time)"),
    )
}

fn legacy_error(e: &RpcError, id: Value) -> String {
    json!({ "result": null, "error": e.to_json(), "id": id }).to_string()
}

async fn scrape(State(ctx): State<Arc<Context>>) -> Response {
    let text = ctx.metrics.render(&ctx.daemon.pool).await;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// Why a request a web page may have made is refused, if it is (see the module docs).
fn browser_refusal(headers: &HeaderMap) -> Option<&'static str> {
    if headers.contains_key(header::ORIGIN)
        || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"))
    {
        return Some("requests from web pages are refused");
    }
    match headers.get(header::HOST).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(host)) if host_is_local_or_ip(host) => None,
        Some(_) => Some("the Host header must name an IP address or localhost"),
    }
}

/// Whether a `Host` header value (`name[:port]`, `[v6][:port]`) is an IP address or
/// `localhost`.
fn host_is_local_or_ip(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Whether the body was sent as JSON, or without a content type.
fn json_or_untyped(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(ct)) => ct
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")),
        Some(Err(_)) => false,
    }
}

async fn rpc(State(ctx): State<Arc<Context>>, headers: HeaderMap, body: Body) -> Response {
    if let Some(why) = browser_refusal(&headers) {
        peerpool_net::log_limited!(tracing::Level::WARN, "RPC request refused: {why}");
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return unauthorized();
    };
    if !auth.to_str().is_ok_and(|a| ctx.credentials.check(a)) {
        peerpool_net::log_limited!(tracing::Level::WARN, "RPC request with wrong credentials");
        ctx.failed.pay().await;
        return unauthorized();
    }
    let json = json_or_untyped(&headers);
    let limited = http_body_util::Limited::new(body, ctx.max_body);
    let bytes: Bytes = match tokio::time::timeout(ctx.timeout, limited.collect()).await {
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            )
                .into_response()
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            let err = RpcError::new(
                error::INVALID_REQUEST,
                format!("Request body larger than {} bytes", ctx.max_body),
            );
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                legacy_error(&err, Value::Null),
            );
        }
        Ok(Err(e)) => {
            debug!("RPC body not read: {e}");
            return (StatusCode::BAD_REQUEST, "request body not read").into_response();
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    // Taken once the request is whole, so clients slow to send cannot fill the queue.
    let Ok(_permit) = ctx.work.try_acquire() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "Work queue depth exceeded").into_response();
    };
    let parsed: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => {
            let err = RpcError::new(error::PARSE_ERROR, "Parse error");
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                legacy_error(&err, Value::Null),
            );
        }
    };
    match parsed {
        Value::Object(_) => {
            let (status, reply) = handle_one(&ctx, parsed, json).await;
            match reply {
                Some(r) if r.len() > ctx.max_reply => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    legacy_error(&reply_too_long(ctx.max_reply), Value::Null),
                ),
                Some(r) => json_response(status, r),
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
        Value::Array(batch) if batch.len() > ctx.max_batch => {
            let err = RpcError::new(
                error::INVALID_REQUEST,
                format!(
                    "batch of {} requests: at most {} are taken",
                    batch.len(),
                    ctx.max_batch
                ),
            );
            json_response(StatusCode::BAD_REQUEST, legacy_error(&err, Value::Null))
        }
        Value::Array(batch) => {
            let requested = batch.len();
            let mut replies = Vec::with_capacity(batch.len());
            // Counted as they come: past the bound, the rest of the batch does not run.
            let mut bytes = 2;
            for request in batch {
                if bytes > ctx.max_reply {
                    let id = request.get("id").cloned().unwrap_or(Value::Null);
                    replies.push(legacy_error(&reply_too_long(ctx.max_reply), id));
                    continue;
                }
                if let (_, Some(r)) = handle_one(&ctx, request, json).await {
                    let r = if r.len() > ctx.max_reply {
                        legacy_error(&reply_too_long(ctx.max_reply), Value::Null)
                    } else {
                        r
                    };
                    bytes += r.len() + 1;
                    replies.push(r);
                }
            }
            // A batch of notifications only gets no reply; an empty batch still gets `[]`
            // (as Core: it carried no version, so it is answered as before JSON-RPC 2.0).
            if ctx.strict && replies.is_empty() && requested > 0 {
                return StatusCode::NO_CONTENT.into_response();
            }
            json_response(StatusCode::OK, format!("[{}]", replies.join(",")))
        }
        _ => {
            let err = RpcError::new(error::PARSE_ERROR, "Top-level object parse error");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                legacy_error(&err, Value::Null),
            )
        }
    }
}

/// One request object: its HTTP status alone, and its reply (`None` for a JSON-RPC 2.0
/// notification in strict mode).
async fn handle_one(ctx: &Context, request: Value, json: bool) -> (StatusCode, Option<String>) {
    let Value::Object(mut obj) = request else {
        let err = RpcError::new(error::INVALID_REQUEST, "Invalid Request object");
        return (
            StatusCode::BAD_REQUEST,
            Some(legacy_error(&err, Value::Null)),
        );
    };
    let has_id = obj.contains_key("id");
    let id = obj.remove("id").unwrap_or(Value::Null);
    let v2 = ctx.strict && obj.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let outcome = match (obj.remove("method"), obj.remove("params")) {
        (None, _) => Err(RpcError::new(error::INVALID_REQUEST, "Missing method")),
        (Some(Value::String(method)), _)
            if !json && !READ_ONLY_METHODS.contains(&method.as_str()) =>
        {
            Err(RpcError::new(
                error::INVALID_REQUEST,
                format!("{method} changes state: send it with Content-Type: application/json"),
            ))
        }
        (Some(Value::String(method)), params) => {
            let known = methods::exists(&method);
            let r = methods::call(ctx, &method, params.unwrap_or(Value::Null)).await;
            ctx.metrics
                .rpc_call(if known { &method } else { "other" }, r.is_ok());
            r
        }
        (Some(_), _) => Err(RpcError::new(
            error::INVALID_REQUEST,
            "Method must be a string",
        )),
    };
    if v2 {
        if !has_id {
            return (StatusCode::NO_CONTENT, None);
        }
        // Core 28: only malformed requests change the HTTP status.
        return match outcome {
            Ok(result) => (
                StatusCode::OK,
                Some(format!(
                    r#"{{"jsonrpc":"2.0","result":{},"id":{id}}}"#,
                    result.into_text()
                )),
            ),
            Err(e) => {
                let status = if e.code == error::INVALID_REQUEST {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                };
                let reply = json!({ "jsonrpc": "2.0", "error": e.to_json(), "id": id });
                (status, Some(reply.to_string()))
            }
        };
    }
    match outcome {
        Ok(result) => (
            StatusCode::OK,
            Some(format!(
                r#"{{"result":{},"error":null,"id":{id}}}"#,
                result.into_text()
            )),
        ),
        Err(e) => (status_of(e.code), Some(legacy_error(&e, id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(allow: &[&str], ip: &str) -> bool {
        let allow: Vec<Subnet> = allow.iter().map(|s| s.parse().unwrap()).collect();
        client_allowed(&allow, ip.parse().unwrap())
    }

    #[test]
    fn loopback_is_always_allowed_and_nothing_else_by_default() {
        for ip in ["127.0.0.1", "127.45.3.2", "::1", "::ffff:127.0.0.9"] {
            assert!(allowed(&[], ip), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "192.168.1.7",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!allowed(&[], ip), "{ip}");
        }
    }

    #[test]
    fn allowed_subnets_admit_their_clients_only() {
        let allow = [
            "10.1.0.0/16",
            "192.168.1.7",
            "2001:db8::/32",
            "172.16.0.0/255.240.0.0",
        ];
        for ip in [
            "10.1.200.3",
            "192.168.1.7",
            "2001:db8:ffff::2",
            "172.31.255.254",
            "::ffff:10.1.0.1",
        ] {
            assert!(allowed(&allow, ip), "{ip}");
        }
        for ip in ["10.2.0.1", "192.168.1.8", "2001:db9::1", "172.32.0.1"] {
            assert!(!allowed(&allow, ip), "{ip}");
        }
        assert!(allowed(&["0.0.0.0/0"], "8.8.4.4"));
        assert!(!allowed(&["0.0.0.0/0"], "2001:db8::1"));
        assert!(allowed(&["::/0"], "2001:db8::1"));
    }

    async fn status_for(gate: &Gate, from: &str, path: &str) -> (StatusCode, Bytes) {
        use tower::ServiceExt;
        let req = axum::http::Request::post(path)
            .body(Body::from(r#"{"method":"uptime"}"#))
            .unwrap();
        let r = gate
            .routes_for(from.parse().unwrap())
            .oneshot(req)
            .await
            .unwrap();
        let status = r.status();
        (status, r.into_body().collect().await.unwrap().to_bytes())
    }

    #[test]
    fn browser_requests_are_told_apart_from_rpc_clients() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        for ok in [
            &[("host", "127.0.0.1:8332")][..],
            &[("host", "localhost")],
            &[("host", "[::1]:18443")],
            &[],
        ] {
            assert_eq!(browser_refusal(&headers(ok)), None, "{ok:?}");
        }
        for refused in [
            &[("host", "127.0.0.1"), ("origin", "https://example.com")][..],
            &[("origin", "null")],
            &[("sec-fetch-site", "cross-site")],
            &[("host", "evil.example:8332")],
            &[("host", "[::1")],
        ] {
            assert!(browser_refusal(&headers(refused)).is_some(), "{refused:?}");
        }
        assert!(json_or_untyped(&headers(&[])));
        assert!(json_or_untyped(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(!json_or_untyped(&headers(&[(
            "content-type",
            "text/plain;"
        )])));
        assert!(!json_or_untyped(&headers(&[(
            "content-type",
            "application/x-www-form-urlencoded"
        )])));
    }

    #[tokio::test]
    async fn clients_outside_the_allowed_subnets_get_an_empty_403() {
        let inner = Router::new().route("/", post(|| async { "served" }));
        let gate = Gate::new(inner, vec!["10.1.0.0/16".parse().unwrap()]);
        for path in ["/", "/wallet/w", "/metrics"] {
            assert_eq!(
                status_for(&gate, "10.2.0.1:5000", path).await,
                (StatusCode::FORBIDDEN, Bytes::new()),
                "{path}"
            );
        }
        for from in ["10.1.3.4:5000", "127.0.0.1:5000", "[::1]:5000"] {
            assert_eq!(
                status_for(&gate, from, "/").await,
                (StatusCode::OK, Bytes::from_static(b"served")),
                "{from}"
            );
        }
    }
}
