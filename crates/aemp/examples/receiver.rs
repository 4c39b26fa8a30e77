//! The receiving half of the simple sender/receiver pair.
//!
//! The receiver is the seed of a tiny network: it listens on a well-known address, lists that
//! address among its own seeds (which makes it a global node, holder of the database), creates
//! one port and registers it in the database family `receivers`. Senders find it there.
//!
//! ```text
//! cargo run -p aemp --example receiver                # terminal 1 (Ctrl-C stops it)
//! cargo run -p aemp --example sender                  # terminal 2, as often as you like
//! cargo run -p aemp --example receiver -- --demo      # both in one process, then exit
//! ```
//!
//! Options: `--addr HOST:PORT` (default `127.0.0.1:4040`), `--secret S` (default `chat`).

use aemp::{msg, Config, Node, PortId, Value};
use std::error::Error;
use std::time::Duration;

const USAGE: &str = "usage: receiver [--addr HOST:PORT] [--secret SECRET] [--demo]";

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
            eprintln!("receiver: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    if args.demo {
        return demo(&args.secret).await;
    }
    // Binding the well-known address and seeding from it: this node is the seed.
    let node = start_receiver(&args.addr, &[args.addr.as_str()], &args.secret).await?;
    println!(
        "receiver {} listening on {:?}; Ctrl-C stops it",
        node.id(),
        node.listen_addrs()
    );
    tokio::signal::ctrl_c().await?;
    node.shutdown().await;
    Ok(())
}

/// Configures the receiving node and registers its port under `receivers`.
async fn start_receiver(bind: &str, seeds: &[&str], secret: &str) -> Result<Node, Box<dyn Error>> {
    let cfg = Config::builder()
        // The example's settings must win over whatever ~/.perl-anyevent-mp says.
        .norc(true)
        // A trailing `/` appends a random suffix, so every run has a fresh node ID.
        .nodeid("receiver/")
        .binds([bind])
        .seeds(seeds.iter().copied())
        .secret(secret)
        .build()?;
    let node = Node::configure(cfg).await?;
    let port = node
        .port()
        // Tag handlers see the message without its tag: here `[n, text]`.
        .on("test", |cx, m| {
            println!("receiver: from {}: test {m}", cx.src_node());
            Ok(())
        })
        // `cal` appends a reply port as the last element. Messages from one node to one port
        // arrive in order, so when the sender gets this reply, everything it sent before has
        // been handled.
        .on("ping", |cx, m| {
            // A ping without a reply port is an error, and an error kills the port.
            cx.reply(&m, msg!["pong"])?;
            Ok(())
        })
        .build();
    // The entry disappears when the port dies or this node leaves the network.
    node.db_reg("receivers", &port, Value::Null)?;
    println!("receiver: port {port} registered in family `receivers`");
    Ok(node)
}

/// Receiver and a sender as two nodes of one process, talking over TCP on 127.0.0.1.
async fn demo(secret: &str) -> Result<(), Box<dyn Error>> {
    // An ephemeral port, so that the demo does not clash with a running receiver. A node
    // without seeds is global, like one that finds itself among its seeds.
    let receiver = start_receiver("127.0.0.1:0", &[], secret).await?;
    let seed = receiver
        .listen_addrs()
        .first()
        .ok_or("receiver has no listener")?
        .to_string();

    // The sending node: finds the receiver's port through the database, the way sender.rs
    // does.
    let cfg = Config::builder()
        .norc(true)
        .nodeid("sender/")
        .binds(["127.0.0.1:0"])
        .seeds([seed.as_str()])
        .secret(secret)
        .build()?;
    let sender = Node::configure(cfg).await?;
    let mut watch = sender.db_mon("receivers")?;
    let target: PortId = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let change = watch.next().await.ok_or("node shut down")?;
            if let Some(key) = change.contents.keys().next() {
                return Ok::<PortId, Box<dyn Error>>(key.parse()?);
            }
        }
    })
    .await??;
    for n in 1..=3 {
        sender.snd(&target, msg!["test", n, format!("hello #{n}")])?;
    }
    let pong = sender
        .cal(&target, msg!["ping"])
        .timeout(Duration::from_secs(5))
        .await?;
    println!("sender: got {pong}: all messages delivered");
    sender.shutdown().await;
    receiver.shutdown().await;
    Ok(())
}
