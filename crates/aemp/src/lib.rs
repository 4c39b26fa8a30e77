//! aemp: Erlang-style message passing, wire compatible with Perl AnyEvent::MP 2.02.
pub mod config;
pub use aemp_proto::{ids, value, Msg, NodeId, PortId, Value};
