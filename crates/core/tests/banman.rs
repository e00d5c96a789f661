//! The ban manager: subnets as `setban` spells them, the ban list's expiry and matching, the
//! verdicts on a peer's score, and the serialized list under arbitrary bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use peerpool_core::addr::{Host, NetAddr};
use peerpool_core::ban::BanScore;
use peerpool_core::misbehaviour::Misbehaviour;
use peerpool_core::pool::banman::{
    verdict, BanEntry, BanList, BanMan, BanReason, Config, DecodeError, Subnet, SubnetError,
    Verdict, DEFAULT_BAN_DURATION, FORMAT_VERSION,
};
use peerpool_core::Time;
use proptest::prelude::*;

/// The Tor Project's published v3 onion name.
const ONION: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

const T0: Time = Time::from_secs(1_700_000_000);

fn at(secs: u64) -> Time {
    T0 + Duration::from_secs(secs)
}

fn subnet(s: &str) -> Subnet {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn addr(s: &str) -> NetAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn i2p_name() -> String {
    Host::I2p([7; 32]).to_string()
}

// ----- Parsing and display -----------------------------------------------------------------

#[test]
fn parses_what_setban_accepts_and_displays_cores_form() {
    let cases = [
        ("1.2.3.4", "1.2.3.4/32"),
        ("1.2.3.4/32", "1.2.3.4/32"),
        ("1.2.3.0/24", "1.2.3.0/24"),
        ("1.2.3.77/24", "1.2.3.0/24"),
        ("1.2.3.0/255.255.255.0", "1.2.3.0/24"),
        ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),
        ("1.2.3.4/255.255.255.255", "1.2.3.4/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("9.9.9.9/0.0.0.0", "0.0.0.0/0"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("2001:db8:1234::/32", "2001:db8::/32"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("[2001:db8::1]", "2001:db8::1/128"),
        ("[2001:db8::]/32", "2001:db8::/32"),
        ("2001:db8::/ffff:ffff::", "2001:db8::/32"),
        ("::/0", "::/0"),
        ("fc00::1", "fc00::1/128"),
        // IPv4-mapped addresses are IPv4 hosts, so their ranges are IPv4 ranges.
        ("::ffff:1.2.3.4", "1.2.3.4/32"),
        ("::ffff:1.2.3.0/24", "1.2.3.0/24"),
        ("[::ffff:1.2.3.0]/255.255.255.0", "1.2.3.0/24"),
        (ONION, ONION),
    ];
    for (input, shown) in cases {
        let s = subnet(input);
        assert_eq!(s.to_string(), shown, "{input}");
        assert_eq!(
            subnet(shown),
            s,
            "{shown} must parse back to the same subnet"
        );
    }
    let i2p = i2p_name();
    assert_eq!(subnet(&i2p).to_string(), i2p);
    assert_eq!(subnet(&ONION.to_uppercase()), subnet(ONION));
    assert_eq!(subnet("1.2.3.0/24").prefix(), Some(24));
    assert_eq!(subnet(ONION).prefix(), None);
    assert!(subnet(ONION).is_single_host());
    assert!(subnet("1.2.3.4").is_single_host());
    assert!(!subnet("1.2.3.4/31").is_single_host());
    assert_eq!(
        subnet("1.2.3.9/24").network(),
        Some(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 0)))
    );
}

#[test]
fn refuses_anything_else_with_a_reason() {
    let invalid_addr = |s: &str| SubnetError::InvalidAddress(s.to_owned());
    let invalid_mask = |s: &str| SubnetError::InvalidMask(s.to_owned());
    let onion_24 = format!("{ONION}/24");
    let bad_onion = ONION.replacen('2', "3", 1);
    let cases: Vec<(&str, SubnetError)> = vec![
        ("", SubnetError::Empty),
        ("1.2.3", invalid_addr("1.2.3")),
        ("1.2.3.4.5", invalid_addr("1.2.3.4.5")),
        ("01.2.3.4", invalid_addr("01.2.3.4")),
        (" 1.2.3.4", invalid_addr(" 1.2.3.4")),
        ("1.2.3.4:8333", invalid_addr("1.2.3.4:8333")),
        ("[1.2.3.4]", invalid_addr("[1.2.3.4]")),
        ("example.com", invalid_addr("example.com")),
        ("/24", invalid_addr("")),
        (&bad_onion, invalid_addr(&bad_onion)),
        ("x.onion", invalid_addr("x.onion")),
        ("1.2.3.4/", invalid_mask("")),
        ("1.2.3.4/abc", invalid_mask("abc")),
        ("1.2.3.4/-1", invalid_mask("-1")),
        ("1.2.3.4/+8", invalid_mask("+8")),
        ("1.2.3.4/1000", invalid_mask("1000")),
        ("1.2.3.4/24/8", invalid_mask("24/8")),
        (
            "1.2.3.4/33",
            SubnetError::PrefixTooLong {
                prefix: 33,
                bits: 32,
            },
        ),
        (
            "2001:db8::/129",
            SubnetError::PrefixTooLong {
                prefix: 129,
                bits: 128,
            },
        ),
        (
            "1.2.3.4/255.0.255.0",
            SubnetError::NonContiguousMask("255.0.255.0".parse().unwrap()),
        ),
        (
            "1.2.3.4/ffff::",
            SubnetError::MaskFamilyMismatch {
                addr: "1.2.3.4".parse().unwrap(),
                mask: "ffff::".parse().unwrap(),
            },
        ),
        (&onion_24, SubnetError::MaskOnSingleHost(onion_24.clone())),
        // A mapped address is IPv4, so its prefix counts IPv4 bits, as in Bitcoin Core.
        (
            "::ffff:1.2.3.0/120",
            SubnetError::PrefixTooLong {
                prefix: 120,
                bits: 32,
            },
        ),
    ];
    for (input, expected) in cases {
        let got = input.parse::<Subnet>();
        assert_eq!(got, Err(expected), "{input:?}");
        // Every refusal explains itself in words.
        assert!(!got.unwrap_err().to_string().is_empty());
    }
}

#[test]
fn constructors_agree_with_parsing() {
    let ip: IpAddr = "1.2.3.4".parse().unwrap();
    assert_eq!(Subnet::new(ip, 16).unwrap(), subnet("1.2.0.0/16"));
    assert!(Subnet::new(ip, 33).is_err());
    assert_eq!(Subnet::from(ip), subnet("1.2.3.4"));
    let mapped: IpAddr = "::ffff:1.2.3.4".parse().unwrap();
    assert_eq!(Subnet::new(mapped, 24).unwrap(), subnet("1.2.3.0/24"));
    assert!(Subnet::new(mapped, 120).is_err(), "IPv4 bits");
    assert_eq!(Subnet::from(mapped), subnet("1.2.3.4"));
    assert_eq!(
        Subnet::host(addr(&format!("{ONION}:9050")).host),
        subnet(ONION)
    );
    // A CJDNS host is banned as its IPv6 /128.
    let cjdns = Host::Cjdns("fc01::7".parse().unwrap());
    assert_eq!(Subnet::host(cjdns), subnet("fc01::7"));
}

#[test]
fn subnets_contain_hosts_of_their_family() {
    let v4 = subnet("10.1.0.0/16");
    assert!(v4.contains(&addr("10.1.200.3:1").host));
    assert!(!v4.contains(&addr("10.2.0.1:1").host));
    assert!(!v4.contains(&addr("[::ffff:10.2.0.1]:1").host));
    assert!(v4.contains(&addr("[::ffff:10.1.0.1]:1").host));
    let all_v6 = subnet("::/0");
    assert!(all_v6.contains(&addr("[2001:db8::1]:1").host));
    assert!(
        !all_v6.contains(&addr("1.2.3.4:1").host),
        "IPv6 ranges never match IPv4"
    );
    assert!(!subnet("0.0.0.0/0").contains(&addr("[2001:db8::1]:1").host));
    let cjdns = Host::Cjdns("fc01::7".parse().unwrap());
    assert!(subnet("fc00::/8").contains(&cjdns));
    assert!(subnet(ONION).contains(&addr(&format!("{ONION}:1")).host));
    assert!(!subnet(ONION).contains(&Host::TorV3([0; 32])));
    assert!(!subnet(ONION).contains(&addr("1.2.3.4:1").host));
}

// ----- The ban list ------------------------------------------------------------------------

#[test]
fn a_ban_holds_until_its_expiry_and_is_swept_then() {
    let mut list = BanList::new();
    let until = at(100);
    assert!(list.ban(subnet("1.2.3.0/24"), until, BanReason::Manual, at(0)));
    let a = addr("1.2.3.4:8333");
    assert!(list.is_banned(&a, at(0)));
    assert!(list.is_banned(&addr("1.2.3.4:1"), at(0)), "any port");
    assert!(list.is_banned(&a, at(99)));
    assert!(!list.is_banned(&a, at(100)), "over at `until`");
    assert!(!list.is_banned(&addr("1.2.4.4:8333"), at(0)));
    assert_eq!(list.next_expiry(), Some(until));
    assert_eq!(list.len(), 1, "expired but not yet swept");
    assert!(list.sweep(at(99)).is_empty());
    let swept = list.sweep(at(100));
    assert_eq!(
        swept,
        vec![BanEntry {
            subnet: subnet("1.2.3.0/24"),
            created: at(0),
            until,
            reason: BanReason::Manual,
        }]
    );
    assert!(list.is_empty());
    assert_eq!(list.next_expiry(), None);
}

#[test]
fn bans_are_only_lengthened_and_never_born_expired() {
    let mut list = BanList::new();
    let s = subnet("1.2.3.4");
    assert!(
        !list.ban(s, at(0), BanReason::Manual, at(0)),
        "already over"
    );
    assert!(list.is_empty());
    assert!(list.ban(s, at(100), BanReason::Manual, at(0)));
    assert!(
        !list.ban(s, at(50), BanReason::Misbehaviour, at(10)),
        "shorter"
    );
    assert!(
        !list.ban(s, at(100), BanReason::Misbehaviour, at(10)),
        "same"
    );
    assert_eq!(list.get(&s).unwrap().reason, BanReason::Manual);
    assert!(list.ban(s, at(200), BanReason::Misbehaviour, at(10)));
    let e = *list.get(&s).unwrap();
    assert_eq!(
        (e.created, e.until, e.reason),
        (at(10), at(200), BanReason::Misbehaviour)
    );
    assert_eq!(list.len(), 1);
    assert_eq!(list.next_expiry(), Some(at(200)));
    // Shortening takes an unban first.
    assert!(list.unban(&s));
    assert!(list.ban(s, at(20), BanReason::Manual, at(10)));
    assert_eq!(list.next_expiry(), Some(at(20)));
}

#[test]
fn unban_lifts_exactly_the_subnet_named() {
    let mut list = BanList::new();
    list.ban(subnet("1.2.0.0/16"), at(100), BanReason::Manual, at(0));
    list.ban(subnet("1.2.3.4"), at(100), BanReason::Manual, at(0));
    assert!(!list.unban(&subnet("1.2.3.0/24")), "never banned");
    assert!(list.unban(&subnet("1.2.3.4")));
    assert!(!list.unban(&subnet("1.2.3.4")), "only once");
    assert!(
        list.is_banned(&addr("1.2.3.4:1"), at(1)),
        "the /16 still covers it"
    );
    assert!(list.unban(&subnet("1.2.0.0/16")));
    assert!(!list.is_banned(&addr("1.2.3.4:1"), at(1)));
}

#[test]
fn overlapping_bans_each_count_and_the_narrowest_is_reported() {
    let mut list = BanList::new();
    list.ban(subnet("1.0.0.0/8"), at(50), BanReason::Manual, at(0));
    list.ban(
        subnet("1.2.3.0/24"),
        at(100),
        BanReason::Misbehaviour,
        at(0),
    );
    let a = addr("1.2.3.4:1");
    assert_eq!(
        list.find(&a.host, at(1)).unwrap().subnet,
        subnet("1.2.3.0/24")
    );
    // The wide one ends first: the narrow one still applies.
    assert!(list.is_banned(&a, at(60)));
    assert!(list.is_banned(&addr("1.9.9.9:1"), at(49)));
    assert!(!list.is_banned(&addr("1.9.9.9:1"), at(50)));
    // The narrow one ends first: the wide one still applies.
    list.ban(subnet("5.0.0.0/8"), at(100), BanReason::Manual, at(0));
    list.ban(subnet("5.5.5.0/24"), at(50), BanReason::Manual, at(0));
    let b = addr("5.5.5.5:1");
    assert_eq!(
        list.find(&b.host, at(10)).unwrap().subnet,
        subnet("5.5.5.0/24")
    );
    assert_eq!(
        list.find(&b.host, at(60)).unwrap().subnet,
        subnet("5.0.0.0/8")
    );
}

#[test]
fn every_kind_of_host_can_be_banned() {
    let mut list = BanList::new();
    let onion = addr(&format!("{ONION}:9050"));
    let i2p = addr(&i2p_name());
    let cjdns = NetAddr {
        host: Host::Cjdns("fc01::7".parse().unwrap()),
        port: 8333,
    };
    for a in [onion, i2p, cjdns] {
        assert!(!list.is_banned(&a, at(0)));
        list.ban(Subnet::host(a.host), at(100), BanReason::Manual, at(0));
        assert!(list.is_banned(&a, at(0)), "{a}");
    }
    assert!(!list.is_banned(
        &NetAddr {
            host: Host::TorV3([1; 32]),
            port: 9050
        },
        at(0)
    ));
    // The CJDNS ban is an IPv6 /128: the same bytes arriving as plain IPv6 are banned too.
    assert!(list.is_banned(&addr("[fc01::7]:1"), at(0)));
    // IPv6 ranges catch IPv6 hosts.
    list.ban(subnet("2001:db8::/32"), at(100), BanReason::Manual, at(0));
    assert!(list.is_banned(&addr("[2001:db8:ffff::1]:1"), at(0)));
    assert!(!list.is_banned(&addr("[2001:db9::1]:1"), at(0)));
}

#[test]
fn list_sweeps_and_orders_by_subnet_and_clear_empties() {
    let mut list = BanList::new();
    list.ban(subnet("9.9.9.9"), at(300), BanReason::Manual, at(0));
    list.ban(subnet("1.1.1.1"), at(10), BanReason::Manual, at(0));
    list.ban(subnet("5.5.0.0/16"), at(200), BanReason::Manual, at(0));
    let shown: Vec<String> = list
        .list(at(10))
        .iter()
        .map(|e| e.subnet.to_string())
        .collect();
    assert_eq!(shown, ["5.5.0.0/16", "9.9.9.9/32"]);
    assert_eq!(list.len(), 2);
    let swept: Vec<Time> = list.sweep(at(1_000)).iter().map(|e| e.until).collect();
    assert_eq!(swept, [at(200), at(300)], "soonest first");
    list.ban(subnet("9.9.9.9"), at(300), BanReason::Manual, at(0));
    list.clear();
    assert!(list.is_empty());
    assert!(!list.is_banned(&addr("9.9.9.9:1"), at(1)));
    assert_eq!(list.next_expiry(), None);
}

#[test]
fn dirty_tracks_changes_since_last_persisted() {
    let mut list = BanList::new();
    assert!(!list.is_dirty());
    list.ban(subnet("1.1.1.1"), at(10), BanReason::Manual, at(0));
    assert!(list.is_dirty());
    list.mark_clean();
    assert!(!list.ban(subnet("1.1.1.1"), at(5), BanReason::Manual, at(0)));
    assert!(!list.unban(&subnet("2.2.2.2")));
    assert!(list.sweep(at(5)).is_empty());
    assert!(!list.is_dirty(), "nothing changed");
    list.sweep(at(10));
    assert!(list.is_dirty(), "sweeping changed it");
    let decoded = BanList::decode(&list.encode()).unwrap();
    assert!(!decoded.is_dirty(), "just loaded");
}

#[test]
fn thousands_of_bans_stay_cheap_to_check() {
    let mut list = BanList::new();
    // 10,000 single hosts, 1,000 /24s, 200 IPv6 /48s.
    for i in 0..10_000u32 {
        let ip = Ipv4Addr::from(0x0a00_0000 + i * 3);
        list.ban(
            Subnet::from(IpAddr::V4(ip)),
            at(1_000),
            BanReason::Misbehaviour,
            at(0),
        );
    }
    for i in 0..1_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x2000_0000 + (i << 8)));
        list.ban(
            Subnet::new(ip, 24).unwrap(),
            at(1_000),
            BanReason::Manual,
            at(0),
        );
    }
    for i in 0..200u128 {
        let ip = IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) + (i << 80)));
        list.ban(
            Subnet::new(ip, 48).unwrap(),
            at(1_000),
            BanReason::Manual,
            at(0),
        );
    }
    assert_eq!(list.len(), 11_200);
    let mut banned = 0;
    for i in 0..30_000u32 {
        let v4 = NetAddr::from_socket((Ipv4Addr::from(0x0a00_0000 + i), 8333).into());
        let in_range = NetAddr::from_socket((Ipv4Addr::from(0x2000_0000 + i * 17), 1).into());
        let v6 = NetAddr::from_socket(
            (
                Ipv6Addr::from((0x2001_0db8u128 << 96) + (u128::from(i) << 72)),
                1,
            )
                .into(),
        );
        for a in [v4, in_range, v6] {
            banned += usize::from(list.is_banned(&a, at(1)));
        }
    }
    // Every third v4 host; every in-range address below 1,000 /24s; v6 below 200 /48s.
    let in_ranges = (0..30_000u32).filter(|i| i * 17 < 1_000 << 8).count();
    let v6_hits = (0..30_000u32).filter(|i| (i >> 8) < 200).count();
    assert_eq!(banned, 10_000 + in_ranges + v6_hits);
}

// ----- Verdicts ----------------------------------------------------------------------------

const MALFORMED: Misbehaviour = Misbehaviour::MalformedMessage { command: "tx" };
const BLOOM: Misbehaviour = Misbehaviour::BloomNotOffered {
    command: "filterload",
};

#[test]
fn defaults_are_cores() {
    let c = Config::default();
    assert_eq!(c.threshold, 100);
    assert_eq!(c.warning, 50);
    assert_eq!(c.ban_duration, Duration::from_secs(86_400));
    assert_eq!(c.ban_duration, DEFAULT_BAN_DURATION);
    assert!(!c.ban_local);
}

/// One connection as its misbehaviour is judged: the peer machine keeps the only score and
/// reports it with each offence; [`verdict`] turns the two into what to do.
struct Offender {
    config: Config,
    score: BanScore,
    exempt: bool,
}

impl Offender {
    fn new(config: Config, exempt: bool) -> Offender {
        Offender {
            config,
            score: BanScore::default(),
            exempt,
        }
    }

    fn record(&mut self, what: Misbehaviour, now: Time) -> Verdict {
        let score = self.score.increase(now, 0, what.score());
        verdict(&self.config, what, score, self.exempt)
    }
}

#[test]
fn a_burst_warns_at_half_and_bans_at_the_threshold() {
    let mut peer = Offender::new(Config::default(), false);
    let verdicts: Vec<Verdict> = (0..10)
        .map(|i| peer.record(MALFORMED, T0 + Duration::from_millis(i * 50)))
        .collect();
    let mut expected = vec![Verdict::None; 4];
    expected.extend([Verdict::Warn; 5]);
    expected.push(Verdict::Ban);
    assert_eq!(verdicts, expected);
}

#[test]
fn slips_spread_out_decay_and_never_ban() {
    let mut peer = Offender::new(Config::default(), false);
    for i in 0..200 {
        let v = peer.record(MALFORMED, at(i * 120));
        assert_eq!(v, Verdict::None, "slip {i}");
    }
    assert!(peer.score.value(at(200 * 120)) < 50);
}

#[test]
fn noban_peers_are_warned_never_banned() {
    let mut peer = Offender::new(Config::default(), true);
    for i in 0..30 {
        let v = peer.record(MALFORMED, at(0));
        assert!(matches!(v, Verdict::None | Verdict::Warn), "{i}: {v:?}");
    }
    assert!(
        peer.score.value(at(0)) >= 100,
        "the score is still kept for the logs"
    );
}

#[test]
fn incompatibility_disconnects_without_score_or_ban() {
    let mut peer = Offender::new(Config::default(), false);
    assert_eq!(peer.record(BLOOM, at(0)), Verdict::Disconnect);
    let mut noban = Offender::new(Config::default(), true);
    assert_eq!(noban.record(BLOOM, at(0)), Verdict::Disconnect);
    assert_eq!(peer.score.value(at(0)), 0, "nothing scored for it");
    // Zero-score, non-disconnecting misbehaviour changes nothing.
    let unsolicited = Misbehaviour::UnsolicitedMessage { command: "pong" };
    assert_eq!(peer.record(unsolicited, at(0)), Verdict::None);
    // A peer already high that sends a zero-score message is not warned again for it.
    for _ in 0..6 {
        peer.record(MALFORMED, at(0));
    }
    assert_eq!(peer.record(unsolicited, at(0)), Verdict::None);
    assert_eq!(peer.record(BLOOM, at(0)), Verdict::Disconnect);
}

#[test]
fn peers_are_scored_apart_and_a_new_connection_starts_clean() {
    let config = Config {
        threshold: 20,
        warning: 15,
        ..Config::default()
    };
    let (mut a, mut b) = (
        Offender::new(config.clone(), false),
        Offender::new(config.clone(), false),
    );
    assert_eq!(a.record(MALFORMED, at(0)), Verdict::None);
    assert_eq!(b.record(MALFORMED, at(0)), Verdict::None);
    // `a` reconnects: its new connection's machine has a score of its own.
    a = Offender::new(config, false);
    assert_eq!(a.score.value(at(0)), 0);
    assert_eq!(a.record(MALFORMED, at(0)), Verdict::None);
    assert_eq!(b.record(MALFORMED, at(0)), Verdict::Ban);
}

#[test]
fn the_ban_manager_bans_the_address_of_a_misbehaving_peer() {
    let mut bm = BanMan::new(Config::default());
    let a = addr("8.8.4.4:8333");
    let over = Misbehaviour::OversizedAddr { count: 5_000 };
    let mut peer = Offender::new(Config::default(), false);
    let mut last = Verdict::None;
    for _ in 0..5 {
        last = peer.record(over, at(0));
    }
    assert_eq!(last, Verdict::Ban);
    let until = at(0) + DEFAULT_BAN_DURATION;
    assert_eq!(bm.ban_misbehaving(&a, at(0)), Some(until));
    assert!(bm.is_banned(&addr("8.8.4.4:1"), at(1)));
    let e = *bm.bans().get(&subnet("8.8.4.4")).unwrap();
    assert_eq!(e.reason, BanReason::Misbehaviour);
    assert_eq!(bm.poll_timeout(), Some(until));
    assert!(bm.handle_timeout(until - Duration::from_secs(1)).is_empty());
    assert_eq!(bm.handle_timeout(until), vec![e]);
    assert!(!bm.is_banned(&a, until));
}

#[test]
fn loopback_peers_are_disconnected_not_banned_unless_configured() {
    let local = addr("127.0.0.1:18444");
    let mut bm = BanMan::new(Config::default());
    assert_eq!(bm.ban_misbehaving(&local, at(0)), None);
    assert!(bm.bans().is_empty());

    let mut test_net = BanMan::new(Config {
        ban_local: true,
        ..Config::default()
    });
    assert!(test_net.ban_misbehaving(&local, at(0)).is_some());
    assert!(test_net.is_banned(&local, at(0)));
    assert!(!test_net.is_banned(&addr("127.0.0.2:18444"), at(0)));
    // Manual bans go through the list.
    test_net
        .bans_mut()
        .ban(subnet("10.0.0.0/8"), at(10), BanReason::Manual, at(0));
    assert!(test_net.is_banned(&addr("10.1.2.3:1"), at(10 - 1)));
}

// ----- Serialization -----------------------------------------------------------------------

fn sample_list() -> BanList {
    let mut list = BanList::new();
    list.ban(subnet("1.2.3.0/24"), at(100), BanReason::Manual, at(0));
    list.ban(subnet("8.8.8.8"), at(200), BanReason::Misbehaviour, at(1));
    list.ban(subnet("2001:db8::/32"), at(300), BanReason::Manual, at(2));
    list.ban(subnet(ONION), at(400), BanReason::Misbehaviour, at(3));
    list.ban(subnet(&i2p_name()), at(500), BanReason::Manual, at(4));
    list.ban(
        subnet("0.0.0.0/0"),
        Time::from_micros(u64::MAX),
        BanReason::Manual,
        at(5),
    );
    list
}

fn entries(list: &BanList) -> Vec<BanEntry> {
    list.iter().copied().collect()
}

#[test]
fn the_list_round_trips_through_bytes() {
    let list = sample_list();
    let bytes = list.encode();
    assert_eq!(bytes[0], FORMAT_VERSION);
    assert_eq!(u32::from_le_bytes(bytes[1..5].try_into().unwrap()), 6);
    let back = BanList::decode(&bytes).unwrap();
    assert_eq!(entries(&back), entries(&list));
    assert_eq!(back.next_expiry(), Some(at(100)));
    assert!(back.is_banned(&addr("1.2.3.9:1"), at(50)));
    assert!(back.is_banned(&addr("[2001:db8::5]:1"), at(250)));
    assert_eq!(BanList::decode(&BanList::new().encode()).unwrap().len(), 0);
}

/// An encoded list of one IPv4 entry with the given fields.
fn one_v4(ip: [u8; 4], prefix: u8, reason: u8) -> Vec<u8> {
    let mut b = vec![FORMAT_VERSION];
    b.extend_from_slice(&1u32.to_le_bytes());
    b.push(1);
    b.extend_from_slice(&ip);
    b.push(prefix);
    b.extend_from_slice(&at(0).as_micros().to_le_bytes());
    b.extend_from_slice(&at(9).as_micros().to_le_bytes());
    b.push(reason);
    b
}

#[test]
fn malformed_bytes_are_refused_with_a_reason() {
    assert!(BanList::decode(&one_v4([1, 2, 3, 0], 24, 0)).is_ok());
    assert_eq!(
        BanList::decode(&[]).unwrap_err(),
        DecodeError::Truncated { entry: 0 }
    );
    assert_eq!(
        BanList::decode(&[9, 0, 0, 0, 0]).unwrap_err(),
        DecodeError::UnsupportedVersion(9)
    );
    assert_eq!(
        BanList::decode(&[FORMAT_VERSION, 0, 0]).unwrap_err(),
        DecodeError::Truncated { entry: 0 }
    );
    assert!(matches!(
        BanList::decode(&[FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
        Err(DecodeError::CountTooLarge {
            count: u32::MAX,
            len: 3
        })
    ));
    let mut unknown_net = one_v4([1, 2, 3, 0], 24, 0);
    unknown_net[5] = 3; // Tor v2: gone from the network
    assert_eq!(
        BanList::decode(&unknown_net).unwrap_err(),
        DecodeError::UnknownNetwork { entry: 0, id: 3 }
    );
    assert!(matches!(
        BanList::decode(&one_v4([1, 2, 3, 0], 33, 0)),
        Err(DecodeError::BadPrefix { entry: 0, .. })
    ));
    assert_eq!(
        BanList::decode(&one_v4([1, 2, 3, 4], 24, 0)).unwrap_err(),
        DecodeError::NotCanonical { entry: 0 }
    );
    assert_eq!(
        BanList::decode(&one_v4([1, 2, 3, 0], 24, 2)).unwrap_err(),
        DecodeError::UnknownReason {
            entry: 0,
            reason: 2
        }
    );
    let mut trailing = one_v4([1, 2, 3, 0], 24, 0);
    trailing.push(0);
    assert_eq!(
        BanList::decode(&trailing).unwrap_err(),
        DecodeError::TrailingBytes(1)
    );
    let mut twice = one_v4([1, 2, 3, 0], 24, 0);
    let entry = twice[5..].to_vec();
    twice.extend_from_slice(&entry);
    twice[1] = 2;
    assert_eq!(
        BanList::decode(&twice).unwrap_err(),
        DecodeError::Duplicate {
            entry: 1,
            subnet: subnet("1.2.3.0/24")
        }
    );
    // An IPv4-mapped range must have been written as IPv4.
    let mut mapped = vec![FORMAT_VERSION, 1, 0, 0, 0, 2];
    mapped.extend_from_slice(&"::ffff:1.2.3.0".parse::<Ipv6Addr>().unwrap().octets());
    mapped.push(24);
    mapped.extend_from_slice(&[0; 17]);
    assert_eq!(
        BanList::decode(&mapped).unwrap_err(),
        DecodeError::NotCanonical { entry: 0 }
    );
    // Every error reads as a sentence.
    assert!(DecodeError::Truncated { entry: 3 }
        .to_string()
        .contains("entry 3"));
}

#[test]
fn every_truncation_of_a_valid_list_is_refused() {
    let bytes = sample_list().encode();
    for len in 0..bytes.len() {
        assert!(BanList::decode(&bytes[..len]).is_err(), "length {len}");
    }
}

// ----- Properties --------------------------------------------------------------------------

fn any_subnet() -> impl Strategy<Value = Subnet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(ip, p)| Subnet::new(IpAddr::V4(Ipv4Addr::from(ip)), p).unwrap()),
        // Few distinct high bits, so ranges overlap and hosts fall in them.
        // (A mapped address is IPv4, where most of these prefixes are too long.)
        (any::<u32>(), any::<u128>(), 0u8..=128).prop_filter_map("mapped", |(top, low, p)| {
            let ip = (u128::from(top & 0x2001_0003) << 96) | (low >> 32);
            Subnet::new(IpAddr::V6(Ipv6Addr::from(ip)), p).ok()
        }),
        any::<[u8; 32]>().prop_map(|k| Subnet::host(Host::TorV3(k))),
        any::<u8>().prop_map(|k| Subnet::host(Host::TorV3([k & 3; 32]))),
        any::<[u8; 32]>().prop_map(|k| Subnet::host(Host::I2p(k))),
    ]
}

fn any_host() -> impl Strategy<Value = Host> {
    prop_oneof![
        any::<u32>().prop_map(|ip| Host::Ipv4(Ipv4Addr::from(ip & 0xc0ff_ffff))),
        (any::<u32>(), any::<u128>()).prop_map(|(top, low)| {
            let ip = (u128::from(top & 0x2001_0003) << 96) | (low >> 32);
            Host::from_ip(IpAddr::V6(Ipv6Addr::from(ip)))
        }),
        any::<u8>().prop_map(|k| Host::TorV3([k & 3; 32])),
    ]
}

fn any_reason() -> impl Strategy<Value = BanReason> {
    prop_oneof![Just(BanReason::Manual), Just(BanReason::Misbehaviour)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = BanList::decode(&bytes);
        // Also behind a valid header, so the entry parser sees the bytes.
        let mut framed = vec![FORMAT_VERSION];
        framed.extend_from_slice(&((bytes.len() / 23) as u32).to_le_bytes());
        framed.extend_from_slice(&bytes);
        if let Ok(list) = BanList::decode(&framed) {
            prop_assert_eq!(BanList::decode(&list.encode()).map(|l| entries(&l)), Ok(entries(&list)));
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = sample_list().encode();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b;
        }
        let _ = BanList::decode(&bytes);
    }

    #[test]
    fn lists_round_trip(
        bans in proptest::collection::vec((any_subnet(), any::<u64>(), any::<u64>(), any_reason()), 0..40),
    ) {
        let mut list = BanList::new();
        for (s, created, until, reason) in bans {
            list.ban(s, Time::from_micros(until), reason, Time::from_micros(created));
        }
        let back = BanList::decode(&list.encode()).unwrap();
        prop_assert_eq!(entries(&back), entries(&list));
    }

    #[test]
    fn display_parses_back(s in any_subnet()) {
        prop_assert_eq!(s.to_string().parse::<Subnet>(), Ok(s));
    }

    #[test]
    fn parsing_arbitrary_strings_never_panics(s in "[0-9a-fA-F:./\\[\\]x-]{0,48}") {
        if let Ok(subnet) = s.parse::<Subnet>() {
            prop_assert_eq!(subnet.to_string().parse::<Subnet>(), Ok(subnet));
        }
    }

    /// The indexed lookup agrees with checking every entry.
    #[test]
    fn lookup_matches_a_linear_scan(
        bans in proptest::collection::vec((any_subnet(), 1u64..100), 0..60),
        unbans in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        hosts in proptest::collection::vec(any_host(), 1..40),
        now in 0u64..100,
        sweep_at in 0u64..100,
    ) {
        let mut list = BanList::new();
        for (s, until) in &bans {
            list.ban(*s, at(*until), BanReason::Manual, at(0));
        }
        if !bans.is_empty() {
            for i in unbans {
                list.unban(&bans[i.index(bans.len())].0);
            }
        }
        list.sweep(at(sweep_at));
        let now = at(now);
        for host in hosts {
            let linear = list.iter().any(|e| e.is_active(now) && e.subnet.contains(&host));
            let a = NetAddr { host, port: 1 };
            prop_assert_eq!(list.is_banned(&a, now), linear, "{:?}", host);
            if let Some(e) = list.find(&host, now) {
                prop_assert!(e.subnet.contains(&host) && e.is_active(now));
            }
        }
        let next = list.iter().map(|e| e.until).min();
        prop_assert_eq!(list.next_expiry(), next);
    }
}
