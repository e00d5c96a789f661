//! A `peerpool run` daemon killed with SIGKILL keeps what its last save wrote: the address book
//! (`peers.dat`) and the ban list (`banlist.dat`) come back whole on the next start, and no
//! file is ever left half-written, even when the kill lands in the middle of a save.
//!
//! The daemon saves both files at a clean shutdown and every `--save-interval` (default 15
//! minutes, Bitcoin Core's `DUMP_PEERS_INTERVAL`), and the ban list also whenever it changes
//! (at most once a second, as Core writes its ban list on change). The first two tests rely on
//! the save made at a clean shutdown (SIGTERM); the third kills a daemon that saves every
//! second and finds what its last periodic save held; the last kills a daemon two seconds
//! after a `setban` and an automatic ban and finds both after the restart. Everything listens
//! and connects on 127.0.61.0/24 to 127.0.64.0/24, ports chosen by the OS.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use peerpool::core::pool::addrman::AddrMan;
use peerpool::core::pool::banman::BanList;
use peerpool::net::persist;
use peerpool::net::pool::{BANS_FILE, PEERS_FILE};
use peerpool_testkit::daemon::{Binary, Daemon, RunArgs};
use peerpool_testkit::raw::BlockingRawPeer;
use peerpool_testkit::tempdir;

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

/// Longest wait for any one thing a daemon does.
const WITHIN: Duration = Duration::from_secs(30);

/// Kind tags of the two snapshot files (see the layout in `peerpool::net::persist`).
const PEERS_KIND: &str = "peers";
const BANS_KIND: &str = "banlist";

/// The arguments of a regtest daemon on `listen` with its data in `dir`.
fn run_args(dir: &Path, listen: &str, seeds: &[String]) -> RunArgs {
    let mut args = RunArgs::regtest(dir)
        .no_dnsseed()
        .args(["--target-outbound", "2", "--ban-threshold", "30"])
        .listen(listen)
        // Ports chosen by the OS for the RPC listener; no admin listener. Their defaults
        // are fixed ports, which two daemons at once cannot share.
        .rpc_on_any_port()
        .no_admin()
        // Saves are logged at debug level: the tests tell from the log whether one happened.
        .args(["--log-level", "info,peerpool_net::pool::driver=debug"]);
    for s in seeds {
        args = args.args(["--seednode", s.as_str()]);
    }
    args
}

/// What the two files in a chain directory hold, checked the way the daemon checks them.
#[derive(Debug, PartialEq, Eq)]
struct OnDisk {
    /// Payload of `peers.dat`.
    peers: Vec<u8>,
    /// Payload of `banlist.dat`.
    bans: Vec<u8>,
    /// The banned subnets, decoded.
    banned: BTreeSet<String>,
}

/// Reads both files; panics (failing the test) if either is missing, damaged or undecodable.
fn on_disk(chain_dir: &Path) -> OnDisk {
    let load = |name: &str, kind: &str| -> Vec<u8> {
        match persist::load(&chain_dir.join(name), kind) {
            Ok(Some(payload)) => payload,
            Ok(None) => panic!("{name} missing in {}", chain_dir.display()),
            Err(e) => panic!("{name} in {} is damaged: {e}", chain_dir.display()),
        }
    };
    let peers = load(PEERS_FILE, PEERS_KIND);
    let bans = load(BANS_FILE, BANS_KIND);
    // The book's own decoder checks its structure and checksum (local entries are dropped
    // under the default configuration, which is fine: only validity is asked here).
    if let Err(e) = AddrMan::deserialize(&peers) {
        panic!("{PEERS_FILE} does not decode: {e}");
    }
    let banned = BanList::decode(&bans)
        .unwrap_or_else(|e| panic!("{BANS_FILE} does not decode: {e}"))
        .iter()
        .map(|b| b.subnet.to_string())
        .collect();
    OnDisk {
        peers,
        bans,
        banned,
    }
}

/// The subnets in the saved ban list, none while there is no whole one yet (files are
/// replaced by a rename, so a file read is always one save's).
fn saved_bans(chain_dir: &Path) -> BTreeSet<String> {
    match persist::load(&chain_dir.join(BANS_FILE), BANS_KIND) {
        Ok(Some(bytes)) => BanList::decode(&bytes)
            .map(|list| list.iter().map(|b| b.subnet.to_string()).collect())
            .unwrap_or_default(),
        _ => BTreeSet::new(),
    }
}

/// Files a crash may have left that are not snapshots: set-aside damaged files (`.corrupt-`)
/// must never appear; stray temporary files (`.NAME.XXXXXX.tmp`) are harmless and ignored.
fn corrupt_files(chain_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(chain_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().contains(".corrupt-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The number in a line such as "loaded 12 addresses from ...".
fn count_in(line: &str, before: &str) -> usize {
    line.split(before)
        .next()
        .and_then(|head| head.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {before:?} in {line:?}"))
}

/// No line of `d` reports a file that could not be loaded.
fn assert_nothing_refused(d: &mut Daemon) {
    d.count(&[]);
    let bad: Vec<&String> = d
        .seen
        .iter()
        .filter(|l| l.contains("not loaded") || l.contains("corrupt"))
        .collect();
    assert!(bad.is_empty(), "a saved file was refused: {bad:?}");
}

#[test]
fn daemon_killed_mid_run_restarts_with_its_last_save() {
    let dir = tempdir!("kill9");
    let chain_dir = dir.join("regtest");

    // B is a peer for A to connect to, so that A's book holds an address that worked.
    let b_dir = tempdir!("kill9-b");
    let mut b = PEERPOOL.start(run_args(&b_dir, "127.0.61.2:0", &[]));
    let b_addr = b.listening(WITHIN);

    // Run 1: A learns B and three addresses where nobody listens, bans a misbehaving client,
    // and stops cleanly: this shutdown writes the last save.
    let seeds = vec![
        b_addr.to_string(),
        "127.0.61.50:1".into(),
        "127.0.61.51:1".into(),
        "127.0.61.52:1".into(),
    ];
    let mut a = PEERPOOL.start(run_args(&dir, "127.0.61.1:0", &seeds));
    let a_addr = a.listening(WITHIN);
    a.expect(&["peer joined", "outbound-full-relay"], WITHIN);
    a.get_banned(Ipv4Addr::new(127, 0, 61, 9), a_addr);
    assert!(a.terminate().success(), "run 1 did not stop cleanly");
    let kept = a.expect(&["pool stopped", "addresses"], WITHIN);
    // The save is visible in the log, so that run 2 below can tell whether it saved.
    assert!(
        a.count(&["address book and bans saved"]) > 0,
        "no save logged at shutdown"
    );
    let saved_addresses = count_in(&kept, " addresses");
    assert!(
        saved_addresses >= seeds.len(),
        "the book should hold at least the {} seeds: {kept}",
        seeds.len()
    );
    let saved = on_disk(&chain_dir);
    assert!(
        saved.banned.contains("127.0.61.9/32"),
        "the ban was not saved: {:?}",
        saved.banned
    );

    // Run 2: A starts from its files, reconnects to B, bans a second client, and is killed
    // with SIGKILL while running: no shutdown, no save.
    let mut a = PEERPOOL.start(run_args(&dir, &a_addr.to_string(), &[]));
    let loaded = a.expect(&["loaded", "addresses from"], WITHIN);
    assert_eq!(count_in(&loaded, " addresses"), saved_addresses, "{loaded}");
    a.expect(&["loaded 1 bans"], WITHIN);
    a.expect(&["peer joined", "outbound-full-relay"], WITHIN);
    a.get_banned(Ipv4Addr::new(127, 0, 61, 10), a_addr);
    a.kill_9();
    assert_nothing_refused(&mut a);
    let saved_in_run_2 = a.count(&["bans saved"]) > 0;

    // The files are whole, and they hold the last save: run 1's, unless run 2 saved too (not
    // on the 15-minute interval, but the ban list is written when it changes), in which case
    // they hold at least what run 1 saved.
    let after = on_disk(&chain_dir);
    if saved_in_run_2 {
        assert!(
            after.banned.is_superset(&saved.banned),
            "bans lost: {:?} then {:?}",
            saved.banned,
            after.banned
        );
    } else {
        assert_eq!(after, saved, "the files changed without a save");
    }
    assert!(corrupt_files(&chain_dir).is_empty());

    // Run 3: the book and the bans of the last save are back, and the ban is enforced.
    let mut a = PEERPOOL.start(run_args(&dir, &a_addr.to_string(), &[]));
    let loaded = a.expect(&["loaded", "addresses from"], WITHIN);
    let addresses = count_in(&loaded, " addresses");
    if saved_in_run_2 {
        assert!(addresses >= 1, "{loaded}");
    } else {
        assert_eq!(addresses, saved_addresses, "{loaded}");
    }
    let bans = a.expect(&["loaded", "bans from"], WITHIN);
    assert_eq!(count_in(&bans, " bans"), after.banned.len(), "{bans}");
    a.expect(&["peer joined", "outbound-full-relay"], WITHIN);
    let mut raw = BlockingRawPeer::connect_from(Ipv4Addr::new(127, 0, 61, 9), a_addr).unwrap();
    assert!(
        raw.read_to_close().is_empty(),
        "the banned address was let in after the restart"
    );
    assert_nothing_refused(&mut a);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

#[test]
fn sigkill_during_the_shutdown_save_never_leaves_a_damaged_file() {
    let dir = tempdir!("kill9-save");
    let chain_dir = dir.join("regtest");
    let seeds: Vec<String> = (0..20).map(|i| format!("127.0.62.{}:1", 100 + i)).collect();

    // A first clean run writes both files, with a ban in them.
    let mut d = PEERPOOL.start(run_args(&dir, "127.0.62.1:0", &seeds));
    let addr = d.listening(WITHIN);
    d.get_banned(Ipv4Addr::new(127, 0, 62, 9), addr);
    assert!(d.terminate().success());
    let first = on_disk(&chain_dir);
    assert!(first.banned.contains("127.0.62.9/32"));

    // Then again and again: start from the files, ask for a clean stop (whose last step is
    // writing both files: temporary file, fsync, rename) and SIGKILL the daemon a little
    // later, at a different moment each time. The delays vary where the kill lands; what is
    // checked does not depend on where that is.
    let mut landed_after_save = 0;
    let delays_us: [u64; 16] = [
        0, 500, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 12_000, 15_000, 20_000,
        25_000, 30_000, 40_000,
    ];
    for (round, delay_us) in delays_us.into_iter().enumerate() {
        let mut d = PEERPOOL.start(run_args(&dir, &addr.to_string(), &[]));
        d.expect(&["loaded 1 bans"], WITHIN);
        d.listening(WITHIN);
        let pid = d.child.id().to_string();
        let term = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(term.is_ok_and(|s| s.success()), "sending SIGTERM");
        std::thread::sleep(Duration::from_micros(delay_us));
        d.kill_9();
        // The killed process's pipe is closed: this returns as soon as its last line is read.
        let stopped = d.expect_until(&["pool stopped"], Instant::now() + WITHIN);
        if stopped.is_some() {
            landed_after_save += 1;
        }
        assert_nothing_refused(&mut d);
        // Whatever the moment, each file is a whole snapshot holding the saved state.
        let now = on_disk(&chain_dir);
        assert!(
            now.banned.contains("127.0.62.9/32"),
            "round {round}: the ban is gone"
        );
        assert!(
            corrupt_files(&chain_dir).is_empty(),
            "round {round}: a file was set aside as corrupt"
        );
    }
    eprintln!(
        "{landed_after_save} of {} kills landed after the save had finished",
        delays_us.len()
    );

    // A last start loads both files without complaint.
    let deadline = Instant::now() + WITHIN;
    let mut d = PEERPOOL.start(run_args(&dir, &addr.to_string(), &[]));
    assert!(d.expect_until(&["loaded 1 bans"], deadline).is_some());
    d.listening(WITHIN);
    assert_nothing_refused(&mut d);
    assert!(d.terminate().success());
}

#[test]
fn a_killed_daemon_loses_at_most_the_last_save_interval() {
    let dir = tempdir!("kill9-interval");
    let chain_dir = dir.join("regtest");
    let args =
        run_args(&dir, "127.0.63.1:0", &["127.0.63.50:1".into()]).args(["--save-interval", "1"]);
    let mut a = PEERPOOL.start(args);
    let a_addr = a.listening(WITHIN);
    // A ban made mid-run, never followed by a shutdown.
    a.get_banned(Ipv4Addr::new(127, 0, 63, 9), a_addr);
    // A save logged after the ban may have taken its snapshot before it (the snapshot is
    // taken on the driver, the files written and the line logged later): watch the files,
    // until a periodic save has written the book too.
    let deadline = Instant::now() + WITHIN;
    while !saved_bans(&chain_dir).contains("127.0.63.9/32") || !chain_dir.join(PEERS_FILE).exists()
    {
        assert!(
            Instant::now() < deadline,
            "no save within {WITHIN:?} of the ban"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kill_9();
    assert_nothing_refused(&mut a);
    let after = on_disk(&chain_dir);
    assert!(
        after.banned.contains("127.0.63.9/32"),
        "the periodic save did not keep the ban: {:?}",
        after.banned
    );
    assert!(corrupt_files(&chain_dir).is_empty());

    // The restarted daemon enforces it.
    let mut a = PEERPOOL.start(run_args(&dir, &a_addr.to_string(), &[]));
    a.expect(&["loaded 1 bans"], WITHIN);
    a.listening(WITHIN);
    let mut raw = BlockingRawPeer::connect_from(Ipv4Addr::new(127, 0, 63, 9), a_addr).unwrap();
    assert!(
        raw.read_to_close().is_empty(),
        "the banned address was let in after the restart"
    );
    assert!(a.terminate().success());
}

#[test]
fn bans_survive_a_sigkill_two_seconds_after_they_are_made() {
    let dir = tempdir!("kill9-bans");
    let chain_dir = dir.join("regtest");
    // The default save interval (15 minutes): no periodic save happens during the test, only
    // the writes of a changed ban list.
    let mut a = PEERPOOL.start(run_args(&dir, "127.0.64.1:0", &[]));
    let a_addr = a.listening(WITHIN);
    let rpc = a.rpc_addr(WITHIN);
    // One ban by the operator...
    let (code, out, err) = PEERPOOL.rpc_cli(&dir, &rpc, &["setban", "10.64.0.0/16", "add"]);
    assert_eq!(code, 0, "setban failed: {out}{err}");
    // ...and one by the pool, for misbehaviour.
    a.get_banned(Ipv4Addr::new(127, 0, 64, 9), a_addr);
    std::thread::sleep(Duration::from_secs(2));
    a.kill_9();
    assert_nothing_refused(&mut a);
    assert!(
        a.count(&["address book and bans saved"]) == 0,
        "a periodic or shutdown save happened: the test proves nothing"
    );
    let saved = saved_bans(&chain_dir);
    let both: BTreeSet<String> = ["10.64.0.0/16", "127.0.64.9/32"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(saved, both, "bans on disk after the kill");
    assert!(corrupt_files(&chain_dir).is_empty());

    // After the restart both are back and enforced.
    let mut a = PEERPOOL.start(run_args(&dir, &a_addr.to_string(), &[]));
    a.expect(&["loaded 2 bans"], WITHIN);
    a.listening(WITHIN);
    let rpc = a.rpc_addr(WITHIN);
    let (code, listed, _) = PEERPOOL.rpc_cli(&dir, &rpc, &["listbanned"]);
    assert_eq!(code, 0);
    for subnet in &both {
        assert!(listed.contains(subnet.as_str()), "{subnet} in {listed}");
    }
    let mut raw = BlockingRawPeer::connect_from(Ipv4Addr::new(127, 0, 64, 9), a_addr).unwrap();
    assert!(
        raw.read_to_close().is_empty(),
        "the banned address was let in after the restart"
    );
    assert_nothing_refused(&mut a);
    assert!(a.terminate().success());
}
