//! Conformance with captured Perl traffic: sessions `a_join_ping_cbor` and
//! `b_join_ping_json`. An aemp global node plays the recorded seed (its echo port registered
//! with `db_reg echo`), a scripted peer replays the recorded client `pinger` after a fresh
//! handshake in the recorded framing, and the seed's answers are compared with the Perl
//! seed's, in order.

mod net_common;
use aemp::Value;
use net_common::*;

/// The recorded names of one join-and-ping session.
struct Recorded {
    session: &'static str,
    framing: &'static str,
    /// The seed's echo port name (the key of the `echo` family, the pings' destination).
    echo_port: &'static str,
    /// The address the client advertised in `'l`.
    pinger_addr: &'static str,
    /// The seed's address in `g_found seed`.
    seed_addr: &'static str,
}

async fn replay_join_ping(rec: Recorded, peer_framings: &[&str]) {
    let session = load_vectors(&format!("sessions/{}/session.json", rec.session));
    let conn = &session["connections"][0];
    assert_eq!(conn["connecting_node"], "pinger");
    assert_eq!(conn["accepting_node"], "seed");
    let secret = conn["secret"].as_str().unwrap();

    let seed = global_seed("replay-join-seed", secret, &["cbor", "json"]).await;
    let echo = echo_port(&seed);
    seed.db_reg("echo", &echo, Value::Null).unwrap();
    let echo_family = within("echo family", seed.db_family("echo")).await.unwrap();
    assert!(echo_family.contains_key(echo.as_str()));

    let pinger = "replay-join-pinger";
    // Nothing listens there: the seed has no reason to connect to a slave.
    let pinger_addr = dead_addr().to_string();
    let rename = Rename::new()
        .with("seed", seed.id().as_str())
        .with("pinger", pinger)
        .with(rec.echo_port, echo.name())
        .with(rec.pinger_addr, pinger_addr.as_str())
        .with(rec.seed_addr, advertised(&seed));

    let c2s: Vec<Value> = recorded_frames(&session, 0, "c2s", rec.framing)
        .iter()
        .map(|v| rename.apply(v))
        .collect();
    let s2c: Vec<Value> = recorded_frames(&session, 0, "s2c", rec.framing)
        .iter()
        .map(|v| rename.apply(v))
        .collect();
    assert_eq!((c2s.len(), s2c.len()), (8, 5));

    let mut p = Peer::connect(
        seed.listen_addrs()[0],
        &peer_hs(pinger, secret, peer_framings),
    )
    .await
    .unwrap();
    assert_eq!(
        (p.send.name(), p.recv.name()),
        (rec.framing, rec.framing),
        "framings"
    );

    // The whole client side at once: the bare and full g_slave, the pending g_find and
    // g_mon1, g_mon0, and the two pings. The node port handles one connection's requests
    // in order, so the answers come in the recorded order: g_global from the node-up hook
    // first, then g_chg1/g_found in request order, then the two pongs.
    for f in &c2s {
        p.send_frame(f).await;
    }
    p.expect_frames(rec.session, &s2c).await;
    p.expect_nothing_more("end").await;

    // The full g_slave made the client a slave: its 'l entry is in the seed's database.
    let listeners = within("'l family", seed.db_family("'l")).await.unwrap();
    assert_eq!(
        listeners.get(pinger),
        Some(&Value::List(vec![Value::from(pinger_addr.as_str())]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_join_ping_cbor() {
    replay_join_ping(
        Recorded {
            session: "a_join_ping_cbor",
            framing: "cbor",
            echo_port: "ILp1l2NNxb",
            pinger_addr: "127.0.0.1:37431",
            seed_addr: "127.0.0.1:46300",
        },
        // The client's default list (storable is not spoken by either side here).
        &["cbor", "json"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_join_ping_json() {
    replay_join_ping(
        Recorded {
            session: "b_join_ping_json",
            framing: "json",
            echo_port: "IUqZkfrwWb",
            pinger_addr: "127.0.0.1:38079",
            seed_addr: "127.0.0.1:46310",
        },
        // The client offers only json, so the seed must answer in json too.
        &["json"],
    )
    .await;
}
