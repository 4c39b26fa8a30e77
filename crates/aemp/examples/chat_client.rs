//! The chat client: joins the chat server found in the database and chats over stdin/stdout.
//!
//! Every line read from stdin is said to everybody; everything the server broadcasts is
//! printed. At the end of input the client leaves politely and exits; if the server dies, the
//! client notices through its monitor and exits with an error.
//!
//! ```text
//! cargo run -p aemp --example chat_server                  # first, in another terminal
//! cargo run -p aemp --example chat_client -- --nick alice
//! printf 'hi\nbye\n' | cargo run -p aemp --example chat_client -- --nick bob
//! ```
//!
//! Options: `--seed HOST:PORT` (the server's address, default `127.0.0.1:4040`),
//! `--bind HOST:PORT` (default `127.0.0.1:0`), `--secret S` (default `chat`), `--nick NAME`
//! (default `guest`; the node ID becomes `NAME/<random>`).

use aemp::{msg, Config, Msg, Node, PortId};
use std::error::Error;
use std::io::BufRead;
use std::time::Duration;

const USAGE: &str =
    "usage: chat_client [--seed HOST:PORT] [--bind HOST:PORT] [--secret SECRET] [--nick NAME]";

struct Args {
    seed: String,
    bind: String,
    secret: String,
    nick: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: "127.0.0.1:4040".into(),
        bind: "127.0.0.1:0".into(),
        secret: "chat".into(),
        nick: "guest".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seed" => args.seed = it.next().ok_or(USAGE)?,
            "--bind" => args.bind = it.next().ok_or(USAGE)?,
            "--secret" => args.secret = it.next().ok_or(USAGE)?,
            "--nick" => args.nick = it.next().ok_or(USAGE)?,
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
            eprintln!("chat_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let cfg = Config::builder()
        // The example's settings must win over whatever ~/.perl-anyevent-mp says.
        .norc(true)
        // A trailing `/` appends a random suffix: several guests can chat at once.
        .nodeid(format!("{}/", args.nick))
        .binds([args.bind.as_str()])
        .seeds([args.seed.as_str()])
        .secret(args.secret.as_str())
        .build()?;
    let node = Node::configure(cfg).await?;
    let server = find_server(&node, &args.seed).await?;
    println!("* joined chat server {server}");

    // The client's own port, read one message at a time. A full queue would kill the port
    // (and the server's monitor would drop us), never lose messages silently.
    let mut inbox = node.inbox(1024);
    node.snd(&server, msg!["join", inbox.port().as_str()])?;
    // Fires once if the server port dies or the connection to it is lost.
    let server_died = node.monitor(&server);
    tokio::pin!(server_died);

    let mut lines = stdin_lines();
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => node.snd(&server, msg!["say", line])?,
                None => break,
            },
            m = inbox.recv() => match m {
                Some(m) => show(&m),
                None => return Err("our port died".into()),
            },
            reason = &mut server_died => {
                return Err(format!("chat server went away: {reason}").into());
            }
        }
    }

    // End of input: leave. The reply comes after the server has handled everything we said
    // before (one sender, one port: in order), and after the broadcasts it sent us for it.
    node.cal(&server, msg!["leave", inbox.port().as_str()])
        .timeout(Duration::from_secs(5))
        .await?;
    while let Some(m) = inbox.try_recv() {
        show(&m);
    }
    println!("* left");
    node.shutdown().await;
    Ok(())
}

/// Waits (up to 10 s) until a chat server is registered, and takes the first one.
async fn find_server(node: &Node, seed: &str) -> Result<PortId, Box<dyn Error>> {
    let mut watch = node.db_mon("chat_servers")?;
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        // The first notification may be the empty family, sent before the seed connection
        // is up; the registered server then arrives as a change.
        while let Some(change) = watch.next().await {
            if let Some(key) = change.contents.keys().next() {
                return Some(key.clone());
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(key)) => Ok(key.parse()?),
        _ => Err(format!("no chat server found behind seed {seed}").into()),
    }
}

fn show(m: &Msg) {
    match (m.tag(), m.get(1).and_then(|v| v.as_str()), m.get(2)) {
        (Some("said"), Some(who), Some(text)) => {
            println!("<{who}> {}", text.as_str().unwrap_or_default())
        }
        (Some("info"), Some(text), _) => println!("* {text}"),
        _ => println!("* unexpected message {m}"),
    }
}

/// Lines of stdin, read by a plain thread (reading a terminal blocks) and handed over through
/// a small bounded channel; the channel closes at end of input.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}
