//! Errors as values: one enum per failure kind, never a panic on bad input.

use aemp_proto::codec::LimitError;
use aemp_proto::ids::{IdError, PortIdError};

/// The error a port handler may return; it kills the port with `("die", <text>)`.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

/// Errors of the node API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A node ID was refused.
    #[error(transparent)]
    NodeId(#[from] IdError),
    /// A port ID was refused.
    #[error(transparent)]
    PortId(#[from] PortIdError),
    /// `rcv` (or another local-only operation) was given a port of another node.
    #[error("port {0} is not a local port")]
    NotLocal(String),
    /// Node ports cannot be killed.
    #[error("cannot kill node port {0}")]
    KillNodePort(String),
    /// Messages must contain at least one element.
    #[error("empty message")]
    EmptyMessage,
    /// A node was created outside a tokio runtime (it needs one for its task).
    #[error("a node needs a tokio runtime: create it inside one (e.g. under #[tokio::main])")]
    NoRuntime,
    /// The node has been shut down.
    #[error("node is shut down")]
    Shutdown,
    /// A database family name or subkey was refused.
    #[error("database: {0}")]
    Db(String),
    /// A typed message did not have the expected shape.
    #[error(transparent)]
    Typed(#[from] aemp_proto::typed::TypedError),
    /// The configuration could not be used (bad binds or seeds, unresolvable names).
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The network could not be set up (certificate, handshake settings, listeners).
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// The operation needs a network, and this node has none (it was made by
    /// [`Node::new`](crate::Node::new), not [`Node::configure`](crate::Node::configure)).
    #[error("this node has no network (create it with Node::configure)")]
    NoNetwork,
    /// An I/O error (binding listeners and the like).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A message (or database value, spawn argument list, kill reason) that peers would
    /// refuse: nested too deep or too large for the node's
    /// [`Limits`](aemp_proto::codec::Limits). Nothing was sent or queued; a peer closes the
    /// whole connection on such a frame, so it is refused here, for local ports too (one rule
    /// for every destination).
    #[error("not sent: {0}")]
    Refused(#[from] LimitError),
}

/// Why a `cal` produced no reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalError {
    /// The timeout expired first.
    #[error("no reply: timeout")]
    Timeout,
    /// The target port died (or could not be monitored) before replying; carries the kill
    /// reason.
    #[error("no reply: target port died ({0:?})")]
    TargetDied(Vec<aemp_proto::Value>),
    /// The node shut down.
    #[error("no reply: node shut down")]
    Shutdown,
    /// The request (with its reply port) is one that peers would refuse (see
    /// [`Error::Refused`]); it was not sent.
    #[error("no reply: request not sent: {0}")]
    Refused(LimitError),
}
