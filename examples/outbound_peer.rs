//! An outbound peer handed a connection the caller made, as btcd's `peer` example does.
//!
//! A second, inbound peer plays the remote node on 127.0.0.1; the outbound peer prints the
//! remote's version, waits for the handshake, measures one ping and disconnects.
//!
//! Run with: `cargo run --example outbound_peer`

use std::sync::Arc;
use std::time::Duration;

use peerpool::net::{Config, Listeners, Peer};
use peerpool::wire::Network;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let chain = Network::Regtest.params();

    // The remote node: accept one connection and run an inbound peer on it.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let remote_addr = listener.local_addr()?;
    let remote_config = Arc::new(Config::new(chain.clone()));
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            Peer::new_inbound(remote_config).associate_connection(stream);
        }
    });

    // Our outbound peer, with listeners for `version`, the completed handshake and pings.
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (rtt_tx, mut rtt_rx) = mpsc::unbounded_channel();
    let listeners = Listeners::new()
        .on_version(|_, v| {
            println!(
                "outbound: received version {} from {}",
                v.version, v.user_agent
            )
        })
        .on_verack(move |_| {
            let _ = ready_tx.send(());
        })
        .on_ping_rtt(move |_, rtt| {
            let _ = rtt_tx.send(rtt);
        });
    let config = Arc::new(Config::new(chain).with_listeners(listeners));
    let peer = Peer::new_outbound(config, remote_addr);

    // The caller makes the connection (directly here; a proxy would do as well).
    let conn = TcpStream::connect(remote_addr).await?;
    peer.associate_connection(conn);

    tokio::time::timeout(Duration::from_secs(5), ready_rx.recv()).await?;
    println!(
        "outbound: handshake complete, protocol version {}",
        peer.protocol_version()
    );
    let rtt = tokio::time::timeout(Duration::from_secs(5), rtt_rx.recv()).await?;
    if let Some(us) = rtt {
        println!("outbound: ping round trip {us} us");
    }

    peer.disconnect();
    let reason = peer.wait_for_disconnect().await;
    println!("outbound: disconnected ({reason})");
    Ok(())
}

/// Run by `cargo test` (the example is built as a test, see Cargo.toml).
#[test]
fn runs() {
    main().expect("the example runs to its end");
}
