//! Inventory announcement: what the peer is known to have, and what waits to be trickled.
//!
//! Transactions are not announced the moment they are queued: they wait for the next trickle,
//! which comes at exponentially distributed intervals (mean per direction, as Bitcoin Core
//! does), so an observer cannot time announcements to find where a transaction came from.
//! Blocks skip the trickle: they are announced at once.
//!
//! Known inventory is a bounded least-recently-used set of keyed 64-bit digests of the hashes
//! ([`KnownSet`]): a ring of keys plus an open-addressing index, no heap node per entry. It is
//! allocated only when the first inventory is exchanged, so an idle connection pays nothing
//! for it.

use std::collections::{HashSet, VecDeque};
use std::hash::Hasher;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use hashbrown::HashTable;
use siphasher::sip::SipHasher13;

/// The 32-byte hash an inventory entry names, whatever its type: a transaction announced by
/// txid and the same one fetched by wtxid are different hashes, as on the wire.
pub(crate) fn inventory_hash(inv: &Inventory) -> [u8; 32] {
    match inv {
        Inventory::Error => [0; 32],
        Inventory::Transaction(t) | Inventory::WitnessTransaction(t) => t.to_byte_array(),
        Inventory::Block(b) | Inventory::WitnessBlock(b) | Inventory::CompactBlock(b) => {
            b.to_byte_array()
        }
        Inventory::WTx(w) => w.to_byte_array(),
        Inventory::Unknown { hash, .. } => *hash,
    }
}

/// Whether an entry skips the trickle.
pub(crate) fn is_block(inv: &Inventory) -> bool {
    matches!(
        inv,
        Inventory::Block(_) | Inventory::WitnessBlock(_) | Inventory::CompactBlock(_)
    )
}

/// Known-inventory filter and trickle queue of one peer.
#[derive(Debug)]
pub(crate) struct InventoryState {
    known: KnownSet,
    /// Entries waiting for the next trickle, oldest first.
    pub(crate) pending: Vec<Inventory>,
}

/// Most entries waiting for a trickle; beyond it new entries are dropped (Core: `MAX_INV_SZ`).
pub(crate) const MAX_PENDING: usize = 50_000;

impl InventoryState {
    /// `sip_key` keys the digests of the known set; it must be secret from the peer.
    pub(crate) fn new(capacity: usize, sip_key: [u64; 2]) -> InventoryState {
        InventoryState {
            known: KnownSet::new(capacity, sip_key),
            pending: Vec::new(),
        }
    }

    /// Marks an entry as known to the peer; returns whether it was new.
    pub(crate) fn mark_known(&mut self, inv: &Inventory) -> bool {
        self.known.insert(&inventory_hash(inv))
    }

    /// Records entries the peer has (it announced them, or the owner says so): known from now
    /// on, and no longer waiting to be announced to it. Bitcoin Core checks its known filter
    /// again when it trickles; dropping them from the queue here has the same effect.
    pub(crate) fn peer_has<'a>(&mut self, invs: impl IntoIterator<Item = &'a Inventory>) {
        // Membership only: the set's order never reaches an output.
        let mut had = HashSet::new();
        for inv in invs {
            let h = inventory_hash(inv);
            self.known.insert(&h);
            if !self.pending.is_empty() {
                had.insert(h);
            }
        }
        if !had.is_empty() {
            self.pending.retain(|p| !had.contains(&inventory_hash(p)));
        }
    }

    pub(crate) fn is_known(&self, inv: &Inventory) -> bool {
        self.known.contains(&inventory_hash(inv))
    }
}

/// A bounded least-recently-used set of inventory hashes, without a heap node per entry.
///
/// Each hash is reduced to a 64-bit key with SipHash-1-3 under a per-peer secret key, so a peer
/// cannot choose hashes that collide in the table (slowing every lookup) or that alias an entry
/// it wants us to forget or re-announce. The keys live in `ring`, oldest first; `index` holds,
/// per live key, the position of its newest copy in the ring. Marking a known entry again
/// appends a fresh copy and leaves the old one behind as stale; stale copies are skipped when
/// evicting and squeezed out before the ring would grow. The bound counts distinct live
/// entries only, so repeating one hash never pushes others out sooner than `capacity`
/// distinct newer entries would.
///
/// Memory: 8 bytes per ring slot plus 5 per index bucket (a 4-byte position and hashbrown's
/// control byte), about 25 bytes per remembered entry against some 80 for a linked hash map.
#[derive(Debug)]
pub(crate) struct KnownSet {
    sip_key: [u64; 2],
    capacity: usize,
    /// Keys, oldest first; may hold stale copies of refreshed keys.
    ring: VecDeque<u64>,
    /// Absolute position (wrapping) of `ring[0]`.
    front: u32,
    /// Positions of the newest copy of each live key; hashed by the key itself (already keyed
    /// and uniform).
    index: HashTable<u32>,
    /// Stale copies in `ring`.
    stale: usize,
}

/// Largest capacity honoured: ring positions are 32-bit and the ring may hold up to twice the
/// live entries, so this keeps positions unambiguous.
const MAX_KNOWN_CAPACITY: usize = 1 << 30;

impl KnownSet {
    /// An empty set remembering at most `capacity` entries (at least one); allocates nothing
    /// until the first entry.
    pub(crate) fn new(capacity: usize, sip_key: [u64; 2]) -> KnownSet {
        KnownSet {
            sip_key,
            capacity: capacity.clamp(1, MAX_KNOWN_CAPACITY),
            ring: VecDeque::new(),
            front: 0,
            index: HashTable::new(),
            stale: 0,
        }
    }

    fn key_of(&self, hash: &[u8; 32]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.sip_key[0], self.sip_key[1]);
        h.write(hash);
        h.finish()
    }

    fn find(&self, key: u64) -> Option<u32> {
        let ring = &self.ring;
        let front = self.front;
        self.index
            .find(key, |&p| ring[p.wrapping_sub(front) as usize] == key)
            .copied()
    }

    /// Live entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether `hash` is remembered.
    pub(crate) fn contains(&self, hash: &[u8; 32]) -> bool {
        self.find(self.key_of(hash)).is_some()
    }

    /// Remembers `hash` as the most recently used entry, forgetting the least recently used
    /// one if the set is full. Returns whether it was new.
    pub(crate) fn insert(&mut self, hash: &[u8; 32]) -> bool {
        let key = self.key_of(hash);
        let was_new = self.find(key).is_none();
        if was_new && self.index.len() >= self.capacity {
            self.evict_oldest();
        }
        self.make_room();
        let pos = self.front.wrapping_add(self.ring.len() as u32);
        self.ring.push_back(key);
        let (ring, front) = (&self.ring, self.front);
        let hasher = |&p: &u32| ring[p.wrapping_sub(front) as usize];
        match self.index.entry(
            key,
            |&p| ring[p.wrapping_sub(front) as usize] == key,
            hasher,
        ) {
            // Refresh: the previous copy goes stale.
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                *e.get_mut() = pos;
                self.stale += 1;
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(pos);
            }
        }
        was_new
    }

    /// Forgets the least recently used live entry, dropping stale copies in front of it.
    fn evict_oldest(&mut self) {
        while let Some(key) = self.ring.pop_front() {
            let pos = self.front;
            self.front = self.front.wrapping_add(1);
            // Look the key up by position: only the entry whose newest copy this is goes.
            match self.index.find_entry(key, |&p| p == pos) {
                Ok(e) => {
                    e.remove();
                    return;
                }
                Err(_) => self.stale -= 1,
            }
        }
    }

    /// Squeezes out stale copies before the ring would reallocate, if they make up a quarter
    /// of it or more, and whenever the ring holds twice the capacity: a peer repeating hashes
    /// cannot grow it past `2 * capacity + 1` copies. At that size at least half the copies are
    /// stale (live entries never exceed the capacity), so the squeeze costs O(1) per insert
    /// over time.
    fn make_room(&mut self) {
        let len = self.ring.len();
        let full = len == self.ring.capacity() && self.stale * 4 >= len;
        if self.stale == 0 || !(full || len >= 2 * self.capacity) {
            return;
        }
        let old_front = self.front;
        let live: VecDeque<u64> = {
            let index = &self.index;
            let ring = &self.ring;
            ring.iter()
                .enumerate()
                .filter(|&(i, &key)| {
                    let pos = old_front.wrapping_add(i as u32);
                    index.find(key, |&p| p == pos).is_some()
                })
                .map(|(_, &key)| key)
                .collect()
        };
        // Re-index from the same front: the live copies keep their order.
        self.index.clear();
        for (i, &key) in live.iter().enumerate() {
            let pos = old_front.wrapping_add(i as u32);
            self.index
                .insert_unique(key, pos, |&p| live[p.wrapping_sub(old_front) as usize]);
        }
        let mut ring = live;
        ring.reserve_exact(self.ring.capacity() - ring.len());
        self.ring = ring;
        self.stale = 0;
    }

    /// Heap bytes held, counting allocated capacity. The index's share follows hashbrown's
    /// layout: buckets a power of two at most 7/8 full, one 4-byte position and one control
    /// byte each, plus one group of 16 trailing control bytes.
    #[cfg(test)]
    pub(crate) fn heap_size(&self) -> usize {
        let index =
            crate::mem::hash_table_heap_size(self.index.capacity(), std::mem::size_of::<u32>());
        self.ring.capacity() * std::mem::size_of::<u64>() + index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Txid;

    fn tx(n: u8) -> Inventory {
        Inventory::Transaction(Txid::from_byte_array([n; 32]))
    }

    #[test]
    fn known_set_is_bounded_and_most_recently_used() {
        let mut s = InventoryState::new(2, [1, 2]);
        assert!(s.mark_known(&tx(1)));
        assert!(s.mark_known(&tx(2)));
        assert!(!s.mark_known(&tx(1))); // refreshes 1
        assert!(s.mark_known(&tx(3))); // evicts 2, the least recently used
        assert!(s.is_known(&tx(1)));
        assert!(!s.is_known(&tx(2)));
        assert!(s.is_known(&tx(3)));
    }

    fn h(n: u32) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&n.to_le_bytes());
        h
    }

    #[test]
    fn known_set_forgets_the_oldest_first() {
        let mut s = KnownSet::new(3, [7, 9]);
        for n in 0..3 {
            assert!(s.insert(&h(n)));
        }
        assert!(s.insert(&h(3)));
        assert!(!s.contains(&h(0)), "the oldest goes first");
        assert!(s.contains(&h(1)) && s.contains(&h(2)) && s.contains(&h(3)));
        assert!(s.insert(&h(4)));
        assert!(!s.contains(&h(1)));
        assert_eq!(s.len(), 3);
        // A forgotten entry is new again.
        assert!(s.insert(&h(0)));
        assert!(!s.contains(&h(2)));
    }

    #[test]
    fn repeating_one_entry_never_pushes_others_out() {
        let mut s = KnownSet::new(100, [1, 1]);
        for n in 0..100 {
            s.insert(&h(n));
        }
        let before = s.heap_size();
        for _ in 0..100_000 {
            assert!(!s.insert(&h(99)));
        }
        assert_eq!(s.len(), 100);
        assert!((0..100).all(|n| s.contains(&h(n))), "nothing forgotten");
        // Stale copies are squeezed out rather than growing the ring without end.
        assert!(s.ring.len() <= 2 * 100, "{}", s.ring.len());
        assert!(
            s.heap_size() <= 2 * before,
            "{} > 2 * {before}",
            s.heap_size()
        );
        // The refreshed entry is now the newest: the oldest of the rest goes first.
        s.insert(&h(1_000));
        assert!(!s.contains(&h(0)) && s.contains(&h(99)));
    }

    #[test]
    fn known_set_allocates_nothing_until_used_and_stays_compact() {
        let mut s = KnownSet::new(5_000, [3, 4]);
        assert_eq!(s.heap_size(), 0);
        for n in 0..50_000 {
            s.insert(&h(n));
        }
        assert_eq!(s.len(), 5_000);
        assert!((45_000..50_000).all(|n| s.contains(&h(n))));
        assert!(!s.contains(&h(44_999)));
        let per_entry = s.heap_size() / 5_000;
        // A node-per-entry LRU map takes about 80 bytes per entry.
        assert!(per_entry <= 30, "{per_entry} bytes per entry");
    }

    #[test]
    fn the_digest_depends_on_the_key() {
        let a = KnownSet::new(1, [1, 2]);
        let b = KnownSet::new(1, [2, 1]);
        assert_ne!(a.key_of(&h(1)), b.key_of(&h(1)));
    }

    proptest::proptest! {
        /// Against a plain least-recently-used list: same answers, same contents.
        #[test]
        fn known_set_matches_a_reference_lru(
            cap in 1usize..40,
            ops in proptest::collection::vec(0u32..60, 0..600),
        ) {
            let mut s = KnownSet::new(cap, [5, 6]);
            let mut model: VecDeque<u32> = VecDeque::new();
            for n in ops {
                let was = model.iter().position(|&m| m == n);
                match was {
                    Some(i) => {
                        model.remove(i);
                    }
                    None if model.len() == cap => {
                        model.pop_front();
                    }
                    None => {}
                }
                model.push_back(n);
                proptest::prop_assert_eq!(s.insert(&h(n)), was.is_none());
                proptest::prop_assert_eq!(s.len(), model.len());
                proptest::prop_assert!(s.ring.len() <= 2 * cap + 4);
            }
            for n in 0..60 {
                proptest::prop_assert_eq!(s.contains(&h(n)), model.contains(&n));
            }
        }
    }
}
