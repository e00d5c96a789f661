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
