//! `log new`: whether sessions that connect later start logged, toggled on its own and set
//! by `log all` / `log none`, with ElectrumX's answers.

use peerpool_net::PeerId;
use peerpool_rpc::admin::client::Client;
use peerpool_rpc::admin::Config;
use peerpool_testkit::init_logs;
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::{joined, net_addr, start_idle};
use peerpool_testkit::rpc::admin::{call, serve_admin};
use serde_json::{json, Value};

/// Dials a new spoke into `hub`, waits for it to join, and returns its session id there.
async fn new_spoke(
    hub: &peerpool_net::Pool,
    n: u8,
    spokes: &mut Vec<peerpool_net::Pool>,
) -> PeerId {
    let before: Vec<PeerId> = hub
        .handle()
        .peer_details()
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    let s = start_idle(ip(44, 10 + n), &format!("spoke{n}"), 1024).await;
    s.handle().connect(net_addr(hub)).await.unwrap();
    spokes.push(s);
    joined(hub, before.len() + 1).await;
    hub.handle()
        .peer_details()
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .find(|id| !before.contains(id))
        .expect("the new session")
}

/// Whether session `id` shows the logged flag `L` in `sessions`.
async fn logged(c: &mut Client, id: PeerId) -> bool {
    let rows = call(c, "sessions", json!({})).await;
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == id.0)
        .cloned()
        .unwrap_or_else(|| panic!("session {id} in {rows}"));
    row[1].as_str().unwrap().contains('L')
}

async fn log(c: &mut Client, ids: &[&str]) -> Value {
    call(c, "log", json!({ "session_ids": ids })).await
}

#[tokio::test(flavor = "multi_thread")]
async fn log_new_decides_whether_later_sessions_start_logged() {
    init_logs();
    let hub = start_idle(ip(44, 1), "hub", 1024).await;
    let (_, addr) = serve_admin(&hub, Config::default()).await;
    let mut c = Client::connect(addr).await.unwrap();
    let mut spokes = Vec::new();

    let first = new_spoke(&hub, 0, &mut spokes).await;
    assert!(!logged(&mut c, first).await, "off by default");

    assert_eq!(log(&mut c, &["new"]).await, json!(["logging new sessions"]));
    let second = new_spoke(&hub, 1, &mut spokes).await;
    assert!(logged(&mut c, second).await);
    assert!(
        !logged(&mut c, first).await,
        "sessions already there keep theirs"
    );
    assert_eq!(
        call(&mut c, "getinfo", json!({})).await["sessions"]["logged"],
        1
    );

    assert_eq!(
        log(&mut c, &["new"]).await,
        json!(["not logging new sessions"])
    );
    let third = new_spoke(&hub, 2, &mut spokes).await;
    assert!(!logged(&mut c, third).await);
    assert!(logged(&mut c, second).await);

    // `all` logs every session and later ones; `none` turns both off.
    assert_eq!(log(&mut c, &["all"]).await, json!(["logging all sessions"]));
    let fourth = new_spoke(&hub, 3, &mut spokes).await;
    assert!(logged(&mut c, fourth).await);
    assert_eq!(log(&mut c, &["none"]).await, json!(["logging no sessions"]));
    let fifth = new_spoke(&hub, 4, &mut spokes).await;
    assert!(!logged(&mut c, fifth).await);

    // Several specials at once are applied as all, none, then new, whatever their order.
    assert_eq!(
        log(&mut c, &["new", "all", "5000"]).await,
        json!([
            "logging all sessions",
            "not logging new sessions",
            "unknown: 5000"
        ])
    );
    let sixth = new_spoke(&hub, 5, &mut spokes).await;
    assert!(!logged(&mut c, sixth).await);
    assert!(logged(&mut c, first).await);
}
