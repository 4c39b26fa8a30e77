//! R5: CPU cost per request and latency at fixed request rates (open loop).
//!
//! Node A (this process) sends `cal`s `["echo", i, reply]` to B's echo port (the one R3
//! uses) on a fixed schedule, whatever the replies do: every millisecond, `rate / 1000`
//! requests fall due (1, 10 or 100 at 1k, 10k and 100k req/s). A generator task on A's own
//! runtime (the thread that runs A's dispatcher and connections) sleeps until the next
//! millisecond is due and then issues that millisecond's requests back to back; when it is
//! late (descheduled, or the system cannot keep up) it issues every overdue millisecond at
//! once. It sleeps on a `timerfd` registered with the runtime's reactor: tokio's own timers
//! round to whole milliseconds, and a generator on a thread of its own would add a
//! cross-thread wake-up to every request that the Erlang/OTP counterpart (one process on
//! A's scheduler, woken by `erlang:send_after`) does not have.
//!
//! Each request's latency runs from its *scheduled* time (the nominal millisecond) until its
//! reply callback runs on A, so a sender that falls behind shows up in the latency instead
//! of silently lowering the rate (no coordinated omission). The same millisecond schedule is
//! used by the Erlang/OTP counterpart in `bench/erlang/`.
//!
//! CPU: user + system time of both processes (A, with its generator, and B) from
//! `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of `getconf CLK_TCK`, usually
//! 1/100 s), read just before the first scheduled millisecond and after the last reply.
//! Figures per rate (`1k`, `10k`, `100k`): `cpu_per_mreq` (CPU seconds of both processes per
//! million requests), `p50` and `p99` latency in microseconds, and `achieved_rate`
//! (requests / time from the start of the first scheduled millisecond to the last reply,
//! at least the schedule's length), which stays at the nominal rate only if the pair kept
//! up. A wrong reply, a lost reply (none within
//! 30 s after the schedule ended) or a failed `cal` fails the workload.

use crate::child::pct;
use crate::remote::{pair, Pair};
use crate::{result, within, BenchResult, Opts};
use aemp::{msg, Value};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;

/// The rates of R5 in requests per second.
pub const RATES: &[u64] = &[1_000, 10_000, 100_000];
/// How long each rate runs unless `--duration` says otherwise.
const DEFAULT_SECS: f64 = 10.0;
/// How long the last replies may take after the schedule ended.
const DRAIN: Duration = Duration::from_secs(30);
/// The schedule's granularity: requests fall due once per millisecond.
const TICK: Duration = Duration::from_millis(1);

/// Accumulated user + system CPU time of process `pid` ("self" for this one) in clock ticks
/// (time the hypervisor stole from the VM is not in it).
pub(crate) fn cpu_ticks(pid: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) is in parentheses and may contain spaces: count the
    // fields after its closing one. There, index 0 is field 3 (state), so utime (field 14)
    // is index 11 and stime (field 15) index 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: unexpected {stat:?}"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64, String> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{path}: no field {}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
pub(crate) fn clk_tck() -> Result<f64, String> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|e| format!("getconf CLK_TCK: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .map(|n| n as f64)
        .ok_or_else(|| "getconf CLK_TCK: no number".to_string())
}

/// A one-shot CLOCK_MONOTONIC `timerfd` watched by the runtime's reactor: a task sleeps
/// until an instant with microsecond precision, on the runtime's own thread. (Linux gives a
/// timerfd no timer slack, unlike the 50 us default of a thread's sleeps.)
struct PreciseTimer(AsyncFd<OwnedFd>);

impl PreciseTimer {
    fn new() -> io::Result<PreciseTimer> {
        // SAFETY: timerfd_create takes two integer arguments and returns a new descriptor
        // (or -1), which is owned from here on.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an OwnedFd stays open and returns the same descriptor until it is
        // dropped, which is when the AsyncFd that owns it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(PreciseTimer(fd))
    }

    /// Sleeps until `deadline` (returns at once if it has passed).
    async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        let rel = deadline.saturating_duration_since(Instant::now());
        if rel.is_zero() {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: rel.as_secs() as libc::time_t,
                tv_nsec: rel.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the descriptor is open (owned by self); `spec` is a valid itimerspec and
        // the old value is not asked for (null).
        let r =
            unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut ready = self.0.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a buffer of 8 from the open descriptor.
            let n = unsafe { libc::read(self.0.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
            if n == 8 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            ready.clear_ready();
        }
    }
}

/// `1000` → `1k`, `100000` → `100k`.
fn label(rate: u64) -> String {
    if rate.is_multiple_of(1000) {
        format!("{}k", rate / 1000)
    } else {
        rate.to_string()
    }
}

/// What the reply callbacks share (they run on A's dispatcher one at a time; the lock is
/// taken by one callback at a time and never by the generator).
struct State {
    n: u64,
    answered: u64,
    lat_us: Vec<f64>,
    /// Fires with the time of the last reply, or the first failure.
    done: Option<oneshot::Sender<Result<Instant, String>>>,
}

impl State {
    fn finish(&mut self, r: Result<Instant, String>) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(r);
        }
    }
}

/// One run at `rate` for `ticks` milliseconds. Returns the latencies (sorted, in
/// microseconds), the elapsed time until the last reply, the CPU seconds of both processes,
/// and the generator's lateness per millisecond (sorted, microseconds).
struct Run {
    lat_us: Vec<f64>,
    elapsed: Duration,
    cpu_s: f64,
    lag_us: Vec<f64>,
}

async fn run(p: &Pair, rate: u64, ticks: u64, hz: f64) -> Result<Run, String> {
    let per_tick = (rate / 1000).max(1);
    let n = per_tick * ticks;
    let (tx, rx) = oneshot::channel();
    let st = Arc::new(Mutex::new(State {
        n,
        answered: 0,
        lat_us: Vec::with_capacity(n as usize),
        done: Some(tx),
    }));
    let bpid = p.b.child.0.id().to_string();
    let cpu0 = cpu_ticks("self")? + cpu_ticks(&bpid)?;
    // The schedule starts 2 ms from now, time for the generator task to start.
    let t0 = Instant::now() + 2 * TICK;
    let (a, echo) = (p.a.clone(), p.b.echo.clone());
    let gen_st = st.clone();
    let timer = PreciseTimer::new().map_err(|e| format!("R5: timerfd: {e}"))?;
    let generator = tokio::spawn(async move {
        let mut lag_us = Vec::with_capacity(ticks as usize);
        let mut k = 0u64;
        while k < ticks {
            let due = t0 + TICK * k as u32;
            if let Err(e) = timer.sleep_until(due).await {
                let e = format!("R5: timerfd: {e}");
                if let Ok(mut s) = gen_st.lock() {
                    s.finish(Err(e.clone()));
                }
                return Err(e);
            }
            let woke = Instant::now();
            lag_us.push(woke.saturating_duration_since(due).as_secs_f64() * 1e6);
            // Every millisecond due by now, the current one included.
            let last = ((woke - t0).as_nanos() / TICK.as_nanos()) as u64;
            let last = last.clamp(k, ticks - 1);
            while k <= last {
                let sched = t0 + TICK * k as u32;
                for j in 0..per_tick {
                    let i = k * per_tick + j;
                    let st = gen_st.clone();
                    a.cal(&echo, msg!["echo", i]).then(move |r| {
                        let now = Instant::now();
                        let Ok(mut s) = st.lock() else { return };
                        let ok = matches!(&r, Ok(m) if m.tag() == Some("echo")
                            && m.get(1).and_then(Value::as_u64) == Some(i));
                        if !ok {
                            s.finish(Err(format!("R5: request {i} got {r:?}")));
                            return;
                        }
                        s.lat_us.push(now.duration_since(sched).as_secs_f64() * 1e6);
                        s.answered += 1;
                        if s.answered == s.n {
                            s.finish(Ok(now));
                        }
                    });
                }
                k += 1;
            }
        }
        Ok::<_, String>(lag_us)
    });
    let schedule = TICK * ticks as u32;
    let r = within(schedule + DRAIN, "R5 (waiting for the replies)", rx).await;
    let cpu1 = cpu_ticks("self")? + cpu_ticks(&bpid)?;
    let lag_us = generator
        .await
        .map_err(|e| format!("R5 generator: {e}"))??;
    let last = match r {
        Ok(Ok(Ok(t))) => t,
        Ok(Ok(Err(e))) => return Err(e),
        Ok(Err(_)) => return Err("R5: reply state vanished".into()),
        Err(e) => {
            let got = st.lock().map(|s| s.answered).unwrap_or(0);
            return Err(format!("{e}: {got} of {n} replies at {rate} req/s"));
        }
    };
    let mut lat_us = std::mem::take(&mut st.lock().map_err(|_| "R5 state poisoned")?.lat_us);
    lat_us.sort_by(f64::total_cmp);
    let mut lag_us = lag_us;
    lag_us.sort_by(f64::total_cmp);
    Ok(Run {
        lat_us,
        elapsed: last.saturating_duration_since(t0),
        cpu_s: cpu1.saturating_sub(cpu0) as f64 / hz,
        lag_us,
    })
}

/// R5: open-loop request/reply at 1k, 10k and 100k req/s (see the module documentation).
pub async fn r5(o: &Opts) -> BenchResult {
    let secs = o.duration.unwrap_or(DEFAULT_SECS);
    let ticks = (secs * 1000.0).round() as u64;
    if ticks == 0 {
        return Err("R5: --duration must be at least 0.001 s".into());
    }
    let hz = clk_tck()?;
    let p = pair(o).await?;
    // Warm-up, not reported: 0.5 s at 10k req/s.
    run(&p, 10_000, 500, hz).await?;
    let rates = o.rates.clone().unwrap_or_else(|| RATES.to_vec());
    for rate in rates {
        let r = run(&p, rate, ticks, hz).await?;
        let n = r.lat_us.len() as f64;
        let l = label(rate);
        // The schedule's last millisecond counts whole: a pair that keeps up achieves the
        // nominal rate exactly.
        let el = r.elapsed.max(TICK * ticks as u32).as_secs_f64();
        eprintln!(
            "R5 @{l}: {n} requests, last reply {el:.3} s after the first was due, CPU {:.3} s \
             ({:.2} cores); generator lateness p50 {:.1} us, p99 {:.1} us",
            r.cpu_s,
            r.cpu_s / el,
            pct(&r.lag_us, 0.5),
            pct(&r.lag_us, 0.99)
        );
        result("R5", &format!("cpu_per_mreq@{l}"), r.cpu_s / n * 1e6, "s");
        result("R5", &format!("p50@{l}"), pct(&r.lat_us, 0.50), "us");
        result("R5", &format!("p99@{l}"), pct(&r.lat_us, 0.99), "us");
        result("R5", &format!("achieved_rate@{l}"), n / el, "req/s");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_precise_timer_wakes_at_each_deadline_not_before() {
        let timer = PreciseTimer::new().unwrap();
        let t0 = Instant::now();
        // Re-armed for every deadline, as the generator does.
        for k in 1..=5u32 {
            let due = t0 + TICK * (2 * k);
            timer.sleep_until(due).await.unwrap();
            let now = Instant::now();
            assert!(now >= due, "woke {:?} early", due - now);
        }
        // Generous: a loaded machine may be late, but not by seconds.
        assert!(t0.elapsed() < Duration::from_secs(5));
        // A deadline that has passed returns at once (the timer is not armed at all).
        let past = Instant::now() - Duration::from_millis(1);
        tokio::time::timeout(Duration::from_secs(5), timer.sleep_until(past))
            .await
            .expect("a passed deadline does not wait")
            .unwrap();
    }

    #[test]
    fn labels_and_cpu_ticks() {
        assert_eq!(label(1_000), "1k");
        assert_eq!(label(100_000), "100k");
        assert_eq!(label(1_500), "1500");
        assert!(cpu_ticks("self").is_ok());
        assert!(cpu_ticks("0").is_err());
    }
}
