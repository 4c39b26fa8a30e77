//! The sending half of the simple sender/receiver pair (start `receiver` first).
//!
//! The sender joins the network through the receiver's well-known address (its seed), finds
//! every registered receiver port with `db_mon("receivers")`, sends each a few messages and
//! exits once they have arrived.
//!
//! ```text
//! cargo run -p aemp --example sender -- [--seed HOST:PORT] [--secret S] [--count N]
//! ```
//!
//! Defaults: seed `127.0.0.1:4040`, secret `chat`, 3 messages.

use aemp::{msg, Config, Node, PortId};
use std::error::Error;
use std::time::Duration;

const USAGE: &str =
    "usage: sender [--seed HOST:PORT] [--bind HOST:PORT] [--secret SECRET] [--count N]";

struct Args {
    seed: String,
    bind: String,
    secret: String,
    count: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: "127.0.0.1:4040".into(),
        bind: "127.0.0.1:0".into(),
        secret: "chat".into(),
        count: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seed" => args.seed = it.next().ok_or(USAGE)?,
            "--bind" => args.bind = it.next().ok_or(USAGE)?,
            "--secret" => args.secret = it.next().ok_or(USAGE)?,
            "--count" => {
                let n = it.next().ok_or(USAGE)?;
                args.count = n.parse().map_err(|_| format!("bad count {n:?}\n{USAGE}"))?;
            }
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
            eprintln!("sender: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let cfg = Config::builder()
        .norc(true)
        .nodeid("sender/")
        .binds([args.bind.as_str()])
        .seeds([args.seed.as_str()])
        .secret(args.secret.as_str())
        .build()?;
    let node = Node::configure(cfg).await?;

    // The first notification of a watch holds the whole family; it may come before the
    // connection to the seed is up (then it is empty and a later one brings the entries).
    let mut watch = node.db_mon("receivers")?;
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.next().await {
                Some(change) if !change.contents.is_empty() => return Some(change.contents),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await;
    let receivers = match found {
        Ok(Some(contents)) => contents,
        _ => return Err(format!("no receiver registered behind seed {}", args.seed).into()),
    };

    for key in receivers.keys() {
        let target: PortId = key.parse()?;
        for n in 1..=args.count {
            // snd returns at once; it never waits for the network.
            node.snd(
                &target,
                msg!["test", n, format!("hello #{n} from {}", node.id())],
            )?;
        }
        // A request with a reply port: answered only after the messages above (same sender,
        // same port: they arrive in order), so the reply means they were all delivered.
        node.cal(&target, msg!["ping"])
            .timeout(Duration::from_secs(5))
            .await?;
        println!("sent {} messages to {target}", args.count);
    }
    node.shutdown().await;
    Ok(())
}
