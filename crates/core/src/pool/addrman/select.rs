//! Choosing addresses from the book: where to connect next, and what to answer a `getaddr`.

use fastrand::Rng;

use super::*;

impl AddrMan {
    /// An address to connect to (Bitcoin Core: `Select`) and our last attempt at it.
    ///
    /// `new_only` restricts to the new table (feelers); a non-empty `networks` restricts to
    /// those networks. Otherwise new and tried are equally likely, then random buckets are
    /// probed and an entry accepted with probability [`AddrInfo::chance`] times a factor that
    /// grows by 1.2 per rejection. The entry returned last time is skipped while another one
    /// matches.
    pub fn select(
        &mut self,
        new_only: bool,
        networks: &[Network],
        rng: &mut Rng,
        now: Time,
    ) -> Option<(NetAddr, Option<Time>)> {
        let matches = |n: Network| networks.is_empty() || networks.contains(&n);
        let mut counts = TableCounts::default();
        for &n in Network::ALL.iter().filter(|&&n| matches(n)) {
            counts.new += self.counts[net_index(n)].new;
            counts.tried += self.counts[net_index(n)].tried;
        }
        if new_only {
            counts.tried = 0;
        }
        if counts.total() == 0 {
            return None;
        }
        // Counts of the candidates other than the previous answer.
        let mut others = counts;
        let mut skip = None;
        if let Some(last) = self.last_selected {
            let e = self.entry(last);
            if matches(e.addr.network()) {
                match e.place {
                    Place::New(_) => others.new -= 1,
                    Place::Tried(_) if !new_only => others.tried -= 1,
                    Place::Tried(_) => {}
                }
                skip = Some(last);
            }
        }
        let chosen = if others.total() == 0 {
            // The previous answer is the only match.
            skip?
        } else {
            let search_tried = if others.tried == 0 {
                false
            } else if others.new == 0 {
                true
            } else {
                rng.bool()
            };
            self.probe(search_tried, &matches, skip, rng, now)?
        };
        self.last_selected = Some(chosen);
        let e = self.entry(chosen);
        Some((e.addr, e.last_try))
    }

    fn probe(
        &self,
        tried: bool,
        matches: &dyn Fn(Network) -> bool,
        skip: Option<EntryId>,
        rng: &mut Rng,
        now: Time,
    ) -> Option<EntryId> {
        let (table, fill) = if tried {
            (&self.tried_table, &self.tried_fill)
        } else {
            (&self.new_table, &self.new_fill)
        };
        let eligible = |id: EntryId| Some(id) != skip && matches(self.entry(id).addr.network());
        let mut factor = 1.0f64;
        for _ in 0..MAX_SELECT_PROBES {
            let bucket = rng.usize(..fill.len());
            let start = rng.usize(..BUCKET_SIZE);
            if fill[bucket] == 0 {
                continue;
            }
            let found = (0..BUCKET_SIZE)
                .filter_map(|i| table[bucket * BUCKET_SIZE + (start + i) % BUCKET_SIZE])
                .find(|&id| eligible(id));
            let Some(id) = found else { continue };
            let threshold = factor * self.entry(id).chance(now) * f64::from(1u32 << 30);
            if f64::from(rng.u32(..1u32 << 30)) < threshold {
                return Some(id);
            }
            factor *= 1.2;
        }
        // Not reached in practice (see MAX_SELECT_PROBES): take any eligible entry.
        let all: Vec<EntryId> = table
            .iter()
            .flatten()
            .copied()
            .filter(|&id| eligible(id))
            .collect();
        (!all.is_empty()).then(|| all[rng.usize(..all.len())])
    }

    /// Addresses for a `getaddr` answer (Bitcoin Core: `GetAddr`): a random sample of at most
    /// `max_pct` percent of the book (0: no limit) and at most `max_count` (0: no limit),
    /// optionally of one network, terrible entries left out. Core's defaults are
    /// [`MAX_ADDR_TO_SEND`](crate::gossip::MAX_ADDR_TO_SEND) and
    /// [`MAX_PCT_ADDR_TO_SEND`](crate::pool::relay::MAX_PCT_ADDR_TO_SEND).
    pub fn get_addr(
        &mut self,
        max_count: usize,
        max_pct: usize,
        network: Option<Network>,
        rng: &mut Rng,
        now: Time,
    ) -> Vec<AddrRecord> {
        let total = self.random.len();
        let mut wanted = total;
        if max_pct != 0 {
            wanted = max_pct.min(100) * total / 100;
        }
        if max_count != 0 {
            wanted = wanted.min(max_count);
        }
        let mut out = Vec::with_capacity(wanted);
        // A partial Fisher-Yates shuffle of the random-order vector: each step fixes one
        // uniformly chosen entry at position n.
        for n in 0..total {
            if out.len() >= wanted {
                break;
            }
            let pick = rng.usize(n..total);
            self.swap_random(n, pick);
            let e = self.entry(self.random[n]);
            if network.is_some_and(|net| e.addr.network() != net) || e.is_terrible(now) {
                continue;
            }
            out.push((e.addr, e.services, e.last_seen));
        }
        out
    }
}
