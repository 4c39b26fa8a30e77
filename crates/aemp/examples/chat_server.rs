//! The chat server: one port that every client joins, registered in the database.
//!
//! The server is the seed of the chat network: it binds a well-known address and lists it
//! among its seeds, which makes it a global node. Its port is registered with
//! `db_reg("chat_servers", ...)`, so clients (see `chat_client.rs`) find it through the
//! database instead of knowing a port name.
//!
//! Protocol of the server port (what clients send):
//!
//! * `["join", client_port]`: start receiving the chat; the server monitors `client_port`, so
//!   a client that dies (process killed, connection lost) is removed without saying goodbye;
//! * `["say", text]`: broadcast `["said", nick, text]` to every joined client (the nick is
//!   taken from the sender's node ID, up to its `/`);
//! * `["leave", client_port, reply_port]` (a `cal`): stop receiving; answered with `["bye"]`.
//!
//! The server also sends `["info", text]` when someone joins or leaves.
//!
//! ```text
//! cargo run -p aemp --example chat_server                   # Ctrl-C stops it
//! cargo run -p aemp --example chat_client -- --nick alice   # in other terminals
//! cargo run -p aemp --example chat_server -- --demo         # server and two clients in one process
//! ```
//!
//! Options: `--addr HOST:PORT` (default `127.0.0.1:4040`), `--secret S` (default `chat`).

use aemp::{msg, Config, Inbox, MonGuard, Monitor, Msg, MsgExt, Node, PortId, Value};
use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USAGE: &str = "usage: chat_server [--addr HOST:PORT] [--secret SECRET] [--demo]";

struct Args {
    addr: String,
    secret: String,
    demo: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:4040".into(),
        secret: "chat".into(),
        demo: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => args.addr = it.next().ok_or(USAGE)?,
            "--secret" => args.secret = it.next().ok_or(USAGE)?,
            "--demo" => args.demo = true,
            _ => return Err(USAGE.into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Errors are printed with Display (returning them from main would print Debug).
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    if args.demo {
        return demo(&args.secret).await;
    }
    let (node, port) = start_server(&args.addr, &[args.addr.as_str()], &args.secret).await?;
    println!(
        "chat server {port} on {:?}; Ctrl-C stops it",
        node.listen_addrs()
    );
    tokio::signal::ctrl_c().await?;
    node.shutdown().await;
    Ok(())
}

/// The joined clients, by port. Dropping a client's [`MonGuard`] cancels its monitor.
type Clients = Arc<Mutex<BTreeMap<PortId, MonGuard>>>;

/// The part of a node ID before its random suffix: `alice/Xy12` -> `alice`.
fn nick(node: &str) -> &str {
    node.split('/').next().unwrap_or(node)
}

/// Sends `m` to every joined client.
fn broadcast(cx: &mut aemp::Cx<'_>, clients: &Clients, m: Msg) {
    // Handlers of a port run one at a time on the node's dispatcher, so this lock is never
    // contended; it only makes the map shareable between the tag handlers.
    let ports: Vec<PortId> = lock(clients).keys().cloned().collect();
    for p in &ports {
        cx.snd(p, m.clone());
    }
}

fn lock(clients: &Clients) -> std::sync::MutexGuard<'_, BTreeMap<PortId, MonGuard>> {
    // A panicking handler only kills its port; the map itself is still consistent.
    clients
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A kill reason as text: `["transport_error", "bob/x1", "EOF from peer"]` becomes
/// `transport_error bob/x1 EOF from peer`; an empty reason is a normal kill.
fn describe(reason: &[Value]) -> String {
    if reason.is_empty() {
        return "normal kill".into();
    }
    let parts: Vec<String> = reason
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .collect();
    parts.join(" ")
}

/// The port ID in element `i` of `m`, if there is a valid one.
fn port_arg(m: &Msg, i: usize) -> Option<PortId> {
    m.port(i).ok()
}

/// Configures the server node, creates the chat port and registers it.
async fn start_server(
    bind: &str,
    seeds: &[&str],
    secret: &str,
) -> Result<(Node, PortId), Box<dyn Error>> {
    let cfg = Config::builder()
        // The example's settings must win over whatever ~/.perl-anyevent-mp says.
        .norc(true)
        .nodeid("chat_server/")
        .binds([bind])
        .seeds(seeds.iter().copied())
        .secret(secret)
        .build()?;
    let node = Node::configure(cfg).await?;
    let clients: Clients = Arc::default();

    // A handler that returns an error kills its port, and a dead server helps nobody: bad
    // requests from clients are logged and ignored instead.
    let (c_join, c_say, c_leave, c_gone) = (
        clients.clone(),
        clients.clone(),
        clients.clone(),
        clients.clone(),
    );
    let server = node
        .port()
        .on("join", move |cx, m| {
            let Some(client) = port_arg(&m, 0) else {
                eprintln!("server: bad join {m}");
                return Ok(());
            };
            // When the client port dies, the server gets ["gone", client, reason...]. This
            // also covers a client node that vanishes: the lost connection kills (from our
            // point of view) all its ports with a transport_error.
            let me = cx.self_port();
            let guard = cx.mon(&client, Monitor::send(&me, msg!["gone", client.as_str()]));
            // A second join of the same port replaces (and so cancels) the older monitor.
            lock(&c_join).insert(client.clone(), guard);
            println!("server: {client} joined");
            broadcast(
                cx,
                &c_join,
                msg!["info", format!("{} joined", nick(client.node()))],
            );
            Ok(())
        })
        .on("say", move |cx, m| {
            let Some(text) = m.get(0).and_then(Value::as_str) else {
                eprintln!("server: bad say {m}");
                return Ok(());
            };
            // The speaker is the node the message came from (Perl's $SRCNODE).
            let who = nick(cx.src_node().as_str()).to_string();
            println!("server: <{who}> {text}");
            broadcast(cx, &c_say, msg!["said", who, text]);
            Ok(())
        })
        .on("leave", move |cx, m| {
            let (Some(client), Some(reply)) = (port_arg(&m, 0), port_arg(&m, 1)) else {
                eprintln!("server: bad leave {m}");
                return Ok(());
            };
            // Dropping the guard cancels the monitor: a polite goodbye is not a death.
            if lock(&c_leave).remove(&client).is_some() {
                println!("server: {client} left");
                broadcast(
                    cx,
                    &c_leave,
                    msg!["info", format!("{} left", nick(client.node()))],
                );
            }
            cx.snd(&reply, msg!["bye"]);
            Ok(())
        })
        .on("gone", move |cx, m| {
            let Some(client) = port_arg(&m, 0) else {
                return Ok(());
            };
            let reason = describe(&m.as_slice()[1..]);
            if lock(&c_gone).remove(&client).is_some() {
                println!("server: {client} died: {reason}");
                let text = format!("{} left ({reason})", nick(client.node()));
                broadcast(cx, &c_gone, msg!["info", text]);
            }
            Ok(())
        })
        .build();
    // Found by clients through the database; removed when the port dies or the node leaves.
    node.db_reg("chat_servers", &server, Value::Null)?;
    Ok((node, server))
}

/// Server, alice and bob as three nodes of one process, over TCP on 127.0.0.1.
async fn demo(secret: &str) -> Result<(), Box<dyn Error>> {
    // An ephemeral port, so that the demo does not clash with a running server. A node
    // without seeds is global, like one that finds itself among its seeds.
    let (server_node, _server) = start_server("127.0.0.1:0", &[], secret).await?;
    let seed = server_node
        .listen_addrs()
        .first()
        .ok_or("server has no listener")?
        .to_string();

    let mut alice = DemoClient::join("alice", &seed, secret).await?;
    alice.expect("info").await?;
    let mut bob = DemoClient::join("bob", &seed, secret).await?;
    alice.expect("info").await?;
    bob.expect("info").await?;

    alice.say("hi bob")?;
    alice.expect("said").await?;
    bob.expect("said").await?;
    bob.say("hello alice")?;
    alice.expect("said").await?;
    bob.expect("said").await?;

    // Bob's node disappears without a word, as if its process was killed: the server's
    // monitor on bob's port fires and everybody left is told.
    println!("-- bob's node shuts down");
    bob.node.shutdown().await;
    alice.expect("info").await?;

    // Alice leaves politely: a cal, answered once the server has removed her.
    let bye = alice
        .node
        .cal(&alice.server, msg!["leave", alice.inbox.port().as_str()])
        .timeout(Duration::from_secs(5))
        .await?;
    println!("alice <- {bye}");
    alice.node.shutdown().await;
    server_node.shutdown().await;
    Ok(())
}

/// A scripted client node (chat_client.rs is the interactive one).
struct DemoClient {
    name: &'static str,
    node: Node,
    server: PortId,
    inbox: Inbox,
}

impl DemoClient {
    async fn join(name: &'static str, seed: &str, secret: &str) -> Result<Self, Box<dyn Error>> {
        let cfg = Config::builder()
            .norc(true)
            .nodeid(format!("{name}/"))
            .binds(["127.0.0.1:0"])
            .seeds([seed])
            .secret(secret)
            .build()?;
        let node = Node::configure(cfg).await?;
        let mut watch = node.db_mon("chat_servers")?;
        let server: PortId = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let change = watch.next().await.ok_or("node shut down")?;
                if let Some(key) = change.contents.keys().next() {
                    return Ok::<PortId, Box<dyn Error>>(key.parse()?);
                }
            }
        })
        .await??;
        // Messages for this client are awaited one at a time.
        let inbox = node.inbox(64);
        node.snd(&server, msg!["join", inbox.port().as_str()])?;
        Ok(DemoClient {
            name,
            node,
            server,
            inbox,
        })
    }

    fn say(&self, text: &str) -> Result<(), aemp::Error> {
        println!("{} -> say {text:?}", self.name);
        self.node.snd(&self.server, msg!["say", text])
    }

    /// Waits for the next message and checks its tag.
    async fn expect(&mut self, tag: &str) -> Result<(), Box<dyn Error>> {
        let m = tokio::time::timeout(Duration::from_secs(10), self.inbox.next()).await??;
        println!("{} <- {m}", self.name);
        if m.tag() != Some(tag) {
            return Err(format!("{}: expected {tag}, got {m}", self.name).into());
        }
        Ok(())
    }
}
