//! The `peerpool-bench` binary as users run it: its arguments, and a scenario whose server
//! processes are re-executions of the binary itself (the daemon used to host them, and no
//! longer links this crate).

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerpool-bench"))
        .args(args)
        .output()
        .expect("running peerpool-bench")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_scenario_and_the_daemon_option() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for name in [
        "churn",
        "idle",
        "daemon-idle",
        "capacity",
        "ping",
        "throughput",
        "fanout",
        "network",
        "all",
    ] {
        assert!(help.contains(name), "{name} missing from:\n{help}");
    }
    assert!(help.contains("--daemon <PATH>"), "{help}");
}

#[test]
fn an_unknown_scenario_is_refused_with_the_list() {
    let out = bench(&["bench"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown scenario") && err.contains("daemon-idle"),
        "{err}"
    );
}

#[test]
fn daemon_idle_without_a_daemon_says_what_to_do() {
    let out = bench(&["daemon-idle", "--daemon", "/nonexistent/peerpool"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/peerpool: no such file"), "{err}");
}

#[test]
fn server_processes_are_the_binary_itself() {
    // 50 peers: figures mean nothing at this size and the target may be missed (exit 1); a
    // report with both servers' rows is what shows the re-executed servers ran.
    let out = bench(&["idle", "--peers", "50"]);
    let report = text(&out.stdout);
    assert!(
        report.contains("== idle: 50 handshaken idle peers"),
        "no report; stderr:\n{}",
        text(&out.stderr)
    );
    assert!(report.contains("RSS per idle peer (bytes)"), "{report}");
    assert!(matches!(out.status.code(), Some(0 | 1)), "{:?}", out.status);
}
