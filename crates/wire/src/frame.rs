//! Framing of the v1 transport: a 24-byte header, then the payload.
//!
//! ```text
//! offset  size  field
//!      0     4  network magic
//!      4    12  command, ASCII, NUL-padded
//!     16     4  payload length, little-endian
//!     20     4  checksum: first 4 bytes of SHA256d(payload)
//! ```
//!
//! Everything that can be judged from the header is judged before the payload is read, so a
//! peer cannot make us allocate more than [`MAX_PAYLOAD_LEN`] bytes for one message, nor hash a
//! payload on a network we do not speak.
//!
//! Which header errors end the connection follows Bitcoin Core's v1 transport: a wrong magic
//! or an oversized length leaves the stream unusable (fatal); a bad checksum or a malformed
//! command drops that one message and the connection goes on (see [`FrameError::is_fatal`]).

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::checksum::checksum;
use bitcoin::p2p::Magic;

/// Length of the message header in bytes.
pub const HEADER_LEN: usize = 24;

/// Largest payload accepted, in bytes.
///
/// Bitcoin Core: `MAX_PROTOCOL_MESSAGE_LENGTH` (4,000,000). A larger length in a header ends the
/// connection before any of the payload is read.
pub const MAX_PAYLOAD_LEN: u32 = 4_000_000;

/// Payload buffer room added at least at a time while a payload arrives (see
/// [`FrameDecoder::decode`]).
const PAYLOAD_STEP: usize = 64 * 1024;

/// A message command: up to 12 ASCII bytes, NUL-padded on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Command([u8; 12]);

impl Command {
    /// Builds a command from a string of at most 12 printable ASCII characters.
    pub fn new(name: &str) -> Result<Command, FrameError> {
        let bytes = name.as_bytes();
        if bytes.len() > 12 || !bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(FrameError::BadCommand {
                raw: Command::raw_lossy(bytes),
            });
        }
        let mut raw = [0u8; 12];
        raw[..bytes.len()].copy_from_slice(bytes);
        Ok(Command(raw))
    }

    /// Builds a command for a name known to be valid (a compile-time constant of this crate).
    pub(crate) const fn from_static(name: &'static str) -> Command {
        let bytes = name.as_bytes();
        let mut raw = [0u8; 12];
        let mut i = 0;
        while i < bytes.len() {
            raw[i] = bytes[i];
            i += 1;
        }
        Command(raw)
    }

    /// Validates the 12 command bytes of a header: printable ASCII, then only NULs.
    pub fn from_wire(raw: [u8; 12]) -> Result<Command, FrameError> {
        let end = raw.iter().position(|&b| b == 0).unwrap_or(12);
        let valid_name = raw[..end].iter().all(|b| (0x20..0x7f).contains(b));
        let valid_padding = raw[end..].iter().all(|&b| b == 0);
        if end == 0 || !valid_name || !valid_padding {
            return Err(FrameError::BadCommand {
                raw: Command::raw_lossy(&raw),
            });
        }
        Ok(Command(raw))
    }

    fn raw_lossy(bytes: &[u8]) -> String {
        bytes
            .iter()
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from)
            .collect()
    }

    /// The command name, without padding.
    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(12);
        // Only printable ASCII is ever stored, which is valid UTF-8.
        std::str::from_utf8(&self.0[..end]).unwrap_or("")
    }

    /// The 12 bytes as they appear on the wire.
    pub fn to_bytes(self) -> [u8; 12] {
        self.0
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({:?})", self.as_str())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed and validated message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The command.
    pub command: Command,
    /// Payload length in bytes, at most [`MAX_PAYLOAD_LEN`].
    pub length: u32,
    /// Expected checksum of the payload.
    pub checksum: [u8; 4],
}

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header's network magic is not the one of our chain.
    #[error("wrong network magic {got:02x?}, expected {expected:02x?}")]
    BadMagic {
        /// Magic of our chain.
        expected: [u8; 4],
        /// Magic received.
        got: [u8; 4],
    },
    /// The header announces a payload above [`MAX_PAYLOAD_LEN`].
    #[error("oversized message {command:?}: {length} bytes, limit {MAX_PAYLOAD_LEN}")]
    Oversized {
        /// Command of the message, lossily printed.
        command: String,
        /// Announced length.
        length: u32,
    },
    /// The payload does not match the header's checksum.
    #[error(
        "bad checksum on {command}: header says {expected:02x?}, payload hashes to {got:02x?}"
    )]
    BadChecksum {
        /// Command of the message.
        command: Command,
        /// Checksum in the header.
        expected: [u8; 4],
        /// Checksum of the payload received.
        got: [u8; 4],
    },
    /// The command field is not printable ASCII followed by NUL padding.
    #[error("malformed command {raw:?}")]
    BadCommand {
        /// The raw bytes, escaped.
        raw: String,
    },
}

impl FrameError {
    /// Whether the connection can no longer be trusted to be in sync and must be closed.
    ///
    /// Bitcoin Core closes on a wrong magic or an oversized length, and drops the single
    /// message on a bad checksum or a malformed command.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            FrameError::BadMagic { .. } | FrameError::Oversized { .. }
        )
    }
}

/// What [`parse_header`] returns for a header whose magic and length are acceptable: the
/// payload length, the expected checksum, and the command or why it is malformed.
pub type HeaderFields = (u32, [u8; 4], Result<Command, FrameError>);

/// Parses and validates a header: magic, then length, then command.
///
/// A header whose command is malformed but whose magic and length are fine is returned as
/// `Ok((header, Err(..)))` so the caller can skip exactly `length` bytes and stay in sync.
pub fn parse_header(magic: Magic, bytes: &[u8; HEADER_LEN]) -> Result<HeaderFields, FrameError> {
    let got: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if got != magic.to_bytes() {
        return Err(FrameError::BadMagic {
            expected: magic.to_bytes(),
            got,
        });
    }
    let mut raw_command = [0u8; 12];
    raw_command.copy_from_slice(&bytes[4..16]);
    let length = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if length > MAX_PAYLOAD_LEN {
        let end = raw_command.iter().position(|&b| b == 0).unwrap_or(12);
        return Err(FrameError::Oversized {
            command: Command::raw_lossy(&raw_command[..end]),
            length,
        });
    }
    let sum = [bytes[20], bytes[21], bytes[22], bytes[23]];
    Ok((length, sum, Command::from_wire(raw_command)))
}

/// One complete, checksummed message: its command and raw payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// The payload bytes, exactly as received.
    pub payload: Bytes,
}

impl Frame {
    /// Size of the frame on the wire, header included.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// Streaming decoder: feed it bytes as they arrive, take complete frames out.
///
/// ```
/// use bytes::BytesMut;
/// use peerpool_wire::{frame::encode_frame, Command, FrameDecoder, Network};
///
/// let magic = Network::Regtest.params().magic;
/// let mut wire = Vec::new();
/// encode_frame(magic, Command::new("ping").unwrap(), &7u64.to_le_bytes(), &mut wire);
///
/// let mut decoder = FrameDecoder::new(magic);
/// let mut buf = BytesMut::from(&wire[..10]);
/// assert!(decoder.decode(&mut buf).unwrap().is_none()); // header not complete yet
/// buf.extend_from_slice(&wire[10..]);
/// let frame = decoder.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(frame.command.as_str(), "ping");
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    magic: Magic,
    /// Header of the frame whose payload is still arriving.
    pending: Option<PendingHeader>,
}

#[derive(Debug, Clone, Copy)]
struct PendingHeader {
    length: u32,
    checksum: [u8; 4],
    /// Raw command bytes; validated once the payload is complete, so that a frame with a
    /// malformed command is skipped whole and the stream stays in sync.
    raw_command: [u8; 12],
}

impl FrameDecoder {
    /// A decoder for a chain's network magic.
    pub fn new(magic: Magic) -> FrameDecoder {
        FrameDecoder {
            magic,
            pending: None,
        }
    }

    /// Bytes still needed before the next call can make progress: the rest of the header, or
    /// the rest of the payload. The runtime uses it to read a large payload straight into a
    /// buffer of the right size.
    pub fn needed(&self, buffered: usize) -> usize {
        match self.pending {
            None => HEADER_LEN.saturating_sub(buffered),
            Some(h) => (h.length as usize).saturating_sub(buffered),
        }
    }

    /// Whether a header has been read and its payload is awaited.
    pub fn in_payload(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes the next complete frame out of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. A non-fatal error (bad checksum, bad
    /// command) consumes the offending frame, so decoding can go on with the next call; after a
    /// fatal one the stream is out of sync and must be dropped. Never reserves memory in `buf`
    /// beyond one header and one payload of the announced (validated) length, and for a
    /// payload still arriving no more than twice what has arrived (at least 64 KiB).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                if buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let mut raw = [0u8; HEADER_LEN];
                raw.copy_from_slice(&buf[..HEADER_LEN]);
                let (length, checksum, _) = parse_header(self.magic, &raw)?;
                buf.advance(HEADER_LEN);
                let mut raw_command = [0u8; 12];
                raw_command.copy_from_slice(&raw[4..16]);
                let h = PendingHeader {
                    length,
                    checksum,
                    raw_command,
                };
                self.pending = Some(h);
                h
            }
        };
        let length = header.length as usize;
        if buf.len() < length {
            // Room for what has arrived and as much again (at least a step), never the
            // announced length at once: a peer announcing the largest payload and sending it
            // a byte at a time costs what it sent. Not `buf.reserve`, which keeps consumed
            // bytes in front of the read position: the partial payload moves into a buffer
            // of its own (a copy per doubling).
            // Grown only once full, so the room left is read into before any copy.
            let want = length.min(buf.len().saturating_mul(2).max(PAYLOAD_STEP));
            if buf.capacity() == buf.len() || buf.capacity() < PAYLOAD_STEP.min(length) {
                let mut grown = BytesMut::with_capacity(want);
                grown.extend_from_slice(buf);
                *buf = grown;
            }
            return Ok(None);
        }
        self.pending = None;
        let payload = buf.split_to(length).freeze();
        let command = Command::from_wire(header.raw_command)?;
        let got = checksum(&payload);
        if got != header.checksum {
            return Err(FrameError::BadChecksum {
                command,
                expected: header.checksum,
                got,
            });
        }
        Ok(Some(Frame { command, payload }))
    }
}

/// Appends one framed message to `out`.
pub fn encode_frame(magic: Magic, command: Command, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&magic.to_bytes());
    out.extend_from_slice(&command.to_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(payload));
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn magic() -> Magic {
        Magic::from_bytes([0xfa, 0xbf, 0xb5, 0xda])
    }

    fn frame_bytes(command: &str, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(magic(), Command::new(command).unwrap(), payload, &mut v);
        v
    }

    #[test]
    fn decodes_byte_by_byte() {
        let wire = frame_bytes("inv", &[1, 2, 3, 4, 5]);
        let mut d = FrameDecoder::new(magic());
        let mut buf = BytesMut::new();
        let mut out = None;
        for b in &wire {
            assert!(out.is_none());
            buf.extend_from_slice(&[*b]);
            out = d.decode(&mut buf).unwrap();
        }
        let f = out.unwrap();
        assert_eq!(f.command.as_str(), "inv");
        assert_eq!(&f.payload[..], &[1, 2, 3, 4, 5]);
        assert!(buf.is_empty());
    }

    #[test]
    fn wrong_magic_is_fatal_before_payload() {
        let mut wire = frame_bytes("ping", &[0; 8]);
        wire[0] ^= 0xff;
        let mut d = FrameDecoder::new(magic());
        let mut buf = BytesMut::from(&wire[..HEADER_LEN]);
        let e = d.decode(&mut buf).unwrap_err();
        assert!(matches!(e, FrameError::BadMagic { .. }));
        assert!(e.is_fatal());
    }

    #[test]
    fn oversized_length_is_fatal_and_reserves_nothing() {
        let mut header = frame_bytes("block", &[]);
        header[16..20].copy_from_slice(&(MAX_PAYLOAD_LEN + 1).to_le_bytes());
        let mut d = FrameDecoder::new(magic());
        let mut buf = BytesMut::from(&header[..]);
        let cap_before = buf.capacity();
        let e = d.decode(&mut buf).unwrap_err();
        assert!(matches!(e, FrameError::Oversized { length, .. } if length == MAX_PAYLOAD_LEN + 1));
        assert!(e.is_fatal());
        assert_eq!(buf.capacity(), cap_before);
    }

    #[test]
    fn length_at_limit_is_accepted() {
        let mut header = frame_bytes("block", &[]);
        header[16..20].copy_from_slice(&MAX_PAYLOAD_LEN.to_le_bytes());
        let mut d = FrameDecoder::new(magic());
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(d.needed(buf.len()), MAX_PAYLOAD_LEN as usize);
    }

    #[test]
    fn a_payload_buffer_grows_with_what_arrives() {
        let mut header = frame_bytes("block", &[]);
        header[16..20].copy_from_slice(&MAX_PAYLOAD_LEN.to_le_bytes());
        let mut d = FrameDecoder::new(magic());
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[0; 100]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() < 256 * 1024, "{}", buf.capacity());
        buf.extend_from_slice(&vec![0; 1 << 20]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= 4 << 20 && buf.capacity() >= 2 << 20);
    }

    #[test]
    fn bad_checksum_drops_only_that_message() {
        let mut wire = frame_bytes("ping", &[9; 8]);
        wire[20] ^= 1;
        wire.extend(frame_bytes("pong", &[9; 8]));
        let mut d = FrameDecoder::new(magic());
        let mut buf = BytesMut::from(&wire[..]);
        let e = d.decode(&mut buf).unwrap_err();
        assert!(matches!(e, FrameError::BadChecksum { .. }));
        assert!(!e.is_fatal());
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.command.as_str(), "pong");
    }

    #[test]
    fn bad_command_drops_only_that_message_even_when_split() {
        let mut wire = frame_bytes("ping", &[9; 8]);
        wire[5] = 0; // "p\0ng": a NUL inside the name
        wire.extend(frame_bytes("verack", &[]));
        let mut d = FrameDecoder::new(magic());
        let mut buf = BytesMut::from(&wire[..HEADER_LEN + 3]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&wire[HEADER_LEN + 3..]);
        let e = d.decode(&mut buf).unwrap_err();
        assert!(matches!(e, FrameError::BadCommand { .. }));
        assert!(!e.is_fatal());
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap().command.as_str(),
            "verack"
        );
    }

    #[test]
    fn command_validation() {
        assert!(Command::new("sendaddrv2").is_ok());
        assert!(Command::new("thirteenchars").is_err());
        assert!(Command::new("bad\u{1}").is_err());
        assert!(Command::from_wire(*b"\0\0\0\0\0\0\0\0\0\0\0\0").is_err());
        assert!(Command::from_wire(*b"ping\0\0x\0\0\0\0\0").is_err());
        assert_eq!(
            Command::from_wire(*b"wtxidrelay\0\0").unwrap().as_str(),
            "wtxidrelay"
        );
    }
}
