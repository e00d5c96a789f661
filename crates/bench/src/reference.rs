//! The reference server: the least a tokio program must do to speak to the same clients, so
//! that every peerpool figure can be put next to it.
//!
//! Per connection, one task reads a 24-byte header with `read_exact`, checks magic and length,
//! reads the payload with `read_exact` into a fresh `Vec`, verifies its checksum with `sha2`,
//! and then:
//! - `version`: answers `version` + `verack` (encoded per connection, like a real node);
//! - `verack`: counts a completed handshake;
//! - `ping`: answers `pong` with the same nonce;
//! - anything else: counts it (inv and benchblob separately).
//!
//! No machine, no timers, no statistics, no limits but the connection count. With
//! `read_buffer` > 0 the socket is read through a `BufReader` of that size (used for the
//! message-throughput scenario, where a reader issuing two `read` calls per 61-byte message
//! would be a straw man); otherwise every `read_exact` goes to the socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_network::VersionMessage;
use peerpool_wire::frame::{HEADER_LEN, MAX_PAYLOAD_LEN};
use peerpool_wire::{NetworkMessage, ServiceFlags};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::child::Counters;
use crate::client::{self, command};

/// Pause after a failed `accept` (out of descriptors, typically) before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

const VERSION: [u8; 12] = command("version");
const VERACK: [u8; 12] = command("verack");
const PING: [u8; 12] = command("ping");
const INV: [u8; 12] = command("inv");
const BLOB: [u8; 12] = command(crate::scenario::throughput::BLOB_COMMAND);

/// Accepts connections until `shutdown`; beyond `max_conns` live ones, accepts and closes.
pub(crate) async fn serve(
    listener: TcpListener,
    counters: Arc<Counters>,
    max_conns: usize,
    read_buffer: usize,
    shutdown: CancellationToken,
) {
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, addr) = match accepted {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if live.load(Ordering::Relaxed) >= max_conns {
            Counters::add(&counters.refused, 1);
            drop(stream);
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        Counters::add(&counters.accepted, 1);
        let counters = Arc::clone(&counters);
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            connection(stream, addr, &counters, read_buffer).await;
            live.fetch_sub(1, Ordering::Relaxed);
            Counters::add(&counters.disconnected, 1);
        });
    }
}

async fn connection(mut stream: TcpStream, addr: SocketAddr, counters: &Counters, buf: usize) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.split();
    let result = if buf > 0 {
        messages(BufReader::with_capacity(buf, r), &mut w, addr, counters).await
    } else {
        messages(r, &mut w, addr, counters).await
    };
    // Any error ends the connection, as EOF does.
    let _ = result;
}

async fn messages<R: AsyncRead + Unpin>(
    mut r: R,
    w: &mut tokio::net::tcp::WriteHalf<'_>,
    addr: SocketAddr,
    counters: &Counters,
) -> std::io::Result<()> {
    let magic = client::magic().to_bytes();
    let mut header = [0u8; HEADER_LEN];
    loop {
        r.read_exact(&mut header).await?;
        if header[..4] != magic {
            return Ok(());
        }
        let len = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if len > MAX_PAYLOAD_LEN {
            return Ok(());
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).await?;
        let sum = Sha256::digest(Sha256::digest(&payload));
        if sum[..4] != header[20..24] {
            continue;
        }
        Counters::add(&counters.msgs, 1);
        Counters::add(&counters.bytes, (HEADER_LEN + payload.len()) as u64);
        let mut cmd = [0u8; 12];
        cmd.copy_from_slice(&header[4..16]);
        match cmd {
            VERSION => {
                let mut out = Vec::new();
                peerpool_wire::message::encode_message(
                    client::magic(),
                    &NetworkMessage::Version(version_for(addr)),
                    &mut out,
                );
                peerpool_wire::message::encode_message(
                    client::magic(),
                    &NetworkMessage::Verack,
                    &mut out,
                );
                w.write_all(&out).await?;
            }
            VERACK => Counters::add(&counters.handshakes, 1),
            PING if payload.len() == 8 => {
                let mut nonce = [0u8; 8];
                nonce.copy_from_slice(&payload);
                let pong = client::frame(
                    client::magic(),
                    &NetworkMessage::Pong(u64::from_le_bytes(nonce)),
                );
                w.write_all(&pong).await?;
            }
            INV => Counters::add(&counters.invs, 1),
            BLOB => Counters::add(&counters.blobs, 1),
            _ => {}
        }
    }
}

pub(crate) fn version_for(remote: SocketAddr) -> VersionMessage {
    let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    VersionMessage {
        version: 70016,
        services: ServiceFlags::NONE,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        receiver: Address::new(&remote, ServiceFlags::NONE),
        sender: Address::new(&unspecified, ServiceFlags::NONE),
        nonce: fastrand::u64(1..),
        user_agent: "/reference:0.1/".into(),
        start_height: 0,
        relay: false,
    }
}
