//! What peerpool's own side of a connection reports, queued for tests to wait on.
//!
//! [`recording`] builds a [`Listeners`] whose callbacks forward everything a [`Peer`] reports
//! (completed handshakes, every received message, ping round trips, misbehaviour,
//! disconnects) into a [`Recorder`]. The recorder waits the way `support::bcoin::BcoinNode`
//! does: [`Recorder::wait_for`] takes the first queued report that matches, and anything that
//! does not match stays queued for later waits.
//!
//! The listeners decode every message (they subscribe with `on_message`), so a payload from
//! the other implementation that peerpool cannot parse shows up as misbehaviour rather than
//! passing unnoticed.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use peerpool::core::Misbehaviour;
use peerpool::net::{DisconnectReason, Listeners, Peer, PeerId};
use peerpool::wire::NetworkMessage;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How many past reports a failure message shows.
const SHOWN_IN_FAILURE: usize = 40;

/// One thing a peerpool [`Peer`] reported.
#[derive(Clone)]
pub enum Seen {
    /// The version handshake completed; the peer's `version` message.
    Handshake {
        /// Which peer.
        peer: PeerId,
        /// The remote's `version`.
        version: Box<bitcoin::p2p::message_network::VersionMessage>,
        /// What [`Peer::is_ready`] said inside the callback.
        ready: bool,
    },
    /// A message arrived (handshake messages included).
    Message {
        /// Which peer.
        peer: PeerId,
        /// The decoded message.
        message: Box<NetworkMessage>,
    },
    /// One of our pings was answered.
    PingRtt {
        /// Which peer.
        peer: PeerId,
        /// Round trip in microseconds.
        micros: u64,
    },
    /// peerpool judged the remote to have misbehaved.
    Misbehaved {
        /// Which peer.
        peer: PeerId,
        /// What it did.
        what: Misbehaviour,
        /// Its ban score afterwards.
        score: u32,
    },
    /// The connection ended.
    Disconnected {
        /// Which peer.
        peer: PeerId,
        /// Why.
        reason: DisconnectReason,
    },
}

impl Seen {
    /// The peer the report is about.
    pub fn peer(&self) -> PeerId {
        match self {
            Seen::Handshake { peer, .. }
            | Seen::Message { peer, .. }
            | Seen::PingRtt { peer, .. }
            | Seen::Misbehaved { peer, .. }
            | Seen::Disconnected { peer, .. } => *peer,
        }
    }

    /// The message of a [`Seen::Message`].
    pub fn message(&self) -> Option<&NetworkMessage> {
        match self {
            Seen::Message { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether this is a disconnect or a misbehaviour report.
    pub fn is_trouble(&self) -> bool {
        matches!(self, Seen::Disconnected { .. } | Seen::Misbehaved { .. })
    }

    /// Whether this is a received message with this command.
    pub fn is_received(&self, command: &str) -> bool {
        self.message()
            .is_some_and(|m| m.command().as_ref() == command)
    }
}

impl fmt::Display for Seen {
    // Messages are shown by command only: a block would swamp a failure message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Handshake { peer, version, .. } => write!(
                f,
                "peer {peer}: handshake with {} (version {}, services {})",
                version.user_agent, version.version, version.services
            ),
            Seen::Message { peer, message } => match &**message {
                NetworkMessage::Ping(n) => write!(f, "peer {peer}: received ping {n:#x}"),
                NetworkMessage::Pong(n) => write!(f, "peer {peer}: received pong {n:#x}"),
                m => write!(f, "peer {peer}: received {}", m.command()),
            },
            Seen::PingRtt { peer, micros } => {
                write!(f, "peer {peer}: ping answered in {micros} us")
            }
            Seen::Misbehaved { peer, what, score } => {
                write!(f, "peer {peer}: misbehaved ({what}), ban score {score}")
            }
            Seen::Disconnected { peer, reason } => {
                write!(f, "peer {peer}: disconnected ({reason})")
            }
        }
    }
}

/// Listeners that report into a new [`Recorder`].
pub fn recording() -> (Listeners, Recorder) {
    let (tx, rx) = mpsc::unbounded_channel();
    let send = move |seen: Seen| {
        // The recorder may be gone at the end of a test while a peer still winds down.
        let _ = tx.send(seen);
    };
    let (s1, s2, s3, s4, s5) = (send.clone(), send.clone(), send.clone(), send.clone(), send);
    let listeners = Listeners::new()
        .on_handshake(move |p: &Peer, v| {
            s1(Seen::Handshake {
                peer: p.id(),
                version: Box::new(v.clone()),
                ready: p.is_ready(),
            })
        })
        .on_message(move |p: &Peer, m| {
            s2(Seen::Message {
                peer: p.id(),
                message: Box::new(m.clone()),
            })
        })
        .on_ping_rtt(move |p: &Peer, micros| {
            s3(Seen::PingRtt {
                peer: p.id(),
                micros,
            })
        })
        .on_misbehaviour(move |p: &Peer, what, score| {
            s4(Seen::Misbehaved {
                peer: p.id(),
                what: *what,
                score,
            })
        })
        .on_disconnect(move |p: &Peer, reason| {
            s5(Seen::Disconnected {
                peer: p.id(),
                reason: reason.clone(),
            })
        });
    (
        listeners,
        Recorder {
            rx,
            pending: VecDeque::new(),
            history: Vec::new(),
            timeout: super::bcoin::DEFAULT_TIMEOUT,
        },
    )
}

/// The receiving end of [`recording`]'s listeners.
pub struct Recorder {
    rx: mpsc::UnboundedReceiver<Seen>,
    /// Received and not yet taken by a wait.
    pending: VecDeque<Seen>,
    /// Everything received, in order, including what waits took.
    history: Vec<Seen>,
    timeout: Duration,
}

impl Recorder {
    /// Takes the first report matching `pred`, waiting for more up to the timeout; panics with
    /// the recent reports if none comes. `what` names the awaited report in that message.
    ///
    /// A disconnect or misbehaviour report that `pred` does not take fails the wait at once:
    /// whatever was awaited is then not coming, and the report says why better than a timeout
    /// would.
    pub async fn wait_for(&mut self, what: &str, mut pred: impl FnMut(&Seen) -> bool) -> Seen {
        if let Some(i) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(i).expect("index from position");
        }
        if let Some(trouble) = self.pending.iter().find(|s| s.is_trouble()) {
            self.fail(&format!(
                "waiting for {what}, but peerpool reported: {trouble}"
            ));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(seen)) => {
                    self.history.push(seen.clone());
                    if pred(&seen) {
                        return seen;
                    }
                    if seen.is_trouble() {
                        self.fail(&format!(
                            "waiting for {what}, but peerpool reported: {seen}"
                        ));
                    }
                    self.pending.push_back(seen);
                }
                Ok(None) => self.fail(&format!(
                    "waiting for {what}, but every peer and config holding the listeners is gone"
                )),
                Err(_elapsed) => self.fail(&format!(
                    "peerpool reported nothing matching {what} within {:?}",
                    self.timeout
                )),
            }
        }
    }

    /// Pulls in whatever has been reported so far without waiting, so that [`Self::history`]
    /// is current.
    pub fn catch_up(&mut self) {
        while let Ok(seen) = self.rx.try_recv() {
            self.history.push(seen.clone());
            self.pending.push_back(seen);
        }
    }

    /// Everything reported so far (as of the last wait or [`Self::catch_up`]).
    pub fn history(&self) -> &[Seen] {
        &self.history
    }

    /// Commands of the messages `peer` received so far, in order.
    pub fn received(&self, peer: PeerId) -> Vec<String> {
        self.history
            .iter()
            .filter(|s| s.peer() == peer)
            .filter_map(|s| s.message().map(|m| m.command().to_string()))
            .collect()
    }

    /// Panics with `msg` and the recent reports.
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.recent());
    }

    /// The last reports, one a line, for failure messages.
    pub fn recent(&self) -> String {
        let skip = self.history.len().saturating_sub(SHOWN_IN_FAILURE);
        let mut out = format!(
            "peerpool's last {} of {} reports:",
            self.history.len() - skip,
            self.history.len()
        );
        for seen in &self.history[skip..] {
            out.push_str("\n  ");
            out.push_str(&seen.to_string());
        }
        out
    }
}
