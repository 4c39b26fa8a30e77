//! `aemp run [key value...]`: a node from the configuration, running until SIGINT or
//! SIGTERM.
//!
//! Differences from the reference: there is no watchdog that restarts the node, and
//! services cannot be started, because they name Perl modules and functions and this
//! binary has no built-in init functions. Both are said in the log.

use crate::{failed, resolve_hostport, Failure, Options};
use aemp::config::{format_hostport, ConfigBuilder, RcDoc, Service};
use aemp::{Config, Node, NodeEvent};
use tokio::sync::broadcast::error::RecvError;

/// Builds the configuration from `configure`-style arguments (an odd count: the first is
/// the profile) merged with `rc`.
pub(crate) fn config(args: &[serde_json::Value], rc: &RcDoc) -> Result<Config, Failure> {
    ConfigBuilder::from_args(args)
        .map_err(|e| Failure::Usage(format!("run: {e}")))?
        .rc_doc(rc.clone())
        .build()
        .map_err(|e| failed(format!("configuration: {e}")))
}

/// Starts the node and runs it until a termination signal.
pub(crate) async fn run(cfg: Config, opts: &Options) -> Result<(), Failure> {
    let profile = cfg.profile.clone();
    let seeds: Vec<String> = cfg.seeds.iter().map(|s| s.text.clone()).collect();
    let services = cfg.services.clone();
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
        connect(&node, hp, opts.timeout()).await?;
    }
    if seeds.is_empty() {
        tracing::info!("no seeds configured: the node waits for others to connect to it");
    } else {
        tracing::info!(seeds = %seeds.join(" "), "seeds");
    }
    for s in &services {
        let name = match s {
            Service::Module(m) => m.as_str(),
            Service::Function(f) => f.as_str(),
            Service::Call { func, .. } => func.as_str(),
        };
        tracing::warn!(
            service = name,
            "service not started: it names Perl code, which a Rust node cannot load; embed \
             aemp in a Rust program and register an init function of that name instead"
        );
    }
    let signal = wait_for_signal().await?;
    tracing::info!(node = %node.id(), signal, "shutting down");
    node.shutdown();
    Ok(())
}

/// Dials `hp` and reports in the log whether the node there comes up within `timeout`
/// (without waiting for it: the node runs meanwhile).
async fn connect(node: &Node, hp: &str, timeout: std::time::Duration) -> Result<(), Failure> {
    let addrs = resolve_hostport(hp).await?;
    let mut events = node.node_events();
    for a in &addrs {
        node.connect(*a).map_err(failed)?;
    }
    let hp = hp.to_string();
    tokio::spawn(async move {
        let up = tokio::time::timeout(timeout, async {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Up(id)) => return Some(id),
                    Ok(NodeEvent::Down(..)) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                }
            }
        })
        .await;
        match up {
            Ok(Some(id)) => tracing::info!(node = %id, addr = %hp, "connected (--connect)"),
            Ok(None) => {}
            Err(_) => tracing::warn!(
                addr = %hp,
                "--connect: no node came up within {} s (is one listening there, with the same \
                 secret?)",
                timeout.as_secs_f64()
            ),
        }
    });
    Ok(())
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
