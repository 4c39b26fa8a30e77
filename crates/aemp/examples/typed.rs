//! Typed messages with serde: structs and tuples in, structs and tuples out.
//!
//! Two nodes in one process, a shop and a customer, talk over TCP on 127.0.0.1. The customer
//! sends with [`Node::snd_typed`]; the shop decodes with [`MsgExt::decode`]. On the wire these
//! are ordinary messages (lists of simple values), so a Perl node could send or read them.
//!
//! * a tuple is the list of message elements: `("price", "apple", 0.25)` is
//!   `["price", "apple", 0.25]`;
//! * a struct as a whole message is its fields in declaration order (so its first field
//!   is the tag);
//! * a struct nested inside a message is a map by field name;
//! * decoding is lenient where Perl is untyped (`"8"` decodes as a number) and gives a clear
//!   error on a shape mismatch.
//!
//! ```text
//! cargo run -p aemp --example typed
//! ```

use aemp::{msg, Config, MsgExt, Node, PortId, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A whole message as a struct: `["order", id, item, qty, note]`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Order {
    tag: String,
    id: u64,
    item: String,
    qty: u32,
    /// Optional fields may also be missing at the end of the message.
    note: Option<String>,
}

/// A struct nested in a message travels as a map: `{"street": ..., "city": ...}`.
#[derive(Serialize, Deserialize, Debug)]
struct Address {
    street: String,
    city: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Errors are printed with Display (returning them from main would print Debug).
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("typed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    // The shop has no seeds (so it is global); the customer uses it as its seed.
    let shop = configure("shop/", &[]).await?;
    let seed = shop
        .listen_addrs()
        .first()
        .ok_or("shop has no listener")?
        .to_string();
    let counter = start_shop(&shop);
    let customer = configure("customer/", &[&seed]).await?;

    // Tuples.
    customer.snd_typed(&counter, &("price", "apple", 0.25))?;
    customer.snd_typed(&counter, &("price", "pear", 0.4))?;

    // A struct as the whole message.
    let order = Order {
        tag: "order".into(),
        id: 7,
        item: "apple".into(),
        qty: 3,
        note: Some("ripe ones".into()),
    };
    println!("customer: sending {}", aemp::typed::to_msg(&order)?);
    customer.snd_typed(&counter, &order)?;
    // What a Perl node might send: numbers as strings, the optional field left out.
    customer.snd(&counter, msg!["order", "8", "pear", "2"])?;

    // A struct nested in a tuple.
    let address = Address {
        street: "1 Main St".into(),
        city: "Springfield".into(),
    };
    let as_value: Value = aemp::typed::to_value(&address)?;
    println!("customer: the address travels as {as_value}");
    customer.snd_typed(&counter, &("ship", 7, &address))?;

    // A typed request with a typed reply: cal appends the reply port to the message.
    let request = aemp::typed::to_msg(&("quote", "apple", 4))?;
    let reply = customer
        .cal(&counter, request)
        .timeout(Duration::from_secs(5))
        .await?;
    let (_tag, item, total): (String, String, f64) = reply.decode()?;
    println!("customer: 4 x {item} cost {total:.2}");

    // A shape mismatch is an error value that says where and what.
    let bad = msg!["order", "seven", "apple", 3];
    match bad.clone().decode::<Order>() {
        Ok(o) => println!("unexpectedly decoded {o:?}"),
        Err(e) => println!("decoding {bad} as Order: {e}"),
    }
    let too_long = msg!["price", "apple", 0.25, "extra"];
    if let Err(e) = too_long.clone().decode::<(String, String, f64)>() {
        println!("decoding {too_long} as (String, String, f64): {e}");
    }

    customer.shutdown().await;
    shop.shutdown().await;
    Ok(())
}

async fn configure(nodeid: &str, seeds: &[&str]) -> Result<Node, Box<dyn Error>> {
    let cfg = Config::builder()
        // The example's settings must win over whatever ~/.perl-anyevent-mp says.
        .norc(true)
        .nodeid(nodeid)
        .binds(["127.0.0.1:0"])
        .seeds(seeds.iter().copied())
        .secret("typed-example")
        .build()?;
    Ok(Node::configure(cfg).await?)
}

/// The shop's counter port. Tag handlers see the message without its tag, and decode the
/// rest; the default handler gets whole messages (tag included) and decodes an [`Order`].
fn start_shop(shop: &Node) -> PortId {
    let prices: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let (p_set, p_get) = (prices.clone(), prices);
    // A handler's error kills its port; a shop should survive a bad request, so decode
    // errors are reported and the message is dropped.
    shop.port()
        .on("price", move |_cx, m| {
            match m.decode::<(String, f64)>() {
                Ok((item, price)) => {
                    println!("shop: {item} costs {price}");
                    lock(&p_set).insert(item, price);
                }
                Err(e) => println!("shop: bad price: {e}"),
            }
            Ok(())
        })
        .on("ship", |_cx, m| {
            match m.decode::<(u64, Address)>() {
                Ok((id, to)) => println!("shop: ship order {id} to {}, {}", to.street, to.city),
                Err(e) => println!("shop: bad ship: {e}"),
            }
            Ok(())
        })
        .on("quote", move |cx, m| {
            // [item, qty, reply_port]: the reply port is just another string element.
            let (item, qty, reply): (String, u32, String) = match m.decode() {
                Ok(q) => q,
                Err(e) => {
                    println!("shop: bad quote: {e}");
                    return Ok(());
                }
            };
            let Ok(reply) = reply.parse::<PortId>() else {
                return Ok(());
            };
            let price = lock(&p_get).get(&item).copied().unwrap_or(f64::NAN);
            let answer = aemp::typed::to_msg(&("quote", &item, price * f64::from(qty)))?;
            cx.snd(&reply, answer);
            Ok(())
        })
        .default(|_cx, m| {
            match m.decode::<Order>() {
                Ok(order) => println!("shop: {order:?}"),
                Err(e) => println!("shop: not an order: {e}"),
            }
            Ok(())
        })
        .build()
}

fn lock(m: &Mutex<HashMap<String, f64>>) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
    // Handlers run one at a time on the dispatcher; the lock only shares the map between two
    // handlers, and a panic in one of them leaves it consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
