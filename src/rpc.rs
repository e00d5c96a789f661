//! The daemon's Bitcoin Core-compatible RPC server flags, and `peerpool rpc`.

use clap::Args;

use crate::config::FileConfig;

/// `peerpool run`'s flags for the RPC server.
#[derive(Args, Debug, Default)]
#[group(id = "rpc-server")]
pub struct ServerArgs {}

impl ServerArgs {
    /// Starts the RPC server for `daemon` (flags over `file`).
    pub async fn start(
        &self,
        _file: &FileConfig,
        _daemon: &peerpool_rpc::Daemon,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        Ok(None)
    }
}

/// `peerpool rpc METHOD [ARGS...]`.
#[derive(Args, Debug)]
pub struct ClientArgs {}

/// Runs `peerpool rpc`; returns the process exit code.
pub async fn client(_args: ClientArgs) -> anyhow::Result<u8> {
    anyhow::bail!("peerpool rpc is not available yet")
}
