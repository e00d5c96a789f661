//! The frame checksum: the first four bytes of SHA256d of the payload.
//!
//! Computed with the `sha2` crate, which uses the CPU's SHA extensions when present; this is on
//! the hot path of every received and sent message.

use std::cell::RefCell;

use sha2::{Digest, Sha256};

/// Longest payload whose checksum [`cached_checksum`] remembers. Covers the small messages a
/// node sends many times over to many peers: a one-entry `inv`/`getdata` (37 bytes),
/// `ping`/`pong` (8), `feefilter` (8), `sendcmpct` (9), empty payloads.
pub const CACHED_PAYLOAD_MAX: usize = 40;

/// Sets of the per-thread checksum cache, each of [`WAYS`] slots: 4,096 slots x 48 bytes =
/// 192 KiB per thread that encodes, allocated on first use. Enough to hold the distinct small
/// frames a relay has in flight to all of its peers at once (two batches of 256 entries
/// in the fan-out benchmark) with few conflicts.
const CACHE_SETS: usize = 2048;

/// Slots per set: two, so that two frames in flight that hash to one set do not evict each
/// other for every peer in turn.
const WAYS: usize = 2;

/// One remembered payload; `len == EMPTY` marks an unused slot.
#[derive(Clone, Copy)]
struct Slot {
    len: u8,
    sum: [u8; 4],
    data: [u8; CACHED_PAYLOAD_MAX],
}

const EMPTY: u8 = u8::MAX;

thread_local! {
    static CACHE: RefCell<Option<Box<[Slot]>>> = const { RefCell::new(None) };
}

/// First four bytes of SHA256(SHA256(`payload`)).
pub fn checksum(payload: &[u8]) -> [u8; 4] {
    let first = Sha256::digest(payload);
    let second = Sha256::digest(first);
    [second[0], second[1], second[2], second[3]]
}

/// [`checksum`], remembered per thread for small payloads.
///
/// Relaying one announcement to many peers encodes the same small frame once per peer; this
/// computes its SHA256d once per thread instead. A slot is chosen by a cheap hash of the
/// payload and answers only for a byte-identical payload, so a peer that makes slots collide
/// only causes recomputation, never a wrong checksum.
pub fn cached_checksum(payload: &[u8]) -> [u8; 4] {
    if payload.len() > CACHED_PAYLOAD_MAX {
        return checksum(payload);
    }
    CACHE.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return checksum(payload);
        };
        let slots = cache.get_or_insert_with(|| {
            vec![
                Slot {
                    len: EMPTY,
                    sum: [0; 4],
                    data: [0; CACHED_PAYLOAD_MAX],
                };
                CACHE_SETS * WAYS
            ]
            .into_boxed_slice()
        });
        let set = &mut slots[set_of(payload) * WAYS..][..WAYS];
        let hit =
            |s: &Slot| usize::from(s.len) == payload.len() && s.data[..payload.len()] == *payload;
        if hit(&set[0]) {
            return set[0].sum;
        }
        if hit(&set[1]) {
            // Most recently used first.
            set.swap(0, 1);
            return set[0].sum;
        }
        let sum = checksum(payload);
        set[1] = set[0];
        // Fits: at most CACHED_PAYLOAD_MAX (40) bytes.
        set[0].len = payload.len() as u8;
        set[0].data[..payload.len()].copy_from_slice(payload);
        set[0].sum = sum;
        sum
    })
}

/// Cache set of a small payload: a multiplicative hash of its 8-byte words.
fn set_of(payload: &[u8]) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = payload.len() as u64;
    for chunk in payload.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    (h.wrapping_mul(K) >> (64 - CACHE_SETS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_checksum_always_matches_the_computed_one() {
        // Many more payloads than slots, of every small length, each asked twice: hits,
        // misses and evictions all answer the true checksum.
        let payloads: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| {
                let len = (i as usize) % (CACHED_PAYLOAD_MAX + 2);
                (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
            })
            .collect();
        for _ in 0..2 {
            for p in &payloads {
                assert_eq!(cached_checksum(p), checksum(p), "{p:02x?}");
            }
        }
        // Same length, one byte apart: never confused.
        let a = [7u8; 37];
        let mut b = a;
        b[36] = 8;
        assert_eq!(cached_checksum(&a), checksum(&a));
        assert_eq!(cached_checksum(&b), checksum(&b));
        assert_ne!(cached_checksum(&a), cached_checksum(&b));
        // Longer payloads bypass the cache.
        let long = vec![1u8; CACHED_PAYLOAD_MAX + 1];
        assert_eq!(cached_checksum(&long), checksum(&long));
    }

    #[test]
    fn sets_spread_consecutive_announcements() {
        // One-entry invs of consecutive hashes (a relay's stream) mostly land in distinct
        // sets, so the frames in flight stay cached.
        let mut used = std::collections::HashSet::new();
        for k in 0u64..512 {
            let mut p = [0u8; 37];
            p[0] = 1;
            p[1] = 2;
            p[5..13].copy_from_slice(&k.to_le_bytes());
            used.insert(set_of(&p));
        }
        assert!(used.len() > 400, "{} distinct sets", used.len());
    }

    #[test]
    fn empty_payload_checksum_is_the_well_known_constant() {
        // The checksum of an empty payload, as seen in every verack header.
        assert_eq!(checksum(&[]), [0x5d, 0xf6, 0xe0, 0xe2]);
    }

    #[test]
    fn matches_bitcoin_hashes() {
        use bitcoin::hashes::{sha256d, Hash};
        for len in [1usize, 61, 1000, 65_537] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let h = sha256d::Hash::hash(&data);
            assert_eq!(checksum(&data), h.as_byte_array()[..4]);
        }
    }
}
