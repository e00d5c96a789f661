//! The daemon's admin listener flags, `peerpool admin` and `peerpool events`.

use clap::Args;

use crate::config::FileConfig;

/// `peerpool run`'s flags for the admin listener.
#[derive(Args, Debug, Default)]
#[group(id = "admin-server")]
pub struct ServerArgs {}

impl ServerArgs {
    /// Starts the admin listener for `daemon` (flags over `file`).
    pub async fn start(
        &self,
        _file: &FileConfig,
        _daemon: &peerpool_rpc::Daemon,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        Ok(None)
    }
}

/// `peerpool admin COMMAND [ARGS...]`.
#[derive(Args, Debug)]
pub struct ClientArgs {}

/// Runs `peerpool admin`; returns the process exit code.
pub async fn client(_args: ClientArgs) -> anyhow::Result<u8> {
    anyhow::bail!("peerpool admin is not available yet")
}

/// `peerpool events [--filter ...]`.
#[derive(Args, Debug)]
pub struct EventsArgs {}

/// Runs `peerpool events`; returns the process exit code.
pub async fn events(_args: EventsArgs) -> anyhow::Result<u8> {
    anyhow::bail!("peerpool events is not available yet")
}
