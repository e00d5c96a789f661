//! Inventory announcement: what the peer is known to have, and what waits to be trickled.
//!
//! Transactions are not announced the moment they are queued: they wait for the next trickle,
//! which comes at exponentially distributed intervals (mean per direction, as Bitcoin Core
//! does), so an observer cannot time announcements to find where a transaction came from.
//! Blocks skip the trickle: they are announced at once.
//!
//! Known inventory is a bounded most-recently-used set keyed by hash. It is allocated only when
//! the first inventory is exchanged, so an idle connection pays nothing for it.

use std::collections::HashSet;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use hashlink::LruCache;

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
    known: LruCache<[u8; 32], ()>,
    /// Entries waiting for the next trickle, oldest first.
    pub(crate) pending: Vec<Inventory>,
}

/// Most entries waiting for a trickle; beyond it new entries are dropped (Core: `MAX_INV_SZ`).
pub(crate) const MAX_PENDING: usize = 50_000;

impl InventoryState {
    pub(crate) fn new(capacity: usize) -> InventoryState {
        InventoryState {
            known: LruCache::new(capacity.max(1)),
            pending: Vec::new(),
        }
    }

    /// Marks an entry as known to the peer; returns whether it was new.
    pub(crate) fn mark_known(&mut self, inv: &Inventory) -> bool {
        let h = inventory_hash(inv);
        if self.known.get(&h).is_some() {
            false
        } else {
            self.known.insert(h, ());
            true
        }
    }

    /// Records entries the peer has (it announced them, or the owner says so): known from now
    /// on, and no longer waiting to be announced to it. Bitcoin Core checks its known filter
    /// again when it trickles; dropping them from the queue here has the same effect.
    pub(crate) fn peer_has<'a>(&mut self, invs: impl IntoIterator<Item = &'a Inventory>) {
        // Membership only: the set's order never reaches an output.
        let mut had = HashSet::new();
        for inv in invs {
            let h = inventory_hash(inv);
            self.known.insert(h, ());
            if !self.pending.is_empty() {
                had.insert(h);
            }
        }
        if !had.is_empty() {
            self.pending.retain(|p| !had.contains(&inventory_hash(p)));
        }
    }

    pub(crate) fn is_known(&self, inv: &Inventory) -> bool {
        self.known.contains_key(&inventory_hash(inv))
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
        let mut s = InventoryState::new(2);
        assert!(s.mark_known(&tx(1)));
        assert!(s.mark_known(&tx(2)));
        assert!(!s.mark_known(&tx(1))); // refreshes 1
        assert!(s.mark_known(&tx(3))); // evicts 2, the least recently used
        assert!(s.is_known(&tx(1)));
        assert!(!s.is_known(&tx(2)));
        assert!(s.is_known(&tx(3)));
    }
}
