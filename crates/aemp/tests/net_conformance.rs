//! Conformance with captured Perl traffic: the client side of session `c_spawn_mon_kil` is
//! replayed against an aemp node acting as the recorded "seed", and the node's replies are
//! compared with what the Perl seed sent.

mod net_common;
use aemp::{msg, Msg, Node, PortId, Value};
use net_common::*;

const SESSION: &str = "/work/shared/vectors/sessions/c_spawn_mon_kil/session.json";

/// Replaces the recorded node IDs (as whole strings or as the node part of port IDs).
fn rewrite(v: &Value, map: &[(&str, &str)]) -> Value {
    match v {
        Value::Str(s) => {
            for (from, to) in map {
                if s == from {
                    return Value::from(*to);
                }
                if let Some(rest) = s.strip_prefix(&format!("{from}#")) {
                    return Value::from(format!("{to}#{rest}"));
                }
            }
            v.clone()
        }
        Value::List(l) => Value::List(l.iter().map(|x| rewrite(x, map)).collect()),
        Value::Map(m) => Value::Map(
            m.iter()
                .map(|(k, x)| (k.clone(), rewrite(x, map)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The recorded messages of one direction, as `[port, msg…]` lists.
fn recorded(session: &serde_json::Value, dir: &str) -> Vec<Value> {
    let d = &session["connections"][0]["directions"][dir];
    assert_eq!(d["framing"], "cbor");
    d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| aemp::config::json_to_value(&m["decoded"]))
        .collect()
}

/// `["", "g_…"]`: global-protocol traffic, which a non-global aemp node does not answer yet.
fn is_global(v: &Value) -> bool {
    match v {
        Value::List(l) => {
            l.first() == Some(&Value::from(""))
                && l.get(1)
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("g_"))
        }
        _ => false,
    }
}

/// The echo port of the reference setup (`AEMPRef::echo_init notify-port`): tells
/// `notify` its port ID, answers `ping reply data…` with `pong data…`, and dies on
/// `die text` with "requested death: text".
fn register_echo_init(node: &Node) {
    node.register("AEMPRef::echo_init", |cx, args| {
        let notify: PortId = args
            .first()
            .and_then(Value::as_str)
            .ok_or("echo_init needs a notify port")?
            .parse()?;
        cx.rcv("ping", |cx, m| {
            let reply: PortId =
                m.0.first()
                    .and_then(Value::as_str)
                    .ok_or("ping needs a reply port")?
                    .parse()?;
            let mut pong = msg!["pong"];
            pong.0.extend(m.0.iter().skip(1).cloned());
            cx.snd(&reply, pong);
            Ok(())
        });
        cx.rcv("die", |_, m| {
            let text = m.0.first().and_then(Value::as_str).unwrap_or("");
            Err(format!("requested death: {text}").into())
        });
        let me = cx.self_port();
        cx.snd(&notify, msg!["spawned", me.as_str()]);
        Ok(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_spawn_mon_kil_session() {
    let session: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(SESSION).unwrap()).unwrap();
    let conn = &session["connections"][0];
    assert_eq!(conn["connecting_node"], "spawner");
    assert_eq!(conn["accepting_node"], "seed");
    let secret = conn["secret"].as_str().unwrap();

    let seed = node_with("conf-seed", secret, &["cbor", "json"]).await;
    register_echo_init(&seed);
    let peer_id = "conf-spawner";
    let map = [("spawner", peer_id), ("seed", seed.id().as_str())];

    // Fresh handshake with the session's secret; the recorded framing is cbor both ways.
    let mut p = Peer::connect(
        seed.listen_addrs()[0],
        &peer_hs(peer_id, secret, &["cbor", "json"]),
    )
    .await
    .unwrap();
    assert_eq!((p.send.name(), p.recv.name()), ("cbor", "cbor"));

    let c2s: Vec<Value> = recorded(&session, "c2s")
        .iter()
        .filter(|v| !is_global(v))
        .map(|v| rewrite(v, &map))
        .collect();
    let s2c: Vec<Value> = recorded(&session, "s2c")
        .iter()
        .filter(|v| !is_global(v))
        .map(|v| normalize(&rewrite(v, &map)))
        .collect();
    assert_eq!((c2s.len(), s2c.len()), (11, 8));

    for frame in &c2s {
        let Value::List(l) = frame else {
            panic!("recorded frame is not an array: {frame:?}")
        };
        let port = l[0].as_str().unwrap().to_string();
        p.send(&port, Msg::from(l[1..].to_vec())).await;
    }
    let mut got = Vec::new();
    for _ in 0..s2c.len() {
        let (port, m) = p.recv_non_global().await.expect("connection closed");
        let mut l = vec![Value::from(port)];
        l.extend(m.0);
        got.push(normalize(&Value::List(l)));
    }
    for (i, (g, want)) in got.iter().zip(&s2c).enumerate() {
        assert_eq!(g, want, "reply {i} differs from the Perl seed's");
    }
    // Nothing else was sent (no duplicate kil0 and the like) before a fresh request's answer.
    p.send("", msg!["time", format!("{peer_id}#end")]).await;
    let (port, m) = p.recv_non_global().await.expect("connection closed");
    assert_eq!(port, "end", "unexpected extra frame {m}");
}
