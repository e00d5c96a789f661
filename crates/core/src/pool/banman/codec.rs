//! The ban list's binary form (`banlist.dat`); see the [module docs](super) for the layout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{BanEntry, BanList, BanReason, FORMAT_VERSION};
use crate::pool::subnet::{Repr, Subnet, SubnetError};
use crate::time::Time;

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
