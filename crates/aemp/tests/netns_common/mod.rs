//! Helpers for tests that run aemp nodes as hosts in Linux network namespaces.
//!
//! * [`Lab`] creates a "hub" namespace holding a bridge, and one namespace per host, joined
//!   to the bridge by a veth pair (`eth0` inside the host, `v<n>` in the hub). Every address
//!   used is one we assign inside these namespaces (`10.213.<subnet>.<n>/24`); nothing is
//!   created in, or routed through, the namespace the tests run in. All namespaces are
//!   deleted when the lab is dropped (also when a test panics), and their names carry the
//!   test process's pid so that parallel runs do not clash.
//! * [`NodeProc`] is a node in a child process: this test binary, re-executed inside a host
//!   namespace with `ip netns exec`, running [`run_child`]. The parent drives it with
//!   commands on its stdin and reads JSON lines from its stdout.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Environment variable that makes the child test run a node (its value is the node ID).
pub const CHILD_ENV: &str = "AEMP_NETNS_CHILD_NODEID";
const BIND_ENV: &str = "AEMP_NETNS_CHILD_BIND";
const SEEDS_ENV: &str = "AEMP_NETNS_CHILD_SEEDS";
const SECRET_ENV: &str = "AEMP_NETNS_CHILD_SECRET";
const MONITOR_TIMEOUT_ENV: &str = "AEMP_NETNS_CHILD_MONITOR_TIMEOUT_MS";

/// Prefix of the child's protocol lines (the test harness prints its own lines too).
const LINE_PREFIX: &str = "NETNS ";

/// Prefix of every namespace this module creates: `aemp-netns-<pid>-…`.
const NS_PREFIX: &str = "aemp-netns-";

/// A family's contents as the tests compare them: key to value text.
pub type Contents = BTreeMap<String, String>;

/// Builds [`Contents`] from pairs.
pub fn contents(pairs: &[(&str, &str)]) -> Contents {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `ip` with `args`; `Err` with its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes namespaces left behind by earlier runs of these tests whose process is gone (a
/// test killed by a signal cannot run its drop guard). Only names with our prefix and the
/// pid of a dead process are touched.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// One host of a [`Lab`].
#[derive(Clone, Debug)]
pub struct Host {
    /// Its namespace.
    pub ns: String,
    /// Its address on the lab network.
    pub ip: String,
    /// Its veth end in the hub namespace.
    hub_if: String,
}

/// A set of network namespaces joined by a bridge; deleted on drop.
pub struct Lab {
    tag: String,
    subnet: u8,
    hub: String,
    hosts: Vec<Host>,
    created: Vec<String>,
}

impl Lab {
    /// Creates the hub namespace and its bridge for subnet `10.213.<subnet>.0/24`. `None`
    /// (after printing why) when namespaces cannot be created here, so that the test can
    /// skip instead of failing.
    pub fn new(tag: &str, subnet: u8) -> Option<Lab> {
        remove_stale_namespaces();
        let tag = format!("{NS_PREFIX}{}-{tag}", std::process::id());
        let hub = format!("{tag}-hub");
        let mut lab = Lab {
            tag,
            subnet,
            hub: hub.clone(),
            hosts: Vec::new(),
            created: Vec::new(),
        };
        if let Err(e) = ip(&["netns", "add", &hub]) {
            println!(
                "SKIP: cannot create network namespaces here (needs iproute2 and \
                 CAP_NET_ADMIN): {e}"
            );
            return None;
        }
        lab.created.push(hub.clone());
        let setup = ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])
            .and_then(|()| ip(&["-n", &hub, "link", "set", "br0", "up"]));
        if let Err(e) = setup {
            println!("SKIP: cannot create a bridge in a network namespace here: {e}");
            return None;
        }
        Some(lab)
    }

    /// Adds host number `n` (address `10.213.<subnet>.<n>`). With `fast_keepalive`, the TCP
    /// keepalive settings of the host's own namespace are shortened (idle 2 s, probes every
    /// 1 s, 3 probes), so that a dead idle connection is noticed within seconds.
    pub fn add_host(&mut self, n: u8, fast_keepalive: bool) -> Host {
        let ns = format!("{}-h{n}", self.tag);
        let hub_if = format!("v{n}");
        let addr = format!("10.213.{}.{n}", self.subnet);
        let cidr = format!("{addr}/24");
        ip(&["netns", "add", &ns]).expect("create host namespace");
        self.created.push(ns.clone());
        let steps: [&[&str]; 7] = [
            &[
                "-n", &self.hub, "link", "add", &hub_if, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ],
            &["-n", &self.hub, "link", "set", &hub_if, "master", "br0"],
            &["-n", &self.hub, "link", "set", &hub_if, "up"],
            &["-n", &ns, "link", "set", "lo", "up"],
            &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"],
            &["-n", &ns, "link", "set", "eth0", "up"],
            &["netns", "exec", &ns, "true"],
        ];
        for s in steps {
            ip(s).expect("set up host namespace");
        }
        if fast_keepalive {
            for (knob, value) in [
                ("tcp_keepalive_time", "2"),
                ("tcp_keepalive_intvl", "1"),
                ("tcp_keepalive_probes", "3"),
            ] {
                // /proc/sys/net is the writer's own network namespace's.
                let script = format!("echo {value} > /proc/sys/net/ipv4/{knob}");
                ip(&["netns", "exec", &ns, "sh", "-c", &script]).expect("set keepalive sysctl");
            }
        }
        let host = Host {
            ns,
            ip: addr,
            hub_if,
        };
        self.hosts.push(host.clone());
        host
    }

    /// Sets the host's own `eth0` down or up (inside its namespace). Down also removes the
    /// routes through it, so the host's sends fail locally.
    pub fn host_link(&self, h: &Host, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &h.ns, "link", "set", "eth0", state]).expect("set host link");
    }

    /// Sets the hub's end of the host's veth down or up: the host loses its carrier but
    /// keeps its routes and local addresses (nodes inside it still reach each other).
    pub fn hub_link(&self, h: &Host, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.hub, "link", "set", &h.hub_if, state]).expect("set hub link");
    }

    /// Waits until no TCP connection of any host has unacknowledged data (`Send-Q` 0 in
    /// `ss`), so that a link cut next finds idle connections: keepalive only runs on those;
    /// a connection with data in flight is timed out by retransmissions instead.
    pub fn wait_tcp_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let busy: Vec<String> = self
                .hosts
                .iter()
                .flat_map(|h| {
                    let out = Command::new("ip")
                        .args(["netns", "exec", &h.ns, "ss", "-tnH"])
                        .output()
                        .expect("run ss");
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter(|l| l.split_whitespace().nth(2).is_some_and(|q| q != "0"))
                        .map(|l| format!("{}: {l}", h.ns))
                        .collect::<Vec<_>>()
                })
                .collect();
            if busy.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "connections still busy after {timeout:?}: {busy:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a node in host `h`: node ID `id`, listening on `<h.ip>:<port>`, with `seeds`.
    pub fn spawn(&self, h: &Host, id: &str, port: u16, seeds: &[String]) -> NodeProc {
        NodeProc::spawn(&h.ns, id, &format!("{}:{port}", h.ip), seeds)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends and the bridge inside it.
        for ns in self.created.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A node in a child process inside a namespace; killed on drop.
pub struct NodeProc {
    /// The node ID.
    pub id: String,
    child: Child,
    stdin: ChildStdin,
    rx: mpsc::Receiver<serde_json::Value>,
    /// The latest `db_mon` contents per family.
    mons: HashMap<String, Contents>,
    /// Node events seen so far (`up <node>` / `down <node>: <reason>`), for diagnostics.
    pub events: Vec<String>,
    /// Nodes reported down and not yet taken by [`NodeProc::wait_down`].
    downs: Vec<String>,
}

/// How long a child may take to start (the binary is large and the machine loaded).
const START: Duration = Duration::from_secs(60);

/// Runs the ignored test `entry` of this test binary as a child process inside namespace
/// `ns`, with `envs` set; returns it with its stdin and the JSON values of its stdout lines
/// that start with `prefix` (other lines are ignored, a bad JSON line is reported).
pub fn spawn_child(
    ns: &str,
    entry: &str,
    prefix: &'static str,
    envs: &[(&str, String)],
) -> (Child, ChildStdin, mpsc::Receiver<serde_json::Value>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(["--exact", entry, "--nocapture", "--ignored"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child node");
    let stdin = child.stdin.take().expect("child stdin");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(json) = line.strip_prefix(prefix) {
                match serde_json::from_str(json) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!("bad line from child: {e}: {line}"),
                }
            }
        }
    });
    (child, stdin, rx)
}

impl NodeProc {
    fn spawn(ns: &str, id: &str, bind: &str, seeds: &[String]) -> NodeProc {
        let (child, stdin, rx) = spawn_child(
            ns,
            "node_in_netns",
            LINE_PREFIX,
            &[
                (CHILD_ENV, id.to_string()),
                (BIND_ENV, bind.to_string()),
                (SEEDS_ENV, seeds.join(",")),
                (SECRET_ENV, "netns-secret".to_string()),
                (MONITOR_TIMEOUT_ENV, "5000".to_string()),
            ],
        );
        let mut p = NodeProc {
            id: id.to_string(),
            child,
            stdin,
            rx,
            mons: HashMap::new(),
            events: Vec::new(),
            downs: Vec::new(),
        };
        p.wait_event("ready", START, |v| v["ev"] == "ready");
        p
    }

    /// Sends one command line.
    pub fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot send {line:?}: {e}", self.id));
    }

    /// Receives one event before `deadline` and records what it says; `None` at the deadline.
    fn next_event(&mut self, deadline: Instant) -> Option<serde_json::Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = match self.rx.recv_timeout(left) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{}: child exited (events: {:?})", self.id, self.events)
            }
        };
        match v["ev"].as_str().unwrap_or_default() {
            "mon" => {
                let fam = v["family"].as_str().unwrap_or_default().to_string();
                self.mons.insert(fam, json_contents(&v["contents"]));
            }
            "up" => self.events.push(format!("up {}", v["node"])),
            "down" => {
                self.events
                    .push(format!("down {}: {}", v["node"], v["reason"]));
                self.downs
                    .push(v["node"].as_str().unwrap_or_default().to_string());
            }
            _ => {}
        }
        Some(v)
    }

    /// Waits for an event matching `pred`; panics with `what` after `timeout`.
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "{}: timed out after {timeout:?} waiting for {what} (events: {:?})",
                    self.id, self.events
                ),
            }
        }
    }

    /// Starts watching `family` and waits for the first notification.
    pub fn mon(&mut self, family: &str) {
        self.cmd(&format!("mon {family}"));
        self.wait_event("first db_mon notification", START, |v| {
            v["ev"] == "mon" && v["family"] == family
        });
    }

    /// Waits until the `db_mon` contents of `family` equal `want`; panics after `timeout`.
    pub fn wait_mon(&mut self, family: &str, want: &Contents, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.mons.get(family) != Some(want) {
            if self.next_event(deadline).is_none() {
                panic!(
                    "{}: db_mon of {family} is {:?} after {timeout:?}, want {want:?} \
                     (events: {:?})",
                    self.id,
                    self.mons.get(family),
                    self.events
                );
            }
        }
    }

    /// The current `db_mon` contents of `family`.
    pub fn mon_contents(&self, family: &str) -> Option<&Contents> {
        self.mons.get(family)
    }

    /// `db_family(family)` on the node; `None` if it did not answer within the child's own
    /// bound (no master reachable).
    pub fn family(&mut self, family: &str) -> Option<Contents> {
        self.cmd(&format!("family {family}"));
        let v = self.wait_event("db_family answer", Duration::from_secs(60), |v| {
            v["ev"] == "family" && v["family"] == family
        });
        v.get("contents").map(json_contents)
    }

    /// Asks `db_family(family)` until it equals `want`; panics after `timeout`.
    pub fn wait_family(&mut self, family: &str, want: &Contents, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.family(family);
            if last.as_ref() == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "{}: db_family({family}) is {last:?} after {timeout:?}, want {want:?} \
             (events: {:?})",
            self.id, self.events
        );
    }

    /// Waits until the node reports `node` down (a report that came while waiting for
    /// something else counts; each report is taken once).
    pub fn wait_down(&mut self, node: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.downs.iter().position(|n| n == node) {
                self.downs.remove(i);
                return;
            }
            if self.next_event(deadline).is_none() {
                panic!(
                    "{}: {node} not reported down after {timeout:?} (events: {:?})",
                    self.id, self.events
                );
            }
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_contents(v: &serde_json::Value) -> Contents {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The child side.

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{LINE_PREFIX}{v}");
    let _ = out.flush();
}

fn db_json<'a>(m: impl IntoIterator<Item = (&'a aemp::Str, &'a aemp::Value)>) -> serde_json::Value {
    let obj = m
        .into_iter()
        .map(|(k, v)| {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            (k.to_string(), serde_json::Value::String(text))
        })
        .collect();
    serde_json::Value::Object(obj)
}

/// The child: configures a node from the environment and follows commands from stdin until
/// `quit` or EOF (the parent is gone). Does nothing unless [`CHILD_ENV`] is set.
///
/// Commands: `set <fam> <key> <value>`, `del <fam> <key>`, `mon <fam>` (every change is
/// printed as `{"ev":"mon",…}`), `family <fam>` (prints `{"ev":"family",…}`), `quit`.
pub async fn run_child() {
    use aemp::{Config, Node, NodeEvent};
    use serde_json::json;
    let Ok(id) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let seeds: Vec<String> = var(SEEDS_ENV)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let monitor_ms: u64 = var(MONITOR_TIMEOUT_ENV).parse().unwrap_or(30_000);
    let cfg = Config::builder()
        .norc(true)
        .nodeid(id.as_str())
        .binds([var(BIND_ENV)])
        .seeds(seeds)
        .secret(var(SECRET_ENV))
        .monitor_timeout(Duration::from_millis(monitor_ms))
        .build()
        .expect("child config");
    let node = Node::configure(cfg).await.expect("child configure");
    let mut events = node.node_events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Some(Ok(NodeEvent::Up(n))) => emit(json!({"ev": "up", "node": n.as_str()})),
                Some(Ok(NodeEvent::Down(n, why))) => {
                    emit(json!({"ev": "down", "node": n.as_str(), "reason": why}))
                }
                Some(Err(_missed)) => {}
                None => return,
            }
        }
    });
    emit(json!({"ev": "ready", "node": id, "addrs": format!("{:?}", node.listen_addrs())}));

    let mut lines = stdin_lines();
    // No child outlives a parent that forgot it: stdin EOF or this bound ends it.
    let lifetime = tokio::time::sleep(Duration::from_secs(600));
    tokio::pin!(lifetime);
    let mut watches = Vec::new();
    loop {
        let line = tokio::select! {
            l = lines.recv() => match l { Some(l) => l, None => break },
            _ = &mut lifetime => break,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["set", fam, key, value] => node.db_set(fam, key, *value).expect("db_set"),
            ["del", fam, key] => node.db_del(fam, &[key]).expect("db_del"),
            ["mon", fam] => {
                let mut w = node.db_mon(fam).expect("db_mon");
                watches.push(tokio::spawn(async move {
                    while let Some(c) = w.next().await {
                        emit(json!({
                            "ev": "mon",
                            "family": c.family.as_str(),
                            "contents": db_json(&c.contents),
                            "added": c.added.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                            "deleted": c.deleted.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                        }));
                    }
                }));
            }
            ["family", fam] => {
                let n = node.clone();
                let fam = fam.to_string();
                tokio::spawn(async move {
                    let r = tokio::time::timeout(Duration::from_secs(20), n.db_family(&fam)).await;
                    match r {
                        Ok(Ok(m)) => {
                            emit(json!({"ev": "family", "family": fam, "contents": db_json(&m)}))
                        }
                        Ok(Err(e)) => {
                            emit(json!({"ev": "family", "family": fam, "error": e.to_string()}))
                        }
                        Err(_) => emit(json!({"ev": "family", "family": fam, "error": "timeout"})),
                    }
                });
            }
            ["quit"] => break,
            _ => emit(json!({"ev": "error", "line": line})),
        }
    }
    for w in watches {
        w.abort();
    }
    node.shutdown().await;
}

/// The lines of this (child) process's stdin, read by a thread of their own: the commands
/// the test sends. Ends at EOF (the parent went away).
pub fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
