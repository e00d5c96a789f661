//! Micro-benchmarks of the receive and send paths of the wire crate.
//!
//! Run with `cargo bench -p peerpool-wire --bench framing`. What they answer:
//! - how many small messages per second one connection task can frame (inv announcements are
//!   the most frequent message on a busy node, 61 bytes on the wire with one entry);
//! - how fast a maximum-size payload (a 4 MB block) is framed, which is dominated by the
//!   SHA256d checksum; whole in one read, and in 64 KiB reads as a socket delivers it;
//! - checksum throughput by payload size;
//! - the cost of encoding the messages we send most (inv) and the one with the most fields
//!   (version).

use std::hint::black_box;

use bitcoin::hashes::Hash;
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_network::VersionMessage;
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use peerpool_wire::checksum::checksum;
use peerpool_wire::frame::{encode_frame, HEADER_LEN, MAX_PAYLOAD_LEN};
use peerpool_wire::message::{decode_payload, encode_message};
use peerpool_wire::{Command, FrameDecoder, Magic, NetworkMessage, ServiceFlags};

const MAGIC: Magic = Magic::BITCOIN;

/// Number of frames in the inv stream: enough that per-iteration overhead (the setup copy
/// excluded) is negligible, small enough to stay in cache like a busy socket buffer would.
const INV_FRAMES: usize = 10_000;

fn inv_message(i: u32) -> NetworkMessage {
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&i.to_le_bytes());
    NetworkMessage::Inv(vec![Inventory::WTx(bitcoin::Wtxid::from_byte_array(hash))])
}

fn version_message() -> NetworkMessage {
    let addr = Address::new(
        &"203.0.113.7:8333".parse().expect("socket address"),
        ServiceFlags::NETWORK | ServiceFlags::WITNESS,
    );
    NetworkMessage::Version(VersionMessage {
        version: 70016,
        services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        timestamp: 1_700_000_000,
        receiver: addr.clone(),
        sender: addr,
        nonce: 0x0123_4567_89ab_cdef,
        user_agent: "/peerpool:0.1.0/".into(),
        start_height: 840_000,
        relay: true,
    })
}

fn inv_stream() -> Vec<u8> {
    let mut wire = Vec::new();
    for i in 0..INV_FRAMES as u32 {
        encode_message(MAGIC, &inv_message(i), &mut wire);
    }
    assert_eq!(
        wire.len(),
        INV_FRAMES * 61,
        "an inv frame with one entry is 61 bytes"
    );
    wire
}

fn decode_inv_stream(c: &mut Criterion) {
    let wire = inv_stream();
    let mut group = c.benchmark_group("decode_inv_stream");
    group.throughput(Throughput::Elements(INV_FRAMES as u64));
    // The copy into a fresh buffer happens in setup, outside the timing.
    group.bench_function("frames", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut decoder = FrameDecoder::new(MAGIC);
                let mut n = 0;
                while let Some(frame) = decoder.decode(&mut buf).expect("valid stream") {
                    black_box(&frame);
                    n += 1;
                }
                assert_eq!(n, INV_FRAMES);
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("frames_and_payloads", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut decoder = FrameDecoder::new(MAGIC);
                while let Some(frame) = decoder.decode(&mut buf).expect("valid stream") {
                    black_box(decode_payload(frame.command, &frame.payload).expect("inv"));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn decode_max_frame(c: &mut Criterion) {
    let payload: Vec<u8> = (0..MAX_PAYLOAD_LEN).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    encode_frame(
        MAGIC,
        Command::new("block").expect("valid"),
        &payload,
        &mut wire,
    );
    let mut group = c.benchmark_group("decode_4mb_frame");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.sample_size(20);
    group.bench_function("one_read", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut decoder = FrameDecoder::new(MAGIC);
                black_box(decoder.decode(&mut buf).expect("valid").expect("complete"))
            },
            BatchSize::LargeInput,
        )
    });
    // As a socket delivers it: the header and first read, then the rest in 64 KiB pieces.
    // This includes the decoder's one exact-size allocation and the copies into it.
    group.bench_function("64k_reads", |b| {
        b.iter(|| {
            let mut decoder = FrameDecoder::new(MAGIC);
            let mut buf = BytesMut::with_capacity(65_536);
            let mut frame = None;
            for piece in wire.chunks(65_536) {
                buf.extend_from_slice(piece);
                if let Some(f) = decoder.decode(&mut buf).expect("valid") {
                    frame = Some(f);
                }
            }
            black_box(frame.expect("complete"))
        })
    });
    group.finish();
}

fn checksum_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for size in [37usize, 1_024, 65_536, MAX_PAYLOAD_LEN as usize] {
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        if size > 100_000 {
            group.sample_size(20);
        }
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| checksum(black_box(&data)))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_message");
    group.throughput(Throughput::Elements(1));
    let inv = inv_message(7);
    let version = version_message();
    for (name, msg) in [("inv", &inv), ("version", &version)] {
        // Reuse one output buffer, as the send path does, so the allocator is not measured.
        let mut out = Vec::with_capacity(HEADER_LEN + 1_024);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(encode_message(MAGIC, black_box(msg), &mut out))
            })
        });
    }
    group.finish();
    // Keep the frame sizes honest: a change in the encoder shows up here, not just in timings.
    let mut out = Vec::new();
    assert_eq!(encode_message(MAGIC, &inv, &mut out), 61);
}

criterion_group!(
    benches,
    decode_inv_stream,
    decode_max_frame,
    checksum_throughput,
    encode
);
criterion_main!(benches);
