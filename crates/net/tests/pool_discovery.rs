//! A pool finding and reaching peers: DNS seeds answered by a nameserver on loopback, and
//! every connection through the real `microsocks` SOCKS5 proxy (`.ci/run` installs it).

mod discovery_support;

use std::net::SocketAddr;

use discovery_support::dns::{DnsServer, Zone};
use discovery_support::socks::Microsocks;
use peerpool_core::peer::PeerConfig;
use peerpool_net::discovery::SeedResolver;
use peerpool_net::pool::{ConnKind, Pool};
use peerpool_testkit::init_logs;
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::*;
use peerpool_wire::Network;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn every_connection_goes_through_the_socks5_proxy() {
    init_logs();
    let exit = ip(31, 99);
    let proxy = Microsocks::start_leaving_from(exit).await;
    let b = start(SocketAddr::from((ip(31, 2), 0)), pool_config(0), "b").await;
    let c = start(SocketAddr::from((ip(31, 3), 0)), pool_config(0), "c").await;
    let mut b_events = b.bus().subscribe();
    let mut c_events = c.bus().subscribe();

    let mut config = pool_config(1);
    config.proxy = Some(proxy.addr);
    config.seeds = vec![net_addr(&b)];
    let a = start(SocketAddr::from((ip(31, 1), 0)), config, "a").await;
    // The automatic outbound connection to B: B sees it arrive from the proxy's exit address.
    next_event(&mut b_events, "A through the proxy", joined_from(exit)).await;
    let mut a_events = a.bus().subscribe();
    outbound_reached(&a, &mut a_events, 1).await;

    // A one-try connection to C takes the same road.
    a.handle().connect(net_addr(&c)).await.unwrap();
    next_event(&mut c_events, "A through the proxy", joined_from(exit)).await;
    let details = a.handle().peer_details().await.unwrap();
    let kinds: Vec<ConnKind> = details.iter().map(|d| d.kind).collect();
    assert!(kinds.contains(&ConnKind::Outbound) && kinds.contains(&ConnKind::OneTry));
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_address_book_is_filled_from_the_dns_seeds() {
    init_logs();
    // Two nodes on one port at two addresses: a seed answers addresses, the port is the
    // chain's.
    let (l1, l2) = loop {
        let l1 = TcpListener::bind(SocketAddr::from((ip(32, 2), 0)))
            .await
            .unwrap();
        let port = l1.local_addr().unwrap().port();
        if let Ok(l2) = TcpListener::bind(SocketAddr::from((ip(32, 3), port))).await {
            break (l1, l2);
        }
    };
    let port = l1.local_addr().unwrap().port();
    let mut nodes = Vec::new();
    for l in [l1, l2] {
        nodes.push(
            Pool::start(
                pool_config(0),
                pool_peer_config("seeded"),
                vec![l],
                CancellationToken::new(),
            )
            .await,
        );
    }
    let dns = DnsServer::start(
        Zone::new()
            .with("seed.pool.test", &["127.0.32.2", "127.0.32.3"])
            .with("empty.pool.test", &[]),
    )
    .await;

    let mut chain = Network::Regtest.params();
    chain.dns_seeds = vec!["seed.pool.test".into(), "empty.pool.test".into()];
    chain.default_port = port;
    let peer = peerpool_net::Config::from_peer_config(PeerConfig::new(chain));
    let mut config = pool_config(2);
    config.dns_seed = true;
    config.seed_resolver = Some(SeedResolver::with_nameserver(dns.addr));
    let a = start_with(SocketAddr::from((ip(32, 1), 0)), config, peer).await;
    let mut events = a.bus().subscribe();
    outbound_reached(&a, &mut events, 2).await;
    let asked: Vec<String> = dns.questions().into_iter().map(|(n, _)| n).collect();
    assert!(asked.iter().any(|n| n == "seed.pool.test"), "{asked:?}");
    a.stop().await;
    for n in nodes {
        n.stop().await;
    }
}
