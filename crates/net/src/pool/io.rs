//! The pool's sockets: accept tasks and dials.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use peerpool_core::addr::NetAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accept::next_connection;
use crate::discovery::{connect_via_proxy, ProxyCredentials};

/// An accepted connection waiting for the driver's verdict.
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) addr: SocketAddr,
}

/// Accepts connections on `listener` and hands them to the driver until `shutdown`.
pub(crate) async fn accept(
    listener: TcpListener,
    to_driver: mpsc::Sender<Accepted>,
    shutdown: CancellationToken,
) {
    while let Some((stream, addr)) = next_connection(&listener, &shutdown).await {
        let sent = tokio::select! {
            () = shutdown.cancelled() => return,
            r = to_driver.send(Accepted { stream, addr }) => r,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// How outbound connections are made.
#[derive(Clone, Debug)]
pub(crate) struct Dialer {
    pub(crate) proxy: Option<SocketAddr>,
    pub(crate) proxy_randomize: bool,
    pub(crate) bind: Option<IpAddr>,
    pub(crate) timeout: Duration,
}

impl Dialer {
    /// A connected socket to `addr`, directly or through the proxy.
    pub(crate) async fn connect(&self, addr: NetAddr) -> io::Result<TcpStream> {
        if let Some(proxy) = self.proxy {
            let credentials = self.proxy_randomize.then(ProxyCredentials::random);
            return connect_via_proxy(proxy, addr, self.timeout, credentials.as_ref()).await;
        }
        let Some(target) = addr.to_socket() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} is reachable only through a proxy", addr.network()),
            ));
        };
        // A loopback source address reaches only loopback targets.
        let bind = self.bind.filter(|ip| {
            ip.is_ipv4() == target.is_ipv4() && (!ip.is_loopback() || target.ip().is_loopback())
        });
        crate::accept::connect_from(target, bind.map(|ip| SocketAddr::new(ip, 0)), self.timeout)
            .await
    }

    /// The socket address a peer reached at `addr` is known by: the address itself, or for
    /// names only the proxy can reach, the proxy's.
    pub(crate) fn socket_of(&self, addr: &NetAddr) -> SocketAddr {
        addr.to_socket()
            .or(self.proxy)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], addr.port)))
    }
}
