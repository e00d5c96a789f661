//! Named streams of randomness derived from one seed.
//!
//! A machine is given one `u64` seed; each of its parts that draws random numbers (the pool's
//! own choices, the connection manager, the address book, the eviction key, a peer's
//! known-inventory key) gets a stream of its own, derived here from the seed and the
//! stream's name. Parts never share a stream, so adding a draw to one never shifts the
//! numbers another sees, and a run replays from its seed alone.
//!
//! The derivation mixes the seed with a per-stream constant through SplitMix64's finaliser,
//! whose output bits each depend on every input bit: nearby seeds and nearby stream tags give
//! unrelated streams.

/// A consumer of randomness; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The pool machine's own choices (relay targets, address sampling, timers).
    Pool,
    /// The connection manager (feeler and dial timing).
    ConnMan,
    /// The address book's selections.
    AddrMan,
    /// The secret that keys the network groups eviction protects.
    NetgroupKey,
    /// A peer machine's secret known-inventory key.
    InventoryKey,
    /// The per-peer seeds a runtime hands to the peer machines it creates.
    Peers,
}

impl Stream {
    fn tag(self) -> u64 {
        // Arbitrary distinct odd constants: the tag only has to differ between streams.
        match self {
            Stream::Pool => 0x9e37_79b9_7f4a_7c15,
            Stream::ConnMan => 0xc2b2_ae3d_27d4_eb4f,
            Stream::AddrMan => 0x1656_67b1_9e37_79f9,
            Stream::NetgroupKey => 0x27d4_eb2f_1656_67c5,
            Stream::InventoryKey => 0x94d0_49bb_1331_11eb,
            Stream::Peers => 0xbf58_476d_1ce4_e5b9,
        }
    }
}

/// The seed of `stream`, derived from `seed`.
pub fn derive(seed: u64, stream: Stream) -> u64 {
    mix(seed ^ mix(stream.tag()))
}

/// A generator for `stream`, derived from `seed`.
pub fn rng(seed: u64, stream: Stream) -> fastrand::Rng {
    fastrand::Rng::with_seed(derive(seed, stream))
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Stream; 6] = [
        Stream::Pool,
        Stream::ConnMan,
        Stream::AddrMan,
        Stream::NetgroupKey,
        Stream::InventoryKey,
        Stream::Peers,
    ];

    #[test]
    fn streams_of_one_seed_differ_and_repeat() {
        for seed in [0, 1, 42, u64::MAX] {
            let derived: Vec<u64> = ALL.iter().map(|s| derive(seed, *s)).collect();
            let mut unique = derived.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), ALL.len(), "seed {seed}: {derived:?}");
            assert_eq!(derived[0], derive(seed, Stream::Pool));
        }
    }

    #[test]
    fn neighbouring_seeds_give_unrelated_streams() {
        let a = derive(1, Stream::AddrMan);
        let b = derive(2, Stream::AddrMan);
        // About half the bits differ for unrelated values; a weak mix leaves most equal.
        let differing = (a ^ b).count_ones();
        assert!((16..=48).contains(&differing), "{differing} bits differ");
    }
}
