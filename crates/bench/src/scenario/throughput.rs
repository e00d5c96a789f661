//! Inbound message throughput on one connection, after a handshake.
//!
//! - Small: 61-byte `inv` frames with one transaction entry each (the most frequent message on
//!   a busy node), coalesced by the sender into writes of 1,024 frames (62,464 bytes). Figure:
//!   frames framed, checksummed and counted by the server per second.
//! - Large: frames with a 4,000,000-byte payload under an unknown command (so neither server
//!   decodes it; peerpool relays unknown payloads raw). Figure: payload MB/s.
//!
//! Time runs from the sender's first write to the server's counter reaching the total (the
//! child polls its counter every millisecond). The peerpool server counts in its `on_read` hook,
//! called for every frame after the peer machine has processed it (for `inv`, that includes
//! decoding it and recording its entries as known to the peer). The reference counts after
//! the checksum.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::Txid;
use peerpool_wire::frame::{encode_frame, MAX_PAYLOAD_LEN};
use peerpool_wire::{Command, NetworkMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::child::{Impl, ServerProcess};
use crate::client::{self, Wire};
use crate::report::{list, median, Row, Section, Target};
use crate::scenario::{slot, spawn_load, spec, SETUP_TIMEOUT};
use crate::{BenchOptions, Scenario};

/// Command of the large frames: unknown to every implementation.
pub(crate) const BLOB_COMMAND: &str = "benchblob";

/// `inv` frames per write.
const FRAMES_PER_WRITE: usize = 1_024;

/// Distinct writes cycled through (16,384 distinct transaction ids).
const DISTINCT_WRITES: usize = 16;

/// Longest wait for the server to count everything sent.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

struct Once {
    msgs_per_sec: f64,
    mb_per_sec: f64,
}

pub(crate) async fn run(opts: &BenchOptions) -> anyhow::Result<Section> {
    let size = opts.large_size.min(MAX_PAYLOAD_LEN as usize);
    let writes = (opts.small_messages as usize)
        .div_ceil(FRAMES_PER_WRITE)
        .max(1);
    let small_total = (writes * FRAMES_PER_WRITE) as u64;
    let large_total = opts.large_messages.max(1);
    let small = Arc::new(small_writes());
    let mut blob = Vec::with_capacity(size + 24);
    let mut payload = vec![0u8; size];
    fastrand::fill(&mut payload);
    encode_frame(
        client::magic(),
        Command::new(BLOB_COMMAND)?,
        &payload,
        &mut blob,
    );
    drop(payload);
    let blob = Arc::new(blob);

    let mut msgs = [Vec::new(), Vec::new()];
    let mut mbs = [Vec::new(), Vec::new()];
    for _ in 0..opts.reps.max(1) {
        for imp in Impl::BOTH {
            let r = once(imp, opts, &small, writes, &blob, large_total).await?;
            tracing::info!(
                "throughput {imp}: {:.0} inv/s, {:.0} MB/s",
                r.msgs_per_sec,
                r.mb_per_sec
            );
            msgs[slot(imp)].push(r.msgs_per_sec);
            mbs[slot(imp)].push(r.mb_per_sec);
        }
    }
    let mut s = Section::new(
        Scenario::Throughput,
        format!(
            "one connection; {small_total} inv frames of 61 bytes in writes of {FRAMES_PER_WRITE}, \
             then {large_total} frames of {size} bytes; {} reps; reference reads through a {} \
             byte buffer; {}",
            opts.reps.max(1),
            opts.reference_read_buffer,
            match opts.throughput_cpus {
                Some((srv, snd)) => format!("server pinned to CPU {srv}, sender to CPU {snd}"),
                None => "unpinned".into(),
            }
        ),
    );
    s.rows.push(
        Row::new(
            "61-byte inv messages per second, median",
            "1/s",
            median(&msgs[0]),
        )
        .vs(median(&msgs[1]))
        .target(Target::RatioAtLeast(0.4)),
    );
    s.rows.push(
        Row::new(
            format!("{size}-byte payloads, median"),
            "MB/s",
            median(&mbs[0]),
        )
        .vs(median(&mbs[1]))
        .target(Target::RatioAtLeast(0.7)),
    );
    s.notes.push(format!(
        "inv/s per rep: peerpool {}; reference {}",
        list(&msgs[0]),
        list(&msgs[1])
    ));
    s.notes.push(format!(
        "MB/s per rep: peerpool {}; reference {}",
        list(&mbs[0]),
        list(&mbs[1])
    ));
    Ok(s)
}

/// The small-message writes: each a run of 1-entry `inv` frames with distinct txids.
fn small_writes() -> Vec<Vec<u8>> {
    let magic = client::magic();
    (0..DISTINCT_WRITES)
        .map(|w| {
            let mut buf = Vec::with_capacity(FRAMES_PER_WRITE * 61);
            for f in 0..FRAMES_PER_WRITE {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&((w * FRAMES_PER_WRITE + f) as u64).to_le_bytes());
                id[8] = 0xbe;
                let inv = Inventory::Transaction(Txid::from_byte_array(id));
                peerpool_wire::message::encode_message(
                    magic,
                    &NetworkMessage::Inv(vec![inv]),
                    &mut buf,
                );
            }
            buf
        })
        .collect()
}

async fn once(
    imp: Impl,
    opts: &BenchOptions,
    small: &Arc<Vec<Vec<u8>>>,
    writes: usize,
    blob: &Arc<Vec<u8>>,
    large_total: u64,
) -> anyhow::Result<Once> {
    let mut sp = spec(imp, opts);
    // One session sending as fast as it can is what the cost limits throttle and then cut
    // off; this scenario measures the read path, so they are off (see ServerSpec::cost_limits).
    sp.cost_limits = false;
    sp.read_buffer = opts.reference_read_buffer;
    sp.cpu = opts.throughput_cpus.map(|(server, _)| server);
    let sender_cpu = opts.throughput_cpus.map(|(_, sender)| sender);
    let mut server = ServerProcess::spawn(&sp).await?;
    let wire = Wire::new(server.addr());

    let conn = client::connect_and_handshake(&wire, SETUP_TIMEOUT)
        .await?
        .into_std()?;
    let base = server.stats().await?.invs;
    let total = (writes * FRAMES_PER_WRITE) as u64;
    let t0 = Instant::now();
    let bufs = Arc::clone(small);
    let sent = spawn_load("inv-sender", sender_cpu, 1, move || async move {
        let mut conn = TcpStream::from_std(conn)?;
        for i in 0..writes {
            conn.write_all(&bufs[i % bufs.len()]).await?;
        }
        Ok(conn)
    })?;
    server.wait_for("invs", base + total, DRAIN_TIMEOUT).await?;
    let msgs_per_sec = total as f64 / t0.elapsed().as_secs_f64();
    drop(sent.await.context("the sender thread panicked")??);

    let conn = client::connect_and_handshake(&wire, SETUP_TIMEOUT)
        .await?
        .into_std()?;
    let base = server.stats().await?.blobs;
    let t0 = Instant::now();
    let frame = Arc::clone(blob);
    let sent = spawn_load("blob-sender", sender_cpu, 1, move || async move {
        let mut conn = TcpStream::from_std(conn)?;
        for _ in 0..large_total {
            conn.write_all(&frame).await?;
        }
        Ok(conn)
    })?;
    server
        .wait_for("blobs", base + large_total, DRAIN_TIMEOUT)
        .await?;
    let payload = (blob.len() - 24) as f64 * large_total as f64;
    let mb_per_sec = payload / 1e6 / t0.elapsed().as_secs_f64();
    drop(sent.await.context("the sender thread panicked")??);

    server.stop().await?;
    Ok(Once {
        msgs_per_sec,
        mb_per_sec,
    })
}
