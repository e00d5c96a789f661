//! A peer that completes the handshake and then never reads again must cost bounded memory:
//! the application keeps queueing large messages, the peer is disconnected for not draining its
//! send queue, and the process does not grow with what was queued.
//!
//! Memory is measured on the whole process, so this file holds a single test: nothing else
//! runs beside it in this binary.

use std::sync::Arc;

use peerpool_net::{Config, DisconnectReason, Listeners, Peer};
use peerpool_testkit::peer::{peer_config, serve};
use peerpool_testkit::raw::{unknown, RawPeer, MODERN};
use peerpool_testkit::{init_logs, within};
use tokio::sync::oneshot;

const MB: usize = 1 << 20;

/// Messages the application tries to send: 256 MB in all, far more than a bounded queue holds.
const MESSAGES: usize = 256;

/// Allowed growth of the process's peak resident memory over its size before queueing: the
/// default 8 MB send buffer, a message being encoded, the application's own message, and
/// room for allocator slack. What was queued in all (256 MB) is far above it.
const HEADROOM: usize = 40 * MB;

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"));
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

/// Resets the peak resident size (VmHWM) to the current one, so each round measures its own
/// peak. Returns false where the kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Handshakes a raw client with a fresh server, then stops reading from it for good.
async fn stalled_peer(config: Arc<Config>) -> (RawPeer, Peer) {
    let (addr, mut accepted) = serve("127.0.0.1:0", config).await;
    let mut raw = RawPeer::connect(addr).await;
    let peer = within("accept", accepted.recv()).await.unwrap();
    raw.handshake_as_dialer(MODERN).await;
    assert!(peer.is_ready());
    (raw, peer)
}

/// Queues up to [`MESSAGES`] one-megabyte messages, stopping once the peer is gone; with
/// `polite`, yields to the runtime between messages as an application task normally does.
/// Returns how many were queued and their completion notices.
async fn flood(peer: &Peer, polite: bool) -> (usize, Vec<oneshot::Receiver<()>>) {
    let mut notices = Vec::new();
    let mut queued = 0;
    for i in 0..MESSAGES {
        if !peer.connected() {
            break;
        }
        let (d, r) = oneshot::channel();
        peer.queue_message(unknown("bulk", vec![i as u8; MB]), Some(d));
        notices.push(r);
        queued += 1;
        if polite {
            tokio::task::yield_now().await;
        }
    }
    (queued, notices)
}

async fn round(config: &Arc<Config>, polite: bool) {
    let (raw, peer) = stalled_peer(Arc::clone(config)).await;
    let peak_measured = reset_peak();
    let before = status_bytes("VmRSS:");
    let (queued, notices) = flood(&peer, polite).await;
    let reason = within("disconnect", peer.wait_for_disconnect()).await;
    let peak = if peak_measured {
        status_bytes("VmHWM:")
    } else {
        status_bytes("VmRSS:")
    };
    eprintln!(
        "polite={polite}: queued {queued} MB, rss before {} MB, peak {} MB, reason {reason}",
        before / MB,
        peak / MB
    );
    let DisconnectReason::SendQueueFull { queued: backlog } = reason else {
        panic!("expected SendQueueFull, got {reason:?}");
    };
    assert!(backlog > config.max_send_buffer, "{backlog}");
    assert!(
        peak < before + HEADROOM,
        "memory grew from {} MB to a peak of {} MB while queueing to a stalled peer",
        before / MB,
        peak / MB
    );
    // Whatever was written before the end resolved; the rest was dropped, none hangs.
    let mut written = 0;
    for n in notices {
        if within("notice", n).await.is_ok() {
            written += 1;
        }
    }
    assert!(written < queued, "all {queued} messages reported written");
    // Nothing is queued for a finished peer.
    let (d, r) = oneshot::channel();
    peer.queue_message(unknown("late", vec![0; 10]), Some(d));
    assert!(r.await.is_err());
    drop(raw);
}

/// Runs `f` on a fresh runtime: multi-threaded with two workers, or single-threaded (where
/// a tight loop in the application gives the connection task no turn at all until it ends).
fn on_runtime<F: std::future::Future>(multi_thread: bool, f: F) -> F::Output {
    let rt = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    rt.expect("test runtime").block_on(f)
}

#[test]
fn stalled_reader_is_disconnected_and_memory_stays_bounded() {
    init_logs();
    let config = Arc::new(Config::from_peer_config(peer_config()).with_listeners(Listeners::new()));
    // An application task that yields between messages, one that queues in a tight loop while
    // the connection task runs on another worker, and one that queues in a tight loop on the
    // only thread there is: everything it queues lands before the connection task can act.
    on_runtime(true, round(&config, true));
    on_runtime(true, round(&config, false));
    on_runtime(false, round(&config, false));
}
