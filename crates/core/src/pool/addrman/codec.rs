//! The address book on disk: peerpool's own binary format, version 2 (version 1 is read too).
//!
//! All integers are little-endian. Slot positions are not stored: they are keyed hashes of the
//! address and bucket, recomputed on load, so a file whose entries do not fit its key (two
//! entries in one slot) is refused. Which new buckets hold an entry is stored, because those
//! depend on every peer that announced the address, not only on the first.
//!
//! Buckets also depend on how addresses are grouped (by prefix, or by AS with an asmap), so
//! the file names its grouping. A book loaded under another grouping (an asmap added, changed
//! or removed) is re-bucketed as Bitcoin Core does it: each new entry goes to the one bucket
//! its first source gives under the new groups, each tried entry to its new tried slot, and
//! entries whose slot is already taken are dropped.
//!
//! | field | bytes | content |
//! |---|---|---|
//! | magic | 4 | `PPAM` |
//! | version | 1 | `2` |
//! | grouping | 32 | (version 2 only) the asmap's SHA-256, all zeros for prefix groups |
//! | key | 16 | the per-node secret of the keyed hashes |
//! | last good | opt-time | our last successful connection to anyone |
//! | entry count | 4 | at most [`MAX_ENTRIES`] |
//! | entries | | `entry count` entries, below |
//! | collision count | 1 | at most [`MAX_TRIED_COLLISIONS`] |
//! | collisions | 4 each | indices into the entry list, distinct |
//! | checksum | 8 | SipHash-2-4 under the all-zero key of every byte before it |
//!
//! An entry:
//!
//! | field | bytes | content |
//! |---|---|---|
//! | address | addr | |
//! | source | addr | who first announced it |
//! | services | 8 | service bits |
//! | last seen | 8 | microseconds since the epoch |
//! | last try, last success, last counted failure | opt-time each | |
//! | attempts | 4 | counted failures |
//! | table | 1 | `0` new, `1` tried |
//! | (new only) reference count | 1 | 1 to 8 |
//! | (new only) buckets | 2 each | distinct new-bucket numbers below 1024 |
//!
//! An *opt-time* is a byte `0` (never), or a byte `1` and 8 bytes of microseconds. An *addr* is
//! the BIP155 network id (1 IPv4, 2 IPv6, 4 Tor v3, 5 I2P, 6 CJDNS), the host (4, 16, 32, 32
//! or 16 bytes; IPv6 never IPv4-mapped, CJDNS in fc00::/8) and a 2-byte port.
//!
//! Entries the loading configuration would not accept (local addresses without
//! [`Config::allow_local`](super::Config::allow_local)) are dropped on load rather than
//! refused: the file is sound, the node just no longer wants them.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use bitcoin::p2p::ServiceFlags;
use fastrand::Rng;
use siphasher::sip::SipHasher24;

use super::bucket::{addr_bytes, NewSlot};
use super::entry::{BookEntry, NewRefs, Place};
use super::{
    net_index, AddrMan, AddrManError, Config, EntryId, MAX_ENTRIES, MAX_TRIED_COLLISIONS,
    NEW_BUCKETS_PER_ADDRESS, NEW_BUCKET_COUNT,
};
use crate::addr::{Host, NetAddr};
use crate::asmap::NetGroups;
use crate::time::Time;

/// The first four bytes of a serialized book.
pub const MAGIC: [u8; 4] = *b"PPAM";
/// The format version [`AddrMan::serialize`] writes and [`AddrMan::deserialize`] reads.
pub const VERSION: u8 = 2;
/// Bytes of the trailing checksum.
const CHECKSUM_LEN: usize = 8;
/// Smallest possible entry: two IPv4 addresses (7 bytes each), services, last seen, three
/// absent times, attempts, table (a tried entry lists no buckets).
const MIN_ENTRY_LEN: usize = 7 + 7 + 8 + 8 + 3 + 4 + 1;

fn checksum(data: &[u8]) -> u64 {
    SipHasher24::new_with_key(&[0; 16]).hash(data)
}

fn put_time(out: &mut Vec<u8>, t: Option<Time>) {
    match t {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.as_micros().to_le_bytes());
        }
    }
}

fn put_addr(out: &mut Vec<u8>, addr: &NetAddr) {
    let (bytes, len) = addr_bytes(addr);
    out.extend_from_slice(&bytes[..len]);
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AddrManError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(AddrManError::Truncated(what))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], AddrManError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, AddrManError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, AddrManError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, AddrManError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, AddrManError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn time(&mut self, what: &'static str) -> Result<Time, AddrManError> {
        Ok(Time::from_micros(self.u64(what)?))
    }

    fn opt_time(&mut self, what: &'static str) -> Result<Option<Time>, AddrManError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.time(what)?)),
            _ => Err(AddrManError::InvalidField(what)),
        }
    }

    fn addr(&mut self, what: &'static str) -> Result<NetAddr, AddrManError> {
        let host = match self.u8(what)? {
            1 => Host::Ipv4(Ipv4Addr::from(self.array::<4>(what)?)),
            2 => {
                let ip = Ipv6Addr::from(self.array::<16>(what)?);
                if ip.to_ipv4_mapped().is_some() {
                    return Err(AddrManError::InvalidAddress("IPv4-mapped IPv6 address"));
                }
                Host::Ipv6(ip)
            }
            4 => Host::TorV3(self.array(what)?),
            5 => Host::I2p(self.array(what)?),
            6 => {
                let ip = Ipv6Addr::from(self.array::<16>(what)?);
                if ip.octets()[0] != 0xfc {
                    return Err(AddrManError::InvalidAddress(
                        "CJDNS address outside fc00::/8",
                    ));
                }
                Host::Cjdns(ip)
            }
            _ => return Err(AddrManError::InvalidAddress("unknown network id")),
        };
        let port = self.u16(what)?;
        Ok(NetAddr { host, port })
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

/// One entry as read, before placement.
struct Record {
    entry: BookEntry,
    /// New buckets; empty for a tried entry.
    buckets: Vec<u16>,
    tried: bool,
}

fn read_record(r: &mut Reader<'_>) -> Result<Record, AddrManError> {
    let addr = r.addr("entry address")?;
    let source = r.addr("entry source")?;
    let services = ServiceFlags::from(r.u64("services")?);
    let last_seen = r.time("last seen")?;
    let last_try = r.opt_time("last try")?;
    let last_success = r.opt_time("last success")?;
    let last_count_attempt = r.opt_time("last counted failure")?;
    let attempts = r.u32("attempts")?;
    let (tried, buckets) = match r.u8("table")? {
        0 => {
            let n = r.u8("reference count")?;
            if n == 0 || n > NEW_BUCKETS_PER_ADDRESS {
                return Err(AddrManError::InvalidField("reference count"));
            }
            let mut buckets = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                buckets.push(r.u16("new bucket")?);
            }
            (false, buckets)
        }
        1 => (true, Vec::new()),
        _ => return Err(AddrManError::InvalidField("table")),
    };
    Ok(Record {
        entry: BookEntry {
            addr,
            source,
            services,
            last_seen,
            last_try,
            last_success,
            last_count_attempt,
            attempts,
            random_pos: 0,
            place: Place::New(NewRefs::default()),
        },
        buckets,
        tried,
    })
}

impl AddrMan {
    /// The book in the format of the [`codec`](self) module docs, key included: keep the
    /// file private.
    pub fn serialize(&self) -> Vec<u8> {
        let size = self.size();
        let mut out = Vec::with_capacity(64 + size * 96);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.config.groups.version());
        out.extend_from_slice(&self.key);
        put_time(&mut out, self.last_good);
        // At most MAX_ENTRIES, so it fits.
        out.extend_from_slice(&(size as u32).to_le_bytes());
        // Position of each live id in the file, for the collision list.
        let mut file_index = vec![0u32; self.entries.len()];
        let mut next = 0u32;
        for (i, e) in self.entries.iter().enumerate() {
            let Some(e) = e else { continue };
            file_index[i] = next;
            next += 1;
            put_addr(&mut out, &e.addr);
            put_addr(&mut out, &e.source);
            out.extend_from_slice(&e.services.to_u64().to_le_bytes());
            out.extend_from_slice(&e.last_seen.as_micros().to_le_bytes());
            put_time(&mut out, e.last_try);
            put_time(&mut out, e.last_success);
            put_time(&mut out, e.last_count_attempt);
            out.extend_from_slice(&e.attempts.to_le_bytes());
            match e.place {
                Place::New(refs) => {
                    out.push(0);
                    out.push(refs.len());
                    for s in refs.as_slice() {
                        // Below 1024.
                        out.extend_from_slice(&(s.bucket() as u16).to_le_bytes());
                    }
                }
                Place::Tried(_) => out.push(1),
            }
        }
        // At most MAX_TRIED_COLLISIONS.
        out.push(self.collisions.len() as u8);
        for c in &self.collisions {
            out.extend_from_slice(&file_index[c.index()].to_le_bytes());
        }
        let sum = checksum(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Loads a book written by [`AddrMan::serialize`] with the default [`Config`] and a
    /// generator seeded from the stored key. See [`AddrMan::deserialize_with`].
    pub fn deserialize(data: &[u8]) -> Result<AddrMan, AddrManError> {
        let key_at = if data.get(4) == Some(&1) { 5 } else { 5 + 32 };
        let key = match data.get(key_at..key_at + 16) {
            Some(k) => {
                let mut key = [0u8; 16];
                key.copy_from_slice(k);
                key
            }
            None => [0; 16],
        };
        let seed = super::bucket::Bucketer::new(key, NetGroups::by_prefix()).derived_seed();
        AddrMan::deserialize_with(data, Config::default(), Rng::with_seed(seed))
    }

    /// Loads a book written by [`AddrMan::serialize`], checking every field, every slot and
    /// the checksum; never panics on any input. Entries that `config` does not accept are
    /// dropped (see the [`codec`](self) docs).
    pub fn deserialize_with(
        data: &[u8],
        config: Config,
        rng: Rng,
    ) -> Result<AddrMan, AddrManError> {
        let mut r = Reader { data, pos: 0 };
        if r.array::<4>("magic")? != MAGIC {
            return Err(AddrManError::BadMagic);
        }
        let version = r.u8("version")?;
        if version != 1 && version != VERSION {
            return Err(AddrManError::UnsupportedVersion(version));
        }
        let body_len = data
            .len()
            .checked_sub(CHECKSUM_LEN)
            .filter(|&n| n >= r.pos)
            .ok_or(AddrManError::Truncated("checksum"))?;
        let (body, sum) = data.split_at(body_len);
        let mut stored = [0u8; CHECKSUM_LEN];
        stored.copy_from_slice(sum);
        if checksum(body) != u64::from_le_bytes(stored) {
            return Err(AddrManError::BadChecksum);
        }
        let mut r = Reader {
            data: body,
            pos: r.pos,
        };
        let grouping = if version == 1 {
            [0; 32]
        } else {
            r.array::<32>("grouping")?
        };
        let rebucket = grouping != config.groups.version();
        let key = r.array::<16>("key")?;
        let mut book = AddrMan::new(config, key, rng);
        book.last_good = r.opt_time("last good")?;
        let count = r.u32("entry count")?;
        if count as usize > MAX_ENTRIES {
            return Err(AddrManError::TooManyEntries(count.into()));
        }
        if count as usize > r.remaining() / MIN_ENTRY_LEN {
            return Err(AddrManError::Truncated("entries"));
        }
        // File position -> id; `None` for entries dropped by the configuration.
        let mut ids: Vec<Option<EntryId>> = Vec::with_capacity(count as usize);
        let mut dropped = BTreeSet::new();
        for _ in 0..count {
            let rec = read_record(&mut r)?;
            let addr = rec.entry.addr;
            // Acceptability depends on the address alone, so each duplicate lands in the
            // same branch as its twin.
            if !book.acceptable(&addr) {
                if !dropped.insert(addr) {
                    return Err(AddrManError::DuplicateAddress(addr));
                }
                ids.push(None);
                continue;
            }
            if book.find(&addr).is_some() {
                return Err(AddrManError::DuplicateAddress(addr));
            }
            if rebucket {
                ids.push(book.rebucket_record(rec));
            } else {
                ids.push(Some(book.place_record(rec)?));
            }
        }
        let n = r.u8("collision count")?;
        if usize::from(n) > MAX_TRIED_COLLISIONS {
            return Err(AddrManError::InvalidField("collision count"));
        }
        for _ in 0..n {
            let i = r.u32("collision")? as usize;
            let id = *ids
                .get(i)
                .ok_or(AddrManError::InvalidField("collision index"))?;
            let Some(id) = id else { continue };
            if book.collisions.contains(&id) {
                return Err(AddrManError::InvalidField("collision index"));
            }
            book.collisions.push(id);
        }
        if r.remaining() != 0 {
            return Err(AddrManError::TrailingBytes(r.remaining()));
        }
        book.check()?;
        Ok(book)
    }

    /// Puts an entry saved under another grouping where the current one sends it; `None` (the
    /// entry dropped) when that slot is taken.
    fn rebucket_record(&mut self, rec: Record) -> Option<EntryId> {
        let addr = rec.entry.addr;
        if rec.tried {
            let slot = self.bucketer.tried_slot(&addr);
            if rec.entry.last_success.is_none() || self.tried_table[slot.index()].is_some() {
                return None;
            }
            let id = self.insert_entry(rec.entry);
            self.put_tried(slot, id);
            self.counts[net_index(addr.network())].tried += 1;
            return Some(id);
        }
        let slot = self.bucketer.new_slot_from(&addr, &rec.entry.source);
        if self.new_table[slot.index()].is_some() {
            return None;
        }
        let mut entry = rec.entry;
        entry.place = Place::New(NewRefs::default());
        let id = self.insert_entry(entry);
        self.counts[net_index(addr.network())].new += 1;
        self.put_new(slot, id);
        Some(id)
    }

    /// Puts a loaded entry in the slots its key gives.
    fn place_record(&mut self, rec: Record) -> Result<EntryId, AddrManError> {
        let addr = rec.entry.addr;
        if rec.tried {
            if rec.entry.last_success.is_none() {
                return Err(AddrManError::TriedWithoutSuccess(addr));
            }
            let slot = self.bucketer.tried_slot(&addr);
            if self.tried_table[slot.index()].is_some() {
                return Err(AddrManError::SlotConflict(addr));
            }
            let id = self.insert_entry(rec.entry);
            self.put_tried(slot, id);
            self.counts[net_index(addr.network())].tried += 1;
            return Ok(id);
        }
        let mut slots: Vec<NewSlot> = Vec::with_capacity(rec.buckets.len());
        for &b in &rec.buckets {
            let b = usize::from(b);
            if b >= NEW_BUCKET_COUNT || slots.iter().any(|s| s.bucket() == b) {
                return Err(AddrManError::InvalidBuckets(addr));
            }
            let slot = self.bucketer.new_slot(b, &addr);
            if self.new_table[slot.index()].is_some() {
                return Err(AddrManError::SlotConflict(addr));
            }
            slots.push(slot);
        }
        let id = self.insert_entry(rec.entry);
        self.counts[net_index(addr.network())].new += 1;
        for slot in slots {
            self.put_new(slot, id);
        }
        Ok(id)
    }
}

#[cfg(test)]
pub(super) fn reseal(data: &mut Vec<u8>) {
    // Replaces the trailing checksum after a test edited the body.
    if data.len() >= CHECKSUM_LEN {
        data.truncate(data.len() - CHECKSUM_LEN);
    }
    let sum = checksum(data);
    data.extend_from_slice(&sum.to_le_bytes());
}
