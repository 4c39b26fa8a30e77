//! The AEMP transport handshake as a sans-IO state machine.
//!
//! Both sides of a connection do the same thing, whoever connected:
//!
//! 1. Write [`Handshake::initial_bytes`] (greeting line 1 and the nonce line) at once, without
//!    waiting for the peer.
//! 2. Give everything read from the socket to [`Handshake::feed`], which returns how many
//!    bytes it used, and act on [`Handshake::poll_event`]:
//!    * [`Event::PeerGreeting`]: the peer's line 1 passed the protocol, version and self
//!      checks. This is where the caller refuses a node it is already connected to (by
//!      dropping the connection; AEMP has no reject message).
//!    * [`Event::StartTls`]: both sides asked for TLS. `feed` stopped right after the peer's
//!      line 2; the rest of the stream is TLS. Run the TLS handshake in the given role, call
//!      [`Handshake::tls_started`], then keep feeding *decrypted* bytes.
//!    * [`Event::Send`]: write these bytes (our auth line) to the peer (inside TLS if active).
//!    * [`Event::Established`]: the peer's auth line verified. `feed` stopped right after it;
//!      all further bytes are the data phase in `recv_framing`.
//! 3. On any [`HandshakeError`], close the connection without writing anything.
//!
//! Timeouts are the caller's business: Perl allows `monitor_timeout` (30 s) without read
//! activity during the handshake.
//!
//! Deliberate differences from Perl 2.02, all stricter:
//! * the peer's auth method must be in our advertised `auth_accept` list (Perl does not check;
//!   with the default list the result is the same);
//! * `hmac_sha3_512` and `cleartext` never verify without a non-empty secret (Perl would compare
//!   against a token derived from an empty secret);
//! * an `aemp` greeting without a node ID is refused as unparsable;
//! * handshake lines must be UTF-8;
//! * a node whose `auth_accept` lists only `tls_*` methods requires certificate
//!   authentication: a connection without TLS fails right after the peer's line 2
//!   ([`HandshakeError::TlsRequired`]) instead of after its auth line (the wire sees the
//!   same thing: the connection closes without a message).

mod auth;
mod error;
mod greeting;

use std::collections::VecDeque;

pub use auth::{
    choose_auth, choose_framing, cleartext_token, hmac_sha3_512_token, new_nonce, own_token,
    tls_sha3_512_token, verify, Transcript, AUTH_METHODS, CLEARTEXT, HMAC_SHA3_512, KNOWN_FRAMINGS,
    NONCE_BYTES, SUPPORTED_FRAMINGS, TLS_ANON, TLS_SHA3_512,
};
pub use error::HandshakeError;
pub use greeting::Greeting;

/// The transport protocol version we speak and accept (compared numerically).
pub const PROTOCOL_VERSION: &str = "1";

/// Longest handshake line, and most unterminated data buffered while waiting for a line end
/// (Perl's `rbuf_max` during the handshake).
pub const MAX_LINE: usize = 4096;

/// The auth methods we accept by default, in Perl's order. `tls_sha3_512` must come before
/// `hmac_sha3_512`, or a Perl peer under TLS picks HMAC and then fails (docs/protocol.md §1).
pub const DEFAULT_AUTH_ACCEPT: [&str; 4] = AUTH_METHODS;

/// The auth methods we are willing to send by default (Perl's default `auth_offer`).
pub const DEFAULT_AUTH_OFFER: [&str; 2] = [TLS_SHA3_512, HMAC_SHA3_512];

/// The framings we accept by default, in order of preference: all we speak. Never `storable`.
pub const DEFAULT_FRAMINGS: [&str; 2] = SUPPORTED_FRAMINGS;

/// Our side's handshake configuration. Its `Debug` output hides the secret.
#[derive(Clone)]
pub struct HandshakeConfig {
    /// Our node ID (greeting field 3).
    pub node_id: String,
    /// The shared secret for `hmac_sha3_512`; `None` or empty means "no secret".
    pub secret: Option<Vec<u8>>,
    /// Auth methods we accept from the peer, advertised in greeting field 4.
    pub auth_accept: Vec<String>,
    /// Auth methods we are willing to send.
    pub auth_offer: Vec<String>,
    /// Framings we accept and may send, advertised in greeting field 5 in this order of
    /// preference. Only `cbor` and `json` are allowed.
    pub framings: Vec<String>,
    /// Whether we can do TLS (have a certificate). Sends `tls=1.0` in the greeting.
    pub tls_available: bool,
    /// The `provider` value, e.g. `aemp-rs-0.1`.
    pub provider: String,
    /// `aemp`, or a sub-protocol such as `aemp-dataconn` when we initiate one.
    pub protocol: String,
    /// Further key/value pairs for greeting line 1, e.g. `("dataconn_id", "b@node")`.
    pub extra_kv: Vec<(String, String)>,
}

impl std::fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("node_id", &self.node_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("auth_accept", &self.auth_accept)
            .field("auth_offer", &self.auth_offer)
            .field("framings", &self.framings)
            .field("tls_available", &self.tls_available)
            .field("provider", &self.provider)
            .field("protocol", &self.protocol)
            .field("extra_kv", &self.extra_kv)
            .finish()
    }
}

/// The shared secret, kept out of `Debug` output so that logging a handshake cannot leak it.
#[derive(Clone)]
struct Secret(Option<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(<redacted>)"
        } else {
            "None"
        })
    }
}

impl HandshakeConfig {
    /// A configuration with the defaults: Perl's auth lists, framings `cbor,json`, no TLS,
    /// protocol `aemp`, provider `aemp-rs-<crate version>`.
    pub fn new(node_id: impl Into<String>, secret: Option<Vec<u8>>) -> Self {
        let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        HandshakeConfig {
            node_id: node_id.into(),
            secret,
            auth_accept: owned(&DEFAULT_AUTH_ACCEPT),
            auth_offer: owned(&DEFAULT_AUTH_OFFER),
            framings: owned(&DEFAULT_FRAMINGS),
            tls_available: false,
            provider: concat!("aemp-rs-", env!("CARGO_PKG_VERSION")).to_owned(),
            protocol: "aemp".to_owned(),
            extra_kv: Vec::new(),
        }
    }

    /// Checks that the configuration can be written as a greeting line that Perl parses back
    /// the same way: no `;`, CR or LF in any field, no `,` in list entries, no `=` in keys,
    /// non-empty lists, only framings we implement.
    pub fn validate(&self) -> Result<(), HandshakeError> {
        let bad = |what: &str, v: &str| HandshakeError::InvalidConfig(format!("bad {what} {v:?}"));
        let plain = |v: &str, extra: &[char]| {
            !v.contains([';', '\r', '\n']) && !v.contains(|c| extra.contains(&c))
        };
        if self.protocol != "aemp" && !is_sub_protocol(&self.protocol) {
            return Err(bad("protocol", &self.protocol));
        }
        if self.node_id.is_empty() || !plain(&self.node_id, &[]) {
            return Err(bad("node id", &self.node_id));
        }
        for (what, list) in [
            ("auth_accept", &self.auth_accept),
            ("framings", &self.framings),
        ] {
            if list.is_empty() {
                return Err(HandshakeError::InvalidConfig(format!("{what} is empty")));
            }
            if let Some(e) = list.iter().find(|e| e.is_empty() || !plain(e, &[','])) {
                return Err(bad(what, e));
            }
        }
        if let Some(f) = self
            .framings
            .iter()
            .find(|f| !SUPPORTED_FRAMINGS.contains(&f.as_str()))
        {
            return Err(HandshakeError::InvalidConfig(format!(
                "framing {f:?} is not supported (only cbor and json)"
            )));
        }
        if !plain(&self.provider, &[]) {
            return Err(bad("provider", &self.provider));
        }
        for (k, v) in &self.extra_kv {
            if k.is_empty() || !plain(k, &['=']) {
                return Err(bad("key", k));
            }
            if !plain(v, &[]) {
                return Err(bad("value", v));
            }
        }
        Ok(())
    }

    /// Greeting line 1 for this configuration (without line end).
    fn line1(&self, peeraddr: &str) -> String {
        let mut kv = vec![
            ("provider".to_owned(), Some(self.provider.clone())),
            ("peeraddr".to_owned(), Some(peeraddr.to_owned())),
        ];
        // Perl adds these from a Kernel hook that only runs for the plain aemp protocol.
        if self.protocol == "aemp" {
            kv.push(("mproto".to_owned(), Some("1".to_owned())));
            kv.push(("gproto".to_owned(), Some("1".to_owned())));
        }
        if self.tls_available {
            kv.push(("tls".to_owned(), Some("1.0".to_owned())));
        }
        kv.extend(
            self.extra_kv
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone()))),
        );
        Greeting {
            protocol: self.protocol.clone(),
            version: PROTOCOL_VERSION.to_owned(),
            node_id: self.node_id.clone(),
            auth: self.auth_accept.clone(),
            framings: self.framings.clone(),
            kv,
        }
        .to_line()
    }
}

/// Perl's `^aemp-\w+$` (ASCII word characters).
fn is_sub_protocol(p: &str) -> bool {
    p.strip_prefix("aemp-").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// The result of a successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The peer's greeting line 1. Its node ID is authenticated only as far as the shared
    /// secret or TLS certificate vouch for the peer.
    pub peer: Greeting,
    /// The auth method the peer authenticated itself with (verified by us).
    pub auth_method: String,
    /// The auth method we sent.
    pub sent_auth_method: String,
    /// The framing we send in (our choice from the peer's list).
    pub send_framing: String,
    /// The framing the peer sends in (field 3 of its auth line).
    pub recv_framing: String,
    /// The peer used `tls_anon`: encrypted, but not authenticated.
    pub untrusted: bool,
    /// Whether the connection runs inside TLS.
    pub tls: bool,
    /// The effective protocol (`aemp`, or the sub-protocol the peer upgraded us to).
    pub protocol: String,
    /// Whether the peer's greeting switched us from `aemp` to a sub-protocol.
    pub upgraded: bool,
}

/// Something the caller has to act on; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's line 1 passed the protocol, version and self checks.
    PeerGreeting(Greeting),
    /// Start TLS now, as client (`true`, our nonce is lower) or server; then call
    /// [`Handshake::tls_started`].
    StartTls {
        /// Whether we are the TLS client.
        client: bool,
    },
    /// Bytes to write to the peer (our auth line, with its LF).
    Send(Vec<u8>),
    /// The handshake succeeded.
    Established(Established),
}

#[derive(Debug)]
enum State {
    WaitGreeting,
    WaitNonce,
    WaitTls,
    WaitAuth,
    Established,
    Failed(HandshakeError),
}

/// The handshake of one connection, for one side. See the [module documentation](self).
#[derive(Debug)]
pub struct Handshake {
    node_id: String,
    secret: Secret,
    auth_accept: Vec<String>,
    auth_offer: Vec<String>,
    framings: Vec<String>,
    tls_available: bool,
    /// Our protocol; replaced by the peer's sub-protocol on upgrade.
    protocol: String,
    upgraded: bool,
    own_l1: String,
    own_l2: String,
    peer: Option<Greeting>,
    peer_l1: String,
    peer_l2: String,
    tls_active: bool,
    sent_auth_method: String,
    send_framing: String,
    /// Our auth line, held back while TLS starts.
    pending_auth: Vec<u8>,
    /// Our auth line, once chosen (see [`Handshake::own_auth_line`]).
    own_auth: Vec<u8>,
    /// Unterminated data of the line being read. Invariant: at most [`MAX_LINE`] bytes
    /// (checked in `feed` before appending).
    buf: Vec<u8>,
    events: VecDeque<Event>,
    state: State,
}

impl Handshake {
    /// Starts a handshake with our greeting built from `cfg`, the peer's address as we see
    /// it (`peeraddr`, informational) and a nonce line (normally [`new_nonce`]).
    ///
    /// An invalid configuration, address or nonce leaves the handshake failed with
    /// [`HandshakeError::InvalidConfig`] ([`Handshake::error`]); `initial_bytes` is then
    /// empty and `feed` returns the error.
    pub fn new(cfg: &HandshakeConfig, peeraddr: &str, nonce: String) -> Handshake {
        let line1 = cfg.line1(peeraddr);
        let check = if peeraddr.contains([';', '\r', '\n']) {
            Err(HandshakeError::InvalidConfig(format!(
                "bad peer address {peeraddr:?}"
            )))
        } else {
            Ok(())
        };
        Self::build(cfg, line1, nonce, check)
    }

    /// Starts a handshake that sends the given line 1 and line 2 verbatim (without line
    /// ends). Meant for replaying captured transcripts in tests and for tools; the lines
    /// must not contain CR or LF and must fit in [`MAX_LINE`]. The node ID, secret, lists,
    /// TLS flag and protocol still come from `cfg`.
    pub fn with_lines(cfg: &HandshakeConfig, line1: String, line2: String) -> Handshake {
        Self::build(cfg, line1, line2, Ok(()))
    }

    fn build(
        cfg: &HandshakeConfig,
        own_l1: String,
        own_l2: String,
        check: Result<(), HandshakeError>,
    ) -> Handshake {
        let check = check.and_then(|()| cfg.validate()).and_then(|()| {
            for (what, l) in [("line 1", &own_l1), ("line 2", &own_l2)] {
                if l.contains(['\r', '\n']) || l.len() > MAX_LINE {
                    return Err(HandshakeError::InvalidConfig(format!("bad own {what}")));
                }
            }
            Ok(())
        });
        Handshake {
            node_id: cfg.node_id.clone(),
            secret: Secret(cfg.secret.clone()),
            auth_accept: cfg.auth_accept.clone(),
            auth_offer: cfg.auth_offer.clone(),
            framings: cfg.framings.clone(),
            tls_available: cfg.tls_available,
            protocol: cfg.protocol.clone(),
            upgraded: false,
            own_l1,
            own_l2,
            peer: None,
            peer_l1: String::new(),
            peer_l2: String::new(),
            tls_active: false,
            sent_auth_method: String::new(),
            send_framing: String::new(),
            pending_auth: Vec::new(),
            own_auth: Vec::new(),
            buf: Vec::new(),
            events: VecDeque::new(),
            state: match check {
                Ok(()) => State::WaitGreeting,
                Err(e) => State::Failed(e),
            },
        }
    }

    /// Our two greeting lines, each followed by LF: write them as soon as the TCP connection
    /// is up. Empty if the handshake could not be set up (see [`Handshake::new`]).
    pub fn initial_bytes(&self) -> Vec<u8> {
        if let State::Failed(HandshakeError::InvalidConfig(_)) = self.state {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.own_l1.len() + self.own_l2.len() + 2);
        out.extend_from_slice(self.own_l1.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.own_l2.as_bytes());
        out.push(b'\n');
        out
    }

    /// Our greeting line 1 (without line end).
    pub fn own_line1(&self) -> &str {
        &self.own_l1
    }

    /// Our nonce line (without line end).
    pub fn own_line2(&self) -> &str {
        &self.own_l2
    }

    /// Our auth line (with its LF), once it has been chosen after the peer's line 2; also
    /// after a failure. A Perl node sends its auth line before it reads the peer's, so a
    /// caller that holds its line back (and then sees [`HandshakeError::AuthFailure`]) may
    /// still send it before closing, for the peer to see the mismatch too.
    pub fn own_auth_line(&self) -> Option<&[u8]> {
        (!self.own_auth.is_empty()).then_some(self.own_auth.as_slice())
    }

    /// The peer's greeting, once line 1 has been accepted.
    pub fn peer(&self) -> Option<&Greeting> {
        self.peer.as_ref()
    }

    /// The effective protocol: ours, or the sub-protocol the peer upgraded us to.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// Whether the handshake has succeeded.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    /// The error the handshake failed with, if it did.
    pub fn error(&self) -> Option<&HandshakeError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The next event for the caller, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds bytes read from the peer and returns how many of them the handshake used.
    ///
    /// It stops right after the peer's line 2 when TLS has to start ([`Event::StartTls`])
    /// and right after the peer's auth line ([`Event::Established`]); bytes after that point
    /// stay with the caller (TLS records or data-phase messages). While TLS is starting and
    /// after success it uses nothing. On failure, events not yet polled are dropped (nothing
    /// more may be sent; close the connection), and later calls return the same error.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut consumed = 0;
        loop {
            match &self.state {
                State::Failed(e) => return Err(e.clone()),
                State::WaitTls | State::Established => return Ok(consumed),
                State::WaitGreeting | State::WaitNonce | State::WaitAuth => {}
            }
            let rest = &input[consumed..];
            let Some(pos) = rest.iter().position(|&b| b == b'\n') else {
                if self.buf.len() + rest.len() > MAX_LINE {
                    return Err(self.fail(HandshakeError::LineTooLong));
                }
                self.buf.extend_from_slice(rest);
                return Ok(input.len());
            };
            if self.buf.len() + pos > MAX_LINE {
                return Err(self.fail(HandshakeError::LineTooLong));
            }
            self.buf.extend_from_slice(&rest[..pos]);
            consumed += pos + 1;
            let mut line = std::mem::take(&mut self.buf);
            // AnyEvent::Handle's line regex is \015?\012: one CR before the LF is dropped.
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let result = match String::from_utf8(line) {
                Ok(line) => self.on_line(line),
                Err(_) => Err(HandshakeError::NotUtf8),
            };
            if let Err(e) = result {
                return Err(self.fail(e));
            }
        }
    }

    /// Tells the handshake that TLS is up after [`Event::StartTls`]; queues our auth line
    /// ([`Event::Send`]). From now on, feed decrypted bytes.
    pub fn tls_started(&mut self) -> Result<(), HandshakeError> {
        match self.state {
            State::WaitTls => {
                let line = std::mem::take(&mut self.pending_auth);
                self.events.push_back(Event::Send(line));
                self.state = State::WaitAuth;
                Ok(())
            }
            State::Failed(ref e) => Err(e.clone()),
            _ => Err(HandshakeError::InvalidState(
                "tls_started without a pending StartTls",
            )),
        }
    }

    fn fail(&mut self, e: HandshakeError) -> HandshakeError {
        self.events.clear();
        self.state = State::Failed(e.clone());
        e
    }

    fn on_line(&mut self, line: String) -> Result<(), HandshakeError> {
        match self.state {
            State::WaitGreeting => self.on_greeting(line),
            State::WaitNonce => self.on_nonce(line),
            State::WaitAuth => self.on_auth(line),
            _ => Err(HandshakeError::InvalidState("line outside the handshake")),
        }
    }

    /// Line 1: the protocol's checks, in Perl's order.
    fn on_greeting(&mut self, line: String) -> Result<(), HandshakeError> {
        let g = Greeting::parse(&line)?;
        if self.protocol == "aemp" && is_sub_protocol(&g.protocol) {
            self.protocol = g.protocol.clone();
            self.upgraded = true;
        }
        // A sub-protocol initiator hears plain `aemp` from a listener that has not yet seen
        // its greeting when it wrote its own.
        if g.protocol != self.protocol && g.protocol != "aemp" {
            return Err(HandshakeError::UnparsableGreeting(format!(
                "protocol {:?}",
                g.protocol
            )));
        }
        if !g.version_matches() {
            return Err(HandshakeError::VersionMismatch(g.version));
        }
        if self.protocol == "aemp" {
            if g.node_id.is_empty() {
                return Err(HandshakeError::UnparsableGreeting("no node id".into()));
            }
            if g.node_id == self.node_id {
                return Err(HandshakeError::TalkToMyself);
            }
        }
        self.peer_l1 = line;
        self.events.push_back(Event::PeerGreeting(g.clone()));
        self.peer = Some(g);
        self.state = State::WaitNonce;
        Ok(())
    }

    /// Line 2: echo check, TLS decision, choice of auth method and framing, our token.
    fn on_nonce(&mut self, line: String) -> Result<(), HandshakeError> {
        if self.peer_l1 == self.own_l1 && line == self.own_l2 {
            return Err(HandshakeError::Echo);
        }
        self.peer_l2 = line;
        let Some(peer) = self.peer.as_ref() else {
            return Err(HandshakeError::InvalidState("nonce before greeting"));
        };
        self.tls_active = self.tls_available && peer.wants_tls();
        if !self.tls_active && self.auth_accept.iter().all(|m| m.starts_with("tls_")) {
            // Whatever the peer sends would fail to verify; say why now.
            return Err(HandshakeError::TlsRequired(self.auth_accept.join(",")));
        }
        let secret = self.secret.0.as_deref().filter(|s| !s.is_empty());
        let method = choose_auth(
            &peer.auth,
            &self.auth_offer,
            self.tls_active,
            secret.is_some(),
        )?
        .to_owned();
        let framing = choose_framing(&peer.framings, &self.framings)?.to_owned();
        let transcript = Transcript {
            own_l1: &self.own_l1,
            own_l2: &self.own_l2,
            peer_l1: &self.peer_l1,
            peer_l2: &self.peer_l2,
        };
        let token = own_token(&method, secret, &transcript)?;
        let auth_line = format!("{method};{token};{framing}\n").into_bytes();
        self.own_auth.clone_from(&auth_line);
        self.sent_auth_method = method;
        self.send_framing = framing;
        if self.tls_active {
            // Perl compares the base64 texts with `lt`; the lower one connects. For UTF-8
            // strings byte order equals code point order.
            let client = self.own_l2.as_bytes() < self.peer_l2.as_bytes();
            self.pending_auth = auth_line;
            self.events.push_back(Event::StartTls { client });
            self.state = State::WaitTls;
        } else {
            self.events.push_back(Event::Send(auth_line));
            self.state = State::WaitAuth;
        }
        Ok(())
    }

    /// Line 3: the peer's auth line. Only the first three `;` fields count.
    fn on_auth(&mut self, line: String) -> Result<(), HandshakeError> {
        let mut fields = line.split(';');
        let method = fields.next().unwrap_or("");
        let token = fields.next().unwrap_or("");
        let framing = fields.next().unwrap_or("");
        let known = AUTH_METHODS.contains(&method);
        if known && !self.auth_accept.iter().any(|a| a == method) {
            return Err(HandshakeError::AuthMethodNotAccepted(method.to_owned()));
        }
        let transcript = Transcript {
            own_l1: &self.own_l1,
            own_l2: &self.own_l2,
            peer_l1: &self.peer_l1,
            peer_l2: &self.peer_l2,
        };
        verify(
            method,
            token,
            self.secret.0.as_deref(),
            self.tls_active,
            &transcript,
        )?;
        // Sub-protocols (DataConn) hand over the raw stream and ignore the framing field.
        if self.protocol == "aemp" && !SUPPORTED_FRAMINGS.contains(&framing) {
            return Err(HandshakeError::UnusableRemoteFraming(framing.to_owned()));
        }
        let Some(peer) = self.peer.clone() else {
            return Err(HandshakeError::InvalidState("auth line before greeting"));
        };
        self.events.push_back(Event::Established(Established {
            peer,
            auth_method: method.to_owned(),
            sent_auth_method: self.sent_auth_method.clone(),
            send_framing: self.send_framing.clone(),
            recv_framing: framing.to_owned(),
            untrusted: method == TLS_ANON,
            tls: self.tls_active,
            protocol: self.protocol.clone(),
            upgraded: self.upgraded,
        }));
        self.state = State::Established;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
