//! peerpool's RPC listeners in the test's own process, in front of a pool on loopback:
//! [`node`] for the Bitcoin Core-compatible JSON-RPC over HTTP, [`admin`] for the admin line
//! RPC and its event stream.

use std::time::SystemTime;

use peerpool_net::pool::Pool;
use peerpool_rpc::Daemon;
use peerpool_wire::Network;
use tokio_util::sync::CancellationToken;

pub mod admin;
pub mod node;

/// The user agent the RPC listeners report for a test pool (`getnetworkinfo`'s `subversion`).
pub const USER_AGENT: &str = "/peerpool:test/";

/// What an RPC listener serves for `pool`: regtest, no data directory, started now; `shutdown`
/// is what the `stop` method cancels.
pub fn daemon(pool: &Pool, shutdown: CancellationToken) -> Daemon {
    Daemon {
        pool: pool.handle(),
        chain: Network::Regtest.params(),
        data_dir: None,
        started: SystemTime::now(),
        user_agent: USER_AGENT.to_owned(),
        listening: pool.listening().to_vec(),
        shutdown,
    }
}
