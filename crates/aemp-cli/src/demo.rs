//! `aemp demo`: a small network in one process, narrated on stdout.
//!
//! N nodes listen on 127.0.0.1 (ephemeral ports) with a fresh random secret, are linked
//! into a full mesh with `Node::connect`, and each gets a service port. Then, all over TCP:
//! a chat round (every node greets the next one), round trips from the first node (the
//! coordinator) to every other node's service and node port, a throughput run that fills
//! the remaining time, and finally a monitor that fires with `transport_error` when the
//! last node is shut down.

use crate::{failed, json_body, Failure, NET_TIMEOUT};
use aemp::config::{format_hostport, generate_secret};
use aemp::{msg, Config, HandlerError, Msg, Node, PortId, Value};
use std::future::IntoFuture;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Messages per batch in the throughput run; with one batch in flight while the next is
/// sent, at most two batches per peer are queued anywhere.
const BATCH: u64 = 1000;
/// Round trips per peer for the latency figures.
const PINGS: u32 = 20;
/// Time kept for the monitor phase and the shutdown at the end.
const RESERVE: Duration = Duration::from_millis(250);
/// The shortest throughput run, however small `--seconds` is.
const MIN_BLAST: Duration = Duration::from_millis(100);
/// Print one line per link only up to this many links.
const MAX_LINK_LINES: usize = 10;

/// `demo` options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DemoOptions {
    /// Number of nodes (2..=32).
    pub nodes: usize,
    /// Approximate total run time.
    pub seconds: f64,
}

impl DemoOptions {
    /// Parses `[--nodes N] [--seconds S]` (also `--nodes=N`).
    pub(crate) fn parse(args: &[String]) -> Result<DemoOptions, Failure> {
        let mut o = DemoOptions {
            nodes: 3,
            seconds: 3.0,
        };
        let usage = |m: String| Failure::Usage(format!("demo: {m}"));
        let mut i = 0;
        while i < args.len() {
            let (key, inline) = match args[i].split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (args[i].as_str(), None),
            };
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| usage(format!("{key} needs a value")))?
                }
            };
            match key {
                "--nodes" => {
                    o.nodes = value
                        .parse()
                        .ok()
                        .filter(|n| (2..=32).contains(n))
                        .ok_or_else(|| usage(format!("--nodes must be 2 to 32, not {value:?}")))?
                }
                "--seconds" => {
                    o.seconds = value
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                        .ok_or_else(|| {
                            usage(format!(
                                "--seconds must be a number in (0, 3600], not {value:?}"
                            ))
                        })?
                }
                other => return Err(usage(format!("unknown option {other:?}"))),
            }
            i += 1;
        }
        Ok(o)
    }
}

/// Timestamps the narration relative to the start of the demo.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn say(&self, text: impl std::fmt::Display) {
        println!("[{:7.3}s] {text}", self.0.elapsed().as_secs_f64());
    }
}

/// One demo node with its service port.
struct Member {
    node: Node,
    service: PortId,
}

/// Runs the demo.
pub(crate) async fn run(o: DemoOptions) -> Result<(), Failure> {
    let clock = Clock(Instant::now());
    let total = Duration::from_secs_f64(o.seconds);
    clock.say(format!(
        "aemp demo: {} nodes on 127.0.0.1 with a random secret, about {} s",
        o.nodes, o.seconds
    ));
    let secret = generate_secret();
    let mut members = Vec::with_capacity(o.nodes);
    for i in 1..=o.nodes {
        let cfg = Config::builder()
            .norc(true)
            .nodeid(format!("node{i}"))
            .binds(["127.0.0.1:0"])
            .secret(secret.clone())
            .build()
            .map_err(|e| failed(format!("demo configuration: {e}")))?;
        let node = Node::configure(cfg)
            .await
            .map_err(|e| failed(format!("cannot start node{i}: {e}")))?;
        let service = service_port(&node, clock);
        let addrs: Vec<String> = node.listen_addrs().iter().map(format_hostport).collect();
        clock.say(format!(
            "started {} listening on {}, service port {}",
            node.id(),
            addrs.join(" "),
            service
        ));
        members.push(Member { node, service });
    }
    let result = scenario(&members, clock, total).await;
    for m in &members {
        m.node.shutdown().await;
    }
    result?;
    clock.say("demo finished");
    Ok(())
}

async fn scenario(members: &[Member], clock: Clock, total: Duration) -> Result<(), Failure> {
    link(members, clock).await?;
    chat(members).await?;
    let coordinator = &members[0];
    let peers = &members[1..];
    for p in peers {
        ping(&coordinator.node, p, clock).await?;
    }
    let until = (clock.0 + total)
        .checked_sub(RESERVE)
        .filter(|u| *u > Instant::now() + MIN_BLAST)
        .unwrap_or_else(|| Instant::now() + MIN_BLAST);
    throughput(&coordinator.node, peers, until, clock).await?;
    monitor_shutdown(&coordinator.node, members, clock).await
}

/// A service port: `ping` → `pong`, `say` prints and acknowledges, `count` counts, `sync`
/// replies with the count. Requests that expect a reply carry the reply port last (cal).
fn service_port(node: &Node, clock: Clock) -> PortId {
    let mut counted: u64 = 0;
    node.port_with(move |cx, m| {
        match m.tag() {
            Some("count") => counted += 1,
            Some("sync") => {
                let r = reply_port(&m)?;
                cx.snd(&r, msg!["synced", counted]);
            }
            Some("ping") => {
                let r = reply_port(&m)?;
                cx.snd(&r, msg!["pong", cx.node_id().as_str()]);
            }
            Some("say") => {
                let text = m.get(1).and_then(Value::as_str).unwrap_or_default();
                clock.say(format!(
                    "chat: {} got {text:?} from {}",
                    cx.node_id(),
                    cx.src_node()
                ));
                let r = reply_port(&m)?;
                cx.snd(&r, msg!["ack"]);
            }
            // Returning an error kills the port: monitors would see ("die", text).
            _ => return Err(format!("unknown request {m}").into()),
        }
        Ok(())
    })
}

fn reply_port(m: &Msg) -> Result<PortId, HandlerError> {
    let s = m
        .as_slice()
        .last()
        .and_then(Value::as_str)
        .ok_or("request without reply port")?;
    Ok(PortId::parse(s)?)
}

/// Connects every pair of nodes once and waits until all links are up on both sides.
async fn link(members: &[Member], clock: Clock) -> Result<(), Failure> {
    let started = Instant::now();
    let mut pairs = Vec::new();
    for (i, a) in members.iter().enumerate() {
        for b in &members[i + 1..] {
            for addr in b.node.listen_addrs() {
                a.node.connect(addr).map_err(failed)?;
            }
            pairs.push((a, b));
        }
    }
    let verbose = pairs.len() <= MAX_LINK_LINES;
    for (a, b) in &pairs {
        let up = a.node.wait_up(b.node.id(), NET_TIMEOUT).await
            && b.node.wait_up(a.node.id(), NET_TIMEOUT).await;
        if !up {
            return Err(failed(format!(
                "{} and {} did not connect within {} s",
                a.node.id(),
                b.node.id(),
                NET_TIMEOUT.as_secs()
            )));
        }
        if verbose {
            clock.say(format!(
                "link {} <-> {} up (authenticated with the shared secret)",
                a.node.id(),
                b.node.id()
            ));
        }
    }
    clock.say(format!(
        "full mesh up: {} links in {:.1} ms",
        pairs.len(),
        started.elapsed().as_secs_f64() * 1e3
    ));
    Ok(())
}

/// Every node greets the next one (the last greets the first) with a `say` request.
async fn chat(members: &[Member]) -> Result<(), Failure> {
    let n = members.len();
    let mut calls = Vec::with_capacity(n);
    for (i, m) in members.iter().enumerate() {
        let to = &members[(i + 1) % n];
        let text = format!("hello from {}", m.node.id());
        calls.push((
            to,
            tokio::time::timeout(NET_TIMEOUT, m.node.cal(&to.service, msg!["say", text])),
        ));
    }
    for (to, call) in calls {
        match call.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(failed(format!("chat to {}: {e}", to.node.id()))),
            Err(_) => return Err(failed(format!("chat to {}: no answer", to.node.id()))),
        }
    }
    Ok(())
}

/// Round trips from `from` to `to`'s service port, then a `time` request to its node port.
async fn ping(from: &Node, to: &Member, clock: Clock) -> Result<(), Failure> {
    let mut rtts = Vec::with_capacity(PINGS as usize);
    for _ in 0..PINGS {
        let t = Instant::now();
        let r = tokio::time::timeout(NET_TIMEOUT, from.cal(&to.service, msg!["ping"]))
            .await
            .map_err(|_| failed(format!("ping {}: no reply", to.service)))?
            .map_err(|e| failed(format!("ping {}: {e}", to.service)))?;
        rtts.push(t.elapsed());
        if r.tag() != Some("pong") {
            return Err(failed(format!("ping {}: unexpected reply {r}", to.service)));
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let min = rtts.iter().min().copied().unwrap_or_default();
    let max = rtts.iter().max().copied().unwrap_or_default();
    let avg = rtts.iter().sum::<Duration>() / PINGS;
    clock.say(format!(
        "ping {} from {}: {PINGS} round trips, min {:.3} ms, avg {:.3} ms, max {:.3} ms",
        to.node.id(),
        from.id(),
        ms(min),
        ms(avg),
        ms(max)
    ));
    let node_port = to.node.node_port();
    let t = Instant::now();
    let r = tokio::time::timeout(NET_TIMEOUT, from.cal(&node_port, msg!["time"]))
        .await
        .map_err(|_| failed(format!("time request to {node_port}: no reply")))?
        .map_err(|e| failed(format!("time request to {node_port}: {e}")))?;
    clock.say(format!(
        "node port request [\"time\"] to {node_port}: reply {} in {:.3} ms",
        json_body(r.as_slice()),
        ms(t.elapsed())
    ));
    Ok(())
}

/// Sends `count` messages to every peer's service until `until`, in batches confirmed by a
/// `sync` round trip, and reports the delivered messages per second.
async fn throughput(
    from: &Node,
    peers: &[Member],
    until: Instant,
    clock: Clock,
) -> Result<(), Failure> {
    clock.say(format!(
        "throughput: {} streams {} -> peers for {:.2} s, batches of {BATCH} messages",
        peers.len(),
        from.id(),
        until
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    ));
    let bytes_before = from.counters().map(|c| c.bytes_out.load(Ordering::Relaxed));
    let started = Instant::now();
    let tasks: Vec<_> = peers
        .iter()
        .map(|p| {
            let node = from.clone();
            let port = p.service.clone();
            (p, tokio::spawn(blast(node, port, until)))
        })
        .collect();
    let mut total = 0u64;
    for (p, task) in tasks {
        let (delivered, took) = task
            .await
            .map_err(|e| failed(format!("throughput task: {e}")))??;
        total += delivered;
        clock.say(format!(
            "  {} -> {}: {delivered} messages delivered in {:.2} s = {} msg/s",
            from.id(),
            p.node.id(),
            took.as_secs_f64(),
            rate(delivered, took)
        ));
    }
    let took = started.elapsed();
    let mb = match (bytes_before, from.counters()) {
        (Some(b), Some(c)) => {
            format!(
                ", {:.1} MB sent",
                (c.bytes_out.load(Ordering::Relaxed) - b) as f64 / 1e6
            )
        }
        _ => String::new(),
    };
    clock.say(format!(
        "throughput total: {total} messages = {} msg/s{mb}",
        rate(total, took)
    ));
    Ok(())
}

/// One stream: a batch, then a `sync`; the previous batch's `sync` is awaited while the
/// next batch is on its way. Returns how many messages the peer counted, and the time.
async fn blast(node: Node, port: PortId, until: Instant) -> Result<(u64, Duration), Failure> {
    let started = Instant::now();
    let mut pending = None;
    let mut counted = 0;
    let mut sent = 0u64;
    let synced = |r: Result<Msg, aemp::CalError>| -> Result<u64, Failure> {
        let r = r.map_err(|e| failed(format!("sync with {port}: {e}")))?;
        r.get(1)
            .and_then(Value::as_u64)
            .ok_or_else(|| failed(format!("sync with {port}: unexpected reply {r}")))
    };
    loop {
        node.snd_many(&port, (sent..sent + BATCH).map(|i| msg!["count", i]))
            .map_err(failed)?;
        sent += BATCH;
        // IntoFuture sends the request now; the reply is awaited after the next batch.
        let next = tokio::time::timeout(NET_TIMEOUT, node.cal(&port, msg!["sync"]).into_future());
        if let Some(prev) = pending.replace(next) {
            counted = synced(
                prev.await
                    .map_err(|_| failed(format!("sync with {port}: no reply")))?,
            )?;
        }
        if Instant::now() >= until {
            break;
        }
    }
    if let Some(last) = pending {
        counted = synced(
            last.await
                .map_err(|_| failed(format!("sync with {port}: no reply")))?,
        )?;
    }
    Ok((counted, started.elapsed()))
}

/// The coordinator monitors the last node's service port; the last node shuts down; the
/// monitor fires with `transport_error`.
async fn monitor_shutdown(
    coordinator: &Node,
    members: &[Member],
    clock: Clock,
) -> Result<(), Failure> {
    let Some(victim) = members.last() else {
        return Ok(());
    };
    let died = coordinator.monitor(&victim.service);
    // A round trip after the monitor request: the monitor is registered on both sides
    // before the node goes away.
    tokio::time::timeout(NET_TIMEOUT, coordinator.cal(&victim.service, msg!["ping"]))
        .await
        .map_err(|_| failed("ping before shutdown: no reply"))?
        .map_err(failed)?;
    clock.say(format!(
        "{} monitors {}; shutting down {}",
        coordinator.id(),
        victim.service,
        victim.node.id()
    ));
    let t = Instant::now();
    victim.node.shutdown().await;
    let reason = tokio::time::timeout(NET_TIMEOUT, died)
        .await
        .map_err(|_| failed("the monitor did not fire"))?;
    clock.say(format!(
        "monitor fired after {:.1} ms with reason [{}]",
        t.elapsed().as_secs_f64() * 1e3,
        json_body(&reason)
    ));
    Ok(())
}

/// `n` per `d` as a short human-readable rate.
fn rate(n: u64, d: Duration) -> String {
    let r = n as f64 / d.as_secs_f64().max(1e-9);
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options() {
        assert_eq!(
            DemoOptions::parse(&[]).unwrap(),
            DemoOptions {
                nodes: 3,
                seconds: 3.0
            }
        );
        assert_eq!(
            DemoOptions::parse(&argv(&["--nodes", "5", "--seconds=0.5"])).unwrap(),
            DemoOptions {
                nodes: 5,
                seconds: 0.5
            }
        );
        for bad in [
            &["--nodes", "1"][..],
            &["--nodes"],
            &["--seconds", "0"],
            &["--seconds", "nan"],
            &["--fast"],
        ] {
            assert!(DemoOptions::parse(&argv(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(rate(500, Duration::from_secs(1)), "500");
        assert_eq!(rate(2500, Duration::from_millis(500)), "5.0k");
        assert_eq!(rate(3_000_000, Duration::from_secs(1)), "3.00M");
    }
}
