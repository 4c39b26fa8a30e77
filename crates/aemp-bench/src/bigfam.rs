//! `Dbig`: a database family with 100,000 subkeys (issue figures, not one of the standard
//! workloads): memory per entry on the global node, and how long the first `db_mon` call of
//! a slave takes (the full family travels in one `g_chg1`).

use crate::{result, within, BenchResult, Opts};
use aemp::{Config, Node};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);

fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
        * 4096
}

pub async fn dbig(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(100_000);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?.port()
    };
    let seed = format!("127.0.0.1:{port}");
    let secret = format!("dbig-{}", std::process::id());
    let cfg = |id: &str| {
        Config::builder()
            .norc(true)
            .nodeid(id)
            .binds([if id == "dbig-g" {
                seed.as_str()
            } else {
                "127.0.0.1:0"
            }])
            .seeds([seed.as_str()])
            .secret(secret.as_str())
            .framing_format([o.framing.as_str()])
            .build()
            .map_err(|e| e.to_string())
    };
    let g = Node::configure(cfg("dbig-g")?)
        .await
        .map_err(|e| e.to_string())?;
    // Settle the node (so its own start-up allocations are not counted), then fill.
    within(LIMIT, "warm-up", g.db_family("big"))
        .await?
        .map_err(|e| e.to_string())?;
    let before = rss_bytes();
    let t0 = Instant::now();
    for i in 0..n {
        g.db_set("big", &format!("k{i}"), i)
            .map_err(|e| e.to_string())?;
    }
    let keys = within(LIMIT, "db_keys", g.db_keys("big"))
        .await?
        .map_err(|e| e.to_string())?;
    let fill = t0.elapsed();
    if keys.len() as u64 != n {
        return Err(format!("Dbig: {} keys instead of {n}", keys.len()));
    }
    drop(keys);
    let per_entry = (rss_bytes() - before) as f64 / n as f64;
    eprintln!(
        "Dbig: {n} db_set on the global node took {:.3} s",
        fill.as_secs_f64()
    );
    result("Dbig", "rss_per_entry", per_entry.max(0.0), "bytes");

    let b = Node::configure(cfg("dbig-b")?)
        .await
        .map_err(|e| e.to_string())?;
    // B attaches to G as its master; the first query answers once it has.
    within(LIMIT, "B joins", b.db_keys("nothing"))
        .await?
        .map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let mut watch = b.db_mon("big").map_err(|e| e.to_string())?;
    let first = within(LIMIT, "first db_mon call", watch.next())
        .await?
        .ok_or("db_mon ended")?;
    let dt = t1.elapsed();
    if first.contents.len() as u64 != n || first.added.len() as u64 != n {
        return Err(format!(
            "Dbig: first db_mon call listed {} of {n} entries",
            first.contents.len()
        ));
    }
    result("Dbig", "db_mon_first_call", dt.as_secs_f64() * 1e3, "ms");
    Ok(())
}
