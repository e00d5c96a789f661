//! The pool's admin queries on loopback: sessions with their flags, cost and priority, message
//! logging, the address book as `peers` shows it, messages sent through the handle, and the
//! cost model at work (a flooding session delayed, then cut off, beside a quiet one).
//! Each test uses its own 127.0.4x.y addresses, so groups and bans never cross tests.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bitcoin::p2p::message::NetworkMessage;
use peerpool_core::addr::{Host, NetAddr};
use peerpool_core::cost::Limits;
use peerpool_net::bus::PoolEvent;
use peerpool_net::pool::{ConnError, PoolError, PoolHandle, SessionInfo, Subnet};
use peerpool_net::{Direction, DisconnectReason, Peer, PeerId, Pool};
use peerpool_testkit::loopback::ip;
use peerpool_testkit::peer::{config, peer_config, serve};
use peerpool_testkit::pool::*;
use peerpool_testkit::raw::{RawPeer, MODERN};
use peerpool_testkit::{init_logs, within};
use tokio::net::TcpListener;

/// A pool on `ip` whose peers run with `limits`.
async fn pool_with(ip: Ipv4Addr, limits: Limits, name: &str) -> Pool {
    start_with(
        SocketAddr::from((ip, 0)),
        pool_config(0),
        pool_peer_config(name).with_cost_limits(limits),
    )
    .await
}

/// Polls the sessions until one from `ip` satisfies `pred`; returns it.
async fn session_where(
    handle: &PoolHandle,
    ip: Ipv4Addr,
    what: &str,
    pred: impl Fn(&SessionInfo) -> bool,
) -> SessionInfo {
    within(what, async {
        loop {
            let sessions = handle.sessions().await.unwrap();
            let from_ip = |s: &SessionInfo| matches!(s.details.addr.host, Host::Ipv4(h) if h == ip);
            if let Some(s) = sessions.into_iter().find(|s| from_ip(s) && pred(s)) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Captured log lines of this test binary (installed once; every test shares it).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "peerpool_net::conn=debug",
            ))
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .try_init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines of the captured log that mention `needles`, all of them.
fn log_lines(logs: &Mutex<Vec<u8>>, needles: &[&str]) -> Vec<String> {
    let all = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    all.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_show_each_connection_with_its_counts_and_flags() {
    init_logs();
    let pool = pool_with(ip(40, 1), Limits::default(), "s40").await;
    let handle = pool.handle();
    assert!(handle.sessions().await.unwrap().is_empty());

    let mut raw = RawPeer::connect_from(ip(40, 2), pool.listening()[0]).await;
    raw.handshake_as_dialer(MODERN).await;
    raw.ping_pong(7).await;
    let s = session_where(&handle, ip(40, 2), "the joined session", |s| {
        s.details.joined && s.details.stats.as_ref().is_some_and(|st| st.msgs_recv >= 4)
    })
    .await;
    let stats = s.details.stats.as_ref().unwrap();
    assert_eq!(s.details.direction, Direction::Inbound);
    assert_eq!(
        s.netgroup, "127.0.40.2",
        "a loopback address is a group of its own"
    );
    assert!(stats.user_agent.contains("/Satoshi") || !stats.user_agent.is_empty());
    assert!(stats.bytes_recv > 0 && stats.bytes_sent > 0 && stats.msgs_sent > 0);
    // Cost is what it received: one unit per 5,000 bytes, a little decayed.
    let expected = stats.bytes_recv as f64 / 5_000.0;
    assert!(
        s.cost > 0.0 && s.cost <= expected + 1e-9,
        "{} vs {expected}",
        s.cost
    );
    assert_eq!(s.group_cost, 0.0);
    assert_eq!(s.priority, 1);
    assert!(!s.logged && !s.closing);
    assert_eq!(s.errors, 0);

    // A second session from the same host shares its group, and its cost.
    let mut twin = RawPeer::connect_from(ip(40, 2), pool.listening()[0]).await;
    twin.handshake_as_dialer(MODERN).await;
    let shared = session_where(&handle, ip(40, 2), "a group share", |s| s.group_cost > 0.0).await;
    assert_eq!(shared.netgroup, "127.0.40.2");
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaviour_is_counted_and_costs() {
    init_logs();
    let pool = pool_with(ip(41, 1), Limits::default(), "s41").await;
    let handle = pool.handle();
    let mut raw = RawPeer::connect_from(ip(41, 2), pool.listening()[0]).await;
    raw.handshake_as_dialer(MODERN).await;
    // An `inv` whose payload does not decode: malformed, 10 points of ban score.
    raw.send_frame("inv", &[0xfd, 0xff]).await;
    raw.send_frame("inv", &[0xfd, 0xff]).await;
    let s = session_where(&handle, ip(41, 2), "two reports", |s| s.errors == 2).await;
    // 2 x 10 points x 10 units per point, a little decayed, plus the bytes.
    assert!(s.cost > 190.0 && s.cost < 201.0, "{}", s.cost);
    // 1 + one per 100 units: 2 or 3 depending on how far it has decayed.
    assert!((2..=3).contains(&s.priority), "{}", s.priority);
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn toggle_log_logs_every_message_of_that_session_only() {
    init_logs();
    let logs = captured_logs();
    let pool = pool_with(ip(42, 1), Limits::default(), "s42").await;
    let handle = pool.handle();
    let mut raw = RawPeer::connect_from(ip(42, 2), pool.listening()[0]).await;
    raw.handshake_as_dialer(MODERN).await;
    let id = session_where(&handle, ip(42, 2), "the session", |s| s.details.joined)
        .await
        .details
        .id;
    let tag = format!("session={id}");
    assert_eq!(handle.toggle_log(PeerId(u64::MAX)).await.unwrap(), None);
    raw.ping_pong(1).await;
    assert!(log_lines(&logs, &[&tag, "message"]).is_empty());

    assert_eq!(handle.toggle_log(id).await.unwrap(), Some(true));
    assert!(handle
        .sessions()
        .await
        .unwrap()
        .iter()
        .any(|s| s.details.id == id && s.logged));
    raw.ping_pong(0x0102_0304_0506_0708).await;
    let received = log_lines(
        &logs,
        &[&tag, "message received", "command=ping", "bytes=32"],
    );
    let sent = log_lines(&logs, &[&tag, "message sent", "command=pong", "bytes=32"]);
    assert_eq!(
        (received.len(), sent.len()),
        (1, 1),
        "{received:?} {sent:?}"
    );
    assert!(received[0].contains(" INFO "), "{}", received[0]);
    // The bytes at debug: the nonce, little-endian.
    assert!(!log_lines(&logs, &["08 07 06 05 04 03 02 01"]).is_empty());

    assert_eq!(handle.toggle_log(id).await.unwrap(), Some(false));
    raw.ping_pong(3).await;
    assert_eq!(log_lines(&logs, &[&tag, "message received"]).len(), 1);
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn send_message_reaches_the_peer_and_unknown_peers_are_an_error() {
    init_logs();
    let pool = pool_with(ip(43, 1), Limits::default(), "s43").await;
    let handle = pool.handle();
    let mut raw = RawPeer::connect_from(ip(43, 2), pool.listening()[0]).await;
    raw.handshake_as_dialer(MODERN).await;
    let id = session_where(&handle, ip(43, 2), "the session", |s| s.details.joined)
        .await
        .details
        .id;
    handle
        .send_message(id, NetworkMessage::Ping(4242))
        .await
        .unwrap();
    raw.until("our ping", |m| *m == NetworkMessage::Ping(4242))
        .await;
    let err = handle
        .send_message(PeerId(u64::MAX), NetworkMessage::Ping(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PoolError::Conn(ConnError::NotConnected)),
        "{err}"
    );
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn known_addresses_show_the_book_with_connection_and_ban_state() {
    init_logs();
    let pool = pool_with(ip(44, 1), Limits::default(), "s44").await;
    let handle = pool.handle();
    let remote = TcpListener::bind(SocketAddr::from((ip(44, 2), 0)))
        .await
        .unwrap();
    let remote_addr = NetAddr::from_socket(remote.local_addr().unwrap());
    let other: NetAddr = "127.0.44.3:8333".parse().unwrap();
    assert!(handle.known_addresses().await.unwrap().is_empty());
    assert_eq!(
        handle
            .add_addresses(vec![remote_addr, other])
            .await
            .unwrap(),
        2
    );
    let book = handle.known_addresses().await.unwrap();
    assert_eq!(book.len(), 2);
    for k in &book {
        assert!(!k.tried && !k.connected && !k.banned, "{k:?}");
        assert_eq!(k.source, k.addr, "added as announced by themselves");
        assert_eq!((k.attempts, k.last_success), (0, None));
    }

    // Connect to one: it is tried and connected once the handshake is done.
    handle.connect(remote_addr).await.unwrap();
    let (stream, _) = within("the pool's dial", remote.accept()).await.unwrap();
    let mut raw = RawPeer::new(stream);
    raw.handshake_as_listener().await;
    let entry = within("the tried entry", async {
        loop {
            let book = handle.known_addresses().await.unwrap();
            if let Some(k) = book
                .iter()
                .find(|k| k.addr == remote_addr && k.tried && k.connected)
            {
                return k.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(entry.last_success.is_some() && entry.last_try.is_some());
    assert_eq!(
        handle.known_addresses().await.unwrap()[0].addr,
        remote_addr,
        "tried first"
    );

    handle
        .ban(Subnet::host(other.host), Duration::from_secs(60))
        .await
        .unwrap();
    let book = handle.known_addresses().await.unwrap();
    assert!(book.iter().any(|k| k.addr == other && k.banned));
    assert!(book.iter().any(|k| k.addr == remote_addr && !k.banned));
    pool.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn closing_is_set_from_the_disconnect_request_until_the_end() {
    let peers = || config(peer_config(), peerpool_net::Listeners::new());
    let (addr, mut accepted) = serve("127.0.45.1:0", peers()).await;
    let peer = Peer::new_outbound(peers(), addr);
    peer.associate_connection(tokio::net::TcpStream::connect(addr).await.unwrap());
    let _theirs = within("accept", accepted.recv()).await.unwrap();
    assert!(!peer.is_closing());
    peer.disconnect();
    // One thread: the connection task has not run since, so the connection is still open.
    assert!(peer.is_closing());
    assert!(peer.disconnect_reason().is_none());
    assert_eq!(
        within("close", peer.wait_for_disconnect()).await,
        DisconnectReason::Requested
    );
    assert!(!peer.is_closing());
}

/// The cost model at work: a session that floods (1 MB messages, each followed by a ping whose
/// pong it waits for) is deprioritized, its messages delayed more and more, and past the hard
/// limit disconnected; a quiet session beside it keeps answering at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_session_is_delayed_then_cut_off_while_a_quiet_one_is_not() {
    init_logs();
    // The default model with a tenth of the limits, so the test takes seconds.
    let limits = Limits {
        soft: 200.0,
        hard: 2_000.0,
        ..Limits::default()
    };
    let pool = pool_with(ip(46, 1), limits, "s46").await;
    let handle = pool.handle();
    let mut events = handle.subscribe();
    let mut quiet = RawPeer::connect_from(ip(46, 2), pool.listening()[0]).await;
    quiet.handshake_as_dialer(MODERN).await;
    let mut flooder = RawPeer::connect_from(ip(46, 3), pool.listening()[0]).await;
    flooder.handshake_as_dialer(MODERN).await;
    let flooder_id = session_where(&handle, ip(46, 3), "the flooder", |s| s.details.joined)
        .await
        .details
        .id;

    let flood = tokio::spawn(async move {
        let payload = vec![0x5a; 1_000_000];
        let mut rtts = Vec::new();
        for nonce in 1u64.. {
            let start = Instant::now();
            flooder.send_frame("flood", &payload).await;
            flooder.send(&NetworkMessage::Ping(nonce)).await;
            loop {
                match flooder.recv().await {
                    Some(NetworkMessage::Pong(n)) if n == nonce => break,
                    Some(_) => {}
                    None => return rtts,
                }
            }
            rtts.push(start.elapsed());
        }
        rtts
    });

    // Meanwhile the quiet session pings, and the sessions are watched.
    let mut quiet_rtts = Vec::new();
    let mut worst_priority = 1;
    let mut nonce = 1_000_000u64;
    while !flood.is_finished() {
        let start = Instant::now();
        quiet.ping_pong(nonce).await;
        quiet_rtts.push(start.elapsed());
        nonce += 1;
        let sessions = handle.sessions().await.unwrap();
        if let Some(f) = sessions.iter().find(|s| s.details.id == flooder_id) {
            worst_priority = worst_priority.max(f.priority);
        }
        let q = sessions
            .iter()
            .find(|s| s.details.id != flooder_id)
            .expect("the quiet session stays");
        assert!(q.cost < limits.soft && q.priority <= 2, "{q:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(quiet_rtts.len() < 2_000, "the flooder was never cut off");
    }
    let flood_rtts = within("the flooder's end", flood).await.unwrap();

    let left = next_event(
        &mut events,
        "the flooder leaving",
        |e| matches!(e, PoolEvent::PeerLeft { id, .. } if *id == flooder_id),
    )
    .await;
    let PoolEvent::PeerLeft { reason, .. } = left else {
        unreachable!()
    };
    assert!(
        matches!(reason, DisconnectReason::ExcessiveCost { limit: 2_000, cost } if cost >= 2_000),
        "{reason}"
    );
    // Deprioritized on the way: past the soft limit's priority (11).
    assert!(worst_priority > 11, "{worst_priority}");
    // Delayed more and more: by the last answered round the session cost over 1,500, so its
    // 1 MB message waited at least (1,500 - 200) / 1,800 x (50 ms + 200 x 2 ms) = 325 ms.
    assert!(flood_rtts.len() >= 5, "{flood_rtts:?}");
    let last = *flood_rtts.last().unwrap();
    assert!(last >= Duration::from_millis(300), "{flood_rtts:?}");
    // The quiet session was never delayed by the cost model: its median stays far below.
    quiet_rtts.sort();
    let median = quiet_rtts[quiet_rtts.len() / 2];
    assert!(
        median * 4 < last,
        "quiet median {median:?}, flooder's last {last:?}"
    );
    // And it is still connected and answering.
    quiet.ping_pong(1).await;
    assert!(handle
        .sessions()
        .await
        .unwrap()
        .iter()
        .all(|s| s.details.id != flooder_id));
    pool.stop().await;
}
