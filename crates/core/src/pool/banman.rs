//! Bans of addresses and subnets, and the scores that lead to them.
//!
//! Two parts, usable apart or together through [`BanMan`]:
//!
//! - [`BanList`]: who is banned and until when. An entry bans a [`Subnet`]: an IPv4 or IPv6
//!   CIDR range (a single address is a /32 or /128) or a single Tor v3 or I2P host. Every entry
//!   records when it was made, when it expires and why ([`BanReason`]). A ban is in force while
//!   `now < until`; expired entries stay until [`BanList::sweep`] (or [`BanList::list`]) removes
//!   them, and [`BanList::next_expiry`] tells the owner when to sweep next.
//! - [`Scores`]: a decaying [`BanScore`] per peer. [`Scores::record`] adds a
//!   [`Misbehaviour`]'s score (see [`crate::misbehaviour`] for the table) and returns a
//!   [`Verdict`]: nothing, a warning, a disconnect or a ban.
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
//! ## Scoring
//! [`Scores::record`] decides, in this order:
//! 1. the total reaches [`Config::threshold`]: [`Verdict::Ban`] until `now +`
//!    [`Config::ban_duration`] (the score is forgotten: the peer is gone), or
//!    [`Verdict::Warn`] for a peer with the noban permission, which is never banned;
//! 2. the misbehaviour [`disconnects`](Misbehaviour::disconnects): [`Verdict::Disconnect`], with
//!    no ban. These are protocol rules (BIP111 bloom, feature messages after `verack`) that
//!    Bitcoin Core enforces by disconnecting without holding it against the address, the peer
//!    being merely incompatible. Core does this to noban peers too, and so do we: it is not a
//!    punishment, and the connection cannot go on usefully;
//! 3. the total reaches [`Config::warning`]: [`Verdict::Warn`];
//! 4. otherwise [`Verdict::None`].
//!
//! Scores are added to the transient (decaying) part of [`BanScore`]: every offence in the
//! table can come from an honest peer with a bug or a flaky link, so occasional slips are
//! forgiven, while a burst crosses the threshold.
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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use crate::addr::{Host, NetAddr};
use crate::ban::{BanScore, DEFAULT_THRESHOLD, DEFAULT_WARNING};
use crate::misbehaviour::Misbehaviour;
use crate::peer::PeerId;
use crate::time::Time;

/// How long a misbehaving peer stays banned. Bitcoin Core: `-bantime` default
/// (`DEFAULT_MISBEHAVING_BANTIME`), 86400 s = 24 h; also what its `setban` uses when no time is
/// given.
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Version byte that [`BanList::encode`] writes and [`BanList::decode`] accepts.
pub const FORMAT_VERSION: u8 = 1;

// ----- Subnet ------------------------------------------------------------------------------

/// What a ban covers: an IPv4 or IPv6 range, or a single Tor v3 or I2P host.
///
/// The network address is always stored with its host bits cleared, so two spellings of the
/// same range (`1.2.3.4/24`, `1.2.3.0/255.255.255.0`) are the same `Subnet`. An IPv4-mapped
/// IPv6 address (`::ffff:1.2.3.4`) is an IPv4 address, as for [`Host::from_ip`] and Bitcoin
/// Core: its prefix length or netmask counts IPv4 bits (`::ffff:1.2.3.0/24` is `1.2.3.0/24`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet(Repr);

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    V4 { network: Ipv4Addr, prefix: u8 },
    V6 { network: Ipv6Addr, prefix: u8 },
    Onion([u8; 32]),
    I2p([u8; 32]),
}

/// Why a subnet was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// The string was empty.
    #[error("empty subnet")]
    Empty,
    /// The part before any `/` is not an address of a kind that can be banned.
    #[error(
        "invalid address {0:?}: expected an IPv4 or IPv6 address, NAME.onion or NAME.b32.i2p \
         (no port, no host name)"
    )]
    InvalidAddress(String),
    /// The part after `/` is neither a prefix length nor a netmask.
    #[error("invalid netmask {0:?}: expected a prefix length or a netmask such as 255.255.255.0")]
    InvalidMask(String),
    /// A prefix length longer than the address.
    #[error("prefix length {prefix} is longer than the {bits} bits of the address")]
    PrefixTooLong {
        /// The prefix length given.
        prefix: u16,
        /// Bits in the address (32 or 128).
        bits: u8,
    },
    /// A netmask whose one bits are not all at the front.
    #[error("netmask {0} is not contiguous: a one bit follows a zero bit")]
    NonContiguousMask(IpAddr),
    /// A netmask of the other address family.
    #[error("netmask {mask} does not fit address {addr}: one is IPv4, the other IPv6")]
    MaskFamilyMismatch {
        /// The address.
        addr: IpAddr,
        /// The netmask.
        mask: IpAddr,
    },
    /// A prefix or netmask after a Tor or I2P address, which can only be banned one by one.
    #[error("{0:?}: onion and I2P addresses are single hosts and take no prefix or netmask")]
    MaskOnSingleHost(String),
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from(u128::from(ip) & mask)
}

impl Subnet {
    /// The range of `prefix` leading bits of `ip`; host bits are cleared. An IPv4-mapped
    /// address is IPv4, so `prefix` then counts IPv4 bits.
    pub fn new(ip: IpAddr, prefix: u8) -> Result<Subnet, SubnetError> {
        let too_long = |bits| SubnetError::PrefixTooLong {
            prefix: u16::from(prefix),
            bits,
        };
        match unmap(ip) {
            IpAddr::V4(v4) => {
                if prefix > 32 {
                    return Err(too_long(32));
                }
                Ok(Subnet(Repr::V4 {
                    network: mask_v4(v4, prefix),
                    prefix,
                }))
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return Err(too_long(128));
                }
                Ok(Subnet(Repr::V6 {
                    network: mask_v6(v6, prefix),
                    prefix,
                }))
            }
        }
    }

    /// The subnet of exactly one host: a /32, a /128 (also for CJDNS), or a Tor or I2P host.
    pub fn host(host: Host) -> Subnet {
        Subnet(match host {
            Host::Ipv4(network) => Repr::V4 {
                network,
                prefix: 32,
            },
            Host::Ipv6(v6) => match v6.to_ipv4_mapped() {
                // `Host` never holds these, but its fields are public.
                Some(network) => Repr::V4 {
                    network,
                    prefix: 32,
                },
                None => Repr::V6 {
                    network: v6,
                    prefix: 128,
                },
            },
            Host::Cjdns(network) => Repr::V6 {
                network,
                prefix: 128,
            },
            Host::TorV3(key) => Repr::Onion(key),
            Host::I2p(hash) => Repr::I2p(hash),
        })
    }

    /// Whether `host` falls in this subnet. IPv4 ranges match IPv4 hosts; IPv6 ranges match
    /// IPv6 and CJDNS hosts (see the module docs); Tor and I2P subnets match only their host.
    pub fn contains(&self, host: &Host) -> bool {
        match (self.0, Subnet::host(*host).0) {
            (Repr::V4 { network, prefix }, Repr::V4 { network: ip, .. }) => {
                mask_v4(ip, prefix) == network
            }
            (Repr::V6 { network, prefix }, Repr::V6 { network: ip, .. }) => {
                mask_v6(ip, prefix) == network
            }
            (Repr::Onion(a), Repr::Onion(b)) | (Repr::I2p(a), Repr::I2p(b)) => a == b,
            _ => false,
        }
    }

    /// The prefix length of an IP range; `None` for Tor and I2P hosts.
    pub fn prefix(&self) -> Option<u8> {
        match self.0 {
            Repr::V4 { prefix, .. } | Repr::V6 { prefix, .. } => Some(prefix),
            Repr::Onion(_) | Repr::I2p(_) => None,
        }
    }

    /// The network address of an IP range (host bits cleared); `None` for Tor and I2P hosts.
    pub fn network(&self) -> Option<IpAddr> {
        match self.0 {
            Repr::V4 { network, .. } => Some(IpAddr::V4(network)),
            Repr::V6 { network, .. } => Some(IpAddr::V6(network)),
            Repr::Onion(_) | Repr::I2p(_) => None,
        }
    }

    /// Whether the subnet covers exactly one host.
    pub fn is_single_host(&self) -> bool {
        match self.0 {
            Repr::V4 { prefix, .. } => prefix == 32,
            Repr::V6 { prefix, .. } => prefix == 128,
            Repr::Onion(_) | Repr::I2p(_) => true,
        }
    }
}

impl From<Host> for Subnet {
    fn from(host: Host) -> Subnet {
        Subnet::host(host)
    }
}

impl From<IpAddr> for Subnet {
    fn from(ip: IpAddr) -> Subnet {
        Subnet::host(Host::from_ip(ip))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Prefix length of a netmask, if its one bits are contiguous from the top.
fn contiguous_prefix(mask: IpAddr) -> Option<u8> {
    let (ones, zeros, bits) = match mask {
        IpAddr::V4(m) => {
            let m = u32::from(m);
            (m.leading_ones(), m.trailing_zeros(), 32)
        }
        IpAddr::V6(m) => {
            let m = u128::from(m);
            (m.leading_ones(), m.trailing_zeros(), 128)
        }
    };
    // Both counts are at most 128, so the cast is exact.
    (ones + zeros == bits).then_some(ones as u8)
}

impl FromStr for Subnet {
    type Err = SubnetError;

    /// Parses what Bitcoin Core's `setban` accepts: an address (`1.2.3.4`, `2001:db8::1`,
    /// `NAME.onion`, `NAME.b32.i2p`), optionally followed for IP addresses by `/PREFIX`
    /// (`1.2.3.0/24`) or `/NETMASK` (`1.2.3.0/255.255.255.0`, contiguous only). IPv6
    /// addresses may be in brackets (`[2001:db8::]/32`). IPv4-mapped addresses are IPv4 (see
    /// [`Subnet`]). Host names are not resolved.
    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        if s.is_empty() {
            return Err(SubnetError::Empty);
        }
        let (addr_part, mask_part) = match s.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (s, None),
        };
        let bare = addr_part
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr_part);
        let Ok(ip) = bare.parse::<IpAddr>() else {
            let host = parse_named_host(addr_part)
                .ok_or_else(|| SubnetError::InvalidAddress(addr_part.to_owned()))?;
            if mask_part.is_some() {
                return Err(SubnetError::MaskOnSingleHost(s.to_owned()));
            }
            return Ok(Subnet::host(host));
        };
        // Brackets belong around IPv6 only.
        if bare.len() != addr_part.len() && ip.is_ipv4() {
            return Err(SubnetError::InvalidAddress(addr_part.to_owned()));
        }
        let ip = unmap(ip);
        let Some(mask) = mask_part else {
            return Ok(Subnet::from(ip));
        };
        let bad_mask = || SubnetError::InvalidMask(mask.to_owned());
        let prefix =
            if !mask.is_empty() && mask.len() <= 3 && mask.bytes().all(|b| b.is_ascii_digit()) {
                let prefix: u16 = mask.parse().map_err(|_| bad_mask())?;
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                if prefix > u16::from(bits) {
                    return Err(SubnetError::PrefixTooLong { prefix, bits });
                }
                prefix as u8
            } else {
                let mask_ip = unmap(mask.parse().map_err(|_| bad_mask())?);
                if mask_ip.is_ipv4() != ip.is_ipv4() {
                    return Err(SubnetError::MaskFamilyMismatch {
                        addr: ip,
                        mask: mask_ip,
                    });
                }
                contiguous_prefix(mask_ip).ok_or(SubnetError::NonContiguousMask(mask_ip))?
            };
        Subnet::new(ip, prefix)
    }
}

/// A Tor v3 or I2P name, without a port.
fn parse_named_host(s: &str) -> Option<Host> {
    let lower = s.to_ascii_lowercase();
    if s.contains(':') || !(lower.ends_with(".onion") || lower.ends_with(".b32.i2p")) {
        return None;
    }
    s.parse::<NetAddr>().ok().map(|a| a.host)
}

impl fmt::Display for Subnet {
    /// Bitcoin Core's form: `1.2.3.0/24`, `1.2.3.4/32`, `2001:db8::/32`, `NAME.onion`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::V4 { network, prefix } => write!(f, "{network}/{prefix}"),
            Repr::V6 { network, prefix } => write!(f, "{network}/{prefix}"),
            Repr::Onion(key) => Host::TorV3(key).fmt(f),
            Repr::I2p(hash) => Host::I2p(hash).fmt(f),
        }
    }
}

impl fmt::Debug for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subnet({self})")
    }
}

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

// ----- Serialization -----------------------------------------------------------------------

/// Why bytes did not decode as a ban list; see the module docs for the format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A version byte this code does not know (or no bytes at all).
    #[error("unsupported ban list format version {0}")]
    UnsupportedVersion(u8),
    /// The data ended early.
    #[error("ban list data ends inside entry {entry}")]
    Truncated {
        /// Index of the entry being read (the count itself when 0 and nothing was read).
        entry: usize,
    },
    /// The count promises more entries than the bytes could hold.
    #[error("ban list claims {count} entries but only {len} bytes follow")]
    CountTooLarge {
        /// Entries claimed.
        count: u32,
        /// Bytes left after the count.
        len: usize,
    },
    /// A network id other than IPv4, IPv6, Tor v3 or I2P.
    #[error("entry {entry}: unknown network id {id}")]
    UnknownNetwork {
        /// Index of the entry.
        entry: usize,
        /// The id read.
        id: u8,
    },
    /// A prefix longer than the address.
    #[error("entry {entry}: {source}")]
    BadPrefix {
        /// Index of the entry.
        entry: usize,
        /// What was wrong.
        source: SubnetError,
    },
    /// A network address with host bits set, or an IPv4-mapped range not written as IPv4.
    #[error("entry {entry}: network address not in canonical form")]
    NotCanonical {
        /// Index of the entry.
        entry: usize,
    },
    /// A reason byte other than 0 (manual) or 1 (misbehaviour).
    #[error("entry {entry}: unknown ban reason {reason}")]
    UnknownReason {
        /// Index of the entry.
        entry: usize,
        /// The byte read.
        reason: u8,
    },
    /// The same subnet twice.
    #[error("entry {entry}: {subnet} is listed twice")]
    Duplicate {
        /// Index of the second occurrence.
        entry: usize,
        /// The subnet.
        subnet: Subnet,
    },
    /// Bytes after the last entry.
    #[error("{0} unexpected bytes after the last entry")]
    TrailingBytes(usize),
}

const NET_IPV4: u8 = 1;
const NET_IPV6: u8 = 2;
const NET_TORV3: u8 = 4;
const NET_I2P: u8 = 5;

/// Smallest encoded entry: an IPv4 one.
const MIN_ENTRY_LEN: usize = 1 + 4 + 1 + 8 + 8 + 1;

/// A cursor over input that can only fail, never panic.
struct Reader<'a> {
    rest: &'a [u8],
    entry: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated { entry: self.entry });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn time(&mut self) -> Result<Time, DecodeError> {
        Ok(Time::from_micros(u64::from_le_bytes(self.array()?)))
    }
}

impl BanList {
    /// The list in the binary form described in the module docs, entries ordered by subnet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.entries.len() * (MIN_ENTRY_LEN + 28));
        out.push(FORMAT_VERSION);
        // A list never holds more than u32::MAX entries in practice; saturate rather than wrap.
        let count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for e in self.entries.values().take(count as usize) {
            match e.subnet.0 {
                Repr::V4 { network, prefix } => {
                    out.push(NET_IPV4);
                    out.extend_from_slice(&network.octets());
                    out.push(prefix);
                }
                Repr::V6 { network, prefix } => {
                    out.push(NET_IPV6);
                    out.extend_from_slice(&network.octets());
                    out.push(prefix);
                }
                Repr::Onion(key) => {
                    out.push(NET_TORV3);
                    out.extend_from_slice(&key);
                }
                Repr::I2p(hash) => {
                    out.push(NET_I2P);
                    out.extend_from_slice(&hash);
                }
            }
            out.extend_from_slice(&e.created.as_micros().to_le_bytes());
            out.extend_from_slice(&e.until.as_micros().to_le_bytes());
            out.push(match e.reason {
                BanReason::Manual => 0,
                BanReason::Misbehaviour => 1,
            });
        }
        out
    }

    /// A list from the form [`encode`](BanList::encode) writes. Expired entries are kept:
    /// decoding knows no time, so sweep afterwards. The result is not dirty.
    pub fn decode(bytes: &[u8]) -> Result<BanList, DecodeError> {
        let Some((&version, _)) = bytes.split_first() else {
            return Err(DecodeError::Truncated { entry: 0 });
        };
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let mut r = Reader {
            rest: &bytes[1..],
            entry: 0,
        };
        let count = u32::from_le_bytes(r.array()?);
        // Checked before reading entries so a forged count cannot make us loop for long.
        if (count as usize).saturating_mul(MIN_ENTRY_LEN) > r.rest.len() {
            return Err(DecodeError::CountTooLarge {
                count,
                len: r.rest.len(),
            });
        }
        let mut list = BanList::new();
        for entry in 0..count as usize {
            r.entry = entry;
            let subnet = read_subnet(&mut r)?;
            let created = r.time()?;
            let until = r.time()?;
            let reason = match r.u8()? {
                0 => BanReason::Manual,
                1 => BanReason::Misbehaviour,
                reason => return Err(DecodeError::UnknownReason { entry, reason }),
            };
            if list.entries.contains_key(&subnet) {
                return Err(DecodeError::Duplicate { entry, subnet });
            }
            list.insert(BanEntry {
                subnet,
                created,
                until,
                reason,
            });
        }
        if !r.rest.is_empty() {
            return Err(DecodeError::TrailingBytes(r.rest.len()));
        }
        list.dirty = false;
        Ok(list)
    }
}

fn read_subnet(r: &mut Reader<'_>) -> Result<Subnet, DecodeError> {
    let entry = r.entry;
    let (ip, stored) = match r.u8()? {
        NET_IPV4 => {
            let ip = IpAddr::V4(Ipv4Addr::from(r.array::<4>()?));
            let prefix = r.u8()?;
            (ip, prefix)
        }
        NET_IPV6 => {
            let ip = IpAddr::V6(Ipv6Addr::from(r.array::<16>()?));
            let prefix = r.u8()?;
            (ip, prefix)
        }
        NET_TORV3 => return Ok(Subnet(Repr::Onion(r.array()?))),
        NET_I2P => return Ok(Subnet(Repr::I2p(r.array()?))),
        id => return Err(DecodeError::UnknownNetwork { entry, id }),
    };
    let subnet =
        Subnet::new(ip, stored).map_err(|source| DecodeError::BadPrefix { entry, source })?;
    // Anything `new` had to change was not written by `encode`.
    if subnet.network() != Some(ip) || subnet.prefix() != Some(stored) {
        return Err(DecodeError::NotCanonical { entry });
    }
    Ok(subnet)
}

// ----- Scores ------------------------------------------------------------------------------

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

/// What the owner of a peer should do after a misbehaviour; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Nothing beyond perhaps a debug log.
    None,
    /// The score is high: log a warning, keep the peer.
    Warn,
    /// Disconnect the peer; its address is not banned.
    Disconnect,
    /// Disconnect the peer and ban its address until the given time.
    Ban(Time),
}

/// The ban score of each peer; see the module docs.
///
/// Keyed by whatever identifies a peer to the owner (by default [`PeerId`]). A peer's score is
/// kept until [`forget`](Scores::forget) or a ban; the owner forgets peers when they
/// disconnect.
#[derive(Clone, Debug)]
pub struct Scores<K = PeerId> {
    config: Config,
    scores: BTreeMap<K, BanScore>,
}

impl<K: Ord + Clone> Scores<K> {
    /// No scores yet.
    pub fn new(config: Config) -> Scores<K> {
        Scores {
            config,
            scores: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Adds `misbehaviour`'s score to `peer` and says what to do. A peer with the noban
    /// permission (`noban`) is never banned: at the threshold it gets [`Verdict::Warn`].
    pub fn record(
        &mut self,
        peer: K,
        misbehaviour: Misbehaviour,
        noban: bool,
        now: Time,
    ) -> Verdict {
        let points = misbehaviour.score();
        let mut total = 0;
        if points > 0 {
            total = self
                .scores
                .entry(peer.clone())
                .or_default()
                .increase(now, 0, points);
            if total >= self.config.threshold {
                if noban {
                    return Verdict::Warn;
                }
                self.scores.remove(&peer);
                return Verdict::Ban(now + self.config.ban_duration);
            }
        }
        if misbehaviour.disconnects() {
            Verdict::Disconnect
        } else if points > 0 && total >= self.config.warning {
            Verdict::Warn
        } else {
            Verdict::None
        }
    }

    /// The current score of `peer` (0 if unknown).
    pub fn score(&self, peer: &K, now: Time) -> u32 {
        self.scores.get(peer).map_or(0, |s| s.value(now))
    }

    /// Drops `peer`'s score (it disconnected).
    pub fn forget(&mut self, peer: &K) {
        self.scores.remove(peer);
    }

    /// Number of peers with a score.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether no peer has a score.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

// ----- Together ----------------------------------------------------------------------------

/// The ban list and the scores together, as the pool uses them.
#[derive(Clone, Debug)]
pub struct BanMan<K = PeerId> {
    bans: BanList,
    scores: Scores<K>,
}

impl<K: Ord + Clone> BanMan<K> {
    /// An empty ban list and no scores.
    pub fn new(config: Config) -> BanMan<K> {
        BanMan::with_bans(config, BanList::new())
    }

    /// Starts from a ban list loaded from disk.
    pub fn with_bans(config: Config, bans: BanList) -> BanMan<K> {
        BanMan {
            bans,
            scores: Scores::new(config),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        self.scores.config()
    }

    /// The ban list.
    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    /// The ban list, for manual bans, unbans and sweeping.
    pub fn bans_mut(&mut self) -> &mut BanList {
        &mut self.bans
    }

    /// The scores.
    pub fn scores(&self) -> &Scores<K> {
        &self.scores
    }

    /// The scores, to forget disconnected peers.
    pub fn scores_mut(&mut self) -> &mut Scores<K> {
        &mut self.scores
    }

    /// Scores `misbehaviour` of `peer`, reachable at `addr`, and carries out a ban: on
    /// [`Verdict::Ban`] the host of `addr` is in the ban list when this returns. A loopback
    /// peer is disconnected instead of banned unless [`Config::ban_local`] is set.
    pub fn misbehaving(
        &mut self,
        peer: K,
        addr: &NetAddr,
        misbehaviour: Misbehaviour,
        noban: bool,
        now: Time,
    ) -> Verdict {
        match self.scores.record(peer, misbehaviour, noban, now) {
            Verdict::Ban(_) if addr.is_loopback() && !self.config().ban_local => {
                Verdict::Disconnect
            }
            Verdict::Ban(until) => {
                self.bans
                    .ban(Subnet::host(addr.host), until, BanReason::Misbehaviour, now);
                Verdict::Ban(until)
            }
            other => other,
        }
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
    fn masks_at_the_edges() {
        let ip: Ipv4Addr = "255.255.255.255".parse().unwrap();
        assert_eq!(mask_v4(ip, 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(mask_v4(ip, 32), ip);
        assert_eq!(mask_v4(ip, 1), Ipv4Addr::new(128, 0, 0, 0));
        let ip6 = Ipv6Addr::from(u128::MAX);
        assert_eq!(mask_v6(ip6, 0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(mask_v6(ip6, 128), ip6);
        assert_eq!(mask_v6(ip6, 127), Ipv6Addr::from(u128::MAX - 1));
    }

    #[test]
    fn contiguity() {
        let p = |s: &str| contiguous_prefix(s.parse().unwrap());
        assert_eq!(p("0.0.0.0"), Some(0));
        assert_eq!(p("255.255.255.255"), Some(32));
        assert_eq!(p("255.255.254.0"), Some(23));
        assert_eq!(p("255.0.255.0"), None);
        assert_eq!(p("ffff:ff00::"), Some(24));
        assert_eq!(p("::1"), None);
    }

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
