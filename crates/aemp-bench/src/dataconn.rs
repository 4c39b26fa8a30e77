//! DC1: bulk data over a data connection between two nodes in two processes, the figure to
//! compare with the raw TCP bulk limit of the machine (`rawtcp bulk`).
//!
//! Process A re-executes this binary with `--serve-dc <secret>`: node B listens on 127.0.0.1
//! (ephemeral port), registers the data connection init function `bench::sink`, prints
//! `READY <nodeid> <addr>` and serves until its stdin closes. A connects, opens a data
//! connection to `bench::sink`, writes `--count` MiB (default 1024) in 1 MiB writes, as
//! `rawtcp bulk` does, and closes its sending side; B reads everything and answers with the
//! byte count (8 bytes, little-endian). The time runs from A's first write to B's answer.

use crate::child::{spawn_self, ChildGuard};
use crate::{result, within, BenchResult, Opts};
use aemp::{Config, DataConn, Node, NodeId};
use std::io::Read;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(300);
const START: Duration = Duration::from_secs(30);
const CHUNK: usize = 1 << 20;
const SINK: &str = "bench::sink";

async fn node(nodeid: &str, secret: &str) -> Result<Node, String> {
    let cfg = Config::builder()
        .norc(true)
        .nodeid(nodeid)
        .binds(["127.0.0.1:0"])
        .secret(secret)
        .build()
        .map_err(|e| format!("config: {e}"))?;
    Node::configure(cfg)
        .await
        .map_err(|e| format!("configure: {e}"))
}

/// Reads `conn` to its end, then answers with the number of bytes read.
async fn sink(mut conn: DataConn) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    conn.write_all(&total.to_le_bytes()).await?;
    conn.shutdown().await
}

/// Entry point of the hidden `--serve-dc <secret>` mode: runs node B until stdin closes.
pub fn serve(secret: &str) -> Result<(), String> {
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let rt = crate::runtime(2).map_err(|e| format!("cannot start runtime: {e}"))?;
    rt.block_on(async {
        let node = node("bench-dc-b/%u", secret).await?;
        node.register_data_init(SINK, |conn, _args| {
            tokio::spawn(async move {
                if let Err(e) = sink(conn).await {
                    eprintln!("DC1 sink: {e}");
                }
            });
        });
        let addr = node
            .listen_addrs()
            .first()
            .copied()
            .ok_or("node B listens nowhere")?;
        println!("READY {} {addr}", node.id());
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// DC1: `--count` MiB (default 1024) through one data connection, in MiB/s.
pub async fn dc1(o: &Opts) -> BenchResult {
    let mib = o.count.unwrap_or(1024).max(1);
    let secret = aemp::config::generate_secret();
    let (_child, fields): (ChildGuard, Vec<String>) =
        spawn_self("node B", &["--serve-dc", &secret], &[]).await?;
    let [id, addr] = &fields[..] else {
        return Err(format!("node B announced {fields:?}"));
    };
    let id = NodeId::new(id).map_err(|e| e.to_string())?;
    let addr = addr.parse().map_err(|e| format!("address {addr}: {e}"))?;
    let a = node("bench-dc-a/%u", &secret).await?;
    a.connect(addr).map_err(|e| e.to_string())?;
    if !a.wait_up(&id, START).await {
        return Err(format!("node B ({id}) did not come up"));
    }
    let mut conn = within(
        START,
        "opening the data connection",
        a.data_conn(&id, SINK).start(),
    )
    .await?
    .map_err(|e| e.to_string())?;
    let chunk = vec![b'x'; CHUNK];
    let t0 = Instant::now();
    let answer = within(LIMIT, "DC1 bulk", async {
        for _ in 0..mib {
            conn.write_all(&chunk).await?;
        }
        conn.shutdown().await?;
        let mut count = [0u8; 8];
        conn.read_exact(&mut count).await?;
        Ok::<u64, std::io::Error>(u64::from_le_bytes(count))
    })
    .await?
    .map_err(|e| format!("DC1: {e}"))?;
    let dt = t0.elapsed().as_secs_f64();
    if answer != mib * CHUNK as u64 {
        return Err(format!(
            "DC1: B read {answer} of {} bytes",
            mib * CHUNK as u64
        ));
    }
    eprintln!("DC1: {mib} MiB in {dt:.3} s");
    result("DC1", "throughput", mib as f64 / dt, "MiB/s");
    Ok(())
}
