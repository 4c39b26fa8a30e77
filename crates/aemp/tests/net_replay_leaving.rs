//! Conformance with captured Perl traffic: session `d_db_node_leaving`. An aemp global node
//! plays the recorded seed; two scripted peers replay the recorded clients `watcher` (cbor
//! both ways: db_mon of `dfam`, `dreg` and `'l`, db_set/db_del of `dfam`) and `leaver`
//! (json both ways: `db_set dfam b1/b2`, `db_reg dreg`, all inside its `g_slave`). When the
//! leaver's connection closes without a goodbye, the watcher must hear
//! `g_chg2 <fam> {} [keys]` for every family the leaver had entries in, `'l` included.
//!
//! The causal order of the recording is kept: each client step is sent only after the
//! seed's answers that triggered it in the recording have arrived.

mod net_common;
use aemp::Value;
use net_common::*;
use std::time::Duration;

const SESSION: &str = "sessions/d_db_node_leaving/session.json";

/// The family of a recorded or live `["", "g_chg…", family, …]` frame.
fn family(frame: &Value) -> String {
    frame.as_list().unwrap()[2].as_str().unwrap().to_string()
}

/// A group of `g_chg2` frames the seed produces from one event, one per family.
///
/// Perl emits them in hash order (random); our global database walks a shard's families in
/// sorted order by design (`aemp_proto::db` module docs, "Data layout"). The recording is
/// therefore sorted by family and compared in order, which also checks the documented order.
fn by_family(frames: &[Value]) -> Vec<Value> {
    let mut v = frames.to_vec();
    v.sort_by_key(family);
    v
}

/// How the leaver's connection ends.
#[derive(Clone, Copy, Debug)]
enum Gone {
    /// An orderly FIN without any goodbye message, as after POSIX::_exit (the recording).
    Fin,
    /// A reset (SO_LINGER 0), as when the leaver's host drops the connection.
    Reset,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_db_node_leaving() {
    replay(Gone::Fin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_db_node_leaving_by_reset() {
    replay(Gone::Reset).await;
}

async fn replay(gone: Gone) {
    let session = load_vectors(SESSION);
    let conns = &session["connections"];
    assert_eq!(conns[0]["connecting_node"], "watcher");
    assert_eq!(conns[1]["connecting_node"], "leaver");
    let secret = conns[0]["secret"].as_str().unwrap();
    assert_eq!(conns[1]["secret"], secret);

    let seed = global_seed("replay-leaving-seed", secret, &["cbor", "json"]).await;
    let (watcher, leaver) = ("replay-watcher", "replay-leaver");
    let (watcher_addr, leaver_addr) = (dead_addr().to_string(), dead_addr().to_string());
    let rename = Rename::new()
        .with("seed", seed.id().as_str())
        .with("watcher", watcher)
        .with("leaver", leaver)
        .with("127.0.0.1:46330", advertised(&seed))
        .with("127.0.0.1:40747", watcher_addr.as_str())
        .with("127.0.0.1:34825", leaver_addr.as_str());
    let frames = |conn: usize, dir: &str, framing: &str| -> Vec<Value> {
        recorded_frames(&session, conn, dir, framing)
            .iter()
            .map(|v| rename.apply(v))
            .collect()
    };
    let w_c2s = frames(0, "c2s", "cbor");
    let w_s2c = frames(0, "s2c", "cbor");
    let l_c2s = frames(1, "c2s", "json");
    let l_s2c = frames(1, "s2c", "json");
    assert_eq!(
        (w_c2s.len(), w_s2c.len(), l_c2s.len(), l_s2c.len()),
        (12, 13, 4, 2)
    );
    let addr = seed.listen_addrs()[0];

    // 1. The watcher joins: g_slave, g_slave {dfam a1, 'l}, g_find seed, g_mon1 dreg/'l/dfam,
    //    g_slave. The seed answers g_global, g_found, then one g_chg1 per g_mon1: dreg is
    //    unknown (null), 'l holds the seed and the watcher, dfam holds a1.
    let mut w = Peer::connect(addr, &peer_hs(watcher, secret, &["cbor", "json"]))
        .await
        .unwrap();
    assert_eq!((w.send.name(), w.recv.name()), ("cbor", "cbor"));
    for f in &w_c2s[..7] {
        w.send_frame(f).await;
    }
    w.expect_frames("watcher join", &w_s2c[..5]).await;
    w.expect_nothing_more("joined").await;

    // 2. The leaver joins; all of its entries come inside its g_slave.
    let mut l = Peer::connect(addr, &peer_hs(leaver, secret, &["json"]))
        .await
        .unwrap();
    assert_eq!((l.send.name(), l.recv.name()), ("json", "json"));
    for f in &l_c2s {
        l.send_frame(f).await;
    }
    l.expect_frames("leaver join", &l_s2c).await;
    l.expect_nothing_more("joined").await;
    // The watcher hears the leaver's three families.
    w.expect_frames("leaver's entries appear", &by_family(&w_s2c[5..8]))
        .await;

    // 3. Seeing b1/b2, the watcher changes a1; the seed echoes the change to its monitor.
    w.send_frame(&w_c2s[7]).await;
    w.expect_frames("a1 changed", &w_s2c[8..9]).await;
    w.expect_nothing_more("changed").await;

    // 4. The leaver vanishes (POSIX::_exit in the recording: the socket just closes).
    if let Gone::Reset = gone {
        // Zero linger: close() sends RST at once and does not block.
        socket2::SockRef::from(&l.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(l);
    w.expect_frames(
        &format!("leaver's entries deleted ({gone:?})"),
        &by_family(&w_s2c[9..12]),
    )
    .await;

    // 5. The watcher deletes a1 and stops its monitors.
    for f in &w_c2s[8..] {
        w.send_frame(f).await;
    }
    w.expect_frames("a1 deleted", &w_s2c[12..]).await;
    w.expect_nothing_more("end").await;

    // Only the seed and the watcher are left in the database.
    assert!(within("dfam", seed.db_family("dfam"))
        .await
        .unwrap()
        .is_empty());
    assert!(within("dreg", seed.db_family("dreg"))
        .await
        .unwrap()
        .is_empty());
    let listeners = within("'l", seed.db_family("'l")).await.unwrap();
    let mut nodes: Vec<&str> = listeners.keys().map(|k| k.as_str()).collect();
    nodes.sort_unstable();
    let mut want = vec![seed.id().as_str(), watcher];
    want.sort_unstable();
    assert_eq!(nodes, want);
}
