use super::*;

const T0: Time = Time::from_secs(1_700_000_000);

fn addr(s: &str) -> NetAddr {
    s.parse().unwrap()
}

/// An address supplier cycling through a fixed list of never-tried addresses.
fn book(list: Vec<NetAddr>) -> impl FnMut(Pick) -> Option<Offer> {
    let mut i = 0;
    move |_| {
        if list.is_empty() {
            return None;
        }
        i += 1;
        Some((list[(i - 1) % list.len()], None))
    }
}

/// Runs every due deadline up to `until`, as a runtime would; returns the dials with the time
/// each went out.
fn run_until(
    c: &mut ConnMan,
    until: Time,
    pick: &mut dyn FnMut(Pick) -> Option<Offer>,
) -> Vec<(Time, ReqId, NetAddr, ConnKind)> {
    let mut out = Vec::new();
    while let Some(t) = c.poll_timeout().filter(|t| *t <= until) {
        c.handle_timeout(t, pick);
        out.extend(dials(c).into_iter().map(|(r, a, k)| (t, r, a, k)));
    }
    out
}

const MS: Duration = Duration::from_millis(1);

fn dials(c: &mut ConnMan) -> Vec<(ReqId, NetAddr, ConnKind)> {
    let mut out = Vec::new();
    while let Some(o) = c.poll_output() {
        if let Output::Dial { req, addr, kind } = o {
            out.push((req, addr, kind));
        }
    }
    out
}

fn no_feelers() -> Config {
    Config {
        feeler_interval: None,
        ..Config::default()
    }
}

#[test]
fn fills_the_outbound_target_one_per_group() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    // 20 addresses, but only 5 distinct /16 groups.
    let list: Vec<NetAddr> = (0..20)
        .map(|i| addr(&format!("{}.1.{}.1:8333", 10 + i % 5, i)))
        .collect();
    let d = run_until(&mut c, T0 + Duration::from_secs(10), &mut book(list));
    assert_eq!(d.len(), 5, "one per group");
    let groups: BTreeSet<_> = d.iter().map(|(_, _, a, _)| a.group()).collect();
    assert_eq!(groups.len(), 5);
    assert!(d.iter().all(|(_, _, _, k)| *k == ConnKind::Outbound));
    // Slots still missing: the loop keeps ticking.
    let next = c.poll_timeout().unwrap();
    assert!(next > T0 + Duration::from_secs(10) - OUTBOUND_DIAL_INTERVAL);

    // Enough groups: the target is reached and never exceeded.
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    let d = run_until(&mut c, T0 + Duration::from_secs(20), &mut book(list));
    assert_eq!(d.len(), 3);
    assert_eq!(c.outbound_count(), DEFAULT_TARGET_OUTBOUND);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn automatic_dials_go_out_one_per_interval() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    // One handle_timeout dials once, however many slots are empty.
    c.handle_timeout(T0, &mut book(list.clone()));
    assert_eq!(dials(&mut c).len(), 1);
    assert_eq!(
        c.timer(Timer::OpenConnection),
        Some(T0 + OUTBOUND_DIAL_INTERVAL)
    );
    // Waking early does nothing.
    c.handle_timeout(T0 + 499 * MS, &mut book(list.clone()));
    assert!(dials(&mut c).is_empty());
    let d = run_until(&mut c, T0 + Duration::from_secs(60), &mut book(list));
    let times: Vec<u64> = d.iter().map(|x| x.0.since(T0).as_millis() as u64).collect();
    // The other seven at 500 ms steps, then nothing: the target is reached.
    assert_eq!(times, vec![500, 1000, 1500, 2000, 2500, 3000, 3500]);
    assert_eq!(c.outbound_count(), DEFAULT_TARGET_OUTBOUND);
}

#[test]
fn a_failed_dial_is_replaced_at_the_next_tick_not_at_once() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    let mut b = book(list);
    let d = run_until(&mut c, T0 + Duration::from_secs(10), &mut b);
    assert_eq!(d.len(), 8);
    let last_dial = d[7].0;
    assert_eq!(last_dial, T0 + 3500 * MS);
    // A failure 200 ms after the last dial: the replacement waits for the tick at +500 ms.
    let failed_at = last_dial + 200 * MS;
    c.handle_dial_failed(failed_at, d[0].1);
    assert_eq!(c.outbound_count(), 7);
    assert_eq!(c.poll_timeout(), Some(last_dial + OUTBOUND_DIAL_INTERVAL));
    c.handle_timeout(failed_at, &mut b);
    assert!(dials(&mut c).is_empty(), "not at once");
    let again = run_until(&mut c, T0 + Duration::from_secs(10), &mut b);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, T0 + 4000 * MS);
    assert_ne!(again[0].2, d[0].2, "a different address");
    // A failure long after the last dial is replaced at once: the pace is already kept.
    let later = T0 + Duration::from_secs(30);
    c.handle_dial_failed(later, again[0].1);
    assert_eq!(c.poll_timeout(), Some(later));
}

#[test]
fn a_node_refused_everywhere_dials_at_most_twice_a_second() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    let mut b = book(list);
    let mut now = T0;
    let mut count = 0;
    let end = T0 + Duration::from_secs(60);
    while let Some(t) = c.poll_timeout().filter(|t| *t <= end) {
        now = now.max(t);
        c.handle_timeout(now, &mut b);
        for (req, _, _) in dials(&mut c) {
            count += 1;
            // Every dial is refused within a millisecond.
            c.handle_dial_failed(now + MS, req);
        }
        now = now + MS;
    }
    // 60 s at one dial per 500 ms: 121 dials (ticks at 0, 0.5, ..., 60 s), not thousands.
    assert_eq!(count, 121);
}

#[test]
fn recently_tried_addresses_are_skipped_early_in_a_round() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    let now = T0 + Duration::from_secs(3600);
    let recent = addr("30.2.0.1:8333");
    let old = addr("31.2.0.1:8333");
    // The book offers the recently tried address 29 times, then an address tried long ago.
    let mut n = 0;
    let mut pick = |_| {
        n += 1;
        if n < 30 {
            Some((recent, Some(now - Duration::from_secs(9 * 60))))
        } else {
            Some((old, Some(now - Duration::from_secs(11 * 60))))
        }
    };
    c.handle_timeout(now, &mut pick);
    assert_eq!(dials(&mut c)[0].1, old);

    // A book holding only recently tried addresses is still dialed after 30 draws.
    let mut c = ConnMan::new(no_feelers(), 1, now);
    let mut draws = 0;
    let mut pick = |_| {
        draws += 1;
        Some((recent, Some(now - Duration::from_secs(60))))
    };
    c.handle_timeout(now, &mut pick);
    assert_eq!(dials(&mut c)[0].1, recent);
    assert_eq!(draws, RECENT_TRY_PICKS + 1);
}

#[test]
fn a_round_gives_up_after_pick_tries_and_reports_starving() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    let draws = std::cell::Cell::new(0);
    let only = addr("30.2.0.1:8333");
    // One address: connected first, then the book keeps offering it.
    let mut pick = |_| {
        draws.set(draws.get() + 1);
        Some((only, None))
    };
    c.handle_timeout(T0, &mut pick);
    assert_eq!(dials(&mut c).len(), 1);
    assert_eq!(c.starved_since(), None);
    let t = T0 + OUTBOUND_DIAL_INTERVAL;
    draws.set(0);
    c.handle_timeout(t, &mut pick);
    assert!(dials(&mut c).is_empty());
    assert_eq!(draws.get(), PICK_TRIES);
    assert_eq!(c.starved_since(), Some(t));
    assert_eq!(c.poll_timeout(), Some(t + OUTBOUND_DIAL_INTERVAL));
    // Still nothing at the next tick: starving since the first empty round.
    c.handle_timeout(t + OUTBOUND_DIAL_INTERVAL, &mut pick);
    assert_eq!(c.starved_since(), Some(t));
}

#[test]
fn automatic_connections_compare_by_ip_manual_ones_by_port() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    let key = |_: NetGroup| 0u64;
    // A manual peer at 30.2.0.1:18444, connected.
    c.add_manual(T0, addr("30.2.0.1:18444")).unwrap();
    c.handle_timeout(T0, &mut book(vec![]));
    let d = dials(&mut c);
    assert_eq!(d.len(), 1);
    c.handle_dial_succeeded(T0, d[0].0, PeerId(1));
    // An inbound peer from 32.2.0.1 (its source port is ephemeral).
    let v = c.handle_inbound(T0, PeerId(2), addr("32.2.0.1:50123"), false, &key);
    assert_eq!(v, InboundVerdict::Accept);
    // The book offers the manual peer's IP at another port, then the inbound peer's listening
    // address, then another IP.
    let offers = [
        addr("30.2.0.1:8333"),
        addr("32.2.0.1:8333"),
        addr("31.2.0.1:8333"),
    ];
    let mut n = 0;
    let mut pick = |_| {
        n += 1;
        Some((offers[(n - 1).min(2)], None))
    };
    let t = T0 + OUTBOUND_DIAL_INTERVAL;
    c.handle_timeout(t, &mut pick);
    let d = dials(&mut c);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].1,
        addr("32.2.0.1:8333"),
        "not a second connection to a dialed IP; an inbound peer's IP is no obstacle"
    );
    c.handle_dial_succeeded(t, d[0].0, PeerId(3));
    let mut n = 0;
    let mut pick = |_| {
        n += 1;
        Some((offers[(n - 1).min(2)], None))
    };
    c.handle_timeout(t + OUTBOUND_DIAL_INTERVAL, &mut pick);
    assert_eq!(dials(&mut c)[0].1, addr("31.2.0.1:8333"));

    // Manual peers: several ports of one IP are all kept up.
    c.add_manual(T0, addr("127.0.0.1:18444")).unwrap();
    c.add_manual(T0, addr("127.0.0.1:18445")).unwrap();
    c.handle_timeout(T0, &mut book(vec![]));
    let manual: Vec<NetAddr> = dials(&mut c)
        .into_iter()
        .filter(|d| d.2 == ConnKind::Manual)
        .map(|d| d.1)
        .collect();
    assert_eq!(
        manual,
        vec![addr("127.0.0.1:18444"), addr("127.0.0.1:18445")]
    );
}

#[test]
fn a_pending_dial_blocks_its_ip_for_feelers_too() {
    let config = Config {
        target_outbound: 1,
        ..Config::default()
    };
    let mut c = ConnMan::new(config, 3, T0);
    let first = addr("30.2.0.1:8333");
    c.handle_timeout(T0, &mut |_| Some((first, None)));
    let d = dials(&mut c);
    assert_eq!(d.len(), 1);
    c.handle_dial_succeeded(T0, d[0].0, PeerId(1));
    // Feelers: the book offers the same IP on another port only: no feeler goes out.
    let feeler_at = c.timer(Timer::Feeler).unwrap();
    c.handle_timeout(feeler_at, &mut |_| Some((addr("30.2.0.1:9999"), None)));
    assert!(dials(&mut c).is_empty());
    // Another IP is fine.
    let next = c.timer(Timer::Feeler).unwrap();
    c.handle_timeout(next, &mut |_| Some((addr("40.2.0.1:8333"), None)));
    assert_eq!(dials(&mut c)[0].2, ConnKind::Feeler);
}

#[test]
fn manual_peers_back_off_linearly_and_cap_at_five_minutes() {
    let mut c = ConnMan::new(
        Config {
            connect_only: true,
            ..no_feelers()
        },
        1,
        T0,
    );
    let a = addr("127.0.0.9:18444");
    c.add_manual(T0, a).unwrap();
    assert_eq!(c.add_manual(T0, a), Err(ConnError::AlreadyAdded(a)));
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..70 {
        c.handle_timeout(now, &mut book(vec![]));
        let d = dials(&mut c);
        assert_eq!(d.len(), 1, "exactly one dial per due time");
        assert_eq!(d[0].2, ConnKind::Manual);
        c.handle_dial_failed(now, d[0].0);
        let next = c.poll_timeout().unwrap();
        waits.push(next.since(now).as_secs());
        now = next;
    }
    assert_eq!(&waits[..4], &[5, 10, 15, 20]);
    assert_eq!(*waits.last().unwrap(), 300);
    assert!(waits.iter().all(|w| *w <= 300));
}

#[test]
fn a_completed_handshake_resets_the_backoff_and_a_disconnect_redials() {
    let mut c = ConnMan::new(
        Config {
            connect_only: true,
            ..no_feelers()
        },
        1,
        T0,
    );
    let a = addr("127.0.0.9:18444");
    c.add_manual(T0, a).unwrap();
    let mut now = T0;
    for _ in 0..3 {
        c.handle_timeout(now, &mut book(vec![]));
        let d = dials(&mut c);
        c.handle_dial_failed(now, d[0].0);
        now = c.poll_timeout().unwrap();
    }
    c.handle_timeout(now, &mut book(vec![]));
    let d = dials(&mut c);
    c.handle_dial_succeeded(now, d[0].0, PeerId(7));
    c.handle_handshake(PeerId(7));
    assert_eq!(c.poll_timeout(), None, "connected: nothing to do");
    let later = now + Duration::from_secs(3600);
    c.handle_disconnected(later, PeerId(7), true);
    assert_eq!(c.poll_timeout(), Some(later + Duration::from_secs(5)));
}

#[test]
fn removing_a_manual_peer_keeps_its_connection_and_stops_redials() {
    let mut c = ConnMan::new(
        Config {
            connect_only: true,
            ..no_feelers()
        },
        1,
        T0,
    );
    let a = addr("127.0.0.9:18444");
    c.add_manual(T0, a).unwrap();
    c.handle_timeout(T0, &mut book(vec![]));
    let d = dials(&mut c);
    c.handle_dial_succeeded(T0, d[0].0, PeerId(3));
    c.remove_manual(a).unwrap();
    assert_eq!(c.poll_output(), None, "the live connection stays");
    assert!(c.connection(PeerId(3)).is_some());
    // Once it ends, nothing redials it.
    c.handle_disconnected(T0, PeerId(3), true);
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(T0 + Duration::from_secs(3600), &mut book(vec![]));
    assert!(dials(&mut c).is_empty());
    assert_eq!(c.remove_manual(a), Err(ConnError::NotAdded(a)));
}

#[test]
fn manual_peers_are_limited_and_outside_the_automatic_count() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    for i in 0..DEFAULT_MAX_MANUAL {
        c.add_manual(T0, addr(&format!("127.0.1.{i}:1"))).unwrap();
    }
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    let d = run_until(&mut c, T0 + Duration::from_secs(10), &mut book(list));
    // Manual peers are not paced: all dialed at once.
    assert_eq!(
        d.iter()
            .filter(|x| x.3 == ConnKind::Manual && x.0 == T0)
            .count(),
        DEFAULT_MAX_MANUAL
    );
    assert_eq!(
        d.iter().filter(|x| x.3 == ConnKind::Outbound).count(),
        DEFAULT_TARGET_OUTBOUND
    );
}

#[test]
fn one_try_is_never_retried_and_connect_only_dials_nothing_by_itself() {
    let mut c = ConnMan::new(
        Config {
            connect_only: true,
            ..Config::default()
        },
        1,
        T0,
    );
    let req = c.one_try(T0, addr("127.0.0.5:1")).expect("dialed");
    assert_eq!(dials(&mut c).len(), 1);
    // While that dial is under way, a second one to the same node is not made.
    assert_eq!(c.one_try(T0, addr("127.0.0.5:1")), None);
    assert!(dials(&mut c).is_empty());
    c.handle_dial_failed(T0, req);
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    let mut b = book(list);
    let mut now = T0;
    for _ in 0..100 {
        now = now + Duration::from_secs(60);
        c.handle_timeout(now, &mut b);
    }
    assert!(dials(&mut c).is_empty());
}

#[test]
fn feelers_only_when_outbound_is_full_and_one_at_a_time() {
    let mut c = ConnMan::new(Config::default(), 7, T0);
    let list: Vec<NetAddr> = (0..60)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    let mut b = book(list);
    let mut now = T0;
    let mut feelers = 0;
    for step in 0..2_000 {
        now = now + Duration::from_secs(1);
        c.handle_timeout(now, &mut b);
        for (req, _, kind) in dials(&mut c) {
            match kind {
                ConnKind::Outbound => c.handle_dial_succeeded(now, req, PeerId(10_000 + req.0)),
                ConnKind::Feeler => {
                    feelers += 1;
                    assert_eq!(c.outbound_count(), DEFAULT_TARGET_OUTBOUND);
                    // The feeler is answered only a step later: none may start meanwhile.
                    c.handle_dial_failed(now + Duration::from_millis(500), req);
                }
                other => panic!("unexpected {other:?} at step {step}"),
            }
        }
    }
    // About one per two minutes over 2,000 s: around 16; a generous window.
    assert!((6..=30).contains(&feelers), "{feelers} feelers");
}

#[test]
fn inbound_group_limit_and_eviction() {
    let config = Config {
        max_connections: 60,
        ..no_feelers()
    };
    let max_inbound = config.max_inbound();
    assert_eq!(max_inbound, 51);
    let mut c = ConnMan::new(config, 1, T0);
    let key = |g: NetGroup| {
        g.to_bytes()
            .iter()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b))
    };
    // Nine from one /16: the ninth is refused.
    for i in 0..DEFAULT_MAX_INBOUND_PER_GROUP as u64 {
        let v = c.handle_inbound(T0, PeerId(i), addr(&format!("66.77.{i}.1:1")), false, &key);
        assert_eq!(v, InboundVerdict::Accept);
    }
    let v = c.handle_inbound(T0, PeerId(99), addr("66.77.200.1:1"), false, &key);
    assert_eq!(v, InboundVerdict::Refuse(RefuseReason::GroupFull));
    // ...unless it has noban.
    let v = c.handle_inbound(T0, PeerId(98), addr("66.77.201.1:1"), true, &key);
    assert_eq!(v, InboundVerdict::Accept);
    // Fill the rest from distinct groups.
    let mut id = 100;
    while c.inbound_count() < max_inbound {
        let v = c.handle_inbound(
            T0 + Duration::from_secs(id),
            PeerId(id),
            addr(&format!("{}.9.0.1:1", id)),
            false,
            &key,
        );
        assert_eq!(v, InboundVerdict::Accept);
        id += 1;
    }
    // Full: the next one evicts somebody, and the victim is disconnected.
    let v = c.handle_inbound(
        T0 + Duration::from_secs(500),
        PeerId(500),
        addr("200.1.1.1:1"),
        false,
        &key,
    );
    let InboundVerdict::AcceptEvicting(victim) = v else {
        panic!("{v:?}")
    };
    assert_ne!(victim, PeerId(98), "noban peers are never evicted");
    assert_eq!(
        c.poll_output(),
        Some(Output::Disconnect {
            peer: victim,
            reason: DisconnectReason::Evicted
        })
    );
    assert_eq!(c.inbound_count(), max_inbound);
}

#[test]
fn a_noban_newcomer_is_refused_when_nobody_can_be_evicted() {
    let config = Config {
        max_connections: 12,
        ..no_feelers()
    };
    let max_inbound = config.max_inbound();
    let mut c = ConnMan::new(config, 1, T0);
    let key = |g: NetGroup| g.to_bytes().iter().fold(0u64, |h, b| h ^ u64::from(*b));
    // Every slot held by a noban peer: none can be evicted.
    for i in 0..max_inbound as u64 {
        let v = c.handle_inbound(
            T0,
            PeerId(i),
            addr(&format!("{}.1.0.1:1", 10 + i)),
            true,
            &key,
        );
        assert_eq!(v, InboundVerdict::Accept);
    }
    for noban in [false, true] {
        let v = c.handle_inbound(T0, PeerId(99), addr("200.1.1.1:1"), noban, &key);
        assert_eq!(
            v,
            InboundVerdict::Refuse(RefuseReason::Full),
            "noban {noban}"
        );
    }
    assert_eq!(c.inbound_count(), max_inbound);
}

#[test]
fn an_inbound_cap_below_the_slots_evicts_as_full_slots_do() {
    let config = Config {
        inbound_cap: Some(40),
        ..no_feelers()
    };
    assert_eq!(config.max_inbound(), 40);
    let mut c = ConnMan::new(config, 1, T0);
    let key = |g: NetGroup| g.to_bytes().iter().fold(0u64, |h, b| h ^ u64::from(*b));
    for i in 0..40u64 {
        let v = c.handle_inbound(
            T0 + Duration::from_secs(i),
            PeerId(i),
            addr(&format!("{}.2.0.1:1", 10 + i)),
            false,
            &key,
        );
        assert_eq!(v, InboundVerdict::Accept);
    }
    let v = c.handle_inbound(
        T0 + Duration::from_secs(100),
        PeerId(99),
        addr("200.1.1.1:1"),
        false,
        &key,
    );
    assert!(matches!(v, InboundVerdict::AcceptEvicting(_)), "{v:?}");
    assert_eq!(c.inbound_count(), 40);
}

#[test]
fn automatic_dials_avoid_manual_peers_and_their_groups_but_not_onion_groups() {
    let onion: NetAddr = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:8333"
        .parse()
        .unwrap();
    let manual = addr("20.1.1.1:8333");
    let same_ip = addr("20.1.1.1:18333");
    let neighbour = addr("20.1.9.9:8333");
    let elsewhere = addr("30.1.1.1:8333");
    let automatic = |out: &[(Time, ReqId, NetAddr, ConnKind)]| -> Vec<NetAddr> {
        out.iter()
            .filter(|d| d.3 == ConnKind::Outbound)
            .map(|d| d.2)
            .collect()
    };

    // A manual peer waiting out its backoff: its IP is still not for automatic slots.
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    c.add_manual(T0, manual).unwrap();
    c.handle_timeout(T0, &mut book(vec![]));
    let (req, _, _) = dials(&mut c)[0];
    c.handle_dial_failed(T0, req);
    let out = run_until(
        &mut c,
        T0 + Duration::from_secs(4),
        &mut book(vec![same_ip, elsewhere]),
    );
    let auto = automatic(&out);
    assert!(!auto.contains(&same_ip), "{auto:?}");
    assert!(auto.contains(&elsewhere), "{auto:?}");

    // A connected manual peer's /16 counts for diversity; onion groups never do.
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    c.add_manual(T0, manual).unwrap();
    c.handle_timeout(T0, &mut book(vec![]));
    let (req, _, _) = dials(&mut c)[0];
    c.handle_dial_succeeded(T0, req, PeerId(1));
    let out = run_until(
        &mut c,
        T0 + Duration::from_secs(4),
        &mut book(vec![neighbour, onion, elsewhere]),
    );
    let auto = automatic(&out);
    assert!(!auto.contains(&neighbour), "{auto:?}");
    assert!(
        auto.contains(&onion) && auto.contains(&elsewhere),
        "{auto:?}"
    );
}

#[test]
fn a_manual_peer_already_connected_automatically_is_not_dialed_twice() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    let a = addr("40.1.1.1:8333");
    // Connected by an automatic dial first...
    let out = run_until(&mut c, T0 + Duration::from_millis(10), &mut book(vec![a]));
    let auto = out
        .iter()
        .find(|d| d.3 == ConnKind::Outbound)
        .expect("a dial");
    assert_eq!(auto.2, a);
    c.handle_dial_succeeded(T0, auto.1, PeerId(1));
    // ...then added by hand: no second connection while the first lives.
    c.add_manual(T0, a).unwrap();
    let out = run_until(&mut c, T0 + Duration::from_secs(30), &mut book(vec![]));
    assert!(!out.iter().any(|d| d.3 == ConnKind::Manual), "{out:?}");
    // Once it ends, the manual peer takes over within the recheck interval.
    let gone = T0 + Duration::from_secs(30);
    c.handle_disconnected(gone, PeerId(1), true);
    let out = run_until(&mut c, gone + MANUAL_RECHECK, &mut book(vec![]));
    assert!(
        out.iter().any(|d| d.3 == ConnKind::Manual && d.2 == a),
        "{out:?}"
    );
}

#[test]
fn any_number_of_manual_peers_with_at_most_eight_connected_at_once() {
    let mut c = ConnMan::new(
        Config {
            connect_only: true,
            ..no_feelers()
        },
        1,
        T0,
    );
    let all: Vec<NetAddr> = (0..12).map(|i| addr(&format!("50.{i}.0.1:8333"))).collect();
    for a in &all {
        c.add_manual(T0, *a).unwrap();
    }
    assert_eq!(c.manual_peers().len(), 12);
    let first = run_until(&mut c, T0 + Duration::from_secs(1), &mut book(vec![]));
    assert_eq!(first.len(), DEFAULT_MAX_MANUAL, "{first:?}");
    // Nothing more while all eight are connected.
    for (n, d) in first.iter().enumerate() {
        c.handle_dial_succeeded(T0, d.1, PeerId(n as u64));
    }
    let later = T0 + Duration::from_secs(60);
    assert!(run_until(&mut c, later, &mut book(vec![])).is_empty());
    // One leaves: one waiting peer takes its place within the recheck interval.
    c.handle_disconnected(later, PeerId(0), true);
    let next = run_until(&mut c, later + MANUAL_RECHECK, &mut book(vec![]));
    let newcomers: Vec<NetAddr> = next
        .iter()
        .map(|d| d.2)
        .filter(|a| !first.iter().any(|f| f.2 == *a))
        .collect();
    assert_eq!(newcomers.len(), 1, "{next:?}");
}

#[test]
fn one_try_opens_no_second_connection_to_a_connected_node() {
    let mut c = ConnMan::new(Config::default(), 1, T0);
    let node = addr("127.0.0.6:18444");
    let req = c.one_try(T0, node).expect("dialed");
    dials(&mut c);
    c.handle_dial_succeeded(T0, req, PeerId(1));
    assert_eq!(c.one_try(T0, node), None, "already connected");
    // Another port of the same host is another node.
    assert!(c.one_try(T0, addr("127.0.0.6:18445")).is_some());
    // A node connected to us counts too (Bitcoin Core compares the address and port).
    let inbound = addr("127.0.0.7:40000");
    let key = |_g: crate::addr::NetGroup| 0;
    c.handle_inbound(T0, PeerId(2), inbound, false, &key);
    assert_eq!(c.one_try(T0, inbound), None);
}

/// Groups by a small asmap: 30.0.0.0/8 and 31.0.0.0/8 are one AS, 40.0.0.0/8 another.
fn by_as() -> NetGroups {
    use std::net::IpAddr;
    let bytes = crate::asmap::encode(&[
        (IpAddr::from([30, 0, 0, 0]), 8, 64_500),
        (IpAddr::from([31, 0, 0, 0]), 8, 64_500),
        (IpAddr::from([40, 0, 0, 0]), 8, 64_501),
    ])
    .unwrap();
    let map = crate::asmap::Asmap::from_bytes(&bytes).unwrap();
    NetGroups::with_asmap(std::sync::Arc::new(map), false)
}

#[test]
fn with_an_asmap_outbound_diversity_is_per_as() {
    // Forty /16s, but only two autonomous systems among them (and 50.x unmapped, by prefix).
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.{}.0.1:8333", [30, 31, 40][i % 3], i)))
        .chain((0..3).map(|i| addr(&format!("50.{i}.0.1:8333"))))
        .collect();
    let mut plain = ConnMan::new(no_feelers(), 1, T0);
    let d = run_until(
        &mut plain,
        T0 + Duration::from_secs(30),
        &mut book(list.clone()),
    );
    assert_eq!(
        d.len(),
        DEFAULT_TARGET_OUTBOUND,
        "by prefix every /16 differs"
    );

    let config = Config {
        groups: by_as(),
        ..no_feelers()
    };
    let mut c = ConnMan::new(config, 1, T0);
    let d = run_until(&mut c, T0 + Duration::from_secs(30), &mut book(list));
    let got: BTreeSet<NetAddr> = d.iter().map(|(_, _, a, _)| *a).collect();
    // One per AS, and one per unmapped /16.
    assert_eq!(d.len(), 2 + 3, "{got:?}");
    let in_as1 = got
        .iter()
        .filter(|a| matches!(a.host, Host::Ipv4(ip) if [30, 31].contains(&ip.octets()[0])))
        .count();
    assert_eq!(in_as1, 1, "{got:?}");
}

#[test]
fn with_an_asmap_the_inbound_group_limit_is_per_as() {
    let config = Config {
        max_connections: 60,
        groups: by_as(),
        ..no_feelers()
    };
    let mut c = ConnMan::new(config, 1, T0);
    let key = |g: NetGroup| g.to_bytes().iter().map(|b| u64::from(*b)).sum();
    // Each from its own /16 (no limit by prefix), all in AS 64500.
    for i in 0..DEFAULT_MAX_INBOUND_PER_GROUP as u64 {
        let a = addr(&format!("{}.{i}.0.1:1", 30 + i % 2));
        assert_eq!(
            c.handle_inbound(T0, PeerId(i), a, false, &key),
            InboundVerdict::Accept
        );
    }
    let v = c.handle_inbound(T0, PeerId(99), addr("31.200.0.1:1"), false, &key);
    assert_eq!(v, InboundVerdict::Refuse(RefuseReason::GroupFull));
    // Another AS is still welcome.
    let v = c.handle_inbound(T0, PeerId(98), addr("40.1.0.1:1"), false, &key);
    assert_eq!(v, InboundVerdict::Accept);
}
