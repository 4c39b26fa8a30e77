//! Errors of the transport handshake.
//!
//! Perl closes the socket without any message on every failure; the texts
//! here are for local logs only and follow Perl's wording where Perl has one.

use thiserror::Error;

/// Why a handshake failed. After any of these the caller closes the connection without
/// sending anything else: AEMP has no reject message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's greeting line 1 is malformed or names a protocol we do not speak.
    #[error("unparsable greeting: {0}")]
    UnparsableGreeting(String),
    /// The peer's protocol version is not numerically equal to 1.
    #[error("version mismatch (we: 1, they: {0})")]
    VersionMismatch(String),
    /// The peer's greeting carries our own node ID (a connection to ourselves).
    #[error("I refuse to talk to myself")]
    TalkToMyself,
    /// The peer sent back exactly our own line 1 and line 2 (a loopback or echo).
    #[error("peer echoed our own greeting back (loopback connection)")]
    Echo,
    /// A line (or the unterminated data buffered while waiting for one) exceeds 4096 bytes.
    #[error("line too long (more than 4096 bytes before the line end)")]
    LineTooLong,
    /// A handshake line is not valid UTF-8.
    #[error("handshake line is not valid UTF-8")]
    NotUtf8,
    /// The connection runs without TLS, and every auth method we accept needs TLS (our
    /// `auth_accept` lists only `tls_*` methods: this node requires certificate
    /// authentication). Nothing the peer could send would verify, so we stop at once.
    #[error("the peer did not start TLS, and this node accepts certificate authentication only (auth_accept {0})")]
    TlsRequired(String),
    /// The connection runs without TLS, and the peer accepts only `tls_*` auth methods
    /// (it requires certificate authentication; we have no certificate, or it has none we
    /// could use).
    #[error("the peer accepts certificate authentication only (it accepts {0}), and this connection has no TLS")]
    PeerRequiresTls(String),
    /// None of the peer's accepted auth methods is one we may send.
    #[error("no common auth type supported (peer accepts: {0})")]
    NoCommonAuth(String),
    /// The auth method picked from the peer's list cannot be sent in this mode (docs/protocol.md §1:
    /// under TLS only `tls_*`, without TLS only `hmac_sha3_512`).
    #[error("{method}: selected unsupported snd auth method ({mode})")]
    UnsupportedSendAuth {
        /// The method that was picked.
        method: String,
        /// `"with tls"` or `"without tls"`.
        mode: &'static str,
    },
    /// No TLS and no (non-empty) shared secret: nothing we could authenticate with.
    #[error("unable to handshake TLS and no shared secret configured")]
    NoSecret,
    /// The peer accepts framings we know, but none that we are configured for.
    #[error("no common framing (peer accepts: {peer}; we accept: {ours})")]
    NoCommonFraming {
        /// The peer's framing list, comma-joined.
        peer: String,
        /// Our framing list, comma-joined.
        ours: String,
    },
    /// Every framing the peer accepts is one this implementation cannot speak at all
    /// (typically a peer configured for `storable` only).
    #[error("peer only offers framings we do not support: {0}")]
    PeerFramingsUnsupported(String),
    /// The peer authenticated with a method name we do not know.
    #[error("unsupported auth method '{0}'")]
    UnsupportedAuthMethod(String),
    /// The peer's auth method is known but not in our advertised `auth_accept` list.
    #[error("auth method '{0}' is not accepted by our configuration")]
    AuthMethodNotAccepted(String),
    /// The peer's token did not verify.
    #[error("authentication failure/shared secret mismatch")]
    AuthFailure,
    /// The peer wants to send a framing we cannot decode.
    #[error("unusable remote framing '{0}'")]
    UnusableRemoteFraming(String),
    /// Our own configuration cannot produce a valid greeting.
    #[error("invalid handshake configuration: {0}")]
    InvalidConfig(String),
    /// The caller drove the state machine out of order (e.g. `tls_started` without TLS).
    #[error("handshake used out of order: {0}")]
    InvalidState(&'static str),
}
