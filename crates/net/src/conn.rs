//! The connection task: socket <-> frames <-> peer machine.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use peerpool_core::cost::Cost;
use peerpool_core::peer::{DisconnectReason, PeerEvent, PeerOutput, SendToken};
use peerpool_core::pool::PoolMachine;
use peerpool_core::Time;
use peerpool_wire::frame::{Frame, FrameDecoder, HEADER_LEN};
use peerpool_wire::message::{command_of, encode_message};
use peerpool_wire::{Command, MessageKind};
use tokio::net::TcpStream;
use tracing::{debug, info, trace};

use crate::bus::PeerMessage;
use crate::clock;
use crate::peer::{lock_nonces, Peer, Slot};

/// Bytes read per `read` call into the per-thread scratch buffer.
const SCRATCH_LEN: usize = 64 * 1024;

/// Reads per readiness event before other work (timers, commands, other tasks) gets a turn, so
/// one flooding peer cannot monopolise its worker thread.
const READS_PER_TURN: usize = 8;

/// How long a connection must have written nothing before its send queues (the machine's
/// output queue and the write buffer) give back their spare capacity. A busy connection keeps
/// it between bursts, so a relay stream does not grow the queues again from empty each time
/// (a relay to 1,000 peers reaches each one every 100 ms or so); an idle one holds none, which
/// keeps 10,000 idle peers within 4 KB each.
pub(crate) const IDLE_SHRINK_AFTER: Duration = Duration::from_secs(1);

/// Send backlog (bytes held in the write buffer) past which nothing more is read from the
/// peer until it drains: a peer that reads slower than it asks (pings answered by pongs,
/// `getaddr`) stops being answered instead of growing its backlog. Bitcoin Core:
/// `DEFAULT_MAXSENDBUFFER` (1,000 KB), past which it stops processing the peer's messages.
const PAUSE_READS_AT: usize = 1_000_000;

/// Written bytes at the front of the write buffer past which it is compacted (moved down) as
/// it drains, rather than only once empty: a buffer always written in part would otherwise
/// only grow.
const COMPACT_AFTER: usize = 64 * 1024;

/// Write buffer capacity up to which a connection's queues are given back as soon as it waits,
/// without waiting out [`IDLE_SHRINK_AFTER`]: growing such small queues again costs next to
/// nothing, and a freshly handshaken peer (a few hundred bytes of handshake) should hold
/// nothing once it goes quiet. A relay burst (hundreds of frames) exceeds it.
const SMALL_WRITE_BUFFER: usize = 4096;

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
    /// Completion notices waiting for their bytes to be written; none (and nothing
    /// allocated) on a connection nobody asked to be told about.
    notices: Option<Box<Notices>>,
    /// The session's own cost; published to [`crate::peer::Session`] at every charge.
    cost: Cost,
    /// A received frame waiting out its cost delay, and when it may be handled. Nothing more
    /// is read meanwhile: a costly peer's backlog waits in its own socket.
    held: Option<Box<(Frame, Time)>>,
    /// When a message was last encoded or bytes last written.
    last_active: tokio::time::Instant,
    /// Whether the send queues may hold spare capacity (cleared when they are shrunk).
    spare: bool,
    /// An event for the owning pool that found the peer's backlog full: the task is paused
    /// (nothing read, no further output carried out) until the pool takes it.
    pending: Option<Box<PeerEvent>>,
}

/// Completion notices of a connection: bytes written since the first notice was asked for,
/// and per notice the count the message's last byte is at.
#[derive(Default)]
struct Notices {
    written: u64,
    marks: Vec<(u64, SendToken)>,
}

/// What woke a waiting connection task.
enum Woke {
    /// A command was queued (or the pool made room for a pending report).
    Command,
    /// The socket has bytes to read (or failed).
    Readable(io::Result<()>),
    /// The socket takes bytes again (or failed).
    Writable(io::Result<()>),
    /// The timer fired.
    Timer,
}

/// What a drain of the machine's outputs came to.
enum Drained {
    /// Everything carried out.
    Done,
    /// Stopped at an event the pool has no room for yet (see [`Conn::pending`]).
    Paused,
    /// The machine decided to close.
    Closed(DisconnectReason),
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
        notices: None,
        cost: Cost::new(clock::now()),
        held: None,
        last_active: tokio::time::Instant::now(),
        spare: false,
        pending: None,
    };
    let reason = conn.drive().await;
    conn.report_remaining();
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
        // One timer for the machine's deadline, the idle shrink and a delayed frame, whichever
        // comes first (each timer more would cost every idle connection its size).
        let mut armed = None;
        let mut shrink_armed = None;
        let mut resume_armed = None;
        loop {
            let paused = match self.resend() {
                false => true,
                true => match self.drain() {
                    Drained::Done => false,
                    Drained::Paused => true,
                    Drained::Closed(reason) => return reason,
                },
            };
            if let Err(e) = self.try_write() {
                self.disconnect(DisconnectReason::Io(e.to_string()));
                continue;
            }
            let unwritten = self.wbuf.len() - self.wpos;
            // What the buffer holds, written bytes not yet compacted away included: that is
            // the memory the peer costs.
            let held = self.wbuf.len();
            if held > self.peer.inner.config.max_send_buffer {
                self.disconnect(DisconnectReason::SendQueueFull { queued: held });
                continue;
            }
            // About to wait: once idle for a while, keep no spare queue capacity.
            // While bytes wait for the socket, the writable wake-up comes first and refreshes
            // `last_active`; the shrink timer is for a connection with nothing left to write.
            let idle = self.spare && unwritten == 0;
            let shrink_now = idle
                && (self.wbuf.capacity() <= SMALL_WRITE_BUFFER
                    || self.last_active + IDLE_SHRINK_AFTER <= tokio::time::Instant::now());
            if shrink_now {
                self.spare = false;
                self.wbuf = Vec::new();
            }
            let deadline = match &mut *self.peer.lock() {
                Slot::Running(r) => {
                    r.unwritten_bytes = unwritten;
                    if shrink_now {
                        r.machine.shrink_idle();
                    }
                    r.machine.poll_timeout()
                }
                _ => None,
            };
            let shrink_at =
                (self.spare && unwritten == 0).then(|| self.last_active + IDLE_SHRINK_AFTER);
            // A delayed frame waits out its delay, unless the task is paused anyway.
            let resume_at = self
                .held
                .as_ref()
                .filter(|_| !paused)
                .map(|h| clock::instant_of(h.1));
            if deadline != armed || shrink_at != shrink_armed || resume_at != resume_armed {
                armed = deadline;
                shrink_armed = shrink_at;
                resume_armed = resume_at;
                let at = [shrink_at, resume_at]
                    .into_iter()
                    .flatten()
                    .fold(clock::instant_of(deadline.unwrap_or_else(far)), |a, b| {
                        a.min(b)
                    });
                sleep.as_mut().reset(at);
            }
            let want_write = self.wpos < self.wbuf.len();
            let reading = self.held.is_none() && !paused && unwritten <= PAUSE_READS_AT;
            // Socket readiness is polled in place rather than through `readable()` and
            // `writable()` futures: those would make every idle connection's task some 300
            // bytes larger.
            let woke = {
                let (stream, wake) = (&self.stream, &self.peer.inner.wake);
                let notified = wake.notified();
                tokio::pin!(notified);
                std::future::poll_fn(|cx| {
                    if notified.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::Command);
                    }
                    if reading {
                        if let Poll::Ready(r) = stream.poll_read_ready(cx) {
                            return Poll::Ready(Woke::Readable(r));
                        }
                    }
                    if want_write {
                        if let Poll::Ready(r) = stream.poll_write_ready(cx) {
                            return Poll::Ready(Woke::Writable(r));
                        }
                    }
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::Timer);
                    }
                    Poll::Pending
                })
                .await
            };
            match woke {
                Woke::Command => {}
                Woke::Readable(r) => {
                    if let Err(reason) = r.map_err(io_reason).and_then(|()| self.read()) {
                        self.disconnect(reason);
                    }
                }
                Woke::Writable(r) => {
                    if let Err(e) = r {
                        self.disconnect(io_reason(e));
                    }
                }
                Woke::Timer => {
                    // The machine's deadline, the idle shrink (done at the top of the loop) or
                    // a delayed frame's turn, whichever came first; re-armed at the top.
                    let now = clock::now();
                    let due = armed.is_some_and(|d| d <= now);
                    let resume = resume_armed.is_some_and(|r| r <= tokio::time::Instant::now());
                    (armed, shrink_armed, resume_armed) = (None, None, None);
                    if due {
                        if let Slot::Running(r) = &mut *self.peer.lock() {
                            r.machine.handle_timeout(now);
                        }
                    }
                    if resume {
                        self.resume();
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
        if let Some(held) = self.held.take() {
            let (frame, _) = *held;
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
                    // A large payload: read straight into its buffer rather than through the
                    // scratch buffer (one copy less), into the room the decoder made. That
                    // room grows with what arrives, so a peer announcing 4 MB and trickling
                    // it costs what it sent, not 4 MB.
                    let room = self.rbuf.capacity() - self.rbuf.len();
                    let mut limited = (&mut self.rbuf).limit(needed.min(room.max(1)));
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
                        self.held = Some(Box::new((frame, now + wait)));
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
        let pool = self.peer.inner.pool.as_deref();
        let wire_len = frame.wire_len();
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
            r.machine.handle_frame(now, &frame, |kind| {
                listeners.wants(kind) || pool.is_some_and(|p| p.wants(kind))
            });
        }
        if let Some(f) = &listeners.on_read {
            f(&self.peer, wire_len, frame.command);
        }
    }

    /// Carries out the machine's outputs: sends are encoded into the write buffer under the
    /// lock, events are dispatched to listeners (and the owning pool) without it.
    fn drain(&mut self) -> Drained {
        let magic = self.peer.inner.config.peer.chain.magic;
        let hooks = self.peer.inner.config.listeners.on_write.is_some();
        let logged = self.peer.inner.session.logged.load(Ordering::Relaxed);
        let id = self.peer.inner.id;
        // One clock reading per drain: everything drained here leaves in the same write.
        let now = clock::now();
        // Frames encoded in this round, for the `on_write` hook (only kept when it is set).
        let mut written: Vec<(usize, Command)> = Vec::new();
        loop {
            let next = {
                let mut slot = self.peer.lock();
                let Slot::Running(r) = &mut *slot else {
                    return Drained::Closed(DisconnectReason::Requested);
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
                            self.spare = true;
                            if let Some(t) = token {
                                // Resolved once every byte up to this message's end is out.
                                let unwritten = (self.wbuf.len() - self.wpos) as u64;
                                let notices = self.notices.get_or_insert_with(Box::default);
                                let end = notices.written + unwritten;
                                notices.marks.push((end, t));
                            }
                            if hooks {
                                written.push((n, command_of(&message)));
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
            if !written.is_empty() {
                let listeners = &self.peer.inner.config.listeners;
                if let Some(f) = &listeners.on_write {
                    for (n, c) in written.drain(..) {
                        f(&self.peer, n, c);
                    }
                }
            }
            match next {
                None => return Drained::Done,
                Some(PeerOutput::Disconnect(reason)) => return Drained::Closed(reason),
                Some(PeerOutput::Event(e)) => {
                    // The output queue held it: it may have grown.
                    self.spare = true;
                    if let Some(e) = self.dispatch(e) {
                        let peer = &self.peer.inner;
                        if let Some(pool) = peer.pool.as_deref() {
                            self.pending = pool.report(peer.id, &peer.session.pool_backlog, e);
                            if self.pending.is_some() {
                                trace!("pool busy: connection paused");
                                return Drained::Paused;
                            }
                        }
                    }
                }
                Some(PeerOutput::Send { .. }) => {}
            }
        }
    }

    /// Hands an event to the user's listeners (and, for a pool's peer, publishes a received
    /// message on the pool's bus). Returns it if the owning pool is to get it too.
    fn dispatch(&mut self, event: PeerEvent) -> Option<PeerEvent> {
        // Owned handles: the cost charge below borrows the whole task.
        let peer = self.peer.clone();
        let listeners = &peer.inner.config.listeners;
        let pool = peer.inner.pool.as_deref();
        match &event {
            PeerEvent::VersionSent { .. } => {}
            PeerEvent::VersionReceived { nonce } => {
                // A pool catches connections to itself (it knows its peers' nonces); a peer
                // on its own checks the nonces of the peers sharing its configuration.
                if pool.is_none()
                    && peer.inbound()
                    && lock_nonces(&peer.inner.config).contains(*nonce)
                {
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
                    f(&peer, version);
                }
            }
            PeerEvent::MessageReceived { kind, message } => {
                let Some(m) = message else { return None };
                listeners.dispatch(&peer, *kind, m);
                if let Some(pool) = pool.filter(|p| p.bus.wants(*kind)) {
                    pool.bus.publish_message(PeerMessage {
                        peer: peer.inner.id,
                        addr: peer
                            .addr()
                            .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                        kind: *kind,
                        message: std::sync::Arc::new(m.clone()),
                    });
                }
                if !PoolMachine::wants_decoded(*kind) {
                    return None;
                }
            }
            PeerEvent::PingCompleted { rtt_micros } => {
                for f in &listeners.on_ping_rtt {
                    f(&peer, *rtt_micros);
                }
            }
            PeerEvent::Misbehaved { what, score } => {
                crate::log_limited!(
                    tracing::Level::DEBUG,
                    "misbehaviour: {what} (score {score})"
                );
                peer.inner.session.errors.fetch_add(1, Ordering::Relaxed);
                let units = peer.inner.config.cost.units_of_misbehaviour(what.score());
                for f in &listeners.on_misbehaviour {
                    f(&peer, what, *score);
                }
                // The report goes out first: the pool judges the misbehaviour even if its cost
                // ends the connection.
                let _ = self.charge(clock::now(), units);
            }
        }
        pool.map(|_| event)
    }

    /// Offers the pending event to the owning pool; whether the task may go on (nothing was
    /// pending, or the pool took it).
    fn resend(&mut self) -> bool {
        let Some(pool) = self.peer.inner.pool.as_deref() else {
            return true;
        };
        let backlog = &self.peer.inner.session.pool_backlog;
        let free = pool.offer(self.peer.inner.id, backlog, &mut self.pending);
        if !free {
            trace!("pool busy: connection paused");
        }
        free
    }

    /// The connection is over: whatever its machine reported that the pool has not heard yet
    /// goes to the pool now, past the backlog's limit (a finishing connection has few left,
    /// and a misbehaviour among them must not be lost).
    fn report_remaining(&mut self) {
        let Some(pool) = self.peer.inner.pool.clone() else {
            return;
        };
        let id = self.peer.inner.id;
        if let Some(event) = self.pending.take() {
            pool.report_last(id, &self.peer.inner.session.pool_backlog, *event);
        }
        loop {
            let next = match &mut *self.peer.lock() {
                Slot::Running(r) => r.machine.poll_output(),
                _ => None,
            };
            match next {
                Some(PeerOutput::Event(e)) => {
                    if let Some(e) = self.dispatch(e) {
                        pool.report_last(id, &self.peer.inner.session.pool_backlog, e);
                    }
                }
                Some(PeerOutput::Send { .. }) => {}
                Some(PeerOutput::Disconnect(_)) | None => break,
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
                    if let Some(notices) = self.notices.as_deref_mut() {
                        notices.written += n as u64;
                    }
                    self.last_active = tokio::time::Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() && self.wpos > 0 {
            self.wpos = 0;
            // Kept for the next burst; given back once the connection has been idle for
            // `IDLE_SHRINK_AFTER` (see `drive`).
            self.wbuf.clear();
        } else if self.wpos >= COMPACT_AFTER && self.wpos * 2 >= self.wbuf.len() {
            // Half or more of it is written: move the rest down, so the buffer's size follows
            // the backlog rather than everything queued since it was last empty.
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        if self
            .notices
            .as_deref()
            .is_some_and(|n| n.marks.first().is_some_and(|(end, _)| *end <= n.written))
        {
            self.complete_marks();
        }
        Ok(())
    }

    fn complete_marks(&mut self) {
        let Some(notices) = self.notices.as_deref_mut() else {
            return;
        };
        let written = notices.written;
        let done: Vec<SendToken> = notices
            .marks
            .iter()
            .filter(|(end, _)| *end <= written)
            .map(|(_, t)| *t)
            .collect();
        notices.marks.retain(|(end, _)| *end > written);
        if notices.marks.is_empty() {
            self.notices = None;
        }
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

    /// Every idle connection holds its task's state: what `run` keeps across its awaits is
    /// memory per peer. A future that grows past this bound (another timer, a readiness
    /// future per direction) shows here first.
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let config = crate::Config::new(peerpool_wire::Network::Regtest.params());
        let task = super::run(
            crate::Peer::new_inbound(std::sync::Arc::new(config)),
            stream,
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 768, "connection task of {size} bytes");
    }
}
