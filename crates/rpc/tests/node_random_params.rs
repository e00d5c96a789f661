//! Every node RPC method called with seeded random parameters (positional and named, of
//! every JSON type, with addresses, subnets and commands the methods know mixed in): each
//! call gets a well-formed reply with a sensible HTTP status, nothing panics, and the server
//! and the P2P side keep working. The seed is printed; `PEERPOOL_TEST_SEED=N` replays a run.

mod random_json;

use peerpool_testkit::rpc::node::{pool, Node};
use random_json::{random_params, seed};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_parameters_get_well_formed_replies_and_break_nothing() {
    let seed = seed();
    println!("PEERPOOL_TEST_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let node = Node::start().await;
    let peer = pool().await;
    node.connect_peer(&peer).await;

    let help = node.ok("help", json!([])).await;
    let methods: Vec<String> = help
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("=="))
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        // `stop` with acceptable parameters ends the server the rest of the test needs.
        .filter(|m| m != "stop")
        // Hidden from `help`, as in Bitcoin Core.
        .chain(["addpeeraddress".to_owned()])
        .collect();
    assert!(methods.len() >= 17, "{methods:?}");

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..100 {
        for method in &methods {
            let params = random_params(&mut rng);
            let (status, reply) = node.call(method, params.clone()).await;
            let mut shown = params.to_string();
            if shown.len() > 300 {
                let cut = (0..=300)
                    .rev()
                    .find(|i| shown.is_char_boundary(*i))
                    .unwrap();
                shown.truncate(cut);
                shown.push_str("...");
            }
            let what = format!("seed {seed} round {round}: {method} {shown}");
            // Core's rule: parameters are an array, an object or absent.
            let valid_shape = matches!(params, Value::Array(_) | Value::Object(_) | Value::Null);
            *statuses.entry(status).or_default() += 1;
            let obj = reply
                .as_object()
                .unwrap_or_else(|| panic!("{what}: {reply}"));
            assert_eq!(obj.len(), 3, "{what}: {reply}");
            assert_eq!(reply["id"], json!(1), "{what}: {reply}");
            match status {
                200 => assert!(reply["error"].is_null(), "{what}: {reply}"),
                400 | 404 | 500 => {
                    assert!(reply["result"].is_null(), "{what}: {reply}");
                    assert!(reply["error"]["code"].is_i64(), "{what}: {reply}");
                    assert!(reply["error"]["message"].is_string(), "{what}: {reply}");
                    // Known methods never answer "method not found"; only a request object
                    // that is wrong in itself (here: parameters of another shape) gets 400.
                    assert_ne!(status, 404, "{what}: {reply}");
                    assert_eq!(status == 400, !valid_shape, "{what}: {reply}");
                    if !valid_shape {
                        assert_eq!(reply["error"]["code"], json!(-32600), "{what}: {reply}");
                    }
                }
                other => panic!("{what}: HTTP {other}: {reply}"),
            }
        }
    }
    println!("statuses: {statuses:?}");
    // Random calls did reach past argument checking somewhere.
    assert!(statuses.get(&200).is_some_and(|n| *n > 20), "{statuses:?}");
    assert!(statuses.get(&500).is_some_and(|n| *n > 20), "{statuses:?}");

    // Undo what random calls may have done (bans, network activity off), then the server
    // and the P2P side still work: a new peer connects and completes its handshake.
    node.ok("setnetworkactive", json!([true])).await;
    node.ok("clearbanned", json!([])).await;
    node.ok("uptime", json!([])).await;
    let other = pool().await;
    node.connect_peer(&other).await;
    peer.stop().await;
    other.stop().await;
}
