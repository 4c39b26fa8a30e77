//! Errors as values: one enum per failure kind, never a panic on bad input.

use aemp_proto::codec::LimitError;
use aemp_proto::ids::{IdError, PortIdError};
use aemp_proto::Value;
use std::fmt;

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
    /// A [`cal`](crate::Node::cal) produced no reply.
    #[error(transparent)]
    Cal(#[from] CalError),
    /// A data connection did not come up (see [`DataConnRequest`](crate::DataConnRequest)).
    #[error(transparent)]
    DataConn(#[from] DataConnError),
    /// An [`Inbox`](crate::Inbox)'s port is dead.
    #[error(transparent)]
    InboxClosed(#[from] InboxClosed),
    /// A TLS identity could not be built (see [`TlsError`](crate::TlsError)).
    #[error(transparent)]
    Tls(#[from] crate::transport::TlsError),
    /// A bind or seed address could not be parsed.
    #[error(transparent)]
    Addr(#[from] crate::config::AddrError),
}

/// Why a `cal` produced no reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalError {
    /// The timeout expired first.
    #[error("no reply: timeout")]
    Timeout,
    /// The target port died (or could not be monitored) before replying; carries the kill
    /// reason.
    #[error("no reply: target port died: {0}")]
    TargetDied(Reason),
    /// The node shut down.
    #[error("no reply: node shut down")]
    Shutdown,
    /// The request (with its reply port) is one that peers would refuse (see
    /// [`Error::Refused`]); it was not sent.
    #[error("no reply: request not sent: {0}")]
    Refused(LimitError),
}

/// The inbox's port is dead; carries the kill reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("inbox port died: {0}")]
pub struct InboxClosed(pub Reason);

/// Why a port died: a list of values, empty for a normal kill (by `kil` without a reason, or
/// a port that finished its work).
///
/// By convention the first element names the kind of failure, e.g. `["die", text]` for a
/// handler that failed or panicked, `["transport_error", node, text]` for a lost connection,
/// `["no_such_port", ...]` for a monitor on a port that does not exist,
/// `["shutdown", node, text]` when this node shut down.
///
/// It displays the way the `aemp` tool prints values: as a compact JSON-like list, e.g.
/// `["transport_error","n1","connect timeout"]`, and the empty (normal) reason as `normal`.
///
/// ```
/// use aemp::Reason;
/// let r = Reason::from(vec!["die".into(), "oops".into()]);
/// assert_eq!(r.to_string(), r#"["die","oops"]"#);
/// assert_eq!(r, vec!["die".into(), "oops".into()]);
/// assert_eq!(r[0].as_str(), Some("die"));
/// assert!(Reason::normal().is_normal());
/// assert_eq!(Reason::normal().to_string(), "normal");
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reason(Vec<Value>);

impl Reason {
    /// The reason of a normal kill: empty.
    pub const fn normal() -> Reason {
        Reason(Vec::new())
    }

    /// True for a normal kill (empty reason). Monitors of kind
    /// [`Monitor::Kill`](crate::Monitor::Kill) ignore these.
    pub fn is_normal(&self) -> bool {
        self.0.is_empty()
    }

    /// The reason monitors held by node `node` get when that node shuts down:
    /// `["shutdown", node, "node shut down"]`.
    pub fn shutdown(node: &str) -> Reason {
        Reason(vec![
            "shutdown".into(),
            node.into(),
            "node shut down".into(),
        ])
    }

    /// The values, as a slice.
    pub fn as_slice(&self) -> &[Value] {
        &self.0
    }

    /// The values.
    pub fn into_vec(self) -> Vec<Value> {
        self.0
    }
}

impl std::ops::Deref for Reason {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.0
    }
}

impl From<Vec<Value>> for Reason {
    fn from(v: Vec<Value>) -> Reason {
        Reason(v)
    }
}

impl From<Reason> for Vec<Value> {
    fn from(r: Reason) -> Vec<Value> {
        r.0
    }
}

impl<const N: usize> From<[Value; N]> for Reason {
    fn from(v: [Value; N]) -> Reason {
        Reason(v.into())
    }
}

impl FromIterator<Value> for Reason {
    fn from_iter<I: IntoIterator<Item = Value>>(it: I) -> Reason {
        Reason(it.into_iter().collect())
    }
}

impl IntoIterator for Reason {
    type Item = Value;
    type IntoIter = std::vec::IntoIter<Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Reason {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl PartialEq<Vec<Value>> for Reason {
    fn eq(&self, other: &Vec<Value>) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Reason> for Vec<Value> {
    fn eq(&self, other: &Reason) -> bool {
        self == &other.0
    }
}

impl PartialEq<[Value]> for Reason {
    fn eq(&self, other: &[Value]) -> bool {
        self.0.as_slice() == other
    }
}

impl fmt::Display for Reason {
    /// `normal` for the empty reason, otherwise the list in the notation of
    /// [`Value`]'s `Display` (`["die","oops"]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("normal");
        }
        f.write_str("[")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(v, f)?;
        }
        f.write_str("]")
    }
}

/// Why a data connection did not come up. Its port (see
/// [`DataConnRequest`](crate::DataConnRequest)) was killed
/// with `("AnyEvent::MP::DataConn", <message>)` ([`DataConnError::message`]), except for
/// [`DataConnError::PortDied`] and [`DataConnError::Shutdown`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DataConnError {
    /// Not up within the timeout.
    #[error("data connection timed out: {0}")]
    Timeout(String),
    /// This node has too many data connections already ([`DataConnLimits::max`](crate::DataConnLimits)).
    #[error("data connection not opened: {0}")]
    TooMany(String),
    /// The handshake failed (authentication, TLS).
    #[error("data connection handshake failed: {0}")]
    Handshake(String),
    /// No address of the other node could be reached.
    #[error("data connection failed: {0}")]
    Unreachable(String),
    /// The other node refused or gave up (it killed the port with a data connection
    /// reason): an unknown init function, too many data connections there, no listeners.
    #[error("data connection refused: {0}")]
    Refused(String),
    /// The port the data connection was opened for died (with this reason) before it came
    /// up.
    #[error("data connection abandoned: its port died ({0})")]
    PortDied(Reason),
    /// This node has no network (it was made by [`Node::new`](crate::Node::new)).
    #[error("data connection: this node has no network")]
    NoNetwork,
    /// The node shut down.
    #[error("data connection: node is shut down")]
    Shutdown,
}

impl DataConnError {
    /// The message of the kill reason `("AnyEvent::MP::DataConn", <message>)`.
    pub fn message(&self) -> String {
        match self {
            DataConnError::Timeout(m)
            | DataConnError::TooMany(m)
            | DataConnError::Handshake(m)
            | DataConnError::Unreachable(m)
            | DataConnError::Refused(m) => m.clone(),
            e => e.to_string(),
        }
    }

    pub(crate) fn from_failure(f: aemp_proto::dataconn::Failure) -> DataConnError {
        use aemp_proto::dataconn::FailureKind as K;
        match f.kind {
            K::Timeout => DataConnError::Timeout(f.message),
            K::TooMany => DataConnError::TooMany(f.message),
            K::Handshake => DataConnError::Handshake(f.message),
            K::Unreachable => DataConnError::Unreachable(f.message),
            K::NoListeners => DataConnError::Refused(f.message),
            K::NoNetwork => DataConnError::NoNetwork,
        }
    }
}
