//! `--rpc-allow-ip`: bad subnets and a listener that only loopback clients could use are
//! refused at start with a clear message; a good setting starts and serves loopback clients.

use std::time::Duration;

use peerpool_testkit::daemon::{Binary, RunArgs};
use peerpool_testkit::tempdir;

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

#[test]
fn bad_allow_settings_fail_clearly() {
    let dir = tempdir!("rpc-allow-bad");
    for (args, needle) in [
        (
            &["--rpc-allow-ip", "10.0.0.0/33"][..],
            "invalid --rpc-allow-ip \"10.0.0.0/33\"",
        ),
        (
            &["--rpc-allow-ip", "not-an-ip"][..],
            "valid values are a single IP",
        ),
        (
            &["--rpc-allow-ip", "10.0.0.0/255.0.255.0"][..],
            "invalid --rpc-allow-ip",
        ),
        (
            &[
                "--rpc-allow-ip",
                "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion",
            ][..],
            "over IP only",
        ),
        // Nothing is bound: the check comes first.
        (&["--rpc-bind", "0.0.0.0:0"][..], "not a loopback address"),
        (&["--rpc-bind", "[::]:0"][..], "--rpc-allow-ip SUBNET"),
    ] {
        let (ok, err) = PEERPOOL.run_regtest_to_end(&dir, args);
        assert!(!ok, "{args:?} started");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let config = dir.join("bad.toml");
    std::fs::write(&config, "rpc-allow-ip = [\"300.1.1.1\"]\n").unwrap();
    let (ok, err) = PEERPOOL.run_regtest_to_end(&dir, &["--config", config.to_str().unwrap()]);
    assert!(
        !ok && err.contains("invalid --rpc-allow-ip \"300.1.1.1\""),
        "{err}"
    );
    std::fs::write(&config, "rpc-allow-ip = \"10.0.0.0/8\"\n").unwrap();
    let (ok, err) = PEERPOOL.run_regtest_to_end(&dir, &["--config", config.to_str().unwrap()]);
    assert!(!ok && err.contains("rpc-allow-ip"), "{err}");
}

#[test]
fn allowed_subnets_from_flags_and_file_start_and_loopback_is_served() {
    let dir = tempdir!("rpc-allow-ok");
    let config = dir.join("peerpool.toml");
    std::fs::write(&config, "rpc-allow-ip = [\"192.168.0.0/255.255.0.0\"]\n").unwrap();
    let mut node = PEERPOOL.start(
        RunArgs::regtest(&dir)
            .no_dnsseed()
            .args(["--config", config.to_str().unwrap()])
            .listen("127.0.0.1:0")
            .no_admin()
            .rpc_on_any_port()
            .args(["--rpc-allow-ip", "10.0.0.0/8"]),
    );
    let addr = node.rpc_addr(Duration::from_secs(30));
    let (code, stdout, stderr) = PEERPOOL.rpc_cli(&dir, &addr, &["uptime"]);
    assert_eq!(code, 0, "{stderr}");
    let uptime: u64 = stdout.trim().parse().unwrap();
    assert!(uptime < 600);
}
