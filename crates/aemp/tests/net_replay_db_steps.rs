//! Conformance with captured Perl traffic: the database steps of the driver run in
//! `frames-cbor.json` / `frames-json.json` (client `vclient` ⇄ seed `seed`): join, db_mon of
//! an empty and of a filled family, db_set/db_del in every shape, the three queries with
//! their `g_reply` (unknown family included), db_reg and `g_find` of an unknown node.
//!
//! An aemp global node plays the seed, a scripted peer replays vclient's requests step by
//! step (the driver waited for each step's answers), and the seed's answers are compared
//! with the Perl seed's, in order.

mod net_common;
use aemp::Value;
use net_common::*;

/// The driver steps that talk to the global database, in recorded order.
const DB_STEPS: &[&str] = &[
    "join",
    "db_mon_empty_family",
    "db_set_string",
    "db_set_nested",
    "db_set_null",
    "db_set_change",
    "db_keys",
    "db_values",
    "db_family",
    "db_family_unknown",
    "db_del_one",
    "db_del_two",
    "db_set_again",
    "db_mon0",
    "db_mon_existing_family",
    "db_reg",
    "g_find_unknown_node",
];

/// One recorded step: what vclient sent, what the seed answered (both in recorded order).
struct Step {
    name: &'static str,
    requests: Vec<Value>,
    answers: Vec<Value>,
}

fn steps(frames: &serde_json::Value, rename: &Rename) -> Vec<Step> {
    let msgs = frames["messages"].as_array().unwrap();
    DB_STEPS
        .iter()
        .map(|&name| {
            let of = |sender: &str| -> Vec<Value> {
                msgs.iter()
                    .filter(|m| {
                        m["step"] == name
                            && m["sender"] == sender
                            && m["source"].as_str().unwrap().starts_with("driver run")
                    })
                    .map(|m| rename.apply(&aemp::config::json_to_value(&m["decoded"])))
                    .collect()
            };
            Step {
                name,
                requests: of("vclient"),
                answers: of("seed"),
            }
        })
        .collect()
}

/// Sort key for the unordered lists of `g_reply`.
fn debug_key(v: &Value) -> String {
    format!("{:?}", normalize(v))
}

/// A `g_reply` list with its elements sorted by `key`.
fn sort_reply(frame: &Value, key: fn(&Value) -> String) -> Value {
    let mut v = normalize(frame);
    if let Value::List(l) = &mut v {
        if let Some(Value::List(items)) = l.get_mut(3) {
            items.sort_by_key(key);
        }
    }
    v
}

async fn replay_db_steps(
    framing: &str,
    peer_framings: &[&str],
    recorded_echo: &str,
    vclient_addr: &str,
    seed_addr: &str,
) {
    let frames = load_vectors(&format!("frames-{framing}.json"));
    assert_eq!(frames["framing"], framing);
    // The frames files do not record the driver run's handshake; any shared secret does for
    // a fresh one.
    let secret = "replay-steps-secret";
    let seed = global_seed("replay-steps-seed", secret, &["cbor", "json"]).await;
    let echo = echo_port(&seed);
    seed.db_reg("echo", &echo, Value::Null).unwrap();
    assert!(within("echo", seed.db_family("echo"))
        .await
        .unwrap()
        .contains_key(echo.as_str()));

    let vclient = "replay-vclient";
    let rename = Rename::new()
        .with("seed", seed.id().as_str())
        .with("vclient", vclient)
        .with(recorded_echo, echo.name())
        .with(vclient_addr, dead_addr().to_string())
        .with(seed_addr, advertised(&seed));
    let steps = steps(&frames, &rename);
    assert!(steps.iter().all(|s| !s.requests.is_empty()));

    let mut p = Peer::connect(
        seed.listen_addrs()[0],
        &peer_hs(vclient, secret, peer_framings),
    )
    .await
    .unwrap();
    assert_eq!((p.send.name(), p.recv.name()), (framing, framing));

    for step in &steps {
        for f in &step.requests {
            p.send_frame(f).await;
        }
        for (i, want) in step.answers.iter().enumerate() {
            let got = p.recv_frame().await;
            let (got, want) = match step.name {
                // Perl lists keys in hash order; ours are sorted by design (aemp_proto::db
                // module docs, "Data layout"): compare with the sorted recording.
                "db_keys" => (normalize(&got), sort_reply(want, debug_key)),
                // Values follow the (random) key order in Perl and the sorted key order
                // here: compare them as a multiset.
                "db_values" => (sort_reply(&got, debug_key), sort_reply(want, debug_key)),
                _ => (normalize(&got), canonical_recorded(want)),
            };
            assert_eq!(got, want, "step {}: answer {i} differs", step.name);
        }
        p.expect_nothing_more(step.name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_db_steps_cbor() {
    replay_db_steps(
        "cbor",
        &["cbor", "json"],
        "EC1eTd4rVb",
        "127.0.0.1:39175",
        "127.0.0.1:46200",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_db_steps_json() {
    replay_db_steps(
        "json",
        &["json"],
        "GGEsBEfMTb",
        "127.0.0.1:34501",
        "127.0.0.1:46210",
    )
    .await;
}
