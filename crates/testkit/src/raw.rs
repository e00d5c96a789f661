//! The other end of a connection, driven by hand: whatever a test writes goes out verbatim,
//! whatever arrives is framed and decoded for the test to assert on. A test can misbehave
//! exactly as it likes, and sees exactly what crossed the wire.
//!
//! [`RawPeer`] is the async one; [`BlockingRawPeer`] serves tests without a runtime, such as
//! those that watch a `peerpool` daemon from outside. Both speak regtest.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bytes::BytesMut;
use peerpool_wire::frame::{encode_frame, Frame, FrameDecoder};
use peerpool_wire::message::{decode_payload, encode_message};
use peerpool_wire::{Command, Network};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::within;

/// The protocol version a well-behaved modern peer announces (BIP339 and BIP155 feature
/// negotiation included).
pub const MODERN: u32 = 70016;

/// How long a [`BlockingRawPeer`] read may block.
const BLOCKING_READ: Duration = Duration::from_secs(10);

/// Regtest's network magic, which every raw peer speaks.
pub fn magic() -> Magic {
    Network::Regtest.params().magic
}

/// Seconds since the UNIX epoch, for version timestamps.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A `version` as a hand-written peer would send it: full node with witness, at height 42.
pub fn version(protocol: u32, nonce: u64) -> VersionMessage {
    let any: SocketAddr = "127.0.0.1:18444".parse().expect("literal address");
    VersionMessage {
        version: protocol,
        services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        timestamp: unix_now(),
        receiver: Address::new(&any, ServiceFlags::NONE),
        sender: Address::new(&any, ServiceFlags::NONE),
        nonce,
        user_agent: "/rawpeer:0.1/".to_owned(),
        start_height: 42,
        relay: true,
    }
}

/// A message with a command no implementation knows, carrying `payload` untouched.
pub fn unknown(command: &'static str, payload: Vec<u8>) -> NetworkMessage {
    NetworkMessage::Unknown {
        command: CommandString::try_from_static(command).expect("valid test command"),
        payload,
    }
}

/// The command of a decoded message, for readable assertions.
pub fn cmd(m: &NetworkMessage) -> String {
    m.command().as_ref().to_owned()
}

/// Commands of a list of messages, for assertions that print well.
pub fn commands(msgs: &[NetworkMessage]) -> Vec<String> {
    msgs.iter().map(cmd).collect()
}

/// `msg` framed for the wire, in regtest's magic.
pub fn message_bytes(msg: &NetworkMessage) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(magic(), msg, &mut out);
    out
}

/// An arbitrary payload framed under `command` with a correct checksum, in regtest's magic.
pub fn frame_bytes(command: &str, payload: &[u8]) -> Vec<u8> {
    let command = Command::new(command).unwrap_or_else(|e| panic!("test command {command:?}: {e}"));
    let mut out = Vec::new();
    encode_frame(magic(), command, payload, &mut out);
    out
}

/// An async socket driven by hand (see the [module](self) docs). Every read and write is
/// bounded by [`WAIT`](crate::WAIT).
pub struct RawPeer {
    /// The socket, for what the methods do not cover (half-closes, local address, ...).
    pub stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl RawPeer {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        let stream = within("raw connect", TcpStream::connect(addr))
            .await
            .expect("raw connect");
        RawPeer::new(stream)
    }

    /// Connects to `to` leaving from `from` (port from the OS), so that the other side sees a
    /// chosen address.
    pub async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> RawPeer {
        let socket = TcpSocket::new_v4().expect("raw socket");
        socket
            .bind(SocketAddr::from((from, 0)))
            .unwrap_or_else(|e| panic!("binding a raw socket to {from}: {e}"));
        let stream = within("raw connect", socket.connect(to))
            .await
            .unwrap_or_else(|e| panic!("raw connect from {from} to {to}: {e}"));
        RawPeer::new(stream)
    }

    /// Wraps a connected socket.
    pub fn new(stream: TcpStream) -> RawPeer {
        let _ = stream.set_nodelay(true);
        RawPeer {
            stream,
            decoder: FrameDecoder::new(magic()),
            buf: BytesMut::new(),
        }
    }

    /// Sends `msg`, framed.
    pub async fn send(&mut self, msg: &NetworkMessage) {
        self.send_raw(&message_bytes(msg)).await;
    }

    /// Frames an arbitrary payload under `command` with a correct checksum and sends it.
    pub async fn send_frame(&mut self, command: &str, payload: &[u8]) {
        self.send_raw(&frame_bytes(command, payload)).await;
    }

    /// Sends `bytes` as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within("raw write", self.stream.write_all(bytes))
            .await
            .expect("raw write");
    }

    /// The next frame, or `None` once the other side has closed the connection.
    pub async fn recv_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .expect("the other side sent a bad frame")
            {
                return Some(f);
            }
            let mut chunk = [0u8; 64 * 1024];
            match within("raw read", self.stream.read(&mut chunk)).await {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // A close with unread data in our direction shows up as a reset.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("raw read: {e}"),
            }
        }
    }

    /// The next message, decoded; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<NetworkMessage> {
        let f = self.recv_frame().await?;
        let msg = decode_payload(f.command, &f.payload)
            .unwrap_or_else(|e| panic!("the other side's {} did not decode: {e}", f.command));
        Some(msg)
    }

    /// The next message, which must exist.
    pub async fn expect_msg(&mut self) -> NetworkMessage {
        self.recv()
            .await
            .expect("connection closed while a message was expected")
    }

    /// Everything that arrives until the connection closes.
    pub async fn read_to_close(&mut self) -> Vec<NetworkMessage> {
        let mut all = Vec::new();
        while let Some(m) = self.recv().await {
            all.push(m);
        }
        all
    }

    /// Reads until the connection closes, failing if anything at all arrives first.
    pub async fn expect_close(&mut self) {
        let rest = self.read_to_close().await;
        assert!(
            rest.is_empty(),
            "expected a close, got {:?}",
            commands(&rest)
        );
    }

    /// Reads messages until `pred` matches one; returns the ones read before it and the match.
    pub async fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&NetworkMessage) -> bool,
    ) -> (Vec<NetworkMessage>, NetworkMessage) {
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                Some(m) if pred(&m) => return (before, m),
                Some(m) => before.push(m),
                None => panic!(
                    "connection closed waiting for {what}; got {:?}",
                    commands(&before)
                ),
            }
        }
    }

    /// Sends a ping and waits for its pong: proof that the peer is still reading, framing and
    /// answering, and (TCP being ordered) that it has dealt with everything sent before it.
    /// Returns what arrived in between.
    pub async fn ping_pong(&mut self, nonce: u64) -> Vec<NetworkMessage> {
        self.send(&NetworkMessage::Ping(nonce)).await;
        let (before, _) = self
            .until("pong", |m| *m == NetworkMessage::Pong(nonce))
            .await;
        before
    }

    /// Completes the handshake with an inbound peerpool peer (we connected to it): our version
    /// first, then theirs, the feature messages and verack, then our verack. Returns what
    /// peerpool sent, in order, up to and including its first ping.
    pub async fn handshake_as_dialer(&mut self, protocol: u32) -> Vec<NetworkMessage> {
        self.send(&NetworkMessage::Version(version(
            protocol,
            fastrand::u64(1..),
        )))
        .await;
        let (mut got, verack) = self.until("verack", |m| *m == NetworkMessage::Verack).await;
        got.push(verack);
        if protocol >= MODERN {
            // Feature negotiation, as a modern node does it: between version and verack.
            self.send(&NetworkMessage::WtxidRelay).await;
            self.send(&NetworkMessage::SendAddrV2).await;
        }
        self.send(&NetworkMessage::Verack).await;
        let (before, ping) = self
            .until("first ping", |m| matches!(m, NetworkMessage::Ping(_)))
            .await;
        got.extend(before);
        got.push(ping);
        got
    }

    /// Completes the handshake with an outbound peerpool peer (it connected to us). Returns
    /// what peerpool sent, in order, up to and including its first ping.
    pub async fn handshake_as_listener(&mut self) -> Vec<NetworkMessage> {
        let first = self.expect_msg().await;
        assert!(
            matches!(first, NetworkMessage::Version(_)),
            "outbound peer must open with version, sent {}",
            cmd(&first)
        );
        self.send(&NetworkMessage::Version(version(
            MODERN,
            fastrand::u64(1..),
        )))
        .await;
        self.send(&NetworkMessage::Verack).await;
        let (mut got, ping) = self
            .until("first ping", |m| matches!(m, NetworkMessage::Ping(_)))
            .await;
        got.insert(0, first);
        got.push(ping);
        got
    }
}

/// A blocking socket driven by hand, for tests without a runtime. Reads give up after ten
/// seconds.
pub struct BlockingRawPeer {
    /// The socket.
    pub stream: std::net::TcpStream,
}

impl BlockingRawPeer {
    /// Connects to `to` leaving from `from` (port from the OS).
    pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> io::Result<BlockingRawPeer> {
        // std cannot bind a socket before connecting it; tokio's TcpSocket can.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = rt.block_on(async {
            let s = TcpSocket::new_v4()?;
            s.bind(SocketAddr::from((from, 0)))?;
            s.connect(to).await
        })?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(BLOCKING_READ))?;
        Ok(BlockingRawPeer { stream })
    }

    /// Sends `msg`, framed.
    pub fn send(&mut self, msg: &NetworkMessage) {
        self.stream
            .write_all(&message_bytes(msg))
            .expect("raw write");
    }

    /// Frames an arbitrary payload under `command` with a correct checksum and sends it.
    pub fn send_frame(&mut self, command: &str, payload: &[u8]) {
        self.stream
            .write_all(&frame_bytes(command, payload))
            .expect("raw write");
    }

    /// Sends a modern [`version`] and `verack`; the answers are left unread.
    pub fn handshake(&mut self) {
        self.send(&NetworkMessage::Version(version(
            MODERN,
            fastrand::u64(1..),
        )));
        self.send(&NetworkMessage::Verack);
    }

    /// Reads until the other side closes the connection (or a read times out); the bytes it
    /// sent.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = self.stream.read_to_end(&mut buf);
        buf
    }
}
