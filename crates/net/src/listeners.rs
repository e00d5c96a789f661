//! Message listeners: callbacks per message kind, plus raw read/write hooks.
//!
//! Callbacks run on the peer's own task, one after another, without any lock held, so a
//! callback may call back into the [`Peer`] (queue a reply, disconnect). A callback that blocks
//! stalls only its own peer. A message is decoded only if some listener wants its kind (or the
//! peer machine needs it), so unsubscribed kinds cost nothing beyond framing. Which kinds are
//! wanted may also change while peers run ([`Listeners::on_message_when`]), for subscribers
//! that come and go.

use std::sync::Arc;

use bitcoin::block::Header;
use bitcoin::p2p::address::AddrV2Message;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::{Block, Transaction};
use peerpool_core::peer::DisconnectReason;
use peerpool_core::Misbehaviour;
use peerpool_wire::{Command, MessageKind};
use tokio::sync::mpsc;

use crate::peer::Peer;

type MessageFn = Arc<dyn Fn(&Peer, &NetworkMessage) + Send + Sync>;
type BytesFn = Arc<dyn Fn(&Peer, usize, Command) + Send + Sync>;
type VersionFn = Arc<dyn Fn(&Peer, &VersionMessage) + Send + Sync>;
type DisconnectFn = Arc<dyn Fn(&Peer, &DisconnectReason) + Send + Sync>;
type MisbehaviourFn = Arc<dyn Fn(&Peer, &Misbehaviour, u32) + Send + Sync>;
type PingFn = Arc<dyn Fn(&Peer, u64) + Send + Sync>;
type KindFilter = Arc<dyn Fn(MessageKind) -> bool + Send + Sync>;

/// The set of callbacks invoked for a peer's traffic.
#[derive(Clone)]
pub struct Listeners {
    by_kind: Vec<Vec<MessageFn>>,
    any: Vec<MessageFn>,
    /// Callbacks whose kinds are decided per message by their filter.
    filtered: Vec<(KindFilter, MessageFn)>,
    pub(crate) on_read: Option<BytesFn>,
    pub(crate) on_write: Option<BytesFn>,
    pub(crate) on_handshake: Vec<VersionFn>,
    pub(crate) on_disconnect: Vec<DisconnectFn>,
    pub(crate) on_misbehaviour: Vec<MisbehaviourFn>,
    pub(crate) on_ping_rtt: Vec<PingFn>,
    wanted: [bool; MessageKind::COUNT],
}

macro_rules! typed {
    ($( $(#[$doc:meta])* $name:ident, $kind:ident, $variant:ident, $ty:ty; )*) => {
        $(
            $(#[$doc])*
            pub fn $name(self, f: impl Fn(&Peer, &$ty) + Send + Sync + 'static) -> Listeners {
                self.on(MessageKind::$kind, move |p, m| {
                    if let NetworkMessage::$variant(inner) = m {
                        f(p, inner)
                    }
                })
            }
        )*
    };
}

impl Listeners {
    /// No listeners.
    pub fn new() -> Listeners {
        Listeners {
            by_kind: vec![Vec::new(); MessageKind::COUNT],
            any: Vec::new(),
            filtered: Vec::new(),
            on_read: None,
            on_write: None,
            on_handshake: Vec::new(),
            on_disconnect: Vec::new(),
            on_misbehaviour: Vec::new(),
            on_ping_rtt: Vec::new(),
            wanted: [false; MessageKind::COUNT],
        }
    }

    /// Calls `f` for every received message of `kind` ([`MessageKind::Unknown`] for commands
    /// this crate does not know: they arrive as [`NetworkMessage::Unknown`] with raw payload).
    pub fn on(
        mut self,
        kind: MessageKind,
        f: impl Fn(&Peer, &NetworkMessage) + Send + Sync + 'static,
    ) -> Listeners {
        self.by_kind[kind as usize].push(Arc::new(f));
        self.wanted[kind as usize] = true;
        self
    }

    /// Calls `f` for every received message of every kind (all of them get decoded).
    pub fn on_message(
        mut self,
        f: impl Fn(&Peer, &NetworkMessage) + Send + Sync + 'static,
    ) -> Listeners {
        self.any.push(Arc::new(f));
        self.wanted = [true; MessageKind::COUNT];
        self
    }

    /// Calls `f` for every received message whose kind `filter` accepts at the moment the
    /// message arrives. The filter is asked again for each message, so the set of kinds may
    /// change while peers run (an event bus whose subscribers come and go); a kind no filter
    /// or other listener wants is not decoded. Keep the filter cheap: it runs for every frame.
    pub fn on_message_when(
        mut self,
        filter: impl Fn(MessageKind) -> bool + Send + Sync + 'static,
        f: impl Fn(&Peer, &NetworkMessage) + Send + Sync + 'static,
    ) -> Listeners {
        self.filtered.push((Arc::new(filter), Arc::new(f)));
        self
    }

    /// Sends every received message of `kind` into a bounded channel. When the receiver falls
    /// behind, messages are dropped rather than stalling the peer.
    pub fn channel(
        self,
        kind: MessageKind,
        capacity: usize,
    ) -> (Listeners, mpsc::Receiver<(Peer, NetworkMessage)>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let l = self.on(kind, move |p, m| {
            if tx.try_send((p.clone(), m.clone())).is_err() {
                tracing::debug!(peer = %p.id(), "listener channel full; {kind} dropped");
            }
        });
        (l, rx)
    }

    /// Calls `f` with the size of every frame read, whatever its command.
    pub fn on_read(
        mut self,
        f: impl Fn(&Peer, usize, Command) + Send + Sync + 'static,
    ) -> Listeners {
        self.on_read = Some(Arc::new(f));
        self
    }

    /// Calls `f` with the size of every frame written.
    pub fn on_write(
        mut self,
        f: impl Fn(&Peer, usize, Command) + Send + Sync + 'static,
    ) -> Listeners {
        self.on_write = Some(Arc::new(f));
        self
    }

    /// Calls `f` once the handshake completes, with the peer's `version`.
    pub fn on_handshake(
        mut self,
        f: impl Fn(&Peer, &VersionMessage) + Send + Sync + 'static,
    ) -> Listeners {
        self.on_handshake.push(Arc::new(f));
        self
    }

    /// Calls `f` once the connection has ended, with the reason.
    pub fn on_disconnect(
        mut self,
        f: impl Fn(&Peer, &DisconnectReason) + Send + Sync + 'static,
    ) -> Listeners {
        self.on_disconnect.push(Arc::new(f));
        self
    }

    /// Calls `f` when the peer misbehaves, with its ban score afterwards.
    pub fn on_misbehaviour(
        mut self,
        f: impl Fn(&Peer, &Misbehaviour, u32) + Send + Sync + 'static,
    ) -> Listeners {
        self.on_misbehaviour.push(Arc::new(f));
        self
    }

    /// Calls `f` with the round trip time in microseconds of every answered ping.
    pub fn on_ping_rtt(mut self, f: impl Fn(&Peer, u64) + Send + Sync + 'static) -> Listeners {
        self.on_ping_rtt.push(Arc::new(f));
        self
    }

    /// Calls `f` when the peer's `verack` completes the handshake.
    pub fn on_verack(self, f: impl Fn(&Peer) + Send + Sync + 'static) -> Listeners {
        self.on(MessageKind::Verack, move |p, _| f(p))
    }

    typed! {
        /// Calls `f` with each received `version`.
        on_version, Version, Version, VersionMessage;
        /// Calls `f` with each received `inv`.
        on_inv, Inv, Inv, Vec<Inventory>;
        /// Calls `f` with each received `getdata`.
        on_getdata, GetData, GetData, Vec<Inventory>;
        /// Calls `f` with each received `notfound`.
        on_notfound, NotFound, NotFound, Vec<Inventory>;
        /// Calls `f` with each received `tx`.
        on_tx, Tx, Tx, Transaction;
        /// Calls `f` with each received `block`.
        on_block, Block, Block, Block;
        /// Calls `f` with each received `headers`.
        on_headers, Headers, Headers, Vec<Header>;
        /// Calls `f` with each received `addrv2`.
        on_addrv2, AddrV2, AddrV2, Vec<AddrV2Message>;
        /// Calls `f` with the nonce of each received `ping`.
        on_ping, Ping, Ping, u64;
        /// Calls `f` with the nonce of each received `pong`.
        on_pong, Pong, Pong, u64;
        /// Calls `f` with each received `feefilter` rate (sat/kvB).
        on_feefilter, FeeFilter, FeeFilter, i64;
    }

    /// Calls `f` with each received `addr`.
    pub fn on_addr(
        self,
        f: impl Fn(&Peer, &[(u32, bitcoin::p2p::address::Address)]) + Send + Sync + 'static,
    ) -> Listeners {
        self.on(MessageKind::Addr, move |p, m| {
            if let NetworkMessage::Addr(a) = m {
                f(p, a)
            }
        })
    }

    /// Whether some listener wants messages of `kind` decoded.
    pub fn wants(&self, kind: MessageKind) -> bool {
        self.wanted[kind as usize] || self.filtered.iter().any(|(wants, _)| wants(kind))
    }

    /// Invokes the listeners for one received message.
    pub(crate) fn dispatch(&self, peer: &Peer, kind: MessageKind, msg: &NetworkMessage) {
        if let Some(list) = self.by_kind.get(kind as usize) {
            for f in list {
                f(peer, msg);
            }
        }
        for f in &self.any {
            f(peer, msg);
        }
        for (wants, f) in &self.filtered {
            if wants(kind) {
                f(peer, msg);
            }
        }
    }
}

impl Default for Listeners {
    fn default() -> Listeners {
        Listeners::new()
    }
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<_> = MessageKind::ALL
            .iter()
            .filter(|k| self.wants(**k))
            .map(|k| k.as_str())
            .collect();
        f.debug_struct("Listeners")
            .field("kinds", &kinds)
            .finish_non_exhaustive()
    }
}
