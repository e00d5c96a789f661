//! Connection slots of a listener: a fixed number of connections served, and when all are
//! taken a newcomer takes the place of the connection that has been quiet the longest. An
//! attacker holding every slot with idle connections therefore locks nobody out: the
//! operator's connection, which talks, always finds a place, and idle ones are what goes.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One served connection.
#[derive(Debug)]
pub(crate) struct Slot {
    /// When it last moved bytes or sent a request (or connected).
    touched: Mutex<Instant>,
    /// Cancelled to close it.
    pub(crate) close: CancellationToken,
}

impl Slot {
    /// Marks the connection active now.
    pub(crate) fn touch(&self) {
        *self.touched.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn touched(&self) -> Instant {
        *self.touched.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The slots of one listener (shared by all its addresses).
#[derive(Clone, Debug, Default)]
pub(crate) struct Slots {
    open: Arc<Mutex<Vec<Arc<Slot>>>>,
}

impl Slots {
    /// A slot for a new connection, closing the idlest one if `max` are taken; its close
    /// token is a child of `stop`. Call [`Slots::release`] when the connection ends.
    pub(crate) fn take(&self, max: usize, stop: &CancellationToken) -> (Arc<Slot>, bool) {
        let slot = Arc::new(Slot {
            touched: Mutex::new(Instant::now()),
            close: stop.child_token(),
        });
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = false;
        if open.len() >= max.max(1) {
            if let Some(i) = (0..open.len()).min_by_key(|&i| open[i].touched()) {
                open.swap_remove(i).close.cancel();
                evicted = true;
            }
        }
        open.push(Arc::clone(&slot));
        (slot, evicted)
    }

    /// Gives `slot` back.
    pub(crate) fn release(&self, slot: &Arc<Slot>) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !Arc::ptr_eq(s, slot));
    }
}
