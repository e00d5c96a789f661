//! Self-connection detection.
//!
//! Every outbound `version` carries a random nonce. When an inbound peer's `version` carries a
//! nonce we sent ourselves, we have connected to our own listener (through a NAT, a proxy, or an
//! address of ours we did not know). The owner of the peers keeps one [`Nonces`] for all of
//! them; it is bounded, so only recent handshakes are remembered, which is all that matters.

use hashlink::LruCache;

/// Nonces remembered by default: far more than the outbound handshakes in flight at once.
pub const DEFAULT_NONCE_MEMORY: usize = 1_000;

/// The nonces of our recent outbound `version` messages.
#[derive(Debug)]
pub struct Nonces {
    recent: LruCache<u64, ()>,
}

impl Default for Nonces {
    fn default() -> Nonces {
        Nonces::with_capacity(DEFAULT_NONCE_MEMORY)
    }
}

impl Nonces {
    /// Remembers at most `capacity` nonces.
    pub fn with_capacity(capacity: usize) -> Nonces {
        Nonces {
            recent: LruCache::new(capacity.max(1)),
        }
    }

    /// Records a nonce we sent.
    pub fn insert(&mut self, nonce: u64) {
        self.recent.insert(nonce, ());
    }

    /// Whether `nonce` is one we sent recently.
    pub fn contains(&self, nonce: u64) -> bool {
        self.recent.contains_key(&nonce)
    }

    /// Forgets a nonce once its handshake is over.
    pub fn remove(&mut self, nonce: u64) {
        self.recent.remove(&nonce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_forgets_oldest() {
        let mut n = Nonces::with_capacity(2);
        n.insert(1);
        n.insert(2);
        n.insert(3);
        assert!(!n.contains(1));
        assert!(n.contains(2) && n.contains(3));
        n.remove(3);
        assert!(!n.contains(3));
    }
}
