//! The [`Peer`] handle.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bitcoin::hashes::sha256d;
use bitcoin::p2p::address::AddrV2Message;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_network::RejectReason;
use bitcoin::p2p::ServiceFlags;
use bitcoin::BlockHash;
use peerpool_core::peer::{
    ConnectionAddrs, Direction, DisconnectReason, PeerCommand, PeerId, PeerMachine, SendToken,
    StatsSnapshot,
};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tracing::Instrument;

use peerpool_core::cost::Cost;
use peerpool_core::Time;

use crate::clock;
use crate::config::Config;
use crate::pool::link::PoolLink;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where the connection stands.
// The running state is kept inline rather than boxed: it lives in the peer's one shared
// allocation for as long as the connection does, and a second allocation would cost every
// idle peer its header and rounding. A finished peer keeps the room until its last handle
// goes, which a pool lets go of at once.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Slot {
    /// Created, no connection handed over yet.
    Unconnected,
    /// A connection task drives the machine.
    Running(Running),
    /// Over; the last statistics are kept for late queries.
    Finished {
        reason: DisconnectReason,
        stats: Option<Box<StatsSnapshot>>,
    },
}

pub(crate) struct Running {
    pub(crate) machine: PeerMachine,
    /// Completion notices waiting for their message to be written.
    pub(crate) waiters: Vec<(SendToken, oneshot::Sender<()>)>,
    /// Wire bytes of application messages queued but not yet encoded by the connection task
    /// (held for the handshake, or waiting for the task's next turn).
    pub(crate) pending_bytes: usize,
    /// Bytes encoded but not yet written, as of the connection task's last turn.
    pub(crate) unwritten_bytes: usize,
}

pub(crate) struct Inner {
    pub(crate) id: PeerId,
    pub(crate) direction: Direction,
    pub(crate) addr: OnceLock<SocketAddr>,
    pub(crate) config: Arc<Config>,
    pub(crate) slot: Mutex<Slot>,
    /// Wakes the connection task when a command was queued.
    pub(crate) wake: Notify,
    /// Wakes `wait_for_disconnect` callers.
    pub(crate) finished: Notify,
    /// A count of live peers (an accept loop's) to decrement when this one finishes.
    pub(crate) live: Option<Arc<AtomicUsize>>,
    /// The pool that owns the peer, if one does: what its machine reports goes there (see
    /// [`crate::pool::link`]), and the pool, not the peer, catches connections to ourselves.
    pub(crate) pool: Option<Arc<PoolLink>>,
    /// What the connection task and its owners share without taking the lock.
    pub(crate) session: Session,
}

/// Per-connection state read and written without the peer's lock: the connection task checks
/// it for every message, so it is all atomics.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// Every message in and out is logged.
    pub(crate) logged: AtomicBool,
    /// A disconnect was asked and the connection has not ended yet.
    pub(crate) closing: AtomicBool,
    /// Misbehaviour reports against the peer.
    pub(crate) errors: AtomicU32,
    /// The session's own cost (`f64` bits) as of `cost_at`, published by the connection task.
    pub(crate) cost_bits: AtomicU64,
    /// When `cost_bits` was computed, microseconds since the UNIX epoch.
    pub(crate) cost_at: AtomicU64,
    /// The part of its network group's cost charged to the session (`f64` bits), written by
    /// the pool's driver.
    pub(crate) group_share_bits: AtomicU64,
    /// Events sent to the owning pool's driver and not handled yet.
    pub(crate) pool_backlog: AtomicU32,
}

impl Session {
    pub(crate) fn publish_cost(&self, cost: &Cost) {
        let (value, at) = cost.parts();
        self.cost_bits.store(value.to_bits(), Ordering::Relaxed);
        self.cost_at.store(at.as_micros(), Ordering::Relaxed);
    }

    pub(crate) fn own_cost(&self) -> Cost {
        Cost::from_parts(
            f64::from_bits(self.cost_bits.load(Ordering::Relaxed)),
            Time::from_micros(self.cost_at.load(Ordering::Relaxed)),
        )
    }

    pub(crate) fn group_share(&self) -> f64 {
        let share = f64::from_bits(self.group_share_bits.load(Ordering::Relaxed));
        if share.is_finite() {
            share.max(0.0)
        } else {
            0.0
        }
    }

    pub(crate) fn set_group_share(&self, share: f64) {
        self.group_share_bits
            .store(share.to_bits(), Ordering::Relaxed);
    }
}

/// One connection speaking the Bitcoin P2P protocol. Cheap to clone; all clones are the same
/// peer.
///
/// Create it with [`Peer::new_outbound`] or [`Peer::new_inbound`], hand it a connected socket
/// with [`Peer::associate_connection`]; its task then runs the handshake, answers pings, keeps
/// the connection alive and calls the [`crate::Listeners`] of its [`Config`].
#[derive(Clone)]
pub struct Peer {
    pub(crate) inner: Arc<Inner>,
}

impl Peer {
    /// A peer we are connecting to at `addr`.
    pub fn new_outbound(config: Arc<Config>, addr: SocketAddr) -> Peer {
        let p = Peer::new(config, Direction::Outbound);
        let _ = p.inner.addr.set(addr);
        p
    }

    /// A peer that connected to us; its address is taken from the connection.
    pub fn new_inbound(config: Arc<Config>) -> Peer {
        Peer::new(config, Direction::Inbound)
    }

    fn new(config: Arc<Config>, direction: Direction) -> Peer {
        Peer::with_owner(config, direction, None, None)
    }

    /// An inbound peer that decrements `live` when it finishes (used by accept loops to count
    /// connections without a task per peer).
    pub(crate) fn new_inbound_counted(config: Arc<Config>, live: Arc<AtomicUsize>) -> Peer {
        Peer::with_owner(config, Direction::Inbound, Some(live), None)
    }

    /// A peer owned by a pool, reporting to it through `link`; outbound ones to `addr`.
    pub(crate) fn for_pool(
        config: Arc<Config>,
        direction: Direction,
        addr: Option<SocketAddr>,
        link: Arc<PoolLink>,
    ) -> Peer {
        let p = Peer::with_owner(config, direction, None, Some(link));
        if let Some(addr) = addr {
            let _ = p.inner.addr.set(addr);
        }
        p
    }

    fn with_owner(
        config: Arc<Config>,
        direction: Direction,
        live: Option<Arc<AtomicUsize>>,
        pool: Option<Arc<PoolLink>>,
    ) -> Peer {
        Peer {
            inner: Arc::new(Inner {
                id: PeerId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
                direction,
                addr: OnceLock::new(),
                config,
                slot: Mutex::new(Slot::Unconnected),
                wake: Notify::new(),
                finished: Notify::new(),
                live,
                pool,
                session: Session::default(),
            }),
        }
    }

    /// Starts the peer on a connected socket: spawns its task on the current tokio runtime and
    /// begins the handshake. Has no effect if the peer already has a connection (or had one).
    pub fn associate_connection(&self, stream: TcpStream) {
        let now = clock::now();
        let remote = match stream.peer_addr() {
            Ok(a) => a,
            Err(e) => {
                self.finish(DisconnectReason::Io(e.to_string()), None);
                return;
            }
        };
        let _ = self.inner.addr.set(remote);
        let remote = *self.inner.addr.get().unwrap_or(&remote);
        let local = stream.local_addr().ok();
        let config = &self.inner.config;
        let start_height = config.newest_block.as_ref().map_or(0, |f| f().1);
        {
            let mut slot = self.lock();
            if !matches!(*slot, Slot::Unconnected) {
                return;
            }
            let machine = PeerMachine::new(
                Arc::clone(&config.peer),
                self.inner.id,
                self.inner.direction,
                ConnectionAddrs { remote, local },
                now,
                start_height,
                fastrand::u64(..),
            );
            if self.inner.direction == Direction::Outbound && self.inner.pool.is_none() {
                lock_nonces(config).insert(machine.nonce());
            }
            *slot = Slot::Running(Running {
                machine,
                waiters: Vec::new(),
                pending_bytes: 0,
                unwritten_bytes: 0,
            });
        }
        // The connection's span carries its id, address and direction into every line its
        // task logs at debug level and below. It is a debug span: a span a subscriber records
        // costs each connection some 400 bytes, and what is logged at info names the peer
        // itself.
        let span = tracing::debug_span!(
            "peer",
            peer = %self.inner.id,
            addr = %remote,
            direction = %self.inner.direction
        );
        let task = crate::conn::run(self.clone(), stream);
        if span.is_disabled() {
            tokio::spawn(task);
        } else {
            tokio::spawn(task.instrument(span));
        }
    }

    /// The peer's id, unique within the process.
    pub fn id(&self) -> PeerId {
        self.inner.id
    }

    /// The peer's address (known once connected, for inbound peers).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.inner.addr.get().copied()
    }

    /// Whether the peer connected to us.
    pub fn inbound(&self) -> bool {
        self.inner.direction == Direction::Inbound
    }

    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.inner.direction
    }

    /// The configuration the peer runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    /// Whether a connection is up (handshake complete or not).
    pub fn connected(&self) -> bool {
        matches!(*self.lock(), Slot::Running(_))
    }

    /// Whether the peer was handed a connection (it may have ended since): the peers that
    /// have statistics.
    pub fn started(&self) -> bool {
        !matches!(*self.lock(), Slot::Unconnected)
    }

    /// Whether the version/verack handshake has completed on a live connection.
    pub fn is_ready(&self) -> bool {
        self.with_machine(|m| m.is_ready()).unwrap_or(false)
    }

    /// Queues a message. With `done`, the sender is completed once the message's bytes have
    /// been written to the socket; it is dropped unsent (its receiver sees an error) if the
    /// message never goes out because the peer disconnected. Messages queued before the
    /// handshake completes are sent right after it.
    ///
    /// A message that would take the bytes waiting for this peer past
    /// [`Config::max_send_buffer`] is dropped and the peer disconnected
    /// ([`DisconnectReason::SendQueueFull`]): the bound holds however fast messages are queued,
    /// even when the connection task gets no turn in between.
    pub fn queue_message(&self, msg: NetworkMessage, done: Option<oneshot::Sender<()>>) {
        let size = wire_len(&msg);
        let max = self.inner.config.max_send_buffer;
        let mut slot = self.lock();
        let Slot::Running(r) = &mut *slot else { return };
        let backlog = r.unwritten_bytes + r.pending_bytes;
        let waiting = backlog + size;
        // A lone message larger than the bound still goes out to a peer that keeps up.
        if waiting > max && backlog > 0 {
            r.machine.disconnect(
                clock::now(),
                DisconnectReason::SendQueueFull { queued: waiting },
            );
        } else if let Ok(token) = r.machine.queue_message(msg, done.is_some()) {
            r.pending_bytes += size;
            if let (Some(token), Some(tx)) = (token, done) {
                r.waiters.push((token, tx));
            }
        }
        drop(slot);
        self.inner.wake.notify_one();
    }

    /// Queues an inventory entry for announcement: transactions are trickled, blocks go out at
    /// once, and anything the peer is known to have is skipped.
    pub fn queue_inventory(&self, inv: Inventory) {
        if self
            .with_machine(|m| m.queue_inventory(clock::now(), inv))
            .is_some()
        {
            self.inner.wake.notify_one();
        }
    }

    /// Queues many inventory entries for announcement, as [`queue_inventory`] does for each
    /// in turn, under one lock, one clock reading and one wake-up of the connection task: the
    /// way to relay a burst of announcements to many peers.
    ///
    /// [`queue_inventory`]: Self::queue_inventory
    pub fn queue_inventories(&self, invs: impl IntoIterator<Item = Inventory>) {
        let queued = self.with_machine(|m| {
            let now = clock::now();
            for inv in invs {
                m.queue_inventory(now, inv);
            }
        });
        if queued.is_some() {
            self.inner.wake.notify_one();
        }
    }

    /// Records that the peer has `inv`, so it is never announced to it.
    pub fn add_known_inventory(&self, inv: &Inventory) {
        self.with_machine(|m| m.add_known_inventory(inv));
    }

    /// Sends at most 1,000 of `addrs` (a random subset when there are more): `addrv2` if the
    /// peer takes it, else `addr` with the IP entries. Returns what was sent.
    pub fn push_addr(&self, addrs: &[AddrV2Message]) -> Vec<AddrV2Message> {
        let sent = self
            .with_machine(|m| m.push_addr(addrs))
            .unwrap_or_default();
        self.inner.wake.notify_one();
        sent
    }

    /// Sends `getblocks` for a block locator, unless it repeats the previous request.
    pub fn push_getblocks(&self, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        let queued = self
            .with_machine(|m| m.push_getblocks(locator, stop))
            .unwrap_or(false);
        self.inner.wake.notify_one();
        queued
    }

    /// Sends `getheaders` for a block locator, unless it repeats the previous request.
    pub fn push_getheaders(&self, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        let queued = self
            .with_machine(|m| m.push_getheaders(locator, stop))
            .unwrap_or(false);
        self.inner.wake.notify_one();
        queued
    }

    /// Sends a BIP61 `reject` (to peers recent enough to understand it). The returned receiver
    /// completes once it is written; await it to send a reject just before disconnecting.
    pub fn push_reject(
        &self,
        command: &str,
        code: RejectReason,
        reason: &str,
        hash: Option<sha256d::Hash>,
    ) -> Option<oneshot::Receiver<()>> {
        let mut slot = self.lock();
        let Slot::Running(r) = &mut *slot else {
            return None;
        };
        let token = r.machine.push_reject(command, code, reason, hash, true)?;
        let (tx, rx) = oneshot::channel();
        r.waiters.push((token, tx));
        drop(slot);
        self.inner.wake.notify_one();
        Some(rx)
    }

    /// Pings the peer now unless a ping is already outstanding (Bitcoin Core's `ping` RPC);
    /// the round trip shows in [`Peer::stats`] once the pong arrives. Returns whether a ping
    /// was sent.
    pub fn ping_now(&self) -> bool {
        let sent = self
            .with_machine(|m| m.ping_now(clock::now()))
            .unwrap_or(false);
        if sent {
            self.inner.wake.notify_one();
        }
        sent
    }

    /// Records the peer's latest known block height.
    pub fn update_last_block(&self, height: i32) {
        self.with_machine(|m| m.update_last_block(height));
    }

    /// A snapshot of the peer's statistics; after disconnection, the last one taken.
    pub fn stats(&self) -> Option<StatsSnapshot> {
        match &*self.lock() {
            Slot::Unconnected => None,
            Slot::Running(r) => Some(r.machine.stats(clock::now())),
            Slot::Finished { stats, .. } => stats.as_deref().cloned(),
        }
    }

    /// The negotiated protocol version (0 before the peer's `version` arrives).
    pub fn protocol_version(&self) -> u32 {
        self.with_machine(|m| m.negotiated_version().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Services the peer announced.
    pub fn services(&self) -> ServiceFlags {
        self.with_machine(|m| m.services())
            .unwrap_or(ServiceFlags::NONE)
    }

    /// The peer's user agent, once known.
    pub fn user_agent(&self) -> Option<String> {
        self.with_machine(|m| m.remote_version().map(|v| v.user_agent.clone()))
            .flatten()
    }

    /// Whether the peer wants block announcements as headers (BIP130).
    pub fn wants_headers(&self) -> bool {
        self.with_machine(|m| m.wants_headers()).unwrap_or(false)
    }

    /// Whether the peer announced segwit support.
    pub fn is_witness_enabled(&self) -> bool {
        self.with_machine(|m| m.is_witness_enabled())
            .unwrap_or(false)
    }

    /// Turns logging of every message sent and received on or off: each is logged at `info`
    /// with the peer id, command and size, and its bytes at `debug`.
    pub fn set_message_logging(&self, on: bool) {
        self.inner.session.logged.store(on, Ordering::Relaxed);
    }

    /// Turns message logging on if it was off and off if it was on; returns whether it is now
    /// on.
    pub fn toggle_message_logging(&self) -> bool {
        !self.inner.session.logged.fetch_xor(true, Ordering::Relaxed)
    }

    /// Whether every message sent and received is logged.
    pub fn message_logging(&self) -> bool {
        self.inner.session.logged.load(Ordering::Relaxed)
    }

    /// Whether a disconnect was asked (by us or by the peer machine) and the connection has
    /// not ended yet.
    pub fn is_closing(&self) -> bool {
        self.inner.session.closing.load(Ordering::Relaxed)
    }

    /// How many times the peer misbehaved on this connection.
    pub fn misbehaviour_reports(&self) -> u32 {
        self.inner.session.errors.load(Ordering::Relaxed)
    }

    /// The connection's own cost (see [`peerpool_core::cost`]), decayed to now.
    pub fn cost(&self) -> f64 {
        self.inner
            .session
            .own_cost()
            .at(clock::now(), self.inner.config.cost.half_life)
    }

    /// The part of its network group's cost charged to the connection (set by a pool; 0 for a
    /// peer outside one).
    pub fn group_cost(&self) -> f64 {
        self.inner.session.group_share()
    }

    /// The connection's priority from its effective cost (own plus group share): 1 is the
    /// best; see [`peerpool_core::cost::Limits::priority`].
    pub fn priority(&self) -> u32 {
        self.inner
            .config
            .cost
            .priority(self.cost() + self.group_cost())
    }

    /// Sets the part of its network group's cost charged to the connection.
    pub(crate) fn set_group_cost(&self, share: f64) {
        self.inner.session.set_group_share(share);
    }

    /// Hands a command to the peer's machine ([`PeerMachine::handle_command`]): what a pool
    /// asks of its peers (send a message, announce addresses, disconnect). A disconnect of a
    /// peer that never got a connection finishes it at once.
    pub fn handle_command(&self, command: PeerCommand) {
        if let PeerCommand::Disconnect(reason) = command {
            self.disconnect_with(reason);
            return;
        }
        if self
            .with_machine(|m| m.handle_command(clock::now(), command))
            .is_some()
        {
            self.inner.wake.notify_one();
        }
    }

    /// Closes the connection. Safe to call at any time, any number of times.
    pub fn disconnect(&self) {
        self.disconnect_with(DisconnectReason::Requested);
    }

    /// Closes the connection with a given reason.
    pub fn disconnect_with(&self, reason: DisconnectReason) {
        let mut slot = self.lock();
        match &mut *slot {
            Slot::Unconnected => {
                drop(slot);
                self.finish(reason, None);
            }
            Slot::Running(r) => {
                r.machine.disconnect(clock::now(), reason);
                drop(slot);
                self.inner.session.closing.store(true, Ordering::Relaxed);
                self.inner.wake.notify_one();
            }
            Slot::Finished { .. } => {}
        }
    }

    /// Waits until the connection has ended and its task has cleaned up; returns why it ended.
    pub async fn wait_for_disconnect(&self) -> DisconnectReason {
        loop {
            let notified = self.inner.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Slot::Finished { reason, .. } = &*self.lock() {
                return reason.clone();
            }
            notified.await;
        }
    }

    /// Why the connection ended, if it has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        match &*self.lock() {
            Slot::Finished { reason, .. } => Some(reason.clone()),
            _ => None,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic while holding the lock cannot leave the machine half-updated in a way that
        // matters more than losing the peer, so a poisoned lock is used as is.
        self.inner.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_machine<T>(&self, f: impl FnOnce(&mut PeerMachine) -> T) -> Option<T> {
        match &mut *self.lock() {
            Slot::Running(r) => Some(f(&mut r.machine)),
            _ => None,
        }
    }

    /// Marks the peer finished and wakes every waiter.
    pub(crate) fn finish(&self, reason: DisconnectReason, stats: Option<StatsSnapshot>) {
        {
            let mut slot = self.lock();
            if matches!(*slot, Slot::Finished { .. }) {
                return;
            }
            if let Slot::Running(r) = &*slot {
                if self.inner.direction == Direction::Outbound && self.inner.pool.is_none() {
                    lock_nonces(&self.inner.config).remove(r.machine.nonce());
                }
            }
            if let Some(pool) = &self.inner.pool {
                pool.closed(self.inner.id, reason.clone());
            }
            if let Some(live) = &self.inner.live {
                live.fetch_sub(1, Ordering::Relaxed);
            }
            *slot = Slot::Finished {
                reason,
                stats: stats.map(Box::new),
            };
            self.inner.session.closing.store(false, Ordering::Relaxed);
        }
        self.inner.finished.notify_waiters();
    }
}

/// Size of `msg` on the wire, header included, without encoding it anywhere.
fn wire_len(msg: &NetworkMessage) -> usize {
    use bitcoin::consensus::Encodable;
    let payload = msg.consensus_encode(&mut bitcoin::io::sink()).unwrap_or(0);
    peerpool_wire::frame::HEADER_LEN + payload
}

pub(crate) fn lock_nonces(config: &Config) -> MutexGuard<'_, peerpool_core::peer::Nonces> {
    config.nonces.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr() {
            Some(a) => write!(f, "peer {} {} ({})", self.inner.id, a, self.inner.direction),
            None => write!(f, "peer {} ({})", self.inner.id, self.inner.direction),
        }
    }
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bitcoin::hashes::Hash;
    use peerpool_wire::Network;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::{dial, Listeners};

    const WAIT: Duration = Duration::from_secs(30);

    fn block(n: u8) -> Inventory {
        Inventory::Block(BlockHash::from_byte_array([n; 32]))
    }

    #[tokio::test]
    async fn queue_inventories_announces_each_entry_the_peer_lacks_once_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (inv_tx, mut invs) = mpsc::unbounded_channel();
        let server_cfg = Arc::new(Config::new(Network::Regtest.params()).with_listeners(
            Listeners::new().on_inv(move |_, inv| {
                let _ = inv_tx.send(inv.clone());
            }),
        ));
        let accept = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let p = Peer::new_inbound(server_cfg);
            p.associate_connection(stream);
            p
        });
        let (hs_tx, mut handshakes) = mpsc::unbounded_channel();
        let client_cfg = Arc::new(Config::new(Network::Regtest.params()).with_listeners(
            Listeners::new().on_handshake(move |_, _| {
                let _ = hs_tx.send(());
            }),
        ));
        let client = dial(client_cfg, addr, WAIT).await.unwrap();
        let _server = accept.await.unwrap();
        tokio::time::timeout(WAIT, handshakes.recv())
            .await
            .expect("handshake")
            .expect("handshake");

        // 2 is known to the peer, 1 repeats: only 1 and 3 go out, one `inv` each.
        client.add_known_inventory(&block(2));
        client.queue_inventories([block(1), block(2), block(3), block(1)]);
        client.queue_inventories([block(3), block(4)]);
        let mut got = Vec::new();
        while !got.contains(&vec![block(4)]) {
            let inv = tokio::time::timeout(WAIT, invs.recv())
                .await
                .expect("announcements within the deadline")
                .expect("server running");
            got.push(inv);
        }
        assert_eq!(got, [vec![block(1)], vec![block(3)], vec![block(4)]]);
    }
}
