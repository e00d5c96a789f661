//! Property tests for the codec. The inputs are shaped to get past the first check often (our
//! magic, plausible lengths, valid frames with one corrupted byte), since uniformly random
//! bytes almost always stop at the magic and would exercise nothing else.
//!
//! Case counts are kept modest so the crate's whole test suite runs in seconds; the fuzz target
//! in `fuzz/` is the place for long runs.

mod common;

use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{BlockHash, Txid};
use common::{all_samples, feed_in_chunks, frame_bytes, magic, sample, Step};
use peerpool_wire::frame::{HEADER_LEN, MAX_PAYLOAD_LEN};
use peerpool_wire::message::{command_of, decode_payload, encode_payload};
use peerpool_wire::{Command, MessageKind, NetworkMessage};
use proptest::prelude::*;
use proptest::sample::Index;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Shrinking a failure of a streaming decoder can take long; the first few hundred
        // steps already give a readable counterexample.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// A command name `Command::new` accepts: 1 to 12 printable ASCII characters.
fn command_name() -> impl Strategy<Value = String> {
    prop_oneof![
        // Known commands, so payload decoding is reached with the right kind.
        (0..MessageKind::COUNT - 1).prop_map(|i| MessageKind::ALL[i].as_str().to_owned()),
        "[ -~]{1,12}",
    ]
}

/// Payload lengths a header may announce: mostly small, plus the limit and beyond.
fn announced_length() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 0..300u32,
        1 => Just(MAX_PAYLOAD_LEN),
        1 => Just(MAX_PAYLOAD_LEN + 1),
        1 => MAX_PAYLOAD_LEN - 100..=MAX_PAYLOAD_LEN,
        1 => any::<u32>(),
    ]
}

/// One piece of a hostile stream.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // A valid frame.
        (command_name(), prop::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(c, p)| frame_bytes(&c, &p)),
        // A valid frame with one byte changed, anywhere (magic, command, length, checksum or
        // payload).
        (
            command_name(),
            prop::collection::vec(any::<u8>(), 0..200),
            any::<Index>(),
            1..=255u8,
        )
            .prop_map(|(c, p, at, flip)| {
                let mut f = frame_bytes(&c, &p);
                let i = at.index(f.len());
                f[i] ^= flip;
                f
            }),
        // A header with our magic and arbitrary other fields, followed by nothing: what comes
        // next in the stream is read as its payload.
        (any::<[u8; 12]>(), announced_length(), any::<[u8; 4]>()).prop_map(
            |(command, length, sum)| {
                let mut h = magic().to_bytes().to_vec();
                h.extend_from_slice(&command);
                h.extend_from_slice(&length.to_le_bytes());
                h.extend_from_slice(&sum);
                h
            }
        ),
        // Noise.
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(segment(), 0..8).prop_map(|s| s.concat())
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..100usize, 1..12)
}

/// What must hold of any decoding run, whatever the input: frames are within the limit and
/// carry a valid command, and a fatal error is always the last thing reported.
fn assert_well_formed(steps: &[Step]) {
    for (i, step) in steps.iter().enumerate() {
        match step {
            Ok(frame) => {
                assert!(frame.payload.len() <= MAX_PAYLOAD_LEN as usize);
                assert!(Command::from_wire(frame.command.to_bytes()).is_ok());
            }
            // Only the last step may be fatal: decoding stops there.
            Err(e) if e.is_fatal() => assert_eq!(i, steps.len() - 1, "{e}"),
            Err(_) => {}
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// (a) Any bytes, in any chunking: no panic, and the outcome does not depend on how the
    /// bytes were split into reads — a decoder whose result depends on TCP segmentation is
    /// broken even when it does not crash.
    #[test]
    fn any_stream_decodes_the_same_under_any_chunking(wire in stream(), chunks in chunk_sizes()) {
        let (whole, _) = feed_in_chunks(&wire, &[usize::MAX]);
        let (chunked, _) = feed_in_chunks(&wire, &chunks);
        let (bytewise, _) = feed_in_chunks(&wire, &[1]);
        assert_well_formed(&whole);
        prop_assert_eq!(&chunked, &whole);
        prop_assert_eq!(&bytewise, &whole);
    }

    /// (a) Uniform noise too, including the rare stream that starts with our magic.
    #[test]
    fn pure_noise_never_panics(
        noise in prop::collection::vec(any::<u8>(), 0..512),
        with_magic in any::<bool>(),
        chunks in chunk_sizes(),
    ) {
        let mut wire = if with_magic { magic().to_bytes().to_vec() } else { Vec::new() };
        wire.extend(noise);
        let (steps, _) = feed_in_chunks(&wire, &chunks);
        assert_well_formed(&steps);
    }

    /// (c) Valid frames, split anywhere, come out exactly as they went in, and nothing is left
    /// over or half-read.
    #[test]
    fn valid_frames_survive_any_split(
        frames in prop::collection::vec(
            (command_name(), prop::collection::vec(any::<u8>(), 0..300)),
            0..10,
        ),
        chunks in chunk_sizes(),
    ) {
        let wire: Vec<u8> = frames.iter().flat_map(|(c, p)| frame_bytes(c, p)).collect();
        let (steps, rest) = feed_in_chunks(&wire, &chunks);
        prop_assert!(rest.is_empty());
        prop_assert_eq!(steps.len(), frames.len());
        for (step, (command, payload)) in steps.iter().zip(&frames) {
            let frame = step.as_ref().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(frame.command.as_str(), command.as_str());
            prop_assert_eq!(&frame.payload[..], &payload[..]);
        }
    }

    /// (c) Cut points chosen directly (rather than chunk sizes): two arbitrary cuts into
    /// a stream of real messages of every kind.
    #[test]
    fn real_messages_survive_two_arbitrary_cuts(a in any::<Index>(), b in any::<Index>()) {
        let samples = all_samples();
        let mut wire = Vec::new();
        for (_, msg) in &samples {
            peerpool_wire::message::encode_message(magic(), msg, &mut wire);
        }
        let (x, y) = {
            let (x, y) = (a.index(wire.len() + 1), b.index(wire.len() + 1));
            (x.min(y), x.max(y))
        };
        let chunks = [x, y - x, wire.len() - y];
        let (steps, rest) = feed_in_chunks(&wire, &chunks);
        prop_assert!(rest.is_empty());
        prop_assert_eq!(steps.len(), samples.len());
        for (step, (_, msg)) in steps.iter().zip(&samples) {
            let frame = step.as_ref().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&decode_payload(frame.command, &frame.payload).unwrap(), msg);
        }
    }

    /// (d) Arbitrary payload bytes under every command: an error or a message, never a
    /// panic; and a message that decoded re-encodes to something that decodes to itself.
    #[test]
    fn arbitrary_payloads_never_panic(
        kind in (0..MessageKind::COUNT).prop_map(|i| MessageKind::ALL[i]),
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        check_payload(kind, &payload)?;
    }

    /// (d) The same with payloads that start out valid and then have bytes overwritten, so the
    /// decoders get deep into their structures before meeting the damage.
    #[test]
    fn mutated_valid_payloads_never_panic(
        kind in (0..MessageKind::COUNT).prop_map(|i| MessageKind::ALL[i]),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cut in any::<Option<Index>>(),
    ) {
        let mut payload = encode_payload(&sample(kind));
        if !payload.is_empty() {
            for (at, byte) in edits {
                let i = at.index(payload.len());
                payload[i] = byte;
            }
        }
        if let Some(cut) = cut {
            payload.truncate(cut.index(payload.len() + 1));
        }
        check_payload(kind, &payload)?;
    }

    /// (e) For generated lists (not just the fixtures): any strict prefix of a list message's
    /// payload is an error.
    #[test]
    fn truncated_generated_lists_are_errors(
        hashes in prop::collection::vec(any::<[u8; 32]>(), 1..40),
        as_blocks in any::<bool>(),
        cut in any::<Index>(),
    ) {
        use bitcoin::hashes::Hash;
        let items: Vec<Inventory> = hashes
            .iter()
            .map(|h| if as_blocks {
                Inventory::Block(BlockHash::from_byte_array(*h))
            } else {
                Inventory::Transaction(Txid::from_byte_array(*h))
            })
            .collect();
        let msg = NetworkMessage::Inv(items);
        let payload = encode_payload(&msg);
        let command = command_of(&msg);
        prop_assert_eq!(&decode_payload(command, &payload).unwrap(), &msg);
        let cut = cut.index(payload.len());
        prop_assert!(decode_payload(command, &payload[..cut]).is_err());
    }
}

fn check_payload(kind: MessageKind, payload: &[u8]) -> Result<(), TestCaseError> {
    let command = Command::new(kind.as_str()).expect("kind names are valid commands");
    let Ok(msg) = decode_payload(command, payload) else {
        return Ok(());
    };
    prop_assert_eq!(MessageKind::of(&msg), kind);
    // Whatever we accept, we can write back out in a form we accept again. (Not necessarily
    // the same bytes: `version` fills in omitted fields, for one.)
    let again = decode_payload(command, &encode_payload(&msg))
        .map_err(|e| TestCaseError::fail(format!("{kind}: re-encoded form refused: {e}")))?;
    prop_assert_eq!(again, msg);
    Ok(())
}

/// (e) Every strict prefix of every fixture's payload is refused, exhaustively rather than by
/// sampling since the fixtures are small. `version` is the documented exception: Bitcoin Core
/// accepts it cut after any whole field from the receiver address on, so exactly those cuts
/// must succeed and every other one must fail.
#[test]
fn every_truncation_of_every_kind_is_an_error() {
    for (kind, msg) in all_samples() {
        let payload = encode_payload(&msg);
        let command = command_of(&msg);
        let accepted: Vec<usize> = (0..payload.len())
            .filter(|&cut| decode_payload(command, &payload[..cut]).is_ok())
            .collect();
        match kind {
            MessageKind::Version => {
                let ua_len = match &msg {
                    NetworkMessage::Version(v) => v.user_agent.len(),
                    _ => unreachable!(),
                };
                // version(4) services(8) timestamp(8) receiver(26) | sender(26) | nonce(8) |
                // user agent(1 + len) | start height(4) | relay(1)
                let after_receiver = 46;
                let after_sender = after_receiver + 26;
                let after_nonce = after_sender + 8;
                let after_agent = after_nonce + 1 + ua_len;
                let after_height = after_agent + 4;
                assert_eq!(after_height + 1, payload.len());
                assert_eq!(
                    accepted,
                    [
                        after_receiver,
                        after_sender,
                        after_nonce,
                        after_agent,
                        after_height
                    ],
                );
            }
            // Its payload is opaque to us: every prefix is simply a shorter opaque payload.
            MessageKind::Unknown => assert_eq!(accepted.len(), payload.len()),
            _ => assert!(accepted.is_empty(), "{kind}: accepted cuts {accepted:?}"),
        }
    }
}

/// The commands whose payload is empty cannot be truncated; make sure the exhaustive test
/// above is not vacuous for more kinds than those.
#[test]
fn only_signalling_kinds_have_empty_payloads() {
    let empty: Vec<&str> = all_samples()
        .iter()
        .filter(|(_, m)| encode_payload(m).is_empty())
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        empty,
        [
            "verack",
            "sendaddrv2",
            "mempool",
            "sendheaders",
            "getaddr",
            "filterclear",
            "wtxidrelay"
        ]
    );
}

/// The decoder's bookkeeping of what it still needs agrees with the frame layout.
#[test]
fn needed_counts_down_to_a_frame() {
    let wire = frame_bytes("inv", &[7u8; 37]);
    let mut decoder = peerpool_wire::FrameDecoder::new(magic());
    let mut buf = bytes::BytesMut::new();
    for (i, byte) in wire.iter().enumerate() {
        let needed = decoder.needed(buf.len());
        let expected = if i < HEADER_LEN {
            HEADER_LEN - i
        } else {
            wire.len() - i
        };
        assert_eq!(needed, expected, "before byte {i}");
        buf.extend_from_slice(&[*byte]);
        if let Some(frame) = decoder.decode(&mut buf).unwrap() {
            assert_eq!(i, wire.len() - 1);
            assert_eq!(frame.payload.len(), 37);
        }
    }
    assert!(!decoder.in_payload());
}
