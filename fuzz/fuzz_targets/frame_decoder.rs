//! Fuzzes the receive path of the v1 transport: bytes -> `FrameDecoder` -> `decode_payload`.
//!
//! The first input byte picks a mode, the next few how the stream is cut into reads:
//! - raw: the rest is fed as-is (finds anything wrong with header handling);
//! - repaired: before feeding, every complete frame found in the rest gets our magic and a
//!   correct checksum. A fuzzer cannot guess SHA256d, so without this almost every frame would
//!   stop at the checksum and the payload decoders would never be reached through framing;
//! - payload: the rest is one payload for a command chosen by the next byte, to hammer the
//!   message decoders directly.
//!
//! Beyond "does not panic" it checks what the decoder promises: the outcome does not depend on
//! how the stream was split into reads, the read buffer stays within one header plus one
//! maximum payload, and any payload that decodes can be re-encoded into one that decodes to
//! the same message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use peerpool_wire::checksum::checksum;
use peerpool_wire::frame::{HEADER_LEN, MAX_PAYLOAD_LEN};
use peerpool_wire::message::{decode_payload, encode_payload};
use peerpool_wire::{Command, Frame, FrameDecoder, FrameError, Magic, MessageKind};

const MAGIC: Magic = Magic::BITCOIN;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => stream(rest, false),
        1 => stream(rest, true),
        _ => {
            if let Some((&which, payload)) = rest.split_first() {
                let kind = MessageKind::ALL[usize::from(which) % MessageKind::COUNT];
                check_payload(kind, payload);
            }
        }
    }
});

fn stream(data: &[u8], repair: bool) {
    // Up to 8 read sizes of 1..=256 bytes, cycled.
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 8) + 1;
    if rest.len() < count {
        return;
    }
    let (sizes, wire) = rest.split_at(count);
    let sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s) + 1).collect();
    let mut wire = wire.to_vec();
    if repair {
        repair_frames(&mut wire);
    }

    let chunked = feed(&wire, &sizes);
    let whole = feed(&wire, &[usize::MAX]);
    assert_eq!(chunked, whole, "outcome depends on how the stream was read");

    for frame in chunked.iter().filter_map(|s| s.as_ref().ok()) {
        let kind = MessageKind::from_command(frame.command.as_str());
        check_payload_under(frame.command, kind, &frame.payload);
    }
}

/// Gives every complete frame in `wire` our magic and its correct checksum, in place.
fn repair_frames(wire: &mut [u8]) {
    let mut pos = 0;
    while wire.len() - pos >= HEADER_LEN {
        wire[pos..pos + 4].copy_from_slice(&MAGIC.to_bytes());
        let len_bytes: [u8; 4] = wire[pos + 16..pos + 20].try_into().expect("4 bytes");
        let len = u32::from_le_bytes(len_bytes) as usize;
        let start = pos + HEADER_LEN;
        if len > wire.len() - start {
            return;
        }
        let sum = checksum(&wire[start..start + len]);
        wire[pos + 20..pos + 24].copy_from_slice(&sum);
        pos = start + len;
    }
}

/// Feeds `wire` like the connection task: drain the decoder, then read at most what it says it
/// needs (capped by the next read size). Stops at a fatal error.
fn feed(wire: &[u8], sizes: &[usize]) -> Vec<Result<Frame, FrameError>> {
    let mut decoder = FrameDecoder::new(MAGIC);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut sizes = sizes.iter().copied().cycle();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.payload.len() <= MAX_PAYLOAD_LEN as usize);
                out.push(Ok(frame));
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let fatal = e.is_fatal();
                out.push(Err(e));
                if fatal {
                    return out;
                }
                continue;
            }
        }
        assert!(
            buf.capacity() <= HEADER_LEN + MAX_PAYLOAD_LEN as usize,
            "read buffer grew to {}",
            buf.capacity()
        );
        if pos == wire.len() {
            return out;
        }
        let needed = decoder.needed(buf.len());
        assert!(needed > 0, "decoder needs nothing but produced nothing");
        let take = needed
            .min(sizes.next().unwrap_or(usize::MAX))
            .min(wire.len() - pos);
        buf.extend_from_slice(&wire[pos..pos + take]);
        pos += take;
    }
}

fn check_payload(kind: MessageKind, payload: &[u8]) {
    let command = Command::new(kind.as_str()).expect("kind names are valid commands");
    check_payload_under(command, kind, payload);
}

fn check_payload_under(command: Command, kind: MessageKind, payload: &[u8]) {
    let Ok(msg) = decode_payload(command, payload) else {
        return;
    };
    assert_eq!(MessageKind::of(&msg), kind);
    let reencoded = encode_payload(&msg);
    match decode_payload(command, &reencoded) {
        Ok(again) => assert_eq!(again, msg, "{kind}: re-encoding changed the message"),
        Err(e) => panic!("{kind}: re-encoded payload refused: {e}"),
    }
}
