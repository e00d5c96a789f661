//! Two pools on loopback and a subscriber to one pool's event bus.
//!
//! Pool B announces a transaction to every peer it meets (a listener of its own, added to the
//! pool's). Pool A dials B once; A's subscriber prints B joining, B's `inv`, and B leaving when
//! B stops. Then A stops too and the program ends.
//!
//! Run with: `cargo run --example pool_events`

use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::Txid;
use peerpool::core::addr::NetAddr;
use peerpool::core::peer::PeerConfig;
use peerpool::net::bus::PoolEvent;
use peerpool::net::pool::{self, Pool};
use peerpool::net::{Config, Listeners};
use peerpool::wire::{MessageKind, Network};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A pool for a loopback network: local addresses allowed, no DNS seeds, no automatic
/// outbound connections (the example makes its one connection by hand).
fn pool_config() -> pool::Config {
    let mut config = pool::Config::default().allow_local_addresses();
    config.dns_seed = false;
    config.machine.connman.target_outbound = 0;
    config
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let chain = Network::Regtest.params();

    // Pool B: announces one transaction to every peer once the handshake is done.
    let txid = Txid::from_byte_array([0xab; 32]);
    let mut peer = PeerConfig::new(chain.clone());
    peer.trickle_interval_outbound = Duration::from_millis(100);
    peer.trickle_interval_inbound = Duration::from_millis(100);
    let announce =
        Listeners::new().on_handshake(move |p, _| p.queue_inventory(Inventory::Transaction(txid)));
    let b = Pool::start(
        pool_config(),
        Config::from_peer_config(peer).with_listeners(announce),
        vec![TcpListener::bind("127.0.0.2:0").await?],
        CancellationToken::new(),
    )
    .await;

    // Pool A, and a subscriber to its lifecycle events and to `inv` messages only.
    let a = Pool::start(
        pool_config(),
        Config::new(chain),
        vec![TcpListener::bind("127.0.0.1:0").await?],
        CancellationToken::new(),
    )
    .await;
    let mut events = a.bus().subscribe();
    let mut invs = a.handle().subscribe_messages(&[MessageKind::Inv]);

    let b_addr = NetAddr::from_socket(b.listening()[0]);
    println!("A dials B at {b_addr}");
    a.handle().connect(b_addr).await?;

    let mut b = Some(b);
    let done = async {
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(Some(PoolEvent::PeerJoined(info))) => {
                        println!("joined: peer {} at {} ({}, {})",
                            info.id, info.addr, info.direction, info.user_agent);
                    }
                    Ok(Some(PoolEvent::PeerLeft { id, addr, reason })) => {
                        println!("left: peer {id} at {addr}: {reason}");
                        return;
                    }
                    Ok(Some(other)) => println!("event: {other:?}"),
                    Ok(None) => return,
                    Err(lagged) => println!("{lagged}"),
                },
                m = invs.recv() => match m {
                    Ok(Some(m)) => {
                        if let NetworkMessage::Inv(list) = &*m.message {
                            println!("inv from peer {}: {list:?}", m.peer);
                        }
                        // Seen it: B may go, which A's subscriber will hear about.
                        if let Some(b) = b.take() {
                            b.stop().await;
                        }
                    }
                    Ok(None) => return,
                    Err(lagged) => println!("{lagged}"),
                },
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .map_err(|_| "no events within 30 s")?;
    a.stop().await;
    println!("both pools stopped");
    Ok(())
}

/// Run by `cargo test` (the example is built as a test, see Cargo.toml).
#[test]
fn runs() {
    main().expect("the example runs to its end");
}
