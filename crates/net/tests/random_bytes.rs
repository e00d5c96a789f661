//! Ten thousand seeded random chunks (frames good and broken, raw noise, partial and
//! oversized headers) thrown at a server's peers over loopback, reconnecting whenever a peer
//! gives up, while a well-behaved peer on the same server keeps talking. The server must
//! never panic or stall, and the good peer must be served throughout.
//!
//! The seed is printed; `PEERPOOL_RANDOM_SEED=<n>` replays the same chunks (how they split
//! across connections depends on when each peer gives up, which timing decides).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bitcoin::p2p::message::NetworkMessage;
use peerpool_net::{dial, DisconnectReason, Listeners, Peer};
use peerpool_testkit::peer::{config, emit, peer_config, serve};
use peerpool_testkit::raw::{magic, unknown, version, RawPeer, MODERN};
use peerpool_testkit::{init_logs, within, WAIT};
use peerpool_wire::frame::{encode_frame, MAX_PAYLOAD_LEN};
use peerpool_wire::message::encode_message;
use peerpool_wire::{Command, MessageKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const CHUNKS: usize = 10_000;

/// Commands drawn for random frames: the ones the peer machine acts on, some it only counts,
/// and a few it has never heard of.
const COMMANDS: &[&str] = &[
    "version",
    "verack",
    "ping",
    "pong",
    "inv",
    "getdata",
    "notfound",
    "addr",
    "addrv2",
    "headers",
    "tx",
    "block",
    "feefilter",
    "sendheaders",
    "sendcmpct",
    "wtxidrelay",
    "sendaddrv2",
    "filterload",
    "filteradd",
    "getheaders",
    "reject",
    "zzz",
    "x",
];

/// One chunk of the stream: what a confused or hostile peer might write in one go.
fn chunk(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let payload = |rng: &mut fastrand::Rng| {
        let len = match rng.u8(..) {
            0..=200 => rng.usize(0..64),
            201..=250 => rng.usize(64..2_000),
            _ => rng.usize(2_000..70_000),
        };
        let mut p = vec![0u8; len];
        rng.fill(&mut p);
        if !p.is_empty() && rng.bool() {
            // A small leading count, so list decoders get past their first varint.
            p[0] = rng.u8(0..4);
        }
        p
    };
    let command = |rng: &mut fastrand::Rng| Command::new(COMMANDS[rng.usize(..COMMANDS.len())]);
    match rng.u8(0..100) {
        // A frame with a valid header and random payload.
        0..=44 => {
            let p = payload(rng);
            encode_frame(magic(), command(rng).unwrap(), &p, &mut out);
        }
        // Well-formed messages, so some connections get through the handshake.
        45..=54 => {
            let m = match rng.u8(0..4) {
                0 => NetworkMessage::Version(version(rng.u32(0..80_000), rng.u64(..))),
                1 => NetworkMessage::Verack,
                2 => NetworkMessage::Ping(rng.u64(..)),
                _ => NetworkMessage::Pong(rng.u64(..)),
            };
            encode_message(magic(), &m, &mut out);
        }
        // Bad checksum.
        55..=64 => {
            let p = payload(rng);
            encode_frame(magic(), command(rng).unwrap(), &p, &mut out);
            out[20 + rng.usize(0..4)] ^= 1 << rng.u8(0..8);
        }
        // Garbage in the command field.
        65..=72 => {
            let p = payload(rng);
            encode_frame(magic(), command(rng).unwrap(), &p, &mut out);
            let at = 4 + rng.usize(0..12);
            out[at] = rng.u8(..);
        }
        // A frame cut short; whatever follows lands inside its payload.
        73..=82 => {
            let p = payload(rng);
            encode_frame(magic(), command(rng).unwrap(), &p, &mut out);
            let keep = rng.usize(1..out.len());
            out.truncate(keep);
        }
        // A header announcing more than the limit.
        83..=86 => {
            encode_frame(magic(), command(rng).unwrap(), &[], &mut out);
            let len = rng.u32(MAX_PAYLOAD_LEN + 1..);
            out[16..20].copy_from_slice(&len.to_le_bytes());
        }
        // Noise.
        _ => {
            out.resize(rng.usize(1..300), 0);
            rng.fill(&mut out);
        }
    }
    out
}

/// A fuzzing connection: the socket, and the server's handle for it.
struct Victim {
    stream: TcpStream,
    peer: Peer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_chunks_do_not_disturb_other_peers() {
    init_logs();
    let seed = std::env::var("PEERPOOL_RANDOM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("PEERPOOL_RANDOM_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    // Per-connection choices draw from their own generator so the chunks stay the same
    // whatever the number of connections.
    let mut conn_rng = fastrand::Rng::with_seed(seed ^ 0x5eed);

    // Count panics anywhere in the process: a connection task that panics must fail the test
    // even though tokio would swallow it.
    let panics = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&panics);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let (alive_tx, mut alive) = mpsc::unbounded_channel();
    // Decoding every kind for the listener drives the random payloads through every decoder.
    let server_cfg = config(
        peer_config(),
        Listeners::new().on_message(move |p, m| {
            if let NetworkMessage::Unknown { command, payload } = m {
                if command.as_ref() == "alive" {
                    emit(&alive_tx, (p.id(), payload.clone()));
                }
            }
        }),
    );
    let (addr, mut accepted) = serve("127.0.0.1:0", server_cfg).await;

    // The well-behaved neighbour.
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let good = within(
        "dial",
        dial(
            config(
                peer_config(),
                Listeners::new().on_handshake(move |p, _| emit(&ready_tx, p.id())),
            ),
            addr,
            WAIT,
        ),
    )
    .await
    .unwrap();
    let good_remote = within("accept", accepted.recv()).await.unwrap();
    within("good handshake", ready.recv()).await.unwrap();

    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut reached_ready = 0usize;
    let mut connections = 0usize;
    let mut victim: Option<Victim> = None;
    for i in 0..CHUNKS {
        let v = match &mut victim {
            Some(v) => v,
            None => {
                let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
                let _ = stream.set_nodelay(true);
                let peer = within("accept", accepted.recv()).await.unwrap();
                connections += 1;
                let mut v = Victim { stream, peer };
                if conn_rng.u8(0..10) < 7 {
                    // Most connections start with a proper handshake, so the random frames
                    // also meet a peer that is past it.
                    let mut hs = Vec::new();
                    encode_message(
                        magic(),
                        &NetworkMessage::Version(version(MODERN, conn_rng.u64(1..))),
                        &mut hs,
                    );
                    encode_message(magic(), &NetworkMessage::Verack, &mut hs);
                    let _ = v.stream.write_all(&hs).await;
                }
                victim.insert(v)
            }
        };
        let bytes = chunk(&mut rng);
        let write_failed = within("write", v.stream.write_all(&bytes)).await.is_err();
        if write_failed || !v.peer.connected() {
            // The peer gave up: check that it ended properly, then start a fresh connection.
            let v = victim.take().unwrap();
            let reason = within("victim end", v.peer.wait_for_disconnect()).await;
            assert!(
                !matches!(&reason, DisconnectReason::Io(m) if m.contains("panicked")),
                "a connection task panicked (seed {seed})"
            );
            if v.peer
                .stats()
                .is_some_and(|s| s.handshake_completed.is_some())
            {
                reached_ready += 1;
            }
            let key = format!("{reason:?}");
            let key = key.split(['(', '{', ' ']).next().unwrap_or("").to_owned();
            *reasons.entry(key).or_default() += 1;
        }
        if i % 500 == 499 {
            // Meanwhile the neighbour is served as usual.
            let tag = (i as u32).to_le_bytes().to_vec();
            good.queue_message(unknown("alive", tag.clone()), None);
            loop {
                let (id, payload) = within("neighbour served", alive.recv()).await.unwrap();
                if id == good_remote.id() && payload == tag {
                    break;
                }
            }
        }
    }
    if let Some(v) = victim.take() {
        v.peer.disconnect();
        within("last victim", v.peer.wait_for_disconnect()).await;
    }
    eprintln!("{connections} connections, {reached_ready} past the handshake; ends: {reasons:?}");

    assert_eq!(panics.load(Ordering::SeqCst), 0, "panics (seed {seed})");
    assert!(good.is_ready() && good_remote.is_ready());
    assert_eq!(good_remote.stats().unwrap().ban_score, 0);
    // The random stream did reach the interesting places.
    assert!(connections > 10, "{connections} connections");
    assert!(
        reached_ready > 0,
        "no random connection got past the handshake"
    );
    assert!(reasons.contains_key("BadFrame"), "{reasons:?}");
    // And the server still takes new peers.
    let mut fresh = RawPeer::connect(addr).await;
    let _ = within("accept", accepted.recv()).await.unwrap();
    fresh.handshake_as_dialer(MODERN).await;
    fresh.ping_pong(1).await;
    let s = good.stats().unwrap();
    assert!(s
        .bytes_sent_per_msg
        .iter()
        .any(|(k, _)| *k == MessageKind::Unknown));
}
