//! Accepting and dialing connections.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::Config;
use crate::peer::Peer;

/// Pause after the process runs out of file descriptors before accepting again: the pending
/// connection stays in the kernel's backlog, and retrying at once would spin.
const EMFILE_BACKOFF: Duration = Duration::from_millis(100);

/// Limits applied by [`accept_loop`].
#[derive(Clone, Debug)]
pub struct AcceptLimits {
    /// Most inbound peers connected at once; further connections are accepted and closed at
    /// once, so the remote sees a clean close instead of a hang.
    pub max_inbound: usize,
}

impl Default for AcceptLimits {
    /// Bitcoin Core's default of 125 connections less its 11 outbound slots.
    fn default() -> AcceptLimits {
        AcceptLimits { max_inbound: 114 }
    }
}

/// Accepts inbound peers on `listener` until `shutdown` is cancelled, starting a [`Peer`] for
/// each and handing it to `on_peer`.
pub async fn accept_loop(
    listener: TcpListener,
    config: Arc<Config>,
    limits: AcceptLimits,
    shutdown: CancellationToken,
    on_peer: impl Fn(Peer) + Send + 'static,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let mut warned_full = false;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, addr) = match accepted {
            Ok(x) => x,
            Err(e) if is_fd_exhaustion(&e) => {
                warn!("accept: {e}; pausing {EMFILE_BACKOFF:?} (raise the open-file limit)");
                tokio::time::sleep(EMFILE_BACKOFF).await;
                continue;
            }
            Err(e) => {
                debug!("accept: {e}");
                continue;
            }
        };
        if live.load(Ordering::Relaxed) >= limits.max_inbound {
            if !warned_full {
                warn!(
                    "inbound limit of {} reached; refusing {addr}",
                    limits.max_inbound
                );
                warned_full = true;
            }
            drop(stream);
            continue;
        }
        warned_full = false;
        live.fetch_add(1, Ordering::Relaxed);
        // The peer gives its slot back itself when it finishes: no task per peer for that.
        let peer = Peer::new_inbound_counted(Arc::clone(&config), Arc::clone(&live));
        peer.associate_connection(stream);
        on_peer(peer);
    }
}

/// Connects to `addr` (within `timeout`) and starts an outbound [`Peer`] on the connection.
pub async fn dial(config: Arc<Config>, addr: SocketAddr, timeout: Duration) -> io::Result<Peer> {
    dial_from(config, addr, None, timeout).await
}

/// Like [`dial`], with the local end bound to `local` first (an address of this host, port 0
/// for any), so that a machine with many addresses picks which one a peer sees.
pub async fn dial_from(
    config: Arc<Config>,
    addr: SocketAddr,
    local: Option<SocketAddr>,
    timeout: Duration,
) -> io::Result<Peer> {
    let stream = connect_from(addr, local, timeout).await?;
    let peer = Peer::new_outbound(config, addr);
    peer.associate_connection(stream);
    Ok(peer)
}

/// Opens a TCP connection to `addr` within `timeout`, from `local` when given (an address of
/// this host, port 0 for any).
pub(crate) async fn connect_from(
    addr: SocketAddr,
    local: Option<SocketAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let connect = async {
        match local {
            None => TcpStream::connect(addr).await,
            Some(local) => {
                let socket = if local.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(local)?;
                socket.connect(addr).await
            }
        }
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect timed out after {timeout:?}"),
        )),
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE (24): per-process limit; ENFILE (23): system-wide limit.
    matches!(e.raw_os_error(), Some(23) | Some(24))
}
