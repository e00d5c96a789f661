//! Addresses as people write them (flags, config files, RPC arguments), made into peer
//! addresses: [`resolve`] reads the text with [`AddrSpec::parse`] and looks a host name up,
//! through the system's resolver or, when the node uses a proxy, through Tor's `RESOLVE`, so
//! that such a node makes no DNS query of its own here either.

use std::io;
use std::net::{IpAddr, SocketAddr};

use peerpool_core::addr::{AddrSpec, AddrSpecError, NetAddr};

use super::dns::DEFAULT_LOOKUP_TIMEOUT;
use super::socks::resolve_via_tor;

/// Why [`resolve`] found no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The text is not an address.
    #[error(transparent)]
    Invalid(#[from] AddrSpecError),
    /// The system's resolver failed to look the name up.
    #[error("address {spec:?} is not IP[:PORT] and did not resolve")]
    Lookup {
        /// The text as given.
        spec: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// The proxy failed to look the name up (it carries a
    /// [`ProxyError`](super::ProxyError)).
    #[error("resolving {spec:?} through the proxy")]
    Proxy {
        /// The text as given.
        spec: String,
        /// What the exchange with the proxy ended with.
        #[source]
        source: io::Error,
    },
    /// The lookup succeeded with no address.
    #[error("address {spec:?} resolved to nothing")]
    Empty {
        /// The text as given.
        spec: String,
    },
}

/// The address `spec` names (see [`AddrSpec::parse`]; `default_port` where none is written).
/// IP, Tor and I2P addresses are taken as they are; a host name is looked up through the Tor
/// proxy at `proxy` when there is one (within [`DEFAULT_LOOKUP_TIMEOUT`]), else through the
/// system's resolver, and its first address is taken.
pub async fn resolve(
    spec: &str,
    default_port: u16,
    proxy: Option<SocketAddr>,
) -> Result<NetAddr, ResolveError> {
    let (host, port) = match AddrSpec::parse(spec, default_port)? {
        AddrSpec::Addr(a) => return Ok(a),
        AddrSpec::Name { host, port } => (host, port),
    };
    let first: Option<IpAddr> = match proxy {
        Some(proxy) => resolve_via_tor(proxy, &host, DEFAULT_LOOKUP_TIMEOUT)
            .await
            .map_err(|source| ResolveError::Proxy {
                spec: spec.to_owned(),
                source,
            })?
            .first()
            .copied(),
        None => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|source| ResolveError::Lookup {
                spec: spec.to_owned(),
                source,
            })?
            .next()
            .map(|sa| sa.ip()),
    };
    let ip = first.ok_or_else(|| ResolveError::Empty {
        spec: spec.to_owned(),
    })?;
    Ok(NetAddr::from_socket(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_need_no_resolver_and_names_use_the_one_given() {
        // No proxy listens on port 1: a literal must not reach for it.
        let dead_proxy = Some(SocketAddr::from(([127, 0, 0, 1], 1)));
        let a = resolve("[::1]", 8333, dead_proxy).await.unwrap();
        assert_eq!(a.to_string(), "[::1]:8333");
        let r = resolve("seed.example", 8333, dead_proxy).await;
        assert!(matches!(r, Err(ResolveError::Proxy { .. })), "{r:?}");
        let r = resolve("not an address", 8333, None).await;
        assert!(matches!(r, Err(ResolveError::Invalid(_))), "{r:?}");
        let local = resolve("localhost:7", 8333, None).await.unwrap();
        assert!(local.is_loopback() && local.port == 7, "{local}");
    }
}
