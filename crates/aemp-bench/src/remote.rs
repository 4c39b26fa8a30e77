//! R1, R2, R3, R4: workloads between two nodes in two processes.
//!
//! Process A (the measuring one) re-executes its own binary with `--serve-b <framing>
//! <secret>`; that process (B) creates a node listening on 127.0.0.1 with an ephemeral
//! port, prints `READY <nodeid> <addr> <counter> <pong> <echo> <bulk>` on stdout, and serves
//! until its stdin closes, so it never outlives A. A connects, runs the workload, and kills B
//! when it is done (also on failure, through [`ChildGuard`]).
//!
//! Every workload is driven from port handlers on A's dispatcher wherever it can be (the next
//! ping, the next `cal`, the next bulk message are sent from the handler that saw the
//! previous reply), so no cross-thread wake-up sits inside the measured loop; timestamps come
//! from the monotonic clock ([`Instant`]).

use crate::child::{pct, spawn_self, ChildGuard};
use crate::rate::{clk_tck, cpu_ticks};
use crate::{result, within, BenchResult, Opts};
use aemp::{msg, Config, Cx, Msg, Node, NodeId, PortId, Value};
use std::io::Read;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Upper bound for any single workload phase.
const LIMIT: Duration = Duration::from_secs(300);
/// How long B may take to start and to come up.
const START: Duration = Duration::from_secs(30);
/// The 48-character ASCII payload of R1.
const PAYLOAD48: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL";
/// R1: `snd`s between two `yield_now` of the sending task (see [`r1`] for the measurement
/// behind the choice).
const R1_CHUNK: u64 = 256;
/// R3: requests kept outstanding.
const R3_OUTSTANDING: u64 = 64;
/// R4: size of the string carried by each bulk message.
const BULK_BYTES: usize = 1 << 20;
/// R4: bulk messages A lets be in flight (sent but not yet acknowledged by B). Three keep
/// loopback busy while one is being handled by B and one acknowledged, and bound the bytes a
/// ping can find ahead of it to about 3 MiB. Measured on the 2-core VM (rawtcp bulk about
/// 3.5 GiB/s): window 2 gave 2.9-3.6 GiB/s with ping p99 1.0-1.7 ms, window 3 3.4-4.0 GiB/s
/// with p99 1.4-1.9 ms, window 4 pushed p99 past 2 ms. See [`r4`].
const R4_WINDOW: u64 = 3;

// ---- process B ------------------------------------------------------------------------

/// Entry point of the hidden `--serve-b <framing> <secret>` mode: runs node B until stdin
/// closes.
pub fn serve_b(framing: &str, secret: &str) -> Result<(), String> {
    // B dies with A: A holds the other end of our stdin.
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let rt = crate::runtime(crate::remote_workers())
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    rt.block_on(async {
        let node = networked_node("bench-b/%u", framing, secret).await?;
        let counter = node.port().default(counter_handler()).build();
        let pong = node.port().default(pong_handler()).build();
        let echo = node
            .port()
            .on("echo", |cx, m| {
                // m = [i, reply]: answer at once with ["echo", i].
                let reply = reply_port(&m)?;
                let i = m.get(0).cloned().unwrap_or_default();
                cx.snd(&reply, msg!["echo", i]);
                Ok(())
            })
            .build();
        let bulk = node.port().default(bulk_handler()).build();
        // The ports exist once the dispatcher has run the commands queued before this one.
        node.port_count().await;
        let addr = node
            .listen_addrs()
            .first()
            .copied()
            .ok_or("node B listens nowhere")?;
        println!(
            "READY {} {addr} {counter} {pong} {echo} {bulk}",
            node.id().as_str()
        );
        use std::io::Write;
        std::io::stdout()
            .flush()
            .map_err(|e| format!("stdout: {e}"))?;
        // Serve until the stdin watcher ends the process.
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// The last element of a message as a port ID (the reply port of a `cal`).
fn reply_port(m: &Msg) -> Result<PortId, String> {
    let last = m
        .as_slice()
        .last()
        .and_then(Value::as_str)
        .ok_or("no reply port")?;
    PortId::parse(last).map_err(|e| e.to_string())
}

/// B's R1 counter port: `["reset", n, notify]` arms it; then `["msg", i, payload48]` must
/// arrive for i = 0..n in order; after the last it snds `["done", n]` to `notify`, or
/// `["fail", text]` at the first message out of order.
fn counter_handler() -> impl FnMut(&mut Cx<'_>, Msg) -> aemp::HandlerResult + Send + 'static {
    let mut n = 0u64;
    let mut expected = 0u64;
    let mut notify: Option<PortId> = None;
    move |cx, m| {
        match m.tag() {
            Some("reset") => {
                n = m
                    .get(1)
                    .and_then(Value::as_u64)
                    .ok_or("reset without count")?;
                expected = 0;
                notify = Some(reply_port(&m)?);
            }
            Some("msg") => {
                // Borrowed, not cloned: a clone of the port ID per message would be the
                // benchmark's own allocation.
                let Some(to) = notify.as_ref() else {
                    return Ok(()); // Failed already, or never armed: ignore the rest.
                };
                let i = m.get(1).and_then(Value::as_u64);
                let len = m.get(2).and_then(Value::as_str).map(str::len);
                if i != Some(expected) || len != Some(PAYLOAD48.len()) {
                    let text = format!(
                        "message {expected} arrived as {:?} (payload length {len:?})",
                        i
                    );
                    cx.snd(to, msg!["fail", text]);
                    notify = None;
                    return Ok(());
                }
                expected += 1;
                if expected == n {
                    cx.snd(to, msg!["done", n]);
                    notify = None;
                }
            }
            _ => return Err("unexpected message on the counter port".into()),
        }
        Ok(())
    }
}

/// B's R2/R4 pong port: `["pongto", port]` sets where pongs go; `["ping", i]` is answered
/// with `["pong", i]`.
fn pong_handler() -> impl FnMut(&mut Cx<'_>, Msg) -> aemp::HandlerResult + Send + 'static {
    let mut to: Option<PortId> = None;
    move |cx, m| {
        match m.tag() {
            Some("pongto") => to = Some(reply_port(&m)?),
            Some("ping") => {
                let to = to.as_ref().ok_or("ping before pongto")?;
                cx.snd(to, msg!["pong", m.get(1).cloned().unwrap_or_default()]);
            }
            _ => return Err("unexpected message on the pong port".into()),
        }
        Ok(())
    }
}

/// B's R4 bulk port: `["reset", n, ack, notify]` arms it; every `["bulk", i, string]` (in
/// order, string of [`BULK_BYTES`]) is acknowledged with `["bulkack", i]` to `ack`; after
/// the n-th it snds `["bulkdone", n, bytes]` to `notify`, or `["fail", text]` at the first
/// bad message.
fn bulk_handler() -> impl FnMut(&mut Cx<'_>, Msg) -> aemp::HandlerResult + Send + 'static {
    let mut n = 0u64;
    let mut expected = 0u64;
    let mut bytes = 0u64;
    let mut notify: Option<PortId> = None;
    let mut ack: Option<PortId> = None;
    move |cx, m| {
        match m.tag() {
            Some("reset") => {
                n = m
                    .get(1)
                    .and_then(Value::as_u64)
                    .ok_or("reset without count")?;
                let port = |i: usize| {
                    let s = m
                        .get(i)
                        .and_then(Value::as_str)
                        .ok_or("reset without port")?;
                    PortId::parse(s).map_err(|e| e.to_string())
                };
                ack = Some(port(2)?);
                notify = Some(port(3)?);
                expected = 0;
                bytes = 0;
            }
            Some("bulk") => {
                let Some(to) = notify.clone() else {
                    return Ok(());
                };
                let i = m.get(1).and_then(Value::as_u64);
                let len = m.get(2).and_then(Value::as_str).map(str::len);
                if i != Some(expected) || len != Some(BULK_BYTES) {
                    let text = format!("bulk message {expected} arrived as {i:?} (length {len:?})");
                    cx.snd(&to, msg!["fail", text]);
                    notify = None;
                    return Ok(());
                }
                bytes += BULK_BYTES as u64;
                if let Some(ack) = &ack {
                    cx.snd(ack, msg!["bulkack", expected]);
                }
                expected += 1;
                if expected == n {
                    cx.snd(&to, msg!["bulkdone", n, bytes]);
                    notify = None;
                }
            }
            _ => return Err("unexpected message on the bulk port".into()),
        }
        Ok(())
    }
}

// ---- process A ------------------------------------------------------------------------

/// A node on 127.0.0.1 (ephemeral port) speaking only `framing`.
async fn networked_node(nodeid: &str, framing: &str, secret: &str) -> Result<Node, String> {
    let cfg = Config::builder()
        .norc(true)
        .nodeid(nodeid)
        .binds(["127.0.0.1:0"])
        .secret(secret)
        .framing_format([framing])
        .build()
        .map_err(|e| format!("config: {e}"))?;
    let node = Node::configure(cfg)
        .await
        .map_err(|e| format!("configure: {e}"))?;
    node.set_spin(crate::spin());
    Ok(node)
}

/// Node B as seen from A: its process, ID and the ports it announced.
pub(crate) struct Remote {
    /// Kept so that B is killed when the workload ends.
    pub(crate) child: ChildGuard,
    id: NodeId,
    addr: std::net::SocketAddr,
    counter: PortId,
    pong: PortId,
    pub(crate) echo: PortId,
    bulk: PortId,
}

/// The two nodes of a remote workload, connected and warmed up.
pub(crate) struct Pair {
    pub(crate) a: Node,
    pub(crate) b: Remote,
}

/// Starts process B and reads its READY line.
async fn start_b(framing: &str, secret: &str) -> Result<Remote, String> {
    // B runs with as many runtime threads as A.
    let workers = tokio::runtime::Handle::current()
        .metrics()
        .num_workers()
        .to_string();
    let (child, f) = spawn_self(
        "node B",
        &["--serve-b", framing, secret],
        &[
            ("AEMP_BENCH_WORKERS", workers),
            ("AEMP_BENCH_SPIN_US", crate::spin().as_micros().to_string()),
        ],
    )
    .await?;
    let [id, addr, counter, pong, echo, bulk] = &f[..] else {
        return Err(format!("node B said READY {f:?}"));
    };
    let port = |s: &str| PortId::parse(s).map_err(|e| format!("node B port {s}: {e}"));
    Ok(Remote {
        child,
        id: NodeId::new(id).map_err(|e| format!("node B id {id}: {e}"))?,
        addr: addr
            .parse()
            .map_err(|e| format!("node B address {addr}: {e}"))?,
        counter: port(counter)?,
        pong: port(pong)?,
        echo: port(echo)?,
        bulk: port(bulk)?,
    })
}

/// Starts B, creates A, connects them and does one warm-up round trip.
pub(crate) async fn pair(o: &Opts) -> Result<Pair, String> {
    let secret = aemp::config::generate_secret();
    let b = start_b(&o.framing, &secret).await?;
    let a = networked_node("bench-a/%u", &o.framing, &secret).await?;
    a.connect(b.addr).map_err(|e| e.to_string())?;
    if !a.wait_up(&b.id, START).await {
        return Err(format!("node B ({}) did not come up", b.id));
    }
    sync(&a, &b).await?;
    Ok(Pair { a, b })
}

/// One round trip to B's node port: everything A sent to B before has been handled by B
/// when this returns (one connection, handled in order).
async fn sync(a: &Node, b: &Remote) -> Result<(), String> {
    a.cal(&b.id.node_port(), msg!["time"])
        .timeout(START)
        .await
        .map(|_| ())
        .map_err(|e| format!("sync with node B: {e}"))
}

/// A one-shot result slot usable from an `FnMut` handler.
struct Once<T>(Option<oneshot::Sender<T>>);

impl<T> Once<T> {
    fn new() -> (Once<T>, oneshot::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        (Once(Some(tx)), rx)
    }
    fn send(&mut self, v: T) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(v);
        }
    }
}

/// A port on A that reports the first `done`/`bulkdone` (as its count) or `fail` message.
fn done_port(a: &Node, tag: &'static str) -> (PortId, oneshot::Receiver<Result<u64, String>>) {
    let (mut once, rx) = Once::new();
    let port = a
        .port()
        .default(move |_cx, m| {
            match m.tag() {
                Some(t) if t == tag => once.send(
                    m.get(1)
                        .and_then(Value::as_u64)
                        .ok_or(format!("{tag} without count")),
                ),
                Some("fail") => once.send(Err(format!(
                    "node B: {}",
                    m.get(1).cloned().unwrap_or_default()
                ))),
                _ => once.send(Err(format!("unexpected message {m:?}"))),
            }
            Ok(())
        })
        .build();
    (port, rx)
}

/// R1: A snds `["msg", i, payload48]` to B's counter port; time until `["done", n]`.
///
/// The sender is the `block_on` task on the main thread; A's connection writer runs on a
/// runtime worker. Every 256 messages the sender awaits `Node::writable` (fewer than 1 MiB
/// queued for B), the counterpart of Erlang suspending a sender on a busy distribution
/// buffer: without it the sender races ahead and the queue's fresh memory dominates.
///
/// Every message carries the same payload, like the Erlang/OTP counterpart's one binary: a
/// program-lifetime string in a [`Str::const_new`](aemp::Str::const_new), which a message
/// holds without allocating and the connection encodes from where it is. With
/// `AEMP_BENCH_R1_COPY=1` each message owns a fresh copy (an allocation and a copy per
/// message on A).
pub async fn r1(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(1_000_000);
    let p = pair(o).await?;
    let (done, rx) = done_port(&p.a, "done");
    p.a.snd(&p.b.counter, msg!["reset", n, done.as_str()])
        .map_err(|e| e.to_string())?;
    sync(&p.a, &p.b).await?;
    let copy = std::env::var("AEMP_BENCH_R1_COPY").is_ok_and(|v| v == "1");
    let shared = aemp::Str::const_new(PAYLOAD48);
    let bpid = p.b.child.0.id().to_string();
    let cpu0 = (cpu_ticks("self")?, cpu_ticks(&bpid)?);
    let t0 = Instant::now();
    for i in 0..n {
        let payload = if copy {
            aemp::Str::from(PAYLOAD48)
        } else {
            shared.clone()
        };
        p.a.snd(&p.b.counter, msg!["msg", i, aemp::Value::Str(payload)])
            .map_err(|e| e.to_string())?;
        if i % R1_CHUNK == R1_CHUNK - 1 {
            // Like a sending Erlang process on a busy distribution buffer: wait while more
            // than 1 MiB is queued for B, so memory stays warm instead of growing.
            p.a.writable(&p.b.id).await;
        }
    }
    let t_sent = t0.elapsed().as_secs_f64();
    let got = within(LIMIT, "R1", rx)
        .await?
        .map_err(|_| "R1 done port vanished".to_string())??;
    let dt = t0.elapsed().as_secs_f64();
    let cpu1 = (cpu_ticks("self")?, cpu_ticks(&bpid)?);
    if got != n {
        return Err(format!("R1: B reports {got} of {n} messages"));
    }
    // CPU time per message of both processes: unlike the wall clock, time the hypervisor
    // steals from the VM is not in it (on a noisy VM, the figure to compare builds by).
    let hz = clk_tck()?;
    let ns = |ticks: u64| ticks as f64 / hz * 1e9 / n as f64;
    let (a_ns, b_ns) = (ns(cpu1.0 - cpu0.0), ns(cpu1.1 - cpu0.1));
    eprintln!(
        "R1: {n} snds took {:.3} s, done after {dt:.3} s (framing {}); CPU per message: A {a_ns:.0} ns, B {b_ns:.0} ns; peak RSS: A {} MiB, B {} MiB",
        t_sent,
        o.framing,
        peak_rss_mib("self"),
        peak_rss_mib(&bpid)
    );
    result("R1", "throughput", n as f64 / dt, "msg/s");
    result("R1", "cpu_per_msg", a_ns + b_ns, "ns");
    Ok(())
}

/// Ping-pong driver on A: a port that, on `["start"]`, snds `["ping", 0]` to `pong` and,
/// on every `["pong", i]`, records the round trip and snds the next ping, until `n` round
/// trips are done. Resolves with the round-trip times in microseconds.
fn pinger(a: &Node, pong: PortId, n: u64) -> (PortId, oneshot::Receiver<Result<Vec<f64>, String>>) {
    let (mut once, rx) = Once::new();
    let mut rtts: Vec<f64> = Vec::with_capacity(n as usize);
    let mut sent_at = Instant::now();
    let mut next = 0u64;
    let port = a
        .port()
        .default(move |cx, m| {
            match m.tag() {
                Some("start") => {}
                Some("pong") => {
                    let rtt = sent_at.elapsed();
                    if m.get(1).and_then(Value::as_u64) != Some(next) {
                        once.send(Err(format!("pong {next} arrived as {m:?}")));
                        return Ok(());
                    }
                    rtts.push(rtt.as_secs_f64() * 1e6);
                    next += 1;
                    if next == n {
                        once.send(Ok(std::mem::take(&mut rtts)));
                        return Ok(());
                    }
                }
                _ => {
                    once.send(Err(format!("unexpected message {m:?}")));
                    return Ok(());
                }
            }
            sent_at = Instant::now();
            cx.snd(&pong, msg!["ping", next]);
            Ok(())
        })
        .build();
    (port, rx)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Sets up B's pong port to answer `port` and returns once B has seen that.
async fn arm_pong(p: &Pair, port: &PortId) -> BenchResult {
    p.a.snd(&p.b.pong, msg!["pongto", port.as_str()])
        .map_err(|e| e.to_string())?;
    sync(&p.a, &p.b).await
}

/// R2: remote ping-pong, one exchange at a time.
pub async fn r2(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(20_000).max(1);
    let p = pair(o).await?;
    let (ping, rx) = pinger(&p.a, p.b.pong.clone(), n);
    arm_pong(&p, &ping).await?;
    p.a.snd(&ping, msg!["start"]).map_err(|e| e.to_string())?;
    let rtts = within(LIMIT, "R2", rx)
        .await?
        .map_err(|_| "R2 ping port vanished".to_string())??;
    if rtts.len() as u64 != n {
        return Err(format!("R2: {} of {n} round trips", rtts.len()));
    }
    let mean = rtts.iter().sum::<f64>() / n as f64;
    let s = sorted(rtts);
    result("R2", "rtt_mean", mean, "us");
    result("R2", "p50", pct(&s, 0.50), "us");
    result("R2", "p99", pct(&s, 0.99), "us");
    Ok(())
}

/// State of R3, shared by the `cal` callbacks (which all run on A's dispatcher, one at a
/// time, so the lock is never contended).
struct R3State {
    n: u64,
    issued: u64,
    answered: u64,
    lat_us: Vec<f64>,
    done: Once<Result<Vec<f64>, String>>,
}

/// Issues request `i` of R3; its callback records the latency and issues the next one.
fn r3_issue(a: &Node, echo: &PortId, st: &Arc<Mutex<R3State>>, i: u64) {
    let (a2, echo2, st2) = (a.clone(), echo.clone(), st.clone());
    let t = Instant::now();
    // No timeout: the cal monitors the echo port instead (see `r3`).
    a.cal(echo, msg!["echo", i]).then(move |r| {
            let lat = t.elapsed().as_secs_f64() * 1e6;
            let Ok(mut s) = st2.lock() else { return };
            let ok = matches!(&r, Ok(m) if m.tag() == Some("echo") && m.get(1).and_then(Value::as_u64) == Some(i));
            if !ok {
                s.done.send(Err(format!("R3: request {i} got {r:?}")));
                return;
            }
            s.lat_us.push(lat);
            s.answered += 1;
            if s.answered == s.n {
                let lat = std::mem::take(&mut s.lat_us);
                s.done.send(Ok(lat));
            } else if s.issued < s.n {
                let next = s.issued;
                s.issued += 1;
                drop(s);
                r3_issue(&a2, &echo2, &st2, next);
            }
        });
}

/// R3: 64 outstanding `cal`s `["echo", i, reply]` against B's echo port.
///
/// Uses the callback form of `cal` without a timeout. The callback runs on A's dispatcher
/// inside the reply port's handler and issues the next request right there, so no task is
/// woken per request; 64 tasks awaiting `cal` futures measured about 40 % slower (a oneshot
/// and a task wake-up per request). Without a timeout the `cal` monitors the echo port, but
/// remote monitors are counted per port, so `mon1` goes out once when the first request
/// starts and `mon0` once after the last (the counters printed on stderr show it); with a
/// timeout, each `cal` spawns a timer task instead, which measured 10-40 % slower.
pub async fn r3(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(200_000).max(1);
    let p = pair(o).await?;
    let (done, rx) = Once::new();
    let st = Arc::new(Mutex::new(R3State {
        n,
        issued: 0,
        answered: 0,
        lat_us: Vec::with_capacity(n as usize),
        done,
    }));
    let first = n.min(R3_OUTSTANDING);
    if let Ok(mut s) = st.lock() {
        s.issued = first;
    }
    let t0 = Instant::now();
    for i in 0..first {
        r3_issue(&p.a, &p.b.echo, &st, i);
    }
    let lat = within(LIMIT, "R3", rx)
        .await?
        .map_err(|_| "R3 state vanished".to_string())??;
    let dt = t0.elapsed().as_secs_f64();
    if let Some(c) = p.a.counters() {
        use std::sync::atomic::Ordering::Relaxed;
        eprintln!(
            "R3: A received {} messages, wrote {} bytes for {n} requests",
            c.msgs_in.load(Relaxed),
            c.bytes_out.load(Relaxed)
        );
    }
    let s = sorted(lat);
    result("R3", "rate", n as f64 / dt, "req/s");
    result("R3", "p99", pct(&s, 0.99), "us");
    Ok(())
}

/// R4's flow control between the builder thread and the ack handler: messages built but
/// not yet allowed out (`ready`, at most [`R4_READY`]), and sends allowed but not yet made
/// for lack of a built message (`owed`). Invariant: one of the two is always empty.
struct R4Flow {
    a: Node,
    bulk: PortId,
    state: std::sync::Mutex<R4State>,
    /// Signalled when `ready` shrinks, for the builder waiting for room.
    room: std::sync::Condvar,
}

#[derive(Default)]
struct R4State {
    ready: std::collections::VecDeque<Msg>,
    owed: u64,
}

/// R4: messages the builder makes ahead of the acks that will let them out.
const R4_READY: usize = 2;

impl R4Flow {
    fn new(a: Node, bulk: PortId) -> R4Flow {
        R4Flow {
            a,
            bulk,
            state: std::sync::Mutex::new(R4State::default()),
            room: std::sync::Condvar::new(),
        }
    }

    /// Allows `k` more sends (the initial window).
    fn grant(&self, k: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.owed += k;
        }
    }

    /// An ack: send a ready message now, or owe one.
    fn permit(&self) {
        let Ok(mut s) = self.state.lock() else { return };
        match s.ready.pop_front() {
            Some(m) => {
                drop(s);
                self.room.notify_one();
                let _ = self.a.snd(&self.bulk, m);
            }
            None => s.owed += 1,
        }
    }

    /// A built message: out at once if a send is owed, else kept ready (waiting while
    /// [`R4_READY`] are).
    fn offer(&self, m: Msg) -> Result<(), String> {
        let mut s = self.state.lock().map_err(|_| "R4 flow poisoned")?;
        loop {
            if s.owed > 0 {
                s.owed -= 1;
                drop(s);
                return self.a.snd(&self.bulk, m).map_err(|e| e.to_string());
            }
            if s.ready.len() < R4_READY {
                s.ready.push_back(m);
                return Ok(());
            }
            let (g, timeout) = self
                .room
                .wait_timeout(s, LIMIT)
                .map_err(|_| "R4 flow poisoned")?;
            if timeout.timed_out() {
                return Err("R4: no ack from B in time".to_string());
            }
            s = g;
        }
    }
}

/// R4: 2,000 messages of 1 MiB to B while R2 runs 2,000 round trips on the same connection.
///
/// Every message carries the same payload, shared and not copied, as the Erlang/OTP
/// counterpart sends one binary and raw TCP writes one buffer: a string that lives for the
/// whole program goes into a message with [`Str::const_new`](aemp::Str::const_new) at no
/// cost, and the connection writes it from where it is. With `AEMP_BENCH_R4_COPY=1` each
/// message owns a fresh copy instead (one more 1 MiB copy per message, in a thread of its
/// own).
///
/// A keeps [`R4_WINDOW`] bulk messages in flight: every `bulkack` from B lets it snd one
/// more. A builder thread makes the messages ahead of time, beside A's dispatcher; the ack
/// handler on the dispatcher sends the next message itself when one is ready (no thread
/// wake-up on the critical path), and when none is, the builder sends it as soon as it is
/// made ([`R4Flow`]). A sender that queued all 2 GiB at once would not block either, but
/// every ping would then wait behind everything queued before it (hundreds of
/// milliseconds), and A would hold the whole transfer in memory.
pub async fn r4(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(2_000).max(1);
    let p = pair(o).await?;
    let (ping, ping_rx) = pinger(&p.a, p.b.pong.clone(), n);
    arm_pong(&p, &ping).await?;
    let (done, done_rx) = done_port(&p.a, "bulkdone");
    let flow = Arc::new(R4Flow::new(p.a.clone(), p.b.bulk.clone()));
    let acks = {
        let flow = flow.clone();
        p.a.port()
            .on("bulkack", move |_cx, _m| {
                flow.permit();
                Ok(())
            })
            .build()
    };
    p.a.snd(&p.b.bulk, msg!["reset", n, acks.as_str(), done.as_str()])
        .map_err(|e| e.to_string())?;
    sync(&p.a, &p.b).await?;

    let template: String = (0..BULK_BYTES)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let copy = std::env::var("AEMP_BENCH_R4_COPY").is_ok_and(|v| v == "1");
    // Lives as long as the process, like the template of the Erlang counterpart.
    let shared: &'static str = Box::leak(template.into_boxed_str());
    // The first window's worth of sends is owed from the start.
    flow.grant(R4_WINDOW.min(n));
    let t0 = Instant::now();
    p.a.snd(&ping, msg!["start"]).map_err(|e| e.to_string())?;
    let builder = {
        let flow = flow.clone();
        std::thread::spawn(move || -> Result<(), String> {
            for i in 0..n {
                let payload = if copy {
                    aemp::Str::from(shared)
                } else {
                    aemp::Str::const_new(shared)
                };
                flow.offer(msg!["bulk", i, aemp::Value::Str(payload)])?;
            }
            Ok(())
        })
    };
    let got = within(LIMIT, "R4 bulk", done_rx)
        .await?
        .map_err(|_| "R4 done port vanished".to_string())??;
    let dt = t0.elapsed().as_secs_f64();
    builder
        .join()
        .map_err(|_| "R4 builder thread panicked".to_string())??;
    if got != n {
        return Err(format!("R4: B reports {got} of {n} bulk messages"));
    }
    let rtts = within(LIMIT, "R4 ping-pong", ping_rx)
        .await?
        .map_err(|_| "R4 ping port vanished".to_string())??;
    let s = sorted(rtts);
    eprintln!(
        "R4: bulk done after {dt:.3} s; ping-pong p50 {:.1} us, max {:.1} us",
        pct(&s, 0.5),
        pct(&s, 1.0)
    );
    result(
        "R4",
        "throughput",
        (n as f64 * BULK_BYTES as f64 / (1 << 20) as f64) / dt,
        "MiB/s",
    );
    result("R4", "rtt_p99", pct(&s, 0.99), "us");
    Ok(())
}

/// Resident set size of process `pid` ("self" for this one), from `/proc/<pid>/statm`.
fn rss_of(pid: &str) -> Result<i64, String> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .map_err(|e| format!("/proc/{pid}/statm: {e}"))?;
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/statm: unexpected {statm:?}"))?;
    Ok(pages * 4096)
}

/// Peak resident set size (`VmHWM`) of process `pid` in MiB, or -1 if unknown.
fn peak_rss_mib(pid: &str) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(-1, |kb| kb / 1024)
}

/// Sends `signal` (`STOP`, `CONT`) to process `pid` with kill(1) (no libc binding needed).
fn signal(pid: u32, signal: &str) -> BenchResult {
    let st = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .map_err(|e| format!("kill -{signal}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid}: {st}"))
    }
}

/// `Rmem` (not a standard workload, opt-in): memory per idle connection and per message
/// queued for a node that does not read. Prints on stderr only.
///
/// * Idle connection: RSS of A and of B before and after 50 extra nodes in A connect to B
///   (the nodes are created before the first measurement, so only the connections count).
/// * Queued message: B is stopped (SIGSTOP), A snds 1,000,000 `["msg", i, payload48]` to
///   it; once A's dispatcher has run them all (they are then encoded in the connection's
///   write buffer, apart from the few MB the socket takes), RSS growth / 1,000,000.
pub async fn rmem(o: &Opts) -> BenchResult {
    const CONNS: usize = 50;
    let p = pair(o).await?;
    let bpid = p.b.child.0.id();
    let idle_id = |i: usize| format!("bench-idle{i}/%u");
    // The extra nodes need B's secret: B was started with a secret only `pair` knows, so
    // start a dedicated B for this part.
    let secret = aemp::config::generate_secret();
    let b2 = start_b(&o.framing, &secret).await?;
    let b2pid = b2.child.0.id().to_string();
    let mut nodes = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        nodes.push(networked_node(&idle_id(i), &o.framing, &secret).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (a0, b0) = (rss_of("self")?, rss_of(&b2pid)?);
    for n in &nodes {
        n.connect(b2.addr).map_err(|e| e.to_string())?;
    }
    for n in &nodes {
        if !n.wait_up(&b2.id, START).await {
            return Err(format!("{} did not connect to B", n.id()));
        }
        sync(n, &b2).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (a1, b1) = (rss_of("self")?, rss_of(&b2pid)?);
    eprintln!(
        "MEMORY per idle connection ({CONNS} connections, framing {}): dialling side {} bytes, accepting side {} bytes",
        o.framing,
        (a1 - a0) / CONNS as i64,
        (b1 - b0) / CONNS as i64
    );
    drop(nodes);
    drop(b2);

    let n = o.count.unwrap_or(1_000_000);
    signal(bpid, "STOP")?;
    let r = async {
        let before = rss_of("self")?;
        for i in 0..n {
            p.a.snd(&p.b.counter, msg!["msg", i, PAYLOAD48])
                .map_err(|e| e.to_string())?;
        }
        // Answers once the dispatcher has run every snd above.
        p.a.port_count().await;
        let after = rss_of("self")?;
        let written = p
            .a
            .counters()
            .map(|c| c.bytes_out.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0);
        eprintln!(
            "MEMORY per queued message ({n} messages for a stopped node, framing {}): {:.1} bytes of RSS \
             ({written} bytes had left through the socket)",
            o.framing,
            (after - before) as f64 / n as f64
        );
        Ok::<(), String>(())
    }
    .await;
    let _ = signal(bpid, "CONT");
    r
}
