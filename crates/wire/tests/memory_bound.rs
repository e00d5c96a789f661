//! (b) The decoder's memory promise: whatever a peer sends, decoding never asks the allocator
//! for more than one header plus one maximum payload, and never leaves the read buffer with
//! more capacity than that.
//!
//! `BytesMut::capacity` alone cannot show this: it counts from the current read position, so
//! an allocation that still carries already-consumed bytes in front looks smaller than it is.
//! This test binary therefore installs a global allocator that records the largest single
//! request made on the current thread while a `decode` call is running. Being an integration
//! test, the allocator is confined to this one binary; the library itself stays free of
//! unsafe code. Recording is per thread so tests running in parallel do not see each other.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use common::{frame_bytes, magic};
use peerpool_wire::frame::{HEADER_LEN, MAX_PAYLOAD_LEN};
use peerpool_wire::{Frame, FrameDecoder, FrameError};
use proptest::prelude::*;

/// The most one decoder may ever hold: a header and the largest payload.
const BOUND: usize = HEADER_LEN + MAX_PAYLOAD_LEN as usize;

struct Recording;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations can happen while a thread's locals are being torn down.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only reads
// the requested size and touches const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Recording = Recording;

/// One `decode` call, returning also the largest allocation it requested.
fn decode_recorded(
    decoder: &mut FrameDecoder,
    buf: &mut BytesMut,
) -> (Result<Option<Frame>, FrameError>, usize) {
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let result = decoder.decode(buf);
    ARMED.with(|a| a.set(false));
    (result, LARGEST.with(Cell::get))
}

/// Drives a decoder the way the connection task does: decode until it wants more, then read
/// at most what it says it needs (and at most `read_size`), so the buffer only ever holds the
/// frame in progress. Checks the memory bound around every call.
///
/// `keep_frames` decides whether decoded payloads stay alive (a relaying caller) or are
/// dropped at once; the two leave the shared buffer in different states, and the allocator
/// takes different paths for each.
fn run(wire: &[u8], read_sizes: &[usize], keep_frames: bool) -> Result<Vec<Frame>, TestCaseError> {
    let mut decoder = FrameDecoder::new(magic());
    let mut buf = BytesMut::new();
    let mut kept = Vec::new();
    let mut pos = 0;
    let mut sizes = read_sizes.iter().copied().cycle();
    loop {
        let before = buf.capacity();
        let (result, largest) = decode_recorded(&mut decoder, &mut buf);
        prop_assert!(
            largest <= BOUND,
            "decode asked the allocator for {largest} bytes (bound {BOUND})"
        );
        prop_assert!(
            buf.capacity() <= before.max(BOUND),
            "decode grew the buffer from {before} to {} bytes",
            buf.capacity()
        );
        match result {
            Ok(Some(frame)) => {
                if keep_frames {
                    kept.push(frame);
                }
                continue;
            }
            Ok(None) => {}
            Err(e) if e.is_fatal() => return Ok(kept),
            Err(_) => continue,
        }
        if pos == wire.len() {
            return Ok(kept);
        }
        let want = decoder.needed(buf.len());
        prop_assert!(want > 0, "decoder wants nothing yet returned no frame");
        // Inside a payload, as the connection task does: no more than the room the decoder
        // made (it grows the buffer with what has arrived).
        let room = if decoder.in_payload() {
            (buf.capacity() - buf.len()).max(1)
        } else {
            usize::MAX
        };
        let take = want
            .min(room)
            .min(sizes.next().unwrap_or(usize::MAX).max(1))
            .min(wire.len() - pos);
        buf.extend_from_slice(&wire[pos..pos + take]);
        pos += take;
        prop_assert!(
            buf.capacity() <= BOUND,
            "buffer capacity {}",
            buf.capacity()
        );
    }
}

/// A header with our magic announcing `length` bytes, without its payload.
fn bare_header(length: u32) -> Vec<u8> {
    let mut h = frame_bytes("block", &[]);
    h[16..20].copy_from_slice(&length.to_le_bytes());
    h
}

fn hostile_segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Lengths anywhere in u32, the interesting ones often.
        3 => prop_oneof![
            Just(MAX_PAYLOAD_LEN),
            Just(MAX_PAYLOAD_LEN + 1),
            Just(u32::MAX),
            0..=MAX_PAYLOAD_LEN,
            any::<u32>(),
        ]
        .prop_map(bare_header),
        2 => (
            "[a-z]{1,12}",
            prop::collection::vec(any::<u8>(), 0..2_000),
        )
            .prop_map(|(c, p)| frame_bytes(&c, &p)),
        1 => prop::collection::vec(any::<u8>(), 0..100),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Headers announcing any length, including ones that are never followed by their payload
    /// and ones beyond the limit, never make the decoder hold more than the bound.
    #[test]
    fn hostile_streams_stay_within_the_bound(
        segments in prop::collection::vec(hostile_segment(), 1..6),
        read_sizes in prop::collection::vec(1..5_000usize, 1..6),
        keep_frames in any::<bool>(),
    ) {
        run(&segments.concat(), &read_sizes, keep_frames)?;
    }
}

/// Large frames back to back, with sizes chosen so that a doubling growth strategy, or an
/// allocation that keeps the previous frame's consumed bytes in front, goes over the bound
/// (before the fix in `FrameDecoder::decode`, the first shape made it allocate 6 MB). Real
/// multi-MB payloads are hashed here, so only a few shapes and feeding patterns.
#[test]
fn large_frames_back_to_back_stay_within_the_bound() {
    let max = MAX_PAYLOAD_LEN as usize;
    let shapes: [&[usize]; 2] = [&[3_000_000, max], &[2_100_000, 10, max - 1]];
    // (keep decoded payloads alive, read size): a relaying caller and a consuming one, in
    // socket-sized reads; and everything available at once.
    let feeds = [(false, 65_536), (true, 65_536), (false, usize::MAX)];
    for lengths in shapes {
        let wire: Vec<u8> = lengths
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| frame_bytes("block", &vec![i as u8; n]))
            .collect();
        for (keep_frames, read_size) in feeds {
            let frames = run(&wire, &[read_size], keep_frames).unwrap_or_else(|e| {
                panic!("lengths {lengths:?}, keep {keep_frames}, read {read_size}: {e}")
            });
            if keep_frames {
                let got: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
                assert_eq!(got, lengths);
            }
        }
    }
}

/// An announced payload is reserved as it arrives: never more than twice what has arrived
/// (at least 64 KiB), never beyond its length, and a few doublings in all.
#[test]
fn a_slowly_arriving_payload_is_reserved_as_it_arrives() {
    let payload = vec![0x42u8; 1_000_000];
    let wire = frame_bytes("block", &payload);
    let mut decoder = FrameDecoder::new(magic());
    let mut buf = BytesMut::from(&wire[..HEADER_LEN]);
    let (result, _) = decode_recorded(&mut decoder, &mut buf);
    assert_eq!(result, Ok(None));
    assert!(buf.capacity() <= 64 * 1024, "{}", buf.capacity());
    let mut allocations = 0;
    let mut pos = HEADER_LEN;
    while pos < wire.len() {
        // Reads of at most 10,000 bytes into the room the decoder made, as the connection
        // task reads.
        let take = (buf.capacity() - buf.len())
            .clamp(1, 10_000)
            .min(wire.len() - pos);
        buf.extend_from_slice(&wire[pos..pos + take]);
        pos += take;
        let arrived = buf.len();
        let (result, largest) = decode_recorded(&mut decoder, &mut buf);
        match result {
            Ok(None) => {
                allocations += usize::from(largest > 0);
                assert!(buf.capacity() <= (2 * arrived).max(64 * 1024).min(payload.len()));
            }
            Ok(Some(frame)) => assert_eq!(frame.payload.len(), payload.len()),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(allocations <= 6, "{allocations} allocations");
}
