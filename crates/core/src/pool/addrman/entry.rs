//! What the book knows about one address, and Core's judgements of it (`IsTerrible`,
//! `GetChance`).

use std::time::Duration;

use bitcoin::p2p::ServiceFlags;

use super::bucket::{NewSlot, TriedSlot};
use super::{
    HORIZON, MAX_FAILURES, MAX_FUTURE_DRIFT, MIN_FAIL, NEW_BUCKETS_PER_ADDRESS, RECENT_TRY,
    RETRIES, TERRIBLE_GRACE,
};
use crate::addr::NetAddr;
use crate::time::Time;

/// Which table an entry is in, as reported by [`AddrInfo::placement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    /// In the new table, referenced from `references` buckets (1 to 8).
    New {
        /// How many new buckets hold the address.
        references: u8,
    },
    /// In the tried table (exactly one slot).
    Tried,
}

/// A snapshot of one entry of the book, for RPC and the admin `peers` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    /// The address.
    pub addr: NetAddr,
    /// Services it was last announced (or, after a connection, seen) with.
    pub services: ServiceFlags,
    /// When it was last seen on the network, as announced (Core's `nTime`).
    pub last_seen: Time,
    /// Who first told us about it.
    pub source: NetAddr,
    /// Our last connection attempt, successful or not.
    pub last_try: Option<Time>,
    /// Our last successful connection.
    pub last_success: Option<Time>,
    /// Failed attempts counted since the last success.
    pub attempts: u32,
    /// Its table.
    pub placement: Placement,
}

impl AddrInfo {
    /// Whether the entry is not worth keeping or relaying (Bitcoin Core: `IsTerrible`): seen
    /// too far in the future or not within [`HORIZON`], never reached after [`RETRIES`]
    /// attempts, or [`MAX_FAILURES`] failures with no success in [`MIN_FAIL`]. An entry tried
    /// within the last [`TERRIBLE_GRACE`] is never terrible.
    pub fn is_terrible(&self, now: Time) -> bool {
        terrible(
            self.last_seen,
            self.last_try,
            self.last_success,
            self.attempts,
            now,
        )
    }

    /// The relative weight of the entry in [`AddrMan::select`](super::AddrMan::select)
    /// (Bitcoin Core: `GetChance`): 1, times 0.01 if tried within [`RECENT_TRY`], times
    /// 0.66 per counted failure (at most 8).
    pub fn chance(&self, now: Time) -> f64 {
        chance(self.last_try, self.attempts, now)
    }
}

pub(super) fn terrible(
    last_seen: Time,
    last_try: Option<Time>,
    last_success: Option<Time>,
    attempts: u32,
    now: Time,
) -> bool {
    // Something we are connecting to right now is given the benefit of the doubt.
    if last_try.is_some_and(|t| now.since(t) <= TERRIBLE_GRACE) {
        return false;
    }
    if last_seen > now + MAX_FUTURE_DRIFT {
        return true;
    }
    if now.since(last_seen) > HORIZON {
        return true;
    }
    if last_success.is_none() && attempts >= RETRIES {
        return true;
    }
    let success_age = last_success.map_or(Duration::MAX, |t| now.since(t));
    success_age > MIN_FAIL && attempts >= MAX_FAILURES
}

pub(super) fn chance(last_try: Option<Time>, attempts: u32, now: Time) -> f64 {
    let mut c = 1.0;
    if last_try.is_some_and(|t| now.since(t) < RECENT_TRY) {
        c *= 0.01;
    }
    // At most 8, so the cast is exact.
    c * 0.66f64.powi(attempts.min(8) as i32)
}

/// The new-table slots that hold one address, at most [`NEW_BUCKETS_PER_ADDRESS`], in the
/// order they were taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct NewRefs {
    slots: [NewSlot; NEW_BUCKETS_PER_ADDRESS as usize],
    len: u8,
}

impl NewRefs {
    pub(super) fn len(&self) -> u8 {
        self.len
    }

    pub(super) fn as_slice(&self) -> &[NewSlot] {
        &self.slots[..usize::from(self.len)]
    }

    pub(super) fn is_full(&self) -> bool {
        self.len >= NEW_BUCKETS_PER_ADDRESS
    }

    /// Adds a slot; callers check [`NewRefs::is_full`] first.
    pub(super) fn push(&mut self, slot: NewSlot) {
        debug_assert!(!self.is_full());
        if let Some(s) = self.slots.get_mut(usize::from(self.len)) {
            *s = slot;
            self.len += 1;
        }
    }

    /// Forgets a slot, keeping the others in order; whether it was there.
    pub(super) fn remove(&mut self, slot: NewSlot) -> bool {
        let Some(i) = self.as_slice().iter().position(|&s| s == slot) else {
            return false;
        };
        let len = usize::from(self.len);
        self.slots.copy_within(i + 1..len, i);
        self.len -= 1;
        true
    }
}

/// Where an entry lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// In these new slots; empty only in the middle of a move or a deletion.
    New(NewRefs),
    /// In this tried slot.
    Tried(TriedSlot),
}

/// One entry of the book, with the bookkeeping the snapshot leaves out.
#[derive(Clone, Debug)]
pub(super) struct BookEntry {
    pub(super) addr: NetAddr,
    pub(super) source: NetAddr,
    pub(super) services: ServiceFlags,
    pub(super) last_seen: Time,
    pub(super) last_try: Option<Time>,
    pub(super) last_success: Option<Time>,
    /// The last attempt that counted as a failure (Core's `m_last_count_attempt`).
    pub(super) last_count_attempt: Option<Time>,
    pub(super) attempts: u32,
    /// Index of this entry in the book's `random` vector.
    pub(super) random_pos: u32,
    pub(super) place: Place,
}

impl BookEntry {
    pub(super) fn info(&self) -> AddrInfo {
        AddrInfo {
            addr: self.addr,
            services: self.services,
            last_seen: self.last_seen,
            source: self.source,
            last_try: self.last_try,
            last_success: self.last_success,
            attempts: self.attempts,
            placement: match self.place {
                Place::New(r) => Placement::New {
                    references: r.len(),
                },
                Place::Tried(_) => Placement::Tried,
            },
        }
    }

    pub(super) fn is_terrible(&self, now: Time) -> bool {
        terrible(
            self.last_seen,
            self.last_try,
            self.last_success,
            self.attempts,
            now,
        )
    }

    pub(super) fn chance(&self, now: Time) -> f64 {
        chance(self.last_try, self.attempts, now)
    }

    /// How many new buckets hold it (0 when tried).
    pub(super) fn new_refs(&self) -> u8 {
        match self.place {
            Place::New(r) => r.len(),
            Place::Tried(_) => 0,
        }
    }

    pub(super) fn is_tried(&self) -> bool {
        matches!(self.place, Place::Tried(_))
    }

    /// Same content, ignoring where it sits in the random-order vector.
    pub(super) fn same_as(&self, other: &BookEntry) -> bool {
        let place_eq = match (self.place, other.place) {
            (Place::New(a), Place::New(b)) => {
                let (mut a, mut b) = (a.as_slice().to_vec(), b.as_slice().to_vec());
                a.sort_unstable();
                b.sort_unstable();
                a == b
            }
            (Place::Tried(a), Place::Tried(b)) => a == b,
            _ => false,
        };
        place_eq
            && self.addr == other.addr
            && self.source == other.source
            && self.services == other.services
            && self.last_seen == other.last_seen
            && self.last_try == other.last_try
            && self.last_success == other.last_success
            && self.last_count_attempt == other.last_count_attempt
            && self.attempts == other.attempts
    }
}
