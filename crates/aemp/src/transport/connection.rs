//! One TCP connection: drives the sans-IO handshake, then runs a reader and a writer.
//!
//! * The **writer** owns nothing but the socket's write half: senders (the kernel) encode
//!   frames straight into the connection's [`ConnTx`] buffer, and the writer takes the whole
//!   buffer at once and writes it in one go. Everything queued while a write is in progress
//!   leaves in the next single write, so batching adapts to load by itself, and with
//!   TCP_NODELAY a lone message leaves at once.
//! * The **reader** feeds the incremental decoder and hands every complete frame to the
//!   node task, one queue operation per read.
//! * Any error (bad frame, oversized message, I/O) closes this connection only, with a logged
//!   reason; the node task then fires the monitors of that node.
//!
//! Everything the connection learns is reported as a [`ConnEvent`]; whether it may send its
//! auth line (commit to this peer) it learns from its verdict channel.

use super::outbox_lock::{OutboxGuard, OutboxLock};
use super::{format_hostport, inbound_cost, ConnEvent, Frames, Transport};
use aemp_proto::codec::{self, Decoder, Framing, LimitError, Limits, Outbox};
use aemp_proto::conn_registry::Verdict;
use aemp_proto::handshake::{new_nonce, Established, Event, Handshake, HandshakeError};
use aemp_proto::value::drop_nested;
use aemp_proto::{Msg, NodeId, Str};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

/// Why the two nodes could not authenticate each other. Each text says which side's check
/// failed, as far as this side can tell: with a shared secret each side verifies the other's
/// auth line itself; with TLS a certificate is judged by the receiving side, which tells the
/// other with a TLS alert.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    /// The peer's auth line does not verify with our shared secret.
    #[error("authentication failed: shared secret mismatch")]
    SecretMismatch,
    /// The peer's `tls_sha3_512` token (or another method's) did not verify under TLS.
    #[error("authentication failed: the peer's auth token does not verify")]
    TokenMismatch,
    /// Our TLS check refused the peer's certificate.
    #[error(
        "authentication failed: the peer's certificate is not trusted by this node's PEM ({0})"
    )]
    CertNotTrusted(String),
    /// The peer's TLS check refused our certificate (its alert).
    #[error("authentication failed: the peer refused this node's certificate (not trusted by its PEM; TLS alert {0})")]
    CertRefusedByPeer(String),
    /// The peer closed the connection in the middle of the TLS handshake, without an alert:
    /// what a peer does when it refuses our certificate and its alert is lost.
    #[error("authentication failed: the peer ended the TLS handshake (it probably does not trust this node's certificate)")]
    TlsAborted,
    /// We accept certificate authentication only and the peer did not start TLS.
    #[error("authentication failed: {0}")]
    TlsRequired(HandshakeError),
    /// The peer accepts certificate authentication only and we could not do TLS with it.
    #[error("authentication failed: {0}")]
    PeerRequiresTls(HandshakeError),
    /// The peer authenticated with a method our `auth_accept` does not list.
    #[error("authentication failed: {0}")]
    MethodNotAccepted(HandshakeError),
}

impl AuthError {
    /// The authentication failure a TLS error stands for, if it is one: our verifier refused
    /// the peer's certificate, or the peer's alert says it refused ours.
    fn from_tls_io(e: &std::io::Error) -> Option<AuthError> {
        use tokio_rustls::rustls::{AlertDescription as A, Error as R};
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return Some(AuthError::TlsAborted);
        }
        match e.get_ref()?.downcast_ref::<R>()? {
            R::InvalidCertificate(c) => Some(AuthError::CertNotTrusted(format!("{c:?}"))),
            R::NoCertificatesPresented => {
                Some(AuthError::CertNotTrusted("the peer sent none".into()))
            }
            R::AlertReceived(
                a @ (A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
                | A::AccessDenied),
            ) => Some(AuthError::CertRefusedByPeer(format!("{a:?}"))),
            _ => None,
        }
    }
}

/// Why a connection ended. The text of each is what the monitors of the peer see as the
/// third element of `("transport_error", node, text)`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// The nodes could not authenticate each other.
    #[error("{0}")]
    Auth(AuthError),
    /// The handshake refused what the peer sent.
    #[error("handshake: {0}")]
    Handshake(HandshakeError),
    /// Starting TLS in the handshake state machine failed.
    #[error("{0}")]
    TlsStart(HandshakeError),
    /// The peer asked for TLS, but this node has no certificate.
    #[error("TLS requested but no certificate configured")]
    TlsUnconfigured,
    /// The TLS handshake did not finish within `monitor_timeout`.
    #[error("TLS handshake timeout")]
    TlsTimeout,
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(super::tls::TlsError),
    /// The peer asked for TLS a second time.
    #[error("TLS requested twice")]
    TlsTwice,
    /// The peer's greeting carries an unusable node ID.
    #[error("peer greeting: {0}")]
    PeerGreeting(aemp_proto::ids::IdError),
    /// The connection registry closed this connection (another one to the peer is kept).
    #[error("{0}")]
    Refused(&'static str),
    /// No input within `monitor_timeout` during the handshake.
    #[error("handshake timeout")]
    HandshakeTimeout,
    /// The peer closed the connection during the handshake.
    #[error("{}", aemp_proto::peers::CLOSED_DURING_HANDSHAKE)]
    ClosedDuringHandshake,
    /// The node this connection belonged to is gone.
    #[error("node is gone")]
    NodeGone,
    /// More than the send queue limit (bytes) waited to be written to the peer: the
    /// connection is dropped with everything queued (see [`ConnTx::send`]).
    #[error("{}", aemp_proto::peers::send_queue_over(*.0))]
    SendQueueOver(usize),
    /// An authenticated connection of a sub-protocol this node does not serve.
    #[error("sub-protocol {0} is not served")]
    SubProtocol(String),
    /// The negotiated framing is not one this node can use.
    #[error("unusable {which} framing {name}")]
    UnusableFraming {
        /// `send` or `remote`.
        which: &'static str,
        /// The framing's name.
        name: String,
    },
    /// A frame could not be decoded (the connection is closed; frames before it were
    /// delivered).
    #[error("protocol error: {0}")]
    Protocol(aemp_proto::codec::DecodeError),
    /// The peer closed the connection.
    #[error("EOF from peer")]
    Eof,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ConnError {
    /// The error for a handshake failure; `tls` tells whether the connection runs in TLS.
    fn handshake(e: HandshakeError, tls: bool) -> ConnError {
        match e {
            HandshakeError::AuthFailure if tls => ConnError::Auth(AuthError::TokenMismatch),
            HandshakeError::AuthFailure => ConnError::Auth(AuthError::SecretMismatch),
            e @ HandshakeError::TlsRequired(_) => ConnError::Auth(AuthError::TlsRequired(e)),
            e @ HandshakeError::PeerRequiresTls(_) => {
                ConnError::Auth(AuthError::PeerRequiresTls(e))
            }
            e @ HandshakeError::AuthMethodNotAccepted(_) => {
                ConnError::Auth(AuthError::MethodNotAccepted(e))
            }
            e => ConnError::Handshake(e),
        }
    }

    /// A peer that greeted us and then reset the connection closed it with our auth line
    /// unread: the same refusal as a close ("already connected", see
    /// `aemp_proto::peers`' refused connections), whichever of the two reached us first.
    fn reset_after_greeting(self, greeted: bool) -> ConnError {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        match self {
            ConnError::Io(e)
                if greeted
                    && matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) =>
            {
                ConnError::ClosedDuringHandshake
            }
            e => e,
        }
    }

    /// An I/O error inside TLS may be the peer's alert about our certificate.
    fn in_tls(self) -> ConnError {
        match self {
            // With TLS 1.3 the client is done before the server judged its certificate: a
            // server that refuses it closes the connection before its auth line.
            ConnError::ClosedDuringHandshake => ConnError::Auth(AuthError::TlsAborted),
            ConnError::Io(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                match AuthError::from_tls_io(&e) {
                    Some(a) => ConnError::Auth(a),
                    None => ConnError::Io(e),
                }
            }
            ConnError::Tls(super::tls::TlsError::Handshake(e)) => {
                match AuthError::from_tls_io(&e) {
                    Some(a) => ConnError::Auth(a),
                    None => ConnError::Tls(super::tls::TlsError::Handshake(e)),
                }
            }
            e => e,
        }
    }

    /// Whether this node refused the peer's handshake (counted and logged on accepted
    /// connections): not a lost race between two connections, a timeout or a peer that
    /// went away.
    pub(crate) fn is_refused_handshake(&self) -> bool {
        // A node that dials itself (its own address among the seeds) is no peer refused.
        if let ConnError::Handshake(HandshakeError::TalkToMyself | HandshakeError::Echo) = self {
            return false;
        }
        matches!(
            self,
            ConnError::Auth(_)
                | ConnError::Handshake(_)
                | ConnError::TlsStart(_)
                | ConnError::TlsUnconfigured
                | ConnError::Tls(_)
                | ConnError::TlsTwice
                | ConnError::PeerGreeting(_)
                | ConnError::UnusableFraming { .. }
        )
    }
}

/// Write buffers above this size are not kept for reuse after a write (a burst of large
/// messages should not pin its peak size per connection forever; below this, reuse avoids
/// re-growing the buffer for every large frame).
const KEEP_BUFFER: usize = 4 * 1024 * 1024;

/// First and largest read buffer of a connection: small while idle, grown when reads fill it.
const READ_MIN: usize = 16 * 1024;
const READ_MAX: usize = 256 * 1024;

/// The sending side of an established connection, shared by the node task and the writer.
pub(crate) struct ConnTx {
    pub id: u64,
    /// The node at the other end.
    pub peer: NodeId,
    framing: Framing,
    /// What the peer accepts (the node's limits: one rule for both directions).
    limits: Limits,
    /// Encoded frames waiting for the writer; large strings are kept by reference.
    buf: OutboxLock<Outbox>,
    notify: Notify,
    closed: AtomicBool,
    /// Messages queued on this connection. Changed only with `buf`'s lock held, so a load
    /// and a store do (not a read-modify-write: those cost tens of cycles each, per
    /// message); the atomic type lets statistics read it without the lock.
    pub msgs_out: AtomicU64,
    /// Bytes written to the socket (data phase).
    pub bytes_out: AtomicU64,
    /// Messages received on this connection.
    pub msgs_in: AtomicU64,
    /// Bytes received (data phase).
    pub bytes_in: AtomicU64,
    /// Signalled when the writer takes the queued bytes, for senders waiting for the queue to
    /// shrink.
    written: Notify,
    /// Frames in `buf` (changed only with its lock held, like `msgs_out`).
    frames_queued: AtomicU64,
    /// Frames written to the socket.
    pub msgs_written: AtomicU64,
    /// The close is an orderly one (see [`ConnTx::finish`]).
    graceful: AtomicBool,
    /// Set (and `abort` signalled) to end the connection at once.
    aborted: AtomicBool,
    abort: Notify,
    /// Bytes that may wait for the peer, queued and being written ([`usize::MAX`]: no
    /// limit).
    queue_limit: usize,
    /// The busy mark of [`ConnTx::writable`]: [`BUSY_LIMIT`], or a quarter of a smaller
    /// `queue_limit`.
    busy: usize,
    /// Bytes the writer took from `buf` and is writing (stored with the lock held when it
    /// takes them; 0 once written).
    in_flight: AtomicUsize,
    /// The connection was aborted because the queue went over `queue_limit`.
    overflowed: AtomicBool,
    /// How far the connection is on its way out.
    state: watch::Sender<LinkState>,
    /// Message tracing: every message queued here is logged (`NetConfig::trace`).
    trace: bool,
}

/// How far a connection is on its way out (see [`ConnTx::finish`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LinkState {
    /// Carrying messages.
    Open,
    /// Everything queued was written and our side closed in order (TLS `close_notify`, then
    /// TCP FIN); waiting for the peer to close its side.
    Flushed,
    /// The connection is gone.
    Ended,
}

/// Frames per [`Frames`] chunk: one read may bring thousands.
const CHUNK: usize = 32;

/// Bytes per frame assumed when a chunk's vector is sized from what is buffered: small
/// messages take a few dozen bytes (R1's take 60 in CBOR); smaller ones grow the vector.
const MIN_FRAME_GUESS: usize = 16;

/// Above this many queued bytes a connection counts as busy (see `Node::writable`), like
/// Erlang's distribution buffer busy limit.
pub(crate) const BUSY_LIMIT: usize = 1024 * 1024;

impl ConnTx {
    /// A connection to `peer` whose queue may hold `queue_limit` bytes (`None`: no limit).
    pub(crate) fn new(
        id: u64,
        framing: Framing,
        limits: Limits,
        peer: NodeId,
        trace: bool,
        queue_limit: Option<usize>,
    ) -> ConnTx {
        let queue_limit = queue_limit.unwrap_or(usize::MAX);
        ConnTx {
            id,
            peer,
            framing,
            limits,
            buf: OutboxLock::new(Outbox::default()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            msgs_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            msgs_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            written: Notify::new(),
            frames_queued: AtomicU64::new(0),
            msgs_written: AtomicU64::new(0),
            graceful: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            abort: Notify::new(),
            queue_limit,
            busy: BUSY_LIMIT.min(queue_limit / 4),
            in_flight: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            state: watch::Sender::new(LinkState::Open),
            trace,
        }
    }

    /// Encodes `[port, msg…]` into the write buffer, if the peer accepts it: the full check
    /// of [`Limits::check_frame`] for this connection's framing, for messages that were not
    /// checked where they entered the node (what the node's state machines send). A refused
    /// message is logged and dropped; nothing of it is written.
    ///
    /// Returns true when this woke the writer (the buffer was empty).
    pub(crate) fn send(&self, port: &str, mut msg: Msg) -> bool {
        if let Err(e) = self.limits.check_frame(self.framing, port, &msg.0) {
            tracing::warn!(peer = %self.peer, port, error = %e, "message not sent");
            drop_nested(msg);
            return false;
        }
        self.encode(port, &mut msg)
    }

    /// Encodes `[port, msg…]` for a message that passed the node's entry check, which is
    /// exact for [`Framing::PREFERRED`] (CBOR). A JSON connection checks the JSON size
    /// again, exactly (escapes can make it larger than the CBOR form); cheap unless the
    /// message is several MiB. Nothing of a refused message is written.
    ///
    /// `msg` is left to the caller, who drops what is left of it (its large strings are
    /// moved into the queue): taken by reference, a message is not copied from frame to
    /// frame of the send path, where each copy of a just-built message read it back before
    /// its stores had landed (a store-forwarding stall, in `perf annotate` of the sender).
    ///
    /// Returns whether this woke the writer (the buffer was empty).
    #[inline]
    pub(crate) fn send_checked(&self, port: &str, msg: &mut Msg) -> Result<bool, LimitError> {
        if self.framing != Framing::PREFERRED {
            self.limits.check_frame(self.framing, port, &msg.0)?;
        }
        Ok(self.encode(port, msg))
    }

    /// Encodes `[port, msg…]` into the write buffer. Never blocks on the network. Large
    /// strings of `msg` are moved into the queue instead of being copied (see
    /// [`codec::encode_frame_owned`]).
    ///
    /// The send queue limit: when the bytes queued and being written are over it after this
    /// message (and the message is not alone), the connection is aborted at once with
    /// [`ConnError::SendQueueOver`]: everything queued, this message included, is dropped and
    /// nothing more is written (see [`ConnTx::overflow`]). The check is one comparison.
    ///
    /// Returns true when this woke the writer (the buffer was empty).
    fn encode(&self, port: &str, msg: &mut Msg) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        if self.trace {
            trace_send(&self.peer, port, msg);
        }
        let was_empty = {
            let mut b = self.buf.lock();
            let was_empty = b.is_empty();
            codec::encode_frame_owned(self.framing, port, &mut msg.0, &mut b);
            bump_locked(&self.frames_queued);
            if b.len() + self.in_flight.load(Ordering::Relaxed) > self.queue_limit {
                return self.overflow(b, was_empty);
            }
            bump_locked(&self.msgs_out);
            was_empty
        };
        if was_empty {
            self.notify.notify_one();
        }
        was_empty
    }

    /// The queue went over the limit with the message just encoded into `b` (`was_empty`:
    /// the buffer was empty before it). A message alone (nothing queued or being written
    /// before it) is let through, however large. Otherwise the connection is aborted: the
    /// flags are set with the lock held, so the writer, which checks them when it takes the
    /// buffer, writes nothing queued from now on (a sender that got past the `closed` check
    /// before may still add a frame: it is never written either); the queue is dropped
    /// outside the lock.
    #[cold]
    #[inline(never)]
    fn overflow(&self, mut b: OutboxGuard<'_, Outbox>, was_empty: bool) -> bool {
        if was_empty && self.in_flight.load(Ordering::Relaxed) == 0 {
            bump_locked(&self.msgs_out);
            drop(b);
            self.notify.notify_one();
            return true;
        }
        let dropped = std::mem::take(&mut *b);
        self.overflowed.store(true, Ordering::Relaxed);
        self.aborted.store(true, Ordering::Relaxed);
        self.closed.store(true, Ordering::Relaxed);
        drop(b);
        tracing::warn!(
            peer = %self.peer,
            limit = self.queue_limit,
            "send queue over its limit: connection dropped"
        );
        drop(dropped);
        self.abort();
        false
    }

    /// Why the connection was aborted: its queue overflowed, or the node is going away.
    fn abort_error(&self) -> ConnError {
        if self.overflowed.load(Ordering::Relaxed) {
            ConnError::SendQueueOver(self.queue_limit)
        } else {
            ConnError::NodeGone
        }
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.buf.lock().len()
    }

    /// Waits until fewer than [`BUSY_LIMIT`] bytes (or a quarter of a smaller send queue
    /// limit) are queued, or the connection closed.
    pub(crate) async fn writable(&self) {
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.queued_bytes() < self.busy || self.closed.load(Ordering::Relaxed) {
                return;
            }
            written.await;
        }
    }

    /// Makes the writer stop (and with it the connection) once it has written what is
    /// queued.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.notify.notify_one();
        self.written.notify_waiters();
    }

    /// Closes the connection in order (the node shuts down): nothing more is queued; the
    /// writer writes what is, then closes our side (TLS `close_notify`, then TCP FIN), and
    /// the connection reads (and drops) what the peer still sends until the peer closes its
    /// side too, so that no reset can destroy data the peer has not read yet. Follow it
    /// with [`ConnTx::state`].
    pub(crate) fn finish(&self) {
        self.graceful.store(true, Ordering::Relaxed);
        self.close();
    }

    /// Ends the connection at once, whatever is still queued.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Relaxed);
        self.abort.notify_one();
        self.close();
    }

    /// Resolves when [`ConnTx::abort`] was called.
    async fn aborted(&self) {
        let woken = self.abort.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if !self.aborted.load(Ordering::Relaxed) {
            woken.await;
        }
    }

    /// Where the connection is on its way out.
    pub(crate) fn state(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    /// Messages queued on this connection and not (yet) written to its socket.
    pub(crate) fn unwritten(&self) -> u64 {
        let out = self.msgs_out.load(Ordering::Relaxed);
        out.saturating_sub(self.msgs_written.load(Ordering::Relaxed))
    }
}

/// Adds one to a counter that is changed only with the outbox lock held (see
/// [`ConnTx::msgs_out`]): a load and a store, no read-modify-write.
#[inline(always)]
fn bump_locked(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The trace line of a message queued for port `port` of `peer`.
#[cold]
#[inline(never)]
fn trace_send(peer: &NodeId, port: &str, msg: &Msg) {
    use aemp_proto::trace::{bounded_display, TRACE_MAX_CHARS};
    let text = bounded_display(msg, TRACE_MAX_CHARS);
    let sep = if port.is_empty() { "" } else { "#" };
    tracing::info!(target: "aemp::trace", "snd {peer}{sep}{port}: {text}");
}

enum Phase {
    Tls { client: bool, leftover: Vec<u8> },
    Done(Box<Established>, Vec<u8>),
}

/// Runs one connection from TCP up to close. The connection was registered as `id` and
/// learns from `verdict` whether it may send its auth line.
pub(crate) async fn run(
    t: Arc<Transport>,
    stream: TcpStream,
    addr: SocketAddr,
    outgoing: bool,
    id: u64,
    verdict: watch::Receiver<Verdict>,
) {
    let _ = stream.set_nodelay(t.cfg.nodelay);
    set_liveness(&stream, t.cfg.monitor_timeout);
    let span = tracing::info_span!("conn", id, addr = %addr, outgoing);
    let mut peer: Option<NodeId> = None;
    let result = drive(&t, stream, addr, outgoing, id, verdict, &mut peer, None)
        .instrument(span.clone())
        .await;
    t.remove_live(id);
    // This node closes the connection itself: no sign that the peer refused anything.
    let refused_input = matches!(
        result,
        Err(ConnError::Protocol(_) | ConnError::SendQueueOver(_))
    );
    let refused_handshake = matches!(&result, Err(e) if e.is_refused_handshake());
    let text = match result {
        Ok(()) => "connection closed".to_string(),
        Err(e) => e.to_string(),
    };
    let _enter = span.enter();
    if refused_handshake && !outgoing {
        t.refused_handshake(addr, peer.as_ref(), &text);
    }
    match &peer {
        Some(peer) => tracing::debug!(peer = %peer, reason = %text, "connection ended"),
        None => tracing::debug!(reason = %text, "connection ended before greeting"),
    }
    t.report(ConnEvent::Closed {
        id,
        node: peer,
        addr,
        outgoing,
        text,
        refused_input,
    });
}

/// After the handshake AEMP has no read timeout and the reference sends no keepalives, so a
/// peer that vanishes (power loss, partition) is only noticed by TCP. Make TCP notice in
/// bounded time instead of hours: keepalive probes after `monitor_timeout` of silence (every
/// 5 s, 3 tries), and `TCP_USER_TIMEOUT` so that data unacknowledged for that long fails the
/// connection too. Both are invisible to the peer, so this stays compatible with Perl nodes.
fn set_liveness(stream: &TcpStream, monitor_timeout: Duration) {
    let sock = socket2::SockRef::from(stream);
    let idle = monitor_timeout.max(Duration::from_secs(1));
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(Duration::from_secs(5).min(idle))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&ka);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = sock.set_tcp_user_timeout(Some(idle + Duration::from_secs(15)));
}

/// Drives one connection: the handshake, then the data phase of a node connection, or the
/// hand-over of a data connection (`data_id`: we dial one, with that id; an accepted
/// connection becomes one when the peer's greeting upgrades it, see [`super::dataconn`]).
#[allow(clippy::too_many_arguments)]
pub(super) async fn drive(
    net: &Arc<Transport>,
    mut stream: TcpStream,
    addr: SocketAddr,
    outgoing: bool,
    id: u64,
    mut verdict: watch::Receiver<Verdict>,
    peer: &mut Option<NodeId>,
    data_id: Option<&str>,
) -> Result<(), ConnError> {
    let data_cfg;
    let cfg = match data_id {
        Some(dc) => {
            data_cfg = super::dataconn::handshake_config(&net.hs, dc);
            &data_cfg
        }
        None => &net.hs,
    };
    let mut hs = Handshake::new(cfg, &format_hostport(&addr), new_nonce());
    if let Some(e) = hs.error() {
        return Err(ConnError::handshake(e.clone(), false));
    }
    write(&mut stream, &hs.initial_bytes()).await?;
    let mut ctx = HsCtx {
        net,
        addr,
        outgoing,
        id,
        verdict: &mut verdict,
        peer,
        tls: false,
        auth_sent: false,
        deadline: data_id
            .map(|_| tokio::time::Instant::now() + net.cfg.data_conn.handshake_timeout),
    };
    let plain = handshake(&mut ctx, &mut stream, &mut hs, Vec::new()).await;
    match plain.map_err(|e| e.reset_after_greeting(ctx.peer.is_some()))? {
        Phase::Done(est, rest) if est.protocol != "aemp" => {
            let io = super::dataconn::Io::Tcp(stream);
            super::dataconn::hand_over(net, io, *est, rest, addr, outgoing, data_id)
        }
        Phase::Done(est, rest) => {
            data_phase(net, stream, est, rest, id, ctx.peer, ctx.verdict).await
        }
        Phase::Tls { client, leftover } => {
            let identity = net.tls.clone().ok_or(ConnError::TlsUnconfigured)?;
            let pre = Prefixed::new(leftover, stream);
            let started = tokio::time::timeout(
                ctx.read_limit(),
                super::tls::start_tls(pre, client, &identity),
            )
            .await
            .map_err(|_| ConnError::TlsTimeout)?;
            let mut tls = match started {
                Ok(tls) => tls,
                Err((e, pre)) => return Err(tls_start_failed(e, &pre)),
            };
            hs.tls_started().map_err(ConnError::TlsStart)?;
            ctx.tls = true;
            let phase = handshake(&mut ctx, &mut tls, &mut hs, Vec::new())
                .await
                .map_err(ConnError::in_tls)?;
            match phase {
                Phase::Done(est, rest) if est.protocol != "aemp" => {
                    let io = super::dataconn::Io::Tls(Box::new(tls));
                    super::dataconn::hand_over(net, io, *est, rest, addr, outgoing, data_id)
                }
                Phase::Done(est, rest) => {
                    data_phase(net, tls, est, rest, id, ctx.peer, ctx.verdict).await
                }
                Phase::Tls { .. } => Err(ConnError::TlsTwice),
            }
        }
    }
}

/// Why starting TLS failed. A peer that greeted us and then closed the connection without
/// sending anything of TLS refused the connection before TLS began: the reference closes a
/// connection from a node it is already connected to right after reading our first
/// greeting line. A plain connection reports that refusal as
/// [`ConnError::ClosedDuringHandshake`] (re-dialled at once, see `aemp_proto::peers`), and
/// so does this. A peer that ends the handshake after TLS records came from it is a TLS
/// failure ([`ConnError::in_tls`]: a refused certificate, possibly with its alert lost).
fn tls_start_failed<S>(e: super::tls::TlsError, pre: &Prefixed<S>) -> ConnError {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if let super::tls::TlsError::Handshake(io) = &e {
        let closed = matches!(
            io.kind(),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
        );
        if closed && !pre.peer_sent_any() {
            return ConnError::ClosedDuringHandshake;
        }
    }
    ConnError::Tls(e).in_tls()
}

/// What the handshake loop needs to know about its connection.
struct HsCtx<'a> {
    net: &'a Arc<Transport>,
    addr: SocketAddr,
    outgoing: bool,
    id: u64,
    verdict: &'a mut watch::Receiver<Verdict>,
    peer: &'a mut Option<NodeId>,
    /// The connection runs in TLS.
    tls: bool,
    /// Our auth line was written.
    auth_sent: bool,
    /// When the handshake must be done: set for data connections (from the start when we
    /// dial one, from the peer's greeting when it upgrades an accepted connection).
    deadline: Option<tokio::time::Instant>,
}

impl HsCtx<'_> {
    /// How long the next step of the handshake may wait: `monitor_timeout` without read
    /// activity, and no later than the deadline.
    fn read_limit(&self) -> Duration {
        let idle = self.net.cfg.monitor_timeout;
        match self.deadline {
            Some(d) => idle.min(d.saturating_duration_since(tokio::time::Instant::now())),
            None => idle,
        }
    }
}

async fn write<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8]) -> Result<(), ConnError> {
    s.write_all(b).await?;
    Ok(s.flush().await?)
}

/// Feeds the handshake until it asks for TLS or is established.
///
/// Our auth line is held back until the node task's connection registry lets this connection
/// commit (`aemp_proto::conn_registry`); meanwhile the peer's auth line is still read and
/// verified, so the registry learns when the peer has committed to this connection.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &mut HsCtx<'_>,
    stream: &mut S,
    hs: &mut Handshake,
    mut input: Vec<u8>,
) -> Result<Phase, ConnError> {
    let mut buf = [0u8; 4096];
    let mut held: Option<Vec<u8>> = None;
    let mut est: Option<Established> = None;
    loop {
        let mut off = 0;
        loop {
            let mut progressed = false;
            while let Some(ev) = hs.poll_event() {
                progressed = true;
                match ev {
                    Event::PeerGreeting(g) => {
                        let node = NodeId::new(&g.node_id).map_err(ConnError::PeerGreeting)?;
                        if hs.protocol() != "aemp" {
                            // A data connection (ours, or upgraded by the peer's greeting):
                            // no node connection, and a deadline for the whole handshake.
                            if ctx.deadline.is_none() {
                                ctx.deadline = Some(
                                    tokio::time::Instant::now()
                                        + ctx.net.cfg.data_conn.handshake_timeout,
                                );
                            }
                        } else if g.protocol == "aemp" {
                            ctx.net.report(ConnEvent::Greeted {
                                id: ctx.id,
                                node: node.clone(),
                                addr: ctx.addr,
                                outgoing: ctx.outgoing,
                            });
                            *ctx.peer = Some(node);
                        }
                    }
                    Event::Send(b) => held = Some(b),
                    Event::StartTls { client } => {
                        return Ok(Phase::Tls {
                            client,
                            leftover: input.split_off(off),
                        })
                    }
                    Event::Established(e) => {
                        if ctx.peer.is_some() {
                            ctx.net.report(ConnEvent::PeerCommitted { id: ctx.id });
                        }
                        est = Some(e);
                    }
                }
            }
            if est.is_none() && off < input.len() {
                let used = match hs.feed(&input[off..]) {
                    Ok(n) => n,
                    Err(e) => {
                        if ctx.outgoing && e == HandshakeError::TalkToMyself {
                            ctx.net.report(ConnEvent::ReachedSelf { addr: ctx.addr });
                        }
                        // Like a Perl node, whose auth line always leaves before it reads
                        // the peer's: a peer with another secret learns it from our line.
                        // A greeting read in the same call as the failing line is known,
                        // though its event was dropped: the failure concerns that node.
                        if ctx.peer.is_none() && hs.protocol() == "aemp" {
                            *ctx.peer = hs
                                .peer()
                                .filter(|g| g.protocol == "aemp")
                                .and_then(|g| NodeId::new(&g.node_id).ok());
                        }
                        let unsent = !ctx.auth_sent && e == HandshakeError::AuthFailure;
                        if let (true, Some(b)) = (unsent, hs.own_auth_line()) {
                            if !matches!(*ctx.verdict.borrow(), Verdict::Close(_)) {
                                let _ = write(stream, b).await;
                            }
                        }
                        return Err(ConnError::handshake(e, ctx.tls));
                    }
                };
                off += used;
                progressed |= used > 0;
            }
            if !progressed {
                break;
            }
        }
        input.drain(..off);
        if let Some(b) = &held {
            let verdict = if ctx.peer.is_some() {
                *ctx.verdict.borrow_and_update()
            } else {
                Verdict::Commit // sub-protocol connections are not node connections
            };
            match verdict {
                Verdict::Commit => {
                    write(stream, b).await?;
                    ctx.auth_sent = true;
                    if ctx.peer.is_some() {
                        ctx.net.report(ConnEvent::Committed { id: ctx.id });
                    }
                    held = None;
                }
                Verdict::Close(why) => return Err(ConnError::Refused(why)),
                Verdict::Pending => {}
            }
        }
        if held.is_none() {
            if let Some(e) = est.take() {
                return Ok(Phase::Done(Box::new(e), input));
            }
        }
        let waiting = held.is_some();
        tokio::select! {
            r = tokio::time::timeout(ctx.read_limit(), stream.read(&mut buf)) => {
                let n = r
                    .map_err(|_| ConnError::HandshakeTimeout)??;
                if n == 0 {
                    return Err(ConnError::ClosedDuringHandshake);
                }
                input.extend_from_slice(&buf[..n]);
            }
            changed = ctx.verdict.changed(), if waiting => {
                if changed.is_err() {
                    return Err(ConnError::NodeGone);
                }
            }
        }
    }
}

async fn data_phase<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    net: &Arc<Transport>,
    stream: S,
    est: Box<Established>,
    leftover: Vec<u8>,
    id: u64,
    peer: &mut Option<NodeId>,
    verdict: &watch::Receiver<Verdict>,
) -> Result<(), ConnError> {
    let Some(node) = peer.clone() else {
        // A sub-protocol (DataConn) connection: not a node connection.
        return Err(ConnError::SubProtocol(est.protocol.clone()));
    };
    let send = Framing::from_name(&est.send_framing).ok_or_else(|| ConnError::UnusableFraming {
        which: "send",
        name: est.send_framing.clone(),
    })?;
    let recv = Framing::from_name(&est.recv_framing).ok_or_else(|| ConnError::UnusableFraming {
        which: "remote",
        name: est.recv_framing.clone(),
    })?;
    if let Verdict::Close(why) = *verdict.borrow() {
        return Err(ConnError::Refused(why));
    }
    tracing::info!(peer = %node, send = send.name(), recv = recv.name(), auth = %est.auth_method, "connection up");
    let tx = Arc::new(ConnTx::new(
        id,
        send,
        net.cfg.limits,
        node.clone(),
        net.cfg.trace,
        net.cfg.send_queue_limit,
    ));
    net.add_live(&tx);
    net.report(ConnEvent::Up {
        id,
        node: node.clone(),
        tx: tx.clone(),
    });
    let (mut rd, wr) = tokio::io::split(stream);
    let src = Arc::new(node);
    let end = tokio::select! {
        r = read_loop(net, &mut rd, recv, leftover, src, &tx) => r,
        r = write_loop(net, wr, tx.clone()) => match r {
            Ok(true) => {
                // Our side is closed in order: the peer closes its side once it has read
                // everything (what it sends meanwhile is dropped: the node is going away).
                tx.state.send_replace(LinkState::Flushed);
                tokio::select! {
                    () = drain(&mut rd) => {}
                    () = tx.aborted() => {}
                }
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        },
        () = tx.aborted() => Err(tx.abort_error()),
    };
    tx.close();
    tx.state.send_replace(LinkState::Ended);
    end
}

/// Reads until the peer closes its side (or the connection fails), dropping what comes.
async fn drain<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    net: &Arc<Transport>,
    rd: &mut R,
    framing: Framing,
    leftover: Vec<u8>,
    src: Arc<NodeId>,
    tx: &ConnTx,
) -> Result<(), ConnError> {
    let Some(sink) = net.sink() else {
        return Err(ConnError::NodeGone);
    };
    let mut dec = Decoder::new(framing, net.cfg.limits);
    dec.feed(&leftover);
    // Reads go straight into the decoder's buffer; the read size grows while reads fill it.
    let mut chunk = READ_MIN;
    // The vector the next frames are decoded into; kept while a read brings no whole frame.
    let mut frames: Vec<(Str, Msg)> = Vec::new();
    loop {
        // Frames go to the dispatcher in chunks, so that it can answer the first ones
        // before it has handled them all (it runs in slices, see `kernel::run`). Frames
        // before a bad one are still delivered; then the connection closes.
        let mut chunks = Vec::new();
        let (mut n, mut cost) = (0, 0);
        let mut buffered = dec.buffered();
        let decoded = loop {
            if frames.capacity() == 0 {
                // Room for the frames the buffered bytes may hold, up to a chunk: grown
                // frame by frame, the vector would be reallocated and its frames (about
                // 100 bytes each) copied up to four times per chunk.
                frames.reserve_exact((dec.buffered() / MIN_FRAME_GUESS).clamp(1, CHUNK));
            }
            let got = dec.frames_into_max(&mut frames, CHUNK);
            if !frames.is_empty() {
                // The bytes these frames took off the decoder.
                let now = dec.buffered();
                let bytes = buffered.saturating_sub(now);
                buffered = now;
                let c = inbound_cost(frames.len(), bytes);
                n += frames.len();
                cost += c;
                chunks.push(Frames {
                    src: src.clone(),
                    frames: std::mem::take(&mut frames),
                    cost: c,
                });
            }
            match got {
                Ok(k) if k == CHUNK => continue,
                other => break other,
            }
        };
        if n > 0 {
            net.counters.msgs_in.fetch_add(n as u64, Ordering::Relaxed);
            tx.msgs_in.fetch_add(n as u64, Ordering::Relaxed);
            net.inbound.add(cost);
            sink.frames(chunks);
            net.inbound.wait_drained().await;
        }
        if let Err(e) = decoded {
            net.counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
            return Err(ConnError::Protocol(e));
        }
        let n = if let Some((body, missing)) = dec.tail_room() {
            // The long last string of a frame: read straight into its own buffer, which
            // becomes the string (no copy, no zero-filling).
            use bytes::BufMut;
            rd.read_buf(&mut body.limit(missing)).await?
        } else {
            let limit = dec.read_limit();
            let room = dec.spare(limit.map_or(chunk, |l| l.min(chunk)));
            let room_len = room.len();
            let room = match limit {
                Some(l) => &mut room[..room_len.min(l)],
                None => room,
            };
            let n = rd.read(room).await?;
            dec.commit(n);
            if n == room_len && chunk < READ_MAX {
                chunk *= 2;
            }
            n
        };
        if n == 0 {
            return Err(ConnError::Eof);
        }
        net.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        tx.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Writes what senders queue until the connection is closed and everything is written;
/// `Ok(true)` when the close was an orderly one ([`ConnTx::finish`]) and our side of the
/// connection is closed.
async fn write_loop<W: AsyncWrite + Unpin>(
    net: &Arc<Transport>,
    mut wr: W,
    tx: Arc<ConnTx>,
) -> Result<bool, ConnError> {
    let mut out = Outbox::default();
    loop {
        let frames = {
            let mut buf = tx.buf.lock();
            if tx.aborted.load(Ordering::Relaxed) {
                // Nothing queued after an abort may leave (no holes after an overflow).
                return Err(tx.abort_error());
            }
            std::mem::swap(&mut *buf, &mut out);
            tx.in_flight.store(out.len(), Ordering::Relaxed);
            // With the lock held, like every change (see `ConnTx::frames_queued`).
            let frames = tx.frames_queued.load(Ordering::Relaxed);
            tx.frames_queued.store(0, Ordering::Relaxed);
            frames
        };
        if out.is_empty() {
            if tx.closed.load(Ordering::Relaxed) {
                if tx.graceful.load(Ordering::Relaxed) {
                    // TLS: close_notify first; then TCP FIN.
                    wr.shutdown().await?;
                    return Ok(true);
                }
                return Ok(false);
            }
            tx.notify.notified().await;
            continue;
        }
        // The queue is empty again: waiting senders may refill it while this write runs.
        tx.written.notify_waiters();
        let len = out.len();
        if out.big.is_empty() {
            wr.write_all(&out.bytes).await
        } else {
            write_pieces(&mut wr, &out).await
        }?;
        net.counters
            .bytes_out
            .fetch_add(len as u64, Ordering::Relaxed);
        tx.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
        tx.msgs_written.fetch_add(frames, Ordering::Relaxed);
        tx.in_flight.store(0, Ordering::Relaxed);
        out.clear();
        if out.bytes.capacity() > KEEP_BUFFER {
            out.bytes = Vec::new();
        }
    }
}

/// Writes an outbox with large strings in it: vectored writes over its pieces, resumed
/// wherever a write stopped.
async fn write_pieces<W: AsyncWrite + Unpin>(wr: &mut W, out: &Outbox) -> std::io::Result<()> {
    let pieces: Vec<&[u8]> = out.pieces().collect();
    let (mut i, mut off) = (0, 0);
    while i < pieces.len() {
        let mut slices: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(pieces.len() - i);
        slices.push(std::io::IoSlice::new(&pieces[i][off..]));
        slices.extend(pieces[i + 1..].iter().map(|p| std::io::IoSlice::new(p)));
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let left = pieces[i].len() - off;
            if n < left {
                off += n;
                n = 0;
            } else {
                n -= left;
                i += 1;
                off = 0;
            }
        }
    }
    Ok(())
}

/// A stream that first yields bytes already read (those after the nonce line when TLS
/// starts), then reads from the inner stream.
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
    /// A read of the inner stream brought bytes.
    inner_bytes: bool,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed {
            prefix,
            pos: 0,
            inner,
            inner_bytes: false,
        }
    }

    /// Whether the peer sent anything past its plain handshake lines: a prefix (what
    /// arrived together with them) or bytes read since.
    pub(crate) fn peer_sent_any(&self) -> bool {
        !self.prefix.is_empty() || self.inner_bytes
    }

    /// The inner stream.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.inner_bytes && buf.filled().len() > before {
            self.inner_bytes = true;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl aemp_proto::peers::Link for ConnTx {
    #[inline]
    fn send(&self, port: &str, msg: Msg) -> bool {
        ConnTx::send(self, port, msg)
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn close(&self) {
        ConnTx::close(self)
    }
}
