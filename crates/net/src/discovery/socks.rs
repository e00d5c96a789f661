//! Connections and name lookups through a SOCKS5 proxy (RFC 1928, RFC 1929), with Tor's
//! extensions.
//!
//! A connection goes: TCP to the proxy, method selection (no authentication, or
//! username/password when [`ProxyCredentials`] are given), then a `CONNECT` naming the target.
//! IP targets are sent as addresses; `.onion` and `.b32.i2p` hosts, and any other name, are
//! sent in the domain-name form so that the *proxy* resolves them. Tor can reach an onion
//! service no other way, and it keeps our own resolver from learning which names we visit.
//!
//! Tor adds two things used here:
//! - **Stream isolation.** Tor (with its default `IsolateSOCKSAuth`) never shares a circuit
//!   between streams that authenticated with different credentials, whatever the values.
//!   [`ProxyCredentials::random`] makes fresh ones per connection, as Bitcoin Core's
//!   `-proxyrandomize` does, so that peers cannot be linked by their shared exit.
//! - **`RESOLVE` (command `0xF0`).** The proxy looks a name up and answers with an address in
//!   the reply's bound-address field, no stream opened. [`resolve_via_tor`] uses it so that a
//!   node configured with a proxy makes no DNS query of its own, DNS seeds included. Proxies
//!   other than Tor answer "command not supported".
//!
//! The handshake bytes are tokio-socks's; this module adds timeouts, target selection and the
//! typed [`ProxyError`].

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use peerpool_core::addr::{Host, NetAddr};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;
use tokio_socks::TargetAddr;
use tracing::debug;

/// Longest host name the domain-name address form can carry: its length is one byte.
const MAX_DOMAIN_LEN: usize = 255;

/// Length in bytes of each half of [`ProxyCredentials::random`]: 16 hex digits, 64 random
/// bits, enough that two connections never share credentials by chance.
const RANDOM_CREDENTIAL_LEN: usize = 16;

/// A username and password for a SOCKS5 proxy (RFC 1929).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    username: String,
    password: String,
}

impl ProxyCredentials {
    /// Credentials with the given values; each must be 1 to 255 bytes long (RFC 1929 carries
    /// lengths in one byte and leaves no room for an empty field).
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<ProxyCredentials, ProxyError> {
        let username = username.into();
        let password = password.into();
        for (what, value) in [("username", &username), ("password", &password)] {
            if value.is_empty() || value.len() > 255 {
                return Err(ProxyError::InvalidCredentials(format!(
                    "{what} must be 1 to 255 bytes, not {}",
                    value.len()
                )));
            }
        }
        Ok(ProxyCredentials { username, password })
    }

    /// Fresh random credentials, for Tor stream isolation (Bitcoin Core: `-proxyrandomize`).
    ///
    /// Tor uses the pair only to tell streams apart, never to check it, so the values need to
    /// be distinct rather than secret: a fast non-cryptographic generator is enough.
    pub fn random() -> ProxyCredentials {
        ProxyCredentials {
            username: random_token(),
            password: random_token(),
        }
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }
}

impl fmt::Debug for ProxyCredentials {
    // The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyCredentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// [`RANDOM_CREDENTIAL_LEN`] random hex digits.
fn random_token() -> String {
    (0..RANDOM_CREDENTIAL_LEN)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
        .collect()
}

/// Where a connection through the proxy should go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProxyTarget {
    /// A peer address. IPv4, IPv6 and CJDNS are sent as addresses; Tor and I2P hosts by name,
    /// so that the proxy resolves them.
    Addr(NetAddr),
    /// A host name (or an IP address in text) and port. A name is sent as a name: the proxy
    /// resolves it and no DNS query leaves this host.
    Name {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl From<NetAddr> for ProxyTarget {
    fn from(addr: NetAddr) -> ProxyTarget {
        ProxyTarget::Addr(addr)
    }
}

impl From<&NetAddr> for ProxyTarget {
    fn from(addr: &NetAddr) -> ProxyTarget {
        ProxyTarget::Addr(*addr)
    }
}

impl From<SocketAddr> for ProxyTarget {
    fn from(addr: SocketAddr) -> ProxyTarget {
        ProxyTarget::Addr(NetAddr::from_socket(addr))
    }
}

impl From<(String, u16)> for ProxyTarget {
    fn from((host, port): (String, u16)) -> ProxyTarget {
        ProxyTarget::Name { host, port }
    }
}

impl From<(&str, u16)> for ProxyTarget {
    fn from((host, port): (&str, u16)) -> ProxyTarget {
        ProxyTarget::Name {
            host: host.to_owned(),
            port,
        }
    }
}

impl fmt::Display for ProxyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyTarget::Addr(a) => write!(f, "{a}"),
            ProxyTarget::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl ProxyTarget {
    /// The address as the SOCKS request will carry it.
    fn to_socks(&self) -> Result<TargetAddr<'static>, ProxyError> {
        match self {
            ProxyTarget::Addr(a) => match a.host {
                Host::Ipv4(ip) => Ok(TargetAddr::Ip(SocketAddr::new(IpAddr::V4(ip), a.port))),
                Host::Ipv6(ip) | Host::Cjdns(ip) => {
                    Ok(TargetAddr::Ip(SocketAddr::new(IpAddr::V6(ip), a.port)))
                }
                // Host's Display is the `.onion` / `.b32.i2p` name.
                Host::TorV3(_) | Host::I2p(_) => {
                    Ok(TargetAddr::Domain(a.host.to_string().into(), a.port))
                }
            },
            ProxyTarget::Name { host, port } => {
                if let Ok(ip) = host.parse::<IpAddr>() {
                    return Ok(TargetAddr::Ip(SocketAddr::new(ip, *port)));
                }
                domain_target(host, *port)
            }
        }
    }
}

fn domain_target(host: &str, port: u16) -> Result<TargetAddr<'static>, ProxyError> {
    if host.is_empty() || host.len() > MAX_DOMAIN_LEN {
        return Err(ProxyError::InvalidTarget(format!(
            "host name must be 1 to {MAX_DOMAIN_LEN} bytes, not {}",
            host.len()
        )));
    }
    if host.bytes().any(|b| b == 0 || b.is_ascii_whitespace()) {
        return Err(ProxyError::InvalidTarget(format!(
            "{host:?} is not a host name"
        )));
    }
    Ok(TargetAddr::Domain(host.to_owned().into(), port))
}

/// Why a connection or lookup through a SOCKS5 proxy failed.
///
/// The functions of this module return [`io::Error`]s that carry one of these: get it back
/// with [`ProxyError::from_io`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The TCP connection to the proxy itself failed.
    #[error("cannot reach the proxy: {0}")]
    Unreachable(#[source] io::Error),
    /// The whole operation took longer than its timeout.
    #[error("proxy operation timed out after {0:?}")]
    TimedOut(Duration),
    /// The proxy refused our username and password (RFC 1929 status, non-zero).
    #[error("the proxy refused our credentials (status {0})")]
    AuthRefused(u8),
    /// The proxy accepts none of the authentication methods we offered.
    #[error("the proxy accepts none of our authentication methods")]
    NoAcceptableAuth,
    /// The proxy asked for a username and password and we have none.
    #[error("the proxy requires a username and password")]
    AuthRequired,
    /// Reply 0x01: general SOCKS server failure.
    #[error("the proxy reported a general failure")]
    GeneralFailure,
    /// Reply 0x02: connection not allowed by the proxy's rules.
    #[error("the proxy's rules do not allow this connection")]
    NotAllowed,
    /// Reply 0x03: network unreachable from the proxy.
    #[error("the proxy cannot reach the target's network")]
    NetworkUnreachable,
    /// Reply 0x04: host unreachable from the proxy (Tor also answers this when a name does not
    /// resolve or an onion service cannot be reached).
    #[error("the proxy cannot reach the target host")]
    HostUnreachable,
    /// Reply 0x05: the target refused the proxy's connection.
    #[error("the target refused the proxy's connection")]
    ConnectionRefused,
    /// Reply 0x06: TTL expired.
    #[error("the proxy reported TTL expired")]
    TtlExpired,
    /// Reply 0x07: the proxy does not implement the command (as non-Tor proxies answer
    /// `RESOLVE`).
    #[error("the proxy does not support this command")]
    CommandNotSupported,
    /// Reply 0x08: the proxy does not handle this kind of target address.
    #[error("the proxy does not support this address type")]
    AddressTypeNotSupported,
    /// The proxy answered something that is not SOCKS5 as we know it.
    #[error("invalid response from the proxy: {0}")]
    InvalidResponse(String),
    /// The target cannot be expressed in a SOCKS5 request.
    #[error("invalid proxy target: {0}")]
    InvalidTarget(String),
    /// The credentials cannot be expressed in RFC 1929.
    #[error("invalid proxy credentials: {0}")]
    InvalidCredentials(String),
    /// The connection to the proxy failed during the handshake.
    #[error("proxy connection failed: {0}")]
    Io(#[source] io::Error),
}

impl ProxyError {
    /// The [`io::ErrorKind`] this error is reported under.
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            ProxyError::Unreachable(e) | ProxyError::Io(e) => e.kind(),
            ProxyError::TimedOut(_) => K::TimedOut,
            ProxyError::AuthRefused(_)
            | ProxyError::NoAcceptableAuth
            | ProxyError::AuthRequired
            | ProxyError::NotAllowed => K::PermissionDenied,
            ProxyError::ConnectionRefused => K::ConnectionRefused,
            ProxyError::CommandNotSupported | ProxyError::AddressTypeNotSupported => K::Unsupported,
            ProxyError::InvalidResponse(_) => K::InvalidData,
            ProxyError::InvalidTarget(_) | ProxyError::InvalidCredentials(_) => K::InvalidInput,
            ProxyError::GeneralFailure
            | ProxyError::NetworkUnreachable
            | ProxyError::HostUnreachable
            | ProxyError::TtlExpired => K::Other,
        }
    }

    /// The proxy error inside an [`io::Error`] returned by this module, if it is one.
    pub fn from_io(e: &io::Error) -> Option<&ProxyError> {
        e.get_ref()?.downcast_ref::<ProxyError>()
    }

    fn from_socks(e: tokio_socks::Error) -> ProxyError {
        use tokio_socks::Error as S;
        match e {
            S::Io(io) => ProxyError::Io(io),
            S::ProxyServerUnreachable => ProxyError::Unreachable(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "proxy unreachable",
            )),
            S::PasswordAuthFailure(status) => ProxyError::AuthRefused(status),
            S::NoAcceptableAuthMethods => ProxyError::NoAcceptableAuth,
            S::AuthorizationRequired => ProxyError::AuthRequired,
            S::GeneralSocksServerFailure => ProxyError::GeneralFailure,
            S::ConnectionNotAllowedByRuleset => ProxyError::NotAllowed,
            S::NetworkUnreachable => ProxyError::NetworkUnreachable,
            S::HostUnreachable => ProxyError::HostUnreachable,
            S::ConnectionRefused => ProxyError::ConnectionRefused,
            S::TtlExpired => ProxyError::TtlExpired,
            S::CommandNotSupported => ProxyError::CommandNotSupported,
            S::AddressTypeNotSupported => ProxyError::AddressTypeNotSupported,
            S::InvalidTargetAddress(why) => ProxyError::InvalidTarget(why.to_owned()),
            S::InvalidAuthValues(why) => ProxyError::InvalidCredentials(why.to_owned()),
            // tokio-socks reports a reply code it does not know as an unknown auth method.
            S::UnknownAuthMethod => {
                ProxyError::InvalidResponse("unknown reply code or authentication method".into())
            }
            other => ProxyError::InvalidResponse(other.to_string()),
        }
    }
}

impl From<ProxyError> for io::Error {
    fn from(e: ProxyError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// Connects to `target` through the SOCKS5 proxy at `proxy`, the whole exchange bounded by
/// `timeout`, and returns the stream, ready for the target's protocol (hand it to
/// [`Peer::associate_connection`](crate::Peer::associate_connection)).
///
/// With `credentials`, username/password authentication is offered besides none; pass
/// [`ProxyCredentials::random`] for Tor stream isolation. Errors carry a [`ProxyError`].
pub async fn connect_via_proxy(
    proxy: SocketAddr,
    target: impl Into<ProxyTarget>,
    timeout: Duration,
    credentials: Option<&ProxyCredentials>,
) -> io::Result<TcpStream> {
    let target = target.into();
    let stream = bounded(timeout, connect(proxy, &target, credentials)).await?;
    debug!(%proxy, %target, "connected through proxy");
    Ok(stream)
}

/// Looks `host` up through the Tor SOCKS proxy at `proxy` with Tor's `RESOLVE` extension, the
/// exchange bounded by `timeout`: the query leaves through Tor, never through this host's
/// resolver. Tor answers one address per name. An IP address in text is returned as it is,
/// without asking.
///
/// A proxy other than Tor refuses the command: the error carries
/// [`ProxyError::CommandNotSupported`].
pub async fn resolve_via_tor(
    proxy: SocketAddr,
    host: &str,
    timeout: Duration,
) -> io::Result<Vec<IpAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let ip = bounded(timeout, resolve(proxy, host)).await?;
    debug!(%proxy, host, %ip, "resolved through proxy");
    Ok(vec![ip])
}

async fn bounded<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, ProxyError>>,
) -> io::Result<T> {
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map_err(io::Error::from),
        Err(_) => Err(ProxyError::TimedOut(timeout).into()),
    }
}

async fn connect(
    proxy: SocketAddr,
    target: &ProxyTarget,
    credentials: Option<&ProxyCredentials>,
) -> Result<TcpStream, ProxyError> {
    let socks_target = target.to_socks()?;
    let socket = TcpStream::connect(proxy)
        .await
        .map_err(ProxyError::Unreachable)?;
    let stream = match credentials {
        None => Socks5Stream::connect_with_socket(socket, socks_target).await,
        Some(c) => {
            Socks5Stream::connect_with_password_and_socket(
                socket,
                socks_target,
                &c.username,
                &c.password,
            )
            .await
        }
    }
    .map_err(ProxyError::from_socks)?;
    Ok(stream.into_inner())
}

async fn resolve(proxy: SocketAddr, host: &str) -> Result<IpAddr, ProxyError> {
    let name = domain_target(host, 0)?;
    let socket = TcpStream::connect(proxy)
        .await
        .map_err(ProxyError::Unreachable)?;
    match Socks5Stream::tor_resolve_with_socket(socket, name)
        .await
        .map_err(ProxyError::from_socks)?
    {
        TargetAddr::Ip(sa) => Ok(sa.ip()),
        TargetAddr::Domain(name, _) => Err(ProxyError::InvalidResponse(format!(
            "RESOLVE answered with a name ({name}) instead of an address"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_choose_the_address_form() {
        let v4: ProxyTarget = "1.2.3.4:8333".parse::<SocketAddr>().unwrap().into();
        assert!(matches!(v4.to_socks().unwrap(), TargetAddr::Ip(sa) if sa.port() == 8333));
        let onion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:8333";
        let t: ProxyTarget = onion.parse::<NetAddr>().unwrap().into();
        match t.to_socks().unwrap() {
            TargetAddr::Domain(name, port) => {
                assert_eq!(format!("{name}:{port}"), onion);
            }
            other => panic!("onion sent as {other:?}"),
        }
        let literal: ProxyTarget = ("::1", 1).into();
        assert!(matches!(literal.to_socks().unwrap(), TargetAddr::Ip(_)));
        let long: ProxyTarget = ("a".repeat(256), 1).into();
        assert!(matches!(long.to_socks(), Err(ProxyError::InvalidTarget(_))));
    }

    #[test]
    fn credentials_are_checked_and_random_ones_differ() {
        assert!(ProxyCredentials::new("", "x").is_err());
        assert!(ProxyCredentials::new("x", "y".repeat(256)).is_err());
        let c = ProxyCredentials::new("u", "secret").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
        let (a, b) = (ProxyCredentials::random(), ProxyCredentials::random());
        assert_ne!(a, b);
        assert_eq!(a.username().len(), RANDOM_CREDENTIAL_LEN);
    }

    #[test]
    fn errors_survive_the_trip_through_io_error() {
        let e: io::Error = ProxyError::AuthRefused(1).into();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(matches!(
            ProxyError::from_io(&e),
            Some(ProxyError::AuthRefused(1))
        ));
        assert!(ProxyError::from_io(&io::Error::other("plain")).is_none());
    }
}
