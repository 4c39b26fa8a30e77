//! `aemp`: the command-line tool of aemp.
//!
//! Command groups:
//! * `demo`: a small local network in one process (see [`demo`]);
//! * configuration commands on the rc file, chained on one command line
//!   ([`rc_commands`]);
//! * `run`: a node from the configuration, until SIGINT/SIGTERM ([`run_node`]);
//! * protocol commands (`snd`, `cal`, `mon`, ...) with a short-lived node ([`proto`]), also
//!   line by line from stdin ([`shell`]).
//!
//! `aemp help <command>` and `aemp <command> --help` print a command's usage ([`help`]).
//!
//! Exit status: 0 on success, 1 when a command failed, 2 for a usage error.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod demo;
mod gencert;
mod help;
mod log_cmd;
mod proto;
mod rc_commands;
mod run_node;
mod shell;
mod stats;

use aemp::config::RcDoc;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// How long the network is waited for by default (connecting, replies).
pub(crate) const NET_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `--timeout` accepted.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

const USAGE: &str = "\
usage: aemp [--connect host:port]... [--timeout S] <command> [<args>...] [<command> [<args>...]]...

aemp is the command-line tool of aemp, a Rust implementation of Perl AnyEvent::MP 2.02.

Getting started:
  demo [--nodes N] [--seconds S]   run a small local network (default 3 nodes, ~3 s) and
                                   show messages, round-trip times, throughput, a monitor

Running a node:
  run [<profile>] [key value...]   configure a node as Perl's configure does (e.g.
                                   run profile seed nodeid %n binds '[\"*:4040\"]') and run
                                   it until SIGINT/SIGTERM; --connect host:port (before
                                   the command) also connects it to the node there;
                                   built-in services: aemp::echo, AnyEvent::MP::Global

Protocol commands (a short-lived node, profile \"aemp\" or the one given with profile
<name> before the command, node ID aemp/%n/%u):
  snd <port> <arg...>              send a message and confirm its delivery
  cal <port> <arg...>              send with a reply port appended, print the reply as JSON
  mon <port>                       wait until the port dies, print the kill reason
  eval <node> <expr...>            not supported (this implementation runs no Perl code)
  trace <node>                     print the nodes reachable from <node> and their links
                                   (native aemp_nodes request; Perl nodes do not answer it)
  stats <node>                     print the node's per-peer connection statistics
  log [<node>] [--level L]         print the log records of every node (or of <node>) live,
                                   up to level L (fatal..trace or 1-9, default info), until
                                   Ctrl-C (AnyEvent::MP::LogCatcher; aemp and Perl nodes)
  shell [<node>]                   read such commands (and nodes, db <family>) from stdin,
                                   one per line, on one node
  The node reaches other nodes through its seeds; --connect host:port (before the
  command) connects to a node directly first (an error if none comes up there).
  Connecting and replies are awaited for at most 10 s (--timeout S before the command
  changes that; mon waits without limit). The node listens on no address unless its
  profile sets binds (top-level binds are not used for it).

Configuration commands (act on the rc file; they chain on one command line):
  profile <name>                   following commands act on this profile (which must
                                   exist when it selects the node of run, snd, ...)
  setnodeid <id> | delnodeid       node ID (%n: host name, %u or trailing /: random)
  gensecret | setsecret <s> | delsecret
  gencert | setcert <pemfile> | delcert   (gencert: a new self-signed key+certificate)
  setseeds <a,b> | delseeds | addseed <hp> | delseed <hp>
  setbinds <a,b> | delbinds | addbind <hp> | delbind <hp>
  setservices <a,b> | delservices | addservice <s> | delservice <s>
  seteval <code> | deleval         (kept for Perl nodes; aemp never evaluates code)
  setparent <profile> | delparent | delprofile <name>
  showprofile <name> | showconfig [<profile> [key value...]]
  [set|del]secure, monitor_timeout, connect_interval, framing_format, auth_offer,
  auth_accept, autocork, nodelay
  Each setX also works as X (setsecret s = secret s), except seteval.

Arguments starting with [, { or \" are decoded as JSON; a first argument starting with [
is the whole command line as one JSON array.

Other:
  help | --help | -h               this text
  help <command> | <command> --help   the usage of one command
  --version | -V                   the version

Exit status: 0 success, 1 a command failed (including a broken rc file), 2 usage error
(unknown command or option, missing or malformed argument).

Environment: PERL_ANYEVENT_MP_RC (rc file; default ~/.perl-anyevent-mp), RUST_LOG or
AE_VERBOSE (0-9, AnyEvent levels) for the log level; AEMP_TRACE=1 logs every message a
node sends, receives and delivers.
";

/// Why the tool stops with a non-zero status.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The command ran and failed (exit 1).
    Failed(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("aemp: {m}");
                eprintln!("(see \"aemp help\")");
                ExitCode::from(2)
            }
            Failure::Failed(m) => {
                eprintln!("aemp: {m}");
                ExitCode::from(1)
            }
        }
    }
}

/// A failed command: `Failure::Failed` from anything displayable.
pub(crate) fn failed(m: impl std::fmt::Display) -> Failure {
    Failure::Failed(m.to_string())
}

/// Options that come before the first command.
#[derive(Debug, Default)]
pub(crate) struct Options {
    /// `--connect host:port`, in order.
    pub connect: Vec<String>,
    /// `--timeout S`: how long protocol commands wait for the network.
    pub timeout: Option<Duration>,
}

impl Options {
    /// How long protocol commands wait for the network.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(NET_TIMEOUT)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.exit(),
    }
}

/// Splits off the leading options; returns the options and the command line.
fn parse_options(args: Vec<String>) -> Result<(Options, Vec<String>), Failure> {
    let mut opts = Options::default();
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.peek() {
        if a == "--connect" {
            it.next();
            let hp = it
                .next()
                .ok_or_else(|| Failure::Usage("--connect needs host:port".into()))?;
            opts.connect.push(hp);
        } else if let Some(hp) = a.strip_prefix("--connect=") {
            opts.connect.push(hp.to_string());
            it.next();
        } else if a == "--timeout" {
            it.next();
            let s = it
                .next()
                .ok_or_else(|| Failure::Usage("--timeout needs a number of seconds".into()))?;
            opts.timeout = Some(parse_timeout(&s)?);
        } else {
            break;
        }
    }
    Ok((opts, it.collect()))
}

/// A timeout in seconds: positive, finite, at most a day.
fn parse_timeout(s: &str) -> Result<Duration, Failure> {
    s.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= MAX_TIMEOUT_SECS)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--timeout must be a number of seconds in (0, {MAX_TIMEOUT_SECS}], not {s:?}"
            ))
        })
}

fn dispatch(args: Vec<String>) -> Result<(), Failure> {
    let (opts, args) = parse_options(args)?;
    let Some(first) = args.first() else {
        eprint!("{USAGE}");
        return Err(Failure::Usage("no command given".into()));
    };
    // `<command> --help` (only right after the first command: later, --help may be a value).
    if args.get(1).is_some_and(|a| help::is_help_flag(a)) {
        return print_help(Some(first.as_str()));
    }
    match first.as_str() {
        "help" | "--help" | "-h" => {
            if args.len() > 2 {
                return Err(Failure::Usage("help takes at most one command name".into()));
            }
            return print_help(args.get(1).map(String::as_str));
        }
        "--version" | "-V" | "version" => {
            println!("aemp {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        // Before the rc file is loaded: the demo must work whatever the rc file holds.
        "demo" => {
            if !opts.connect.is_empty() || opts.timeout.is_some() {
                return Err(Failure::Usage(
                    "--connect and --timeout are only used by run and the protocol commands".into(),
                ));
            }
            return run_demo(&args[1..]);
        }
        a if a.starts_with("--") => {
            return Err(Failure::Usage(format!("unknown option {a}")));
        }
        _ => {}
    }

    // A broken rc file stops everything before any command runs, so it is never rewritten.
    let mut rc = RcDoc::load_default()
        .map_err(|e| failed(format!("{e} (nothing was done; fix or remove the file)")))?;
    let outcome =
        rc_commands::run(&args, &mut rc, &mut std::io::stdout().lock()).map_err(|e| match e {
            rc_commands::CmdError::Config(_)
            | rc_commands::CmdError::ReadFile { .. }
            | rc_commands::CmdError::Output(_)
            | rc_commands::CmdError::Generate(_)
            | rc_commands::CmdError::UnknownProfile { .. } => failed(e),
            _ => Failure::Usage(e.to_string()),
        })?;
    let name = match outcome.rest_values.first() {
        None => None,
        Some(serde_json::Value::String(s)) if COMMANDS.contains(&s.as_str()) => Some(s.as_str()),
        // Refused before saving: a typo must not leave half a command line applied.
        Some(other) => {
            let shown = other
                .as_str()
                .map_or_else(|| other.to_string(), |s| format!("{s:?}"));
            return Err(Failure::Usage(format!("unknown command {shown}")));
        }
    };
    let cmd_args = outcome.rest_values.get(1..).unwrap_or_default();
    // `... <command> --help` after configuration commands: help only, nothing is saved.
    if let (Some(name), Some(serde_json::Value::String(flag))) = (name, cmd_args.first()) {
        if help::is_help_flag(flag) {
            return print_help(Some(name));
        }
    }
    // `profile <name>` before a command that runs a node selects that node's profile, which
    // must exist (checked before saving: nothing is written for a typo).
    let profile = match (name, &outcome.profile) {
        (Some("run"), selected) => run_node::profile(cmd_args, selected.as_deref())?,
        (Some("snd" | "cal" | "mon" | "trace" | "shell" | "stats" | "log"), Some(p)) => {
            Some(p.clone())
        }
        _ => None,
    };
    if let Some(p) = &profile {
        rc_commands::require_profile(&rc, p).map_err(failed)?;
    }
    if outcome.changed {
        rc.save().map_err(failed)?;
    }
    let Some(name) = name else {
        if !opts.connect.is_empty() || opts.timeout.is_some() {
            return Err(Failure::Usage(
                "--connect and --timeout are only used by run and the protocol commands".into(),
            ));
        }
        return Ok(());
    };
    match name {
        "run" => {
            init_logging("info");
            let cfg = run_node::config(cmd_args, profile.as_deref(), &rc)?;
            runtime(2)?.block_on(run_node::run(cfg, &opts))
        }
        "demo" => run_demo(&outcome.rest[1..]),
        "help" => match cmd_args {
            [] => print_help(None),
            [serde_json::Value::String(c)] => print_help(Some(c.as_str())),
            _ => Err(Failure::Usage("help takes at most one command name".into())),
        },
        "shell" => {
            init_logging("warn");
            let default = match cmd_args {
                [] => None,
                [serde_json::Value::String(n)] => {
                    Some(aemp::NodeId::new(n).map_err(|e| Failure::Usage(format!("shell: {e}")))?)
                }
                _ => return Err(Failure::Usage("shell takes at most one node ID".into())),
            };
            let cfg = proto::config(&rc, profile.as_deref().unwrap_or(proto::TOOL_PROFILE))?;
            runtime(1)?.block_on(shell::run(cfg, &opts, default))
        }
        "snd" | "cal" | "mon" | "trace" => {
            init_logging("warn");
            let req = proto::Request::parse(name, cmd_args)?;
            let cfg = proto::config(&rc, profile.as_deref().unwrap_or(proto::TOOL_PROFILE))?;
            runtime(1)?.block_on(proto::run(cfg, &opts, req))
        }
        "stats" => {
            init_logging("warn");
            let cfg = proto::config(&rc, profile.as_deref().unwrap_or(proto::TOOL_PROFILE))?;
            runtime(1)?.block_on(stats::run(cfg, &opts, cmd_args))
        }
        "log" => {
            init_logging("warn");
            let cfg = proto::config(&rc, profile.as_deref().unwrap_or(proto::TOOL_PROFILE))?;
            runtime(1)?.block_on(log_cmd::run(cfg, &opts, cmd_args))
        }
        "eval" => Err(failed(
            "eval is not supported by this implementation: it runs no Perl code, and a Rust \
             node cannot evaluate Perl expressions (aemp shell offers snd/cal/mon instead)",
        )),
        "restart" => Err(failed(
            "restart is not supported: aemp run has no watchdog to restart it; stop the node \
             with SIGTERM and start it again",
        )),
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

/// The commands [`dispatch`] runs after the configuration commands.
const COMMANDS: [&str; 12] = [
    "run", "demo", "help", "snd", "cal", "mon", "eval", "shell", "trace", "restart", "stats", "log",
];

/// Prints the overview (`None`) or the usage of one command; an unknown command is a usage
/// error.
fn print_help(command: Option<&str>) -> Result<(), Failure> {
    match command {
        None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(c) => match help::topic(c) {
            Some(text) => {
                print!("{text}");
                Ok(())
            }
            None => Err(Failure::Usage(format!("no help for unknown command {c:?}"))),
        },
    }
}

fn run_demo(args: &[String]) -> Result<(), Failure> {
    init_logging("warn");
    let demo_opts = demo::DemoOptions::parse(args)?;
    runtime(2)?.block_on(demo::run(demo_opts))
}

/// A tokio runtime: current-thread for one worker, else multi-threaded.
fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, Failure> {
    let mut b = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    b.enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the async runtime: {e}")))
}

/// Logs to stderr. The filter comes from `RUST_LOG`, else from `AE_VERBOSE` (AnyEvent's
/// 0-9 levels), else `default`; it filters what is shown only: the log catcher's layer
/// ([`aemp::log_catcher::layer`]) sees every event, so that catchers (`aemp log`) get the
/// levels they ask for from the tool's nodes.
fn init_logging(default: &str) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::try_new(&f).ok(),
        _ => None,
    }
    .or_else(|| {
        std::env::var("AE_VERBOSE")
            .ok()
            .and_then(|v| v.trim().parse::<u8>().ok())
            .map(|v| EnvFilter::new(ae_verbose_filter(v)))
    })
    .unwrap_or_else(|| EnvFilter::new(default));
    let shown = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(shown)
        .with(aemp::log_catcher::layer())
        .try_init();
}

/// AnyEvent::Log levels (0 off, 1 fatal ... 4 error, 5 warn, 6 note, 7 info, 8 debug,
/// 9 trace) as a tracing filter.
fn ae_verbose_filter(level: u8) -> &'static str {
    match level {
        0 => "off",
        1..=4 => "error",
        5 => "warn",
        6 | 7 => "info",
        8 => "debug",
        _ => "trace",
    }
}

/// Resolves `host:port` (IPv6 as `[addr]:port`) to socket addresses.
pub(crate) async fn resolve_hostport(hp: &str) -> Result<Vec<SocketAddr>, Failure> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(hp)
        .await
        .map_err(|e| Failure::Usage(format!("cannot resolve {hp:?} (expected host:port): {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::Usage(format!("{hp:?} resolves to no address")));
    }
    Ok(addrs)
}

/// A message (a list of values) as compact JSON without the outer brackets, as the
/// reference prints `cal` replies.
pub(crate) fn json_body(values: &[aemp::Value]) -> String {
    let v = serde_json::to_value(values)
        .unwrap_or_else(|e| serde_json::Value::String(format!("<unprintable: {e}>")));
    let s = v.to_string();
    match s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) => inner.to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options_before_the_command() {
        let (o, rest) =
            parse_options(argv(&["--connect", "h:1", "--connect=h:2", "cal", "x"])).unwrap();
        assert_eq!(o.connect, argv(&["h:1", "h:2"]));
        assert_eq!(rest, argv(&["cal", "x"]));
        assert_eq!(o.timeout(), NET_TIMEOUT);
        let (o, rest) = parse_options(argv(&["--timeout", "0.5", "mon", "p"])).unwrap();
        assert_eq!(o.timeout(), Duration::from_millis(500));
        assert_eq!(rest, argv(&["mon", "p"]));
        for bad in [
            &["--connect"][..],
            &["--timeout"],
            &["--timeout", "0"],
            &["--timeout", "inf"],
            &["--timeout", "x"],
        ] {
            assert!(
                matches!(parse_options(argv(bad)), Err(Failure::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn json_body_strips_only_the_outer_brackets() {
        use aemp::Value;
        let v = vec![
            Value::from("a"),
            Value::List(vec![Value::Int(1), Value::Float(2.5)]),
            Value::Null,
        ];
        assert_eq!(json_body(&v), r#""a",[1,2.5],null"#);
        assert_eq!(json_body(&[]), "");
    }

    #[test]
    fn ae_verbose_levels() {
        assert_eq!(ae_verbose_filter(0), "off");
        assert_eq!(ae_verbose_filter(4), "error");
        assert_eq!(ae_verbose_filter(5), "warn");
        assert_eq!(ae_verbose_filter(7), "info");
        assert_eq!(ae_verbose_filter(9), "trace");
    }
}
