//! Commands to the peer machine: what its owner asks it to send or do.

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_network::{Reject, RejectReason};
use bitcoin::BlockHash;
use tracing::debug;

use super::{Locator, PeerMachine, Ping, QueueError, Queued, REJECT_VERSION};
use crate::gossip::{Announced, MAX_ADDR_TO_SEND};
use crate::peer::config::MAX_PENDING_BEFORE_HANDSHAKE;
use crate::peer::inventory::{is_block, MAX_PENDING};
use crate::peer::{PeerCommand, SendToken};
use crate::time::Time;

impl PeerMachine {
    /// Queues a message for the peer. With `notify`, the returned token comes back in
    /// [`PeerOutput::Send`](crate::peer::PeerOutput::Send) so the runtime can report when the bytes are written.
    ///
    /// Before the handshake completes the message is held back and sent right after it.
    pub fn queue_message(
        &mut self,
        msg: NetworkMessage,
        notify: bool,
    ) -> Result<Option<SendToken>, QueueError> {
        if self.is_disconnected() {
            return Err(QueueError::Disconnected);
        }
        let token = notify.then(|| {
            self.next_token += 1;
            SendToken(self.next_token)
        });
        if self.is_ready() {
            self.push_send(msg, token);
        } else if self.held.len() >= MAX_PENDING_BEFORE_HANDSHAKE {
            return Err(QueueError::HandshakePending);
        } else {
            self.held.push(msg, token);
        }
        Ok(token)
    }

    /// Queues an inventory entry for announcement: blocks go out at once, transactions with
    /// the next trickle. Entries the peer is known to have are skipped.
    pub fn queue_inventory(&mut self, now: Time, inv: Inventory) {
        if self.is_disconnected() {
            return;
        }
        let ready = self.is_ready();
        if !self.inventory_state().mark_known(&inv) {
            return;
        }
        if is_block(&inv) && ready {
            self.outputs.push_back(Queued::BlockInv(inv));
            return;
        }
        let id = self.id;
        let state = self.inventory_state();
        if state.pending.len() >= MAX_PENDING {
            debug!(peer = %id, "inventory queue full; entry dropped");
            return;
        }
        state.pending.push(inv);
        if self.next_trickle.is_none() {
            self.next_trickle = Some(now + self.trickle_delay());
        }
    }

    /// Records that the peer has this inventory, so it is never announced to it.
    pub fn add_known_inventory(&mut self, inv: &Inventory) {
        let state = self.inventory_state();
        state.peer_has([inv]);
    }

    /// Carries out a command of the peer's owner; see [`PeerCommand`]. A command for a
    /// disconnected peer does nothing.
    pub fn handle_command(&mut self, now: Time, command: PeerCommand) {
        match command {
            PeerCommand::Send(message) => {
                if let Err(e) = self.queue_message(message, false) {
                    debug!(peer = %self.id, "message not queued: {e}");
                }
            }
            PeerCommand::SendAddrs(addrs) => self.send_addrs(addrs),
            PeerCommand::Disconnect(reason) => self.disconnect(now, reason),
        }
    }

    /// Sends up to [`MAX_ADDR_TO_SEND`] addresses, a random subset when given more; `addrv2`
    /// to peers that asked for it (BIP155), else `addr` with the IPv4/IPv6 entries only.
    /// Returns what was sent.
    pub fn push_addr(&mut self, addrs: &[AddrV2Message]) -> Vec<AddrV2Message> {
        if addrs.is_empty() || self.is_disconnected() {
            return Vec::new();
        }
        let mut chosen = self.sample(addrs.to_vec(), MAX_ADDR_TO_SEND);
        if self.wants_addrv2() {
            let _ = self.queue_message(NetworkMessage::AddrV2(chosen.clone()), false);
            return chosen;
        }
        chosen.retain(|a| matches!(a.addr, AddrV2::Ipv4(_) | AddrV2::Ipv6(_)));
        if chosen.is_empty() {
            return chosen;
        }
        let legacy = chosen
            .iter()
            .filter_map(|a| {
                a.socket_addr()
                    .ok()
                    .map(|sa| (a.time, Address::new(&sa, a.services)))
            })
            .collect();
        let _ = self.queue_message(NetworkMessage::Addr(legacy), false);
        chosen
    }

    /// [`PeerCommand::SendAddrs`]: addresses in the pool's form, converted to the message
    /// format this peer takes.
    fn send_addrs(&mut self, addrs: Vec<Announced>) {
        if addrs.is_empty() || self.is_disconnected() {
            return;
        }
        let chosen = self.sample(addrs, MAX_ADDR_TO_SEND);
        let message = if self.wants_addrv2() {
            NetworkMessage::AddrV2(chosen.iter().map(Announced::to_v2).collect())
        } else {
            let legacy: Vec<_> = chosen.iter().filter_map(Announced::to_legacy).collect();
            if legacy.is_empty() {
                return;
            }
            NetworkMessage::Addr(legacy)
        };
        let _ = self.queue_message(message, false);
    }

    /// A uniform random subset of `items` of at most `most` entries.
    fn sample<T>(&mut self, mut items: Vec<T>, most: usize) -> Vec<T> {
        if items.len() > most {
            // Partial Fisher-Yates: a uniform random subset in the first `most` slots.
            for i in 0..most {
                let j = self.rng.usize(i..items.len());
                items.swap(i, j);
            }
            items.truncate(most);
        }
        items
    }

    /// Whether the peer asked for `addrv2` (BIP155).
    fn wants_addrv2(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.addrv2)
    }

    /// Sends `getblocks`, unless it repeats the previous request exactly. Returns whether it
    /// was queued.
    pub fn push_getblocks(&mut self, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        self.push_locator(Locator::Blocks, locator, stop)
    }

    /// Sends `getheaders`, unless it repeats the previous request exactly. Returns whether it
    /// was queued.
    pub fn push_getheaders(&mut self, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        self.push_locator(Locator::Headers, locator, stop)
    }

    /// `getblocks` or `getheaders`, each remembered so that the same request twice in a row
    /// goes out once (as btcd's peer does).
    fn push_locator(&mut self, which: Locator, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        let request = (locator, stop);
        let version = self.our_version();
        let last = self.last_requests.get_or_insert_with(Box::default);
        let slot = match which {
            Locator::Blocks => &mut last.blocks,
            Locator::Headers => &mut last.headers,
        };
        if slot.as_ref() == Some(&request) {
            debug!(peer = %self.id, "duplicate {} ignored", which.command());
            return false;
        }
        let msg = GetBlocksMessage {
            version,
            locator_hashes: request.0.clone(),
            stop_hash: request.1,
        };
        *slot = Some(request);
        let msg = match which {
            Locator::Blocks => NetworkMessage::GetBlocks(msg),
            Locator::Headers => NetworkMessage::GetHeaders(GetHeadersMessage {
                version: msg.version,
                locator_hashes: msg.locator_hashes,
                stop_hash: msg.stop_hash,
            }),
        };
        self.queue_message(msg, false).is_ok()
    }

    /// Sends a BIP61 `reject` (to peers that understand it). The hash is meaningful only for
    /// `tx` and `block`. With `notify`, returns a token resolved once it is written.
    pub fn push_reject(
        &mut self,
        command: &str,
        code: RejectReason,
        reason: &str,
        hash: Option<sha256d::Hash>,
        notify: bool,
    ) -> Option<SendToken> {
        if self.negotiated_version().unwrap_or(0) < REJECT_VERSION {
            debug!(peer = %self.id, "peer predates BIP61; reject not sent");
            return None;
        }
        let msg = Reject {
            message: command.to_owned().into(),
            ccode: code,
            reason: reason.to_owned().into(),
            hash: hash.unwrap_or_else(sha256d::Hash::all_zeros),
        };
        self.queue_message(NetworkMessage::Reject(msg), notify)
            .ok()
            .flatten()
    }

    /// Pings the peer now, as Bitcoin Core's `ping` RPC asks of every peer, so that its round
    /// trip shows in the statistics soon. Nothing happens before the handshake completes or
    /// while a ping is already awaiting its pong (that one's round trip is measured instead).
    /// Returns whether a ping was sent. The regular schedule restarts from this ping.
    pub fn ping_now(&mut self, now: Time) -> bool {
        if !matches!(self.ping, Ping::Idle { .. }) {
            return false;
        }
        self.send_ping(now);
        true
    }

    /// Records the peer's latest known block height (for statistics).
    pub fn update_last_block(&mut self, height: i32) {
        self.last_block = self.last_block.max(height);
    }
}
