//! `--rpc-allow-ip`: bad subnets and a listener that only loopback clients could use are
//! refused at start with a clear message; a good setting starts and serves loopback clients.

mod daemon;

use std::time::Duration;

use daemon::{peerpool, run_regtest_to_end, tempdir, Daemon};

#[test]
fn bad_allow_settings_fail_clearly() {
    let dir = tempdir("rpc-allow-bad");
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
        let (ok, err) = run_regtest_to_end(&dir, args);
        assert!(!ok, "{args:?} started");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let config = dir.join("bad.toml");
    std::fs::write(&config, "rpc-allow-ip = [\"300.1.1.1\"]\n").unwrap();
    let (ok, err) = run_regtest_to_end(&dir, &["--config", config.to_str().unwrap()]);
    assert!(
        !ok && err.contains("invalid --rpc-allow-ip \"300.1.1.1\""),
        "{err}"
    );
    std::fs::write(&config, "rpc-allow-ip = \"10.0.0.0/8\"\n").unwrap();
    let (ok, err) = run_regtest_to_end(&dir, &["--config", config.to_str().unwrap()]);
    assert!(!ok && err.contains("rpc-allow-ip"), "{err}");
}

#[test]
fn allowed_subnets_from_flags_and_file_start_and_loopback_is_served() {
    let dir = tempdir("rpc-allow-ok");
    let config = dir.join("peerpool.toml");
    std::fs::write(&config, "rpc-allow-ip = [\"192.168.0.0/255.255.0.0\"]\n").unwrap();
    let mut node = Daemon::start(&[
        "run",
        "--network",
        "regtest",
        "--no-dnsseed",
        "--datadir",
        dir.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-admin",
        "--rpc-bind",
        "127.0.0.1:0",
        "--rpc-allow-ip",
        "10.0.0.0/8",
    ]);
    let line = node.expect(&["RPC server listening on"], Duration::from_secs(30));
    let addr = line
        .rsplit("listening on ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let out = peerpool()
        .args(["rpc", "--datadir"])
        .arg(&dir)
        .args(["--network", "regtest", "--rpc-connect", &addr, "uptime"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uptime: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(uptime < 600);
}
