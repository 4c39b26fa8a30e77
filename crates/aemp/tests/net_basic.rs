//! Two nodes in one process talking over TCP on 127.0.0.1.

mod net_common;
use aemp::{msg, Monitor, MsgExt, Value};
use net_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_cal_both_framings() {
    for (fa, fb) in [("cbor", "cbor"), ("json", "json"), ("cbor", "json")] {
        let a = node_with(&format!("a-{fa}-{fb}"), "k", &[fa]).await;
        let b = node_with(&format!("b-{fa}-{fb}"), "k", &[fb, fa]).await;
        let echo = b
            .port()
            .on("echo", |cx, m| {
                let reply = m.reply_port()?;
                let src = cx.src_node().to_string();
                cx.snd(&reply, msg!["echoed", m[0].clone(), src]);
                Ok(())
            })
            .build();
        link(&a, &b).await;
        let r = tokio::time::timeout(T, a.cal(&echo, msg!["echo", "hi"]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, msg!["echoed", "hi", a.id().as_str()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_time_and_kill_with_monitor() {
    let a = node("np-a").await;
    let b = node("np-b").await;
    link(&a, &b).await;
    let t = tokio::time::timeout(T, a.cal(&b.node_port(), msg!["time"]))
        .await
        .unwrap()
        .unwrap();
    assert!(t[0].as_f64().unwrap() > 1.0e9);
    let victim = b.port_with(|_, _| Ok(()));
    let died = a.monitor(&victim);
    a.kil(&victim, vec!["boom".into(), Value::Int(7)]).unwrap();
    let reason = tokio::time::timeout(T, died).await.unwrap();
    assert_eq!(reason, vec![Value::from("boom"), Value::Int(7)]);
    // Monitoring a port that does not exist on the remote node.
    let ghost = b.id().port("nope");
    let reason = tokio::time::timeout(T, a.monitor(&ghost)).await.unwrap();
    assert_eq!(reason[0], Value::from("no_such_port"));
    let _ = Monitor::kill(&ghost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_peer_counters() {
    let a = node("stats-a").await;
    let b = node("stats-b").await;
    link(&a, &b).await;
    for _ in 0..10 {
        tokio::time::timeout(T, a.cal(&b.node_port(), msg!["time"]))
            .await
            .unwrap()
            .unwrap();
    }
    let stats = a.peer_stats();
    assert_eq!(stats.len(), 1);
    let s = &stats[0];
    assert_eq!(&s.node, b.id());
    assert!(s.msgs_out >= 10 && s.msgs_in >= 10, "{s:?}");
    assert!(s.bytes_out > 0 && s.bytes_in > 0, "{s:?}");
}

/// With busy-polling (longer than the default, or none at all), nodes on a current-thread
/// runtime still deliver (the spin loop must keep polling the sockets; without it the
/// dispatcher must be woken) and go back to sleep afterwards.
#[tokio::test(flavor = "current_thread")]
async fn busy_polling_nodes_still_talk() {
    for spin in [
        std::time::Duration::from_millis(2),
        std::time::Duration::ZERO,
    ] {
        let a = node(&format!("spin-a-{}", spin.as_micros())).await;
        let b = node(&format!("spin-b-{}", spin.as_micros())).await;
        a.set_spin(spin);
        b.set_spin(spin);
        talk_with_pauses(&a, &b).await;
    }
}

async fn talk_with_pauses(a: &aemp::Node, b: &aemp::Node) {
    link(a, b).await;
    for _ in 0..20 {
        let t = tokio::time::timeout(T, a.cal(&b.node_port(), msg!["time"]))
            .await
            .unwrap()
            .unwrap();
        assert!(t[0].as_f64().unwrap() > 1.0e9);
        // Let both dispatchers run out of work and spin (and stop spinning) in between.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
}

/// Large strings leave without being copied into the write buffer (vectored writes of the
/// message's own buffer); they must arrive intact and in order with the small messages
/// around them, in both framings, also when JSON needs to escape the large string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_strings_arrive_intact_and_in_order() {
    let big = |i: usize| -> String {
        (0..200_000 + i * 1000)
            .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
            .collect()
    };
    for framing in ["cbor", "json"] {
        let a = node_with(&format!("big-a-{framing}"), "k", &[framing]).await;
        let b = node_with(&format!("big-b-{framing}"), "k", &[framing]).await;
        let mut inbox = b.inbox(1000);
        let to = inbox.port().clone();
        link(&a, &b).await;
        let escaped = format!("{}\"\n\\é", big(99));
        for i in 0..20usize {
            a.snd(&to, msg!["small", i]).unwrap();
            if i % 3 == 0 {
                a.snd(&to, msg!["big", i, big(i), "tail", big(i + 1)])
                    .unwrap();
            }
            if i == 10 {
                a.snd(&to, msg!["escaped", escaped.as_str()]).unwrap();
            }
        }
        for i in 0..20usize {
            let m = within("small", inbox.recv()).await.unwrap();
            assert_eq!(m, msg!["small", i], "{framing}");
            if i % 3 == 0 {
                let m = within("big", inbox.recv()).await.unwrap();
                assert_eq!(m.tag(), Some("big"), "{framing}");
                assert_eq!(m[1], Value::from(i as u64), "{framing}");
                assert!(m[2].as_str() == Some(big(i).as_str()), "{framing} big {i}");
                assert_eq!(m[3], Value::from("tail"));
                assert!(m[4].as_str() == Some(big(i + 1).as_str()), "{framing}");
            }
            if i == 10 {
                let m = within("escaped", inbox.recv()).await.unwrap();
                assert!(m[1].as_str() == Some(escaped.as_str()), "{framing}");
            }
        }
    }
}

/// A node whose dispatcher is stuck stops reading once about 64 MiB of received messages
/// wait for it (TCP then slows the sender), whatever their number; once it goes on, every
/// message arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_receiver_stops_reading_and_loses_nothing() {
    const MSGS: usize = 150;
    const SIZE: usize = 1 << 20;
    let a = node("stuck-a").await;
    let b = node("stuck-b").await;
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let blocker = b.port_with(move |_cx, _m| {
        // Holds B's dispatcher (a runtime thread) until released.
        let _ = gate
            .lock()
            .map(|g| g.recv_timeout(std::time::Duration::from_secs(60)));
        Ok(())
    });
    let mut inbox = b.inbox(MSGS + 1);
    let to = inbox.port().clone();
    link(&a, &b).await;
    a.snd(&blocker, msg!["hold"]).unwrap();
    let body = "m".repeat(SIZE);
    for i in 0..MSGS {
        a.snd(&to, msg!["bulk", i, body.as_str()]).unwrap();
    }
    // Let B read all it is going to read.
    let mut last = 0;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = b.peer_stats().first().map_or(0, |s| s.bytes_in);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let read = b.peer_stats().first().map_or(0, |s| s.bytes_in);
    assert!(
        read < 100 << 20,
        "B read {} MiB of {} MiB while stuck",
        read >> 20,
        (MSGS * SIZE) >> 20
    );
    release.send(()).unwrap();
    for i in 0..MSGS {
        let m = within("bulk after release", inbox.recv()).await.unwrap();
        assert_eq!(m[1], Value::from(i as u64));
        assert_eq!(m[2].as_str().map(str::len), Some(SIZE));
    }
}
