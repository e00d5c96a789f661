//! The frame checksum: the first four bytes of SHA256d of the payload.
//!
//! Computed with the `sha2` crate, which uses the CPU's SHA extensions when present; this is on
//! the hot path of every received and sent message.

use sha2::{Digest, Sha256};

/// First four bytes of SHA256(SHA256(`payload`)).
pub fn checksum(payload: &[u8]) -> [u8; 4] {
    let first = Sha256::digest(payload);
    let second = Sha256::digest(first);
    [second[0], second[1], second[2], second[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

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
