//! IP-to-AS maps in Bitcoin Core's asmap format, and the network groups they give.
//!
//! Without a map, peers are grouped by address prefix ([`NetAddr::group`]: an IPv4 /16, an
//! IPv6 /32). With one, an IPv4 or IPv6 address the map assigns to an autonomous system is
//! grouped by that AS instead, so that one operator's many prefixes count as one group for
//! address-book bucketing, outbound diversity and inbound eviction (Bitcoin Core's
//! `-asmap`). [`NetGroups`] is that choice.
//!
//! # The format
//!
//! An asmap file is a program for a small machine that reads the 128 bits of an IPv6 address
//! (IPv4 as `::ffff:a.b.c.d`), most significant bit first, and ends in the AS number. The file
//! is a bit string, the bits of each byte taken least significant first. Instructions and
//! their operands are integers in a variable-length code: a class number in unary (a run of
//! one bits ended by a zero bit, no zero after the last class), then a fixed number of
//! mantissa bits for that class, most significant first; the value is a minimum, plus the
//! sizes of the classes skipped, plus the mantissa.
//!
//! | instruction | code | operand (minimum; mantissa bits per class) | effect |
//! |---|---|---|---|
//! | RETURN | `0` | AS (1; 15 to 24) | the answer is the AS |
//! | JUMP | `10` | offset (17; 5 to 30) | consume one address bit; when it is 1, skip `offset` bits of program |
//! | MATCH | `110` | pattern (2; 1 to 8) | the bits after the pattern's leading 1 must be the next address bits, or the answer is the default AS |
//! | DEFAULT | `111` | AS (1; 15 to 24) | the default AS from here on (initially 0, "unmapped") |
//!
//! A map is accepted only if it passes the same sanity check as Core's: every path ends in a
//! RETURN without reading past 128 address bits, jumps land on instruction boundaries without
//! crossing each other, no code is unreachable, DEFAULT is not doubled or followed straight
//! by RETURN, within a run of MATCHes only the last is shorter than 8 bits, and the file ends
//! with at most 7 zero bits of padding. Lookups on a checked map then always end in an answer.
//!
//! A map's *version* is the SHA-256 of the file's bytes, as `sha256sum` prints it (Core
//! master's `asmap_version`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bitcoin::hashes::{sha256, Hash};

use crate::addr::{Host, NetAddr, NetGroup};

/// Largest asmap file accepted, in bytes. Core's current maps are about 1.5 MB; this leaves
/// room while bounding what a wrong path can make the daemon read.
pub const MAX_ASMAP_BYTES: usize = 64 * 1024 * 1024;

/// Address bits a program reads.
const IP_BITS: u32 = 128;

const TYPE_SIZES: &[u8] = &[0, 0, 1];
const ASN_SIZES: &[u8] = &[15, 16, 17, 18, 19, 20, 21, 22, 23, 24];
const MATCH_SIZES: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];
const JUMP_SIZES: &[u8] = &[
    5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
    30,
];
const ASN_MIN: u32 = 1;
const MATCH_MIN: u32 = 2;
const JUMP_MIN: u32 = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Return,
    Jump,
    Match,
    Default,
}

/// Why bytes are not a usable asmap.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmapError {
    /// No bytes at all.
    #[error("the asmap is empty")]
    Empty,
    /// More than [`MAX_ASMAP_BYTES`].
    #[error("the asmap has {0} bytes, more than the {MAX_ASMAP_BYTES} accepted")]
    TooLarge(usize),
    /// The program fails the sanity check; the text says where and why.
    #[error("not a valid asmap: {what} at bit {bit}")]
    Invalid {
        /// What is wrong.
        what: &'static str,
        /// Bit offset in the program where it was found.
        bit: usize,
    },
}

/// A checked asmap; see the [module docs](self).
#[derive(Clone, PartialEq, Eq)]
pub struct Asmap {
    bytes: Box<[u8]>,
    version: [u8; 32],
}

impl fmt::Debug for Asmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Asmap({} bytes, version {})",
            self.bytes.len(),
            self.version_hex()
        )
    }
}

/// A cursor over a program's bits.
struct Bits<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<bool> {
        if self.pos >= self.end {
            return None;
        }
        let b = (self.bytes[self.pos / 8] >> (self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Some(b)
    }

    fn left(&self) -> usize {
        self.end - self.pos
    }

    /// One integer of the variable-length code; `None` when the program ends inside it.
    fn int(&mut self, min: u32, sizes: &[u8]) -> Option<u32> {
        let mut value = u64::from(min);
        for (i, &size) in sizes.iter().enumerate() {
            let more = if i + 1 < sizes.len() {
                self.bit()?
            } else {
                false
            };
            if more {
                value += 1u64 << size;
                continue;
            }
            let mut mantissa = 0u64;
            for _ in 0..size {
                mantissa = (mantissa << 1) | u64::from(self.bit()?);
            }
            return u32::try_from(value + mantissa).ok();
        }
        None
    }

    fn op(&mut self) -> Option<Op> {
        Some(match self.int(0, TYPE_SIZES)? {
            0 => Op::Return,
            1 => Op::Jump,
            2 => Op::Match,
            _ => Op::Default,
        })
    }
}

/// Bits of `pattern` after its leading one bit.
fn match_len(pattern: u32) -> u32 {
    31 - pattern.leading_zeros()
}

impl Asmap {
    /// Checks `bytes` (an asmap file's content) and keeps them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Asmap, AsmapError> {
        if bytes.is_empty() {
            return Err(AsmapError::Empty);
        }
        if bytes.len() > MAX_ASMAP_BYTES {
            return Err(AsmapError::TooLarge(bytes.len()));
        }
        sanity_check(bytes)?;
        Ok(Asmap {
            bytes: bytes.into(),
            version: sha256::Hash::hash(bytes).to_byte_array(),
        })
    }

    /// The file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the file.
    pub fn version(&self) -> [u8; 32] {
        self.version
    }

    /// [`version`](Self::version) in hex, as `sha256sum` prints it.
    pub fn version_hex(&self) -> String {
        self.version.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The AS the map gives the 128-bit address `ip` (IPv4 as `::ffff:a.b.c.d`); 0 when the
    /// map leaves it unmapped.
    pub fn lookup(&self, ip: &[u8; 16]) -> u32 {
        let mut prog = Bits {
            bytes: &self.bytes,
            pos: 0,
            end: self.bytes.len() * 8,
        };
        let mut next = 0u32; // address bits read
        let addr_bit = |i: u32| (ip[(i / 8) as usize] >> (7 - i % 8)) & 1 == 1;
        let mut default = 0u32;
        // The sanity check proved every path ends in RETURN within the program; the `?`s and
        // the fall-through answer "unmapped" anyway rather than trusting that.
        let mut step = || -> Option<Option<u32>> {
            match prog.op()? {
                Op::Return => return Some(Some(prog.int(ASN_MIN, ASN_SIZES)?)),
                Op::Jump => {
                    let offset = prog.int(JUMP_MIN, JUMP_SIZES)? as usize;
                    if next >= IP_BITS || offset >= prog.left() {
                        return None;
                    }
                    if addr_bit(next) {
                        prog.pos += offset;
                    }
                    next += 1;
                }
                Op::Match => {
                    let pattern = prog.int(MATCH_MIN, MATCH_SIZES)?;
                    let len = match_len(pattern);
                    if IP_BITS - next < len {
                        return None;
                    }
                    for i in 0..len {
                        let want = (pattern >> (len - 1 - i)) & 1 == 1;
                        if addr_bit(next) != want {
                            return Some(Some(default));
                        }
                        next += 1;
                    }
                }
                Op::Default => default = prog.int(ASN_MIN, ASN_SIZES)?,
            }
            Some(None)
        };
        loop {
            match step() {
                Some(Some(asn)) => return asn,
                Some(None) => continue,
                None => return 0,
            }
        }
    }

    /// The AS of an IP address; 0 when unmapped.
    pub fn lookup_ip(&self, ip: IpAddr) -> u32 {
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        self.lookup(&v6.octets())
    }
}

/// Core's `SanityCheckASMap` for 128 address bits.
fn sanity_check(bytes: &[u8]) -> Result<(), AsmapError> {
    let mut prog = Bits {
        bytes,
        pos: 0,
        end: bytes.len() * 8,
    };
    let bad = |what, bit| Err(AsmapError::Invalid { what, bit });
    // Where pending jumps land, and the address bits left there; innermost last.
    let mut jumps: Vec<(usize, u32)> = Vec::with_capacity(IP_BITS as usize);
    let mut bits_left = IP_BITS;
    let mut prev = Op::Jump;
    let mut had_short_match = false;
    while prog.left() > 0 {
        let at = prog.pos;
        if jumps.last().is_some_and(|&(target, _)| at >= target) {
            return bad("a jump lands inside an instruction", at);
        }
        let Some(op) = prog.op() else {
            return bad("an instruction runs past the end", at);
        };
        match op {
            Op::Return => {
                if prev == Op::Default {
                    return bad("RETURN straight after DEFAULT", at);
                }
                if prog.int(ASN_MIN, ASN_SIZES).is_none() {
                    return bad("an AS number runs past the end", at);
                }
                match jumps.pop() {
                    None => {
                        if prog.left() > 7 {
                            return bad("more than 7 bits of padding", prog.pos);
                        }
                        while let Some(b) = prog.bit() {
                            if b {
                                return bad("nonzero padding", prog.pos - 1);
                            }
                        }
                        return Ok(());
                    }
                    Some((target, left)) => {
                        if prog.pos != target {
                            return bad("unreachable code", prog.pos);
                        }
                        bits_left = left;
                        prev = Op::Jump;
                    }
                }
            }
            Op::Jump => {
                let Some(offset) = prog.int(JUMP_MIN, JUMP_SIZES) else {
                    return bad("a jump offset runs past the end", at);
                };
                let offset = offset as usize;
                if offset > prog.left() {
                    return bad("a jump past the end", at);
                }
                if bits_left == 0 {
                    return bad("more than 128 address bits read", at);
                }
                bits_left -= 1;
                let target = prog.pos + offset;
                if jumps.last().is_some_and(|&(t, _)| target >= t) {
                    return bad("intersecting jumps", at);
                }
                jumps.push((target, bits_left));
                prev = Op::Jump;
            }
            Op::Match => {
                let Some(pattern) = prog.int(MATCH_MIN, MATCH_SIZES) else {
                    return bad("a match pattern runs past the end", at);
                };
                let len = match_len(pattern);
                if prev != Op::Match {
                    had_short_match = false;
                }
                if len < 8 && had_short_match {
                    return bad("two short MATCHes in one run", at);
                }
                had_short_match = len < 8;
                if bits_left < len {
                    return bad("more than 128 address bits read", at);
                }
                bits_left -= len;
                prev = Op::Match;
            }
            Op::Default => {
                if prev == Op::Default {
                    return bad("two DEFAULTs in a row", at);
                }
                if prog.int(ASN_MIN, ASN_SIZES).is_none() {
                    return bad("an AS number runs past the end", at);
                }
                prev = Op::Default;
            }
        }
    }
    bad("the program ends without RETURN", prog.pos)
}

// ----- Encoding ----------------------------------------------------------------------------

/// A binary trie of prefixes: what [`encode`] compiles.
enum Node {
    Unmapped,
    Leaf(u32),
    Split(Box<Node>, Box<Node>),
}

/// An asmap file mapping each `(prefix, length, AS)` to its AS, the longest prefix winning;
/// everything else unmapped. IPv4 prefixes cover their `::ffff:0:0/96` range. AS numbers
/// must be at least 1; entries with AS 0 or an out-of-range length are left out. `None` when
/// nothing is left to map: every asmap program ends in an AS, so a map of nothing has no form.
///
/// Meant for tests and small private maps: the program is a plain trie (no DEFAULT
/// instructions, no merging of equal subtrees), larger than Core's tooling makes for a full
/// Internet table, but accepted by every asmap reader.
pub fn encode(entries: &[(IpAddr, u8, u32)]) -> Option<Vec<u8>> {
    let mut sorted: Vec<([u8; 16], u32, u32)> = entries
        .iter()
        .filter_map(|&(ip, len, asn)| {
            let (bytes, len) = match ip {
                IpAddr::V4(v4) if len <= 32 => (v4.to_ipv6_mapped().octets(), u32::from(len) + 96),
                IpAddr::V6(v6) if len <= 128 => (v6.octets(), u32::from(len)),
                _ => return None,
            };
            (asn >= 1).then_some((bytes, len, asn))
        })
        .collect();
    sorted.sort_by_key(|&(_, len, _)| len);
    let mut root = Node::Unmapped;
    for (bytes, len, asn) in sorted {
        insert(&mut root, &bytes, 0, len, asn);
    }
    if let Node::Unmapped = root {
        return None;
    }
    let mut w = Writer::default();
    emit(&mut w, &root);
    Some(w.finish())
}

fn bit_of(bytes: &[u8; 16], i: u32) -> bool {
    (bytes[(i / 8) as usize] >> (7 - i % 8)) & 1 == 1
}

fn insert(node: &mut Node, bytes: &[u8; 16], depth: u32, len: u32, asn: u32) {
    if depth == len {
        *node = Node::Leaf(asn);
        return;
    }
    if !matches!(node, Node::Split(..)) {
        let fill = match node {
            Node::Leaf(a) => Node::Leaf(*a),
            _ => Node::Unmapped,
        };
        let other = match &fill {
            Node::Leaf(a) => Node::Leaf(*a),
            _ => Node::Unmapped,
        };
        *node = Node::Split(Box::new(fill), Box::new(other));
    }
    if let Node::Split(zero, one) = node {
        let child = if bit_of(bytes, depth) { one } else { zero };
        insert(child, bytes, depth + 1, len, asn);
    }
}

/// Writes the program of `node` (a subtree holding at least one mapped prefix).
fn emit(w: &mut Writer, node: &Node) {
    match node {
        Node::Unmapped => unreachable!("unmapped subtrees are reached only through MATCH"),
        Node::Leaf(asn) => {
            w.op(Op::Return);
            w.int(ASN_MIN, ASN_SIZES, *asn);
        }
        Node::Split(zero, one) => match (&**zero, &**one) {
            (Node::Unmapped, Node::Unmapped) => unreachable!("inserted paths are never empty"),
            (Node::Unmapped, _) | (_, Node::Unmapped) => {
                // A run of one-sided steps becomes MATCHes of up to 8 bits each.
                let mut pattern_bits: Vec<bool> = Vec::new();
                let mut n = node;
                while let Node::Split(z, o) = n {
                    match (&**z, &**o) {
                        (Node::Unmapped, child) => {
                            pattern_bits.push(true);
                            n = child;
                        }
                        (child, Node::Unmapped) => {
                            pattern_bits.push(false);
                            n = child;
                        }
                        _ => break,
                    }
                }
                for chunk in pattern_bits.chunks(8) {
                    let mut pattern = 1u32;
                    for &b in chunk {
                        pattern = (pattern << 1) | u32::from(b);
                    }
                    w.op(Op::Match);
                    w.int(MATCH_MIN, MATCH_SIZES, pattern);
                }
                emit(w, n);
            }
            (z, o) => {
                let mut zero_code = Writer::default();
                emit(&mut zero_code, z);
                w.op(Op::Jump);
                w.int(JUMP_MIN, JUMP_SIZES, zero_code.len() as u32);
                w.append(&zero_code);
                emit(w, o);
            }
        },
    }
}

/// Bits being written, least significant first in each byte.
#[derive(Default)]
struct Writer {
    bits: Vec<bool>,
}

impl Writer {
    fn len(&self) -> usize {
        self.bits.len()
    }

    fn append(&mut self, other: &Writer) {
        self.bits.extend_from_slice(&other.bits);
    }

    fn op(&mut self, op: Op) {
        let v = match op {
            Op::Return => 0,
            Op::Jump => 1,
            Op::Match => 2,
            Op::Default => 3,
        };
        self.int(0, TYPE_SIZES, v);
    }

    fn int(&mut self, min: u32, sizes: &[u8], value: u32) {
        let mut rest = u64::from(value - min);
        for (i, &size) in sizes.iter().enumerate() {
            let last = i + 1 == sizes.len();
            if rest >= 1u64 << size && !last {
                self.bits.push(true);
                rest -= 1u64 << size;
                continue;
            }
            if !last {
                self.bits.push(false);
            }
            for b in (0..size).rev() {
                self.bits.push((rest >> b) & 1 == 1);
            }
            return;
        }
    }

    fn finish(self) -> Vec<u8> {
        let mut out = vec![0u8; self.bits.len().div_ceil(8)];
        for (i, &b) in self.bits.iter().enumerate() {
            if b {
                out[i / 8] |= 1 << (i % 8);
            }
        }
        out
    }
}

// ----- Network groups ----------------------------------------------------------------------

/// How addresses are grouped: by prefix, or by AS where an asmap maps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetGroups {
    asmap: Option<Arc<Asmap>>,
    map_local: bool,
}

impl NetGroups {
    /// Grouping by prefix only.
    pub fn by_prefix() -> NetGroups {
        NetGroups::default()
    }

    /// Grouping by the AS of `asmap` where it maps an address. With `map_local`, loopback and
    /// private addresses are looked up too (for test networks on 127.0.0.0/8, which Core
    /// never maps since it never connects there); otherwise only routable IPv4 and IPv6
    /// addresses are, as Core.
    pub fn with_asmap(asmap: Arc<Asmap>, map_local: bool) -> NetGroups {
        NetGroups {
            asmap: Some(asmap),
            map_local,
        }
    }

    /// The map in use.
    pub fn asmap(&self) -> Option<&Asmap> {
        self.asmap.as_deref()
    }

    /// The map's version, all zeros without one (what the address book stores to notice a
    /// change of map).
    pub fn version(&self) -> [u8; 32] {
        self.asmap.as_ref().map_or([0; 32], |m| m.version())
    }

    /// The AS of `addr`: `None` without a map, for networks a map does not cover, and for
    /// addresses it leaves unmapped (Core's `mapped_as` is absent then too).
    pub fn mapped_as(&self, addr: &NetAddr) -> Option<u32> {
        let map = self.asmap.as_ref()?;
        if !self.map_local && !addr.is_routable() {
            return None;
        }
        let ip = match addr.host {
            Host::Ipv4(v4) => v4.to_ipv6_mapped(),
            Host::Ipv6(v6) => linked_ipv4(v6).map_or(v6, |v4| v4.to_ipv6_mapped()),
            Host::TorV3(_) | Host::I2p(_) | Host::Cjdns(_) => return None,
        };
        match map.lookup(&ip.octets()) {
            0 => None,
            asn => Some(asn),
        }
    }

    /// The group of `addr`: its AS where mapped, else [`NetAddr::group`].
    pub fn group(&self, addr: &NetAddr) -> NetGroup {
        match self.mapped_as(addr) {
            Some(asn) => NetGroup::of_as(asn),
            None => addr.group(),
        }
    }
}

/// The IPv4 address an IPv6 address carries, as Core's `GetLinkedIPv4`: 6to4 (2002::/16),
/// Teredo (2001::/32, stored inverted), NAT64 (64:ff9b::/96) and IPv4-translated
/// (::ffff:0:0:0/96).
fn linked_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = v6.octets();
    let s = v6.segments();
    let v4 = |b: [u8; 4]| Some(Ipv4Addr::from(b));
    if s[0] == 0x2002 {
        v4([o[2], o[3], o[4], o[5]])
    } else if s[0] == 0x2001 && s[1] == 0 {
        v4([!o[12], !o[13], !o[14], !o[15]])
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        v4([o[12], o[13], o[14], o[15]])
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
