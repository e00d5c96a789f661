//! The admin line listener for a pool, on 127.0.0.1 with a port from the OS.

use std::net::SocketAddr;

use peerpool_net::pool::Pool;
use peerpool_rpc::admin::client::Client;
use peerpool_rpc::admin::{AdminServer, Config};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::within;

/// An admin listener of `config` for `pool` on 127.0.0.1, port from the OS: the server (it
/// runs until stopped or the test's runtime ends) and its address.
pub async fn serve_admin(pool: &Pool, config: Config) -> (AdminServer, SocketAddr) {
    let daemon = super::daemon(pool, CancellationToken::new());
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let server = AdminServer::bind(&[bind], daemon, config)
        .await
        .expect("binding the admin listener");
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// Calls `method` with `params` and returns its result, failing the test on an error answer,
/// a broken connection or no answer within [`WAIT`](crate::WAIT).
pub async fn call(client: &mut Client, method: &str, params: Value) -> Value {
    within(method, client.call(method, params))
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
        .unwrap_or_else(|e| panic!("{method}: error answer {e}"))
}
