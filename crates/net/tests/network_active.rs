//! `set_network_active(false)` on a live pool: every peer goes, inbound connections are
//! refused, nothing is dialed (so the address book records no attempt) until activity is
//! back on, and then the automatic and manual peers come back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use peerpool_core::addr::NetAddr;
use peerpool_net::pool::ConnKind;
use peerpool_net::Pool;
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::*;
use peerpool_testkit::{init_logs, within};

/// Attempts and last try of every address in `pool`'s book.
async fn tries(pool: &Pool) -> BTreeMap<NetAddr, (u32, Option<peerpool_core::time::Time>)> {
    pool.handle()
        .known_addresses()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.addr, (k.attempts, k.last_try)))
        .collect()
}

async fn wait_peers(pool: &Pool, what: &str, pred: impl Fn(usize, usize) -> bool) {
    let h = pool.handle();
    within(what, async {
        loop {
            let details = h.peer_details().await.unwrap();
            let joined = details.iter().filter(|d| d.joined);
            let outbound = joined
                .clone()
                .filter(|d| d.kind == ConnKind::Outbound)
                .count();
            let manual = details
                .iter()
                .filter(|d| d.joined && d.kind == ConnKind::Manual)
                .count();
            if pred(outbound, manual) && (outbound + manual > 0 || details.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn network_activity_off_empties_the_pool_and_on_brings_the_peers_back() {
    init_logs();
    let b = start((ip(50, 2), 0).into(), pool_config(0), "b").await;
    let c = start((ip(50, 3), 0).into(), pool_config(0), "c").await;
    let d = start((ip(50, 4), 0).into(), pool_config(0), "d").await;
    let mut config = pool_config(2);
    config.seeds = vec![net_addr(&b), net_addr(&c)];
    let a = start((ip(50, 1), 0).into(), config, "a").await;
    let h = a.handle();
    h.add_node(net_addr(&d)).await.unwrap();
    wait_peers(&a, "two outbound and the manual peer", |o, m| {
        o == 2 && m == 1
    })
    .await;
    assert!(h.network_active().await.unwrap());

    h.set_network_active(false).await.unwrap();
    assert!(!h.network_active().await.unwrap());
    wait_peers(&a, "every peer gone", |o, m| o + m == 0).await;
    within("the connections closed", async {
        while h.peer_count().await.unwrap() != 0 || !h.peer_details().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let before = tries(&a).await;
    // A peer dialing in is turned away.
    b.handle().connect(net_addr(&a)).await.unwrap();
    // Three seconds paused: six automatic dial slots would have passed.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            h.peer_details().await.unwrap().is_empty(),
            "a connection while paused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tries(&a).await, before, "no attempt recorded while paused");

    h.set_network_active(true).await.unwrap();
    wait_peers(&a, "the peers back", |o, m| o == 2 && m == 1).await;
    for p in [a, b, c, d] {
        p.stop().await;
    }
}
