//! Damaged snapshots of the address book and the ban list: a realistic book and list are
//! serialized, then bit flips, overwrites, truncations, inserted and deleted runs, forged
//! counts and duplicated entries are applied. Decoding must return `Ok` or `Err`, never panic,
//! allocate in proportion to its input, and anything it accepts must be a sound structure that
//! saves and reloads to itself.
//!
//! The address book carries its own checksum, which nearly every mutation breaks; three cases
//! in four re-seal the mutated bytes so that they reach the field and slot checks behind it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bitcoin::p2p::ServiceFlags;
use fastrand::Rng;
use peerpool_core::addr::{Host, NetAddr, Network};
use peerpool_core::pool::addrman::{
    AddrMan, AddrManError, AddrRecord, Config, Placement, Table, TableCounts, BUCKET_SIZE,
    MAX_ENTRIES, MAX_TRIED_COLLISIONS, NEW_BUCKET_COUNT, TRIED_BUCKET_COUNT,
};
use peerpool_core::pool::banman::{BanList, BanReason, DecodeError, Subnet};
use peerpool_core::Time;
use proptest::prelude::*;
use siphasher::sip::SipHasher24;

// ----- allocation accounting ---------------------------------------------------------------

/// Counts the bytes each thread holds, and the most it held since [`peak_during`] started, so
/// that a decoder asked to reserve room for `u32::MAX` entries is caught even though the
/// allocation might succeed on a machine with overcommit.
struct CountingAlloc;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(size);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches
// only `const`-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the most bytes this thread held at once beyond what
/// it held when `f` started, and how long `f` took.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    (out, PEAK.with(Cell::get) - base, took)
}

/// An empty book's tables (about 330 kB, see the address book's module docs) plus room for
/// its index and entries: what loading may always take, however small the input.
const BOOK_BASE_BYTES: usize = 1 << 20;
/// Heap bytes loading may take per input byte: an entry is at least 36 bytes in the file and
/// about 200 in memory with its index and random-order slot.
const BYTES_PER_INPUT_BYTE: usize = 16;

// ----- the fixtures ------------------------------------------------------------------------

const START: Time = Time::from_secs(1_700_000_000);
const KEY: [u8; 16] = *b"mutation-key-16b";

fn v4(a: u8, b: u8, c: u8, d: u8) -> NetAddr {
    NetAddr {
        host: Host::Ipv4(Ipv4Addr::new(a, b, c, d)),
        port: 8333,
    }
}

fn hear(book: &mut AddrMan, from: NetAddr, addrs: &[NetAddr], now: Time) {
    let recs: Vec<AddrRecord> = addrs
        .iter()
        .map(|&a| (a, ServiceFlags::NETWORK, now - Duration::from_secs(3600)))
        .collect();
    book.add(&recs, from, Duration::from_secs(2 * 60 * 60), now);
}

/// A book of several hundred entries over all five networks, new and tried, some in several
/// new buckets, some with failed attempts, and a full set of tried collisions.
fn build_book() -> AddrMan {
    let mut rng = Rng::with_seed(0x5eed);
    let mut book = AddrMan::new(Config::default(), KEY, Rng::with_seed(11));
    let mut now = START;
    let mut all = Vec::new();
    for i in 0..240u32 {
        all.push(v4(11 + (i % 180) as u8, (i / 180) as u8 + 1, 5, 9));
    }
    for i in 0..40u16 {
        all.push(NetAddr {
            host: Host::Ipv6(Ipv6Addr::new(0x2001, 0x4860, i, 0, 0, 0, 0, i + 1)),
            port: 8333,
        });
    }
    for _ in 0..25 {
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        all.push(NetAddr {
            host: Host::TorV3(key),
            port: 8333,
        });
    }
    for _ in 0..20 {
        let mut hash = [0u8; 32];
        rng.fill(&mut hash);
        all.push(NetAddr {
            host: Host::I2p(hash),
            port: 0,
        });
    }
    for i in 0..20u16 {
        all.push(NetAddr {
            host: Host::Cjdns(Ipv6Addr::new(0xfc00 + i, 0x1234, 0, 0, 0, 0, 0, i + 1)),
            port: 8333,
        });
    }
    // Each address heard from a few different sources, so some sit in several new buckets.
    for round in 0..3u8 {
        for (i, chunk) in all.chunks(10).enumerate() {
            hear(&mut book, v4(150 + round, i as u8, 1, 1), chunk, now);
        }
        now = now + Duration::from_secs(600);
    }
    for (i, a) in all.iter().enumerate() {
        match i % 4 {
            0 => {
                book.attempt(a, false, now);
                book.good(a, now);
            }
            1 => book.attempt(a, true, now),
            _ => {}
        }
    }
    // Addresses of one /16 share 8 tried buckets (512 slots): promoting 150 of them makes
    // slot collisions certain, and the newcomers wait in the collision set.
    let crowd: Vec<NetAddr> = (0..150u32)
        .map(|i| v4(77, 7, (i / 200) as u8 + 1, (i % 200) as u8 + 1))
        .collect();
    for (i, chunk) in crowd.chunks(10).enumerate() {
        hear(&mut book, v4(190, i as u8, 1, 1), chunk, now);
    }
    now = now + Duration::from_secs(60);
    for a in &crowd {
        book.good(a, now);
    }
    book
}

fn book() -> &'static (AddrMan, Vec<u8>) {
    static BOOK: OnceLock<(AddrMan, Vec<u8>)> = OnceLock::new();
    BOOK.get_or_init(|| {
        let book = build_book();
        let bytes = book.serialize();
        (book, bytes)
    })
}

fn build_bans() -> BanList {
    let mut rng = Rng::with_seed(0xba5);
    let mut bans = BanList::new();
    let now = START;
    let until = |rng: &mut Rng| now + Duration::from_secs(rng.u64(1..30 * 24 * 3600));
    let reason = |rng: &mut Rng| {
        if rng.bool() {
            BanReason::Manual
        } else {
            BanReason::Misbehaviour
        }
    };
    for i in 0..60u8 {
        let prefix = [32, 24, 16, 8, 30, 0][usize::from(i % 6)];
        let ip = IpAddr::V4(Ipv4Addr::new(20 + i, i, 3, 4));
        let subnet = Subnet::new(ip, prefix).expect("valid IPv4 prefix");
        let u = until(&mut rng);
        bans.ban(subnet, u, reason(&mut rng), now);
    }
    for i in 0..30u16 {
        let prefix = [128, 64, 48, 32, 0][usize::from(i % 5)];
        let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, i, 7, 0, 0, 0, 1));
        let subnet = Subnet::new(ip, prefix).expect("valid IPv6 prefix");
        let u = until(&mut rng);
        bans.ban(subnet, u, reason(&mut rng), now);
    }
    for i in 0..20 {
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let host = if i % 2 == 0 {
            Host::TorV3(key)
        } else {
            Host::I2p(key)
        };
        let u = until(&mut rng);
        bans.ban(Subnet::host(host), u, reason(&mut rng), now);
    }
    bans
}

fn bans() -> &'static (BanList, Vec<u8>) {
    static BANS: OnceLock<(BanList, Vec<u8>)> = OnceLock::new();
    BANS.get_or_init(|| {
        let bans = build_bans();
        let bytes = bans.encode();
        (bans, bytes)
    })
}

// ----- the book's layout, for targeted forgeries -------------------------------------------

/// Magic, version, grouping and key.
const BOOK_KEY_END: usize = 4 + 1 + 32 + 16;
/// Bytes of the book's trailing checksum.
const BOOK_SUM_LEN: usize = 8;

/// Replaces the book's trailing checksum (SipHash-2-4 under the zero key of the bytes before
/// it) after the body was edited, so the edit reaches the decoder's field checks.
fn reseal(data: &mut Vec<u8>) {
    let body = data.len().saturating_sub(BOOK_SUM_LEN);
    data.truncate(body);
    let sum = SipHasher24::new_with_key(&[0; 16]).hash(data);
    data.extend_from_slice(&sum.to_le_bytes());
}

/// Where the fields of a well-formed serialized book are.
struct BookLayout {
    count_at: usize,
    /// Start and end of each entry.
    entries: Vec<(usize, usize)>,
    collisions_at: usize,
}

fn book_layout(data: &[u8]) -> BookLayout {
    let opt_time = |at: usize| if data[at] == 0 { 1 } else { 9 };
    let addr = |at: usize| {
        1 + match data[at] {
            1 => 4,
            2 | 6 => 16,
            4 | 5 => 32,
            id => panic!("fixture holds network id {id}"),
        } + 2
    };
    let count_at = BOOK_KEY_END + opt_time(BOOK_KEY_END);
    let count = u32::from_le_bytes(data[count_at..count_at + 4].try_into().unwrap());
    let mut at = count_at + 4;
    let mut entries = Vec::new();
    for _ in 0..count {
        let start = at;
        at += addr(at);
        at += addr(at);
        at += 16;
        for _ in 0..3 {
            at += opt_time(at);
        }
        at += 4;
        let table = data[at];
        at += 1;
        if table == 0 {
            at += 1 + 2 * usize::from(data[at]);
        }
        entries.push((start, at));
    }
    BookLayout {
        count_at,
        entries,
        collisions_at: at,
    }
}

// ----- mutations ---------------------------------------------------------------------------

/// One kind of damage. Positions are taken modulo the length of the data at that point.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    Overwrite {
        at: usize,
        bytes: Vec<u8>,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    /// A 4-byte little-endian integer written over whatever is there, as a forged count.
    ForgeU32 {
        at: usize,
        value: u32,
    },
    /// A run of the data copied elsewhere, as a duplicated entry would be.
    DuplicateRun {
        from: usize,
        len: usize,
        to: usize,
    },
}

fn huge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(u32::MAX),
        Just(u32::MAX / 2 + 1),
        Just(MAX_ENTRIES as u32),
        Just(MAX_ENTRIES as u32 + 1),
        Just(0),
        Just(1),
        any::<u32>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..96).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (any::<usize>(), huge_u32()).prop_map(|(at, value)| Mutation::ForgeU32 { at, value }),
        1 => (any::<usize>(), 1usize..160, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::DuplicateRun { from, len, to }),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match m {
        Mutation::FlipBit { at, bit } => {
            if !data.is_empty() {
                let i = pos(*at, data.len());
                data[i] ^= 1 << bit;
            }
        }
        Mutation::Overwrite { at, bytes } => {
            let i = pos(*at, data.len());
            for (j, &b) in bytes.iter().enumerate() {
                if let Some(slot) = data.get_mut(i + j) {
                    *slot = b;
                }
            }
        }
        Mutation::Truncate { at } => {
            let i = pos(*at, data.len() + 1);
            data.truncate(i);
        }
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, data.len() + 1);
            data.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let i = pos(*at, data.len() + 1);
            let end = (i + len).min(data.len());
            data.drain(i..end);
        }
        Mutation::ForgeU32 { at, value } => {
            let i = pos(*at, data.len().saturating_sub(3));
            for (j, b) in value.to_le_bytes().into_iter().enumerate() {
                if let Some(slot) = data.get_mut(i + j) {
                    *slot = b;
                }
            }
        }
        Mutation::DuplicateRun { from, len, to } => {
            let i = pos(*from, data.len());
            let run: Vec<u8> = data[i..(i + len).min(data.len())].to_vec();
            let j = pos(*to, data.len() + 1);
            data.splice(j..j, run);
        }
    }
}

// ----- what a loaded structure must satisfy -------------------------------------------------

/// Everything the public API can tell about a book must agree with itself, and the book must
/// save and reload to the same thing, byte for byte.
fn check_book(book: &AddrMan) -> Result<(), TestCaseError> {
    prop_assert_eq!(book.check(), Ok(()));
    let entries: Vec<_> = book.entries().collect();
    prop_assert_eq!(entries.len(), book.size());
    prop_assert_eq!(book.counts().total(), book.size());
    prop_assert_eq!(book.is_empty(), book.size() == 0);

    let mut by_net: BTreeMap<Network, TableCounts> = BTreeMap::new();
    let mut refs: BTreeMap<NetAddr, u8> = BTreeMap::new();
    for e in &entries {
        let c = by_net.entry(e.addr.network()).or_default();
        match e.placement {
            Placement::New { references } => {
                prop_assert!((1..=8).contains(&references), "{:?}", e);
                refs.insert(e.addr, references);
                c.new += 1;
            }
            Placement::Tried => {
                prop_assert!(
                    e.last_success.is_some(),
                    "tried but never connected: {:?}",
                    e
                );
                c.tried += 1;
            }
        }
        prop_assert_eq!(book.info(&e.addr), Some(*e));
    }
    for (net, counts) in book.counts_by_network() {
        prop_assert_eq!(
            counts,
            by_net.get(&net).copied().unwrap_or_default(),
            "{:?}",
            net
        );
    }

    // Every new reference is one occupied slot, every tried entry exactly one.
    let mut seen_new: BTreeMap<NetAddr, u8> = BTreeMap::new();
    let mut positions = BTreeSet::new();
    for (bucket, pos, info) in book.slots(Table::New) {
        prop_assert!(bucket < NEW_BUCKET_COUNT && pos < BUCKET_SIZE);
        prop_assert!(positions.insert((bucket, pos)));
        prop_assert!(
            matches!(info.placement, Placement::New { .. }),
            "{:?}",
            info
        );
        *seen_new.entry(info.addr).or_default() += 1;
    }
    prop_assert_eq!(&seen_new, &refs);
    let mut seen_tried = BTreeSet::new();
    for (bucket, pos, info) in book.slots(Table::Tried) {
        prop_assert!(bucket < TRIED_BUCKET_COUNT && pos < BUCKET_SIZE);
        prop_assert_eq!(info.placement, Placement::Tried);
        prop_assert!(
            seen_tried.insert(info.addr),
            "{} in two tried slots",
            info.addr
        );
    }
    prop_assert_eq!(seen_tried.len(), book.counts().tried);

    let collisions: Vec<NetAddr> = book.tried_collisions().collect();
    prop_assert!(collisions.len() <= MAX_TRIED_COLLISIONS);
    prop_assert_eq!(
        collisions.iter().collect::<BTreeSet<_>>().len(),
        collisions.len()
    );
    for c in &collisions {
        prop_assert!(book.info(c).is_some(), "collision {} not in the book", c);
    }

    let saved = book.serialize();
    let again = AddrMan::deserialize(&saved);
    prop_assert!(again.is_ok(), "reload of a loaded book: {:?}", again.err());
    let again = again.unwrap();
    prop_assert!(again == *book, "reloaded book differs");
    prop_assert!(
        again.serialize() == saved,
        "second save differs from the first"
    );
    Ok(())
}

/// The same for a ban list: lookups, counts and expiries agree with the listing, it encodes
/// and decodes to itself, and sweeping removes exactly the expired part.
fn check_bans(list: &BanList) -> Result<(), TestCaseError> {
    let entries: Vec<_> = list.iter().copied().collect();
    prop_assert_eq!(entries.len(), list.len());
    prop_assert_eq!(list.is_empty(), entries.is_empty());
    prop_assert!(!list.is_dirty());
    for e in &entries {
        prop_assert_eq!(list.get(&e.subnet), Some(e));
        // While the ban is in force, its own network address is banned by it or by a longer
        // prefix that covers it.
        if let (Some(ip), Some(prefix)) = (e.subnet.network(), e.subnet.prefix()) {
            if e.until > Time::from_micros(0) {
                let now = Time::from_micros(e.until.as_micros() - 1);
                let found = list.find(&Host::from_ip(ip), now);
                prop_assert!(found.is_some(), "{} not matched while in force", e.subnet);
                let found = found.unwrap();
                prop_assert!(
                    found.subnet.prefix() >= Some(prefix),
                    "{:?} for {:?}",
                    found,
                    e
                );
            }
        }
    }
    prop_assert_eq!(list.next_expiry(), entries.iter().map(|e| e.until).min());

    let bytes = list.encode();
    let again = BanList::decode(&bytes);
    prop_assert!(again.is_ok(), "re-decode: {:?}", again.err());
    let again = again.unwrap();
    prop_assert_eq!(again.iter().copied().collect::<Vec<_>>(), entries.clone());
    prop_assert!(again.encode() == bytes);

    if let Some(mid) = entries.get(entries.len() / 2).map(|e| e.until) {
        let mut swept = list.clone();
        let removed = swept.sweep(mid);
        prop_assert!(removed.iter().all(|e| e.until <= mid));
        prop_assert!(swept.iter().all(|e| e.until > mid));
        prop_assert_eq!(removed.len() + swept.len(), entries.len());
        prop_assert_eq!(swept.next_expiry(), swept.iter().map(|e| e.until).min());
    }
    Ok(())
}

// ----- properties --------------------------------------------------------------------------

#[test]
fn the_fixtures_are_what_the_properties_need() {
    let (book, bytes) = book();
    book.check().expect("fixture book is consistent");
    assert!(book.size() >= 300, "{}", book.size());
    let counts = book.counts();
    assert!(counts.new >= 100 && counts.tried >= 100, "{counts:?}");
    for net in [
        Network::Ipv4,
        Network::Ipv6,
        Network::Onion,
        Network::I2p,
        Network::Cjdns,
    ] {
        assert!(book.network_counts(net).total() > 0, "no {net:?} entries");
    }
    assert!(
        book.entries()
            .any(|e| matches!(e.placement, Placement::New { references } if references > 1)),
        "no entry in several new buckets"
    );
    assert!(book.tried_collisions().count() > 0, "no tried collisions");
    let layout = book_layout(bytes);
    assert_eq!(layout.entries.len(), book.size());
    assert_eq!(
        bytes[layout.collisions_at] as usize,
        book.tried_collisions().count()
    );
    let (loaded, peak, _) = peak_during(|| AddrMan::deserialize(bytes));
    assert!(loaded.expect("own output loads") == *book);
    // The allocation bound of the properties is live: loading holds at least the two tables.
    assert!(peak > 300_000, "counted only {peak} bytes");
    assert!(
        peak <= BOOK_BASE_BYTES + BYTES_PER_INPUT_BYTE * bytes.len(),
        "{peak}"
    );

    let (bans, bytes) = bans();
    assert!(bans.len() >= 80, "{}", bans.len());
    let decoded = BanList::decode(bytes).expect("own output decodes");
    assert_eq!(
        decoded.iter().collect::<Vec<_>>(),
        bans.iter().collect::<Vec<_>>()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_address_book_loads_soundly_or_is_refused(
        mutations in prop::collection::vec(mutation(), 1..4),
        sealed in prop::bool::weighted(0.75),
    ) {
        let (original, bytes) = book();
        let mut data = bytes.clone();
        for m in &mutations {
            apply(&mut data, m);
        }
        if sealed {
            reseal(&mut data);
        }
        let (result, peak, took) = peak_during(|| AddrMan::deserialize(&data));
        prop_assert!(
            peak <= BOOK_BASE_BYTES + BYTES_PER_INPUT_BYTE * data.len(),
            "loading {} bytes took {} bytes of heap", data.len(), peak
        );
        prop_assert!(took < Duration::from_secs(2), "loading took {:?}", took);
        match result {
            Ok(book) => {
                check_book(&book)?;
                if data == *bytes {
                    prop_assert!(book == *original);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn a_damaged_ban_list_decodes_soundly_or_is_refused(
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let (_, bytes) = bans();
        let mut data = bytes.clone();
        for m in &mutations {
            apply(&mut data, m);
        }
        let (result, peak, took) = peak_during(|| BanList::decode(&data));
        // Tree nodes per entry (two maps and a set) stay well under 16 bytes per input byte.
        prop_assert!(
            peak <= 64 * 1024 + BYTES_PER_INPUT_BYTE * data.len(),
            "decoding {} bytes took {} bytes of heap", data.len(), peak
        );
        prop_assert!(took < Duration::from_secs(2), "decoding took {:?}", took);
        match result {
            Ok(list) => check_bans(&list)?,
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// An entry copied next to itself with the count raised to match: a sound file in every
    /// respect but the duplicate, which must be named.
    #[test]
    fn a_duplicated_book_entry_is_refused(pick in any::<prop::sample::Index>()) {
        let (_, bytes) = book();
        let layout = book_layout(bytes);
        let (start, end) = layout.entries[pick.index(layout.entries.len())];
        let mut data = bytes.clone();
        data.splice(end..end, bytes[start..end].to_vec());
        let count = layout.entries.len() as u32 + 1;
        data[layout.count_at..layout.count_at + 4].copy_from_slice(&count.to_le_bytes());
        reseal(&mut data);
        let result = AddrMan::deserialize(&data);
        prop_assert!(
            matches!(result, Err(AddrManError::DuplicateAddress(_))),
            "{:?}", result.err()
        );
    }

    #[test]
    fn a_duplicated_ban_is_refused(pick in any::<prop::sample::Index>()) {
        let (bans, bytes) = bans();
        // Entries are written in subnet order; find entry boundaries by re-encoding prefixes.
        let mut bounds = vec![5usize];
        let mut partial = BanList::new();
        for e in bans.iter() {
            partial.ban(e.subnet, e.until, e.reason, e.created);
            bounds.push(partial.encode().len());
        }
        prop_assume!(bounds.len() > 1);
        let i = pick.index(bounds.len() - 1);
        let (start, end) = (bounds[i], bounds[i + 1]);
        let mut data = bytes.clone();
        data.splice(end..end, bytes[start..end].to_vec());
        let count = bans.len() as u32 + 1;
        data[1..5].copy_from_slice(&count.to_le_bytes());
        let result = BanList::decode(&data);
        prop_assert!(
            matches!(result, Err(DecodeError::Duplicate { entry, .. }) if entry == i + 1),
            "{:?}", result.err()
        );
    }
}

/// Counts that promise far more entries than the bytes hold are refused before anything is
/// read or reserved for them.
#[test]
fn forged_huge_counts_fail_fast_without_big_allocations() {
    let (_, bytes) = book();
    let layout = book_layout(bytes);
    for (count, expect) in [
        (u32::MAX, AddrManError::TooManyEntries(u64::from(u32::MAX))),
        (
            MAX_ENTRIES as u32 + 1,
            AddrManError::TooManyEntries(MAX_ENTRIES as u64 + 1),
        ),
        (MAX_ENTRIES as u32, AddrManError::Truncated("entries")),
    ] {
        let mut data = bytes.clone();
        data[layout.count_at..layout.count_at + 4].copy_from_slice(&count.to_le_bytes());
        reseal(&mut data);
        let (result, peak, took) = peak_during(|| AddrMan::deserialize(&data));
        assert_eq!(result.err(), Some(expect), "count {count}");
        assert!(
            peak <= BOOK_BASE_BYTES,
            "count {count}: {peak} bytes of heap"
        );
        assert!(took < Duration::from_millis(500), "count {count}: {took:?}");
        // The bare header with a huge count and nothing after it.
        let mut bare = data[..layout.count_at + 4].to_vec();
        bare.extend_from_slice(&[0; BOOK_SUM_LEN]);
        reseal(&mut bare);
        let (result, peak, _) = peak_during(|| AddrMan::deserialize(&bare));
        assert!(result.is_err(), "count {count} with no entries loaded");
        assert!(
            peak <= BOOK_BASE_BYTES,
            "count {count}: {peak} bytes of heap"
        );
    }
    // A collision count past the limit.
    let mut data = bytes.clone();
    data[layout.collisions_at] = u8::MAX;
    reseal(&mut data);
    assert_eq!(
        AddrMan::deserialize(&data).err(),
        Some(AddrManError::InvalidField("collision count"))
    );

    let (_, bytes) = bans();
    for count in [u32::MAX, u32::MAX / 22, 1 << 24] {
        let mut data = bytes.clone();
        data[1..5].copy_from_slice(&count.to_le_bytes());
        let (result, peak, took) = peak_during(|| BanList::decode(&data));
        assert!(
            matches!(result, Err(DecodeError::CountTooLarge { count: c, .. }) if c == count),
            "count {count}: {result:?}"
        );
        assert!(peak <= 4096, "count {count}: {peak} bytes of heap");
        assert!(took < Duration::from_millis(500), "count {count}: {took:?}");
        let (result, _, _) = peak_during(|| BanList::decode(&data[..5]));
        assert!(result.is_err());
    }
}
