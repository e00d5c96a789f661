//! Misbehaviour as data, and the one table that scores it.
//!
//! A part that notices a peer doing something wrong reports a [`Misbehaviour`]; it does not
//! decide what happens. [`Misbehaviour::score`] is the single table mapping each kind to a ban
//! score increment; whoever owns the peer's [`crate::ban::BanScore`] decides whether to warn,
//! disconnect or ban.
//!
//! | kind | score | why |
//! |---|---|---|
//! | `MalformedMessage` | 10 | payload does not parse as its command |
//! | `BadChecksum` | 1 | usually corruption, rarely an attack; Core drops the message |
//! | `BadCommand` | 1 | non-printable command; Core drops the message |
//! | `OversizedInventory` | 20 | inv/getdata/notfound over 50,000 entries (Core: `MAX_INV_SZ`) |
//! | `OversizedAddr` | 20 | addr/addrv2 over 1,000 entries (Core: `MAX_ADDR_TO_SEND`) |
//! | `OversizedHeaders` | 20 | headers over 2,000 entries (Core: `MAX_HEADERS_RESULTS`) |
//! | `BloomNotOffered` | 0, disconnect | BIP111: bloom messages when we do not offer `NODE_BLOOM` |
//! | `FeatureAfterVerack` | 0, disconnect | wtxidrelay/sendaddrv2 after the handshake (BIP339/BIP155) |
//! | `UserAgentTooLong` | 10 | version with a user agent over 256 bytes; dropped like Core does |
//! | `UnsolicitedMessage` | 0 | tolerated, counted only for the logs |
//!
//! "0, disconnect" follows Bitcoin Core: breaking these protocol rules ends the connection but
//! is not held against the address (no ban score), since the peer is merely incompatible.

use std::fmt;

/// What a peer did wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Misbehaviour {
    /// A payload did not decode as the message its command names.
    MalformedMessage {
        /// The command.
        command: &'static str,
    },
    /// A frame failed its checksum.
    BadChecksum,
    /// A frame had a malformed command field.
    BadCommand,
    /// inv, getdata or notfound with more entries than allowed.
    OversizedInventory {
        /// The command.
        command: &'static str,
        /// Entries announced.
        count: u64,
    },
    /// addr or addrv2 with more entries than allowed.
    OversizedAddr {
        /// Entries announced.
        count: u64,
    },
    /// headers with more entries than allowed.
    OversizedHeaders {
        /// Entries announced.
        count: u64,
    },
    /// A bloom filter message (or `mempool`) although we do not offer `NODE_BLOOM`.
    BloomNotOffered {
        /// The command.
        command: &'static str,
    },
    /// A feature negotiation message that is only valid before `verack`.
    FeatureAfterVerack {
        /// The command.
        command: &'static str,
    },
    /// A version message whose user agent is over the limit.
    UserAgentTooLong,
    /// A message that was not asked for or not expected at this point.
    UnsolicitedMessage {
        /// The command.
        command: &'static str,
    },
}

impl Misbehaviour {
    /// Ban score increment for this misbehaviour; see the table in the module docs.
    pub fn score(&self) -> u32 {
        match self {
            Misbehaviour::MalformedMessage { .. } | Misbehaviour::UserAgentTooLong => 10,
            Misbehaviour::BadChecksum | Misbehaviour::BadCommand => 1,
            Misbehaviour::OversizedInventory { .. }
            | Misbehaviour::OversizedAddr { .. }
            | Misbehaviour::OversizedHeaders { .. } => 20,
            Misbehaviour::BloomNotOffered { .. }
            | Misbehaviour::FeatureAfterVerack { .. }
            | Misbehaviour::UnsolicitedMessage { .. } => 0,
        }
    }

    /// Whether this alone ends the connection, whatever the score (a protocol rule that
    /// Bitcoin Core enforces by disconnecting).
    pub fn disconnects(&self) -> bool {
        matches!(
            self,
            Misbehaviour::BloomNotOffered { .. } | Misbehaviour::FeatureAfterVerack { .. }
        )
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::MalformedMessage { command } => write!(f, "malformed {command} message"),
            Misbehaviour::BadChecksum => f.write_str("message with bad checksum"),
            Misbehaviour::BadCommand => f.write_str("message with malformed command"),
            Misbehaviour::OversizedInventory { command, count } => {
                write!(f, "{command} with {count} entries")
            }
            Misbehaviour::OversizedAddr { count } => write!(f, "addr with {count} entries"),
            Misbehaviour::OversizedHeaders { count } => write!(f, "headers with {count} entries"),
            Misbehaviour::BloomNotOffered { command } => {
                write!(f, "{command} although NODE_BLOOM is not offered")
            }
            Misbehaviour::FeatureAfterVerack { command } => write!(f, "{command} after verack"),
            Misbehaviour::UserAgentTooLong => f.write_str("user agent too long"),
            Misbehaviour::UnsolicitedMessage { command } => write!(f, "unsolicited {command}"),
        }
    }
}
