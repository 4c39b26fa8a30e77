//! What the two- and three-process workloads share: re-executing this binary as another
//! node, and percentiles.

use crate::within;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child may take to print its `READY` line.
const START: Duration = Duration::from_secs(30);

/// How long a child may take to exit after its stdin closed before it is killed.
const GRACE: Duration = Duration::from_secs(5);

/// Ends the child process when dropped (end of workload, failure, panic): closes its stdin,
/// on which it exits by itself (so that a profiler such as callgrind running it can write
/// its output), and kills it if it is still there after [`GRACE`].
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            match self.0.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Ok(Some(_)) | Err(_) => break,
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this binary with `args` (and `env`), reads its first line, which must be
/// `READY <fields...>`, and returns the child with those fields. The child's stdin stays
/// open: children exit when it closes, so they never outlive this process.
pub async fn spawn_self(
    what: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> Result<(ChildGuard, Vec<String>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let stdout = child.stdout.take();
    // From here on the child is killed on every way out.
    let child = ChildGuard(child);
    let stdout = stdout.ok_or_else(|| format!("no stdout of {what}"))?;
    let line = within(
        START,
        &format!("waiting for {what}"),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await?
    .map_err(|e| format!("reading {what}: {e}"))?
    .map_err(|e| format!("reading {what}: {e}"))?;
    let mut fields = line.split_whitespace().map(str::to_string);
    match fields.next().as_deref() {
        Some("READY") => Ok((child, fields.collect())),
        _ => Err(format!("{what} said {line:?} instead of READY")),
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
