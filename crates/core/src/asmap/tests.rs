//! The asmap reader against programs assembled by hand from the format's definition, the
//! encoder against a naive longest-prefix match, and the sanity check rule by rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

/// Packs a bit string ("0", "1", spaces ignored) the way asmap files hold it: least
/// significant bit of each byte first.
fn program(bits: &str) -> Vec<u8> {
    let bits: Vec<bool> = bits
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c == '1')
        .collect();
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        if *b {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

/// AS `n` (below 32769) in the operand code: class 0, then 15 bits of n - 1.
fn asn15(n: u32) -> String {
    format!("0{:015b}", n - 1)
}

const RETURN: &str = "0";
const JUMP: &str = "10";
const MATCH: &str = "110";
const DEFAULT: &str = "111";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

#[test]
fn the_smallest_map_sends_everything_to_one_as() {
    // RETURN AS 1: seventeen zero bits, padded with seven more.
    let map = Asmap::from_bytes(&[0, 0, 0]).unwrap();
    assert_eq!(map.lookup_ip(ip("1.2.3.4")), 1);
    assert_eq!(map.lookup_ip(ip("2001:db8::1")), 1);
    // The version is the file's SHA-256 as sha256sum prints it.
    assert_eq!(
        map.version_hex(),
        "709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c"
    );
    assert_eq!(Asmap::from_bytes(&[]), Err(AsmapError::Empty));
}

#[test]
fn match_and_default_follow_the_definition() {
    // MATCH pattern 0b11 (the next bit must be 1; class 0 of the match code: "0", then the
    // one-bit mantissa 3 - 2 = 1), then RETURN AS 5. A failed match answers the default: 0.
    let bytes = program(&format!("{MATCH} 0 1 {RETURN} {}", asn15(5)));
    let map = Asmap::from_bytes(&bytes).unwrap();
    assert_eq!(map.lookup(&v6("8000::")), 5);
    assert_eq!(map.lookup(&v6("ffff::1")), 5);
    assert_eq!(map.lookup(&v6("7fff::")), 0);
    // IPv4 lives in ::ffff:0:0/96, whose first bit is 0.
    assert_eq!(map.lookup_ip(ip("200.1.1.1")), 0);

    // DEFAULT AS 7, then the same MATCH: the failure answers 7 now.
    let bytes = program(&format!(
        "{DEFAULT} {} {MATCH} 0 1 {RETURN} {}",
        asn15(7),
        asn15(5)
    ));
    let map = Asmap::from_bytes(&bytes).unwrap();
    assert_eq!(map.lookup(&v6("8000::")), 5);
    assert_eq!(map.lookup(&v6("::")), 7);
}

#[test]
fn jump_takes_the_far_branch_on_a_one_bit() {
    // JUMP over a 17-bit RETURN (offset 17 is the code's minimum: class 0, five zero bits).
    let bytes = program(&format!(
        "{JUMP} 0 00000 {RETURN} {} {RETURN} {}",
        asn15(100),
        asn15(200)
    ));
    let map = Asmap::from_bytes(&bytes).unwrap();
    assert_eq!(map.lookup(&v6("::")), 100);
    assert_eq!(map.lookup(&v6("8000::")), 200);
}

#[test]
fn larger_operands_use_the_longer_classes() {
    // AS 32769 is the first of class 1: "1", "0", then 16 bits of 32769 - 1 - 32768 = 0.
    let bytes = program(&format!("{RETURN} 10 {:016b}", 0));
    assert_eq!(Asmap::from_bytes(&bytes).unwrap().lookup(&[0; 16]), 32769);
    // The largest AS of the last class: nine ones, no terminator, 24 bits all set.
    let last = format!("{RETURN} 111111111 {}", "1".repeat(24));
    let max = 1 + (15..24).map(|s| 1u32 << s).sum::<u32>() + (1 << 24) - 1;
    assert_eq!(
        Asmap::from_bytes(&program(&last)).unwrap().lookup(&[0; 16]),
        max
    );
}

fn invalid(bytes: &[u8]) -> &'static str {
    match Asmap::from_bytes(bytes) {
        Err(AsmapError::Invalid { what, .. }) => what,
        other => panic!("expected an invalid map, got {other:?}"),
    }
}

#[test]
fn the_sanity_check_refuses_each_broken_form() {
    // Cut inside the AS number.
    assert_eq!(invalid(&[0, 0]), "an AS number runs past the end");
    // Eight or more bits after the final RETURN.
    assert_eq!(invalid(&[0, 0, 0, 0]), "more than 7 bits of padding");
    // A one bit in the padding.
    assert_eq!(invalid(&[0, 0, 0x80]), "nonzero padding");
    // RETURN right after DEFAULT, and two DEFAULTs.
    let p = program(&format!("{DEFAULT} {} {RETURN} {}", asn15(1), asn15(2)));
    assert_eq!(invalid(&p), "RETURN straight after DEFAULT");
    let p = program(&format!(
        "{DEFAULT} {} {DEFAULT} {} {RETURN} {}",
        asn15(1),
        asn15(2),
        asn15(3)
    ));
    assert_eq!(invalid(&p), "two DEFAULTs in a row");
    // A jump beyond the program.
    let p = program(&format!("{JUMP} 0 11111 {RETURN} {}", asn15(1)));
    assert_eq!(invalid(&p), "a jump past the end");
    // Code after the near branch that the jump skips: unreachable.
    let p = program(&format!(
        "{JUMP} 0 00001 {RETURN} {} 0 {RETURN} {}",
        asn15(1),
        asn15(2)
    ));
    assert_eq!(invalid(&p), "unreachable code");
    // Two short matches in one run.
    let p = program(&format!("{MATCH} 0 1 {MATCH} 0 1 {RETURN} {}", asn15(1)));
    assert_eq!(invalid(&p), "two short MATCHes in one run");
    // No RETURN at all: eight full 8-bit matches (the last class of the match code: seven
    // ones, no terminator, eight bits) end on a byte boundary; trailing zero bits would read
    // as a RETURN cut short.
    let full = format!("{MATCH} 1111111 {:08b} ", 0);
    assert_eq!(
        invalid(&program(&full.repeat(8))),
        "the program ends without RETURN"
    );
    // More than 128 address bits: sixteen full 8-bit matches, then one more bit.
    let p = program(&format!(
        "{}{MATCH} 0 1 {RETURN} {}",
        full.repeat(16),
        asn15(1)
    ));
    assert_eq!(invalid(&p), "more than 128 address bits read");
    // Exactly 128 bits is fine.
    let p = program(&format!("{}{RETURN} {}", full.repeat(16), asn15(9)));
    assert_eq!(Asmap::from_bytes(&p).unwrap().lookup(&[0; 16]), 9);
    assert_eq!(Asmap::from_bytes(&p).unwrap().lookup(&[1; 16]), 0);
}

#[test]
fn garbage_never_panics_and_accepted_garbage_always_answers() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut accepted = 0;
    for len in 1..40 {
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if let Ok(map) = Asmap::from_bytes(&bytes) {
                accepted += 1;
                for _ in 0..8 {
                    let mut a = [0u8; 16];
                    rng.fill(&mut a);
                    map.lookup(&a);
                }
            }
        }
    }
    // Some random strings are valid programs (RETURN of a short class, zero padding).
    assert!(accepted > 0);
}

/// The AS of the longest prefix in `entries` holding `addr`, or 0.
fn naive(entries: &[(IpAddr, u8, u32)], addr: IpAddr) -> u32 {
    let bits = |ip: IpAddr| -> u128 {
        match ip {
            IpAddr::V4(v4) => u128::from_be_bytes(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => u128::from_be_bytes(v6.octets()),
        }
    };
    let a = bits(addr);
    entries
        .iter()
        .filter_map(|&(p, len, asn)| {
            let len = u32::from(len) + if p.is_ipv4() { 96 } else { 0 };
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (a & mask == bits(p) & mask).then_some((len, asn))
        })
        .max_by_key(|&(len, _)| len)
        .map_or(0, |(_, asn)| asn)
}

#[test]
fn encoded_maps_agree_with_a_longest_prefix_match() {
    let mut rng = fastrand::Rng::with_seed(42);
    for round in 0..30 {
        let mut entries = Vec::new();
        for _ in 0..rng.usize(1..60) {
            if rng.bool() {
                let a = Ipv4Addr::from(rng.u32(..));
                entries.push((IpAddr::V4(a), rng.u8(0..=32), rng.u32(1..5_000_000)));
            } else {
                let a = Ipv6Addr::from(rng.u128(..));
                entries.push((IpAddr::V6(a), rng.u8(0..=64), rng.u32(1..5_000_000)));
            }
        }
        let bytes = encode(&entries).expect("something to map");
        let map = Asmap::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("round {round}: our own map refused: {e}"));
        for _ in 0..300 {
            // Half the probes inside a listed prefix, half anywhere.
            let probe = if rng.bool() {
                let (p, _, _) = entries[rng.usize(..entries.len())];
                match p {
                    IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) ^ rng.u32(..256))),
                    IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) ^ rng.u128(..256))),
                }
            } else if rng.bool() {
                IpAddr::V4(Ipv4Addr::from(rng.u32(..)))
            } else {
                IpAddr::V6(Ipv6Addr::from(rng.u128(..)))
            };
            // Equal prefixes (rare) resolve the same way in both: the later entry wins.
            let want = naive(&entries, probe);
            assert_eq!(map.lookup_ip(probe), want, "round {round}: {probe}");
        }
    }
    assert_eq!(encode(&[]), None);
    assert_eq!(encode(&[(ip("1.2.3.0"), 24, 0)]), None);
}

fn na(s: &str) -> NetAddr {
    s.parse().unwrap()
}

#[test]
fn groups_follow_the_map_where_it_maps() {
    let bytes = encode(&[
        (ip("8.8.0.0"), 16, 15169),
        (ip("8.34.0.0"), 16, 15169),
        (ip("2001:4860::"), 32, 15169),
        (ip("1.1.1.0"), 24, 13335),
        (ip("127.0.1.0"), 24, 64500),
    ])
    .unwrap();
    let map = Arc::new(Asmap::from_bytes(&bytes).unwrap());
    let groups = NetGroups::with_asmap(Arc::clone(&map), false);
    // One AS across prefixes and families.
    assert_eq!(groups.mapped_as(&na("8.8.8.8:8333")), Some(15169));
    assert_eq!(
        groups.group(&na("8.8.8.8:8333")),
        groups.group(&na("8.34.1.1:8333"))
    );
    assert_eq!(
        groups.group(&na("8.8.8.8:8333")),
        groups.group(&na("[2001:4860::1]:8333"))
    );
    assert_ne!(
        groups.group(&na("8.8.8.8:8333")),
        groups.group(&na("1.1.1.1:8333"))
    );
    // Unmapped addresses group by prefix, as without a map.
    assert_eq!(groups.mapped_as(&na("9.9.9.9:1")), None);
    assert_eq!(groups.group(&na("9.9.9.9:1")), na("9.9.200.1:1").group());
    // 6to4 carries 8.8.4.4.
    assert_eq!(groups.mapped_as(&na("[2002:808:404::1]:1")), Some(15169));
    // Local addresses only when asked (test networks).
    assert_eq!(groups.mapped_as(&na("127.0.1.5:1")), None);
    let local = NetGroups::with_asmap(map, true);
    assert_eq!(local.mapped_as(&na("127.0.1.5:1")), Some(64500));
    assert_eq!(
        local.group(&na("127.0.1.5:1")),
        local.group(&na("127.0.1.6:1"))
    );
    // No map: no AS, prefix groups, a zero version.
    let plain = NetGroups::by_prefix();
    assert_eq!(plain.mapped_as(&na("8.8.8.8:1")), None);
    assert_eq!(plain.group(&na("8.8.8.8:1")), na("8.8.8.8:1").group());
    assert_eq!(plain.version(), [0; 32]);
    assert_ne!(groups.version(), [0; 32]);
}
