//! Unit tests of the kernel with a plain host: no runtime, no sockets, no clock.

use super::monitor::Canceller;
use super::*;
use aemp_proto::msg;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// A host that queues postponed tasks and records what would leave the node.
#[derive(Default)]
struct TestHost {
    run: VecDeque<Task>,
    remote: Vec<(String, String, Msg)>,
    if_up: Vec<(String, Msg)>,
    global: Vec<(String, String)>,
    up: Vec<NodeId>,
    cancels: Arc<CancelLog>,
}

#[derive(Default)]
struct CancelLog(Mutex<Vec<u64>>);

impl Canceller for CancelLog {
    fn cancel_monitor(&self, id: u64) {
        self.0.lock().push(id);
    }
}

impl Host for TestHost {
    fn postpone(&mut self, task: Task) {
        self.run.push_back(task);
    }
    fn send_remote(&mut self, node: &str, port: &str, msg: Msg) {
        self.remote.push((node.into(), port.into(), msg));
    }
    fn send_if_up(&mut self, node: &str, _port: &str, msg: Msg) {
        self.if_up.push((node.into(), msg));
    }
    fn global_request(&mut self, from: &NodeId, tag: Str, _args: Vec<Value>) {
        self.global.push((from.to_string(), tag.to_string()));
    }
    fn up_nodes(&self) -> Vec<NodeId> {
        self.up.clone()
    }
    fn owner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
    fn canceller(&self) -> Weak<dyn Canceller> {
        let w: Weak<CancelLog> = Arc::downgrade(&self.cancels);
        w
    }
}

fn kernel() -> (Kernel, TestHost) {
    let id = NodeId::new("k").unwrap();
    let shared = Arc::new(Shared::new(id, PortNamer::new("", "runiq")));
    (Kernel::new(shared), TestHost::default())
}

/// Runs queued work until the run queue is empty.
fn settle(k: &mut Kernel, h: &mut TestHost) {
    while let Some(t) = h.run.pop_front() {
        k.exec(t, h);
    }
}

fn log_port(k: &mut Kernel, name: &str, log: &Arc<Mutex<Vec<Msg>>>) -> PortId {
    let log = log.clone();
    k.create_port(
        Str::from(name),
        Some(Box::new(move |_, m| {
            log.lock().push(m);
            Ok(())
        })),
        Vec::new(),
    );
    k.id.port(name)
}

fn deliver(k: &mut Kernel, h: &mut TestHost, port: &PortId, m: Msg) {
    k.exec(
        Task::Send {
            port: port.clone(),
            msg: m,
        },
        h,
    );
    settle(k, h);
}

#[test]
fn handler_sends_are_queued_in_order() {
    let (mut k, mut h) = kernel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log_port(&mut k, "sink", &log);
    let s2 = sink.clone();
    k.create_port(
        Str::from("fan"),
        Some(Box::new(move |cx, _| {
            for i in 0..3 {
                cx.snd(&s2, msg!["n", i]);
            }
            Ok(())
        })),
        Vec::new(),
    );
    let fan = k.id.port("fan");
    k.exec(
        Task::Send {
            port: fan,
            msg: msg!["go"],
        },
        &mut h,
    );
    // Nothing ran inside the handler: the three sends wait in the run queue.
    assert!(log.lock().is_empty());
    assert_eq!(h.run.len(), 1, "the go message");
    settle(&mut k, &mut h);
    assert_eq!(*log.lock(), vec![msg!["n", 0], msg!["n", 1], msg!["n", 2]]);
}

#[test]
fn failing_handler_kills_its_port_and_monitors_fire_once() {
    let (mut k, mut h) = kernel();
    k.create_port(
        Str::from("p"),
        Some(Box::new(|_, _| Err("boom".into()))),
        Vec::new(),
    );
    let p = k.id.port("p");
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f2 = fired.clone();
    k.mon(&p, 1, Monitor::callback(move |r| f2.lock().push(r)), &mut h);
    deliver(&mut k, &mut h, &p, msg!["x"]);
    deliver(&mut k, &mut h, &p, msg!["x"]);
    assert_eq!(*fired.lock(), vec![vec![Value::from("die"), "boom".into()]]);
    assert_eq!(k.port_count(), 0);
}

#[test]
fn unhandled_message_kills_with_the_reference_text() {
    let (mut k, mut h) = kernel();
    k.create_port(Str::from("p"), None, Vec::new());
    let p = k.id.port("p");
    let fired = Arc::new(Mutex::new(None));
    let f2 = fired.clone();
    k.mon(
        &p,
        1,
        Monitor::callback(move |r| *f2.lock() = Some(r)),
        &mut h,
    );
    deliver(&mut k, &mut h, &p, msg!["nope"]);
    assert_eq!(
        fired.lock().clone().unwrap(),
        vec![
            Value::from("unhandled_message"),
            "no callback found for message 'nope'".into()
        ]
    );
}

#[test]
fn monitor_of_missing_port_fires_later_and_can_be_cancelled() {
    let (mut k, mut h) = kernel();
    let missing = k.id.port("missing");
    let fired = Arc::new(Mutex::new(0));
    let (f1, f2) = (fired.clone(), fired.clone());
    k.mon(
        &missing,
        1,
        Monitor::callback(move |_| *f1.lock() += 1),
        &mut h,
    );
    k.mon(
        &missing,
        2,
        Monitor::callback(move |_| *f2.lock() += 1),
        &mut h,
    );
    assert_eq!(*fired.lock(), 0, "fired asynchronously");
    k.unmon(2, &mut h);
    settle(&mut k, &mut h);
    assert_eq!(*fired.lock(), 1);
}

#[test]
fn remote_monitors_send_mon1_once_and_mon0_after_the_last() {
    let (mut k, mut h) = kernel();
    let far = PortId::parse("far#p").unwrap();
    k.mon(&far, 1, Monitor::callback(|_| {}), &mut h);
    k.mon(&far, 2, Monitor::callback(|_| {}), &mut h);
    assert_eq!(h.remote, vec![("far".into(), "".into(), msg!["mon1", "p"])]);
    k.unmon(1, &mut h);
    assert_eq!(h.remote.len(), 1);
    k.unmon(2, &mut h);
    assert_eq!(h.remote[1], ("far".into(), "".into(), msg!["mon0", "p"]));
}

#[test]
fn node_lost_fires_remote_monitors_with_transport_error() {
    let (mut k, mut h) = kernel();
    let far = PortId::parse("far#p").unwrap();
    let node = PortId::parse("far#").unwrap();
    let fired = Arc::new(Mutex::new(Vec::new()));
    let (f1, f2) = (fired.clone(), fired.clone());
    k.mon(
        &far,
        1,
        Monitor::callback(move |r| f1.lock().push(r)),
        &mut h,
    );
    k.mon(
        &node,
        2,
        Monitor::callback(move |r| f2.lock().push(r)),
        &mut h,
    );
    k.node_lost("far", "gone", &mut h);
    let want: Reason = vec!["transport_error".into(), "far".into(), "gone".into()].into();
    assert_eq!(*fired.lock(), vec![want.clone(), want]);
    // Fired monitors are gone: a second loss fires nothing.
    k.node_lost("far", "again", &mut h);
    assert_eq!(fired.lock().len(), 2);
}

#[test]
fn kil0_is_sent_to_remote_watchers_only_if_up() {
    let (mut k, mut h) = kernel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let p = log_port(&mut k, "p", &log);
    let far = NodeId::new("far").unwrap();
    k.node_request(msg!["mon1", "p"], Some(&far), &mut h);
    k.exec(
        Task::Kil {
            port: p,
            reason: vec!["die".into()].into(),
        },
        &mut h,
    );
    assert_eq!(h.if_up, vec![("far".into(), msg!["kil0", "p", "die"])]);
    // Monitoring a missing port answers kil0 no_such_port at once.
    k.node_request(msg!["mon1", "q"], Some(&far), &mut h);
    let (node, _, m) = h.remote.last().unwrap();
    assert_eq!(node, "far");
    assert_eq!(m.tag(), Some("kil0"));
}

#[test]
fn global_requests_go_to_the_host() {
    let (mut k, mut h) = kernel();
    let far = NodeId::new("far").unwrap();
    k.node_request(msg!["g_slave"], Some(&far), &mut h);
    assert_eq!(h.global, vec![("far".into(), "g_slave".into())]);
}

#[test]
fn cx_monitor_guard_cancels_through_the_host() {
    let (mut k, mut h) = kernel();
    let target = k.id.port("t");
    k.create_port(Str::from("t"), Some(Box::new(|_, _| Ok(()))), Vec::new());
    let t2 = target.clone();
    k.create_port(
        Str::from("w"),
        Some(Box::new(move |cx, _| {
            drop(cx.mon(&t2, Monitor::callback(|_| {})));
            Ok(())
        })),
        Vec::new(),
    );
    let w = k.id.port("w");
    deliver(&mut k, &mut h, &w, msg!["go"]);
    assert_eq!(h.cancels.0.lock().len(), 1);
}

#[test]
fn local_spawn_waits_for_its_gate() {
    let (mut k, mut h) = kernel();
    let ran = Arc::new(Mutex::new(false));
    let r2 = ran.clone();
    k.shared.registry.write().insert(
        "init",
        Arc::new(move |_cx: &mut Cx<'_>, _args: Vec<Value>| {
            *r2.lock() = true;
            Ok(())
        }),
    );
    let gate = Arc::new(AtomicBool::new(false));
    k.exec(
        Task::Spawn {
            name: "s".into(),
            init: "init".into(),
            args: Vec::new(),
            gate: gate.clone(),
        },
        &mut h,
    );
    assert!(!*ran.lock());
    assert_eq!(h.run.len(), 1, "re-queued behind the gate");
    gate.store(true, Ordering::Release);
    settle(&mut k, &mut h);
    assert!(*ran.lock());
}

#[test]
fn deliver_all_sees_handler_changes_made_during_a_run() {
    let (mut k, mut h) = kernel();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (l1, l2) = (log.clone(), log.clone());
    k.create_port(
        Str::from("p"),
        Some(Box::new(move |cx, m| {
            let i = m.get(1).and_then(Value::as_i64).unwrap();
            l1.lock().push(format!("d{i}"));
            if i == 1 {
                let lt = l1.clone();
                cx.rcv("t", move |_, m| {
                    lt.lock().push(format!("t{}", m.get(0).unwrap()));
                    Ok(())
                });
            }
            if i == 3 {
                let l3 = l1.clone();
                cx.rcv_default(move |cx, m| {
                    let i = m.get(1).and_then(Value::as_i64).unwrap();
                    l3.lock().push(format!("n{i}"));
                    if i == 6 {
                        cx.kil_self(Vec::<Value>::new());
                    }
                    Ok(())
                });
            }
            Ok(())
        })),
        Vec::new(),
    );
    k.create_port(
        Str::from("q"),
        Some(Box::new(move |_, m| {
            let i = m.get(1).and_then(Value::as_i64).unwrap();
            l2.lock().push(format!("q{i}"));
            if i == 9 {
                return Err("boom".into());
            }
            Ok(())
        })),
        Vec::new(),
    );
    let frames = [
        ("p", msg!["a", 0]),
        ("p", msg!["a", 1]),
        ("p", msg!["t", 2]),
        ("p", msg!["a", 3]),
        ("q", msg!["a", 4]),
        ("p", msg!["a", 5]),
        ("p", msg!["a", 6]),
        ("p", msg!["a", 7]),
        ("q", msg!["a", 8]),
    ];
    let frames = frames.into_iter().map(|(p, m)| (Str::from(p), m)).collect();
    k.deliver_all(frames, None, &mut h);
    settle(&mut k, &mut h);
    let want = ["d0", "d1", "t2", "d3", "q4", "n5", "n6", "q8"];
    assert_eq!(*log.lock(), want);
    assert!(!k.port_exists("p"), "killed by its handler during the run");
    // q's handler went back into its slot after the run; it fails on 9, which kills q
    // and drops what follows.
    let frames = [9, 10].map(|i| (Str::from("q"), msg!["a", i]));
    k.deliver_all(frames.into(), None, &mut h);
    assert_eq!(log.lock().last().map(String::as_str), Some("q9"));
    assert!(!k.port_exists("q"));
}
