//! The runtime's half of the link between a pool and its peers (the cores' half is
//! [`peerpool_core::pool::link`]): how what a pool-owned peer's machine reports reaches the
//! driver, apart from the user's [`Listeners`](crate::Listeners).
//!
//! Every peer of a pool holds the pool's [`PoolLink`]. Its connection task sends each
//! [`PeerEvent`] of its machine to the driver as it comes out, in order, on one channel shared
//! by all peers (so events of different peers keep the order in which they happened: an
//! outbound peer's `VersionSent` is in the channel before any peer can receive that version).
//! Each peer may have at most [`PoolLink::capacity`] events waiting for the driver; when it has
//! that many, its task pauses (it reads nothing more and carries out no further output of its
//! machine) until the driver has caught up. Nothing is ever dropped, a misbehaviour report
//! least of all, and the memory a peer can make the pool hold is bounded. The end of a
//! connection is reported apart from that budget, once, when the peer finishes.
//!
//! Received messages of kinds the pool's bus has subscribers for are published on the bus by
//! the connection task itself: the driver never sees them.

use std::sync::atomic::{AtomicU32, Ordering};

use peerpool_core::peer::{DisconnectReason, PeerEvent, PeerId};
use peerpool_core::pool::PoolMachine;
use peerpool_wire::MessageKind;
use tokio::sync::mpsc;

use crate::bus::EventBus;

/// Events a pool peer may have waiting for the driver before its connection pauses. Generous:
/// the driver handles each in microseconds, and a peer pausing only slows that peer.
pub const DEFAULT_REPORT_CAPACITY: u32 = 64;

/// What a pool-owned peer tells its pool's driver.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) peer: PeerId,
    pub(crate) what: Reported,
}

#[derive(Debug)]
pub(crate) enum Reported {
    /// Its machine reported this.
    Event(PeerEvent),
    /// The connection ended (or never started).
    Closed(DisconnectReason),
}

/// A pool as its peers see it; shared by every peer of the pool.
#[derive(Debug)]
pub(crate) struct PoolLink {
    reports: mpsc::UnboundedSender<Report>,
    /// The pool's event bus, for received messages of subscribed kinds.
    pub(crate) bus: EventBus,
    /// Most events one peer may have waiting for the driver.
    pub(crate) capacity: u32,
}

impl PoolLink {
    pub(crate) fn new(
        reports: mpsc::UnboundedSender<Report>,
        bus: EventBus,
        capacity: u32,
    ) -> PoolLink {
        PoolLink {
            reports,
            bus,
            capacity: capacity.max(1),
        }
    }

    /// Whether the pool or its bus wants messages of `kind` decoded.
    pub(crate) fn wants(&self, kind: MessageKind) -> bool {
        PoolMachine::wants_decoded(kind) || self.bus.wants(kind)
    }

    /// Sends `event` of `peer` to the driver if the peer's backlog has room; gives it back
    /// (boxed: it will wait) when it has none, and the caller pauses.
    pub(crate) fn report(
        &self,
        peer: PeerId,
        backlog: &AtomicU32,
        event: PeerEvent,
    ) -> Option<Box<PeerEvent>> {
        if self.reports.is_closed() {
            // The driver is gone (the pool stopped): nobody will ever make room.
            return None;
        }
        let taken = backlog.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.capacity).then_some(n + 1)
        });
        if taken.is_err() {
            return Some(Box::new(event));
        }
        self.send(peer, Reported::Event(event));
        None
    }

    /// Offers the event that waits in `pending` (if any) again; whether `pending` is empty
    /// now.
    pub(crate) fn offer(
        &self,
        peer: PeerId,
        backlog: &AtomicU32,
        pending: &mut Option<Box<PeerEvent>>,
    ) -> bool {
        let Some(event) = pending.take() else {
            return true;
        };
        *pending = self.report(peer, backlog, *event);
        pending.is_none()
    }

    /// Sends an event past the backlog's limit: only for the few a finishing connection has
    /// left, which must not be lost either.
    pub(crate) fn report_last(&self, peer: PeerId, backlog: &AtomicU32, event: PeerEvent) {
        backlog.fetch_add(1, Ordering::AcqRel);
        self.send(peer, Reported::Event(event));
    }

    /// Reports the end of `peer`'s connection.
    pub(crate) fn closed(&self, peer: PeerId, reason: DisconnectReason) {
        self.send(peer, Reported::Closed(reason));
    }

    fn send(&self, peer: PeerId, what: Reported) {
        // The driver gone means the pool is shutting down: nobody to tell.
        let _ = self.reports.send(Report { peer, what });
    }
}

/// The driver handled one event of a peer whose `backlog` it was: frees its place, and wakes
/// the peer's task if it had paused for want of one. Returns whether it had.
pub(crate) fn handled(backlog: &AtomicU32, capacity: u32) -> bool {
    let before = backlog
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .unwrap_or(0);
    before >= capacity
}
