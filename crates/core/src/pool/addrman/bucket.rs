//! Keyed placement of addresses in the tables.
//!
//! Every position is a SipHash-2-4 of public data (address, network groups) under the book's
//! 128-bit secret, so an attacker who does not know the secret cannot aim addresses at chosen
//! buckets, and cannot tell which of its addresses would evict which. The structure of the
//! hashes is what bounds an attacker's reach (Bitcoin Core's `GetNewBucket`, `GetTriedBucket`,
//! `GetBucketPosition`):
//! - new bucket: the source's group picks one of `NEW_BUCKETS_PER_SOURCE_GROUP` buckets, the
//!   address's group picks which; so one source group reaches at most 64 of the 1024 buckets;
//! - tried bucket: the address's group picks one of `TRIED_BUCKETS_PER_GROUP` buckets, the full
//!   address picks which; so one group reaches at most 8 of the 256 buckets;
//! - position inside a bucket: the bucket and the full address.
//!
//! The hashed byte strings are peerpool's own (Core hashes its own serialisations with
//! SHA256d); each starts with a distinct domain tag and every later field has a length fixed
//! by what comes before it, so no two different inputs share a byte string.

use std::hash::{BuildHasher, Hasher};

use siphasher::sip::{SipHasher13, SipHasher24};

use super::{
    BUCKET_SIZE, NEW_BUCKETS_PER_SOURCE_GROUP, NEW_BUCKET_COUNT, TRIED_BUCKETS_PER_GROUP,
    TRIED_BUCKET_COUNT,
};
use crate::addr::{Host, NetAddr};
use crate::asmap::NetGroups;

/// Longest canonical address encoding: network id, 32 key bytes, port.
pub(super) const MAX_ADDR_BYTES: usize = 1 + 32 + 2;

/// The canonical bytes of an address: BIP155 network id, host bytes, port (little-endian).
/// Used both for hashing and, identically, by the persistence format.
pub(super) fn addr_bytes(addr: &NetAddr) -> ([u8; MAX_ADDR_BYTES], usize) {
    let mut out = [0u8; MAX_ADDR_BYTES];
    let mut put = |id: u8, host: &[u8]| {
        out[0] = id;
        out[1..1 + host.len()].copy_from_slice(host);
        1 + host.len()
    };
    let end = match &addr.host {
        Host::Ipv4(ip) => put(1, &ip.octets()),
        Host::Ipv6(ip) => put(2, &ip.octets()),
        Host::TorV3(k) => put(4, k),
        Host::I2p(k) => put(5, k),
        Host::Cjdns(ip) => put(6, &ip.octets()),
    };
    out[end..end + 2].copy_from_slice(&addr.port.to_le_bytes());
    (out, end + 2)
}

/// A slot of the new table: `bucket * BUCKET_SIZE + position` (1024 * 64 fits a `u16`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct NewSlot(u16);

/// A slot of the tried table: `bucket * BUCKET_SIZE + position`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct TriedSlot(u16);

macro_rules! slot_methods {
    ($t:ty, $buckets:expr) => {
        impl $t {
            /// The slot at `position` of `bucket` (both already reduced to range).
            pub(super) fn at(bucket: usize, position: usize) -> Self {
                debug_assert!(bucket < $buckets && position < BUCKET_SIZE);
                // In range by construction: at most 1024 * 64 - 1.
                Self((bucket * BUCKET_SIZE + position) as u16)
            }
            /// Index into the flat table.
            pub(super) fn index(self) -> usize {
                usize::from(self.0)
            }
            /// The bucket.
            pub(super) fn bucket(self) -> usize {
                self.index() / BUCKET_SIZE
            }
        }
    };
}
slot_methods!(NewSlot, NEW_BUCKET_COUNT);
slot_methods!(TriedSlot, TRIED_BUCKET_COUNT);

/// Which table a position hash is for (Core mixes in `'N'` or `'K'`).
#[derive(Clone, Copy)]
enum TableTag {
    New = 1,
    Tried = 2,
}

/// The keyed hashes that place addresses.
#[derive(Clone)]
pub(super) struct Bucketer {
    key: [u8; 16],
    groups: NetGroups,
}

impl Bucketer {
    /// Hashes under `key`, grouping addresses by `groups` (prefix or AS).
    pub(super) fn new(key: [u8; 16], groups: NetGroups) -> Bucketer {
        Bucketer { key, groups }
    }

    fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut h = SipHasher24::new_with_key(&self.key);
        for p in parts {
            h.write(p);
        }
        h.finish()
    }

    /// The new bucket `addr` falls into when `source` announces it.
    pub(super) fn new_bucket(&self, addr: &NetAddr, source: &NetAddr) -> usize {
        let group = self.groups.group(addr).to_bytes();
        let source_group = self.groups.group(source).to_bytes();
        let spread =
            self.hash(&[b"new-spread", &group, &source_group]) % NEW_BUCKETS_PER_SOURCE_GROUP;
        let h = self.hash(&[b"new-bucket", &source_group, &spread.to_le_bytes()]);
        (h % NEW_BUCKET_COUNT as u64) as usize
    }

    /// The tried bucket of `addr`.
    pub(super) fn tried_bucket(&self, addr: &NetAddr) -> usize {
        let (bytes, len) = addr_bytes(addr);
        let group = self.groups.group(addr).to_bytes();
        let spread = self.hash(&[b"tried-spread", &bytes[..len]]) % TRIED_BUCKETS_PER_GROUP;
        let h = self.hash(&[b"tried-bucket", &group, &spread.to_le_bytes()]);
        (h % TRIED_BUCKET_COUNT as u64) as usize
    }

    fn position(&self, tag: TableTag, bucket: usize, addr: &NetAddr) -> usize {
        let (bytes, len) = addr_bytes(addr);
        // Buckets are below 1024, so two bytes hold them.
        let bucket = (bucket as u16).to_le_bytes();
        let h = self.hash(&[b"position", &[tag as u8], &bucket, &bytes[..len]]);
        (h % BUCKET_SIZE as u64) as usize
    }

    /// The slot of `addr` inside new bucket `bucket`.
    pub(super) fn new_slot(&self, bucket: usize, addr: &NetAddr) -> NewSlot {
        NewSlot::at(bucket, self.position(TableTag::New, bucket, addr))
    }

    /// The slot `addr` would take in the new table when announced by `source`.
    pub(super) fn new_slot_from(&self, addr: &NetAddr, source: &NetAddr) -> NewSlot {
        self.new_slot(self.new_bucket(addr, source), addr)
    }

    /// The one slot `addr` can take in the tried table.
    pub(super) fn tried_slot(&self, addr: &NetAddr) -> TriedSlot {
        let bucket = self.tried_bucket(addr);
        TriedSlot::at(bucket, self.position(TableTag::Tried, bucket, addr))
    }

    /// A hasher for the in-memory address index, keyed from the secret so that neither the
    /// OS random generator nor an attacker's choice of addresses shapes it.
    pub(super) fn index_hasher(&self) -> IndexHasher {
        IndexHasher {
            k0: self.hash(&[b"index-k0"]),
            k1: self.hash(&[b"index-k1"]),
        }
    }

    /// A seed for the book's own generator, for books loaded without one.
    pub(super) fn derived_seed(&self) -> u64 {
        self.hash(&[b"rng-seed"])
    }
}

/// Builds the keyed SipHash-1-3 hashers of the address index.
#[derive(Clone)]
pub(super) struct IndexHasher {
    k0: u64,
    k1: u64,
}

impl BuildHasher for IndexHasher {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}
