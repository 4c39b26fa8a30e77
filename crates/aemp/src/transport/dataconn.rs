//! The transport side of data connections: dialling one, and handing an authenticated one
//! over to the node task (the set-up itself is `aemp_proto::dataconn`).
//!
//! A data connection runs the ordinary handshake (`connection::drive`) with protocol
//! `aemp-dataconn`: we dial one with our `dataconn_id` in the greeting; an accepted
//! connection becomes one when the peer's greeting upgrades it. Neither is a node
//! connection (no `Greeted`/`Up` for the connection registry), and its handshake must finish
//! within the data connection handshake timeout. A handshake that fails is closed and, on an
//! accepted connection, counted and logged like every refused handshake; nothing reaches the
//! node task. After authentication the socket (or its TLS stream) goes to the node task as
//! [`DataEvent::Up`], with the bytes already read past the auth line.

use super::connection::{drive, ConnError, Prefixed};
use super::tls::TlsStream;
use super::{ConnEvent, Transport};
use crate::dataconn::DataConn;
use aemp_proto::conn_registry::Verdict;
use aemp_proto::dataconn::{ID_KEY, PROTOCOL};
use aemp_proto::handshake::{Established, HandshakeConfig};
use aemp_proto::{NodeId, Str};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The byte stream under a [`DataConn`].
pub(crate) enum Io {
    /// Plain TCP: the socket itself.
    Tcp(TcpStream),
    /// TLS over the socket (the prefix of `Prefixed` was used up by the TLS handshake).
    Tls(Box<TlsStream<Prefixed<TcpStream>>>),
    /// Both ends on this node.
    Local(tokio::io::DuplexStream),
}

/// What happened to a data connection, for the node task.
pub(crate) enum DataEvent {
    /// Connection `id` authenticated with node `peer`.
    Up {
        id: Str,
        peer: NodeId,
        addr: SocketAddr,
        outgoing: bool,
        stream: DataConn,
    },
    /// A dial of `id` failed; `handshake` when the handshake failed (the peer was reached).
    Failed {
        id: Str,
        cause: String,
        handshake: bool,
    },
}

/// Our handshake settings for dialling data connection `id`.
pub(crate) fn handshake_config(hs: &HandshakeConfig, id: &str) -> HandshakeConfig {
    let mut cfg = hs.clone();
    cfg.protocol = PROTOCOL.to_owned();
    cfg.extra_kv.push((ID_KEY.to_owned(), id.to_owned()));
    cfg
}

/// A data connection authenticated: hand it to the node task. `data_id` is ours when we
/// dialled it; an accepted one carries its id in the peer's greeting.
pub(super) fn hand_over(
    net: &Arc<Transport>,
    io: Io,
    est: Established,
    rest: Vec<u8>,
    addr: SocketAddr,
    outgoing: bool,
    data_id: Option<&str>,
) -> Result<(), ConnError> {
    if est.protocol != PROTOCOL {
        return Err(ConnError::SubProtocol(est.protocol));
    }
    let Some(id) = data_id.or(est.peer.dataconn_id()).map(Str::from) else {
        return Err(ConnError::SubProtocol(format!(
            "{PROTOCOL} without {ID_KEY}"
        )));
    };
    let peer = NodeId::new(&est.peer.node_id).map_err(ConnError::PeerGreeting)?;
    // The node connection's liveness rule (data unacknowledged for a while fails the
    // connection) does not suit a stream whose reader may pause: TCP keepalive stays.
    let sock = match &io {
        Io::Tcp(s) => Some(s),
        Io::Tls(s) => Some(s.get_ref().0.get_ref()),
        Io::Local(_) => None,
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(s) = sock {
        let _ = socket2::SockRef::from(s).set_tcp_user_timeout(None);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = sock;
    tracing::debug!(%peer, %id, tls = est.tls, outgoing, "data connection authenticated");
    let stream = DataConn::new(io, rest, peer.clone(), id.to_string());
    net.report(ConnEvent::Data(Box::new(DataEvent::Up {
        id,
        peer,
        addr,
        outgoing,
        stream,
    })));
    Ok(())
}

impl Transport {
    /// Dials `addr` for data connection `id`; reports [`DataEvent::Up`] or
    /// [`DataEvent::Failed`].
    pub(crate) fn dial_data(self: &Arc<Self>, addr: SocketAddr, id: Str) {
        let t = self.clone();
        tokio::spawn(async move {
            let limit = t.cfg.data_conn.handshake_timeout;
            let result = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(t.cfg.nodelay);
                    let (_verdict, rx) = watch::channel(Verdict::Commit);
                    let mut peer = None;
                    drive(&t, stream, addr, true, 0, rx, &mut peer, Some(&id))
                        .await
                        .map_err(|e| (e.is_refused_handshake(), e.to_string()))
                }
                Ok(Err(e)) => Err((false, format!("connect to {addr} failed: {e}"))),
                Err(_) => Err((false, format!("connect to {addr} timed out"))),
            };
            if let Err((handshake, cause)) = result {
                tracing::debug!(%addr, %id, error = %cause, "data connection dial failed");
                t.report(ConnEvent::Data(Box::new(DataEvent::Failed {
                    id,
                    cause,
                    handshake,
                })));
            }
        });
    }
}
