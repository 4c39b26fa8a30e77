//! Staying connected to the seeds (PROTOCOL.md §6.2).
//!
//! Every node keeps trying to be connected to all of its seeds: the first round starts at
//! once; then a base of (1 + rand) · 0.6 s is doubled before every wait, up to
//! `monitor_timeout`; the back-off restarts whenever a seed connection is lost. A seed
//! connection is a plain dial of the address; the node ID behind it is learned from the
//! greeting (see `Network::outgoing_greeting`).

use crate::transport::{Network, NodeEvent};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Runs the seed connector of a node until the node is gone.
pub(crate) fn start(net: &Arc<Network>, seeds: Vec<SocketAddr>) {
    if seeds.is_empty() {
        return;
    }
    {
        let mut s = net.seeds.lock();
        for a in &seeds {
            s.insert(*a, None);
        }
    }
    let weak = Arc::downgrade(net);
    let mut events = net.events.subscribe();
    tokio::spawn(async move {
        let base = || Duration::from_secs_f64((1.0 + rand::thread_rng().gen::<f64>()) * 0.6);
        let mut wait = base();
        loop {
            let Some(net) = weak.upgrade() else { return };
            let max = net.cfg.monitor_timeout;
            let todo: Vec<SocketAddr> = {
                let up = net.registry.lock();
                net.seeds
                    .lock()
                    .iter()
                    .filter(|(_, node)| match node {
                        Some(n) => !up.is_up(n.as_str()),
                        None => true,
                    })
                    .map(|(a, _)| *a)
                    .collect()
            };
            for addr in &todo {
                net.dial(*addr, None);
            }
            drop(net);
            wait = (wait * 2).min(max);
            // Wait, but start over at once (with a fresh back-off) when a seed goes down.
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    ev = events.recv() => match ev {
                        Ok(NodeEvent::Down(node, _)) => {
                            let Some(net) = weak.upgrade() else { return };
                            let is_seed = net.seeds.lock().values().any(|n| n.as_ref() == Some(&node));
                            if is_seed {
                                wait = base();
                                break;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        _ => {}
                    },
                }
            }
        }
    });
}
