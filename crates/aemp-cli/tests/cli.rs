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
        "shell",
        "gencert",
        "setsecret",
        "addseed",
        "showconfig",
        "--connect",
    ] {
        assert!(text.contains(cmd), "usage lacks {cmd}:\n{text}");
    }
    assert!(
        text.contains("Exit status: 0 success, 1 a command failed")
            && text.contains("2 usage error"),
        "{text}"
    );
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

    let o = run(&dir, &["restart", "somenode"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("restart is not supported"));
    let o = run(&dir, &["shell", "a", "b"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at most one node ID"), "{}", stderr(&o));
    let o = run(&dir, &["shell", "bad,node"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&dir, &["setcert", "/nonexistent/aemp-cert.pem"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/aemp-cert.pem"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.rc().exists());
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
    // cal without a message: a usage error at once, not a wait for a reply that never comes.
    let started = Instant::now();
    let o = run(&dir, &["cal", "n#p"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cal: message missing (cal <port> <arg...>)"),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let o = run(&dir, &["--connect", "127.0.0.1:1", "setsecret", "y"]);
    assert_eq!(o.status.code(), Some(2));
    // The demo does not use --connect either: refused, not ignored.
    let o = run(&dir, &["--connect", "127.0.0.1:1", "demo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--connect and --timeout are only used by run"),
        "{}",
        stderr(&o)
    );
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
        r#"{"secret": "t0p", "services": ["AnyEvent::MP::Global", "aemp::echo",
            "My::Service::", ["aemp::echo", {"v": 1}]]}"#,
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
    // Built-in services start (the echo port is logged), unknown ones are only named, and
    // the global service is no warning.
    let log = node.wait_for("service started");
    let echo = log
        .last()
        .unwrap()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("port="))
        .expect("the echo port in the log")
        .to_string();
    assert!(echo.starts_with("clitest#"), "{echo}");
    assert!(
        log.iter()
            .any(|l| l.contains("INFO service AnyEvent::MP::Global: the node is a global node")),
        "{log:?}"
    );
    let mut log = node.wait_for("service not started");
    assert!(log.last().unwrap().contains("service=\"My::Service::\""));
    log.extend(node.wait_for("service started"));
    assert!(
        !log.iter()
            .any(|l| l.contains("WARN") && l.contains("service=\"AnyEvent::MP::Global")),
        "{log:?}"
    );

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

    // The shell: commands from a pipe on one node; `#` and `#name` are relative to the node
    // given to shell. A failed command does not stop it, but makes the exit status 1.
    let script = format!(
        "# a comment\n\
         cal # time\n\
         cal {echo} ping 1 [2, \"a b\"]\n\
         cal {echo} ping\n\
         nodes\n\
         db echo\n\
         mon #nosuchport\n\
         snd #nosuchport hello\n\
         eval 1+1\n\
         cal #x hello\n\
         frobnicate\n\
         help\n\
         quit\n\
         cal # never-run\n"
    );
    let o = shell(&dir, &addr, &["shell", "clitest"], &script);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 7, "{out}");
    let t: f64 = lines[0].parse().expect("a time");
    assert!(t > 1e9, "{t}");
    assert_eq!(lines[1], r#""pong","1",[2,"a b"]"#);
    assert_eq!(lines[2], r#""pong""#);
    assert_eq!(lines[3], "clitest");
    let db: serde_json::Value = serde_json::from_str(lines[4]).expect("db echo as JSON");
    let db = db.as_object().unwrap();
    assert_eq!(db.len(), 2, "{db:?}");
    assert_eq!(db[&echo], serde_json::Value::Null);
    assert!(
        db.values().any(|v| *v == serde_json::json!({"v": 1})),
        "{db:?}"
    );
    assert_eq!(
        lines[5],
        r#"["no_such_port","cannot monitor nonexistent port","clitest#nosuchport"]"#
    );
    assert!(lines[6].starts_with("Shell commands"), "{out}");
    assert!(!out.contains("never-run"));
    let err = stderr(&o);
    assert!(
        err.contains("eval: Perl code cannot be evaluated here"),
        "{err}"
    );
    assert!(
        err.contains(r#"no reply: clitest#x died: ["no_such_port""#),
        "{err}"
    );
    assert!(
        err.contains("unknown shell command \"frobnicate\""),
        "{err}"
    );
    assert!(err.contains("shell: 3 command(s) failed"), "{err}");
    // Without a node, relative ports are refused; a clean script exits 0.
    let o = shell(&dir, &addr, &["shell"], "cal #p x\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("relative to the shell's node"));
    let o = shell(&dir, &addr, &["shell"], "cal clitest can \"time\"\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "true\n");

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

/// Runs `aemp --timeout 2 --connect <addr> <args>` with `input` on stdin.
fn shell(dir: &TempDir, addr: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut all = vec!["--timeout", "2", "--connect", addr];
    all.extend_from_slice(args);
    let mut child = aemp(dir, &all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aemp shell starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn help_for_every_command() {
    let dir = TempDir::new("help");
    for cmd in [
        "demo",
        "run",
        "snd",
        "cal",
        "mon",
        "trace",
        "shell",
        "log",
        "eval",
        "restart",
        "help",
        "profile",
        "delprofile",
        "showprofile",
        "showconfig",
        "setparent",
        "delparent",
        "setnodeid",
        "nodeid",
        "delnodeid",
        "gensecret",
        "setsecret",
        "secret",
        "delsecret",
        "gencert",
        "setcert",
        "cert",
        "delcert",
        "setseeds",
        "seeds",
        "delseeds",
        "addseed",
        "delseed",
        "setbinds",
        "addbind",
        "delbind",
        "setservices",
        "addservice",
        "delservice",
        "seteval",
        "deleval",
        "setsecure",
        "secure",
        "delsecure",
        "monitor_timeout",
        "connect_interval",
        "framing_format",
        "auth_offer",
        "setauth_accept",
        "autocork",
        "delnodelay",
    ] {
        let o = run(&dir, &["help", cmd]);
        assert_eq!(o.status.code(), Some(0), "help {cmd}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.starts_with("usage: aemp"), "help {cmd}:\n{text}");
        let bare = ["set", "del", "add"]
            .iter()
            .find_map(|p| cmd.strip_prefix(p))
            .unwrap_or(cmd);
        assert!(text.contains(bare), "help {cmd}:\n{text}");
        let o = run(&dir, &[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd} --help: {}", stderr(&o));
        assert_eq!(stdout(&o), text, "{cmd} --help");
    }
    let o = run(&dir, &["shell", "-h"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("db <family>"));
    let o = run(&dir, &["help", "run"]);
    assert!(stdout(&o).contains("aemp::echo"));

    // Unknown commands have no help; help takes one name.
    for bad in [
        &["help", "nope"][..],
        &["nope", "--help"],
        &["help", "a", "b"],
    ] {
        let o = run(&dir, bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
    }
    // --help after configuration commands shows help and saves nothing.
    let o = run(&dir, &["setsecret", "x", "run", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o)
        .starts_with("usage: aemp [--connect host:port]... [--timeout S] [profile <name>] run"));
    assert!(!dir.rc().exists(), "nothing was written");
}

#[test]
fn broken_rc_file_is_reported_and_left_alone() {
    let dir = TempDir::new("broken");
    let text = "{\n  \"secret\": \"x\",,\n}\n";
    std::fs::write(dir.rc(), text).unwrap();
    for args in [
        &["setsecret", "y"][..],
        &["gencert"],
        &["showconfig"],
        &["cal", "n", "time"],
        &["shell"],
        &["run"],
    ] {
        let o = run(&dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("cannot parse rc file {}", dir.rc().display())),
            "{args:?}: {err}"
        );
        assert!(err.contains("line 2 column"), "{args:?}: {err}");
        assert!(err.contains("nothing was done"), "{args:?}: {err}");
        assert_eq!(std::fs::read_to_string(dir.rc()).unwrap(), text);
        assert!(!dir.0.join("rc~").exists());
    }
    std::fs::write(dir.rc(), "[1]").unwrap();
    let o = run(&dir, &["setsecret", "y"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("must be a JSON object"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(dir.rc()).unwrap(), "[1]");
}

#[test]
fn gencert_and_setcert_store_the_certificate() {
    let dir = TempDir::new("gencert");
    let o = run(&dir, &["gencert", "profile", "p", "gencert"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rc = read_json(&dir.rc());
    let top = rc["cert"].as_str().expect("a top-level cert");
    let prof = rc["profile"]["p"]["cert"].as_str().expect("a profile cert");
    for pem in [top, prof] {
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        assert!(pem.contains("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    }
    assert_ne!(top, prof, "every gencert makes a new key");

    // A typo after gencert: nothing saved.
    let before = std::fs::read_to_string(dir.rc()).unwrap();
    let o = run(&dir, &["gencert", "extra"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(dir.rc()).unwrap(), before);

    // setcert reads a PEM file; delcert removes the profile's certificate only.
    let pem = dir.0.join("c.pem");
    std::fs::write(&pem, "-----BEGIN X-----\nabc\n-----END X-----\n").unwrap();
    let o = run(
        &dir,
        &["setcert", pem.to_str().unwrap(), "profile", "p", "delcert"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rc = read_json(&dir.rc());
    assert_eq!(rc["cert"], "-----BEGIN X-----\nabc\n-----END X-----\n");
    assert!(rc["profile"]["p"].get("cert").is_none(), "{rc}");
}

#[test]
fn nodes_talk_tls_with_a_generated_certificate() {
    let dir = TempDir::new("tls");
    std::fs::write(dir.rc(), r#"{"secret": "k"}"#).unwrap();
    let o = run(&dir, &["gencert"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let port = free_port();
    let bind = format!(r#"["127.0.0.1:{port}"]"#);
    let mut node = RunningNode::start(&dir, &["run", "nodeid", "tlsnode", "binds", &bind]);
    node.wait_for("node running");
    let addr = format!("127.0.0.1:{port}");
    let o = run(&dir, &["--connect", &addr, "cal", "tlsnode", "can", "time"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "true\n");
    let log = node.wait_for("connection up");
    assert!(log.last().unwrap().contains("auth=tls_sha3_512"), "{log:?}");
    assert!(node.terminate().success());
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
    // Which address, and why.
    assert!(
        stderr(&o).contains(&format!(
            "could not connect to 127.0.0.1:{port} within 1 s: 127.0.0.1:{port}: connection \
             refused"
        )),
        "{}",
        stderr(&o)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );

    // A node run with --connect stops with the same error instead of running on without
    // the connection it was asked for.
    let mut node = Interactive::start(aemp(
        &dir,
        &[
            "--timeout",
            "1",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "run",
            "nodeid",
            "lonely",
        ],
    ));
    let status = node.wait_exit();
    assert_eq!(status.code(), Some(1), "{status:?}");
    node.wait_err(&format!(
        "aemp: could not connect to 127.0.0.1:{port} within 1 s: 127.0.0.1:{port}: connection \
         refused"
    ));

    // Something that accepts TCP connections but is no aemp node.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let o = run(
        &dir,
        &["--timeout", "1", "--connect", &addr, "cal", "x", "time"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "could not connect to {addr} within 1 s: {addr} accepts TCP connections, but no \
             aemp node came up on them"
        )),
        "{}",
        stderr(&o)
    );
    drop(listener);
}

#[test]
fn unknown_profiles_are_errors() {
    let dir = TempDir::new("profiles");
    let text = r#"{"secret": "k", "profile": {"known": {"seeds": ["127.0.0.1:1"]}}}"#;
    std::fs::write(dir.rc(), text).unwrap();
    let expected = r#"aemp: unknown profile "nosuch" (the rc file has "known")"#;
    for args in [
        &["profile", "nosuch", "cal", "n", "time"][..],
        &["profile", "nosuch", "shell"],
        &["profile", "nosuch", "run"],
        &["run", "nosuch"],
        &["run", "profile", "nosuch", "nodeid", "x"],
        &["showprofile", "nosuch"],
        &["showconfig", "nosuch"],
        &["delprofile", "nosuch"],
        // Nothing is saved when the command line fails.
        &["setsecret", "other", "profile", "nosuch", "snd", "n", "x"],
    ] {
        // A child with a deadline: without the check, run would run until stopped.
        let mut child = Interactive::start(aemp(&dir, args));
        let status = child.wait_exit();
        assert_eq!(status.code(), Some(1), "{args:?}: {status:?}");
        child.wait_err(expected);
        assert_eq!(std::fs::read_to_string(dir.rc()).unwrap(), text);
    }
    let o = run(&dir, &["profile", "known", "run", "other"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("run: two profiles given"),
        "{}",
        stderr(&o)
    );
    // A profile that is created by the same command line exists.
    let o = run(
        &dir,
        &["profile", "new", "secret", "x", "showprofile", "new"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "{\n   \"secret\" : \"x\"\n}\n");
}

/// An `aemp` child with piped stdin, stdout and stderr, read line by line on threads (so
/// the child never blocks on a full pipe); killed on drop if still running.
struct Interactive {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    /// Everything read from stderr so far (for failure messages).
    err_seen: Vec<String>,
}

/// How long a test waits for an expected line of a child.
const LINE_WAIT: Duration = Duration::from_secs(20);

impl Interactive {
    fn start(mut cmd: Command) -> Interactive {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aemp starts");
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().unwrap()));
        let err = lines(Box::new(child.stderr.take().unwrap()));
        let stdin = child.stdin.take();
        Interactive {
            child,
            stdin,
            out,
            err,
            err_seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next stdout line (panics after [`LINE_WAIT`]).
    fn out_line(&mut self) -> String {
        match self.out.recv_timeout(LINE_WAIT) {
            Ok(l) => l,
            Err(e) => {
                self.drain_err();
                panic!(
                    "no stdout line ({e}); stderr:\n{}",
                    self.err_seen.join("\n")
                )
            }
        }
    }

    /// Reads stderr until a line contains `what` (panics after [`LINE_WAIT`]).
    fn wait_err(&mut self, what: &str) {
        let deadline = Instant::now() + LINE_WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.err.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(what);
                    self.err_seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no stderr line with {what:?}; stderr so far:\n{}",
            self.err_seen.join("\n")
        );
    }

    fn drain_err(&mut self) {
        while let Ok(l) = self.err.try_recv() {
            self.err_seen.push(l);
        }
    }

    /// Sends SIGINT to the child.
    fn interrupt(&self) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// Waits (at most [`LINE_WAIT`]) until the child exits; its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + LINE_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.drain_err();
                panic!(
                    "the child did not exit; stderr:\n{}",
                    self.err_seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The TCP ports process `pid` listens on: its socket inodes (from /proc/<pid>/fd) looked up
/// in the kernel's TCP tables, entries in state LISTEN only.
#[cfg(target_os = "linux")]
fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let Ok(target) = std::fs::read_link(entry.unwrap().path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // Columns: sl local_address rem_address st ... inode (the 10th); st 0A is LISTEN.
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().map(|p| u16::from_str_radix(p, 16));
                ports.push(port.expect("a port").expect("a hex port"));
            }
        }
    }
    ports
}

#[cfg(target_os = "linux")]
#[test]
fn the_tool_node_listens_only_when_its_profile_asks() {
    let dir = TempDir::new("nolisten");
    let port = free_port();
    // Top-level binds are for the nodes run from this file, not for the tool's node.
    let rc = |tool_profile: &str| {
        format!(
            r#"{{"secret": "k", "binds": ["127.0.0.1:0"], "profile": {{
                "lseed": {{"binds": ["127.0.0.1:{port}"]}}{tool_profile}}}}}"#
        )
    };
    std::fs::write(dir.rc(), rc("")).unwrap();
    let seed = RunningNode::start(&dir, &["run", "lseed", "nodeid", "lseed"]);
    seed.wait_for("node running");
    // The check sees a listener where there is one.
    assert_eq!(listening_ports(seed.child.id()), vec![port]);
    let addr = format!("127.0.0.1:{port}");

    // snd works from a node without listener.
    let o = run(&dir, &["--connect", &addr, "snd", "lseed", "devnull", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let tool_ports = |dir: &TempDir, profile: &[&str]| {
        let mut args = vec!["--connect", addr.as_str()];
        args.extend_from_slice(profile);
        args.push("shell");
        let mut shell = Interactive::start(aemp(dir, &args));
        shell.send("cal lseed can \"time\"");
        assert_eq!(shell.out_line(), "true");
        let ports = listening_ports(shell.child.id());
        shell.stdin = None;
        assert!(shell.wait_exit().success());
        ports
    };
    assert_eq!(tool_ports(&dir, &[]), Vec::<u16>::new());
    // So do the binds of a profile selected with profile <name>.
    std::fs::write(dir.rc(), rc(r#", "lp": {"binds": ["127.0.0.1:0"]}"#)).unwrap();
    assert_eq!(tool_ports(&dir, &["profile", "lp"]).len(), 1);

    // Binds in the tool's own profile (here through a parent) are used.
    std::fs::write(
        dir.rc(),
        rc(r#", "aemp": {"parent": "lp"}, "lp": {"binds": ["127.0.0.1:0"]}"#),
    )
    .unwrap();
    let ports = tool_ports(&dir, &[]);
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_ne!(ports[0], port);
}

#[test]
fn ctrl_c_in_the_shell_cancels_the_waiting_command() {
    let dir = TempDir::new("ctrlc");
    std::fs::write(dir.rc(), r#"{"secret": "k"}"#).unwrap();
    let port = free_port();
    let bind = format!(r#"["127.0.0.1:{port}"]"#);
    let node = RunningNode::start(&dir, &["run", "nodeid", "ctrlc", "binds", &bind]);
    node.wait_for("node running");
    let addr = format!("127.0.0.1:{port}");
    // The debug log says when a line starts running, so SIGINT is sent while it waits.
    let mut cmd = aemp(&dir, &["--connect", &addr, "shell", "ctrlc"]);
    cmd.env("RUST_LOG", "aemp::shell=debug");
    let mut shell = Interactive::start(cmd);

    // mon on a node ID waits until the connection is lost: only Ctrl-C ends it.
    shell.send("mon #");
    shell.wait_err("running line=mon #");
    shell.interrupt();
    shell.wait_err("mon: cancelled (Ctrl-C)");
    // The shell goes on with the next command.
    shell.send("cal # can \"time\"");
    assert_eq!(shell.out_line(), "true");

    // At the prompt: the first Ctrl-C only says how to leave; a line in between starts the
    // count again; two in a row leave the shell.
    shell.interrupt();
    shell.wait_err("Ctrl-C again");
    shell.send("cal # can \"time\"");
    assert_eq!(shell.out_line(), "true");
    shell.interrupt();
    shell.wait_err("Ctrl-C again");
    shell.interrupt();
    let status = shell.wait_exit();
    // The cancelled mon counts as a failed command.
    assert_eq!(status.code(), Some(1), "{status:?}");
    shell.wait_err("shell: 1 command(s) failed");
}

/// `aemp log`: the records of an `aemp run` node arrive live, filtered by level, one line
/// each (`<time> <node> <level> <target>: <message>`), until Ctrl-C ends the command with
/// exit status 0.
#[test]
fn log_shows_the_records_of_a_running_node() {
    let dir = TempDir::new("log");
    std::fs::write(
        dir.rc(),
        r#"{"secret": "k", "services": ["AnyEvent::MP::Global"]}"#,
    )
    .unwrap();
    let port = free_port();
    let bind = format!(r#"["127.0.0.1:{port}"]"#);
    let node = RunningNode::start(&dir, &["run", "nodeid", "logsrc", "binds", &bind]);
    node.wait_for("node running");
    let addr = format!("127.0.0.1:{port}");
    // A WARN on the node: a call of a function it does not know.
    let provoke = || {
        let _ = run(
            &dir,
            &["--connect", &addr, "cal", "logsrc", "no::such::function"],
        );
    };
    // Reads lines until one has `what`, provoking a warning on the node now and then until
    // then (the subscription is set up in the background); all lines read.
    let wait_line = |log: &mut Interactive, what: &str| -> Vec<String> {
        let deadline = Instant::now() + LINE_WAIT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            provoke();
            while let Ok(line) = log.out.recv_timeout(Duration::from_millis(500)) {
                let found = line.contains(what);
                seen.push(line);
                if found {
                    return seen;
                }
            }
        }
        log.drain_err();
        panic!(
            "no line with {what:?}: {seen:?}; stderr: {:?}",
            log.err_seen
        );
    };

    // Warnings only, from every node.
    let mut log = Interactive::start(aemp(&dir, &["--connect", &addr, "log", "--level", "warn"]));
    let lines = wait_line(&mut log, "unable to resolve function");
    for l in &lines {
        let f: Vec<&str> = l.splitn(5, ' ').collect();
        assert!(f[0].parse::<f64>().unwrap() > 1.0e9, "{l}");
        assert_eq!(f[1], "logsrc", "{l}");
        assert!(
            ["fatal", "alert", "critical", "error", "warn"].contains(&f[2]),
            "{l}"
        );
        assert!(f[3].ends_with(':'), "{l}");
    }
    log.interrupt();
    assert_eq!(log.wait_exit().code(), Some(0));

    // One node, up to debug: the node's debug record of the new subscription shows.
    let mut log = Interactive::start(aemp(
        &dir,
        &["--connect", &addr, "log", "logsrc", "--level", "8"],
    ));
    let lines = wait_line(&mut log, "forwarding log records");
    assert!(
        lines.last().unwrap().contains(" logsrc debug "),
        "{lines:?}"
    );
    log.interrupt();
    assert_eq!(log.wait_exit().code(), Some(0));

    let o = run(&dir, &["log", "--level", "loud"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a log level"), "{}", stderr(&o));
}
