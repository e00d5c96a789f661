//! The server side of the fan-out scenario: a relay that announces a stream of distinct
//! inventory entries to every connected peer, on peerpool and on two reference servers.
//!
//! - peerpool: the peers of [`crate::peerpool_server`]'s accept loop. Each entry is a block
//!   hash handed to [`Peer::queue_inventories`] of every peer (a batch at a time: one lock and
//!   one wake-up per peer and batch), the path a relay takes: the peer's
//!   known-inventory filter is consulted and updated, and a block entry skips the trickle, so
//!   each entry leaves as one 61-byte `inv`. (Transaction entries would wait for the trickle
//!   timer and leave batched into multi-entry `inv`s, which measures the timer, not the send
//!   path.) The relay keeps at most [`WINDOW`] batches of entries unwritten per peer (the batch
//!   size is a parameter of the run): the last entry of each batch goes through
//!   [`Peer::queue_message`] with a completion
//!   notice (after [`Peer::add_known_inventory`], the same bookkeeping `queue_inventory` does),
//!   and the relay waits for batch `k - WINDOW` to be written before it starts batch `k`.
//!   Without such flow control a relay outruns its readers and peers are disconnected for a
//!   full send buffer.
//! - [`WriteMode::Coalescing`]: the minimal fan-out server. Per peer, a reader task (handshake,
//!   then reads and drops) and a writer task draining a bounded queue of shared, pre-encoded
//!   frames; the writer takes everything queued and writes it with one `write_all`.
//! - [`WriteMode::PerMessage`]: the same, but the writer issues one `write_all` (one `write`
//!   system call on a socket with room) per frame.
//!
//! Both references encode each entry's frame once and share it between peers; their relay
//! waits only when a peer's bounded queue is full, which is their flow control.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::BlockHash;
use bytes::Bytes;
use peerpool_net::Peer;
use peerpool_wire::frame::{HEADER_LEN, MAX_PAYLOAD_LEN};
use peerpool_wire::NetworkMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::child::Counters;
use crate::client::{self, command};

/// Batches a peer may have unwritten: with batches of 256 entries, at most 512 frames (31 KB)
/// per peer wait in user space. A reference server's queue holds as many frames.
pub(crate) const WINDOW: usize = 2;

/// Read buffer of a reference server's reader task.
const READ_BUFFER: usize = 4096;

const VERSION: [u8; 12] = command("version");
const VERACK: [u8; 12] = command("verack");

/// How a reference fan-out server's writer task writes its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// Everything queued, concatenated, in one `write_all`.
    Coalescing,
    /// One `write_all` per frame.
    PerMessage,
}

/// Who the relay sends to: handshaken peers of the server under test.
#[derive(Clone)]
pub(crate) enum Targets {
    /// peerpool peers, registered as they are accepted; entries per batch.
    Peerpool(Arc<Mutex<Vec<Peer>>>, u64),
    /// Queues of a reference server's writer tasks, registered once the handshake completes;
    /// entries per batch.
    Queues(Arc<Mutex<Vec<mpsc::Sender<Bytes>>>>, u64),
}

/// The block hash of the `k`-th entry of a run: distinct for every `k`.
fn entry(k: u64) -> Inventory {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&k.to_le_bytes());
    h[8] = 0xfa;
    Inventory::Block(BlockHash::from_byte_array(h))
}

/// Announces entries `first..first + count` to every registered target; returns when all are
/// queued (peerpool: when all but the last [`WINDOW`] batches are written).
pub(crate) async fn relay(targets: &Targets, first: u64, count: u64) -> anyhow::Result<()> {
    match targets {
        Targets::Peerpool(peers, batch) => {
            let peers = peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
            relay_peerpool(&peers, first, count, (*batch).max(1)).await
        }
        Targets::Queues(queues, batch) => {
            let queues = queues.lock().unwrap_or_else(|e| e.into_inner()).clone();
            relay_queues(&queues, first, count, (*batch).max(1)).await
        }
    }
}

async fn relay_peerpool(peers: &[Peer], first: u64, count: u64, batch: u64) -> anyhow::Result<()> {
    let end = first + count;
    let mut window: VecDeque<Vec<oneshot::Receiver<()>>> = VecDeque::with_capacity(WINDOW + 1);
    let mut k = first;
    while k < end {
        if window.len() >= WINDOW {
            wait_written(window.pop_front()).await?;
        }
        let last = (k + batch).min(end) - 1;
        let inv = entry(last);
        let mut marks = Vec::with_capacity(peers.len());
        for p in peers {
            p.queue_inventories((k..last).map(entry));
            p.add_known_inventory(&inv);
            let (tx, rx) = oneshot::channel();
            p.queue_message(NetworkMessage::Inv(vec![inv]), Some(tx));
            marks.push(rx);
        }
        window.push_back(marks);
        k = last + 1;
    }
    while let Some(marks) = window.pop_front() {
        wait_written(Some(marks)).await?;
    }
    Ok(())
}

async fn wait_written(marks: Option<Vec<oneshot::Receiver<()>>>) -> anyhow::Result<()> {
    for rx in marks.into_iter().flatten() {
        rx.await
            .context("a peer disconnected before its announcements were written")?;
    }
    Ok(())
}

async fn relay_queues(
    queues: &[mpsc::Sender<Bytes>],
    first: u64,
    count: u64,
    batch: u64,
) -> anyhow::Result<()> {
    let magic = client::magic();
    let end = first + count;
    let mut k = first;
    while k < end {
        let frames: Vec<Bytes> = (k..(k + batch).min(end))
            .map(|j| Bytes::from(client::frame(magic, &NetworkMessage::Inv(vec![entry(j)]))))
            .collect();
        k += frames.len() as u64;
        for q in queues {
            for frame in &frames {
                // Wait only on a full queue: awaiting every send would hand the CPU to the writer
                // after each frame (tokio's cooperative budget), and nothing would be coalesced.
                let closed = || anyhow::anyhow!("a peer's writer task ended during the relay");
                match q.try_send(frame.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(f)) => {
                        q.send(f).await.map_err(|_| closed())?
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
                }
            }
        }
    }
    Ok(())
}

/// A reference fan-out server: accepts until `shutdown`, registers each handshaken peer's
/// queue in `queues`.
pub(crate) async fn serve_reference(
    listener: TcpListener,
    counters: Arc<Counters>,
    mode: WriteMode,
    batch: u64,
    queues: Arc<Mutex<Vec<mpsc::Sender<Bytes>>>>,
    shutdown: CancellationToken,
) {
    let queue = (batch as usize).saturating_mul(WINDOW).max(1);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let Ok((stream, addr)) = accepted else {
            continue;
        };
        Counters::add(&counters.accepted, 1);
        let counters = Arc::clone(&counters);
        let queues = Arc::clone(&queues);
        tokio::spawn(async move {
            let _ = connection(stream, addr, &counters, mode, queue, &queues).await;
            Counters::add(&counters.disconnected, 1);
        });
    }
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    counters: &Counters,
    mode: WriteMode,
    queue: usize,
    queues: &Mutex<Vec<mpsc::Sender<Bytes>>>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Bytes>(queue);
    tokio::spawn(writer(w, rx, mode, queue));
    let mut r = BufReader::with_capacity(READ_BUFFER, r);
    let magic = client::magic();
    let mut header = [0u8; HEADER_LEN];
    loop {
        r.read_exact(&mut header).await?;
        if header[..4] != magic.to_bytes() {
            return Ok(());
        }
        let len = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if len > MAX_PAYLOAD_LEN {
            return Ok(());
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).await?;
        let mut cmd = [0u8; 12];
        cmd.copy_from_slice(&header[4..16]);
        match cmd {
            VERSION => {
                let mut out = Vec::new();
                peerpool_wire::message::encode_message(
                    magic,
                    &NetworkMessage::Version(crate::reference::version_for(addr)),
                    &mut out,
                );
                peerpool_wire::message::encode_message(magic, &NetworkMessage::Verack, &mut out);
                if tx.send(Bytes::from(out)).await.is_err() {
                    return Ok(());
                }
            }
            VERACK => {
                queues
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(tx.clone());
                Counters::add(&counters.handshakes, 1);
            }
            _ => {}
        }
    }
}

async fn writer(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    mode: WriteMode,
    queue: usize,
) -> std::io::Result<()> {
    match mode {
        WriteMode::PerMessage => {
            while let Some(frame) = rx.recv().await {
                w.write_all(&frame).await?;
            }
        }
        WriteMode::Coalescing => {
            let mut frames = Vec::with_capacity(queue);
            let mut buf = Vec::new();
            while rx.recv_many(&mut frames, queue).await > 0 {
                buf.clear();
                for f in frames.drain(..) {
                    buf.extend_from_slice(&f);
                }
                w.write_all(&buf).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_distinct_61_byte_frames() {
        let a = client::frame(client::magic(), &NetworkMessage::Inv(vec![entry(1)]));
        let b = client::frame(client::magic(), &NetworkMessage::Inv(vec![entry(2)]));
        assert_eq!(a.len(), 61);
        assert_ne!(a, b);
    }
}
