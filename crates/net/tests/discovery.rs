//! Discovery against real servers on loopback: DNS seeding through a nameserver written in
//! `discovery_support::dns`, and SOCKS5 through the real `microsocks` (started by each test)
//! and through a scripted server that speaks Tor's extensions.
//!
//! Every server binds 127.0.0.1 with a port from the OS; no packet leaves the machine.

mod discovery_support;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bitcoin::p2p::ServiceFlags;
use discovery_support::dns::{silent_nameserver, DnsServer, Zone};
use discovery_support::socks::{
    garbage_server, mute_server, FakeSocks, Microsocks, Request, Script, Target,
};
use peerpool_core::addr::NetAddr;
use peerpool_net::discovery::{
    connect_via_proxy, resolve_via_tor, ProxyCredentials, ProxyError, SeedError, SeedResolver,
};
use peerpool_net::{accept_loop, AcceptLimits, Listeners, Peer};
use peerpool_testkit::peer::{config, emit, peer_config};
use peerpool_testkit::{init_logs, within};
use peerpool_wire::Network;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Timeout given to proxy operations that are expected to succeed or fail quickly.
const PROXY_TIMEOUT: Duration = Duration::from_secs(5);

/// A short lookup timeout for tests that wait for one to expire. Lookups that must succeed
/// under it go to a nameserver in the same process: a second leaves room for a loaded machine.
const SHORT: Duration = Duration::from_secs(1);

/// The Tor Project's published v3 onion service name.
const ONION: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

fn seeds(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn addr(s: &str) -> NetAddr {
    s.parse().expect("test address")
}

/// The proxy error inside `e`, failing the test when there is none.
fn proxy_error(e: &io::Error) -> &ProxyError {
    ProxyError::from_io(e).unwrap_or_else(|| panic!("not a proxy error: {e:?}"))
}

// ---------------------------------------------------------------------------------------------
// DNS seeds

#[tokio::test]
async fn seeds_resolve_with_duplicates_merged_and_failures_reported() {
    init_logs();
    let dns = DnsServer::start(
        Zone::new()
            .with("seed-a.test", &["127.0.0.1", "127.0.0.2", "::1"])
            .with("seed-b.test", &["127.0.0.2", "127.0.0.3"])
            .with("empty.test", &[]),
    )
    .await;
    let resolver = SeedResolver::with_nameserver(dns.addr);
    let report = within(
        "seed lookups",
        resolver.resolve(
            &seeds(&["seed-a.test", "missing.test", "seed-b.test", "empty.test"]),
            18444,
        ),
    )
    .await;

    let got: HashSet<NetAddr> = report.addrs.iter().copied().collect();
    let want: HashSet<NetAddr> = [
        "127.0.0.1:18444",
        "127.0.0.2:18444",
        "127.0.0.3:18444",
        "[::1]:18444",
    ]
    .map(addr)
    .into();
    assert_eq!(got, want);
    assert_eq!(report.addrs.len(), 4, "duplicates kept: {:?}", report.addrs);
    // seed-b's new address comes after all of seed-a's.
    assert_eq!(report.addrs[3], addr("127.0.0.3:18444"));

    assert_eq!(
        report.per_seed,
        vec![
            ("seed-a.test".to_owned(), Ok(3)),
            ("missing.test".to_owned(), Err(SeedError::NoSuchName)),
            ("seed-b.test".to_owned(), Ok(2)),
            ("empty.test".to_owned(), Err(SeedError::NoAddresses)),
        ]
    );
    assert_eq!(report.seeds_answered(), 2);

    // Both record types were asked for, by the fully qualified name.
    let asked = dns.questions();
    for rtype in ["A", "AAAA"] {
        assert!(
            asked
                .iter()
                .any(|(n, t)| n == "seed-a.test" && t.to_string() == rtype),
            "no {rtype} question in {asked:?}"
        );
    }
}

#[tokio::test]
async fn chain_seeds_get_the_chain_default_port() {
    let dns = DnsServer::start(
        Zone::new()
            .with("one.seed.test", &["127.0.0.5"])
            .with("two.seed.test", &["127.0.0.6", "127.0.0.5"]),
    )
    .await;
    let mut chain = Network::Mainnet.params();
    chain.dns_seeds = seeds(&["one.seed.test", "two.seed.test"]);
    let report = within(
        "chain seeds",
        SeedResolver::with_nameserver(dns.addr).resolve_chain(&chain),
    )
    .await;
    let mut got = report.addrs.clone();
    got.sort();
    assert_eq!(got, vec![addr("127.0.0.5:8333"), addr("127.0.0.6:8333")]);
    assert!(report.addrs.iter().all(|a| a.port == chain.default_port));
}

#[tokio::test]
async fn service_filter_queries_the_prefixed_name() {
    let dns = DnsServer::start(
        Zone::new()
            .with("seed.test", &["127.0.0.1"])
            .with("x9.seed.test", &["127.0.0.9"]),
    )
    .await;
    let resolver = SeedResolver::with_nameserver(dns.addr)
        .with_service_filter(ServiceFlags::NETWORK | ServiceFlags::WITNESS);
    let report = within("filtered seed", resolver.resolve(&seeds(&["seed.test"]), 1)).await;
    assert_eq!(report.addrs, vec![addr("127.0.0.9:1")]);
    assert_eq!(report.per_seed, vec![("x9.seed.test".to_owned(), Ok(1))]);
    assert!(dns.questions().iter().all(|(n, _)| n == "x9.seed.test"));
}

#[tokio::test]
async fn a_silent_nameserver_times_out_within_the_lookup_timeout() {
    let dead = silent_nameserver().await;
    let resolver = SeedResolver::with_nameserver(dead.local_addr().unwrap()).with_timeout(SHORT);
    assert_eq!(resolver.timeout(), SHORT);
    let names = ["a.test", "b.test", "c.test", "d.test", "e.test", "f.test"];
    let started = Instant::now();
    let report = within(
        "lookups against a dead server",
        resolver.resolve(&seeds(&names), 1),
    )
    .await;
    let took = started.elapsed();
    assert!(report.addrs.is_empty());
    assert_eq!(report.per_seed.len(), names.len());
    for (_, r) in &report.per_seed {
        assert_eq!(r, &Err(SeedError::TimedOut(SHORT)));
    }
    // The seeds were looked up together: six timeouts in parallel, not in a row (which
    // takes at least six timeouts; the margin below it is for a loaded machine).
    assert!(took >= SHORT, "gave up early: {took:?}");
    assert!(took < SHORT * names.len() as u32, "took {took:?}");
}

#[tokio::test]
async fn a_seed_that_never_answers_does_not_hold_up_the_others() {
    let dns = DnsServer::start(
        Zone::new()
            .with("fast.test", &["127.0.0.1"])
            .black_hole("down.test"),
    )
    .await;
    let resolver = SeedResolver::with_nameserver(dns.addr).with_timeout(SHORT);
    let report = within(
        "mixed lookups",
        resolver.resolve(&seeds(&["down.test", "fast.test"]), 8333),
    )
    .await;
    assert_eq!(report.addrs, vec![addr("127.0.0.1:8333")]);
    assert_eq!(report.per_seed[0].1, Err(SeedError::TimedOut(SHORT)));
    assert_eq!(report.per_seed[1].1, Ok(1));
}

#[tokio::test]
async fn an_invalid_seed_name_is_reported_without_a_query() {
    let dns = DnsServer::start(Zone::new().with("ok.test", &["127.0.0.1"])).await;
    let too_long_label = format!("{}.test", "a".repeat(64));
    let report = within(
        "lookups",
        SeedResolver::with_nameserver(dns.addr).resolve(&seeds(&[&too_long_label, "ok.test"]), 1),
    )
    .await;
    assert!(
        matches!(report.per_seed[0].1, Err(SeedError::InvalidName(_))),
        "{:?}",
        report.per_seed[0]
    );
    assert_eq!(report.per_seed[1].1, Ok(1));
    assert!(dns.questions().iter().all(|(n, _)| n == "ok.test"));
}

// ---------------------------------------------------------------------------------------------
// SOCKS5 through the real microsocks

/// A listener on `bind` that answers each connection's first line "ping" with "pong".
async fn pong_server(bind: &str) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).await.is_ok() && &buf == b"ping" {
                    let _ = s.write_all(b"pong").await;
                }
            });
        }
    });
    Ok(addr)
}

async fn ping(stream: &mut TcpStream) {
    stream
        .write_all(b"ping")
        .await
        .expect("write through proxy");
    let mut buf = [0u8; 4];
    within("pong through the proxy", stream.read_exact(&mut buf))
        .await
        .expect("read through proxy");
    assert_eq!(&buf, b"pong");
}

#[tokio::test]
async fn microsocks_carries_a_connection_to_ipv4_and_ipv6_targets() {
    init_logs();
    let proxy = Microsocks::start(None).await;
    let target = pong_server("127.0.0.1:0").await.unwrap();
    let mut s = connect_via_proxy(proxy.addr, target, PROXY_TIMEOUT, None)
        .await
        .expect("connect through microsocks");
    ping(&mut s).await;

    // The same for an IPv6 target, where this machine has IPv6 loopback.
    match pong_server("[::1]:0").await {
        Ok(target6) => {
            let mut s = connect_via_proxy(
                proxy.addr,
                NetAddr::from_socket(target6),
                PROXY_TIMEOUT,
                None,
            )
            .await
            .expect("connect through microsocks to ::1");
            ping(&mut s).await;
        }
        Err(e) => eprintln!("no IPv6 loopback here ({e}); IPv6 target not tested"),
    }
}

#[tokio::test]
async fn a_peer_handshakes_through_microsocks() {
    init_logs();
    let proxy = Microsocks::start(None).await;

    let (verack_tx, mut veracks) = mpsc::unbounded_channel();
    let server_cfg = config(
        peer_config(),
        Listeners::new().on_verack(move |p| emit(&verack_tx, ("server", p.id()))),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (peer_tx, mut inbound) = mpsc::unbounded_channel();
    tokio::spawn(accept_loop(
        listener,
        server_cfg,
        AcceptLimits::default(),
        shutdown.clone(),
        move |p| emit(&peer_tx, p),
    ));

    let (client_tx, mut client_veracks) = mpsc::unbounded_channel();
    let client_cfg = config(
        peer_config(),
        Listeners::new().on_verack(move |p| emit(&client_tx, p.id())),
    );
    let stream = connect_via_proxy(proxy.addr, target, PROXY_TIMEOUT, None)
        .await
        .expect("connect through microsocks");
    let our_end = stream.local_addr().unwrap();
    let client = Peer::new_outbound(client_cfg, target);
    client.associate_connection(stream);

    let server = within("inbound peer", inbound.recv()).await.unwrap();
    within("client verack", client_veracks.recv())
        .await
        .unwrap();
    within("server verack", veracks.recv()).await.unwrap();
    assert!(client.is_ready() && server.is_ready());
    // The listener sees the proxy's own connection, not ours: the bytes went through it.
    assert!(server.addr().is_some());
    assert_ne!(server.addr(), Some(our_end));

    client.disconnect();
    within("client disconnect", client.wait_for_disconnect()).await;
    within("server disconnect", server.wait_for_disconnect()).await;
    shutdown.cancel();
}

#[tokio::test]
async fn microsocks_checks_credentials() {
    let proxy = Microsocks::start(Some(("alice", "s3cret"))).await;
    let target = pong_server("127.0.0.1:0").await.unwrap();

    let good = ProxyCredentials::new("alice", "s3cret").unwrap();
    let mut s = connect_via_proxy(proxy.addr, target, PROXY_TIMEOUT, Some(&good))
        .await
        .expect("connect with the right credentials");
    ping(&mut s).await;

    let bad = ProxyCredentials::new("alice", "wrong").unwrap();
    let e = connect_via_proxy(proxy.addr, target, PROXY_TIMEOUT, Some(&bad))
        .await
        .expect_err("wrong password accepted");
    assert!(
        matches!(proxy_error(&e), ProxyError::AuthRefused(_)),
        "{e:?}"
    );
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);

    let e = connect_via_proxy(proxy.addr, target, PROXY_TIMEOUT, None)
        .await
        .expect_err("no credentials accepted");
    assert!(
        matches!(proxy_error(&e), ProxyError::NoAcceptableAuth),
        "{e:?}"
    );
}

#[tokio::test]
async fn microsocks_reports_a_refused_target() {
    let proxy = Microsocks::start(None).await;
    // A port that was free a moment ago and has no listener now.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let e = connect_via_proxy(proxy.addr, closed, PROXY_TIMEOUT, None)
        .await
        .expect_err("connected to a closed port");
    assert!(
        matches!(proxy_error(&e), ProxyError::ConnectionRefused),
        "{e:?}"
    );
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn microsocks_refuses_tor_resolve_cleanly() {
    let proxy = Microsocks::start(None).await;
    let e = resolve_via_tor(proxy.addr, "seed.test", PROXY_TIMEOUT)
        .await
        .expect_err("microsocks does not know RESOLVE");
    assert!(
        matches!(proxy_error(&e), ProxyError::CommandNotSupported),
        "{e:?}"
    );
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);

    // Seeding through it reports the refusal per seed.
    let report = within(
        "seeding via microsocks",
        SeedResolver::via_tor(proxy.addr).resolve(&seeds(&["seed.test"]), 8333),
    )
    .await;
    assert!(report.addrs.is_empty());
    assert!(
        matches!(&report.per_seed[0].1, Err(SeedError::Proxy(m)) if m.contains("not support")),
        "{:?}",
        report.per_seed
    );
}

// ---------------------------------------------------------------------------------------------
// SOCKS5 and Tor's extensions through the scripted server

#[tokio::test]
async fn onion_targets_are_sent_by_name() {
    let mut proxy = FakeSocks::start(Script::default()).await;
    let target = addr(&format!("{ONION}:8333"));
    let mut s = connect_via_proxy(proxy.addr, target, PROXY_TIMEOUT, None)
        .await
        .expect("connect to onion through the proxy");
    let req = within("onion request", proxy.next_request()).await;
    assert_eq!(
        req,
        Request {
            cmd: 0x01,
            target: Target::Domain(ONION.to_owned(), 8333),
            auth: None,
        }
    );
    // The proxy's echo proves the stream is past the handshake.
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    within("echo", s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"hello");

    // A host name given as such is sent by name too; an IP literal as an address.
    let _s = connect_via_proxy(proxy.addr, ("node.example", 18333), PROXY_TIMEOUT, None)
        .await
        .unwrap();
    let req = within("name request", proxy.next_request()).await;
    assert_eq!(req.target, Target::Domain("node.example".into(), 18333));
    let _s = connect_via_proxy(proxy.addr, ("127.0.0.1", 1), PROXY_TIMEOUT, None)
        .await
        .unwrap();
    let req = within("literal request", proxy.next_request()).await;
    assert_eq!(req.target, Target::Ip("127.0.0.1:1".parse().unwrap()));
}

#[tokio::test]
async fn random_credentials_isolate_each_connection() {
    let mut proxy = FakeSocks::start(Script {
        require_auth: true,
        ..Script::default()
    })
    .await;
    let target = addr(&format!("{ONION}:8333"));
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let creds = ProxyCredentials::random();
        let _s = connect_via_proxy(proxy.addr, target, PROXY_TIMEOUT, Some(&creds))
            .await
            .expect("connect with random credentials");
        let req = within("request", proxy.next_request()).await;
        let (user, pass) = req.auth.expect("credentials sent");
        assert_eq!(user, creds.username());
        assert!(seen.insert((user, pass)), "credentials reused");
    }
}

#[tokio::test]
async fn a_refusing_proxy_gives_typed_errors() {
    for (code, check) in [
        (
            0x01u8,
            (|e: &ProxyError| matches!(e, ProxyError::GeneralFailure)) as fn(&ProxyError) -> bool,
        ),
        (0x02, |e| matches!(e, ProxyError::NotAllowed)),
        (0x04, |e| matches!(e, ProxyError::HostUnreachable)),
        (0x08, |e| matches!(e, ProxyError::AddressTypeNotSupported)),
    ] {
        let proxy = FakeSocks::start(Script {
            connect_reply: code,
            ..Script::default()
        })
        .await;
        let e = connect_via_proxy(proxy.addr, addr("127.0.0.1:1"), PROXY_TIMEOUT, None)
            .await
            .expect_err("refused CONNECT succeeded");
        assert!(check(proxy_error(&e)), "reply {code:#x} gave {e:?}");
    }

    let e = connect_via_proxy(
        garbage_server().await,
        addr("127.0.0.1:1"),
        PROXY_TIMEOUT,
        None,
    )
    .await
    .expect_err("an HTTP server is no SOCKS proxy");
    assert!(
        matches!(proxy_error(&e), ProxyError::InvalidResponse(_)),
        "{e:?}"
    );
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn an_unreachable_or_hung_proxy_fails_in_bounded_time() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let e = connect_via_proxy(closed, addr("127.0.0.1:1"), PROXY_TIMEOUT, None)
        .await
        .expect_err("no proxy there");
    assert!(
        matches!(proxy_error(&e), ProxyError::Unreachable(_)),
        "{e:?}"
    );
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);

    let hung = mute_server().await;
    let started = Instant::now();
    let e = connect_via_proxy(hung, addr("127.0.0.1:1"), SHORT, None)
        .await
        .expect_err("a silent proxy cannot connect us");
    assert!(
        matches!(proxy_error(&e), ProxyError::TimedOut(t) if *t == SHORT),
        "{e:?}"
    );
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    // Bounded by the timeout, not by the proxy: the margin is for a loaded machine.
    assert!(started.elapsed() < SHORT + Duration::from_secs(5));

    let e = resolve_via_tor(hung, "seed.test", SHORT)
        .await
        .expect_err("a silent proxy cannot resolve");
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
}

fn tor_names() -> HashMap<String, IpAddr> {
    [
        ("seed.test", "127.0.0.7"),
        ("seed6.test", "::1"),
        ("again.test", "127.0.0.7"),
    ]
    .into_iter()
    .map(|(n, ip)| (n.to_owned(), ip.parse().unwrap()))
    .collect()
}

#[tokio::test]
async fn tor_resolve_asks_the_proxy_with_command_f0() {
    let mut proxy = FakeSocks::start(Script {
        names: tor_names(),
        ..Script::default()
    })
    .await;
    let ips = resolve_via_tor(proxy.addr, "seed.test", PROXY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(ips, vec!["127.0.0.7".parse::<IpAddr>().unwrap()]);
    let req = within("resolve request", proxy.next_request()).await;
    assert_eq!(req.cmd, 0xf0);
    assert_eq!(req.target, Target::Domain("seed.test".into(), 0));

    let ips = resolve_via_tor(proxy.addr, "seed6.test", PROXY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(ips, vec!["::1".parse::<IpAddr>().unwrap()]);
    let _ = proxy.next_request().await;

    let e = resolve_via_tor(proxy.addr, "unknown.test", PROXY_TIMEOUT)
        .await
        .expect_err("unknown name resolved");
    assert!(
        matches!(proxy_error(&e), ProxyError::HostUnreachable),
        "{e:?}"
    );

    // An address needs no lookup: the proxy is not asked.
    let _ = proxy.next_request().await;
    let ips = resolve_via_tor(proxy.addr, "127.0.0.3", PROXY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(ips, vec!["127.0.0.3".parse::<IpAddr>().unwrap()]);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), proxy.next_request())
            .await
            .is_err(),
        "the proxy was asked about an IP address"
    );
}

#[tokio::test]
async fn seeds_resolve_through_tor_when_a_proxy_is_set() {
    let proxy = FakeSocks::start(Script {
        names: tor_names(),
        ..Script::default()
    })
    .await;
    let report = within(
        "seeding through the proxy",
        SeedResolver::via_tor(proxy.addr).resolve(
            &seeds(&["seed.test", "gone.test", "seed6.test", "again.test"]),
            8333,
        ),
    )
    .await;
    assert_eq!(
        report.addrs,
        vec![addr("127.0.0.7:8333"), addr("[::1]:8333")]
    );
    assert_eq!(report.per_seed[0], ("seed.test".to_owned(), Ok(1)));
    assert!(
        matches!(&report.per_seed[1].1, Err(SeedError::Proxy(_))),
        "{:?}",
        report.per_seed[1]
    );
    assert_eq!(report.per_seed[2].1, Ok(1));
    assert_eq!(report.per_seed[3].1, Ok(1));
}
