//! The load generator's side of the protocol: pre-encoded frames, a lenient framer, the
//! version/verack handshake, and connections from many loopback source addresses.
//!
//! The load generator trusts the server it measures: it checks the magic and the length of
//! what it reads but not the checksum, so that its own cost per message stays small next to
//! the server's.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::Magic;
use peerpool_wire::frame::{HEADER_LEN, MAX_PAYLOAD_LEN};
use peerpool_wire::message::encode_message;
use peerpool_wire::{Network, NetworkMessage, ServiceFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// Protocol version the load generator announces (BIP339 era, like current Bitcoin Core).
const CLIENT_VERSION: u32 = 70016;

/// Every benchmark speaks regtest; the chain only decides the magic.
pub(crate) fn magic() -> Magic {
    Network::Regtest.params().magic
}

/// The 12 command bytes of a header, NUL padded.
pub(crate) const fn command(name: &str) -> [u8; 12] {
    let b = name.as_bytes();
    let mut raw = [0u8; 12];
    let mut i = 0;
    while i < b.len() {
        raw[i] = b[i];
        i += 1;
    }
    raw
}

pub(crate) const VERACK: [u8; 12] = command("verack");
pub(crate) const PING: [u8; 12] = command("ping");
pub(crate) const PONG: [u8; 12] = command("pong");

/// Frames a client sends on every connection, encoded once.
#[derive(Clone, Debug)]
pub(crate) struct Wire {
    pub(crate) magic: Magic,
    pub(crate) server: SocketAddr,
    pub(crate) version: Vec<u8>,
    pub(crate) verack: Vec<u8>,
}

impl Wire {
    pub(crate) fn new(server: SocketAddr) -> Wire {
        let magic = magic();
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let version = VersionMessage {
            version: CLIENT_VERSION,
            services: ServiceFlags::NONE,
            timestamp: now,
            receiver: Address::new(&server, ServiceFlags::NONE),
            sender: Address::new(&unspecified, ServiceFlags::NONE),
            nonce: fastrand::u64(1..),
            user_agent: format!("/peerpool-bench:{}/", env!("CARGO_PKG_VERSION")),
            start_height: 0,
            relay: false,
        };
        Wire {
            magic,
            server,
            version: frame(magic, &NetworkMessage::Version(version)),
            verack: frame(magic, &NetworkMessage::Verack),
        }
    }
}

/// One message as a complete frame.
pub(crate) fn frame(magic: Magic, msg: &NetworkMessage) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(magic, msg, &mut out);
    out
}

/// Splits a byte stream into frames, without checksum verification (see the module docs).
pub(crate) struct Framer {
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    start: usize,
    /// End of filled bytes in `buf`.
    end: usize,
}

/// Room made available for each read.
const READ_CHUNK: usize = 4096;

impl Framer {
    pub(crate) fn new() -> Framer {
        Framer {
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Space to read into: at least [`READ_CHUNK`] bytes after the filled part.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < READ_CHUNK {
                self.buf.resize(self.end + READ_CHUNK, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`Framer::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The next complete frame: its command and payload. An error means the stream is not
    /// speaking our protocol (wrong magic or an impossible length).
    pub(crate) fn next(&mut self, magic: Magic) -> io::Result<Option<([u8; 12], &[u8])>> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        if avail[..4] != magic.to_bytes() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong magic"));
        }
        let len = u32::from_le_bytes([avail[16], avail[17], avail[18], avail[19]]);
        if len > MAX_PAYLOAD_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "oversized frame",
            ));
        }
        let total = HEADER_LEN + len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let mut cmd = [0u8; 12];
        cmd.copy_from_slice(&avail[4..16]);
        let payload_at = self.start + HEADER_LEN;
        self.start += total;
        Ok(Some((
            cmd,
            &self.buf[payload_at..payload_at + len as usize],
        )))
    }
}

/// Sends `version`, reads until the server's `verack`, sends `verack`. The server counts the
/// handshake once it has read our `verack`.
pub(crate) async fn handshake(stream: &mut TcpStream, wire: &Wire) -> io::Result<()> {
    stream.write_all(&wire.version).await?;
    let mut framer = Framer::new();
    loop {
        while let Some((cmd, _)) = framer.next(wire.magic)? {
            if cmd == VERACK {
                return stream.write_all(&wire.verack).await;
            }
        }
        let n = stream.read(framer.spare()).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        framer.filled(n);
    }
}

/// Source addresses handed out in turn, so that connections spread over many loopback
/// addresses and never run out of ephemeral ports (about 28,000 per source address, each held
/// for a minute in TIME_WAIT after the client closes first). All lie in 127.0.0.0/8.
static NEXT_SOURCE: AtomicU64 = AtomicU64::new(0);

/// Distinct source addresses used: 127.1.0.1 to 127.250.0.250.
const SOURCES: u64 = 250 * 250;

/// The next loopback source address.
pub(crate) fn next_source() -> Ipv4Addr {
    let i = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % SOURCES;
    Ipv4Addr::new(127, 1 + (i / 250) as u8, 0, 1 + (i % 250) as u8)
}

/// Connects to `server` from the next loopback source address.
pub(crate) async fn connect(server: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(IpAddr::V4(next_source()), 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects and completes the handshake within `timeout`.
pub(crate) async fn connect_and_handshake(wire: &Wire, timeout: Duration) -> io::Result<TcpStream> {
    let attempt = async {
        let mut s = connect(wire.server).await?;
        handshake(&mut s, wire).await?;
        Ok(s)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "handshake timed out",
        )),
    }
}

/// Opens `n` handshaken connections, `parallel` at a time, and returns them as plain sockets
/// (no longer registered with the runtime: they sit idle, and whatever the server sends them
/// stays in the kernel's buffers). Each connection gets three attempts.
pub(crate) async fn hold(
    wire: &Wire,
    n: usize,
    parallel: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<std::net::TcpStream>> {
    let started = Instant::now();
    let mut held = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut launched = 0;
    let mut failures = 0usize;
    let mut last_error = None;
    while held.len() < n {
        while launched < n && set.len() < parallel {
            let w = wire.clone();
            set.spawn(async move {
                let mut err = None;
                for _ in 0..3 {
                    match connect_and_handshake(&w, timeout).await {
                        Ok(s) => return s.into_std(),
                        Err(e) => err = Some(e),
                    }
                }
                Err(err.unwrap_or_else(|| io::ErrorKind::Other.into()))
            });
            launched += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(s))) => held.push(s),
            Some(Ok(Err(e))) => {
                failures += 1;
                last_error = Some(e);
            }
            Some(Err(e)) => anyhow::bail!("connection task failed: {e}"),
            None => break,
        }
    }
    if held.len() < n {
        anyhow::bail!(
            "opened only {} of {n} connections in {:.1?} ({failures} failed; last error: {})",
            held.len(),
            started.elapsed(),
            last_error.map_or_else(|| "none".into(), |e| e.to_string())
        );
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_splits_frames_across_reads() {
        let m = magic();
        let mut wire = frame(m, &NetworkMessage::Ping(7));
        wire.extend(frame(m, &NetworkMessage::Verack));
        let mut f = Framer::new();
        let mut seen = Vec::new();
        for b in wire {
            f.spare()[0] = b;
            f.filled(1);
            while let Some((cmd, payload)) = f.next(m).unwrap() {
                seen.push((cmd, payload.to_vec()));
            }
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, PING);
        assert_eq!(seen[0].1, 7u64.to_le_bytes());
        assert_eq!(seen[1].0, VERACK);
    }

    #[test]
    fn sources_are_loopback_and_distinct() {
        let a = next_source();
        let b = next_source();
        assert!(a.is_loopback() && b.is_loopback());
        assert_ne!(a, b);
    }
}
