//! Conformance with captured Perl traffic, client side: session `a_join_ping_cbor` replayed
//! the other way round from tests/net_replay_join.rs. A scripted peer listening on
//! 127.0.0.1 plays the recorded Perl seed; an aemp node configured with that address as its
//! only seed plays the recorded Perl client `pinger`. What the aemp node sends is compared
//! with what the Perl client sent, modulo node-ID renaming, map key order and addresses.
//! Once the scripted seed has said `g_global`, the aemp node must use it as its master: its
//! database writes, watches and queries go to the seed, and the seed's answers reach the
//! node's API.

mod net_common;
use aemp::{Config, Msg, Node, Value};
use net_common::*;
use tokio::net::TcpListener;

/// The recorded names of session `a_join_ping_cbor`.
const SESSION: &str = "a_join_ping_cbor";
const ECHO_PORT: &str = "ILp1l2NNxb";
const PINGER_ADDR: &str = "127.0.0.1:37431";
/// The reply ports of the two recorded pings (ports on the client).
const REPLY_PORTS: [&str; 2] = ["IQpV3BRGbb", "IQpV3BRGbc"];

const SEED_ID: &str = "replay-client-seed";
const CLIENT_ID: &str = "replay-client-pinger";

/// `["", tag, args…]`, a node-port frame as the wire array.
fn g(tag: &str, args: impl IntoIterator<Item = Value>) -> Value {
    let mut l = vec![Value::from(""), Value::from(tag)];
    l.extend(args);
    Value::List(l)
}

/// A map value from string keys.
fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (aemp::Str::from(*k), v.clone()))
            .collect(),
    )
}

/// The scripted seed: accepts the aemp node's connection and completes the handshake as
/// the accepting side, offering the framings of the recorded Perl seed.
async fn accept_client(listener: &TcpListener, secret: &str) -> Peer {
    let (stream, _) = within("the client's connection", listener.accept())
        .await
        .expect("accept");
    Peer::handshake(stream, &peer_hs(SEED_ID, secret, &["cbor", "json"]))
        .await
        .expect("handshake with the aemp client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_client_against_scripted_seed_cbor() {
    let session = load_vectors(&format!("sessions/{SESSION}/session.json"));
    let conn = &session["connections"][0];
    assert_eq!(conn["connecting_node"], "pinger");
    assert_eq!(conn["accepting_node"], "seed");
    let secret = conn["secret"].as_str().unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seed_addr = listener.local_addr().unwrap().to_string();
    let cfg = Config::builder()
        .norc(true)
        .nodeid(CLIENT_ID)
        .binds(["127.0.0.1:0"])
        .seeds([seed_addr.as_str()])
        .secret(secret)
        .build()
        .expect("config");
    let client: Node = Node::configure(cfg).await.expect("configure");
    let client_addr = advertised(&client);

    let reply = client.inbox(8);
    let rename = Rename::new()
        .with("seed", SEED_ID)
        .with("pinger", CLIENT_ID)
        .with(PINGER_ADDR, client_addr.as_str())
        .with(REPLY_PORTS[0], reply.port().name());
    let c2s: Vec<Value> = recorded_frames(&session, 0, "c2s", "cbor")
        .iter()
        .map(|v| rename.apply(v))
        .collect();
    let s2c: Vec<Value> = recorded_frames(&session, 0, "s2c", "cbor")
        .iter()
        .map(|v| rename.apply(v))
        .collect();
    assert_eq!((c2s.len(), s2c.len()), (8, 5));

    let mut seed = accept_client(&listener, secret).await;
    assert_eq!(
        (seed.send.name(), seed.recv.name()),
        ("cbor", "cbor"),
        "framings"
    );

    // The client announces itself as a slave: the bare g_slave (Perl sent it twice, once
    // per trigger; one or two are fine), then the full one carrying its own 'l entry.
    let bare = normalize(&c2s[0]);
    assert_eq!(bare, normalize(&c2s[1]));
    let mut bare_seen = 0;
    let full = loop {
        let f = seed.recv_frame().await;
        if normalize(&f) == bare {
            bare_seen += 1;
            assert!(bare_seen <= 2, "more than two bare g_slave");
            continue;
        }
        break f;
    };
    assert!(bare_seen >= 1, "no bare g_slave before {full:?}");
    assert_eq!(
        normalize(&full),
        canonical_recorded(&c2s[2]),
        "the full g_slave differs from the Perl client's"
    );

    // The seed answers as the recorded Perl seed did: it is a global node.
    assert_eq!(normalize(&s2c[0]), normalize(&g("g_global", [])));
    seed.send_frame(&s2c[0]).await;

    // A write on the client goes to its master, without a 4th element (no delete list).
    client.db_set("fam", "k", Value::from(7)).unwrap();
    assert_eq!(
        normalize(&seed.recv_frame().await),
        normalize(&g(
            "g_upd",
            [Value::from("fam"), map(&[("k", Value::from(7))])]
        )),
        "db_set did not reach the seed as a bare g_upd"
    );

    // A watch is forwarded as the recorded g_mon1, and the seed's recorded g_chg1 is
    // reported through the DbWatch.
    let mut watch = client.db_mon("echo").unwrap();
    assert_eq!(
        normalize(&seed.recv_frame().await),
        canonical_recorded(&c2s[3]),
        "db_mon did not send the recorded g_mon1"
    );
    seed.send_frame(&s2c[1]).await;
    let echo_id = format!("{SEED_ID}#{ECHO_PORT}");
    watch_until(&mut watch, "g_chg1 echo", |f| {
        *f == family_of(&[(echo_id.as_str(), Value::Null)])
    })
    .await;
    // A later g_chg2 (sets and deletes) is applied on top.
    let other_id = format!("{SEED_ID}#other");
    seed.send_frame(&g(
        "g_chg2",
        [
            Value::from("echo"),
            map(&[(other_id.as_str(), Value::from(1))]),
            Value::List(vec![Value::from(echo_id.as_str())]),
        ],
    ))
    .await;
    let changes = watch_until(&mut watch, "g_chg2 echo", |f| {
        *f == family_of(&[(other_id.as_str(), Value::from(1))])
    })
    .await;
    let last = changes.last().unwrap();
    assert_eq!(last.added, vec![aemp::Str::from(other_id.as_str())]);
    assert_eq!(last.deleted, vec![aemp::Str::from(echo_id.as_str())]);

    // A query goes to the master as g_db_family with a request id and resolves with the
    // seed's g_reply.
    let query = tokio::spawn({
        let client = client.clone();
        async move { client.db_family("things").await }
    });
    let req = seed.recv_frame().await;
    let Some([port, tag, fam, id]) = req.as_list() else {
        panic!("expected [\"\", \"g_db_family\", fam, id], got {req:?}")
    };
    assert_eq!(
        (port.as_str(), tag.as_str(), fam.as_str()),
        (Some(""), Some("g_db_family"), Some("things")),
        "unexpected query {req:?}"
    );
    seed.send_frame(&g(
        "g_reply",
        [
            id.clone(),
            map(&[("a", Value::from(1)), ("b", Value::Null)]),
        ],
    ))
    .await;
    let things = within("db_family things", query)
        .await
        .unwrap()
        .expect("db_family");
    assert_eq!(
        things,
        family_of(&[("a", Value::from(1)), ("b", Value::Null)])
    );

    // A message to a port on the seed node goes out on this connection as [port, …]: the
    // recorded first ping, with the client's reply port.
    let Some([_, rest @ ..]) = c2s[6].as_list() else {
        panic!("recorded ping {:?}", c2s[6])
    };
    let echo: aemp::PortId = echo_id.parse().unwrap();
    client.snd(&echo, Msg::from(rest.to_vec())).unwrap();
    assert_eq!(
        normalize(&seed.recv_frame().await),
        canonical_recorded(&c2s[6]),
        "the ping differs from the Perl client's"
    );
    // The seed's recorded pong reaches the reply port on the client.
    let mut reply = reply;
    seed.send_frame(&s2c[3]).await;
    let pong = within("pong", reply.recv()).await.expect("inbox closed");
    assert_eq!(
        normalize(&Value::List(pong.0.to_vec())),
        normalize(&Value::List(s2c[3].as_list().unwrap()[1..].to_vec()))
    );
    // Nothing else was pending: a time request sent now is answered by the very next frame.
    seed.expect_nothing_more("end").await;
}
