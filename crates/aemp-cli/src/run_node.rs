//! `aemp run [key value...]`: a node from the configuration, running until SIGINT or
//! SIGTERM.
//!
//! Services: the reference loads Perl modules and calls Perl functions named in `services`.
//! A Rust binary cannot, so services are looked up by name among the init functions this
//! tool registers on its node ([`BUILTIN_SERVICES`]); `AnyEvent::MP::Global` (with or
//! without `::`) makes the node global, which the library does by itself. Any other name is
//! logged as not started.
//!
//! Difference from the reference: there is no watchdog that restarts the node (said in
//! the log by `restart`). With `--connect host:port` the node first connects there and
//! stops with an error if no node comes up at that address within the timeout.

use crate::{failed, Failure, Options};
use aemp::config::{format_hostport, ConfigBuilder, RcDoc, Service};
use aemp::{Config, Cx, HandlerResult, Msg, Node, PortId, Value};

/// The profile `run` uses when one is named: in its arguments (an odd count: the first one;
/// or the `profile` key), or with `profile <name>` before it (`selected`), not both.
/// `None`: the default (the host name), which need not exist in the rc file.
pub(crate) fn profile(
    args: &[serde_json::Value],
    selected: Option<&str>,
) -> Result<Option<String>, Failure> {
    let named = if args.len() % 2 == 1 {
        Some(&args[0])
    } else {
        args.chunks_exact(2)
            .find(|kv| kv[0].as_str() == Some("profile"))
            .map(|kv| &kv[1])
    };
    let named = match named {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(Failure::Usage(format!(
                "run: the profile must be a string, not {other}"
            )))
        }
    };
    match (named, selected) {
        (Some(n), Some(s)) if n != s => Err(Failure::Usage(format!(
            "run: two profiles given ({s:?} with profile before run, {n:?} in its arguments)"
        ))),
        (named, selected) => Ok(named.or_else(|| selected.map(str::to_string))),
    }
}

/// Builds the configuration from `configure`-style arguments (an odd count: the first is
/// the profile) merged with `rc`; `profile` (see [`profile`]) is the profile to use.
pub(crate) fn config(
    args: &[serde_json::Value],
    profile: Option<&str>,
    rc: &RcDoc,
) -> Result<Config, Failure> {
    let mut b = ConfigBuilder::from_args(args).map_err(|e| Failure::Usage(format!("run: {e}")))?;
    if let Some(p) = profile {
        b = b.profile(p);
    }
    b.rc_doc(rc.clone())
        .build()
        .map_err(|e| failed(format!("configuration: {e}")))
}

/// Starts the node and runs it until a termination signal.
pub(crate) async fn run(mut cfg: Config, opts: &Options) -> Result<(), Failure> {
    let profile = cfg.profile.clone();
    let seeds: Vec<String> = cfg.seeds.iter().map(|s| s.text.clone()).collect();
    let services = cfg.services.clone();
    // The tool starts its services itself once the node runs, and only logs names it does
    // not know (rc files are shared with Perl nodes); the library gets the built-in global
    // service only, since it refuses names without a registered function.
    cfg.services.retain(Service::is_global_service);
    let secure = cfg.secure;
    let node = Node::configure(cfg)
        .await
        .map_err(|e| failed(format!("cannot start the node: {e}")))?;
    let addrs: Vec<String> = node.listen_addrs().iter().map(format_hostport).collect();
    tracing::info!(
        node = %node.id(),
        profile = %profile,
        listen = %addrs.join(" "),
        secure,
        "node running"
    );
    if addrs.is_empty() {
        tracing::warn!("the node listens on no address (binds resolved to nothing); other nodes cannot connect to it");
    }
    for hp in &opts.connect {
        if let Err(e) = crate::proto::connect(&node, hp, opts.timeout()).await {
            node.shutdown().await;
            return Err(e);
        }
    }
    if seeds.is_empty() {
        tracing::info!("no seeds configured: the node waits for others to connect to it");
    } else {
        tracing::info!(seeds = %seeds.join(" "), "seeds");
    }
    register_builtins(&node);
    for s in &services {
        start_service(&node, s);
    }
    let signal = wait_for_signal().await?;
    tracing::info!(node = %node.id(), signal, "shutting down");
    node.shutdown().await;
    Ok(())
}

/// The built-in echo service: a port answering `["ping", args..., reply]` with
/// `["pong", args...]`, registered in the global database family `echo`.
pub(crate) const ECHO: &str = "aemp::echo";

/// The family the echo service registers its port in.
pub(crate) const ECHO_FAMILY: &str = "echo";

/// Service names `run` can start (besides `AnyEvent::MP::Global`, which the library handles).
pub(crate) const BUILTIN_SERVICES: [&str; 1] = [ECHO];

/// Registers the init functions of [`BUILTIN_SERVICES`] on `node` (so other nodes can also
/// spawn them there by name).
pub(crate) fn register_builtins(node: &Node) {
    node.register(ECHO, echo_init);
}

/// Init function of [`ECHO`]: runs in the new port's context. The optional first argument
/// is the value of the database entry (default null).
fn echo_init(cx: &mut Cx<'_>, args: Vec<Value>) -> HandlerResult {
    let value = args.into_iter().next().unwrap_or(Value::Null);
    cx.rcv("ping", |cx, msg| {
        let mut parts = msg.into_vec();
        // The reply port is the last element; a ping without one is ignored rather than
        // killing the service for everyone.
        let reply = match parts
            .pop()
            .as_ref()
            .and_then(Value::as_str)
            .map(PortId::parse)
        {
            Some(Ok(p)) => p,
            _ => {
                tracing::debug!("echo: ping without a reply port ignored");
                return Ok(());
            }
        };
        let mut pong = Msg::with_capacity(parts.len() + 1);
        pong.push("pong");
        pong.0.extend(parts);
        cx.snd(&reply, pong);
        Ok(())
    });
    // Anything else is ignored: a stray message must not kill the service.
    cx.rcv_default(|_cx, msg| {
        tracing::debug!(tag = ?msg.tag(), "echo: message ignored");
        Ok(())
    });
    cx.node().db_reg(ECHO_FAMILY, &cx.self_port(), value)?;
    Ok(())
}

/// Starts one configured service, or logs why it is not started.
fn start_service(node: &Node, s: &Service) {
    if s.is_global_service() {
        tracing::info!("service AnyEvent::MP::Global: the node is a global node");
        return;
    }
    let (given, args) = match s {
        Service::Module(m) => (m.as_str(), Vec::new()),
        Service::Function(f) => (f.as_str(), Vec::new()),
        Service::Call { func, args } => (func.as_str(), args.clone()),
    };
    let name = given.trim_end_matches("::");
    if !BUILTIN_SERVICES.contains(&name) {
        tracing::warn!(
            service = given,
            "service not started: no built-in service of that name (a Rust node cannot load \
             Perl modules or call Perl functions; built-in: {}, AnyEvent::MP::Global)",
            BUILTIN_SERVICES.join(", ")
        );
        return;
    }
    match node.spawn(node.id(), name, args) {
        Ok(port) => tracing::info!(service = name, port = %port, "service started"),
        Err(e) => tracing::warn!(service = name, "service not started: {e}"),
    }
}

/// Waits for SIGINT or SIGTERM (Ctrl-C only, off Unix); returns its name.
async fn wait_for_signal() -> Result<&'static str, Failure> {
    let sig_err = |e: std::io::Error| failed(format!("cannot watch for signals: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(sig_err)?;
        let mut int = signal(SignalKind::interrupt()).map_err(sig_err)?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(sig_err)?;
        Ok("Ctrl-C")
    }
}
