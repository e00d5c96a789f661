//! The daemon under attack from its own machine: every test attacks a real `peerpool run`
//! through its sockets, files or process, then checks that it still serves P2P, RPC and admin
//! and that its memory stayed within a generous budget.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use peerpool_testkit::daemon::{Binary, Daemon, Doors, RunArgs};
use peerpool_testkit::{eventually, tempdir, WAIT};

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

/// RSS a daemon under these tests must stay below: a regtest daemon idles at about 15 MB,
/// the attacks here are small, and the budget only catches growth without bound.
const RSS_BUDGET: u64 = 256 << 20;

/// A regtest daemon on `listen` with its node RPC and admin listener on ports from the OS,
/// `extra` flags appended; its doors.
fn daemon(dir: &Path, listen: &str, extra: &[&str]) -> (Daemon, Doors) {
    let mut d = PEERPOOL.start(
        RunArgs::regtest(dir)
            .listen(listen)
            .no_dnsseed()
            .rpc_on_any_port()
            .admin_on_any_port()
            .args(extra.iter().copied()),
    );
    let doors = d.doors(dir);
    (d, doors)
}

/// Still serving every door, and within the memory budget.
fn still_serving(d: &Daemon, doors: &Doors, from: Ipv4Addr) {
    doors.all_serve(from);
    let rss = d.rss();
    assert!(rss > 0 && rss < RSS_BUDGET, "RSS {rss} B");
}

/// Waits up to [`WAIT`] for the process to exit on its own; its status.
fn exit_of(d: &mut Daemon) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = d.child.try_wait().expect("waiting for the daemon") {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ----- item 7: one daemon per data directory ---------------------------------------------------

#[test]
fn a_second_daemon_on_one_data_directory_is_refused_naming_the_first() {
    let dir = tempdir!("lock");
    let (mut first, doors) = daemon(&dir, "127.0.120.1:0", &[]);
    let cookie = doors.cookie();
    let mut second = PEERPOOL.start(
        RunArgs::regtest(&dir)
            .listen("127.0.120.2:0")
            .no_dnsseed()
            .rpc_on_any_port()
            .admin_on_any_port(),
    );
    let status = exit_of(&mut second);
    assert!(!status.success());
    let line = second.expect(&["in use by another peerpool"], WAIT);
    assert!(
        line.contains(&format!("process {}", first.child.id())),
        "{line}"
    );
    // The first one's cookie and files are untouched.
    assert_eq!(doors.cookie(), cookie);
    still_serving(&first, &doors, Ipv4Addr::new(127, 0, 120, 10));
    assert!(first.terminate().success());
}

// ----- item 8: snapshot files that are not files --------------------------------------------

#[test]
fn special_and_oversized_snapshot_files_are_set_aside_and_the_daemon_starts_empty() {
    let dir = tempdir!("special-files");
    let chain = dir.join("regtest");
    std::fs::create_dir_all(&chain).unwrap();
    // A FIFO nobody writes to would hang a plain open; /dev/zero never ends.
    let made = std::process::Command::new("mkfifo")
        .arg(chain.join("peers.dat"))
        .status()
        .expect("running mkfifo");
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", chain.join("banlist.dat")).unwrap();
    let (mut d, doors) = daemon(&dir, "127.0.121.1:0", &[]);
    // Logged before the listeners, which `doors` waited for.
    assert_eq!(
        d.count(&["address book not loaded", "a FIFO", "moved aside"]),
        1
    );
    assert_eq!(
        d.count(&["ban list not loaded", "a device", "moved aside"]),
        1
    );
    still_serving(&d, &doors, Ipv4Addr::new(127, 0, 121, 10));
    // SIGTERM is heard: nothing hangs on the FIFO.
    assert!(d.terminate().success());

    // A 1 GB file (sparse: no disk used) is judged by its size, never read.
    let dir = tempdir!("oversized-file");
    let chain = dir.join("regtest");
    std::fs::create_dir_all(&chain).unwrap();
    let f = std::fs::File::create(chain.join("peers.dat")).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let (mut d, doors) = daemon(&dir, "127.0.121.2:0", &[]);
    assert_eq!(
        d.count(&["address book not loaded", "more than a snapshot"]),
        1
    );
    still_serving(&d, &doors, Ipv4Addr::new(127, 0, 121, 11));
    let aside = std::fs::read_dir(&chain)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("peers.dat.corrupt-")
        });
    assert!(aside, "the oversized file was not set aside");
    assert!(d.terminate().success());
}

// ----- item 9: panics and durations ---------------------------------------------------------

#[test]
fn a_task_panic_stops_the_daemon_with_a_reason_and_a_failure_exit() {
    let dir = tempdir!("panic");
    let mut d = PEERPOOL.start_with_env(
        RunArgs::regtest(&dir)
            .listen("127.0.122.1:0")
            .no_dnsseed()
            .rpc_on_any_port()
            .admin_on_any_port(),
        &[("PEERPOOL_TEST_PANIC", "1")],
    );
    let status = exit_of(&mut d);
    assert!(!status.success(), "{status}");
    d.expect(
        &["panic in thread", "PEERPOOL_TEST_PANIC", "stopping"],
        WAIT,
    );
    d.expect(&["stopped after a panic"], WAIT);

    // The overflow that once panicked the pool task is refused before anything starts.
    let (ok, stderr) =
        PEERPOOL.run_regtest_to_end(&dir, &["--save-interval", "18446744073709551615"]);
    assert!(!ok);
    assert!(
        stderr.contains("--save-interval") && stderr.contains("30 days"),
        "{stderr}"
    );

    // And a daemon without the hook serves on.
    let (d, doors) = daemon(&dir, "127.0.122.2:0", &["--save-interval", "2592000"]);
    still_serving(&d, &doors, Ipv4Addr::new(127, 0, 122, 10));
}

// ----- item 10: the log file has a cap --------------------------------------------------------

#[test]
fn debug_log_rotates_at_its_cap_and_keeps_n_files() {
    let dir = tempdir!("log-cap");
    let (mut d, doors) = daemon(
        &dir,
        "127.0.123.1:0",
        &[
            "--log-max-size",
            "8K",
            "--log-keep",
            "2",
            "--log-level",
            "debug",
        ],
    );
    let log = doors.chain_dir.join("debug.log");
    let numbered = |n: u32| doors.chain_dir.join(format!("debug.log.{n}"));
    // Connections write a few hundred bytes each at info, more at debug.
    eventually("two rotations", || {
        doors.p2p_serves(Ipv4Addr::new(127, 0, 123, 10));
        numbered(2).exists().then_some(())
    });
    for _ in 0..5 {
        doors.p2p_serves(Ipv4Addr::new(127, 0, 123, 11));
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    // One line may overshoot the cap when it is longer than the room left.
    assert!(size(&log) <= 8 * 1024 + 4096, "{}", size(&log));
    assert!(size(&numbered(1)) <= 8 * 1024 + 4096);
    assert!(!numbered(3).exists(), "more than two old files kept");
    still_serving(&d, &doors, Ipv4Addr::new(127, 0, 123, 12));
    assert!(d.terminate().success());
}

// ----- item 1: web pages and other protocols --------------------------------------------------

/// What a web page's `fetch` or form sends to a loopback port: an HTTP POST, a JSON body.
fn browser_post(port_addr: std::net::SocketAddr, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(port_addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let post = format!(
        "POST / HTTP/1.1\r\nHost: {port_addr}\r\nOrigin: https://attacker.example\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}\n",
        body.len() + 1
    );
    s.write_all(post.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn a_web_page_can_change_nothing_through_the_admin_port_or_the_node_rpc() {
    let dir = tempdir!("browser");
    let (mut d, doors) = daemon(&dir, "127.0.124.1:0", &[]);
    let mut peer = peerpool_testkit::raw::BlockingRawPeer::connect_from(
        Ipv4Addr::new(127, 0, 124, 10),
        doors.p2p,
    )
    .unwrap();
    peer.handshake();
    d.expect(&["peer joined", "127.0.124.10"], WAIT);
    let count = || {
        let (_, body) = doors.rpc_post(
            r#"{"method":"getconnectioncount","id":1}"#,
            &["Content-Type: application/json"],
        );
        body
    };
    assert!(count().contains(r#""result":1"#), "{}", count());

    // The admin port closes at the request line: the body is never run.
    let answer = browser_post(
        doors.admin,
        r#"{"jsonrpc":"2.0","id":1,"method":"disconnect","params":{"session_ids":["all"]}}"#,
    );
    assert_eq!(answer.lines().count(), 1, "{answer}");
    assert!(answer.contains("-32700"), "{answer}");
    // The node RPC refuses anything a browser sends, credentials or not.
    let answer = browser_post(
        doors.rpc,
        r#"{"method":"disconnectnode","params":["127.0.124.10:1"]}"#,
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // A state change sent as text (no browser markers) needs JSON's content type; a reading
    // call does not (Bitcoin Core's documented curl examples send text/plain).
    let (status, body) =
        doors.rpc_post(r#"{"method":"stop","id":1}"#, &["Content-Type: text/plain"]);
    assert!(status.contains("400"), "{status} {body}");
    assert!(body.contains("application/json"), "{body}");
    let (status, _) = doors.rpc_post(
        r#"{"method":"uptime","id":1}"#,
        &["Content-Type: text/plain"],
    );
    assert!(status.contains("200"), "{status}");
    // Another host name (DNS rebinding) is refused.
    let (status, _) = doors.rpc_post(
        r#"{"method":"uptime","id":1}"#,
        &["Host: rebind.attacker.example"],
    );
    assert!(status.contains("403"), "{status}");

    assert!(
        count().contains(r#""result":1"#),
        "the peer was disconnected"
    );
    still_serving(&d, &doors, Ipv4Addr::new(127, 0, 124, 11));
}

#[test]
fn admin_auth_takes_the_node_rpc_credentials_and_the_clients_send_the_cookie() {
    let dir = tempdir!("admin-auth");
    let (d, doors) = daemon(&dir, "127.0.125.1:0", &["--admin-auth"]);
    // Without auth: refused and closed.
    {
        use std::io::{BufRead, BufReader, Write};
        let s = std::net::TcpStream::connect(doors.admin).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getinfo\"}\n")
            .unwrap();
        let mut lines = BufReader::new(s).lines();
        let answer = lines.next().unwrap().unwrap();
        assert!(answer.contains("authenticate first"), "{answer}");
        assert!(lines.next().is_none(), "still open");
    }
    // Wrong credentials: refused, counted in /metrics.
    let wrong = doors.admin_lines_as("__cookie__", "guess", &[]);
    assert!(wrong[0].contains("wrong credentials"), "{wrong:?}");
    let (_, metrics) = doors.rpc_get("/metrics");
    assert!(
        metrics.contains("peerpool_auth_failures_total 1"),
        "{metrics}"
    );
    // `peerpool admin` and `peerpool events` read the cookie from the data directory.
    let port = doors.admin.port().to_string();
    let out = PEERPOOL
        .command()
        .args(["admin", "--network", "regtest", "--datadir"])
        .arg(&dir)
        .args(["--port", &port, "getinfo"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("regtest"));
    let mut events = PEERPOOL
        .command()
        .args(["events", "--network", "regtest", "--datadir"])
        .arg(&dir)
        .args(["--port", &port])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(events.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(first.starts_with("subscribed"), "{first}");
    let _ = events.kill();
    let _ = events.wait();
    still_serving(&d, &doors, Ipv4Addr::new(127, 0, 125, 10));
}

// ----- items 2 and 6: batches, and connection slots -------------------------------------------

#[test]
fn idle_connections_hold_no_slot_the_operator_needs_and_batches_are_bounded() {
    let dir = tempdir!("slots");
    let (d, doors) = daemon(&dir, "127.0.126.1:0", &[]);
    // More idle connections than either listener serves.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(std::net::TcpStream::connect(doors.rpc).unwrap());
    }
    for _ in 0..100 {
        idle.push(std::net::TcpStream::connect(doors.admin).unwrap());
    }
    // A batch past the bound is refused whole, without running.
    let big = format!(
        "[{}]",
        vec![r#"{"method":"getnodeaddresses","params":[0],"id":1}"#; 1001].join(",")
    );
    let (status, body) = doors.rpc_post(&big, &["Content-Type: application/json"]);
    assert!(status.contains("400"), "{status}");
    assert!(body.contains("at most 1000"), "{body}");
    still_serving(&d, &doors, Ipv4Addr::new(127, 0, 126, 10));
    drop(idle);
}

// ----- items 4 and 5: peers that announce much and send little, peers that do not read --------

#[test]
fn trickled_payloads_and_slow_readers_cost_what_they_send_not_what_they_announce() {
    use std::io::Write;
    let dir = tempdir!("peer-memory");
    let (d, doors) = daemon(
        &dir,
        "127.0.127.1:0",
        &[
            "--whitelist",
            "noban@127.0.0.0/8",
            "--max-connections",
            "125",
        ],
    );
    let baseline = d.rss();
    // Sixty peers announce the largest payload (4 MB) and send 1 KB of it.
    let mut trickling = Vec::new();
    for i in 0..60u8 {
        let mut p = peerpool_testkit::raw::BlockingRawPeer::connect_from(
            Ipv4Addr::new(127, 0, 127, 10 + i),
            doors.p2p,
        )
        .unwrap();
        p.handshake();
        let mut header = peerpool_testkit::raw::frame_bytes("block", &[]);
        header[16..20].copy_from_slice(&4_000_000u32.to_le_bytes());
        p.stream.write_all(&header).unwrap();
        p.stream.write_all(&[0u8; 1024]).unwrap();
        trickling.push(p);
    }
    // Four peers ask for pongs as fast as they can and never read them.
    let pinger = |i: u8| {
        let p2p = doors.p2p;
        std::thread::spawn(move || {
            let mut p = peerpool_testkit::raw::BlockingRawPeer::connect_from(
                Ipv4Addr::new(127, 0, 127, 100 + i),
                p2p,
            )
            .unwrap();
            p.handshake();
            p.stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let ping = peerpool_testkit::raw::frame_bytes("ping", &7u64.to_le_bytes());
            let burst = ping.repeat(1000);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                if p.stream.write_all(&burst).is_err() {
                    break;
                }
            }
            p
        })
    };
    let pingers: Vec<_> = (0..4).map(pinger).collect();
    let pingers: Vec<_> = pingers.into_iter().map(|h| h.join().unwrap()).collect();
    let grown = d.rss().saturating_sub(baseline);
    // Before, the sixty announcements alone reserved 240 MB.
    assert!(grown < 96 << 20, "RSS grew by {grown} B");
    still_serving(&d, &doors, Ipv4Addr::new(127, 0, 127, 200));
    drop((trickling, pingers));
}
