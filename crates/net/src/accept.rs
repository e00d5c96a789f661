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

/// Pause after a failed accept that is not the remote's doing (out of file descriptors, most
/// likely) before accepting again: the pending connection stays in the kernel's backlog, and
/// retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    while let Some((stream, addr)) = next_connection(&listener, &shutdown).await {
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

/// Waits for the next connection on `listener`; `None` once `shutdown` is cancelled.
///
/// A connection the remote gave up on before it was taken (reset, aborted) is skipped at once; any other
/// failure, above all running out of file descriptors (EMFILE, ENFILE), is logged and followed
/// by a pause, so that a listener never spins on an error that the next accept would repeat.
pub async fn next_connection(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return None,
            r = listener.accept() => r,
        };
        let e = match accepted {
            Ok(conn) => return Some(conn),
            Err(e) => e,
        };
        let local = listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        if is_remote_failure(&e) {
            debug!(listener = %local, "accept: {e}");
            continue;
        }
        if is_fd_exhaustion(&e) {
            warn!(listener = %local, "accept: {e}; pausing {ACCEPT_BACKOFF:?} (raise the open-file limit)");
        } else {
            warn!(listener = %local, "accept: {e}; pausing {ACCEPT_BACKOFF:?}");
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
        }
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

/// The remote closed or reset the connection before it was taken: nothing wrong here.
fn is_remote_failure(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE (24): per-process limit; ENFILE (23): system-wide limit.
    matches!(e.raw_os_error(), Some(23) | Some(24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn next_connection_hands_over_connections_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_stream, from) = next_connection(&listener, &shutdown).await.unwrap();
        assert_eq!(from, client.local_addr().unwrap());
        shutdown.cancel();
        assert!(next_connection(&listener, &shutdown).await.is_none());
    }
}
