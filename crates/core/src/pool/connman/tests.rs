use super::*;

const T0: Time = Time::from_secs(1_700_000_000);

fn addr(s: &str) -> NetAddr {
    s.parse().unwrap()
}

/// An address supplier cycling through a fixed list.
fn book(list: Vec<NetAddr>) -> impl FnMut(Pick) -> Option<NetAddr> {
    let mut i = 0;
    move |_| {
        if list.is_empty() {
            return None;
        }
        i += 1;
        Some(list[(i - 1) % list.len()])
    }
}

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
    c.handle_timeout(T0, &mut book(list));
    let d = dials(&mut c);
    assert_eq!(d.len(), 5, "one per group");
    let groups: BTreeSet<_> = d.iter().map(|(_, a, _)| a.group()).collect();
    assert_eq!(groups.len(), 5);
    assert!(d.iter().all(|(_, _, k)| *k == ConnKind::Outbound));
    // Slots still missing: the next fill is scheduled.
    assert_eq!(c.poll_timeout(), Some(T0 + FILL_INTERVAL));

    // Enough groups: the target is reached and never exceeded.
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    let mut b = book(list);
    c.handle_timeout(T0 + FILL_INTERVAL, &mut b);
    assert_eq!(dials(&mut c).len(), 3);
    assert_eq!(c.outbound_count(), DEFAULT_TARGET_OUTBOUND);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_failed_dial_is_replaced_at_once() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    let mut b = book(list);
    c.handle_timeout(T0, &mut b);
    let d = dials(&mut c);
    assert_eq!(d.len(), 8);
    c.handle_dial_failed(T0 + Duration::from_secs(1), d[0].0);
    assert_eq!(c.outbound_count(), 7);
    let t = T0 + Duration::from_secs(1);
    assert_eq!(c.poll_timeout(), Some(t));
    c.handle_timeout(t, &mut b);
    let again = dials(&mut c);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].1, d[0].1, "a different address");
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
fn removing_a_manual_peer_disconnects_it_and_stops_redials() {
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
    assert_eq!(
        c.poll_output(),
        Some(Output::Disconnect {
            peer: PeerId(3),
            reason: DisconnectReason::Requested
        })
    );
    c.handle_disconnected(T0, PeerId(3), true);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.remove_manual(a), Err(ConnError::NotAdded(a)));
}

#[test]
fn manual_peers_are_limited_and_outside_the_automatic_count() {
    let mut c = ConnMan::new(no_feelers(), 1, T0);
    for i in 0..DEFAULT_MAX_MANUAL {
        c.add_manual(T0, addr(&format!("127.0.1.{i}:1"))).unwrap();
    }
    assert_eq!(
        c.add_manual(T0, addr("127.0.2.1:1")),
        Err(ConnError::TooManyManual(DEFAULT_MAX_MANUAL))
    );
    let list: Vec<NetAddr> = (0..40)
        .map(|i| addr(&format!("{}.2.0.1:8333", 30 + i)))
        .collect();
    c.handle_timeout(T0, &mut book(list));
    let d = dials(&mut c);
    assert_eq!(
        d.iter().filter(|x| x.2 == ConnKind::Manual).count(),
        DEFAULT_MAX_MANUAL
    );
    assert_eq!(
        d.iter().filter(|x| x.2 == ConnKind::Outbound).count(),
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
    let req = c.one_try(T0, addr("127.0.0.5:1"));
    assert_eq!(dials(&mut c).len(), 1);
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
