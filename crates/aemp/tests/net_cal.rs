//! `cal` to a port of another node, with a timeout: the target is monitored (`mon1`), and the
//! monitor is cancelled (`mon0`) however the cal ends; the target's death ends it at once.

mod net_common;

use aemp::{msg, CalError, Value};
use net_common::{cfg, peer_hs, within, Peer};
use std::future::IntoFuture;
use std::time::Duration;

const SECRET: &str = "calsecret";

/// The next frame for the node port of the scripted peer or one of its ports.
async fn next(p: &mut Peer) -> (String, aemp::Msg) {
    within("frame", p.recv_non_global())
        .await
        .expect("connection open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_cal_with_timeout_monitors_and_unmonitors() {
    let a = aemp::Node::configure(cfg("calmon-a", SECRET).build().unwrap())
        .await
        .unwrap();
    let mut p = Peer::connect(a.listen_addrs()[0], &peer_hs("calmon-p", SECRET, &["cbor"]))
        .await
        .unwrap();
    let target: aemp::PortId = "calmon-p#w".parse().unwrap();
    let base = within("count", a.monitor_count()).await;

    // 1. Unanswered: the timeout ends it, and the monitor is cancelled with mon0.
    let cal = tokio::spawn(
        a.cal(&target, msg!["q", 1])
            .timeout(Duration::from_millis(300))
            .into_future(),
    );
    assert_eq!(next(&mut p).await, (String::new(), msg!["mon1", "w"]));
    let (port, req) = next(&mut p).await;
    assert_eq!((port.as_str(), &req[0]), ("w", &Value::from("q")));
    assert_eq!(within("cal", cal).await.unwrap(), Err(CalError::Timeout));
    assert_eq!(next(&mut p).await, (String::new(), msg!["mon0", "w"]));

    // 2. Answered: the reply cancels the monitor.
    let cal = tokio::spawn(
        a.cal(&target, msg!["q", 2])
            .timeout(Duration::from_secs(3600))
            .into_future(),
    );
    assert_eq!(next(&mut p).await, (String::new(), msg!["mon1", "w"]));
    let (_, req) = next(&mut p).await;
    let reply: aemp::PortId = req[2].as_str().unwrap().parse().unwrap();
    p.send(reply.name(), msg!["answer"]).await;
    assert_eq!(within("cal", cal).await.unwrap(), Ok(msg!["answer"]));
    assert_eq!(next(&mut p).await, (String::new(), msg!["mon0", "w"]));

    // 3. The target dies: the cal fails at once, long before its timeout.
    let cal = tokio::spawn(
        a.cal(&target, msg!["q", 3])
            .timeout(Duration::from_secs(3600))
            .into_future(),
    );
    assert_eq!(next(&mut p).await, (String::new(), msg!["mon1", "w"]));
    let _request = next(&mut p).await;
    p.send("", msg!["kil0", "w", "die", "worker crashed"]).await;
    let r = within("cal", cal).await.unwrap();
    assert_eq!(
        r.unwrap_err().to_string(),
        r#"no reply: target port died: ["die","worker crashed"]"#
    );

    let settle = async {
        while a.monitor_count().await != base {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    within("monitors released", settle).await;
}
