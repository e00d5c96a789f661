//! The connection task: socket <-> frames <-> peer machine.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use peerpool_core::cost::Cost;
use peerpool_core::peer::{DisconnectReason, PeerEvent, PeerOutput, SendToken};
use peerpool_core::Time;
use peerpool_wire::frame::{Frame, FrameDecoder, HEADER_LEN};
use peerpool_wire::message::{command_of, encode_message};
use peerpool_wire::{Command, MessageKind};
use tokio::net::TcpStream;
use tracing::{debug, info, trace};

use crate::clock;
use crate::peer::{lock_nonces, Peer, Slot};

/// Bytes read per `read` call into the per-thread scratch buffer.
const SCRATCH_LEN: usize = 64 * 1024;

/// Reads per readiness event before other work (timers, commands, other tasks) gets a turn, so
/// one flooding peer cannot monopolise its worker thread.
const READS_PER_TURN: usize = 8;

thread_local! {
    /// Shared by every connection on a worker thread: an idle connection holds no read buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

struct Conn {
    peer: Peer,
    stream: TcpStream,
    decoder: FrameDecoder,
    /// Bytes of an incomplete frame; empty (and unallocated) between frames.
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// Bytes of `wbuf` already written.
    wpos: usize,
    /// Total bytes ever queued / written, to resolve completion notices.
    queued_total: u64,
    written_total: u64,
    /// Completion notices: resolved once `written_total` reaches the offset.
    marks: Vec<(u64, SendToken)>,
    /// Frames queued since the last on_write callback (only kept when that hook is set).
    write_hooks: Vec<(usize, Command)>,
    /// The session's own cost; published to [`crate::peer::Session`] at every charge.
    cost: Cost,
    /// A received frame waiting out its cost delay, and when it may be handled. Nothing more
    /// is read meanwhile: a costly peer's backlog waits in its own socket.
    held: Option<(Frame, Time)>,
}

/// Marks the peer finished if its task ends without doing so itself, which only happens when a
/// listener callback panics: waiters must never hang on a task that is gone.
struct FinishOnDrop(Peer);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if !matches!(*self.0.lock(), Slot::Finished { .. }) {
            self.0.finish(
                DisconnectReason::Io("connection task panicked".into()),
                None,
            );
        }
    }
}

pub(crate) async fn run(peer: Peer, stream: TcpStream) {
    let _guard = FinishOnDrop(peer.clone());
    let _ = stream.set_nodelay(true);
    let magic = peer.inner.config.peer.chain.magic;
    let mut conn = Conn {
        peer,
        stream,
        decoder: FrameDecoder::new(magic),
        rbuf: BytesMut::new(),
        wbuf: Vec::new(),
        wpos: 0,
        queued_total: 0,
        written_total: 0,
        marks: Vec::new(),
        write_hooks: Vec::new(),
        cost: Cost::new(clock::now()),
        held: None,
    };
    let reason = conn.drive().await;
    // Best effort: whatever was queued before the decision to disconnect.
    let _ = conn.try_write();
    let stats = match &*conn.peer.lock() {
        Slot::Running(r) => Some(r.machine.stats(clock::now())),
        _ => None,
    };
    debug!(%reason, "disconnected");
    for f in &conn.peer.inner.config.listeners.on_disconnect {
        f(&conn.peer, &reason);
    }
    conn.peer.finish(reason, stats);
}

impl Conn {
    async fn drive(&mut self) -> DisconnectReason {
        let far = || clock::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(clock::instant_of(far()));
        tokio::pin!(sleep);
        let mut armed = None;
        loop {
            if let Some(reason) = self.drain() {
                return reason;
            }
            if let Err(e) = self.try_write() {
                self.disconnect(DisconnectReason::Io(e.to_string()));
                continue;
            }
            let unwritten = self.wbuf.len() - self.wpos;
            if unwritten > self.peer.inner.config.max_send_buffer {
                self.disconnect(DisconnectReason::SendQueueFull { queued: unwritten });
                continue;
            }
            let deadline = match &mut *self.peer.lock() {
                Slot::Running(r) => {
                    r.unwritten_bytes = unwritten;
                    // About to wait: keep no spare queue capacity while idle.
                    r.machine.shrink_idle();
                    r.machine.poll_timeout()
                }
                _ => None,
            };
            if deadline != armed {
                armed = deadline;
                sleep
                    .as_mut()
                    .reset(clock::instant_of(deadline.unwrap_or_else(far)));
            }
            let want_write = self.wpos < self.wbuf.len();
            let resume_at = self.held.as_ref().map(|(_, at)| *at);
            let resume = clock::instant_of(resume_at.unwrap_or_else(far));
            tokio::select! {
                biased;
                _ = self.peer.inner.wake.notified() => {}
                () = tokio::time::sleep_until(resume), if resume_at.is_some() => self.resume(),
                r = self.stream.readable(), if resume_at.is_none() => {
                    if let Err(reason) = r.map_err(io_reason).and_then(|()| self.read()) {
                        self.disconnect(reason);
                    }
                }
                r = self.stream.writable(), if want_write => {
                    if let Err(e) = r {
                        self.disconnect(io_reason(e));
                    }
                }
                () = &mut sleep => {
                    armed = None;
                    if let Slot::Running(r) = &mut *self.peer.lock() {
                        r.machine.handle_timeout(clock::now());
                    }
                }
            }
        }
    }

    fn disconnect(&self, reason: DisconnectReason) {
        if let Slot::Running(r) = &mut *self.peer.lock() {
            r.machine.disconnect(clock::now(), reason);
        }
        self.peer
            .inner
            .session
            .closing
            .store(true, Ordering::Relaxed);
    }

    /// Adds `units` to the session's cost and publishes it; at the hard limit, disconnects.
    /// Returns the session's own cost, or `None` once it is to be disconnected.
    fn charge(&mut self, now: Time, units: f64) -> Option<f64> {
        let limits = &self.peer.inner.config.cost;
        let own = self.cost.charge(now, units, limits.half_life);
        self.peer.inner.session.publish_cost(&self.cost);
        if limits.exceeded(own) {
            debug!(cost = own, limit = limits.hard, "cost over the hard limit");
            // Saturating conversions: the figures are for display.
            self.disconnect(DisconnectReason::ExcessiveCost {
                cost: own as u64,
                limit: limits.hard as u64,
            });
            return None;
        }
        Some(own)
    }

    /// Handles the frame that waited out its delay, then whatever else is buffered.
    fn resume(&mut self) {
        if let Some((frame, _)) = self.held.take() {
            self.handle_frame(clock::now(), frame);
        }
        self.frames();
    }

    /// Reads what the socket has, frames it and feeds the frames to the machine.
    fn read(&mut self) -> Result<(), DisconnectReason> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            for _ in 0..READS_PER_TURN {
                if self.held.is_some() {
                    // A delayed frame: read nothing more until it is handled.
                    break;
                }
                // Inside a payload, read no further than its end: the decoder sized the buffer
                // for exactly that payload, and bytes beyond it would make it reallocate.
                let needed = self.decoder.needed(self.rbuf.len());
                if self.decoder.in_payload() && needed >= scratch.len() {
                    // A large payload: the decoder sized the buffer for it, so read straight
                    // into it rather than through the scratch buffer (one copy less).
                    if self.rbuf.capacity() - self.rbuf.len() < needed {
                        self.rbuf.reserve(needed);
                    }
                    let mut limited = (&mut self.rbuf).limit(needed);
                    match self.stream.try_read_buf(&mut limited) {
                        Ok(0) => return Err(DisconnectReason::RemoteClosed),
                        Ok(_) => {
                            self.frames();
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_reason(e)),
                    }
                }
                let limit = if self.decoder.in_payload() {
                    needed.clamp(1, scratch.len())
                } else {
                    scratch.len()
                };
                match self.stream.try_read(&mut scratch[..limit]) {
                    Ok(0) => return Err(DisconnectReason::RemoteClosed),
                    Ok(n) => {
                        self.rbuf.extend_from_slice(&scratch[..n]);
                        self.frames();
                        if n < limit || self.held.is_some() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_reason(e)),
                }
            }
            Ok(())
        })?;
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            // Between frames: give the memory back.
            self.rbuf = BytesMut::new();
        }
        Ok(())
    }

    fn frames(&mut self) {
        // One clock reading per batch: frames read together arrived together.
        let now = clock::now();
        while self.held.is_none() {
            let before = self.rbuf.len();
            let result = self.decoder.decode(&mut self.rbuf);
            match result {
                Ok(None) => return,
                Ok(Some(frame)) => {
                    let limits = &self.peer.inner.config.cost;
                    let units = limits.units_of_bytes(frame.wire_len());
                    let Some(own) = self.charge(now, units) else {
                        // Disconnecting: nothing more from this peer is handled.
                        self.rbuf.clear();
                        return;
                    };
                    let limits = &self.peer.inner.config.cost;
                    let share = self.peer.inner.session.group_share();
                    let wait = limits.delay(own + share, frame.wire_len());
                    if wait.is_zero() {
                        self.handle_frame(now, frame);
                    } else {
                        trace!(?wait, cost = own + share, "costly session: message delayed");
                        self.held = Some((frame, now + wait));
                    }
                }
                Err(e) => {
                    let fatal = e.is_fatal();
                    let consumed = before.saturating_sub(self.rbuf.len());
                    if let Slot::Running(r) = &mut *self.peer.lock() {
                        r.machine.handle_bad_frame(now, e, consumed);
                    }
                    if fatal {
                        self.rbuf.clear();
                        return;
                    }
                }
            }
        }
    }

    fn handle_frame(&mut self, now: Time, frame: Frame) {
        let listeners = &self.peer.inner.config.listeners;
        let wire_len = frame.wire_len();
        let kind = MessageKind::from_command(frame.command.as_str());
        debug!(command = %frame.command, bytes = wire_len, "recv");
        if self.peer.inner.session.logged.load(Ordering::Relaxed) {
            info!(session = %self.peer.inner.id, command = %frame.command, bytes = wire_len, "message received");
            if tracing::enabled!(tracing::Level::DEBUG) {
                debug!("received {}:\n{}", frame.command, hexdump(&frame.payload));
            }
        } else if tracing::enabled!(tracing::Level::TRACE) {
            trace!("recv {}:\n{}", frame.command, hexdump(&frame.payload));
        }
        if let Slot::Running(r) = &mut *self.peer.lock() {
            r.machine.handle_frame_of_kind(
                now,
                kind,
                frame.command,
                &frame.payload,
                wire_len,
                listeners.wants(kind),
            );
        }
        if let Some(f) = &listeners.on_read {
            f(&self.peer, wire_len, frame.command);
        }
    }

    /// Carries out the machine's outputs: sends are encoded into the write buffer under the
    /// lock, events are dispatched to listeners without it. Returns the disconnect reason once
    /// the machine decides to close.
    fn drain(&mut self) -> Option<DisconnectReason> {
        let magic = self.peer.inner.config.peer.chain.magic;
        let hooks = self.peer.inner.config.listeners.on_write.is_some();
        let logged = self.peer.inner.session.logged.load(Ordering::Relaxed);
        let id = self.peer.inner.id;
        // One clock reading per drain: everything drained here leaves in the same write.
        let now = clock::now();
        loop {
            let next = {
                let mut slot = self.peer.lock();
                let Slot::Running(r) = &mut *slot else {
                    return Some(DisconnectReason::Requested);
                };
                let next = loop {
                    match r.machine.poll_output() {
                        Some(PeerOutput::Send { message, token }) => {
                            let kind = MessageKind::of(&message);
                            let start = self.wbuf.len();
                            let n = encode_message(magic, &message, &mut self.wbuf);
                            debug!(command = %kind, bytes = n, "send");
                            if logged {
                                log_sent(id, kind, &self.wbuf[start..]);
                            }
                            r.machine.handle_sent(now, kind, n);
                            self.queued_total += n as u64;
                            if let Some(t) = token {
                                self.marks.push((self.queued_total, t));
                            }
                            if hooks {
                                self.write_hooks.push((n, command_of(&message)));
                            }
                        }
                        other => break other,
                    }
                };
                // Once the outputs are drained, every application message queued so far is
                // encoded, unless it is held for the handshake.
                if next.is_none() && r.machine.is_ready() {
                    r.pending_bytes = 0;
                }
                r.unwritten_bytes = self.wbuf.len() - self.wpos;
                next
            };
            if hooks && !self.write_hooks.is_empty() {
                let listeners = &self.peer.inner.config.listeners;
                if let Some(f) = &listeners.on_write {
                    for (n, c) in self.write_hooks.drain(..) {
                        f(&self.peer, n, c);
                    }
                }
            }
            match next {
                None => return None,
                Some(PeerOutput::Disconnect(reason)) => return Some(reason),
                Some(PeerOutput::Event(e)) => self.dispatch(e),
                Some(PeerOutput::Send { .. }) => {}
            }
        }
    }

    fn dispatch(&mut self, event: PeerEvent) {
        let listeners = &self.peer.inner.config.listeners;
        match event {
            PeerEvent::VersionReceived { nonce } => {
                if self.peer.inbound() && lock_nonces(&self.peer.inner.config).contains(nonce) {
                    debug!("version nonce is ours: connected to self");
                    self.disconnect(DisconnectReason::SelfConnection);
                }
            }
            PeerEvent::HandshakeCompleted {
                version,
                negotiated_version,
            } => {
                debug!(
                    user_agent = %version.user_agent,
                    version = negotiated_version,
                    "handshake complete"
                );
                for f in &listeners.on_handshake {
                    f(&self.peer, &version);
                }
            }
            PeerEvent::MessageReceived { kind, message } => {
                if let Some(m) = message {
                    listeners.dispatch(&self.peer, kind, &m);
                }
            }
            PeerEvent::PingCompleted { rtt_micros } => {
                for f in &listeners.on_ping_rtt {
                    f(&self.peer, rtt_micros);
                }
            }
            PeerEvent::Misbehaved { what, score } => {
                debug!(score, "misbehaviour: {what}");
                self.peer
                    .inner
                    .session
                    .errors
                    .fetch_add(1, Ordering::Relaxed);
                let units = self
                    .peer
                    .inner
                    .config
                    .cost
                    .units_of_misbehaviour(what.score());
                for f in &listeners.on_misbehaviour {
                    f(&self.peer, &what, score);
                }
                // The reports go out first: the pool's ban manager weighs the misbehaviour even
                // if its cost ends the connection.
                let _ = self.charge(clock::now(), units);
            }
        }
    }

    /// Writes as much as the socket takes without waiting; resolves completion notices.
    fn try_write(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    self.written_total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() && self.wpos > 0 {
            self.wpos = 0;
            // Give the buffer back: an idle connection holds none.
            self.wbuf = Vec::new();
        }
        if self
            .marks
            .first()
            .is_some_and(|(end, _)| *end <= self.written_total)
        {
            self.complete_marks();
        }
        Ok(())
    }

    fn complete_marks(&mut self) {
        let written = self.written_total;
        let done: Vec<SendToken> = self
            .marks
            .iter()
            .filter(|(end, _)| *end <= written)
            .map(|(_, t)| *t)
            .collect();
        self.marks.retain(|(end, _)| *end > written);
        if let Slot::Running(r) = &mut *self.peer.lock() {
            let mut i = 0;
            while i < r.waiters.len() {
                if done.contains(&r.waiters[i].0) {
                    let (_, tx) = r.waiters.swap_remove(i);
                    let _ = tx.send(());
                } else {
                    i += 1;
                }
            }
        }
    }
}

/// Logs a message being sent on a logged session: command and size at `info`, bytes at
/// `debug`. `frame` is the encoded frame, header included.
fn log_sent(id: crate::PeerId, kind: MessageKind, frame: &[u8]) {
    info!(session = %id, command = %kind, bytes = frame.len(), "message sent");
    if tracing::enabled!(tracing::Level::DEBUG) {
        let payload = frame.get(HEADER_LEN..).unwrap_or_default();
        debug!("sent {kind}:\n{}", hexdump(payload));
    }
}

fn io_reason(e: io::Error) -> DisconnectReason {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionAborted => DisconnectReason::RemoteClosed,
        _ => DisconnectReason::Io(e.to_string()),
    }
}

/// `hexdump -C`-style dump for trace logs.
pub(crate) fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", i * 16));
        for j in 0..16 {
            match chunk.get(j) {
                Some(b) => out.push_str(&format!("{b:02x} ")),
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(chunk.iter().map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hexdump_layout() {
        let d = super::hexdump(b"0123456789abcdefXY");
        assert_eq!(
            d,
            "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
             00000010  58 59                                             |XY|\n"
        );
    }
}
