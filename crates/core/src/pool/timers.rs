//! A table of named deadlines.
//!
//! Each deadline has a name (a key of the owner's timer enum, such as "announce our address to
//! peer 7"); at most one deadline per name. The table answers the two questions a machine's
//! driving contract asks: when is the earliest deadline ([`TimerTable::next`], for
//! `poll_timeout`), and which names are due now ([`TimerTable::take_due`], for
//! `handle_timeout`), both without looking at the deadlines that are not due. A pool with
//! thousands of per-peer timers thus wakes for exactly what is due.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Time;

/// Named deadlines; see the module docs.
#[derive(Clone, Debug)]
pub struct TimerTable<K: Ord + Copy> {
    by_name: BTreeMap<K, Time>,
    by_time: BTreeSet<(Time, K)>,
}

impl<K: Ord + Copy> Default for TimerTable<K> {
    fn default() -> TimerTable<K> {
        TimerTable {
            by_name: BTreeMap::new(),
            by_time: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    /// An empty table.
    pub fn new() -> TimerTable<K> {
        TimerTable::default()
    }

    /// Sets `name` to expire at `at`, replacing its previous deadline.
    pub fn set(&mut self, name: K, at: Time) {
        if let Some(old) = self.by_name.insert(name, at) {
            self.by_time.remove(&(old, name));
        }
        self.by_time.insert((at, name));
    }

    /// Sets `name` to `at`, or cancels it for `None`.
    pub fn set_or_cancel(&mut self, name: K, at: Option<Time>) {
        match at {
            Some(at) => self.set(name, at),
            None => self.cancel(name),
        }
    }

    /// Removes `name`'s deadline, if any.
    pub fn cancel(&mut self, name: K) {
        if let Some(at) = self.by_name.remove(&name) {
            self.by_time.remove(&(at, name));
        }
    }

    /// `name`'s deadline, if set.
    pub fn get(&self, name: K) -> Option<Time> {
        self.by_name.get(&name).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Time> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns every name due at `now`, earliest first (names due at the same
    /// time in their order). A deadline set while the caller handles these is not among them,
    /// even if it is due too: each call handles what was due when it began.
    pub fn take_due(&mut self, now: Time) -> Vec<K> {
        let mut due = Vec::new();
        while let Some(&(at, name)) = self.by_time.first() {
            if at > now {
                break;
            }
            self.by_time.pop_first();
            self.by_name.remove(&name);
            due.push(name);
        }
        due
    }

    /// Number of deadlines set.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no deadline is set.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum T {
        A,
        B(u8),
    }

    #[test]
    fn due_names_come_out_in_deadline_order_and_only_once() {
        let mut t = TimerTable::new();
        t.set(T::B(2), Time::from_secs(5));
        t.set(T::A, Time::from_secs(3));
        t.set(T::B(1), Time::from_secs(5));
        t.set(T::B(9), Time::from_secs(50));
        assert_eq!(t.next(), Some(Time::from_secs(3)));
        assert_eq!(t.take_due(Time::from_secs(2)), vec![]);
        assert_eq!(t.take_due(Time::from_secs(5)), vec![T::A, T::B(1), T::B(2)]);
        assert_eq!(t.take_due(Time::from_secs(5)), vec![]);
        assert_eq!(t.next(), Some(Time::from_secs(50)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn setting_again_moves_a_deadline_and_cancel_removes_it() {
        let mut t = TimerTable::new();
        t.set(T::A, Time::from_secs(10));
        t.set(T::A, Time::from_secs(20));
        assert_eq!(t.get(T::A), Some(Time::from_secs(20)));
        assert_eq!(t.take_due(Time::from_secs(15)), vec![]);
        t.set_or_cancel(T::A, None);
        assert!(t.is_empty());
        assert_eq!(t.next(), None);
    }
}
