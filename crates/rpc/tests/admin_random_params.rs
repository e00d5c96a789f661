//! Every admin command called with seeded random parameters: each gets an answer or a
//! JSON-RPC error on a connection that stays usable, nothing panics, and the listener and the
//! pool keep working. The seed is printed; `PEERPOOL_TEST_SEED=N` replays a run.

mod random_json;

use peerpool_rpc::admin::client::Client;
use peerpool_rpc::admin::commands::METHODS;
use peerpool_rpc::admin::Config;
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::{joined, net_addr, start_idle};
use peerpool_testkit::rpc::admin::{call, serve_admin};
use peerpool_testkit::{init_logs, within};
use random_json::{random_params, seed};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn random_parameters_get_answers_or_clean_errors_and_break_nothing() {
    init_logs();
    let seed = seed();
    println!("PEERPOOL_TEST_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let hub = start_idle(ip(45, 1), "hub", 1024).await;
    let mut spokes = Vec::new();
    for i in 0..2 {
        let s = start_idle(ip(45, 10 + i), &format!("spoke{i}"), 1024).await;
        s.handle().connect(net_addr(&hub)).await.unwrap();
        spokes.push(s);
    }
    joined(&hub, 2).await;
    let (_server, addr) = serve_admin(&hub, Config::default()).await;
    let mut c = Client::connect(addr).await.unwrap();

    let (mut answers, mut errors) = (0, 0);
    let mut codes = std::collections::BTreeMap::<(i32, &str), usize>::new();
    for round in 0..300 {
        for method in METHODS {
            let params = random_params(&mut rng);
            let what = format!(
                "seed {seed} round {round}: {method} {:.300}",
                params.to_string()
            );
            // A subscription that succeeds turns its connection into a stream: it gets one
            // of its own, dropped after the answer.
            let reply = if *method == "subscribe" {
                let mut own = Client::connect(addr).await.unwrap();
                within(&what, own.call(method, params)).await
            } else {
                within(&what, c.call(method, params)).await
            };
            match reply {
                Ok(Ok(_)) => answers += 1,
                Ok(Err(e)) => {
                    errors += 1;
                    *codes.entry((e.code, *method)).or_default() += 1;
                    // Only the request's own shape (-32600) or its parameters (-32602)
                    // can be wrong: never an internal error, never "method not found".
                    assert!(
                        [-32600, -32602].contains(&e.code),
                        "{what}: unexpected code {}: {}",
                        e.code,
                        e.message
                    );
                    assert!(!e.message.is_empty(), "{what}");
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }
    println!("answers {answers}, errors {errors}: {codes:?}");
    assert!(answers > 20 && errors > 20, "{answers} {errors}");

    // The same connection still works, and so does the pool: a new spoke joins.
    let info = within("getinfo", c.call("getinfo", Value::Null))
        .await
        .unwrap()
        .unwrap();
    assert!(info["sessions"]["count"].is_u64(), "{info}");
    hub.handle().clear_bans().await.unwrap();
    let late = start_idle(ip(45, 30), "late", 1024).await;
    late.handle().connect(net_addr(&hub)).await.unwrap();
    within("the late spoke in sessions", async {
        loop {
            let rows = call(&mut c, "sessions", json!({})).await;
            let listed = rows.as_array().unwrap().iter().any(|r| {
                r[2].as_str()
                    .is_some_and(|a| a.starts_with(&format!("{}:", ip(45, 30))))
            });
            if listed {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
