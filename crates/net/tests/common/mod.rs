//! Shared pieces of the runtime tests: configs with short timers, a tiny server that hands
//! each accepted connection to an inbound [`Peer`], and [`RawPeer`], a hand-driven socket that
//! speaks the protocol byte by byte so a test can misbehave exactly as it likes.
//!
//! Every wait goes through [`within`]: a test that waits longer than [`WAIT`] fails with the
//! name of what it was waiting for instead of hanging.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bytes::BytesMut;
use peerpool_core::peer::PeerConfig;
use peerpool_net::{Config, Listeners, Peer};
use peerpool_wire::frame::{encode_frame, Frame, FrameDecoder};
use peerpool_wire::message::{decode_payload, encode_message};
use peerpool_wire::{Command, Network};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Longest any single wait may take before the test fails. Generous: the events waited for
/// arrive in milliseconds, this only turns a hang into a failure, and a loaded CI machine can
/// stall a task for seconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// The protocol version a well-behaved modern peer announces.
pub const MODERN: u32 = 70016;

/// Awaits `f`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Installs a log subscriber when `RUST_LOG` is set, for debugging a failing test.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn magic() -> Magic {
    Network::Regtest.params().magic
}

/// Regtest protocol settings with timers that never fire during a test unless the test
/// shortens them itself, and trickles fast enough to wait for.
pub fn peer_config() -> PeerConfig {
    let mut c = PeerConfig::new(Network::Regtest.params());
    c.handshake_timeout = Duration::from_secs(30);
    c.ping_interval = Duration::from_secs(600);
    c.timeout_interval = Duration::from_secs(600);
    c.trickle_interval_inbound = Duration::from_millis(20);
    c.trickle_interval_outbound = Duration::from_millis(20);
    c
}

pub fn config(peer: PeerConfig, listeners: Listeners) -> Arc<Config> {
    Arc::new(Config::from_peer_config(peer).with_listeners(listeners))
}

/// A listener on `bind` whose connections each become an inbound [`Peer`] of `config`; the
/// peers come out of the returned channel in accept order.
pub async fn serve(bind: &str, config: Arc<Config>) -> (SocketAddr, mpsc::UnboundedReceiver<Peer>) {
    let listener = TcpListener::bind(bind).await.expect("bind test listener");
    let addr = listener.local_addr().expect("listener address");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let peer = Peer::new_inbound(Arc::clone(&config));
            peer.associate_connection(stream);
            if tx.send(peer).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// Seconds since the UNIX epoch, for version timestamps.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A `version` as a hand-written peer would send it.
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

/// A socket driven by hand: whatever the test writes goes out verbatim, whatever arrives is
/// framed and decoded so the test can assert on it.
pub struct RawPeer {
    pub stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl RawPeer {
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        let stream = within("raw connect", TcpStream::connect(addr))
            .await
            .expect("raw connect");
        RawPeer::new(stream)
    }

    pub fn new(stream: TcpStream) -> RawPeer {
        let _ = stream.set_nodelay(true);
        RawPeer {
            stream,
            decoder: FrameDecoder::new(magic()),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, msg: &NetworkMessage) {
        let mut out = Vec::new();
        encode_message(magic(), msg, &mut out);
        self.send_raw(&out).await;
    }

    /// Frames an arbitrary payload under `command` with a correct checksum.
    pub async fn send_frame(&mut self, command: &str, payload: &[u8]) {
        let mut out = Vec::new();
        encode_frame(
            magic(),
            Command::new(command).expect("test command"),
            payload,
            &mut out,
        );
        self.send_raw(&out).await;
    }

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
                .expect("peerpool sent a bad frame")
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
        Some(decode_payload(f.command, &f.payload).expect("peerpool sent an undecodable payload"))
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
            rest.iter().map(cmd).collect::<Vec<_>>()
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
                    before.iter().map(cmd).collect::<Vec<_>>()
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

    /// Completes the handshake with an outbound peerpool peer (it connected to us).
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

/// Commands of a list of messages, for assertions that print well.
pub fn commands(msgs: &[NetworkMessage]) -> Vec<String> {
    msgs.iter().map(cmd).collect()
}

/// Sends from inside a listener callback; a test that stopped listening is no error.
pub fn emit<T>(tx: &mpsc::UnboundedSender<T>, value: T) {
    let _ = tx.send(value);
}
