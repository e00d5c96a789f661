//! Messages: a thin layer over [`bitcoin::p2p::message::NetworkMessage`].
//!
//! Payloads are decoded by command with the `bitcoin` crate's decoders, with two differences
//! that follow Bitcoin Core:
//! - `version` may end early: every field after the receiver address is optional, and a
//!   missing relay flag means "relay" (BIP37);
//! - the user agent is limited to [`MAX_SUBVERSION_LENGTH`] bytes and need not be UTF-8
//!   (invalid bytes are replaced, as Core's sanitising does for display).
//!
//! Encoding writes the payload straight into the outgoing frame buffer, then fills in the
//! header; no intermediate copy.

use std::fmt;

use bitcoin::consensus::encode::{self, Decodable, Encodable, VarInt};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};

use crate::checksum::cached_checksum;
use crate::feature::{Feature, FeatureError};
use crate::frame::{Command, HEADER_LEN};

/// Longest user agent accepted or sent, in bytes. Bitcoin Core: `MAX_SUBVERSION_LENGTH`.
pub const MAX_SUBVERSION_LENGTH: usize = 256;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload does not parse as the message its command names.
    #[error("malformed {command} payload: {source}")]
    Malformed {
        /// Command of the message.
        command: &'static str,
        /// The decoder's complaint.
        source: encode::Error,
    },
    /// The payload parsed but bytes were left over.
    #[error("{extra} unexpected bytes after {command} payload")]
    TrailingBytes {
        /// Command of the message.
        command: &'static str,
        /// Number of bytes left over.
        extra: usize,
    },
    /// A BIP434 `feature` payload breaks the BIP's rules.
    #[error("malformed feature payload: {0}")]
    Feature(#[from] FeatureError),
    /// The version message's user agent is longer than [`MAX_SUBVERSION_LENGTH`].
    #[error("user agent of {0} bytes exceeds {MAX_SUBVERSION_LENGTH}")]
    UserAgentTooLong(u64),
}

macro_rules! kinds {
    ($( $variant:ident => $name:literal ),* $(,)?) => {
        /// Every command this crate knows, plus [`MessageKind::Unknown`] for the rest.
        ///
        /// Used to register listeners per kind and to account bytes per message type.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum MessageKind {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
            /// Any command not listed above.
            Unknown,
        }

        impl MessageKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [MessageKind] = &[$(MessageKind::$variant,)* MessageKind::Unknown];

            /// The kind named by a command.
            pub fn from_command(command: &str) -> MessageKind {
                match command {
                    $($name => MessageKind::$variant,)*
                    _ => MessageKind::Unknown,
                }
            }

            /// The command string; `"*other*"` for [`MessageKind::Unknown`], as Bitcoin Core
            /// names unknown types in its per-message byte counts.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(MessageKind::$variant => $name,)*
                    MessageKind::Unknown => "*other*",
                }
            }
        }
    };
}

kinds! {
    Version => "version",
    Verack => "verack",
    Addr => "addr",
    AddrV2 => "addrv2",
    SendAddrV2 => "sendaddrv2",
    Inv => "inv",
    GetData => "getdata",
    NotFound => "notfound",
    GetBlocks => "getblocks",
    GetHeaders => "getheaders",
    MemPool => "mempool",
    Tx => "tx",
    Block => "block",
    Headers => "headers",
    SendHeaders => "sendheaders",
    GetAddr => "getaddr",
    Ping => "ping",
    Pong => "pong",
    MerkleBlock => "merkleblock",
    FilterLoad => "filterload",
    FilterAdd => "filteradd",
    FilterClear => "filterclear",
    GetCFilters => "getcfilters",
    CFilter => "cfilter",
    GetCFHeaders => "getcfheaders",
    CFHeaders => "cfheaders",
    GetCFCheckpt => "getcfcheckpt",
    CFCheckpt => "cfcheckpt",
    SendCmpct => "sendcmpct",
    CmpctBlock => "cmpctblock",
    GetBlockTxn => "getblocktxn",
    BlockTxn => "blocktxn",
    Alert => "alert",
    Reject => "reject",
    FeeFilter => "feefilter",
    WtxidRelay => "wtxidrelay",
    Feature => "feature",
}

impl MessageKind {
    /// The kind of a message.
    pub fn of(msg: &NetworkMessage) -> MessageKind {
        match msg {
            // `cmd()` says "unknown" for these; the command carried may still be one of ours
            // that the `bitcoin` crate has no type for (`feature`).
            NetworkMessage::Unknown { command, .. } => MessageKind::from_command(command.as_ref()),
            _ => MessageKind::from_command(msg.cmd()),
        }
    }

    /// Number of kinds, for tables indexed by `kind as usize`.
    pub const COUNT: usize = MessageKind::ALL.len();
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The command of a message, for its frame header.
pub fn command_of(msg: &NetworkMessage) -> Command {
    match msg {
        NetworkMessage::Unknown { command, .. } => {
            Command::new(command.as_ref()).unwrap_or(Command::from_static("unknown"))
        }
        other => Command::from_static(other.cmd()),
    }
}

/// Decodes a payload by its command.
///
/// Unknown commands come back as [`NetworkMessage::Unknown`] with the payload untouched.
pub fn decode_payload(command: Command, payload: &[u8]) -> Result<NetworkMessage, DecodeError> {
    let kind = MessageKind::from_command(command.as_str());
    let name = kind.as_str();
    let mut r = payload;
    let malformed = |source| DecodeError::Malformed {
        command: name,
        source,
    };
    macro_rules! d {
        () => {
            Decodable::consensus_decode_from_finite_reader(&mut r).map_err(malformed)?
        };
    }
    let msg = match kind {
        MessageKind::Version => NetworkMessage::Version(decode_version(&mut r)?),
        MessageKind::Verack => NetworkMessage::Verack,
        MessageKind::Addr => NetworkMessage::Addr(d!()),
        MessageKind::AddrV2 => NetworkMessage::AddrV2(d!()),
        MessageKind::SendAddrV2 => NetworkMessage::SendAddrV2,
        MessageKind::Inv => NetworkMessage::Inv(d!()),
        MessageKind::GetData => NetworkMessage::GetData(d!()),
        MessageKind::NotFound => NetworkMessage::NotFound(d!()),
        MessageKind::GetBlocks => NetworkMessage::GetBlocks(d!()),
        MessageKind::GetHeaders => NetworkMessage::GetHeaders(d!()),
        MessageKind::MemPool => NetworkMessage::MemPool,
        MessageKind::Tx => NetworkMessage::Tx(d!()),
        MessageKind::Block => NetworkMessage::Block(d!()),
        MessageKind::Headers => NetworkMessage::Headers(decode_headers(&mut r).map_err(malformed)?),
        MessageKind::SendHeaders => NetworkMessage::SendHeaders,
        MessageKind::GetAddr => NetworkMessage::GetAddr,
        MessageKind::Ping => NetworkMessage::Ping(d!()),
        MessageKind::Pong => NetworkMessage::Pong(d!()),
        MessageKind::MerkleBlock => NetworkMessage::MerkleBlock(d!()),
        MessageKind::FilterLoad => NetworkMessage::FilterLoad(d!()),
        MessageKind::FilterAdd => NetworkMessage::FilterAdd(d!()),
        MessageKind::FilterClear => NetworkMessage::FilterClear,
        MessageKind::GetCFilters => NetworkMessage::GetCFilters(d!()),
        MessageKind::CFilter => NetworkMessage::CFilter(d!()),
        MessageKind::GetCFHeaders => NetworkMessage::GetCFHeaders(d!()),
        MessageKind::CFHeaders => NetworkMessage::CFHeaders(d!()),
        MessageKind::GetCFCheckpt => NetworkMessage::GetCFCheckpt(d!()),
        MessageKind::CFCheckpt => NetworkMessage::CFCheckpt(d!()),
        MessageKind::SendCmpct => NetworkMessage::SendCmpct(d!()),
        MessageKind::CmpctBlock => NetworkMessage::CmpctBlock(d!()),
        MessageKind::GetBlockTxn => NetworkMessage::GetBlockTxn(d!()),
        MessageKind::BlockTxn => NetworkMessage::BlockTxn(d!()),
        MessageKind::Alert => NetworkMessage::Alert(d!()),
        MessageKind::Reject => NetworkMessage::Reject(d!()),
        MessageKind::FeeFilter => NetworkMessage::FeeFilter(d!()),
        MessageKind::WtxidRelay => NetworkMessage::WtxidRelay,
        // BIP434: no type of its own in the `bitcoin` crate; the payload is checked here and
        // handed on untouched (see [`crate::feature`]).
        MessageKind::Feature => {
            Feature::parse(payload).map_err(DecodeError::Feature)?;
            return Ok(NetworkMessage::Unknown {
                command: CommandString::try_from_static("feature")
                    .expect("a valid command literal"),
                payload: payload.to_vec(),
            });
        }
        MessageKind::Unknown => {
            let command = CommandString::try_from(command.as_str().to_owned())
                .map_err(|_| malformed(encode::Error::ParseFailed("command")))?;
            return Ok(NetworkMessage::Unknown {
                command,
                payload: payload.to_vec(),
            });
        }
    };
    // Bitcoin Core reads only the fields it knows: a longer `version` (a future field) or a
    // payload on a message that has none is accepted, the rest ignored.
    let lenient = matches!(
        kind,
        MessageKind::Version
            | MessageKind::Verack
            | MessageKind::SendAddrV2
            | MessageKind::MemPool
            | MessageKind::SendHeaders
            | MessageKind::GetAddr
            | MessageKind::FilterClear
            | MessageKind::WtxidRelay
    );
    if !r.is_empty() && !lenient {
        return Err(DecodeError::TrailingBytes {
            command: name,
            extra: r.len(),
        });
    }
    Ok(msg)
}

/// `version`, with Bitcoin Core's tolerance for short messages from old peers.
fn decode_version(r: &mut &[u8]) -> Result<VersionMessage, DecodeError> {
    let malformed = |source| DecodeError::Malformed {
        command: "version",
        source,
    };
    let version = u32::consensus_decode(r).map_err(malformed)?;
    let services = ServiceFlags::consensus_decode(r).map_err(malformed)?;
    let timestamp = i64::consensus_decode(r).map_err(malformed)?;
    let receiver = Address::consensus_decode(r).map_err(malformed)?;
    let sender = if r.is_empty() {
        Address {
            services: ServiceFlags::NONE,
            address: [0; 8],
            port: 0,
        }
    } else {
        Address::consensus_decode(r).map_err(malformed)?
    };
    let nonce = if r.is_empty() {
        0
    } else {
        u64::consensus_decode(r).map_err(malformed)?
    };
    let user_agent = if r.is_empty() {
        String::new()
    } else {
        let len = VarInt::consensus_decode(r).map_err(malformed)?.0;
        if len > MAX_SUBVERSION_LENGTH as u64 {
            return Err(DecodeError::UserAgentTooLong(len));
        }
        let len = len as usize;
        if r.len() < len {
            return Err(malformed(encode::Error::ParseFailed(
                "user agent truncated",
            )));
        }
        let (ua, rest) = r.split_at(len);
        *r = rest;
        let mut ua = String::from_utf8_lossy(ua).into_owned();
        // Each invalid byte becomes U+FFFD, three bytes long, so 256 bytes of junk grew to
        // 768. Cut back to the limit (on a character boundary) so that the user agent we
        // hold, log and might send back stays within it, as a valid one does.
        if ua.len() > MAX_SUBVERSION_LENGTH {
            let mut end = MAX_SUBVERSION_LENGTH;
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua.truncate(end);
        }
        ua
    };
    let start_height = if r.is_empty() {
        0
    } else {
        i32::consensus_decode(r).map_err(malformed)?
    };
    let relay = if r.is_empty() {
        true
    } else {
        u8::consensus_decode(r).map_err(malformed)? != 0
    };
    Ok(VersionMessage {
        version,
        services,
        timestamp,
        receiver,
        sender,
        nonce,
        user_agent,
        start_height,
        relay,
    })
}

/// `headers`: each header is followed by a transaction count that must be zero.
fn decode_headers(r: &mut &[u8]) -> Result<Vec<bitcoin::block::Header>, encode::Error> {
    let len = VarInt::consensus_decode(r)?.0;
    // A header is 81 bytes on the wire; never reserve more than the payload can hold.
    let mut out = Vec::with_capacity((len as usize).min(r.len() / 81));
    for _ in 0..len {
        out.push(bitcoin::block::Header::consensus_decode(r)?);
        if u8::consensus_decode(r)? != 0 {
            return Err(encode::Error::ParseFailed(
                "headers message with transactions",
            ));
        }
    }
    Ok(out)
}

/// Appends `msg` as a complete frame (header and payload) to `out`; returns the frame length.
pub fn encode_message(magic: Magic, msg: &NetworkMessage, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&magic.to_bytes());
    out.extend_from_slice(&command_of(msg).to_bytes());
    out.extend_from_slice(&[0u8; 8]); // length and checksum, filled in below
                                      // Writing into a Vec cannot fail.
    let len = msg.consensus_encode(out).unwrap_or(0);
    let payload = &out[start + HEADER_LEN..];
    // Small frames are often the same bytes for many peers (a relayed announcement).
    let sum = cached_checksum(payload);
    out[start + 16..start + 20].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 20..start + 24].copy_from_slice(&sum);
    out.len() - start
}

/// Encodes only the payload of `msg`.
pub fn encode_payload(msg: &NetworkMessage) -> Vec<u8> {
    let mut v = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = msg.consensus_encode(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use bytes::BytesMut;

    fn magic() -> Magic {
        Magic::from_bytes([0xf9, 0xbe, 0xb4, 0xd9])
    }

    fn version_msg() -> VersionMessage {
        let a = Address::new(&"127.0.0.1:8333".parse().unwrap(), ServiceFlags::NETWORK);
        VersionMessage {
            version: 70016,
            services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
            timestamp: 1_700_000_000,
            receiver: a.clone(),
            sender: a,
            nonce: 42,
            user_agent: "/peerpool:0.1.0/".into(),
            start_height: 800_000,
            relay: false,
        }
    }

    #[test]
    fn version_round_trip_and_short_forms() {
        let v = version_msg();
        let payload = encode_payload(&NetworkMessage::Version(v.clone()));
        let cmd = Command::new("version").unwrap();
        let NetworkMessage::Version(back) = decode_payload(cmd, &payload).unwrap() else {
            panic!("not a version")
        };
        assert_eq!(back, v);
        // Without the relay byte: relay defaults to true.
        let NetworkMessage::Version(short) =
            decode_payload(cmd, &payload[..payload.len() - 1]).unwrap()
        else {
            panic!("not a version")
        };
        assert!(short.relay);
        assert_eq!(short.start_height, 800_000);
        // Only up to the receiver address (46 bytes): everything else defaulted.
        let NetworkMessage::Version(tiny) = decode_payload(cmd, &payload[..46]).unwrap() else {
            panic!("not a version")
        };
        assert_eq!(tiny.nonce, 0);
        assert_eq!(tiny.user_agent, "");
        // Cut inside the receiver address: malformed.
        assert!(decode_payload(cmd, &payload[..40]).is_err());
    }

    #[test]
    fn oversized_user_agent_is_refused() {
        let mut v = version_msg();
        v.user_agent = "x".repeat(MAX_SUBVERSION_LENGTH + 1);
        let payload = encode_payload(&NetworkMessage::Version(v));
        let e = decode_payload(Command::new("version").unwrap(), &payload).unwrap_err();
        assert!(matches!(e, DecodeError::UserAgentTooLong(257)));
    }

    #[test]
    fn encode_then_frame_decode() {
        let msgs = vec![
            NetworkMessage::Version(version_msg()),
            NetworkMessage::Verack,
            NetworkMessage::Ping(7),
            NetworkMessage::Unknown {
                command: CommandString::try_from_static("xyzzy").unwrap(),
                payload: vec![1, 2, 3],
            },
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            encode_message(magic(), m, &mut wire);
        }
        let mut buf = BytesMut::from(&wire[..]);
        let mut d = FrameDecoder::new(magic());
        for m in &msgs {
            let f = d.decode(&mut buf).unwrap().unwrap();
            assert_eq!(&decode_payload(f.command, &f.payload).unwrap(), m);
        }
    }

    #[test]
    fn bytes_after_fields_core_does_not_read_are_ignored() {
        let mut payload = encode_payload(&NetworkMessage::Version(version_msg()));
        payload.extend_from_slice(&[1, 2, 3]); // a field from the future
        let NetworkMessage::Version(v) =
            decode_payload(Command::new("version").unwrap(), &payload).unwrap()
        else {
            panic!("not a version")
        };
        assert_eq!(v, version_msg());
        let verack = decode_payload(Command::new("verack").unwrap(), &[0]).unwrap();
        assert_eq!(verack, NetworkMessage::Verack);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let e = decode_payload(Command::new("ping").unwrap(), &[0; 9]).unwrap_err();
        assert!(matches!(e, DecodeError::TrailingBytes { extra: 1, .. }));
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for k in MessageKind::ALL {
            if *k != MessageKind::Unknown {
                assert_eq!(MessageKind::from_command(k.as_str()), *k);
            }
        }
        assert_eq!(MessageKind::from_command("nonsense"), MessageKind::Unknown);
    }
}
