//! The nodes' side of the simulation: starting and stopping nodes, and the runtime's part
//! around each pool machine (the drain contract, outputs carried out, inputs delivered,
//! invariants checked after every drain).

use std::hash::Hash;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{PeerCommand, PeerEvent};
use peerpool_core::pool::banman::BanReason;
use peerpool_core::pool::connman::{ConnState, ReqId};
use peerpool_core::pool::{Output, PoolEvent, PoolMachine};
use peerpool_core::DisconnectReason;

use super::{ConnId, Event, Input, Segment, Session, Side, Sim, DIALER, EPOCH, LISTENER};
use crate::sim::EndState;
use peerpool_core::Time;

impl Sim {
    // ----- nodes ---------------------------------------------------------------------------

    pub(super) fn start_node(&mut self, n: usize) {
        if self.nodes[n].online() {
            return;
        }
        let now = self.now;
        let mut config = self.config.pool.clone();
        config.advertise = vec![self.nodes[n].addr];
        let seed = self.rng.u64(..);
        let node = &mut self.nodes[n];
        let cold = node.saved.is_none();
        let mut pool = match node.saved.take() {
            Some((book, bans)) => PoolMachine::with_state(config, book, bans, seed, now),
            None => PoolMachine::new(config, node.secret, seed, now),
        };
        if cold {
            for s in self.dns_seed_answer(n) {
                let a = self.nodes[s].addr;
                pool.add_addresses(now, &[(a, ServiceFlags::NETWORK, now)], a);
            }
        }
        let node = &mut self.nodes[n];
        node.pool = Some(pool);
        node.sessions.push(Session {
            start: now,
            end: None,
            reached_target: None,
            cold,
        });
        if let Some(churn) = self.config.churn.clone() {
            if !self.nodes[n].bootstrap {
                let up = self.exponential(churn.mean_up);
                self.agenda.push(now + up, Event::Stop(n));
            }
        }
        self.after_pool(n);
    }

    /// A DNS seed's answer to node `n`: one bootstrap node, or the other bootstrap nodes for
    /// one of them.
    pub(super) fn dns_seed_answer(&mut self, n: usize) -> Vec<usize> {
        let seeds = self.config.seeds.min(self.nodes.len());
        if n < seeds {
            (0..seeds).filter(|&s| s != n).collect()
        } else if seeds > 0 {
            vec![self.rng.usize(..seeds)]
        } else {
            Vec::new()
        }
    }

    pub(super) fn stop_node(&mut self, n: usize) {
        if !self.nodes[n].online() {
            return;
        }
        let Some(churn) = self.config.churn.clone() else {
            return;
        };
        self.stats.departures += 1;
        let crash = self.rng.f64() < churn.crash_share;
        let ends: Vec<(ConnId, Side)> = self.nodes[n].peers.values().copied().collect();
        for (c, side) in ends {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.ends[side].state = EndState::Closed;
            }
            if !crash {
                self.transmit(c, 1 - side, Segment::Fin);
            }
            self.collect(c);
        }
        let now = self.now;
        let node = &mut self.nodes[n];
        if let Some(pool) = node.pool.take() {
            node.saved = Some((pool.addrman().clone(), pool.banman().bans().clone()));
        }
        node.life += 1;
        node.armed = None;
        node.peers.clear();
        node.joined.clear();
        node.dials.clear();
        if let Some(s) = node.sessions.last_mut() {
            s.end = Some(now);
        }
        let down = self.exponential(churn.mean_down);
        self.agenda.push(now + down, Event::Start(n));
    }

    // ----- the pool ------------------------------------------------------------------------

    pub(super) fn pool_wake(&mut self, n: usize, life: u32) {
        if !self.current(n, life) {
            return;
        }
        let now = self.now;
        let node = &mut self.nodes[n];
        if node.armed.is_some_and(|t| t <= now) {
            node.armed = None;
        }
        let Some(pool) = node.pool.as_mut() else {
            return;
        };
        let mut floor = now;
        if pool.poll_timeout().is_some_and(|t| t <= now) {
            pool.handle_timeout(now);
            if pool.poll_timeout().is_some_and(|t| t <= now) {
                self.violation(format!(
                    "node {n}: pool timer still due right after handle_timeout"
                ));
                // Step over it rather than spin at this instant.
                floor = now + Duration::from_millis(1);
            }
        }
        self.drain_pool(n);
        self.arm_pool(n, floor);
        self.check_node(n);
    }

    /// The drain contract: carry out every output, then arm the next wake-up.
    pub(super) fn after_pool(&mut self, n: usize) {
        self.drain_pool(n);
        self.arm_pool(n, self.now);
        self.check_node(n);
    }

    pub(super) fn drain_pool(&mut self, n: usize) {
        while let Some(out) = self.nodes[n].pool.as_mut().and_then(|p| p.poll_output()) {
            self.carry_out(n, out);
        }
    }

    /// Schedules a wake-up at the pool's next deadline (not before `floor`), unless an earlier
    /// one is already scheduled.
    pub(super) fn arm_pool(&mut self, n: usize, floor: Time) {
        let node = &mut self.nodes[n];
        let Some(t) = node.pool.as_ref().and_then(|p| p.poll_timeout()) else {
            return;
        };
        let at = t.max(floor);
        if node.armed.map_or(true, |a| at < a) {
            node.armed = Some(at);
            let life = node.life;
            self.agenda.push(at, Event::PoolWake(n, life));
        }
    }

    pub(super) fn carry_out(&mut self, n: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Dial { req, addr, kind } => {
                (20u8, n, req, addr).hash(&mut self.trace);
                self.dial(n, req, addr, kind);
            }
            Output::Peer { peer, command } => {
                (21u8, n, peer, format!("{command:?}")).hash(&mut self.trace);
                if let Some(&(c, side)) = self.nodes[n].peers.get(&peer) {
                    if side == LISTENER
                        && command == PeerCommand::Disconnect(DisconnectReason::SelfConnection)
                    {
                        self.stats.self_connections_caught += 1;
                    }
                    if let Some(o) = self.open_mut(c, side) {
                        o.machine.handle_command(now, command);
                    }
                    self.drain_peer(c, side);
                }
            }
            Output::Event(e) => {
                (24u8, n, format!("{e:?}")).hash(&mut self.trace);
                self.pool_event(n, e);
            }
            Output::SaveBans => {
                // The node's book and bans are kept in memory across its restarts.
                (26u8, n).hash(&mut self.trace);
            }
            Output::Reseed => {
                (25u8, n).hash(&mut self.trace);
                self.stats.reseeds += 1;
                let addrs: Vec<NetAddr> = self
                    .dns_seed_answer(n)
                    .into_iter()
                    .map(|s| self.nodes[s].addr)
                    .collect();
                if let Some(pool) = self.nodes[n].pool.as_mut() {
                    for a in addrs {
                        pool.add_addresses(now, &[(a, ServiceFlags::NETWORK, now)], a);
                    }
                }
            }
        }
    }

    pub(super) fn pool_event(&mut self, n: usize, e: PoolEvent) {
        let now = self.now;
        let target = self.config.target_outbound();
        match e {
            PoolEvent::PeerJoined {
                peer, kind, addr, ..
            } => {
                if self.nodes[n].banned(&addr, now) {
                    let made: Vec<String> = self.nodes[n]
                        .bans
                        .iter()
                        .filter(|(s, _)| s.contains(&addr.host))
                        .map(|(_, until)| {
                            let at = *until - self.config.pool.banman.ban_duration;
                            format!("t={:.3}s", at.since(EPOCH).as_secs_f64())
                        })
                        .collect();
                    let how = match self.nodes[n].peers.get(&peer) {
                        Some(&(c, DIALER)) => {
                            let at = self.conns.get(&c).map_or(now, |x| x.dialed_at);
                            format!("dialed at t={:.3}s", at.since(EPOCH).as_secs_f64())
                        }
                        Some(_) => "inbound".to_string(),
                        None => "already gone".to_string(),
                    };
                    self.violation(format!(
                        "node {n}: peer {peer} at banned {addr} joined ({how}; banned at {made:?})"
                    ));
                }
                let node = &mut self.nodes[n];
                node.joined.insert(peer, kind);
                let ready = node.ready_outbound();
                if ready >= target {
                    if let Some(s) = node.sessions.last_mut() {
                        s.reached_target.get_or_insert(now);
                    }
                }
                if ready > target {
                    self.violation(format!(
                        "node {n}: {ready} automatic outbound peers, above the target {target}"
                    ));
                }
            }
            PoolEvent::PeerLeft { peer, .. } => {
                self.nodes[n].joined.remove(&peer);
            }
            PoolEvent::Banned {
                subnet,
                until,
                reason,
            } => {
                self.stats.bans += 1;
                self.nodes[n].bans.push((subnet, until));
                if reason == BanReason::Misbehaviour {
                    let honest: Vec<usize> = (0..self.nodes.len())
                        .filter(|&i| !self.nodes[i].misbehaving)
                        .filter(|&i| subnet.contains(&self.nodes[i].addr.host))
                        .collect();
                    if !honest.is_empty() {
                        self.violation(format!("node {n} banned honest node(s) {honest:?}"));
                    }
                }
            }
            PoolEvent::Evicted { .. } => self.stats.evictions += 1,
        }
    }

    pub(super) fn input(&mut self, n: usize, life: u32, input: Input) {
        if !self.current(n, life) {
            return;
        }
        let now = self.now;
        let Some(pool) = self.nodes[n].pool.as_mut() else {
            return;
        };
        match input {
            Input::Peer(peer, event) => {
                if matches!(event, PeerEvent::Misbehaved { .. }) {
                    self.stats.misbehaviours += 1;
                }
                pool.handle_peer_event(now, peer, &event);
            }
            Input::Disconnected(peer, reason) => pool.handle_disconnected(now, peer, reason),
        }
        self.after_pool(n);
    }

    /// Invariants of one node, checked after each of its drains.
    pub(super) fn check_node(&mut self, n: usize) {
        let now = self.now;
        let target = self.config.target_outbound();
        let Some(pool) = self.nodes[n].pool.as_ref() else {
            return;
        };
        let count = pool.connman().outbound_count();
        let stale: Vec<ReqId> = pool
            .connman()
            .requests()
            .filter(|r| matches!(r.state, ConnState::Pending { since } if since + self.dial_bound < now))
            .map(|r| r.id)
            .collect();
        if count > target {
            self.violation(format!(
                "node {n}: {count} automatic outbound requests live, above the target {target}"
            ));
        }
        if !stale.is_empty() {
            self.violation(format!(
                "node {n}: dials {stale:?} pending in connman for too long"
            ));
        }
        let unanswered: Vec<ReqId> = self.nodes[n]
            .dials
            .iter()
            .filter(|(_, at)| **at + self.dial_bound < now)
            .map(|(r, _)| *r)
            .collect();
        if !unanswered.is_empty() {
            self.violation(format!("node {n}: dials {unanswered:?} never answered"));
        }
    }
}
