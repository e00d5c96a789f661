//! Every message kind survives encode -> frame -> decode unchanged, and our encoder agrees byte
//! for byte with the `bitcoin` crate's own `RawNetworkMessage` serialisation, which is an
//! independent implementation of the same header layout and checksum.

mod common;

use std::collections::BTreeSet;

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::p2p::message::RawNetworkMessage;
use bytes::BytesMut;
use common::{all_samples, feed_in_chunks, magic};
use peerpool_wire::frame::HEADER_LEN;
use peerpool_wire::message::{command_of, decode_payload, encode_message, encode_payload};
use peerpool_wire::{FrameDecoder, MessageKind, NetworkMessage};

/// The command a kind's fixture travels under: its own name, or the fixture's invented one.
fn expected_command(kind: MessageKind, msg: &NetworkMessage) -> String {
    match msg {
        NetworkMessage::Unknown { command, .. } => command.to_string(),
        _ => kind.as_str().to_owned(),
    }
}

#[test]
fn the_kind_list_is_the_documented_protocol_surface() {
    // Written out by hand rather than derived from the crate, so that dropping or renaming a
    // kind in `kinds!` fails here instead of silently shrinking the round-trip coverage.
    let documented = [
        "version",
        "verack",
        "addr",
        "addrv2",
        "sendaddrv2",
        "inv",
        "getdata",
        "notfound",
        "getblocks",
        "getheaders",
        "mempool",
        "tx",
        "block",
        "headers",
        "sendheaders",
        "getaddr",
        "ping",
        "pong",
        "merkleblock",
        "filterload",
        "filteradd",
        "filterclear",
        "getcfilters",
        "cfilter",
        "getcfheaders",
        "cfheaders",
        "getcfcheckpt",
        "cfcheckpt",
        "sendcmpct",
        "cmpctblock",
        "getblocktxn",
        "blocktxn",
        "alert",
        "reject",
        "feefilter",
        "wtxidrelay",
        "feature",
    ];
    let known: Vec<&str> = MessageKind::ALL
        .iter()
        .filter(|k| **k != MessageKind::Unknown)
        .map(|k| k.as_str())
        .collect();
    assert_eq!(known, documented);
    assert_eq!(MessageKind::ALL.last(), Some(&MessageKind::Unknown));
    assert_eq!(MessageKind::COUNT, documented.len() + 1);
}

#[test]
fn fixtures_cover_every_kind_once() {
    let samples = all_samples();
    let kinds: BTreeSet<MessageKind> = samples.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds.len(), MessageKind::COUNT);
    for (kind, msg) in &samples {
        assert_eq!(
            MessageKind::of(msg),
            *kind,
            "fixture for {kind} has another kind"
        );
    }
}

#[test]
fn every_kind_round_trips_through_one_frame() {
    for (kind, msg) in all_samples() {
        let mut wire = Vec::new();
        let written = encode_message(magic(), &msg, &mut wire);
        assert_eq!(written, wire.len(), "{kind}: reported frame length");

        let mut buf = BytesMut::from(&wire[..]);
        let mut decoder = FrameDecoder::new(magic());
        let frame = decoder
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("{kind}: frame refused: {e}"))
            .unwrap_or_else(|| panic!("{kind}: complete frame not returned"));
        assert!(buf.is_empty(), "{kind}: bytes left after the frame");
        assert!(!decoder.in_payload(), "{kind}: decoder still mid-frame");
        assert_eq!(frame.command.as_str(), expected_command(kind, &msg));
        assert_eq!(frame.command, command_of(&msg));
        assert_eq!(frame.wire_len(), wire.len());
        assert_eq!(
            &frame.payload[..],
            &encode_payload(&msg)[..],
            "{kind}: payload"
        );

        let back = decode_payload(frame.command, &frame.payload)
            .unwrap_or_else(|e| panic!("{kind}: payload refused: {e}"));
        assert_eq!(back, msg, "{kind}: decoded message differs");
    }
}

#[test]
fn encoding_matches_the_bitcoin_crate_byte_for_byte() {
    for (kind, msg) in all_samples() {
        let mut ours = Vec::new();
        encode_message(magic(), &msg, &mut ours);
        let theirs = serialize(&RawNetworkMessage::new(magic(), msg.clone()));
        assert_eq!(ours, theirs, "{kind}: frames differ");

        // And the other direction: the `bitcoin` crate's decoder reads our frame back.
        let raw: RawNetworkMessage =
            deserialize(&ours).unwrap_or_else(|e| panic!("{kind}: bitcoin refuses our frame: {e}"));
        assert_eq!(raw.magic(), &magic());
        assert_eq!(raw.payload(), &msg, "{kind}");
    }
}

#[test]
fn every_kind_round_trips_in_one_stream_under_any_chunking() {
    let samples = all_samples();
    let mut wire = Vec::new();
    for (_, msg) in &samples {
        encode_message(magic(), msg, &mut wire);
    }
    // One byte at a time, the header length exactly, sizes that straddle header/payload
    // boundaries, and the whole stream at once.
    let chunkings: [&[usize]; 5] = [&[1], &[HEADER_LEN], &[7, 13, 1, 40], &[1000], &[usize::MAX]];
    for chunks in chunkings {
        let (steps, rest) = feed_in_chunks(&wire, chunks);
        assert!(rest.is_empty(), "chunks {chunks:?}: leftover bytes");
        assert_eq!(steps.len(), samples.len(), "chunks {chunks:?}");
        for ((kind, msg), step) in samples.iter().zip(steps) {
            let frame = step.unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(&decode_payload(frame.command, &frame.payload).unwrap(), msg);
        }
    }
}

#[test]
fn decoding_then_reencoding_is_byte_identical_for_every_fixture() {
    // The runtime relays raw bytes rather than re-encoding, but anything that does re-encode a
    // decoded message (tests, tools) relies on this for the fixtures' shapes.
    for (kind, msg) in all_samples() {
        let payload = encode_payload(&msg);
        let back = decode_payload(command_of(&msg), &payload).unwrap();
        assert_eq!(encode_payload(&back), payload, "{kind}");
    }
}
