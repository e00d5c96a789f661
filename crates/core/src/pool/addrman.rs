//! The address book: Bitcoin Core's address manager, as a plain deterministic structure.
//!
//! Addresses we have only heard about live in the **new** table (1024 buckets of 64 slots);
//! addresses we have connected to live in the **tried** table (256 buckets of 64 slots). Which
//! bucket and slot an address may take is a keyed hash (SipHash-2-4 under a per-node secret)
//! of its network group and, for the new table, of the group of the peer that announced it.
//! That is the eclipse-attack defence: a peer (or a /16 of peers) can reach only 64 of the 1024
//! new buckets however many addresses it sends, and addresses from one /16 can fill only 8 of
//! the 256 tried buckets, so an attacker cannot crowd out the honest part of the book.
//!
//! The rules follow Bitcoin Core's `addrman.cpp` (constants name their origin):
//! - [`AddrMan::add`]: gossip goes to the new table; an address may sit in up to 8 new buckets,
//!   each further reference half as likely as the last; a full slot is taken over only from a
//!   "terrible" entry or from one that has other references;
//! - [`AddrMan::good`]: a successful connection moves the address to tried; if its tried slot is
//!   taken, the newcomer waits in a small "tried collisions" set until the pool tests the
//!   incumbent with a feeler ([`AddrMan::select_tried_collision`],
//!   [`AddrMan::resolve_collisions`]); an incumbent that is evicted goes back to the new table;
//! - [`AddrMan::select`]: picks new or tried with even odds, then walks random buckets and
//!   accepts an entry with a probability that falls with recent and failed attempts;
//! - [`AddrMan::get_addr`]: what we answer to `getaddr`: a random sample, "terrible" entries
//!   left out.
//!
//! Nothing here reads a clock or the OS random generator: time is an argument, randomness a
//! seeded [`fastrand::Rng`] (owned for the few decisions inside [`AddrMan::add`], passed in
//! elsewhere), the secret key is given at construction. [`AddrMan::serialize`] writes the
//! format described in [`codec`]'s docs.
//!
//! ## Memory
//!
//! A full book (65 536 new + 16 384 tried entries) holds 15.1 MB (14.4 MiB) of heap: 168 bytes
//! per entry, 5 bytes per bucket of the address index (131 072 buckets), 4 bytes per table
//! slot (81 920 slots) and per entry of the random-order vector. An empty book holds the two
//! tables, 329 kB. `cargo bench -p peerpool-core --bench addrman` prints both
//! [`AddrMan::heap_size`] and what a counting allocator saw for a filled book.
//!
//! One peerpool rule on top of Core: [`AddrMan::select`] never hands out the same entry twice
//! in a row while any other entry matches the request, so a caller that loops over `select`
//! without recording attempts still makes progress.

mod bucket;
mod check;
pub mod codec;
mod collisions;
mod entries;
mod entry;
mod select;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use fastrand::Rng;
use hashbrown::HashTable;

use self::bucket::{Bucketer, IndexHasher, NewSlot, TriedSlot};
pub use self::entry::{AddrInfo, Placement};
use self::entry::{BookEntry, NewRefs, Place};
use crate::addr::{Host, NetAddr, Network};
use crate::asmap::NetGroups;
use crate::time::Time;

/// Buckets of the new table. Bitcoin Core: `ADDRMAN_NEW_BUCKET_COUNT` (1 << 10).
pub const NEW_BUCKET_COUNT: usize = 1 << 10;
/// Buckets of the tried table. Bitcoin Core: `ADDRMAN_TRIED_BUCKET_COUNT` (1 << 8).
pub const TRIED_BUCKET_COUNT: usize = 1 << 8;
/// Slots per bucket, both tables. Bitcoin Core: `ADDRMAN_BUCKET_SIZE` (1 << 6).
pub const BUCKET_SIZE: usize = 1 << 6;
/// Most entries the new table can hold (each takes at least one slot).
pub const NEW_CAPACITY: usize = NEW_BUCKET_COUNT * BUCKET_SIZE;
/// Most entries the tried table can hold.
pub const TRIED_CAPACITY: usize = TRIED_BUCKET_COUNT * BUCKET_SIZE;
/// Most entries the book can hold.
pub const MAX_ENTRIES: usize = NEW_CAPACITY + TRIED_CAPACITY;

/// How many new buckets the addresses announced by one source group are spread over.
/// Bitcoin Core: `ADDRMAN_NEW_BUCKETS_PER_SOURCE_GROUP`.
pub const NEW_BUCKETS_PER_SOURCE_GROUP: u64 = 64;
/// How many tried buckets the addresses of one group are spread over.
/// Bitcoin Core: `ADDRMAN_TRIED_BUCKETS_PER_GROUP`.
pub const TRIED_BUCKETS_PER_GROUP: u64 = 8;
/// Most new buckets one address may be in. Bitcoin Core: `ADDRMAN_NEW_BUCKETS_PER_ADDRESS`.
pub const NEW_BUCKETS_PER_ADDRESS: u8 = 8;

/// An address not seen for longer is terrible. Bitcoin Core: `ADDRMAN_HORIZON` (30 days).
pub const HORIZON: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Failed attempts after which a never-reached address is terrible.
/// Bitcoin Core: `ADDRMAN_RETRIES`.
pub const RETRIES: u32 = 3;
/// Failed attempts after which an address not reached within [`MIN_FAIL`] is terrible.
/// Bitcoin Core: `ADDRMAN_MAX_FAILURES`.
pub const MAX_FAILURES: u32 = 10;
/// See [`MAX_FAILURES`]. Bitcoin Core: `ADDRMAN_MIN_FAIL` (7 days).
pub const MIN_FAIL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// A tried entry that succeeded this recently keeps its slot against a colliding newcomer.
/// Bitcoin Core: `ADDRMAN_REPLACEMENT` (4 hours).
pub const REPLACEMENT: Duration = Duration::from_secs(4 * 60 * 60);
/// Most addresses waiting for a tried slot. Bitcoin Core: `ADDRMAN_SET_TRIED_COLLISION_SIZE`.
pub const MAX_TRIED_COLLISIONS: usize = 10;
/// After this long without a feeler verdict, a colliding newcomer evicts the incumbent anyway.
/// Bitcoin Core: `ADDRMAN_TEST_WINDOW` (40 minutes).
pub const TEST_WINDOW: Duration = Duration::from_secs(40 * 60);
/// A feeler to a tried incumbent gets this long to succeed before it counts as failed.
/// Bitcoin Core: the 60 s in `ResolveCollisions_`.
pub const FEELER_GRACE: Duration = Duration::from_secs(60);
/// Entries tried this recently are never terrible. Bitcoin Core: the 1 minute in `IsTerrible`.
pub const TERRIBLE_GRACE: Duration = Duration::from_secs(60);
/// Entries tried this recently get 1% of their selection chance. Bitcoin Core: the 10 minutes
/// in `GetChance`.
pub const RECENT_TRY: Duration = Duration::from_secs(10 * 60);
/// A last-seen time further in the future is implausible (terrible in the book, replaced on
/// arrival). Bitcoin Core: the 10 minutes in `IsTerrible` and in `ProcessMessage` for `addr`.
pub const MAX_FUTURE_DRIFT: Duration = Duration::from_secs(10 * 60);
/// Announced times at or before this are implausible. Bitcoin Core: the `100000000` in
/// `ProcessMessage` for `addr`.
pub const MIN_PLAUSIBLE_TIME: Time = Time::from_secs(100_000_000);
/// An implausible announced time is replaced by `now` minus this. Bitcoin Core: the 5 days in
/// `ProcessMessage` for `addr`.
pub const IMPLAUSIBLE_TIME_AGE: Duration = Duration::from_secs(5 * 24 * 60 * 60);
/// [`AddrMan::connected`] refreshes last-seen at most this often. Bitcoin Core: the 20
/// minutes in `Connected_`.
pub const CONNECTED_UPDATE_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// A known address's last-seen follows gossip only when that is newer by more than this, while
/// the address looks online (seen within [`ONLINE_WINDOW`]). Bitcoin Core: `AddSingle`'s 1 h.
pub const ONLINE_UPDATE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// As [`ONLINE_UPDATE_INTERVAL`] for addresses that do not look online. Bitcoin Core:
/// `AddSingle`'s 24 h.
pub const OFFLINE_UPDATE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// An address announced as seen within this window is taken to be online. Bitcoin Core:
/// `AddSingle`'s 24 h.
pub const ONLINE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Random bucket probes [`AddrMan::select`] makes before it falls back to a scan of the
/// table. Core loops forever; this bound only matters for a book whose few eligible entries
/// are all nearly unselectable, and keeps `select` from spinning on a bug.
const MAX_SELECT_PROBES: u32 = 1 << 20;

/// An announced address: where, what it offers, when it was last seen (the tuple of an
/// `addr`/`addrv2` entry).
pub type AddrRecord = (NetAddr, ServiceFlags, Time);

/// Settings of the book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Accept unroutable addresses (loopback, private ranges, link-local): needed for a test
    /// network on 127.x.y.z. Unspecified, multicast and broadcast addresses are refused
    /// regardless. Default `false`, as Bitcoin Core (which refuses all unroutable addresses).
    pub allow_local: bool,
    /// On a tried-slot collision, keep the incumbent until a feeler has tested it (Bitcoin
    /// Core's test-before-evict, on since 0.17: `Good(addr, test_before_evict = true)`).
    /// `false` evicts the incumbent at once, as Core did before. Default `true`.
    pub test_before_evict: bool,
    /// How addresses are grouped for bucketing: by prefix (the default) or by AS with an
    /// asmap. A book saved under other groups is re-bucketed when loaded (see [`codec`]).
    pub groups: NetGroups,
}

impl Default for Config {
    /// Bitcoin Core's behaviour: no local addresses, test before evicting, prefix groups.
    fn default() -> Config {
        Config {
            allow_local: false,
            test_before_evict: true,
            groups: NetGroups::by_prefix(),
        }
    }
}

/// One of the two tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Addresses heard about.
    New,
    /// Addresses we connected to.
    Tried,
}

/// Entries per table (Core's `getaddrmaninfo` numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// In the new table.
    pub new: usize,
    /// In the tried table.
    pub tried: usize,
}

impl TableCounts {
    /// Both tables together.
    pub fn total(&self) -> usize {
        self.new + self.tried
    }
}

/// What [`AddrMan::good`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoodOutcome {
    /// Moved from new to tried.
    MovedToTried,
    /// Already in tried; its success time was refreshed.
    AlreadyTried,
    /// Its tried slot is taken; it waits in the collision set for a feeler verdict (or the set
    /// was full and it stays in new).
    Collision,
    /// Not in the book.
    Unknown,
}

/// Why a serialized book was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrManError {
    /// The data ended in the middle of a field.
    #[error("address book data truncated while reading {0}")]
    Truncated(&'static str),
    /// The magic bytes are not `PPAM`.
    #[error("not a peerpool address book (bad magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("unsupported address book format version {0}")]
    UnsupportedVersion(u8),
    /// The checksum does not match the content.
    #[error("address book checksum mismatch")]
    BadChecksum,
    /// Bytes left over after the last field.
    #[error("{0} unexpected bytes after the address book")]
    TrailingBytes(usize),
    /// More entries than the tables can hold.
    #[error("address book claims {0} entries, more than the tables hold")]
    TooManyEntries(u64),
    /// An unknown network id, a non-canonical or impossible host.
    #[error("invalid address encoding: {0}")]
    InvalidAddress(&'static str),
    /// A field holds a value outside its domain.
    #[error("invalid value in field {0}")]
    InvalidField(&'static str),
    /// The same address twice.
    #[error("address {0} appears twice")]
    DuplicateAddress(NetAddr),
    /// A new-bucket number out of range, or the same bucket twice for one entry.
    #[error("entry {0} has an invalid new-bucket list")]
    InvalidBuckets(NetAddr),
    /// Two entries claim the same slot: the data does not match its key.
    #[error("entry {0} collides with another entry's slot")]
    SlotConflict(NetAddr),
    /// A tried entry with no successful connection.
    #[error("tried entry {0} has never been connected to")]
    TriedWithoutSuccess(NetAddr),
    /// The loaded book fails the consistency check.
    #[error("address book inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// What to do with a newcomer waiting for a tried slot.
enum Verdict {
    /// Not yet decidable.
    Wait,
    /// Forget the collision (the incumbent stays, or the newcomer is already tried).
    Drop,
    /// Move the newcomer to tried, evicting `replacing` if any.
    MoveIn { replacing: Option<NetAddr> },
}

/// Stable identity of an entry: its index in the entry vector, plus one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct EntryId(NonZeroU32);

impl EntryId {
    fn from_index(i: usize) -> EntryId {
        // The book holds at most MAX_ENTRIES (81920) entries, far from saturating.
        EntryId(NonZeroU32::MIN.saturating_add(u32::try_from(i).unwrap_or(u32::MAX)))
    }
    fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

/// The address book. See the module docs.
#[derive(Clone)]
pub struct AddrMan {
    config: Config,
    key: [u8; 16],
    bucketer: Bucketer,
    rng: Rng,
    /// Entries by id; `None` marks a free id (listed in `free`).
    entries: Vec<Option<BookEntry>>,
    free: Vec<EntryId>,
    /// Address -> id. Holds bare ids (4 bytes a bucket) and compares addresses through
    /// `entries`, a third of the memory of a map keyed by the 36-byte address.
    index: HashTable<EntryId>,
    index_hasher: IndexHasher,
    /// Every live id once, in an order `get_addr` shuffles (Core's `vRandom`).
    random: Vec<EntryId>,
    new_table: Box<[Option<EntryId>]>,
    tried_table: Box<[Option<EntryId>]>,
    /// Occupied slots per bucket, so that `select` skips empty buckets without a scan.
    new_fill: Box<[u8]>,
    tried_fill: Box<[u8]>,
    /// Per network, indexed by `net_index`.
    counts: [TableCounts; 5],
    /// Newcomers waiting for a tried slot, oldest first (Core's `m_tried_collisions`).
    collisions: Vec<EntryId>,
    /// Our last successful connection to anyone (Core's `m_last_good`): failures count only
    /// once per success, so a node that is offline does not mark the whole book as failing.
    last_good: Option<Time>,
    /// What the last `select` returned.
    last_selected: Option<EntryId>,
}

/// Makes room for one more element, doubling as `Vec` does but never past the most the book
/// can hold, so that a full book does not carry 60% of unused capacity.
fn grow_toward_max<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        let target = (v.capacity() * 2).clamp(64, MAX_ENTRIES);
        // Past MAX_ENTRIES (never expected), `push` grows as usual.
        v.reserve_exact(target.saturating_sub(v.len()).max(1));
    }
}

fn net_index(n: Network) -> usize {
    match n {
        Network::Ipv4 => 0,
        Network::Ipv6 => 1,
        Network::Onion => 2,
        Network::I2p => 3,
        Network::Cjdns => 4,
    }
}

/// Unspecified, multicast or broadcast: never a peer, whatever the configuration.
fn never_a_peer(addr: &NetAddr) -> bool {
    match addr.host {
        Host::Ipv4(ip) => ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast(),
        Host::Ipv6(ip) => ip.is_unspecified() || ip.is_multicast(),
        Host::TorV3(_) | Host::I2p(_) | Host::Cjdns(_) => false,
    }
}

/// Replaces an implausible announced time (Bitcoin Core does this in `ProcessMessage`).
fn plausible_time(seen: Time, now: Time) -> Time {
    if seen <= MIN_PLAUSIBLE_TIME || seen > now + MAX_FUTURE_DRIFT {
        now - IMPLAUSIBLE_TIME_AGE
    } else {
        seen
    }
}

impl AddrMan {
    /// An empty book with the per-node secret `key` (draw it from a secure source once and
    /// keep it: it is saved with the book) and a seeded generator for the random choices of
    /// [`AddrMan::add`].
    pub fn new(config: Config, key: [u8; 16], rng: Rng) -> AddrMan {
        let bucketer = Bucketer::new(key, config.groups.clone());
        AddrMan {
            config,
            key,
            index: HashTable::new(),
            index_hasher: bucketer.index_hasher(),
            bucketer,
            rng,
            entries: Vec::new(),
            free: Vec::new(),
            random: Vec::new(),
            new_table: vec![None; NEW_CAPACITY].into_boxed_slice(),
            tried_table: vec![None; TRIED_CAPACITY].into_boxed_slice(),
            new_fill: vec![0; NEW_BUCKET_COUNT].into_boxed_slice(),
            tried_fill: vec![0; TRIED_BUCKET_COUNT].into_boxed_slice(),
            counts: [TableCounts::default(); 5],
            collisions: Vec::new(),
            last_good: None,
            last_selected: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- queries -----

    /// Entries in both tables.
    pub fn size(&self) -> usize {
        self.random.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.random.is_empty()
    }

    /// Entries per table, all networks.
    pub fn counts(&self) -> TableCounts {
        self.counts
            .iter()
            .fold(TableCounts::default(), |a, c| TableCounts {
                new: a.new + c.new,
                tried: a.tried + c.tried,
            })
    }

    /// Entries per table for one network.
    pub fn network_counts(&self, network: Network) -> TableCounts {
        self.counts[net_index(network)]
    }

    /// Entries per table for every network, in [`Network`] order (for `getaddrmaninfo`).
    pub fn counts_by_network(&self) -> impl Iterator<Item = (Network, TableCounts)> + '_ {
        Network::ALL.iter().map(|&n| (n, self.network_counts(n)))
    }

    /// What the book knows about `addr`.
    pub fn info(&self, addr: &NetAddr) -> Option<AddrInfo> {
        self.find(addr).map(|id| self.entry(id).info())
    }

    /// Every entry, in no particular (but deterministic) order.
    pub fn entries(&self) -> impl Iterator<Item = AddrInfo> + '_ {
        self.entries.iter().flatten().map(BookEntry::info)
    }

    /// Every occupied slot of `table` as `(bucket, position, entry)`, in table order (Core's
    /// `getrawaddrman`). An entry in several new buckets appears once per bucket.
    pub fn slots(&self, table: Table) -> impl Iterator<Item = (usize, usize, AddrInfo)> + '_ {
        let t = match table {
            Table::New => &self.new_table,
            Table::Tried => &self.tried_table,
        };
        t.iter().enumerate().filter_map(move |(i, id)| {
            id.map(|id| (i / BUCKET_SIZE, i % BUCKET_SIZE, self.entry(id).info()))
        })
    }

    /// Addresses waiting for a tried slot (see [`AddrMan::select_tried_collision`]).
    pub fn tried_collisions(&self) -> impl Iterator<Item = NetAddr> + '_ {
        self.collisions.iter().map(|&id| self.entry(id).addr)
    }

    /// Heap bytes the book holds: tables, entry storage and index, counting allocated
    /// capacity. The index's share is computed from hashbrown's layout (one control byte and
    /// one 4-byte id per bucket, buckets a power of two at most 7/8 full, plus one group of
    /// 16 trailing control bytes).
    pub fn heap_size(&self) -> usize {
        use std::mem::size_of;
        let tables = (self.new_table.len() + self.tried_table.len()) * size_of::<Option<EntryId>>()
            + self.new_fill.len()
            + self.tried_fill.len();
        let entries = self.entries.capacity() * size_of::<Option<BookEntry>>()
            + (self.free.capacity() + self.random.capacity() + self.collisions.capacity())
                * size_of::<EntryId>();
        let index = crate::mem::hash_table_heap_size(self.index.capacity(), size_of::<EntryId>());
        tables + entries + index
    }

    // ----- inputs -----

    /// Adds gossip from `source` (Bitcoin Core: `Add`); the number of addresses that took a
    /// new slot (a new entry or another reference to a known one).
    ///
    /// Unroutable addresses are skipped unless [`Config::allow_local`]. An announced time
    /// more than [`MAX_FUTURE_DRIFT`] ahead or before [`MIN_PLAUSIBLE_TIME`] becomes
    /// `now - IMPLAUSIBLE_TIME_AGE`; new entries are then backdated by `time_penalty` (none when
    /// the source announces itself). A known address gets the announced services added and a
    /// fresher last-seen, and now and then one more new-table reference.
    pub fn add(
        &mut self,
        addrs: &[AddrRecord],
        source: NetAddr,
        time_penalty: Duration,
        now: Time,
    ) -> usize {
        let mut added = 0;
        for &(addr, services, seen) in addrs {
            if self.add_one(addr, services, seen, source, time_penalty, now) {
                added += 1;
            }
        }
        if added > 0 {
            tracing::trace!(%source, added, of = addrs.len(), "addrman: added addresses");
        }
        added
    }

    /// Whether the book would take `addr` at all: routable, or local with
    /// [`Config::allow_local`] (only such addresses are worth relaying either).
    pub fn acceptable(&self, addr: &NetAddr) -> bool {
        addr.is_routable() || (self.config.allow_local && !never_a_peer(addr))
    }

    fn add_one(
        &mut self,
        addr: NetAddr,
        services: ServiceFlags,
        seen: Time,
        source: NetAddr,
        time_penalty: Duration,
        now: Time,
    ) -> bool {
        if !self.acceptable(&addr) {
            return false;
        }
        let seen = plausible_time(seen, now);
        // A peer announcing itself is first-hand news.
        let penalty = if addr.host == source.host {
            Duration::ZERO
        } else {
            time_penalty
        };
        let slot = self.bucketer.new_slot_from(&addr, &source);
        let Some(id) = self.find(&addr) else {
            // A fresh address: it takes the slot if that is free, held by a terrible entry,
            // or held by an entry that lives on in other buckets.
            let take = match self.new_table[slot.index()] {
                None => true,
                Some(occupant) => {
                    let o = self.entry(occupant);
                    o.is_terrible(now) || o.new_refs() > 1
                }
            };
            if !take {
                return false;
            }
            self.clear_new(slot);
            self.create(addr, source, services, seen - penalty, slot);
            return true;
        };

        let entry = self.entry_mut(id);
        let interval = if now.since(seen) < ONLINE_WINDOW {
            ONLINE_UPDATE_INTERVAL
        } else {
            OFFLINE_UPDATE_INTERVAL
        };
        if entry.last_seen < seen - interval - penalty {
            entry.last_seen = seen - penalty;
        }
        entry.services |= services;
        // Only news fresher than what we hold earns another reference.
        if seen <= entry.last_seen {
            return false;
        }
        let refs = match entry.place {
            Place::Tried(_) => return false,
            Place::New(refs) => refs,
        };
        if refs.is_full() {
            return false;
        }
        // Each extra reference is half as likely as the previous one (1 in 2^refs).
        if refs.len() > 0 && self.rng.u32(..1u32 << refs.len()) != 0 {
            return false;
        }
        let take = match self.new_table[slot.index()] {
            None => true,
            Some(occupant) if occupant == id => false,
            // Core also lets an entry without references displace one with several; a known
            // entry in new always has a reference, so only terrible occupants give way here.
            Some(occupant) => self.entry(occupant).is_terrible(now),
        };
        if !take {
            return false;
        }
        self.clear_new(slot);
        self.put_new(slot, id);
        true
    }

    /// A successful connection to `addr` (Bitcoin Core: `Good`): resets its failure count and,
    /// if it is in new, moves it to tried, subject to [`Config::test_before_evict`].
    pub fn good(&mut self, addr: &NetAddr, now: Time) -> GoodOutcome {
        self.last_good = Some(now);
        match self.find(addr) {
            Some(id) => self.good_id(id, self.config.test_before_evict, now),
            None => GoodOutcome::Unknown,
        }
    }

    fn good_id(&mut self, id: EntryId, test_before_evict: bool, now: Time) -> GoodOutcome {
        self.last_good = Some(now);
        let entry = self.entry_mut(id);
        entry.last_success = Some(now);
        entry.last_try = Some(now);
        entry.attempts = 0;
        if entry.is_tried() {
            return GoodOutcome::AlreadyTried;
        }
        let addr = entry.addr;
        let slot = self.bucketer.tried_slot(&addr);
        if let Some(incumbent) = self.tried_table[slot.index()] {
            if test_before_evict {
                if self.collisions.len() < MAX_TRIED_COLLISIONS && !self.collisions.contains(&id) {
                    self.collisions.push(id);
                }
                tracing::debug!(
                    %addr,
                    incumbent = %self.entry(incumbent).addr,
                    waiting = self.collisions.len(),
                    "addrman: tried collision"
                );
                return GoodOutcome::Collision;
            }
        }
        self.make_tried(id, slot);
        GoodOutcome::MovedToTried
    }

    /// A connection attempt to `addr` (Bitcoin Core: `Attempt`). A failure is counted only if
    /// `count_failure` and we have connected to anyone since the last counted failure.
    pub fn attempt(&mut self, addr: &NetAddr, count_failure: bool, now: Time) {
        let last_good = self.last_good;
        let Some(id) = self.find(addr) else { return };
        let entry = self.entry_mut(id);
        entry.last_try = Some(now);
        let counts = match (entry.last_count_attempt, last_good) {
            (None, _) => true,
            (Some(counted), Some(good)) => counted < good,
            (Some(_), None) => false,
        };
        if count_failure && counts {
            entry.last_count_attempt = Some(now);
            entry.attempts = entry.attempts.saturating_add(1);
        }
    }

    /// We are (or were until now) connected to `addr` (Bitcoin Core: `Connected`): refreshes
    /// its last-seen, at most every [`CONNECTED_UPDATE_INTERVAL`] so that the time we relay
    /// does not reveal our connections precisely.
    pub fn connected(&mut self, addr: &NetAddr, now: Time) {
        let Some(id) = self.find(addr) else { return };
        let entry = self.entry_mut(id);
        if now.since(entry.last_seen) > CONNECTED_UPDATE_INTERVAL {
            entry.last_seen = now;
        }
    }

    /// Sets the services of `addr` to what its `version` message said (Bitcoin Core:
    /// `SetServices`).
    pub fn set_services(&mut self, addr: &NetAddr, services: ServiceFlags) {
        if let Some(id) = self.find(addr) {
            self.entry_mut(id).services = services;
        }
    }

    /// Forgets `addr`; whether it was there.
    pub fn remove(&mut self, addr: &NetAddr) -> bool {
        let Some(id) = self.find(addr) else {
            return false;
        };
        match self.entry(id).place {
            Place::New(refs) => {
                for &slot in refs.as_slice() {
                    self.take_new(slot);
                }
                self.entry_mut(id).place = Place::New(NewRefs::default());
            }
            Place::Tried(slot) => {
                self.take_tried(slot);
                // `delete` takes a new entry without references and counts it out of new.
                let c = &mut self.counts[net_index(addr.network())];
                c.tried -= 1;
                c.new += 1;
                self.entry_mut(id).place = Place::New(NewRefs::default());
            }
        }
        self.delete(id);
        true
    }

    // ----- internals -----

    fn find(&self, addr: &NetAddr) -> Option<EntryId> {
        let hash = self.index_hasher.hash_one(addr);
        self.index
            .find(hash, |&id| self.entry(id).addr == *addr)
            .copied()
    }

    fn entry(&self, id: EntryId) -> &BookEntry {
        self.entries[id.index()]
            .as_ref()
            .expect("addrman: ids in tables and lists name live entries")
    }

    fn entry_mut(&mut self, id: EntryId) -> &mut BookEntry {
        self.entries[id.index()]
            .as_mut()
            .expect("addrman: ids in tables and lists name live entries")
    }

    /// A new entry holding one new slot (which must be free).
    fn create(
        &mut self,
        addr: NetAddr,
        source: NetAddr,
        services: ServiceFlags,
        last_seen: Time,
        slot: NewSlot,
    ) -> EntryId {
        let entry = BookEntry {
            addr,
            source,
            services,
            last_seen,
            last_try: None,
            last_success: None,
            last_count_attempt: None,
            attempts: 0,
            // Set by `insert_entry`.
            random_pos: 0,
            place: Place::New(NewRefs::default()),
        };
        let id = self.insert_entry(entry);
        self.counts[net_index(addr.network())].new += 1;
        self.put_new(slot, id);
        id
    }

    /// Stores an entry under a fresh id and indexes it; placement is the caller's.
    fn insert_entry(&mut self, mut entry: BookEntry) -> EntryId {
        entry.random_pos = u32::try_from(self.random.len()).unwrap_or(u32::MAX);
        let addr = entry.addr;
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id.index()] = Some(entry);
                id
            }
            None => {
                grow_toward_max(&mut self.entries);
                self.entries.push(Some(entry));
                EntryId::from_index(self.entries.len() - 1)
            }
        };
        grow_toward_max(&mut self.random);
        self.random.push(id);
        let hash = self.index_hasher.hash_one(addr);
        let (entries, hasher) = (&self.entries, &self.index_hasher);
        // Every indexed id names a live entry.
        self.index.insert_unique(hash, id, |&other| {
            entries[other.index()]
                .as_ref()
                .map_or(0, |e| hasher.hash_one(e.addr))
        });
        id
    }

    /// Drops an entry that is in new with no references left (Core's `Delete`).
    fn delete(&mut self, id: EntryId) {
        let (addr, pos) = {
            let e = self.entry(id);
            debug_assert!(e.new_refs() == 0 && !e.is_tried());
            (e.addr, e.random_pos as usize)
        };
        let last = self.random.len() - 1;
        self.swap_random(pos, last);
        self.random.pop();
        let hash = self.index_hasher.hash_one(addr);
        if let Ok(slot) = self.index.find_entry(hash, |&other| other == id) {
            slot.remove();
        }
        self.entries[id.index()] = None;
        self.free.push(id);
        self.counts[net_index(addr.network())].new -= 1;
        self.collisions.retain(|&c| c != id);
        if self.last_selected == Some(id) {
            self.last_selected = None;
        }
    }

    fn swap_random(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        self.random.swap(a, b);
        let (ia, ib) = (self.random[a], self.random[b]);
        self.entry_mut(ia).random_pos = a as u32;
        self.entry_mut(ib).random_pos = b as u32;
    }

    /// Puts `id` in an empty new slot and records the reference.
    fn put_new(&mut self, slot: NewSlot, id: EntryId) {
        debug_assert!(self.new_table[slot.index()].is_none());
        self.new_table[slot.index()] = Some(id);
        self.new_fill[slot.bucket()] += 1;
        if let Place::New(refs) = &mut self.entry_mut(id).place {
            refs.push(slot);
        }
    }

    /// Empties a new slot without touching the occupant's record.
    fn take_new(&mut self, slot: NewSlot) -> Option<EntryId> {
        let id = self.new_table[slot.index()].take()?;
        self.new_fill[slot.bucket()] -= 1;
        Some(id)
    }

    fn take_tried(&mut self, slot: TriedSlot) -> Option<EntryId> {
        let id = self.tried_table[slot.index()].take()?;
        self.tried_fill[slot.bucket()] -= 1;
        Some(id)
    }

    fn put_tried(&mut self, slot: TriedSlot, id: EntryId) {
        debug_assert!(self.tried_table[slot.index()].is_none());
        self.tried_table[slot.index()] = Some(id);
        self.tried_fill[slot.bucket()] += 1;
        self.entry_mut(id).place = Place::Tried(slot);
    }

    /// Empties a new slot; an occupant left with no reference is deleted (Core's `ClearNew`).
    fn clear_new(&mut self, slot: NewSlot) {
        let Some(id) = self.take_new(slot) else {
            return;
        };
        let entry = self.entry_mut(id);
        let gone = match &mut entry.place {
            Place::New(refs) => {
                refs.remove(slot);
                refs.len() == 0
            }
            Place::Tried(_) => false,
        };
        if gone {
            self.delete(id);
        }
    }

    /// Moves a new entry to `slot` of tried; an incumbent goes back to the new bucket its
    /// source gives it (Core's `MakeTried`).
    fn make_tried(&mut self, id: EntryId, slot: TriedSlot) {
        let (addr, refs) = {
            let e = self.entry(id);
            match e.place {
                Place::New(refs) => (e.addr, refs),
                Place::Tried(_) => return,
            }
        };
        for &s in refs.as_slice() {
            self.take_new(s);
        }
        self.entry_mut(id).place = Place::New(NewRefs::default());
        self.counts[net_index(addr.network())].new -= 1;

        if let Some(old) = self.take_tried(slot) {
            let (old_addr, old_source) = {
                let e = self.entry(old);
                (e.addr, e.source)
            };
            self.counts[net_index(old_addr.network())].tried -= 1;
            let back = self.bucketer.new_slot_from(&old_addr, &old_source);
            self.clear_new(back);
            self.entry_mut(old).place = Place::New(NewRefs::default());
            self.put_new(back, old);
            self.counts[net_index(old_addr.network())].new += 1;
            tracing::debug!(evicted = %old_addr, by = %addr, "addrman: tried entry moved back to new");
        }
        self.put_tried(slot, id);
        self.counts[net_index(addr.network())].tried += 1;
    }
}

impl PartialEq for AddrMan {
    /// Same key, settings and content (entries with all their fields and slots, waiting
    /// collisions, last success time); the generator and the random order are not compared.
    fn eq(&self, other: &AddrMan) -> bool {
        self.key == other.key
            && self.config == other.config
            && self.last_good == other.last_good
            && self.size() == other.size()
            && self.entries.iter().flatten().all(|e| {
                other
                    .find(&e.addr)
                    .is_some_and(|o| e.same_as(other.entry(o)))
            })
            && self.tried_collisions().eq(other.tried_collisions())
    }
}

impl fmt::Debug for AddrMan {
    /// Counts only: the key is secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.counts();
        f.debug_struct("AddrMan")
            .field("new", &c.new)
            .field("tried", &c.tried)
            .field("collisions", &self.collisions.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
