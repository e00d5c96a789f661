//! Bans of addresses and subnets, and the verdicts that lead to them.
//!
//! - [`BanList`]: who is banned and until when. An entry bans a [`Subnet`]: an IPv4 or IPv6
//!   CIDR range (a single address is a /32 or /128) or a single Tor v3 or I2P host. Every entry
//!   records when it was made, when it expires and why ([`BanReason`]). A ban is in force while
//!   `now < until`; expired entries stay until [`BanList::sweep`] (or [`BanList::list`]) removes
//!   them, and [`BanList::next_expiry`] tells the owner when to sweep next.
//! - [`verdict`]: what a misbehaviour earns, from what the peer did and its ban score. The
//!   score itself is kept by the peer's machine ([`crate::ban::BanScore`], decaying), the one
//!   place that sees every misbehaviour of the connection; it reports the score with each
//!   misbehaviour, and the owner of the peer (the pool) asks this function what to do.
//! - [`BanMan`]: the list with its settings, as the pool uses them.
//!
//! Like every part of this crate the ban manager never reads a clock: each call takes `now`.
//!
//! ## Matching
//! [`BanList::is_banned`] must stay cheap with thousands of bans, because it runs for every
//! inbound connection and every dial. Entries live in one ordered map keyed by their subnet,
//! and the list counts how many IPv4 and IPv6 entries it holds for each prefix length. A lookup
//! masks the address to each prefix length that is present (longest first) and looks that exact
//! subnet up, so its cost grows with the number of distinct prefix lengths in use (at most 33
//! for IPv4 and 129 for IPv6), not with the number of bans. Tor and I2P hosts are looked up
//! directly.
//!
//! CJDNS addresses are IPv6 addresses (in fc00::/8) reached over cjdns, and an inbound cjdns
//! peer arrives looking like any IPv6 peer. So IPv6 subnets also match [`Host::Cjdns`] hosts, and
//! banning a CJDNS host bans its /128. Bitcoin Core keeps the two networks apart, but there the
//! network of an address is known from configuration; here the same bytes could arrive as
//! either, and a ban should not be evaded by switching label.
//!
//! ## Verdicts
//! See [`verdict`] for the order of the rules. Scores are added to the transient (decaying)
//! part of the peer's [`BanScore`](crate::ban::BanScore): every offence in the table can come
//! from an honest peer with a bug or a flaky link, so occasional slips are forgiven, while a
//! burst crosses the threshold.
//!
//! ## Serialized form
//! [`BanList::encode`] writes, all integers little-endian:
//!
//! | field | size | meaning |
//! |---|---|---|
//! | version | 1 | [`FORMAT_VERSION`] (1) |
//! | count | 4 | number of entries |
//! | entries | ... | `count` times the entry below |
//!
//! Each entry:
//!
//! | field | size | meaning |
//! |---|---|---|
//! | network | 1 | BIP155 network id: 1 IPv4, 2 IPv6, 4 Tor v3, 5 I2P |
//! | address | 4, 16, 32, 32 | the network address (host bits zero) or the Tor key / I2P hash |
//! | prefix | 1 | prefix length, for IPv4 (0..=32) and IPv6 (0..=128) only |
//! | created | 8 | [`Time`] in microseconds since the UNIX epoch |
//! | until | 8 | [`Time`] in microseconds since the UNIX epoch |
//! | reason | 1 | 0 manual, 1 misbehaviour |
//!
//! [`BanList::decode`] accepts exactly this and nothing else: an unknown version, network or
//! reason, a prefix too long, host bits set, an IPv4-mapped IPv6 network that should have been
//! written as IPv4, a duplicate, a short read or bytes after the last entry are all errors,
//! never panics. Integrity (checksums, atomic replacement) is the job of whoever stores the
//! bytes; in peerpool that is `peerpool_net::persist`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::addr::{Host, NetAddr};
use crate::ban::{DEFAULT_THRESHOLD, DEFAULT_WARNING};
use crate::misbehaviour::Misbehaviour;
use crate::pool::subnet::{mask_v4, mask_v6, Repr};
use crate::time::Time;

mod codec;

pub use crate::pool::subnet::{Subnet, SubnetError};
pub use codec::DecodeError;

/// How long a misbehaving peer stays banned. Bitcoin Core: `-bantime` default
/// (`DEFAULT_MISBEHAVING_BANTIME`), 86400 s = 24 h; also what its `setban` uses when no time is
/// given.
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Version byte that [`BanList::encode`] writes and [`BanList::decode`] accepts.
pub const FORMAT_VERSION: u8 = 1;

// ----- Ban list ----------------------------------------------------------------------------

/// Why a ban was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanReason {
    /// By the operator (`setban`, configuration).
    Manual,
    /// The peer's ban score reached the threshold.
    Misbehaviour,
}

impl fmt::Display for BanReason {
    /// The strings Bitcoin Core's `listbanned` showed while it recorded reasons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BanReason::Manual => "manually added",
            BanReason::Misbehaviour => "node misbehaving",
        })
    }
}

/// One ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BanEntry {
    /// What is banned.
    pub subnet: Subnet,
    /// When the ban was made.
    pub created: Time,
    /// When the ban ends: it is in force while `now < until`.
    pub until: Time,
    /// Why.
    pub reason: BanReason,
}

impl BanEntry {
    /// Whether the ban is in force at `now`.
    pub fn is_active(&self, now: Time) -> bool {
        now < self.until
    }
}

/// The banned subnets; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct BanList {
    entries: BTreeMap<Subnet, BanEntry>,
    /// Every entry by expiry, for sweeping and [`BanList::next_expiry`].
    expiries: BTreeSet<(Time, Subnet)>,
    /// Number of IPv4 entries with each prefix length.
    v4_prefixes: BTreeMap<u8, usize>,
    /// Number of IPv6 entries with each prefix length.
    v6_prefixes: BTreeMap<u8, usize>,
    dirty: bool,
}

impl BanList {
    /// An empty list.
    pub fn new() -> BanList {
        BanList::default()
    }

    /// Bans `subnet` until `until`. Returns whether the list changed.
    ///
    /// As in Bitcoin Core, a ban is only ever lengthened here: if the subnet is already banned
    /// until `until` or later, nothing changes. A longer ban replaces the entry (creation time
    /// and reason included). A ban that would already be over at `now` is not added. To
    /// shorten a ban, [`unban`](BanList::unban) it first.
    pub fn ban(&mut self, subnet: Subnet, until: Time, reason: BanReason, now: Time) -> bool {
        if until <= now {
            return false;
        }
        if self.entries.get(&subnet).is_some_and(|e| e.until >= until) {
            return false;
        }
        self.remove(&subnet);
        self.insert(BanEntry {
            subnet,
            created: now,
            until,
            reason,
        });
        true
    }

    /// Lifts the ban of exactly `subnet` (not of subnets inside or around it). Returns whether
    /// there was one.
    pub fn unban(&mut self, subnet: &Subnet) -> bool {
        self.remove(subnet).is_some()
    }

    /// Lifts every ban.
    pub fn clear(&mut self) {
        if !self.entries.is_empty() {
            self.dirty = true;
        }
        self.entries.clear();
        self.expiries.clear();
        self.v4_prefixes.clear();
        self.v6_prefixes.clear();
    }

    /// Whether a ban in force at `now` covers `addr` (the port does not matter).
    pub fn is_banned(&self, addr: &NetAddr, now: Time) -> bool {
        self.find(&addr.host, now).is_some()
    }

    /// The ban in force at `now` that covers `host`, if any: the one with the longest prefix
    /// when several do.
    pub fn find(&self, host: &Host, now: Time) -> Option<&BanEntry> {
        let active = |subnet: Subnet| self.entries.get(&subnet).filter(|e| e.is_active(now));
        match Subnet::host(*host).0 {
            Repr::V4 { network: ip, .. } => self.v4_prefixes.keys().rev().find_map(|&prefix| {
                active(Subnet(Repr::V4 {
                    network: mask_v4(ip, prefix),
                    prefix,
                }))
            }),
            Repr::V6 { network: ip, .. } => self.v6_prefixes.keys().rev().find_map(|&prefix| {
                active(Subnet(Repr::V6 {
                    network: mask_v6(ip, prefix),
                    prefix,
                }))
            }),
            exact @ (Repr::Onion(_) | Repr::I2p(_)) => active(Subnet(exact)),
        }
    }

    /// The entry for exactly `subnet`, in force or expired but not yet swept.
    pub fn get(&self, subnet: &Subnet) -> Option<&BanEntry> {
        self.entries.get(subnet)
    }

    /// The bans in force at `now`, ordered by subnet; expired entries are swept first.
    pub fn list(&mut self, now: Time) -> Vec<BanEntry> {
        self.sweep(now);
        self.entries.values().copied().collect()
    }

    /// Every entry, expired ones not yet swept included, ordered by subnet.
    pub fn iter(&self) -> impl Iterator<Item = &BanEntry> + '_ {
        self.entries.values()
    }

    /// Number of entries, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes the entries that have expired at `now` and returns them, soonest expiry first.
    pub fn sweep(&mut self, now: Time) -> Vec<BanEntry> {
        let mut removed = Vec::new();
        while let Some(&(until, subnet)) = self.expiries.first() {
            if until > now {
                break;
            }
            removed.extend(self.remove(&subnet));
        }
        removed
    }

    /// When the next entry expires: the owner sweeps then.
    pub fn next_expiry(&self) -> Option<Time> {
        self.expiries.first().map(|&(until, _)| until)
    }

    /// Whether the list changed since the last [`mark_clean`](BanList::mark_clean) (or since
    /// it was created or decoded): time to persist it.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Records that the current contents have been persisted.
    pub fn mark_clean(&mut self) {
        self.dirty = false;
    }

    fn prefixes(&mut self, subnet: &Subnet) -> Option<(&mut BTreeMap<u8, usize>, u8)> {
        match subnet.0 {
            Repr::V4 { prefix, .. } => Some((&mut self.v4_prefixes, prefix)),
            Repr::V6 { prefix, .. } => Some((&mut self.v6_prefixes, prefix)),
            Repr::Onion(_) | Repr::I2p(_) => None,
        }
    }

    /// Adds an entry whose subnet is not in the list.
    fn insert(&mut self, entry: BanEntry) {
        if let Some((counts, prefix)) = self.prefixes(&entry.subnet) {
            *counts.entry(prefix).or_default() += 1;
        }
        self.expiries.insert((entry.until, entry.subnet));
        self.entries.insert(entry.subnet, entry);
        self.dirty = true;
    }

    fn remove(&mut self, subnet: &Subnet) -> Option<BanEntry> {
        let entry = self.entries.remove(subnet)?;
        self.expiries.remove(&(entry.until, entry.subnet));
        if let Some((counts, prefix)) = self.prefixes(subnet) {
            if let Some(n) = counts.get_mut(&prefix) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&prefix);
                }
            }
        }
        self.dirty = true;
        Some(entry)
    }
}

// ----- Verdicts ----------------------------------------------------------------------------

/// Settings of the ban manager; [`Default`] gives Bitcoin Core's values, each named below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Score at which a peer is banned. Default 100: Bitcoin Core's `-banscore` default while
    /// it scored peers (before 0.20), [`DEFAULT_THRESHOLD`].
    pub threshold: u32,
    /// Score at which a warning is given. Default 50, half the threshold as btcd warns
    /// ([`DEFAULT_WARNING`]).
    pub warning: u32,
    /// How long a misbehaving peer is banned. Default 24 h: Bitcoin Core's `-bantime`,
    /// [`DEFAULT_BAN_DURATION`].
    pub ban_duration: Duration,
    /// Whether a misbehaving loopback peer (127.0.0.0/8, ::1) is banned. Default `false`, as
    /// Bitcoin Core disconnects local peers but does not ban them: everything arriving through
    /// a local Tor or I2P proxy shares one loopback address. Test networks of daemons on
    /// 127.x.y.z addresses set it to `true`.
    pub ban_local: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            threshold: DEFAULT_THRESHOLD,
            warning: DEFAULT_WARNING,
            ban_duration: DEFAULT_BAN_DURATION,
            ban_local: false,
        }
    }
}

/// What the owner of a peer should do after a misbehaviour; see [`verdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Nothing beyond perhaps a debug log.
    None,
    /// The score is high: log a warning, keep the peer.
    Warn,
    /// Disconnect the peer; its address is not banned.
    Disconnect,
    /// Disconnect the peer and ban its address for [`Config::ban_duration`].
    Ban,
}

/// Judges one misbehaviour: `what` the peer did and `score`, its ban score afterwards (kept by
/// the peer's own machine, the only place a score lives). `exempt` peers (the noban
/// permission, connections the operator asked for) are never banned. In this order:
///
/// 1. `what` carries points and the score reaches [`Config::threshold`]: [`Verdict::Ban`],
///    or [`Verdict::Warn`] for an exempt peer;
/// 2. `what` [`disconnects`](Misbehaviour::disconnects) by itself: [`Verdict::Disconnect`],
///    with no ban. These are protocol rules (BIP111 bloom, feature messages after `verack`)
///    that Bitcoin Core enforces by disconnecting without holding it against the address, the
///    peer being merely incompatible; exempt peers too, since the connection cannot go on
///    usefully;
/// 3. `what` carries points and the score reaches [`Config::warning`]: [`Verdict::Warn`];
/// 4. otherwise [`Verdict::None`].
///
/// A pure function of its arguments: the same misbehaviour at the same score always gets the
/// same answer, whoever asks.
pub fn verdict(config: &Config, what: Misbehaviour, score: u32, exempt: bool) -> Verdict {
    let points = what.score() > 0;
    if points && score >= config.threshold {
        return if exempt { Verdict::Warn } else { Verdict::Ban };
    }
    if what.disconnects() {
        Verdict::Disconnect
    } else if points && score >= config.warning {
        Verdict::Warn
    } else {
        Verdict::None
    }
}

// ----- Together ----------------------------------------------------------------------------

/// The ban list and its settings, as the pool keeps them.
#[derive(Clone, Debug)]
pub struct BanMan {
    config: Config,
    bans: BanList,
}

impl BanMan {
    /// An empty ban list.
    pub fn new(config: Config) -> BanMan {
        BanMan::with_bans(config, BanList::new())
    }

    /// Starts from a ban list loaded from disk.
    pub fn with_bans(config: Config, bans: BanList) -> BanMan {
        BanMan { config, bans }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The ban list.
    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    /// The ban list, for bans, unbans and sweeping.
    pub fn bans_mut(&mut self) -> &mut BanList {
        &mut self.bans
    }

    /// Carries out a [`Verdict::Ban`] of the peer at `addr`: its host is banned until
    /// `now +` [`Config::ban_duration`] and the expiry is returned; `None` for a loopback
    /// peer unless [`Config::ban_local`] is set (it is only disconnected).
    pub fn ban_misbehaving(&mut self, addr: &NetAddr, now: Time) -> Option<Time> {
        if addr.is_loopback() && !self.config.ban_local {
            return None;
        }
        let until = now + self.config.ban_duration;
        self.bans
            .ban(Subnet::host(addr.host), until, BanReason::Misbehaviour, now);
        Some(until)
    }

    /// Whether a ban in force at `now` covers `addr`.
    pub fn is_banned(&self, addr: &NetAddr, now: Time) -> bool {
        self.bans.is_banned(addr, now)
    }

    /// When expired bans should next be swept.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.bans.next_expiry()
    }

    /// Sweeps the bans expired at `now` and returns them.
    pub fn handle_timeout(&mut self, now: Time) -> Vec<BanEntry> {
        self.bans.sweep(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_counts_follow_inserts_and_removals() {
        let now = Time::from_secs(1);
        let mut list = BanList::new();
        let a: Subnet = "1.2.0.0/16".parse().unwrap();
        let b: Subnet = "9.9.0.0/16".parse().unwrap();
        list.ban(a, Time::from_secs(10), BanReason::Manual, now);
        list.ban(b, Time::from_secs(20), BanReason::Manual, now);
        assert_eq!(list.v4_prefixes.get(&16), Some(&2));
        list.unban(&a);
        assert_eq!(list.v4_prefixes.get(&16), Some(&1));
        list.sweep(Time::from_secs(20));
        assert!(list.v4_prefixes.is_empty() && list.expiries.is_empty());
    }
}
