//! Configuration of a peer, shared by every peer of a process.

use std::fmt;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use peerpool_wire::chain::ChainParams;
use peerpool_wire::message::MAX_SUBVERSION_LENGTH;

/// Time a peer has to complete the version/verack handshake.
/// Bitcoin Core: `-peertimeout` default 60 s (`DEFAULT_PEER_CONNECT_TIMEOUT`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Interval between keepalive pings. Bitcoin Core: `PING_INTERVAL` (2 minutes).
pub const PING_INTERVAL: Duration = Duration::from_secs(2 * 60);

/// A ping unanswered this long, or a connection silent this long in either direction, is
/// dropped. Bitcoin Core: `TIMEOUT_INTERVAL` (20 minutes).
pub const TIMEOUT_INTERVAL: Duration = Duration::from_secs(20 * 60);

/// Average interval between inventory trickles to inbound peers.
/// Bitcoin Core: `INBOUND_INVENTORY_BROADCAST_INTERVAL` (5 s).
pub const INBOUND_TRICKLE_INTERVAL: Duration = Duration::from_secs(5);

/// Average interval between inventory trickles to outbound peers.
/// Bitcoin Core: `OUTBOUND_INVENTORY_BROADCAST_INTERVAL` (2 s).
pub const OUTBOUND_TRICKLE_INTERVAL: Duration = Duration::from_secs(2);

/// Inventory entries remembered per peer as already known to it. Bitcoin Core's filter holds
/// 50,000 transactions; btcd's MRU map 1,000. Allocated only once inventory is exchanged.
pub const KNOWN_INVENTORY_CAPACITY: usize = 5_000;

/// Most entries put in one `inv` we send (btcd: `maxInvTrickleSize`; Core:
/// `INVENTORY_BROADCAST_MAX`).
pub const MAX_INV_PER_MESSAGE: usize = 1_000;

/// Messages the user may queue before the handshake completes; they are held back (nothing
/// but version and verack goes out before the handshake, as Core's p2p_leak test demands).
pub const MAX_PENDING_BEFORE_HANDSHAKE: usize = 1_000;

/// A user agent as BIP14 defines it: `/name:version(comment; comment)/`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserAgent(String);

/// Why a user agent was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserAgentError {
    /// A part contains one of BIP14's reserved characters `/ : ( )` (or `;` in a comment).
    #[error("{part} {value:?} contains a character BIP14 reserves ('/', ':', '(', ')', ';')")]
    ForbiddenCharacter {
        /// Which part.
        part: &'static str,
        /// Its value.
        value: String,
    },
    /// The rendered user agent is longer than the protocol allows.
    #[error("user agent of {0} bytes exceeds {MAX_SUBVERSION_LENGTH}")]
    TooLong(usize),
    /// The name is empty.
    #[error("user agent name must not be empty")]
    EmptyName,
}

impl UserAgent {
    /// Renders and checks `/name:version(comments)/`.
    pub fn new(name: &str, version: &str, comments: &[&str]) -> Result<UserAgent, UserAgentError> {
        const RESERVED: &[char] = &['/', ':', '(', ')'];
        let check = |part: &'static str, value: &str, extra: &[char]| {
            if value
                .chars()
                .any(|c| RESERVED.contains(&c) || extra.contains(&c) || c.is_control())
            {
                Err(UserAgentError::ForbiddenCharacter {
                    part,
                    value: value.to_owned(),
                })
            } else {
                Ok(())
            }
        };
        if name.is_empty() {
            return Err(UserAgentError::EmptyName);
        }
        check("name", name, &[])?;
        check("version", version, &[])?;
        for c in comments {
            check("comment", c, &[';'])?;
        }
        let mut s = format!("/{name}:{version}");
        if !comments.is_empty() {
            s.push('(');
            s.push_str(&comments.join("; "));
            s.push(')');
        }
        s.push('/');
        if s.len() > MAX_SUBVERSION_LENGTH {
            return Err(UserAgentError::TooLong(s.len()));
        }
        Ok(UserAgent(s))
    }

    /// The rendered string, as sent in `version`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserAgent({:?})", self.0)
    }
}

/// Everything a peer machine needs to know about us and the chain.
///
/// Defaults follow Bitcoin Core where it has a value (each constant of this module names its
/// origin). One config is shared by every peer of a process.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The chain: magic, protocol versions.
    pub chain: ChainParams,
    /// Our user agent.
    pub user_agent: UserAgent,
    /// Services we offer. Bloom filter messages are refused unless this has `NODE_BLOOM`.
    pub services: ServiceFlags,
    /// The relay flag of our `version`: whether we want transaction announcements.
    pub relay: bool,
    /// See [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`TIMEOUT_INTERVAL`]; applies to unanswered pings and to silence either way.
    pub timeout_interval: Duration,
    /// Mean trickle interval towards inbound peers; see [`INBOUND_TRICKLE_INTERVAL`].
    pub trickle_interval_inbound: Duration,
    /// Mean trickle interval towards outbound peers; see [`OUTBOUND_TRICKLE_INTERVAL`].
    pub trickle_interval_outbound: Duration,
    /// See [`KNOWN_INVENTORY_CAPACITY`].
    pub known_inventory_capacity: usize,
    /// Ban score at which the peer machine itself disconnects a misbehaving peer; `None` leaves
    /// the decision to the owner of the peer (the pool's ban manager).
    pub ban_threshold: Option<u32>,
}

impl PeerConfig {
    /// A config for `chain` with Bitcoin Core's defaults and the user agent
    /// `/peerpool:<version>/`.
    pub fn new(chain: ChainParams) -> PeerConfig {
        PeerConfig {
            chain,
            user_agent: UserAgent(format!("/peerpool:{}/", env!("CARGO_PKG_VERSION"))),
            services: ServiceFlags::NONE,
            relay: true,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            ping_interval: PING_INTERVAL,
            timeout_interval: TIMEOUT_INTERVAL,
            trickle_interval_inbound: INBOUND_TRICKLE_INTERVAL,
            trickle_interval_outbound: OUTBOUND_TRICKLE_INTERVAL,
            known_inventory_capacity: KNOWN_INVENTORY_CAPACITY,
            ban_threshold: Some(crate::ban::DEFAULT_THRESHOLD),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bip14() {
        assert_eq!(
            UserAgent::new("peerpool", "0.1.0", &[]).unwrap().as_str(),
            "/peerpool:0.1.0/"
        );
        assert_eq!(
            UserAgent::new("peerpool", "0.1.0", &["crawler", "eu-1"])
                .unwrap()
                .as_str(),
            "/peerpool:0.1.0(crawler; eu-1)/"
        );
    }

    #[test]
    fn refuses_reserved_characters_and_length() {
        for (name, version, comment) in [
            ("a/b", "1", "x"),
            ("a", "1:2", "x"),
            ("a", "1", "(x)"),
            ("a", "1", "x;y"),
            ("a", "1", "x\ny"),
        ] {
            assert!(matches!(
                UserAgent::new(name, version, &[comment]),
                Err(UserAgentError::ForbiddenCharacter { .. })
            ));
        }
        let long = "c".repeat(250);
        assert_eq!(
            UserAgent::new("peerpool", "0.1.0", &[&long]),
            Err(UserAgentError::TooLong(250 + "/peerpool:0.1.0()/".len()))
        );
        assert_eq!(UserAgent::new("", "1", &[]), Err(UserAgentError::EmptyName));
    }
}
