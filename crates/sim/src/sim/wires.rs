//! The wires of the simulation: dials, simulated TCP connections with latency, loss and
//! partitions, and the runtime's part around each connection's peer machine.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{PeerEvent, PeerOutput};
use peerpool_core::pool::connman::{ConnKind, ReqId};
use peerpool_core::pool::machine::Refused;
use peerpool_core::pool::PoolMachine;
use peerpool_core::{Direction, DisconnectReason, PeerId, PeerMachine};
use peerpool_wire::frame::FrameDecoder;
use peerpool_wire::message::encode_message;
use peerpool_wire::MessageKind;

use super::{
    addrs, Conn, ConnId, End, EndState, Event, Input, Open, Segment, Side, Sim, DIALER, LISTENER,
};
use crate::network::link_latency;
use peerpool_core::Time;

impl Sim {
    // ----- dialing -------------------------------------------------------------------------

    pub(super) fn dial(&mut self, n: usize, req: ReqId, addr: NetAddr, kind: ConnKind) {
        let now = self.now;
        self.stats.dials += 1;
        if self.nodes[n].misbehaving {
            self.stats.misbehaving_dials += 1;
        }
        let life = self.nodes[n].life;
        if self.nodes[n].dials.insert(req, now).is_some() {
            self.violation(format!("node {n}: request {req} dialed twice"));
        }
        if self.nodes[n].banned(&addr, now) {
            self.violation(format!("node {n} dialed {addr}, which it banned"));
        }
        let target = self.by_addr.get(&addr).copied();
        if target == Some(n) {
            self.stats.self_dials += 1;
        }
        let lost = self.rng.f64() < self.config.dial_loss;
        let reachable = target
            .filter(|&t| self.nodes[t].online() && self.blocked(n, t, now).is_none() && !lost);
        let Some(t) = reachable else {
            let at = now + self.config.connect_timeout;
            self.agenda.push(at, Event::DialFailed(n, life, req));
            return;
        };
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let latency = link_latency(
            self.latency_salt,
            n,
            t,
            self.config.min_latency,
            self.config.max_latency,
        );
        let end = |node| End {
            node,
            life: 0,
            state: EndState::Waiting,
        };
        self.conns.insert(
            id,
            Conn {
                latency,
                kind,
                req,
                dialed_at: now,
                target: addr,
                ends: [End { life, ..end(n) }, end(t)],
                arrival: [now; 2],
            },
        );
        self.agenda.push(now + latency, Event::Syn(id));
    }

    /// The dial reaches the listener, which accepts or refuses it.
    pub(super) fn syn(&mut self, c: ConnId) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let (d, t) = (conn.ends[DIALER].node, conn.ends[LISTENER].node);
        let (d_life, req, dialed_at, latency) = (
            conn.ends[DIALER].life,
            conn.req,
            conn.dialed_at,
            conn.latency,
        );
        if !self.nodes[t].online() || self.blocked(d, t, now).is_some() {
            self.conns.remove(&c);
            let at = (dialed_at + self.config.connect_timeout).max(now);
            self.agenda.push(at, Event::DialFailed(d, d_life, req));
            return;
        }
        let peer = self.next_peer(t);
        let from = NetAddr {
            host: self.nodes[d].addr.host,
            port: 49_152 + self.rng.u16(..16_384),
        };
        let Some(pool) = self.nodes[t].pool.as_mut() else {
            return;
        };
        let verdict = pool.handle_inbound(now, peer, from);
        (30u8, t, peer, from, verdict.is_ok()).hash(&mut self.trace);
        if verdict.is_ok() && self.nodes[t].banned(&from, now) {
            self.violation(format!(
                "node {t} accepted an inbound connection from banned {from}"
            ));
        }
        let life = self.nodes[t].life;
        let accepted = verdict.is_ok();
        if accepted {
            let machine = PeerMachine::new(
                Arc::clone(&self.peer_config),
                peer,
                Direction::Inbound,
                addrs(from, self.nodes[t].addr),
                now,
                0,
                self.rng.u64(..),
            );
            let open = self.fresh_open(peer, machine);
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.ends[LISTENER].life = life;
                conn.ends[LISTENER].state = EndState::Open(open);
            }
            self.nodes[t].peers.insert(peer, (c, LISTENER));
        } else {
            self.stats.inbound_refused += 1;
            if matches!(verdict, Err(Refused::Banned)) {
                self.stats.inbound_refused_banned += 1;
            }
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.ends[LISTENER].state = EndState::Closed;
            }
        }
        self.after_pool(t);
        // The handshake segment back: not subject to loss or partitions, which the dial
        // outcome already accounts for.
        if let Some(conn) = self.conns.get_mut(&c) {
            let at = (now + latency).max(conn.arrival[DIALER]);
            conn.arrival[DIALER] = at;
            self.agenda.push(at, Event::Connected(c));
        }
        if accepted {
            self.drain_peer(c, LISTENER);
        } else {
            // Accepted by the kernel, closed at once by the node.
            self.transmit(c, DIALER, Segment::Fin);
        }
    }

    /// The dialer learns its dial succeeded.
    pub(super) fn connected(&mut self, c: ConnId) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let (d, life, req, target) = (
            conn.ends[DIALER].node,
            conn.ends[DIALER].life,
            conn.req,
            conn.target,
        );
        if !self.current(d, life) {
            // The dialer went away meanwhile; its kernel answers with a reset.
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.ends[DIALER].state = EndState::Closed;
            }
            self.transmit(c, LISTENER, Segment::Rst);
            self.collect(c);
            return;
        }
        self.nodes[d].dials.remove(&req);
        let peer = self.next_peer(d);
        if let Some(pool) = self.nodes[d].pool.as_mut() {
            pool.handle_dial_succeeded(now, req, peer);
        }
        let machine = PeerMachine::new(
            Arc::clone(&self.peer_config),
            peer,
            Direction::Outbound,
            addrs(target, self.nodes[d].addr),
            now,
            0,
            self.rng.u64(..),
        );
        let open = self.fresh_open(peer, machine);
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.ends[DIALER].state = EndState::Open(open);
        }
        self.nodes[d].peers.insert(peer, (c, DIALER));
        self.after_pool(d);
        self.drain_peer(c, DIALER);
        if let Some(mean) = self.config.link_failure_mean {
            let lasts = self.exponential(mean);
            self.agenda.push(now + lasts, Event::Cut(c));
        }
    }

    // ----- connections ---------------------------------------------------------------------

    pub(super) fn next_peer(&mut self, n: usize) -> PeerId {
        let node = &mut self.nodes[n];
        node.next_peer += 1;
        PeerId(node.next_peer)
    }

    pub(super) fn fresh_open(&self, peer: PeerId, machine: PeerMachine) -> Box<Open> {
        Box::new(Open {
            peer,
            machine,
            decoder: FrameDecoder::new(self.config.peer.chain.magic),
            buf: BytesMut::new(),
            armed: None,
        })
    }

    pub(super) fn open(&self, c: ConnId, side: Side) -> Option<&Open> {
        match &self.conns.get(&c)?.ends[side].state {
            EndState::Open(o) => Some(o),
            _ => None,
        }
    }

    pub(super) fn open_mut(&mut self, c: ConnId, side: Side) -> Option<&mut Open> {
        match &mut self.conns.get_mut(&c)?.ends[side].state {
            EndState::Open(o) => Some(o),
            _ => None,
        }
    }

    /// When the partition between `a` and `b` heals, if one is in force at `t`.
    pub(super) fn blocked(&self, a: usize, b: usize, t: Time) -> Option<Time> {
        self.partitions
            .iter()
            .filter(|p| p.from <= t && t < p.until && p.side[a] != p.side[b])
            .map(|p| p.until)
            .max()
    }

    /// Sends a segment towards `to`: one latency later, plus a retransmission delay if it is
    /// lost, held while a partition separates the ends, never overtaking earlier segments.
    pub(super) fn transmit(&mut self, c: ConnId, to: Side, segment: Segment) {
        let now = self.now;
        let lost = self.rng.f64() < self.config.loss;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let (a, b, latency) = (conn.ends[0].node, conn.ends[1].node, conn.latency);
        let mut at = now + latency;
        if lost {
            self.stats.retransmits += 1;
            at = at + self.config.retransmit;
        }
        if let Some(heal) = self.blocked(a, b, now) {
            at = at.max(heal + latency);
        }
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        at = at.max(conn.arrival[to]);
        conn.arrival[to] = at;
        self.agenda.push(at, Event::Segment(c, to, segment));
    }

    pub(super) fn data(&mut self, c: ConnId, to: Side, bytes: &[u8]) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let node = conn.ends[to].node;
        let other_open = matches!(conn.ends[1 - to].state, EndState::Open(_));
        let Some(o) = self.open_mut(c, to) else {
            // Nobody home. A running host answers with a reset; a crashed one stays silent.
            if self.nodes[node].online() && other_open {
                self.transmit(c, 1 - to, Segment::Rst);
            }
            return;
        };
        o.buf.extend_from_slice(bytes);
        loop {
            let before = o.buf.len();
            match o.decoder.decode(&mut o.buf) {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    o.machine
                        .handle_frame(now, &frame, PoolMachine::wants_decoded);
                }
                Err(e) => {
                    let fatal = e.is_fatal();
                    let consumed = before.saturating_sub(o.buf.len());
                    o.machine.handle_bad_frame(now, e, consumed);
                    if fatal {
                        o.buf.clear();
                        break;
                    }
                }
            }
        }
        self.drain_peer(c, to);
    }

    pub(super) fn remote_closed(&mut self, c: ConnId, to: Side, reason: DisconnectReason) {
        if self.open(c, to).is_some() {
            self.close_end(c, to, reason, false);
        }
    }

    pub(super) fn peer_wake(&mut self, c: ConnId, side: Side) {
        let now = self.now;
        let Some(o) = self.open_mut(c, side) else {
            return;
        };
        if o.armed.is_some_and(|t| t <= now) {
            o.armed = None;
        }
        let mut floor = now;
        if o.machine.poll_timeout().is_some_and(|t| t <= now) {
            o.machine.handle_timeout(now);
            if o.machine.poll_timeout().is_some_and(|t| t <= now) {
                floor = now + Duration::from_millis(1);
                let n = self.conns.get(&c).map_or(usize::MAX, |x| x.ends[side].node);
                self.violation(format!(
                    "node {n}, {c:?}: peer timer still due right after handle_timeout"
                ));
            }
        }
        self.drain_peer_from(c, side, floor);
    }

    /// Carries out a peer machine's outputs, then arms its next wake-up.
    pub(super) fn drain_peer(&mut self, c: ConnId, side: Side) {
        self.drain_peer_from(c, side, self.now);
    }

    /// [`Sim::drain_peer`], arming the next wake-up no earlier than `floor`.
    pub(super) fn drain_peer_from(&mut self, c: ConnId, side: Side, floor: Time) {
        let now = self.now;
        let magic = self.config.peer.chain.magic;
        loop {
            let Some(o) = self.open_mut(c, side) else {
                return;
            };
            let Some(out) = o.machine.poll_output() else {
                break;
            };
            match out {
                PeerOutput::Send { message, .. } => {
                    let mut bytes = Vec::new();
                    let len = encode_message(magic, &message, &mut bytes);
                    o.machine.handle_sent(now, MessageKind::of(&message), len);
                    self.stats.messages += 1;
                    *self
                        .stats
                        .messages_by_kind
                        .entry(MessageKind::of(&message).as_str())
                        .or_default() += 1;
                    self.stats.bytes += len as u64;
                    self.transmit(c, 1 - side, Segment::Data(bytes));
                }
                PeerOutput::Event(e) => self.peer_event(c, side, e),
                PeerOutput::Disconnect(reason) => {
                    self.close_end(c, side, reason, true);
                    return;
                }
            }
        }
        self.arm_peer(c, side, floor);
    }

    /// Schedules a wake-up at the peer machine's next deadline (not before `floor`), unless an
    /// earlier one is already scheduled.
    pub(super) fn arm_peer(&mut self, c: ConnId, side: Side, floor: Time) {
        let Some(o) = self.open_mut(c, side) else {
            return;
        };
        let Some(t) = o.machine.poll_timeout() else {
            return;
        };
        let at = t.max(floor);
        if o.armed.map_or(true, |a| at < a) {
            o.armed = Some(at);
            self.agenda.push(at, Event::PeerWake(c, side));
        }
    }

    pub(super) fn peer_event(&mut self, c: ConnId, side: Side, e: PeerEvent) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let n = conn.ends[side].node;
        let life = conn.ends[side].life;
        let self_conn = conn.ends[DIALER].node == conn.ends[LISTENER].node;
        let Some(peer) = self.open(c, side).map(|o| o.peer) else {
            return;
        };
        if let PeerEvent::HandshakeCompleted { .. } = e {
            self.stats.handshakes += 1;
            if self_conn {
                self.violation(format!("node {n} completed a handshake with itself"));
            }
            if self.nodes[n].misbehaving {
                let at = now + self.config.misbehave_interval;
                self.agenda.push(at, Event::Misbehave(c, side));
            }
        }
        let input = Input::Peer(peer, e);
        self.agenda.push(now, Event::Input(n, life, input));
    }

    /// Ends one side of a connection and tells its pool; `notify` sends a FIN to the other
    /// side (not when the other side is the one that closed).
    pub(super) fn close_end(
        &mut self,
        c: ConnId,
        side: Side,
        reason: DisconnectReason,
        notify: bool,
    ) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let (n, life) = (conn.ends[side].node, conn.ends[side].life);
        let EndState::Open(o) = std::mem::replace(&mut conn.ends[side].state, EndState::Closed)
        else {
            return;
        };
        self.nodes[n].peers.remove(&o.peer);
        if notify {
            self.transmit(c, 1 - side, Segment::Fin);
        }
        self.agenda.push(
            now,
            Event::Input(n, life, Input::Disconnected(o.peer, reason)),
        );
        self.collect(c);
    }

    /// Forgets a connection once neither end can act any more.
    pub(super) fn collect(&mut self, c: ConnId) {
        let done = self.conns.get(&c).is_some_and(|conn| {
            conn.ends
                .iter()
                .all(|e| matches!(e.state, EndState::Closed))
        });
        if done {
            self.conns.remove(&c);
        }
    }
}
