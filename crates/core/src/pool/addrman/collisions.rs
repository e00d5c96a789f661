//! Test-before-evict: addresses waiting for a tried slot its occupant holds, and how the wait
//! ends (Bitcoin Core's `ResolveCollisions` and `SelectTriedCollision`).

use fastrand::Rng;

use super::*;

impl AddrMan {
    /// The tried incumbent of a random waiting newcomer, and our last attempt at it (Bitcoin
    /// Core: `SelectTriedCollision`): the pool should open a feeler to it, record the outcome
    /// with [`AddrMan::attempt`] / [`AddrMan::good`], then call
    /// [`AddrMan::resolve_collisions`].
    pub fn select_tried_collision(&mut self, rng: &mut Rng) -> Option<(NetAddr, Option<Time>)> {
        if self.collisions.is_empty() {
            return None;
        }
        let i = rng.usize(..self.collisions.len());
        let id = self.collisions[i];
        if self.entry(id).is_tried() {
            self.collisions.remove(i);
            return None;
        }
        let slot = self.bucketer.tried_slot(&self.entry(id).addr);
        let incumbent = self.tried_table[slot.index()]?;
        let e = self.entry(incumbent);
        Some((e.addr, e.last_try))
    }

    /// Settles waiting newcomers (Bitcoin Core: `ResolveCollisions`). A newcomer whose slot
    /// emptied moves in. Otherwise the incumbent stays if it succeeded within
    /// [`REPLACEMENT`]; is replaced if it was tried within [`REPLACEMENT`] (and over
    /// [`FEELER_GRACE`] ago) without success since; and is replaced anyway once the newcomer
    /// has waited [`TEST_WINDOW`] without a test.
    pub fn resolve_collisions(&mut self, now: Time) {
        let waiting = self.collisions.clone();
        for id in waiting {
            if !self.collisions.contains(&id) {
                // Deleted while an earlier one was being settled.
                continue;
            }
            let verdict = self.collision_verdict(id, now);
            match verdict {
                Verdict::Wait => continue,
                Verdict::Drop => {}
                Verdict::MoveIn { replacing } => {
                    if let Some(old) = replacing {
                        tracing::debug!(
                            old = %old,
                            new = %self.entry(id).addr,
                            "addrman: tried collision settled for the newcomer"
                        );
                    }
                    self.good_id(id, false, now);
                }
            }
            self.collisions.retain(|&c| c != id);
        }
    }

    fn collision_verdict(&self, id: EntryId, now: Time) -> Verdict {
        let newcomer = self.entry(id);
        if newcomer.is_tried() {
            return Verdict::Drop;
        }
        let slot = self.bucketer.tried_slot(&newcomer.addr);
        let Some(incumbent) = self.tried_table[slot.index()] else {
            return Verdict::MoveIn { replacing: None };
        };
        let old = self.entry(incumbent);
        let age = |t: Option<Time>| t.map_or(Duration::MAX, |t| now.since(t));
        let replacing = Some(old.addr);
        if age(old.last_success) < REPLACEMENT {
            // The incumbent works: the newcomer stays in new.
            Verdict::Drop
        } else if age(old.last_try) < REPLACEMENT {
            // Tried recently without success since: replace it once the attempt had its
            // chance to complete.
            if age(old.last_try) > FEELER_GRACE {
                Verdict::MoveIn { replacing }
            } else {
                Verdict::Wait
            }
        } else if age(newcomer.last_success) > TEST_WINDOW {
            // Nobody tested the incumbent in time; assume it is gone.
            Verdict::MoveIn { replacing }
        } else {
            Verdict::Wait
        }
    }
}
