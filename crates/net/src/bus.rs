//! The in-process event bus: what happens in a pool, for anyone in the process to follow.
//!
//! Two kinds of subscription:
//! - [`EventBus::subscribe`]: peer lifecycle ([`PoolEvent`]: joined, left with the reason,
//!   banned, evicted);
//! - [`EventBus::subscribe_messages`]: received messages of chosen kinds ([`PeerMessage`]).
//!   Each kind has its own channel, created on first subscription, and a message is decoded and
//!   published only while its kind has a subscriber: a subscriber to `inv` costs nothing to
//!   `tx` traffic.
//!
//! Channels are bounded. A subscriber that falls behind is not waited for: its next receive
//! reports [`Lagged`] with the number of events it missed, then continues with the oldest
//! event still held. Publishing never blocks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_core::peer::{Direction, DisconnectReason, PeerId};
use peerpool_core::pool::banman::{BanReason, Subnet};
use peerpool_core::Time;
use peerpool_wire::MessageKind;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{StreamExt, StreamMap};

/// Events held per channel for slow subscribers before they lag.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A connected peer, as events and requests describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's id.
    pub id: PeerId,
    /// Its address.
    pub addr: SocketAddr,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Its user agent.
    pub user_agent: String,
    /// Negotiated protocol version.
    pub version: u32,
    /// Services it offers.
    pub services: ServiceFlags,
}

/// Something that happened to the pool's peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// A peer completed its handshake and joined the pool.
    PeerJoined(PeerInfo),
    /// A peer that had joined left.
    PeerLeft {
        /// The peer.
        id: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: DisconnectReason,
    },
    /// An address or subnet was banned.
    Banned {
        /// The subnet (it displays in Bitcoin Core's notation).
        subnet: Subnet,
        /// Until when.
        until: Time,
        /// Why.
        reason: BanReason,
    },
    /// An inbound peer was evicted to make room for a new one.
    Evicted {
        /// The peer.
        id: PeerId,
        /// Its address.
        addr: SocketAddr,
    },
}

/// A message received from a peer.
#[derive(Clone, Debug)]
pub struct PeerMessage {
    /// From whom.
    pub peer: PeerId,
    /// Its address.
    pub addr: SocketAddr,
    /// The message's kind.
    pub kind: MessageKind,
    /// The message, shared by every subscriber.
    pub message: Arc<NetworkMessage>,
}

/// A subscriber fell behind and missed this many events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("subscriber lagged behind and missed {0} events")]
pub struct Lagged(pub u64);

/// The bus. Cheap to clone; clones share the channels.
#[derive(Clone, Debug)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    lifecycle: broadcast::Sender<PoolEvent>,
    messages: Mutex<Vec<Option<broadcast::Sender<PeerMessage>>>>,
    /// Per kind: may have a subscriber. Set on subscription, cleared by `wants` once the last
    /// subscriber is gone, so that asking about a kind nobody follows (every frame a peer
    /// reads) takes no lock.
    maybe_wanted: Vec<AtomicBool>,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus::new(DEFAULT_CAPACITY)
    }
}

impl EventBus {
    /// A bus whose channels hold `capacity` events each.
    pub fn new(capacity: usize) -> EventBus {
        let capacity = capacity.max(1);
        let (lifecycle, _) = broadcast::channel(capacity);
        EventBus {
            inner: Arc::new(Inner {
                capacity,
                lifecycle,
                messages: Mutex::new(vec![None; MessageKind::COUNT]),
                maybe_wanted: (0..MessageKind::COUNT)
                    .map(|_| AtomicBool::new(false))
                    .collect(),
            }),
        }
    }

    /// Follows peer lifecycle events from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.inner.lifecycle.subscribe(),
        }
    }

    /// Follows received messages of the given kinds from now on.
    pub fn subscribe_messages(&self, kinds: &[MessageKind]) -> MessageSubscription {
        let mut channels = self.lock();
        let mut streams = StreamMap::new();
        for kind in kinds {
            let slot = &mut channels[*kind as usize];
            let tx = slot.get_or_insert_with(|| broadcast::channel(self.inner.capacity).0);
            streams.insert(*kind as usize, BroadcastStream::new(tx.subscribe()));
            self.inner.maybe_wanted[*kind as usize].store(true, Ordering::Release);
        }
        MessageSubscription { streams }
    }

    /// Publishes a lifecycle event; returns how many subscribers will see it.
    pub fn publish(&self, event: PoolEvent) -> usize {
        self.inner.lifecycle.send(event).unwrap_or(0)
    }

    /// Whether messages of `kind` have a subscriber (so are worth decoding and publishing).
    pub fn wants(&self, kind: MessageKind) -> bool {
        let flag = &self.inner.maybe_wanted[kind as usize];
        if !flag.load(Ordering::Acquire) {
            return false;
        }
        let channels = self.lock();
        let wanted = channels[kind as usize]
            .as_ref()
            .is_some_and(|tx| tx.receiver_count() > 0);
        if !wanted {
            // Under the lock, so a subscription being made cannot be missed.
            flag.store(false, Ordering::Release);
        }
        wanted
    }

    /// Publishes a received message to the subscribers of its kind.
    pub fn publish_message(&self, msg: PeerMessage) -> usize {
        let tx = self.lock()[msg.kind as usize].clone();
        tx.map_or(0, |tx| tx.send(msg).unwrap_or(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<broadcast::Sender<PeerMessage>>>> {
        self.inner
            .messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// A lifecycle subscription.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<PoolEvent>,
}

impl Subscription {
    /// The next event; `Ok(None)` once the bus is gone; `Err(Lagged)` once after falling
    /// behind.
    pub async fn recv(&mut self) -> Result<Option<PoolEvent>, Lagged> {
        match self.rx.recv().await {
            Ok(e) => Ok(Some(e)),
            Err(broadcast::error::RecvError::Closed) => Ok(None),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(Lagged(n)),
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Option<PoolEvent>, Lagged> {
        match self.rx.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(Lagged(n)),
            Err(_) => Ok(None),
        }
    }
}

/// A subscription to messages of some kinds.
pub struct MessageSubscription {
    streams: StreamMap<usize, BroadcastStream<PeerMessage>>,
}

impl std::fmt::Debug for MessageSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSubscription")
            .field("kinds", &self.streams.len())
            .finish()
    }
}

impl MessageSubscription {
    /// The next message of any subscribed kind; `Ok(None)` once the bus is gone;
    /// `Err(Lagged)` once after falling behind on some kind. Messages of one kind arrive in
    /// order.
    pub async fn recv(&mut self) -> Result<Option<PeerMessage>, Lagged> {
        match self.streams.next().await {
            None => Ok(None),
            Some((_, Ok(m))) => Ok(Some(m)),
            Some((_, Err(BroadcastStreamRecvError::Lagged(n)))) => Err(Lagged(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: MessageKind, nonce: u64) -> PeerMessage {
        PeerMessage {
            peer: PeerId(1),
            addr: "127.0.0.1:1".parse().unwrap(),
            kind,
            message: Arc::new(NetworkMessage::Ping(nonce)),
        }
    }

    #[tokio::test]
    async fn messages_go_only_to_subscribers_of_their_kind_in_order() {
        let bus = EventBus::new(16);
        assert!(!bus.wants(MessageKind::Ping));
        assert_eq!(bus.publish_message(msg(MessageKind::Ping, 0)), 0);
        let mut pings = bus.subscribe_messages(&[MessageKind::Ping]);
        let mut invs = bus.subscribe_messages(&[MessageKind::Inv]);
        assert!(bus.wants(MessageKind::Ping) && !bus.wants(MessageKind::Tx));
        for n in 1..=5 {
            assert_eq!(bus.publish_message(msg(MessageKind::Ping, n)), 1);
        }
        for n in 1..=5 {
            let m = pings.recv().await.unwrap().unwrap();
            assert_eq!(*m.message, NetworkMessage::Ping(n));
        }
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(50), invs.recv()).await;
        assert!(nothing.is_err(), "inv subscriber must not see pings");
        drop(pings);
        assert!(
            !bus.wants(MessageKind::Ping),
            "no subscriber left: nothing to pay for"
        );
    }

    #[tokio::test]
    async fn a_waiting_subscriber_is_woken() {
        let bus = EventBus::new(16);
        let mut sub = bus.subscribe_messages(&[MessageKind::Inv, MessageKind::Ping]);
        let b = bus.clone();
        let h = tokio::spawn(async move { sub.recv().await });
        tokio::task::yield_now().await;
        b.publish_message(msg(MessageKind::Ping, 9));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), h)
            .await
            .unwrap();
        assert_eq!(
            *got.unwrap().unwrap().unwrap().message,
            NetworkMessage::Ping(9)
        );
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_and_never_blocks_the_publisher() {
        let bus = EventBus::new(4);
        let mut sub = bus.subscribe();
        for i in 0..10 {
            bus.publish(PoolEvent::Evicted {
                id: PeerId(i),
                addr: "127.0.0.1:1".parse().unwrap(),
            });
        }
        assert_eq!(sub.recv().await, Err(Lagged(6)));
        // Then the four newest, in order.
        for i in 6..10 {
            match sub.recv().await.unwrap().unwrap() {
                PoolEvent::Evicted { id, .. } => assert_eq!(id, PeerId(i)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sub.try_recv(), Ok(None));
    }
}
