//! Conformance with captured Perl traffic: session `e_direct_connect_after_g_find`,
//! connections 1 and 2. An aemp global node plays the recorded seed; scripted peers replay
//! `echonode` (it registers an echo port with `db_reg echo` and advertises its address in
//! `'l`; mixed framings: it sends cbor, the seed sends json) and `pinger` (cbor both ways),
//! whose `g_find echonode` must be answered with the address list echonode advertised.
//!
//! Connection 3 of the recording (pinger ⇄ echonode directly) involves no seed, so it has
//! no part here.

mod net_common;
use aemp::{msg, Value};
use net_common::*;

const SESSION: &str = "sessions/e_direct_connect_after_g_find/session.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_g_find_returns_registered_address() {
    let session = load_vectors(SESSION);
    let conns = &session["connections"];
    assert_eq!(conns[0]["connecting_node"], "echonode");
    assert_eq!(conns[1]["connecting_node"], "pinger");
    let secret = conns[0]["secret"].as_str().unwrap();
    assert_eq!(conns[1]["secret"], secret);

    let seed = global_seed("replay-find-seed", secret, &["cbor", "json"]).await;
    let (echonode, pinger) = ("replay-echonode", "replay-pinger");
    let (echonode_addr, pinger_addr) = (dead_addr().to_string(), dead_addr().to_string());
    let rename = Rename::new()
        .with("seed", seed.id().as_str())
        .with("echonode", echonode)
        .with("pinger", pinger)
        .with("127.0.0.1:46340", advertised(&seed))
        .with("127.0.0.1:46342", echonode_addr.as_str())
        .with("127.0.0.1:34885", pinger_addr.as_str());
    let frames = |conn: usize, dir: &str, framing: &str| -> Vec<Value> {
        recorded_frames(&session, conn, dir, framing)
            .iter()
            .map(|v| rename.apply(v))
            .collect()
    };
    let e_c2s = frames(0, "c2s", "cbor");
    let e_s2c = frames(0, "s2c", "json");
    let p_c2s = frames(1, "c2s", "cbor");
    let p_s2c = frames(1, "s2c", "cbor");
    assert_eq!(
        (e_c2s.len(), e_s2c.len(), p_c2s.len(), p_s2c.len()),
        (5, 2, 7, 4)
    );
    let addr = seed.listen_addrs()[0];

    // conn1: echonode lists json first, the seed cbor first; each side sends in the first
    // framing of the other's list, so the two directions differ.
    let mut e = Peer::connect(addr, &peer_hs(echonode, secret, &["json", "cbor"]))
        .await
        .unwrap();
    assert_eq!((e.send.name(), e.recv.name()), ("cbor", "json"));
    // g_slave, g_slave {'l, echo}, g_find seed, g_slave; the SIGTERM g_upd comes last.
    for f in &e_c2s[..4] {
        e.send_frame(f).await;
    }
    e.expect_frames("echonode join", &e_s2c).await;
    e.expect_nothing_more("joined").await;

    // conn2: pinger joins, watches echo (g_chg1 lists echonode's port), and looks echonode
    // up: g_found carries exactly the addresses echonode put in 'l.
    let mut p = Peer::connect(addr, &peer_hs(pinger, secret, &["cbor", "json"]))
        .await
        .unwrap();
    assert_eq!((p.send.name(), p.recv.name()), ("cbor", "cbor"));
    for f in &p_c2s {
        p.send_frame(f).await;
    }
    p.expect_frames("pinger join and g_find", &p_s2c).await;
    p.expect_nothing_more("found").await;

    // End of conn1: echonode's db_reg guard withdraws the port before it closes. Nobody
    // monitors echo any more (pinger sent g_mon0), so the seed sends nothing.
    e.send_frame(&e_c2s[4]).await;
    e.expect_nothing_more("end").await;
    p.expect_nothing_more("end").await;
    assert!(within("echo", seed.db_family("echo"))
        .await
        .unwrap()
        .is_empty());

    // Once echonode is gone its 'l entry is too, and g_find answers null (recorded in
    // frames-*.json as the `g_find_unknown_node` step).
    drop(e);
    within("echonode's 'l entry removed", async {
        while within("'l", seed.db_family("'l"))
            .await
            .unwrap()
            .contains_key(echonode)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    p.send("", msg!["g_find", echonode]).await;
    assert_eq!(
        p.recv_frame().await,
        Value::List(vec![
            Value::from(""),
            Value::from("g_found"),
            Value::from(echonode),
            Value::Null
        ])
    );
    p.expect_nothing_more("gone").await;
}
