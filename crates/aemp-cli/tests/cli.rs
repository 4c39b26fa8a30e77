//! Runs the built `aemp` binary. Every test uses its own temporary rc file (through
//! `PERL_ANYEVENT_MP_RC`), so the user's configuration is never read or written.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const AEMP: &str = env!("CARGO_BIN_EXE_aemp");

/// A unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "aemp-cli-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn rc(&self) -> PathBuf {
        self.0.join("rc")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An `aemp` command with the rc file in `dir` and no log settings from the environment.
fn aemp(dir: &TempDir, args: &[&str]) -> Command {
    let mut c = Command::new(AEMP);
    c.args(args)
        .env("PERL_ANYEVENT_MP_RC", dir.rc())
        .env("HOME", &dir.0)
        .env_remove("RUST_LOG")
        .env_remove("AE_VERBOSE")
        .stdin(Stdio::null());
    c
}

fn run(dir: &TempDir, args: &[&str]) -> Output {
    aemp(dir, args).output().expect("aemp runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn version_and_help() {
    let dir = TempDir::new("version");
    let o = run(&dir, &["--version"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), format!("aemp {}\n", env!("CARGO_PKG_VERSION")));
    let o = run(&dir, &["help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for cmd in [
        "demo",
        "run",
        "snd",
        "cal",
        "mon",
        "eval",
        "trace",
        "setsecret",
        "addseed",
        "showconfig",
        "--connect",
    ] {
        assert!(text.contains(cmd), "usage lacks {cmd}:\n{text}");
    }
    // No command at all: usage on stderr, a usage error.
    let o = run(&dir, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("usage: aemp"));
    assert!(!dir.rc().exists(), "nothing was written");
}

#[test]
fn demo_runs_a_small_network() {
    let dir = TempDir::new("demo");
    let started = Instant::now();
    let o = run(&dir, &["demo", "--seconds", "1"]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "stdout:\n{out}\nstderr:\n{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    for expected in [
        "started node1 listening on 127.0.0.1:",
        "started node3 listening on 127.0.0.1:",
        "full mesh up: 3 links",
        "chat: node2 got \"hello from node1\" from node1",
        "chat: node1 got \"hello from node3\" from node3",
        "ping node2 from node1: 20 round trips",
        "ping node3 from node1: 20 round trips",
        "node port request [\"time\"] to node2: reply ",
        "node1 -> node2: ",
        "throughput total: ",
        "node1 monitors node3#",
        "monitor fired after ",
        "with reason [\"transport_error\",\"node3\",",
        "demo finished",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // Messages were really delivered in the throughput run.
    let total: u64 = out
        .lines()
        .find_map(|l| l.split("throughput total: ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a total");
    assert!(total >= 1000, "{out}");
    assert!(!dir.rc().exists(), "demo does not touch the rc file");

    let o = run(&dir, &["demo", "--nodes", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--nodes must be 2 to 32"));
}

#[test]
fn config_commands_edit_the_rc_file() {
    let dir = TempDir::new("config");
    let o = run(
        &dir,
        &[
            "setsecret",
            "s3cret",
            "addseed",
            "127.0.0.1:4040",
            "addseed",
            "[::1]:4040",
            "profile",
            "worker",
            "setnodeid",
            "w/%u",
            "binds",
            r#"["127.0.0.1:0"]"#,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        read_json(&dir.rc()),
        serde_json::json!({
            "version": 1,
            "secret": "s3cret",
            "seeds": ["127.0.0.1:4040", "[::1]:4040"],
            "profile": {"worker": {"nodeid": "w/%u", "binds": ["127.0.0.1:0"]}}
        })
    );

    // showconfig: the merged configuration of a profile, printed as JSON; nothing saved.
    let o = run(&dir, &["showconfig", "worker"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(shown["secret"], "s3cret");
    assert_eq!(shown["nodeid"], "w/%u");
    assert_eq!(shown["binds"], serde_json::json!(["127.0.0.1:0"]));
    assert_eq!(shown["monitor_timeout"], 30);
    assert!(!dir.0.join("rc~").exists(), "unchanged: not written");

    // A change keeps a backup; a failing command saves nothing.
    let o = run(&dir, &["delseed", "[::1]:4040", "delprofile", "worker"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read_json(&dir.rc()),
        serde_json::json!({"version": 1, "secret": "s3cret", "seeds": ["127.0.0.1:4040"],
                           "profile": {}})
    );
    assert!(dir.0.join("rc~").exists());
    let before = std::fs::read_to_string(dir.rc()).unwrap();
    let o = run(&dir, &["setsecret", "other", "monitor_timeout", "never"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("monitor_timeout"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(dir.rc()).unwrap(), before);
}

#[test]
fn unknown_and_unsupported_commands_fail() {
    let dir = TempDir::new("unknown");
    let o = run(&dir, &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown command \"frobnicate\""),
        "{}",
        stderr(&o)
    );

    // Configuration commands before an unknown command are not applied.
    let o = run(&dir, &["setsecret", "x", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown command \"frobnicate\""));
    assert!(!dir.rc().exists());
    let o = run(&dir, &["setsecret", "x", "[1]"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown command [1]"), "{}", stderr(&o));

    let o = run(&dir, &["eval", "somenode", "1+1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("eval is not supported"),
        "{}",
        stderr(&o)
    );
    let o = run(&dir, &["trace", "somenode#port"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("takes only a node ID"),
        "{}",
        stderr(&o)
    );

    let o = run(&dir, &["cal", "#nonode", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid port ID"), "{}", stderr(&o));
    let o = run(&dir, &["snd", "n#p"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("message missing"), "{}", stderr(&o));
    let o = run(&dir, &["--connect", "127.0.0.1:1", "setsecret", "y"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&dir, &["--timeout", "0", "cal", "n", "time"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--timeout must be"), "{}", stderr(&o));
}

#[test]
fn cal_without_a_route_fails_fast() {
    let dir = TempDir::new("noroute");
    std::fs::write(dir.rc(), r#"{"secret": "k", "binds": ["127.0.0.1:0"]}"#).unwrap();
    let started = Instant::now();
    let o = run(&dir, &["cal", "nowhere", "time"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(r#"no reply: nowhere died: ["transport_error","nowhere""#),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A free TCP port on 127.0.0.1 (free when this returns; the OS does not hand it out again
/// at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `aemp run` child; stopped with SIGTERM (SIGKILL as a fallback) on drop.
struct RunningNode {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl RunningNode {
    fn start(dir: &TempDir, args: &[&str]) -> RunningNode {
        let mut child = aemp(dir, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aemp run starts");
        let (tx, log) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        // Drains the log for the child's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        RunningNode { child, log }
    }

    /// Log lines until one contains `what`; all lines read so far.
    fn wait_for(&self, what: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(what);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {what:?}; log so far:\n{}",
            seen.join("\n")
        );
    }

    /// Stops the node with SIGTERM; its exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            let _ = self.child.kill();
        }
        self.child.wait().unwrap()
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn run_a_node_and_talk_to_it() {
    let dir = TempDir::new("run");
    std::fs::write(
        dir.rc(),
        r#"{"secret": "t0p", "services": ["My::Service::"]}"#,
    )
    .unwrap();
    let port = free_port();
    let bind = format!(r#"["127.0.0.1:{port}"]"#);
    let mut node = RunningNode::start(&dir, &["run", "nodeid", "clitest", "binds", &bind]);
    let log = node.wait_for("node running");
    let running = log.last().unwrap();
    assert!(running.contains("node=clitest"), "{running}");
    assert!(
        running.contains(&format!("listen=127.0.0.1:{port}")),
        "{running}"
    );
    let log = node.wait_for("service not started");
    assert!(log.last().unwrap().contains("My::Service::"));

    let addr = format!("127.0.0.1:{port}");
    let client = |args: &[&str]| {
        let mut all = vec!["--connect", addr.as_str()];
        all.extend_from_slice(args);
        run(&dir, &all)
    };
    // The node port's `time` request.
    let o = client(&["cal", "clitest", "time"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t: f64 = stdout(&o).trim().parse().expect("a time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((t - now).abs() < 60.0, "{t} vs {now}");
    // `can <tag> <reply>`: whether the node handles a request; a JSON string argument is
    // decoded before it is sent.
    let o = client(&["cal", "clitest", "can", "\"time\""]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "true\n");
    let o = client(&["cal", "clitest", "can", "no_such_request"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "false\n");

    let o = client(&["snd", "clitest", "devnull", "[1,2]"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");

    let o = client(&["mon", "clitest#nosuchport"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "[\"no_such_port\",\"cannot monitor nonexistent port\",\"clitest#nosuchport\"]\n"
    );

    let o = client(&["cal", "clitest#nosuchport", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no_such_port"), "{}", stderr(&o));

    // A second node joins the first one with --connect.
    let mut second = RunningNode::start(
        &dir,
        &[
            "--connect",
            &addr,
            "run",
            "nodeid",
            "clitest2",
            "binds",
            r#"["127.0.0.1:0"]"#,
        ],
    );
    let log = second.wait_for("connected (--connect)");
    assert!(log.last().unwrap().contains("node=clitest"), "{log:?}");
    node.wait_for("connection up peer=clitest2");
    // trace asks clitest for its links (the second node and the tool's own node), then
    // clitest2 (reachable through clitest, the global seed here).
    let o = client(&["trace", "clitest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("clitest -> ") && l.contains("clitest2")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("clitest2 -> ")), "{out}");
    assert!(second.terminate().success());

    let status = node.terminate();
    assert!(status.success(), "{status:?}");
    node.wait_for("shutting down");
}

#[test]
fn connect_to_nothing_times_out_with_a_clear_error() {
    let dir = TempDir::new("refused");
    std::fs::write(dir.rc(), r#"{"secret": "k", "binds": ["127.0.0.1:0"]}"#).unwrap();
    let port = free_port();
    let started = Instant::now();
    let o = run(
        &dir,
        &[
            "--timeout",
            "1",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "cal",
            "x",
            "time",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("could not connect to 127.0.0.1:{port} within 1 s")),
        "{}",
        stderr(&o)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
