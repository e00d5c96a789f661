//! Hostile and broken input: garbage, truncation, oversized lengths, corrupted checksums and
//! commands. Each case pins the exact error variant, whether it is fatal, and — for the
//! non-fatal ones — that the very next frame still decodes, i.e. the decoder skipped exactly
//! the offending frame and no more.

mod common;

use bytes::BytesMut;
use common::{drain, feed_in_chunks, frame_bytes, magic, sample, Step};
use peerpool_wire::checksum::checksum;
use peerpool_wire::frame::{HEADER_LEN, MAX_PAYLOAD_LEN};
use peerpool_wire::message::{decode_payload, encode_message, encode_payload, DecodeError};
use peerpool_wire::{Command, FrameDecoder, FrameError, Magic, MessageKind, Network};

/// Offsets of the header fields.
const COMMAND: std::ops::Range<usize> = 4..16;
const LENGTH: std::ops::Range<usize> = 16..20;
const CHECKSUM: std::ops::Range<usize> = 20..24;

fn decode_all(wire: &[u8]) -> (Vec<Step>, BytesMut) {
    // Whole stream in one read: the decoder must still stop at each frame boundary.
    feed_in_chunks(wire, &[usize::MAX])
}

fn ok_commands(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .map(|f| f.command.to_string())
        .collect()
}

// ---------------------------------------------------------------- truncation

#[test]
fn a_partial_header_is_not_judged_and_consumes_nothing() {
    let wire = frame_bytes("ping", &7u64.to_le_bytes());
    let mut decoder = FrameDecoder::new(magic());
    for cut in 0..HEADER_LEN {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut, "bytes consumed before a whole header");
        assert!(!decoder.in_payload());
        assert_eq!(decoder.needed(buf.len()), HEADER_LEN - cut);
    }
}

#[test]
fn a_truncated_payload_waits_and_reports_what_is_missing() {
    let payload = vec![0x5a; 100];
    let wire = frame_bytes("tx", &payload);
    for cut in HEADER_LEN..wire.len() {
        let mut decoder = FrameDecoder::new(magic());
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
        assert!(decoder.in_payload());
        // The header was taken; only payload bytes remain buffered.
        assert_eq!(buf.len(), cut - HEADER_LEN);
        assert_eq!(decoder.needed(buf.len()), wire.len() - cut);
        // Asking again without new bytes changes nothing.
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), cut - HEADER_LEN);
        // The rest arrives: exactly the original frame comes out.
        buf.extend_from_slice(&wire[cut..]);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame.payload[..], &payload[..]);
        assert!(buf.is_empty());
    }
}

#[test]
fn an_empty_payload_frame_decodes_from_the_header_alone() {
    let wire = frame_bytes("verack", &[]);
    assert_eq!(&wire[CHECKSUM], &[0x5d, 0xf6, 0xe0, 0xe2]);
    let (steps, rest) = decode_all(&wire);
    assert_eq!(ok_commands(&steps), ["verack"]);
    assert!(rest.is_empty());
}

// ---------------------------------------------------------------- magic

#[test]
fn another_networks_magic_is_fatal_with_both_magics_reported() {
    let testnet = Network::Testnet3.params().magic;
    let mut wire = Vec::new();
    encode_message(testnet, &sample(MessageKind::Ping), &mut wire);
    let (steps, _) = decode_all(&wire);
    assert_eq!(steps.len(), 1);
    let err = steps[0].as_ref().unwrap_err();
    assert_eq!(
        err,
        &FrameError::BadMagic {
            expected: magic().to_bytes(),
            got: testnet.to_bytes(),
        }
    );
    assert!(err.is_fatal());
}

#[test]
fn garbage_is_refused_at_the_first_header_without_reading_further() {
    // Plain text (an HTTP request is what a misdirected client sends) is not a frame.
    let garbage = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    let mut decoder = FrameDecoder::new(magic());
    let mut buf = BytesMut::from(&garbage[..]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(
        err,
        FrameError::BadMagic {
            expected: magic().to_bytes(),
            got: *b"GET ",
        }
    );
    assert!(err.is_fatal());
    // Nothing consumed: the caller drops the connection, the decoder does not skip ahead.
    assert_eq!(&buf[..], &garbage[..]);
}

#[test]
fn bad_magic_wins_over_every_other_header_fault() {
    let mut wire = frame_bytes("ping", &[0; 8]);
    wire[0] = 0;
    wire[COMMAND].copy_from_slice(&[0xff; 12]);
    wire[LENGTH].copy_from_slice(&u32::MAX.to_le_bytes());
    let (steps, _) = decode_all(&wire[..HEADER_LEN]);
    assert!(matches!(steps[..], [Err(FrameError::BadMagic { .. })]));
}

// ---------------------------------------------------------------- length

#[test]
fn oversized_lengths_are_fatal_before_any_payload_arrives() {
    for length in [MAX_PAYLOAD_LEN + 1, 0x0100_0000, u32::MAX] {
        let mut header = frame_bytes("block", &[]);
        header[LENGTH].copy_from_slice(&length.to_le_bytes());
        let mut decoder = FrameDecoder::new(magic());
        let mut buf = BytesMut::from(&header[..]);
        let capacity = buf.capacity();
        let err = decoder.decode(&mut buf).unwrap_err();
        match &err {
            FrameError::Oversized { command, length: l } => {
                assert_eq!(*l, length);
                assert!(command.starts_with("block"), "{command:?}");
            }
            other => panic!("expected Oversized, got {other:?}"),
        }
        assert!(err.is_fatal());
        assert_eq!(
            buf.capacity(),
            capacity,
            "reserved memory for a refused length"
        );
        assert!(!decoder.in_payload());
    }
}

#[test]
fn oversized_wins_over_a_malformed_command() {
    // A malformed command alone is recoverable, but skipping a 4 GiB payload to recover is
    // not something we will do: the length check must come first and end the stream.
    let mut header = frame_bytes("ping", &[]);
    header[COMMAND].copy_from_slice(&[0x01; 12]);
    header[LENGTH].copy_from_slice(&(MAX_PAYLOAD_LEN + 1).to_le_bytes());
    let (steps, _) = decode_all(&header);
    assert!(matches!(
        steps[..],
        [Err(FrameError::Oversized { length, .. })] if length == MAX_PAYLOAD_LEN + 1
    ));
}

#[test]
fn a_payload_of_exactly_the_limit_is_a_frame() {
    let payload = vec![0u8; MAX_PAYLOAD_LEN as usize];
    let wire = frame_bytes("block", &payload);
    let (steps, rest) = decode_all(&wire);
    assert_eq!(ok_commands(&steps), ["block"]);
    assert_eq!(steps[0].as_ref().unwrap().payload.len(), payload.len());
    assert!(rest.is_empty());
}

// ---------------------------------------------------------------- checksum

#[test]
fn a_corrupted_payload_is_a_bad_checksum_and_only_that_frame_is_lost() {
    let payload = 0x1122_3344_5566_7788u64.to_le_bytes();
    let mut wire = frame_bytes("ping", &payload);
    wire[HEADER_LEN + 3] ^= 0x80; // one bit flipped in transit
    let corrupted = wire[HEADER_LEN..].to_vec();
    wire.extend(frame_bytes("pong", &payload));

    let (steps, rest) = decode_all(&wire);
    assert_eq!(steps.len(), 2);
    let err = steps[0].as_ref().unwrap_err();
    assert_eq!(
        err,
        &FrameError::BadChecksum {
            command: Command::new("ping").unwrap(),
            expected: checksum(&payload),
            got: checksum(&corrupted),
        }
    );
    assert!(!err.is_fatal());
    assert_eq!(ok_commands(&steps), ["pong"]);
    assert!(rest.is_empty());
}

#[test]
fn a_corrupted_checksum_field_is_reported_as_received() {
    let mut wire = frame_bytes("verack", &[]);
    wire[CHECKSUM].copy_from_slice(&[0, 0, 0, 0]);
    wire.extend(frame_bytes("verack", &[]));
    let (steps, _) = decode_all(&wire);
    assert_eq!(
        steps[0],
        Err(FrameError::BadChecksum {
            command: Command::new("verack").unwrap(),
            expected: [0, 0, 0, 0],
            got: [0x5d, 0xf6, 0xe0, 0xe2],
        })
    );
    assert_eq!(ok_commands(&steps), ["verack"]);
}

// ---------------------------------------------------------------- command

#[test]
fn malformed_commands_are_bad_command_and_the_stream_resynchronises() {
    let mut cases: Vec<[u8; 12]> = vec![
        [0; 12],                    // empty name
        *b"p\0ng\0\0\0\0\0\0\0\0",  // NUL inside the name
        *b"ping\0\0\0\0\0\0\0x",    // non-NUL after the padding started
        *b"ping\x01\0\0\0\0\0\0\0", // control character
        *b"ping\x7f\0\0\0\0\0\0\0", // DEL is not printable
    ];
    let mut high = *b"ping\0\0\0\0\0\0\0\0";
    high[1] = 0xe9; // Latin-1 byte: not ASCII
    cases.push(high);

    for raw in cases {
        let payload = [0xab; 5];
        let mut wire = frame_bytes("ping", &payload);
        wire[COMMAND].copy_from_slice(&raw);
        wire.extend(frame_bytes("getaddr", &[]));
        // Split inside the bad frame's payload too: the command is judged only once the
        // payload is complete, so the skip must span reads.
        for chunks in [&[usize::MAX][..], &[HEADER_LEN + 2, 1]] {
            let (steps, rest) = feed_in_chunks(&wire, chunks);
            assert_eq!(steps.len(), 2, "{raw:?}");
            let err = steps[0].as_ref().unwrap_err();
            assert!(
                matches!(err, FrameError::BadCommand { .. }),
                "{raw:?}: {err:?}"
            );
            assert!(!err.is_fatal());
            assert_eq!(ok_commands(&steps), ["getaddr"], "{raw:?}");
            assert!(rest.is_empty());
        }
    }
}

#[test]
fn a_skipped_frame_is_skipped_whole_even_if_its_payload_looks_like_a_frame() {
    // The bad frame's payload is itself a complete, valid `ping` frame. If the decoder
    // resynchronised by scanning for the magic instead of skipping by length, that inner ping
    // would surface as a message the peer never sent.
    let inner = frame_bytes("ping", &1u64.to_le_bytes());
    for corrupt in ["command", "checksum"] {
        let mut wire = frame_bytes("alert", &inner);
        match corrupt {
            "command" => wire[4] = 0x01,
            _ => wire[20] ^= 0xff,
        }
        wire.extend(frame_bytes("pong", &2u64.to_le_bytes()));
        let (steps, rest) = decode_all(&wire);
        assert_eq!(steps.len(), 2, "{corrupt}");
        assert!(steps[0].is_err(), "{corrupt}");
        assert_eq!(ok_commands(&steps), ["pong"], "{corrupt}");
        assert!(rest.is_empty());
    }
}

#[test]
fn many_non_fatal_errors_in_a_row_never_desynchronise() {
    // Alternate corrupt and good frames of varied sizes, read in awkward pieces.
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50u8 {
        let payload = vec![i; usize::from(i) * 3];
        let mut frame = frame_bytes("filteradd", &payload);
        if i % 2 == 0 {
            if i % 4 == 0 {
                frame[CHECKSUM.start] ^= 1;
            } else {
                frame[COMMAND.start + 3] = 0x07;
            }
        } else {
            expected.push(payload);
        }
        wire.extend(frame);
    }
    let (steps, rest) = feed_in_chunks(&wire, &[5, 31, 2, 64]);
    assert_eq!(steps.len(), 50);
    assert!(steps.iter().all(|s| match s {
        Err(e) => !e.is_fatal(),
        Ok(_) => true,
    }));
    let payloads: Vec<Vec<u8>> = steps
        .into_iter()
        .filter_map(Result::ok)
        .map(|f| f.payload.to_vec())
        .collect();
    assert_eq!(payloads, expected);
    assert!(rest.is_empty());
}

#[test]
fn a_decoder_for_one_magic_never_accepts_another() {
    let magics = [
        Magic::BITCOIN,
        Magic::TESTNET3,
        Magic::SIGNET,
        Magic::REGTEST,
        Network::Testnet4.params().magic,
    ];
    for ours in magics {
        for theirs in magics {
            let mut wire = Vec::new();
            encode_message(theirs, &sample(MessageKind::Verack), &mut wire);
            let mut decoder = FrameDecoder::new(ours);
            let result = decoder.decode(&mut BytesMut::from(&wire[..]));
            if ours == theirs {
                assert!(matches!(result, Ok(Some(_))));
            } else {
                assert!(matches!(result, Err(FrameError::BadMagic { .. })));
            }
        }
    }
}

#[test]
fn decoding_stops_after_a_fatal_error_mid_stream() {
    let mut wire = frame_bytes("ping", &[1; 8]);
    let mut bad = frame_bytes("pong", &[1; 8]);
    bad[LENGTH].copy_from_slice(&u32::MAX.to_le_bytes());
    wire.extend(bad);
    wire.extend(frame_bytes("verack", &[]));
    let mut decoder = FrameDecoder::new(magic());
    let mut buf = BytesMut::from(&wire[..]);
    let mut steps = Vec::new();
    assert!(
        drain(&mut decoder, &mut buf, &mut steps),
        "fatal error not reported"
    );
    assert_eq!(ok_commands(&steps), ["ping"]);
    assert!(matches!(
        steps.last(),
        Some(Err(FrameError::Oversized {
            length: u32::MAX,
            ..
        }))
    ));
}

// ---------------------------------------------------------------- payloads

#[test]
fn trailing_bytes_after_a_fixed_layout_payload_are_counted() {
    let cases = [
        (MessageKind::Ping, 3usize),
        (MessageKind::FeeFilter, 1),
        (MessageKind::SendCmpct, 9),
        (MessageKind::Inv, 36),
        (MessageKind::Headers, 2),
        (MessageKind::Tx, 1),
    ];
    for (kind, extra) in cases {
        let mut payload = encode_payload(&sample(kind));
        payload.extend(vec![0u8; extra]);
        let err = decode_payload(Command::new(kind.as_str()).unwrap(), &payload).unwrap_err();
        match err {
            DecodeError::TrailingBytes { command, extra: e } => {
                assert_eq!(command, kind.as_str());
                assert_eq!(e, extra, "{kind}");
            }
            other => panic!("{kind}: expected TrailingBytes, got {other:?}"),
        }
    }
}

#[test]
fn a_headers_message_carrying_transactions_is_malformed() {
    // `headers` entries are block headers followed by a zero tx count; a non-zero count is
    // how a peer would try to smuggle a block through the headers path.
    let mut payload = encode_payload(&sample(MessageKind::Headers));
    let first_count = 1 + 80; // after the list's CompactSize and the first header
    payload[first_count] = 1;
    let err = decode_payload(Command::new("headers").unwrap(), &payload).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                command: "headers",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_headers_count_larger_than_the_payload_is_refused_without_a_huge_allocation() {
    // CompactSize 0xffffffff headers announced, none present. The decoder sizes its vector by
    // what the payload can hold, so this is an ordinary error and not an allocation failure.
    let payload = [0xfe, 0xff, 0xff, 0xff, 0xff];
    let err = decode_payload(Command::new("headers").unwrap(), &payload).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Malformed {
            command: "headers",
            ..
        }
    ));
}

#[test]
fn a_user_agent_that_is_not_utf8_is_replaced_but_stays_within_the_limit() {
    use peerpool_wire::message::MAX_SUBVERSION_LENGTH;
    let base = match sample(MessageKind::Version) {
        peerpool_wire::NetworkMessage::Version(v) => v,
        _ => unreachable!(),
    };
    let command = Command::new("version").unwrap();
    // Raw user agents of the maximum length: invalid bytes only, a valid prefix then invalid
    // bytes (so the cut lands mid-way through a replacement character), and valid text.
    let mut mixed = b"/Satoshi:0.1/".to_vec();
    mixed.resize(MAX_SUBVERSION_LENGTH, 0xff);
    let cases = [
        vec![0xffu8; MAX_SUBVERSION_LENGTH],
        mixed,
        vec![b'a'; MAX_SUBVERSION_LENGTH],
    ];
    for raw in cases {
        // Encode with a placeholder of the same length, then swap the raw bytes in, since a
        // `String` cannot hold invalid UTF-8.
        let mut v = base.clone();
        v.user_agent = "x".repeat(raw.len());
        let mut payload = encode_payload(&peerpool_wire::NetworkMessage::Version(v));
        let at = 80 + 3; // after nonce, then the 3-byte CompactSize of 256
        payload[at..at + raw.len()].copy_from_slice(&raw);

        let msg = decode_payload(command, &payload).unwrap();
        let peerpool_wire::NetworkMessage::Version(got) = &msg else {
            panic!("not a version: {msg:?}")
        };
        assert!(
            got.user_agent.len() <= MAX_SUBVERSION_LENGTH,
            "{}",
            got.user_agent.len()
        );
        assert!(got
            .user_agent
            .starts_with(&String::from_utf8_lossy(&raw[..13])[..]));
        if raw.iter().all(u8::is_ascii) {
            assert_eq!(got.user_agent.as_bytes(), &raw[..]);
        } else {
            assert!(got.user_agent.ends_with('\u{fffd}'));
        }
        // What we decoded, we can send back in a form we (and Core) accept.
        let again = decode_payload(command, &encode_payload(&msg)).unwrap();
        assert_eq!(again, msg);
    }
}

#[test]
fn an_unknown_command_keeps_its_payload_verbatim() {
    let payload: Vec<u8> = (0..=255u8).collect();
    let msg = decode_payload(Command::new("sendtxrcncl").unwrap(), &payload).unwrap();
    assert_eq!(MessageKind::of(&msg), MessageKind::Unknown);
    match msg {
        peerpool_wire::NetworkMessage::Unknown {
            command,
            payload: p,
        } => {
            assert_eq!(command.as_ref(), "sendtxrcncl");
            assert_eq!(p, payload);
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
}
