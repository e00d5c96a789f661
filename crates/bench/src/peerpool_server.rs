//! The system under test: peerpool's inbound side exactly as a library user runs it,
//! [`accept_loop`] handing each connection to a [`peerpool_net::Peer`] with the default
//! configuration, plus listeners that count what the benchmarks need.

use std::sync::{Arc, Mutex};

use peerpool_core::cost::Limits;
use peerpool_net::{accept_loop, AcceptLimits, Config, Listeners, Peer};
use peerpool_wire::{Command, Network};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::child::Counters;
use crate::scenario::throughput::BLOB_COMMAND;

/// Accepts peers until `shutdown`, at most `max_inbound` at once, with or without the
/// per-session cost limits; with `registry`, keeps every accepted peer there (for the fan-out
/// relay).
pub(crate) async fn serve(
    listener: TcpListener,
    counters: Arc<Counters>,
    max_inbound: usize,
    cost_limits: bool,
    registry: Option<Arc<Mutex<Vec<Peer>>>>,
    shutdown: CancellationToken,
) {
    let inv = Command::new("inv").ok();
    let blob = Command::new(BLOB_COMMAND).ok();
    let (c1, c2, c3, c4) = (
        Arc::clone(&counters),
        Arc::clone(&counters),
        Arc::clone(&counters),
        Arc::clone(&counters),
    );
    let listeners = Listeners::new()
        .on_handshake(move |_, _| Counters::add(&c1.handshakes, 1))
        .on_read(move |_, len, cmd| {
            Counters::add(&c2.msgs, 1);
            Counters::add(&c2.bytes, len as u64);
            if Some(cmd) == inv {
                Counters::add(&c2.invs, 1);
            } else if Some(cmd) == blob {
                Counters::add(&c2.blobs, 1);
            }
        })
        .on_disconnect(move |_, _| Counters::add(&c3.disconnected, 1));
    let mut config = Config::new(Network::Regtest.params()).with_listeners(listeners);
    if !cost_limits {
        config.cost = Limits::unlimited();
    }
    let config = Arc::new(config);
    accept_loop(
        listener,
        config,
        AcceptLimits { max_inbound },
        shutdown,
        move |peer| {
            if let Some(r) = &registry {
                r.lock().unwrap_or_else(|e| e.into_inner()).push(peer);
            }
            Counters::add(&c4.accepted, 1);
        },
    )
    .await;
}
