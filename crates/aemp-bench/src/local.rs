//! L1, L2, L3: workloads inside one node.

use crate::{result, within, BenchResult, Opts};
use aemp::{msg, Node};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);

/// L1: one sender snds `["msg", i]` to one local port, which counts.
pub async fn l1(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(2_000_000);
    let node = Node::new("bench/%u").map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let mut tx = Some(tx);
    let mut seen = 0u64;
    let counter = node
        .port()
        .on("msg", move |_cx, m| {
            // Check order as we go: message i must be the i-th to arrive.
            if m[0].as_u64() != Some(seen) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Err(format!("message {seen} arrived as {}", m[0])));
                }
                return Ok(());
            }
            seen += 1;
            if seen == n {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(())
        })
        .build();
    // The sender is a port of the same node, like the sending process of the Erlang
    // workload: it sends a chunk, then queues a "go" to itself, so the counter's handler runs
    // interleaved with it instead of after two million queued messages.
    const CHUNK: u64 = 128;
    let slot = Arc::new(parking_lot_free::Slot::default());
    let me = slot.clone();
    let target = counter.clone();
    let sender = node
        .port()
        .on("go", move |cx, m| {
            let from = m[0].as_u64().unwrap_or(n);
            let to = (from + CHUNK).min(n);
            for i in from..to {
                cx.snd(&target, msg!["msg", i]);
            }
            if to < n {
                let me = me.get().ok_or("sender unknown")?;
                cx.snd(&me, msg!["go", to]);
            }
            Ok(())
        })
        .build();
    slot.set(sender.clone());
    // Let the port creation run before the clock starts.
    node.port_count().await;
    let t0 = Instant::now();
    node.snd(&sender, msg!["go", 0u64])
        .map_err(|e| e.to_string())?;
    within(LIMIT, "L1", rx)
        .await?
        .map_err(|_| "counter port vanished".to_string())??;
    let dt = t0.elapsed().as_secs_f64();
    result("L1", "throughput", n as f64 / dt, "msg/s");
    Ok(())
}

/// L2: two local ports play ping-pong, one exchange at a time.
pub async fn l2(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(200_000);
    let node = Node::new("bench/%u").map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
    let mut tx = Some(tx);
    let ponger_slot: Arc<parking_lot_free::Slot> = Arc::new(parking_lot_free::Slot::default());
    let slot = ponger_slot.clone();
    // A answers every pong with the next ping until n round trips are done.
    let a = node
        .port()
        .on("pong", move |cx, m| {
            let i = m[0].as_u64().unwrap_or(u64::MAX);
            if i + 1 == n {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(i + 1);
                }
                return Ok(());
            }
            let b = slot.get().ok_or("ponger unknown")?;
            cx.snd(&b, msg!["ping", i + 1]);
            Ok(())
        })
        .build();
    let a2 = a.clone();
    let b = node
        .port()
        .on("ping", move |cx, m| {
            cx.snd(&a2, msg!["pong", m[0].clone()]);
            Ok(())
        })
        .build();
    ponger_slot.set(b.clone());
    node.port_count().await;
    let t0 = Instant::now();
    node.snd(&b, msg!["ping", 0]).map_err(|e| e.to_string())?;
    let done = within(LIMIT, "L2", rx)
        .await?
        .map_err(|_| "L2 port vanished")?;
    let dt = t0.elapsed().as_secs_f64();
    if done != n {
        return Err(format!("L2 completed {done} of {n} round trips"));
    }
    result("L2", "rtt_mean", dt * 1e6 / n as f64, "us");
    Ok(())
}

/// L3: create a port, snd it one message, kil it; repeat. Then RSS per live port.
pub async fn l3(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(200_000);
    let node = Node::new("bench/%u").map_err(|e| e.to_string())?;
    let handled = Arc::new(AtomicU64::new(0));
    node.port_count().await;
    let t0 = Instant::now();
    for i in 0..n {
        let h = handled.clone();
        let p = node.port_with(move |_cx, _m| {
            h.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        node.snd(&p, msg!["msg", i]).map_err(|e| e.to_string())?;
        node.kil(&p, Vec::new()).map_err(|e| e.to_string())?;
    }
    // Every command above is queued; this answers once all of them have run.
    let left = within(LIMIT, "L3", node.port_count()).await?;
    let dt = t0.elapsed().as_secs_f64();
    if left != 0 || handled.load(Ordering::Relaxed) != n {
        return Err(format!(
            "L3: {left} ports left alive, {} of {n} messages handled",
            handled.load(Ordering::Relaxed)
        ));
    }
    result("L3", "rate", n as f64 / dt, "ports/s");

    // RSS growth per live idle port is measured in a fresh process (`--l3-rss`), like the
    // Erlang figure: in this one, memory freed by the churn above (and by earlier workloads)
    // would be reused and hide the cost.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = tokio::process::Command::new(exe)
        .arg("--l3-rss")
        .output()
        .await
        .map_err(|e| format!("L3-RSS child: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let per: f64 = text
        .trim()
        .strip_prefix("RSS_PER_PORT ")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            format!(
                "L3-RSS child failed: {} {}",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    result("L3", "rss_per_port", per, "bytes");
    Ok(())
}

/// The `--l3-rss` child: RSS growth per live idle port with 100,000 ports, each with a small
/// handler closure, printed as `RSS_PER_PORT <bytes>`.
pub fn l3_rss_child() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let node = Node::new("bench/%u").map_err(|e| e.to_string())?;
        node.port_count().await;
        let live = 100_000u64;
        let mut ports = Vec::with_capacity(live as usize);
        let counter = Arc::new(AtomicU64::new(0));
        let before = rss_bytes();
        for i in 0..live {
            let c = counter.clone();
            ports.push(node.port_with(move |_cx, _m| {
                c.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }));
            // Created in steps, as a program would: the command queue holding a burst of
            // 100,000 creations is not memory of the ports.
            if i % 1000 == 999 {
                node.port_count().await;
            }
        }
        let count = within(LIMIT, "L3-RSS", node.port_count()).await?;
        let after = rss_bytes();
        if count as u64 != live {
            return Err(format!("L3-RSS: {count} ports alive, expected {live}"));
        }
        // The Vec of IDs was allocated before `before`; its pages are touched as it fills,
        // and it belongs to the benchmark, not to the ports: subtract it.
        let ids_bytes = (live as usize * std::mem::size_of::<aemp::PortId>()) as f64;
        let per = ((after - before) as f64 - ids_bytes) / live as f64;
        println!("RSS_PER_PORT {:.1}", per.max(0.0));
        drop(ports);
        Ok(())
    })
}

fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A set-once cell for a port ID (the ping port must know the pong port and vice versa).
mod parking_lot_free {
    use aemp::PortId;
    use std::sync::OnceLock;

    #[derive(Default)]
    pub struct Slot(OnceLock<PortId>);

    impl Slot {
        pub fn set(&self, p: PortId) {
            let _ = self.0.set(p);
        }
        pub fn get(&self) -> Option<PortId> {
            self.0.get().cloned()
        }
    }
}
