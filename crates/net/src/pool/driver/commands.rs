//! Requests from [`PoolHandle`](crate::pool::PoolHandle)s: commands that change the pool, each
//! one call into the machine or the runtime, and queries, answered from a [`PoolView`].

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_core::pool::addrman::{AddrRecord, GoodOutcome};
use peerpool_core::pool::connman::ConnError;
use tracing::info;

use super::views::PoolView;
use super::Driver;
use crate::clock;
use crate::pool::handle::{AddTried, Command, Request};

impl Driver {
    pub(super) fn on_request(&mut self, request: Request) {
        match request {
            Request::Command(command) => self.on_command(command),
            Request::Query(query) => query(&self.view()),
        }
    }

    /// A read-only view of the pool, for queries.
    pub(super) fn view(&self) -> PoolView<'_> {
        PoolView {
            machine: &self.machine,
            members: &self.members,
            now: clock::now(),
            cost: &self.peer_config.cost,
            log_new: self.log_new,
            closed_traffic: self.closed_traffic,
            dialer: &self.dialer,
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = clock::now();
        // A requester that went away does not care for the answer.
        match command {
            Command::Connect(addr, reply) => {
                match self.machine.one_try(now, addr) {
                    Some(_) => info!(%addr, "connecting (one try)"),
                    None => info!(%addr, "not connecting (one try): already connected"),
                }
                let _ = reply.send(());
            }
            Command::AddNode(addr, reply) => {
                let _ = reply.send(self.machine.add_node(now, addr));
            }
            Command::RemoveNode(addr, reply) => {
                let _ = reply.send(self.machine.remove_node(now, addr));
            }
            Command::DisconnectPeer(peer, reply) => {
                let _ = reply.send(self.machine.disconnect_peer(peer));
            }
            Command::DisconnectAddr(addr, reply) => {
                let _ = reply.send(self.machine.disconnect_addr(addr));
            }
            Command::Ban(subnet, duration, reply) => {
                let _ = reply.send(self.machine.ban(now, subnet, now + duration));
            }
            Command::Unban(subnet, reply) => {
                let lifted = self.machine.unban(now, &subnet);
                if lifted {
                    info!(%subnet, "unbanned");
                }
                let _ = reply.send(lifted);
            }
            Command::ClearBans(reply) => {
                self.machine.clear_bans(now);
                info!("all bans lifted");
                let _ = reply.send(());
            }
            Command::MarkUseful(peer, what, reply) => {
                self.machine.handle_useful(now, peer, what);
                let _ = reply.send(());
            }
            Command::AddAddresses(addrs, reply) => {
                let added = addrs
                    .iter()
                    .map(|a| {
                        self.machine
                            .add_addresses(now, &[operator_record(*a, now)], *a)
                    })
                    .sum();
                let _ = reply.send(added);
            }
            Command::AddTried(addr, reply) => {
                // As Core: an address the book already knows fails to be added, tried or not.
                let outcome =
                    if self
                        .machine
                        .add_addresses(now, &[operator_record(addr, now)], addr)
                        == 0
                    {
                        AddTried::NotAdded
                    } else if matches!(
                        self.machine.mark_tried(now, &addr),
                        GoodOutcome::MovedToTried | GoodOutcome::AlreadyTried
                    ) {
                        AddTried::Tried
                    } else {
                        AddTried::NotTried
                    };
                let _ = reply.send(outcome);
            }
            Command::Save(reply) => self.save(Some(reply)),
            Command::SetNetworkActive(active, reply) => {
                if active != self.machine.network_active() {
                    info!(active, "network activity set");
                }
                self.machine.set_network_active(now, active);
                let _ = reply.send(());
            }
            Command::ToggleLog(peer, reply) => {
                let logged = self.members.get(&peer).map(|p| {
                    let logged = p.toggle_message_logging();
                    info!(%peer, logged, "message logging toggled");
                    logged
                });
                let _ = reply.send(logged);
            }
            Command::LogNew(on, reply) => {
                self.log_new = on.unwrap_or(!self.log_new);
                info!(on = self.log_new, "message logging of new sessions set");
                let _ = reply.send(self.log_new);
            }
            Command::SendMessage(peer, msg, reply) => {
                let _ = reply.send(self.send_message(peer, *msg));
            }
            Command::PingAll(reply) => {
                let sent = self
                    .machine
                    .ready_peers()
                    .filter_map(|(id, _)| self.members.get(&id))
                    .filter(|p| p.ping_now())
                    .count();
                let _ = reply.send(sent);
            }
        }
    }

    fn send_message(
        &self,
        peer: peerpool_core::PeerId,
        msg: NetworkMessage,
    ) -> Result<(), ConnError> {
        let p = self.members.get(&peer).ok_or(ConnError::NotConnected)?;
        if p.disconnect_reason().is_some() {
            return Err(ConnError::NotConnected);
        }
        // Through the peer's own queue, which bounds what waits for a peer that does not read.
        p.queue_message(msg, None);
        Ok(())
    }
}

/// An address an operator (or a DNS seed) vouches for: assumed to be a full node, as Core
/// assumes for `addpeeraddress`.
fn operator_record(addr: peerpool_core::addr::NetAddr, now: peerpool_core::Time) -> AddrRecord {
    (addr, ServiceFlags::NETWORK | ServiceFlags::WITNESS, now)
}
