//! TLS for AEMP connections.
//!
//! The reference (Perl, AnyEvent::TLS over OpenSSL) configures one PEM string per node, its
//! `cert` setting. That string supplies the node's private key, its certificate chain *and* the
//! set of trusted certificates. Every connection authenticates both ends with certificates:
//! the TLS server requires a client certificate, both sides check the peer's chain against the
//! PEM's certificates, and nobody checks a host name. In practice every node of a cluster uses
//! the same self-signed certificate, which therefore verifies against itself.
//!
//! [`TlsIdentity::from_pem`] turns such a string into ready rustls configurations and
//! [`start_tls`] runs the handshake in the role chosen by the nonce comparison of docs/protocol.md §1.
//!
//! # How a peer certificate is trusted
//!
//! A peer's end-entity certificate is accepted when, at the time of the handshake, it is
//! within its validity period and either
//!
//! 1. it is byte for byte one of the PEM's certificates, or
//! 2. webpki builds a valid path from it (plus the intermediates the peer sent) to one of the
//!    PEM's certificates used as trust anchors, with the standard webpki checks (signatures,
//!    validity of every certificate, basic constraints, and the extended key usage for client
//!    or server authentication when the certificate carries that extension). The name check
//!    is skipped.
//!
//! Rule 1 exists because `openssl req -x509`, which the reference's `aemp gencert` runs,
//! marks its self-signed certificates `CA:TRUE`, and webpki refuses a CA certificate as an
//! end-entity certificate. OpenSSL, on the reference side, trusts a certificate that is
//! itself in the trusted set without looking at its own signature; rule 1 is the same
//! decision. It is the only relaxation of webpki's rules. Either way the peer still proves
//! possession of the matching private key through the handshake signature, which rustls checks
//! against the certificate.
//!
//! # Versions
//!
//! TLS 1.3 and TLS 1.2 are enabled, with rustls' ring cipher suites (ECDHE with AES-GCM or
//! ChaCha20-Poly1305 only). The reference's OpenSSL offers TLS 1.2 (and 1.3 with OpenSSL
//! 1.1.1 or later), so the two stacks meet on one of them. Checked by hand against OpenSSL
//! 3.0's `s_server -Verify` and `s_client` (mutual authentication, both TLS versions, both
//! roles, with an `openssl req -x509` certificate and with an `aemp gencert` one); a live Perl
//! node is still untested.
//!
//! # Limits
//!
//! * Rule 2 goes through webpki, which accepts only X.509 v3 certificates and refuses `CA:TRUE`
//!   end-entity certificates. A certificate that is itself in the PEM (rule 1) may be of any
//!   version and carry any extensions.
//! * Encrypted private keys are not supported (the reference passes no password either).
//! * Session resumption is off (see [`TlsIdentity::from_pem`]); no CRL or OCSP checks, like
//!   the reference.

use std::fmt;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};

pub use tokio_rustls::TlsStream;

/// The server name a TLS client announces (SNI) and hands to its verifier.
///
/// AEMP peers are addressed by node ID, not by host name, and the reference checks no name,
/// so every connection uses this one fixed name. It lies under the reserved `.invalid`
/// top-level domain, so it can never name a real host.
const SNI_NAME: &str = "anyevent-mp.invalid";

/// Why a TLS identity could not be built or a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The `cert` string is not well-formed PEM (bad section markers or bad base64).
    #[error("cert: unparsable PEM: {0}")]
    Pem(String),
    /// The `cert` string holds no usable private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or
    /// `EC PRIVATE KEY` section). Encrypted keys are not supported.
    #[error("cert: no private key found in the PEM (expected an unencrypted PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)")]
    MissingKey,
    /// The `cert` string holds no `CERTIFICATE` section.
    #[error("cert: no certificate found in the PEM")]
    MissingCert,
    /// A `CERTIFICATE` section of the `cert` string does not hold a usable X.509 certificate.
    #[error("cert: certificate #{index} in the PEM is not a usable X.509 certificate: {reason}")]
    BadCert {
        /// Position of the certificate among the PEM's certificates, counting from 0.
        index: usize,
        /// What the parser rejected.
        reason: String,
    },
    /// rustls rejected the key and certificates, for instance because the private key does not
    /// belong to the first certificate or uses an unsupported algorithm.
    #[error("cert: TLS configuration rejected: {0}")]
    Config(#[source] rustls::Error),
    /// The TLS handshake failed: I/O error, protocol error, or the peer's certificate (or
    /// ours, as judged by the peer) was rejected.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
}

/// A node's TLS identity: its key, its certificate chain and the certificates it trusts, all
/// taken from its `cert` PEM string, ready for either TLS role.
///
/// Cheap to clone; the configurations are shared.
#[derive(Clone)]
pub struct TlsIdentity {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    /// [`SNI_NAME`], checked once at construction.
    server_name: ServerName<'static>,
    /// Number of certificates in the PEM, for `Debug` only (the key is never printed).
    certs: usize,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certs", &self.certs)
            .finish_non_exhaustive()
    }
}

/// The parts of a `cert` PEM string, before they become rustls configurations.
struct ParsedPem {
    key: PrivateKeyDer<'static>,
    /// Every certificate of the PEM, in PEM order. The first one is the node's own; the whole
    /// list is both the chain the node presents and its trusted set, as in the reference.
    certs: Vec<CertificateDer<'static>>,
}

impl ParsedPem {
    /// Splits `pem` into its first private key and all its certificates.
    ///
    /// Sections of other kinds (public keys, CRLs, parameters, unknown labels) are skipped,
    /// like OpenSSL does when it reads a key or a certificate from a mixed file.
    fn parse(pem: &str) -> Result<Self, TlsError> {
        let mut key = None;
        let mut certs = Vec::new();
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
            let (kind, der) = section.map_err(|e| TlsError::Pem(e.to_string()))?;
            match kind {
                SectionKind::Certificate => certs.push(CertificateDer::from(der)),
                // The first key wins, as with OpenSSL's use_PrivateKey_file.
                SectionKind::PrivateKey if key.is_none() => {
                    key = Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)));
                }
                SectionKind::RsaPrivateKey if key.is_none() => {
                    key = Some(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)));
                }
                SectionKind::EcPrivateKey if key.is_none() => {
                    key = Some(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)));
                }
                _ => {}
            }
        }
        let key = key.ok_or(TlsError::MissingKey)?;
        if certs.is_empty() {
            return Err(TlsError::MissingCert);
        }
        Ok(ParsedPem { key, certs })
    }
}

impl TlsIdentity {
    /// Builds the identity from a node's `cert` setting: a PEM string holding a private key
    /// and one or more certificates.
    ///
    /// The first certificate is the node's own and must match the key; the following ones
    /// complete its chain. All certificates are also the trusted set against which peers are
    /// verified (see the module documentation). Fails with [`TlsError::Pem`],
    /// [`TlsError::MissingKey`], [`TlsError::MissingCert`], [`TlsError::BadCert`] or
    /// [`TlsError::Config`].
    ///
    /// Session resumption is disabled in both roles: every peer is reached under the same
    /// fixed server name, so a ticket from one peer would only be offered, uselessly, to the
    /// next, and AEMP connections are long-lived anyway.
    pub fn from_pem(pem: &str) -> Result<TlsIdentity, TlsError> {
        let parsed = ParsedPem::parse(pem)?;
        let server_name = ServerName::try_from(SNI_NAME)
            .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier::new(&parsed.certs, &provider)?);
        let certs = parsed.certs.len();

        let mut client = client_builder(&provider)?
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(parsed.certs.clone(), parsed.key.clone_key())
            .map_err(TlsError::Config)?;
        // No resumption: see the doc comment.
        client.resumption = rustls::client::Resumption::disabled();

        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(parsed.certs, parsed.key)
            .map_err(TlsError::Config)?;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;

        Ok(TlsIdentity {
            client: Arc::new(client),
            server: Arc::new(server),
            server_name,
            certs,
        })
    }
}

/// A client configuration builder with the ring provider and both TLS versions, waiting for
/// the certificate verifier.
fn client_builder(
    provider: &Arc<CryptoProvider>,
) -> Result<rustls::client::danger::DangerousClientConfigBuilder, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .dangerous())
}

/// Runs the TLS handshake on `stream`, as TLS client if `client` is true (the side with the
/// lower nonce string), else as TLS server.
///
/// Both sides present the identity's certificate chain and verify the peer's; the server
/// requires a client certificate. The handshake has no timeout of its own: the caller bounds
/// it together with the rest of the AEMP handshake.
///
/// With TLS 1.3 the client finishes its part before the server has judged the client
/// certificate, so a rejected client sees `Ok` here and then an error on its first read.
///
/// On failure the stream comes back with the error, so that the caller can look at what
/// happened on it (see `connection::Prefixed::peer_sent_any`).
pub(crate) async fn start_tls<S>(
    stream: S,
    client: bool,
    id: &TlsIdentity,
) -> Result<TlsStream<S>, (TlsError, S)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if client {
        TlsConnector::from(id.client.clone())
            .connect(id.server_name.clone(), stream)
            .into_fallible()
            .await
            .map(TlsStream::from)
            .map_err(|(e, s)| (TlsError::Handshake(e), s))
    } else {
        TlsAcceptor::from(id.server.clone())
            .accept(stream)
            .into_fallible()
            .await
            .map(TlsStream::from)
            .map_err(|(e, s)| (TlsError::Handshake(e), s))
    }
}

/// A certificate of the PEM, kept for the exact-match rule with its validity period.
#[derive(Debug)]
struct Pinned {
    der: CertificateDer<'static>,
    /// notBefore, seconds since the Unix epoch.
    not_before: u64,
    /// notAfter, seconds since the Unix epoch (inclusive, RFC 5280 §4.1.2.5).
    not_after: u64,
}

/// Verifies peer certificates, in both roles, against the certificates of one PEM string.
/// See the module documentation for the rules.
#[derive(Debug)]
struct PeerVerifier {
    /// Every PEM certificate, for the exact-match rule.
    pinned: Vec<Pinned>,
    /// Every PEM certificate as a webpki trust anchor, for path building.
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    /// Subjects of the anchors, sent to clients as acceptable issuers.
    subjects: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn new(certs: &[CertificateDer<'static>], provider: &CryptoProvider) -> Result<Self, TlsError> {
        let mut pinned = Vec::with_capacity(certs.len());
        let mut anchors = Vec::with_capacity(certs.len());
        let mut subjects = Vec::with_capacity(certs.len());
        for (index, der) in certs.iter().enumerate() {
            let bad = |reason: String| TlsError::BadCert { index, reason };
            let (not_before, not_after) = validity(der).map_err(bad)?;
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| bad(format!("not usable as trust anchor: {e}")))?
                .to_owned();
            // The anchor keeps the Name without its outer SEQUENCE; the TLS message needs it whole.
            subjects.push(DistinguishedName::in_sequence(anchor.subject.as_ref()));
            anchors.push(anchor);
            pinned.push(Pinned {
                der: der.clone(),
                not_before,
                not_after,
            });
        }
        Ok(PeerVerifier {
            pinned,
            anchors,
            subjects,
            algs: provider.signature_verification_algorithms,
        })
    }

    /// Applies the two trust rules of the module documentation to a peer's chain.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<(), rustls::Error> {
        if let Some(p) = self.pinned.iter().find(|p| p.der == *end_entity) {
            let t = now.as_secs();
            if t < p.not_before {
                return Err(CertificateError::NotValidYet.into());
            }
            if t > p.not_after {
                return Err(CertificateError::Expired.into());
            }
            return Ok(());
        }
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        cert.verify_for_usage(
            self.algs.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(pki_error)?;
        Ok(())
    }
}

/// Reads a certificate's validity period as Unix seconds. Dates before 1970 cannot be
/// represented and make the certificate unusable (an error, reported as [`TlsError::BadCert`]).
fn validity(der: &CertificateDer<'_>) -> Result<(u64, u64), String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let v = &cert.tbs_certificate.validity;
    Ok((
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    ))
}

/// Maps a webpki verdict onto the rustls error that names it (and the TLS alert sent).
fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let ce = match e {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertExpired { .. } | E::InvalidCertValidity => CertificateError::Expired,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    ce.into()
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No name check: the reference does none.
        self.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // verify_require_client_cert in the reference.
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`start_tls`] without the stream on failure.
    async fn start<S>(stream: S, client: bool, id: &TlsIdentity) -> Result<TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        start_tls(stream, client, id).await.map_err(|(e, _)| e)
    }
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// Upper bound for one test handshake, so that a bug shows up as a failure, not a hang.
    const LIMIT: Duration = Duration::from_secs(20);

    /// An RSA key and certificate made by `aemp gencert` (see `tests/certs/README.md`).
    fn shared_pem() -> &'static str {
        include_str!("../../tests/certs/gencert.pem")
    }

    fn shared_id() -> TlsIdentity {
        TlsIdentity::from_pem(shared_pem()).expect("gencert PEM is a valid identity")
    }

    /// A fresh self-signed ECDSA P-256 identity (fast to make), `CA:TRUE` like the
    /// reference's certificates if `ca`: (key PEM, cert PEM).
    fn other_self_signed(cn: &str, ca: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key).expect("self-sign");
        (key.serialize_pem(), cert.pem())
    }

    type Side = Result<TlsStream<DuplexStream>, TlsError>;

    /// Runs both handshake roles against each other over an in-memory pipe.
    async fn handshake(client: &TlsIdentity, server: &TlsIdentity) -> (Side, Side) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let both = async { tokio::join!(start(a, true, client), start(b, false, server)) };
        tokio::time::timeout(LIMIT, both)
            .await
            .expect("handshake hung")
    }

    /// Sends a line each way and checks it arrives intact.
    async fn exchange(c: &mut TlsStream<DuplexStream>, s: &mut TlsStream<DuplexStream>) {
        let io = async {
            c.write_all(b"from client\n").await.expect("client write");
            c.flush().await.expect("client flush");
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).await.expect("server read");
            assert_eq!(&buf, b"from client\n");
            s.write_all(b"from server\n").await.expect("server write");
            s.flush().await.expect("server flush");
            c.read_exact(&mut buf).await.expect("client read");
            assert_eq!(&buf, b"from server\n");
        };
        tokio::time::timeout(LIMIT, io)
            .await
            .expect("exchange hung");
    }

    /// A side whose handshake "succeeded" may still have been rejected by the peer (TLS 1.3
    /// client); then its first read must fail or see the end of the stream.
    async fn assert_unusable(side: Side) {
        if let Ok(mut stream) = side {
            let mut buf = [0u8; 1];
            let read = tokio::time::timeout(LIMIT, stream.read(&mut buf))
                .await
                .expect("read hung");
            assert!(
                matches!(read, Err(_) | Ok(0)),
                "rejected peer could read: {read:?}"
            );
        }
    }

    fn assert_cert_rejected(side: &Side, what: &str) {
        match side {
            Err(TlsError::Handshake(e)) => assert!(
                e.to_string().contains(what),
                "expected a rejection naming {what:?}, got {e}"
            ),
            Err(e) => panic!("expected a handshake error, got {e}"),
            Ok(_) => panic!("handshake succeeded, expected a rejection naming {what:?}"),
        }
    }

    #[test]
    fn gencert_pem_parses_back() {
        use x509_cert::der::Decode;

        // The parameters of fresh `aemp gencert` output are checked in aemp-cli; this is
        // how the TLS layer reads such a PEM.
        let pem = shared_pem();
        let id = TlsIdentity::from_pem(pem).expect("identity");
        assert_eq!(id.certs, 1);

        let parsed = ParsedPem::parse(pem).expect("parse");
        assert!(
            matches!(parsed.key, PrivateKeyDer::Pkcs8(_)),
            "gencert key is not PKCS#8"
        );
        let cert = x509_cert::Certificate::from_der(parsed.certs[0].as_ref()).expect("x509");
        let tbs = &cert.tbs_certificate;
        assert_eq!(tbs.subject.to_string(), "CN=AnyEvent::MP");
        assert_eq!(tbs.issuer.to_string(), "CN=AnyEvent::MP");
        let (from, to) = validity(&parsed.certs[0]).expect("validity");
        let now = UnixTime::now().as_secs();
        assert!(from <= now && now <= to, "the test certificate has expired");
        // Self-signed: its own trust anchor, and byte-identical to the pinned copy.
        let v = PeerVerifier::new(&parsed.certs, &rustls::crypto::ring::default_provider())
            .expect("verifier");
        v.verify(
            &parsed.certs[0],
            &[],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
        )
        .expect("gencert certificate verifies against itself");
        // The acceptable-issuer hints sent in CertificateRequest are whole DER Names
        // (OpenSSL clients abort the handshake with decode_error otherwise).
        let hints = ClientCertVerifier::root_hint_subjects(&v);
        assert_eq!(hints.len(), 1);
        let hint = x509_cert::name::Name::from_der(hints[0].as_ref()).expect("hint is a Name");
        assert_eq!(hint, tbs.subject);
    }

    #[tokio::test]
    async fn same_pem_handshakes_in_both_roles_and_carries_bytes() {
        let id = shared_id();
        for _ in 0..2 {
            // Same identity on both ends; the loop runs the roles twice on fresh pipes.
            let (c, s) = handshake(&id, &id).await;
            let (mut c, mut s) = (c.expect("client"), s.expect("server"));
            assert_eq!(
                c.get_ref().1.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            exchange(&mut c, &mut s).await;
        }
        // And over real sockets, each socket playing the role opposite to the pipe test's
        // first end, to make sure nothing depends on the transport.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let both = async {
            let accept = async {
                let (sock, _) = listener.accept().await.expect("accept");
                start(sock, true, &id).await
            };
            let connect = async {
                let sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
                start(sock, false, &id).await
            };
            tokio::join!(accept, connect)
        };
        let (mut c, mut s) = match tokio::time::timeout(LIMIT, both).await.expect("hung") {
            (Ok(c), Ok(s)) => (c, s),
            (c, s) => panic!("TCP handshake failed: {:?} / {:?}", c.err(), s.err()),
        };
        c.write_all(b"ping").await.expect("write");
        c.flush().await.expect("flush");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn tls12_client_with_certificate_is_accepted() {
        let id = shared_id();
        let parsed = ParsedPem::parse(shared_pem()).expect("parse");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier::new(&parsed.certs, &provider).expect("verifier"));
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(parsed.certs, parsed.key)
            .expect("client auth");
        let (a, b) = tokio::io::duplex(64 * 1024);
        let connector = TlsConnector::from(Arc::new(config));
        let both = async {
            tokio::join!(
                connector.connect(id.server_name.clone(), a),
                start(b, false, &id)
            )
        };
        let (c, s) = tokio::time::timeout(LIMIT, both).await.expect("hung");
        let mut c = TlsStream::from(c.expect("TLS 1.2 client"));
        let mut s = s.expect("server accepts TLS 1.2 with client certificate");
        assert_eq!(
            s.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        exchange(&mut c, &mut s).await;
    }

    #[tokio::test]
    async fn server_with_untrusted_certificate_is_rejected() {
        let good = shared_id();
        let (bad_key, bad_cert) = other_self_signed("AnyEvent::MP", true);
        // The bad server trusts the good certificate, so only the client can object.
        let bad = TlsIdentity::from_pem(&format!("{bad_key}{bad_cert}{}", shared_pem()))
            .expect("bad identity");
        let (c, s) = handshake(&good, &bad).await;
        // webpki's verdict on an unpinned self-signed CA:TRUE certificate.
        assert_cert_rejected(
            &c,
            "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        );
        assert!(s.is_err(), "server must see the client's alert");
    }

    #[tokio::test]
    async fn client_with_untrusted_certificate_is_rejected() {
        let good = shared_id();
        let (bad_key, bad_cert) = other_self_signed("AnyEvent::MP", true);
        // The bad client trusts the good certificate, so only the server can object.
        let bad = TlsIdentity::from_pem(&format!("{bad_key}{bad_cert}{}", shared_pem()))
            .expect("bad identity");
        let (c, s) = handshake(&bad, &good).await;
        assert_cert_rejected(
            &s,
            "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        );
        assert_unusable(c).await;
    }

    #[tokio::test]
    async fn disjoint_identities_reject_each_other() {
        let good = shared_id();
        // A different subject name: with the same name webpki would try the gencert
        // certificate as issuer and fail on the signature instead (also a rejection).
        let (k, c) = other_self_signed("stranger", false);
        let other = TlsIdentity::from_pem(&format!("{k}{c}")).expect("other identity");
        // The server's certificate is judged first, so the client objects. webpki refuses the
        // unpinned CA:TRUE gencert certificate as end entity, and finds no issuer for the
        // other (non-CA) self-signed certificate.
        for (client, server, verdict) in [
            (&other, &good, "CaUsedAsEndEntity"),
            (&good, &other, "UnknownIssuer"),
        ] {
            let (c, s) = handshake(client, server).await;
            assert_cert_rejected(&c, verdict);
            assert!(s.is_err());
        }
    }

    #[tokio::test]
    async fn client_without_certificate_is_rejected() {
        let id = shared_id();
        let parsed = ParsedPem::parse(shared_pem()).expect("parse");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier::new(&parsed.certs, &provider).expect("verifier"));
        // Trusts the server, but has no certificate to show.
        let config = client_builder(&provider)
            .expect("builder")
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let connector = TlsConnector::from(Arc::new(config));
        let both = async {
            tokio::join!(
                connector.connect(id.server_name.clone(), a),
                start(b, false, &id)
            )
        };
        let (c, s) = tokio::time::timeout(LIMIT, both).await.expect("hung");
        assert_cert_rejected(&s, "no certificates");
        assert_unusable(c.map(TlsStream::from).map_err(TlsError::Handshake)).await;
    }

    #[tokio::test]
    async fn garbage_instead_of_tls_fails_cleanly() {
        let id = shared_id();
        for client in [false, true] {
            let (a, mut b) = tokio::io::duplex(64 * 1024);
            let peer = async {
                b.write_all(b"GET / HTTP/1.0\r\n\r\nthis is not TLS at all\n")
                    .await
                    .expect("write garbage");
                // Keep the pipe open until the TLS side has given up.
                let mut sink = Vec::new();
                let _ = b.read_to_end(&mut sink).await;
            };
            let tls = start(a, client, &id);
            let (res, ()) = tokio::time::timeout(LIMIT, async { tokio::join!(tls, peer) })
                .await
                .expect("hung");
            assert!(
                matches!(res, Err(TlsError::Handshake(_))),
                "client={client}: garbage must fail the handshake"
            );
        }
        // A peer that hangs up in the middle fails cleanly too.
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let res = tokio::time::timeout(LIMIT, start(a, false, &id))
            .await
            .expect("hung");
        assert!(matches!(res, Err(TlsError::Handshake(_))));
    }

    #[tokio::test]
    async fn certificates_issued_by_a_trusted_ca_are_accepted() {
        // A CA, and two nodes with their own keys and CA-issued certificates: each node's
        // PEM holds its key, its certificate and the CA, so the peer's certificate is not
        // pinned and must verify through the CA (the webpki path).
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.clone().self_signed(&ca_key).expect("ca");
        let node = |cn: &str| {
            let key = rcgen::KeyPair::generate().expect("node key");
            let mut params = rcgen::CertificateParams::default();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
            let pem = format!("{}{}{}", key.serialize_pem(), cert.pem(), ca.pem());
            TlsIdentity::from_pem(&pem).expect("node identity")
        };
        let (a, b) = (node("a"), node("b"));
        for (client, server) in [(&a, &b), (&b, &a)] {
            let (c, s) = handshake(client, server).await;
            exchange(&mut c.expect("client"), &mut s.expect("server")).await;
        }
        // A node issued by a different CA with the same name is refused (the name leads
        // webpki to the trusted CA, whose key did not sign it).
        let other_ca_key = rcgen::KeyPair::generate().expect("key");
        let other_ca = ca_params.self_signed(&other_ca_key).expect("other ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::default()
            .signed_by(&key, &other_ca, &other_ca_key)
            .expect("sign");
        let stranger = TlsIdentity::from_pem(&format!(
            "{}{}{}",
            key.serialize_pem(),
            cert.pem(),
            ca.pem()
        ))
        .expect("stranger identity");
        let (c, s) = handshake(&stranger, &a).await;
        assert_cert_rejected(&s, "invalid peer certificate: BadSignature");
        assert_unusable(c).await;
    }

    #[tokio::test]
    async fn expired_pinned_certificate_is_rejected() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let cert = params.self_signed(&key).expect("cert");
        let id = TlsIdentity::from_pem(&format!("{}{}", key.serialize_pem(), cert.pem()))
            .expect("an expired certificate still loads");
        let (c, s) = handshake(&id, &id).await;
        assert_cert_rejected(&c, "invalid peer certificate: Expired");
        assert!(s.is_err());
    }

    /// A certificate made the reference's way (`openssl req -new -nodes -x509 -newkey
    /// rsa:2048 -subj /CN=AnyEvent::MP`, OpenSSL 3.0: `CA:TRUE`, key identifiers), with the
    /// key in the traditional PKCS#1 form older OpenSSL writes. Test-only key. Valid for
    /// 36500 days instead of 3650 so that the test does not expire (this also exercises the
    /// GeneralizedTime form of notAfter).
    const OPENSSL_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEowIBAAKCAQEA52I3p2VRogwUw7qYitlhRDVHeZof3S1Jf4srsJqPZUb35hTs\n\
f+Y+o7Uf9gLBHlru0wqwsfjckLBfGvBG+mMJU78oBQ/fHf9v0bjajjbJaV+2yHDi\n\
ueCGnqe79h9YYFjkgsdsxcApY3JBMsN9Oc2SNOMHJAZGTXw8KmukL79e6Z7uh7wG\n\
dOSBboXcJ3o7ZSeR+86oS+rb2OSqmvLkLXBQJ6Rw2XrHKyaLYShur0UN2d+Kljr5\n\
xSQIAtqZEz+x2/SRYQTCU3LwRBqrLi7F/C8quQYPZnu5Ngu1MRZomMAgM90rStR5\n\
H/KDvPTSh9MzwXaIKTtWwu/jd++avgLpM0c7zQIDAQABAoIBAAjVYRaM8a7kEy7d\n\
wtEaN3JpLk9gKPNCtVmfMI3PeMX/DZvFFLpVSfLqCUxVEpZcFl4MPG6u94y2jwry\n\
PWN1wHdoBtkaoAP/Kn+xNPbU9J+HPe0tEhrSjZElCjH9RFx5SFAN2QM7sNjRFdgg\n\
SnmYdYp7WFxxuOFgatObxGrmPXNhwVcQmgaobXW0lv67r3K6bnSlynojfT/C14Uj\n\
eRHmmc+yjddOP3Edf1iZxMeGO3UOtSFKzIZM54PuuQceg7zWL4aAfMO2ACaSyagK\n\
q8uysXp5uc/V3+lhG4pbHX2nZlSb54Qu4ofogsv7drO3OsM6FZ9JQQgq1ahx2k8H\n\
A7ldwqkCgYEA+K9wAUXSfLhvybjFjpZ8Qf/zUMD2LcUYOONGewGC6jim+km8TtjR\n\
I3pXwKiyz+QsGF9w3h7VI9E/Rgm+slGm0P1OqcvNcv6frvRS14GscbzrK3ftIDuU\n\
oyxW2vCoFU8TXeFHbKmTEoxyH0hwmprE9fpz7uZCscrcD6zlZTjJbH8CgYEA7jCA\n\
S6eOBBVxEEAvB2s6b8vyWc0Oht0mwyorDzIZoQr85X0c73wwHWdq1ZfCb43u+eNO\n\
Hf4n0x+TCmhMHUdlP2X2BHSJd+RjBPDFO8sWWYEzNnH3MU3aOZF4j2tuMi7XtHAO\n\
629O/8VBJYTDjAH6IUmzhgC0yJEXWq7BJc6MIbMCgYBK5MLtjzKR3xXDgYL1qzpm\n\
wgdsBYDeTeI6l6/NMapUkZUwAW7VrBRoA9tTqTqYw1XITU33hv+XltfgZuToXRDJ\n\
FdBP8JHCFQ7QKMKeJm5hnoyQfcCLGYZtEdhifWGRcUwa1NKm1fb1+hgQdcd7uCqj\n\
DbdGdlAVrUtS6TX4ov5+TwKBgEZ9XgqFrLayrcI0bHaSmjmprrA6yjjJTAZn/VRC\n\
7GjHeq5jx2NsakTZbTmG7wjahUW4qk6f/6MwbfCfix8DGQiZISSSZHhxw4gbxRL7\n\
+EJGxSQwuAoEUzfEQFyZW4RIbpe8rf2o9EUnWC9FSiWuFBsz14gpv1a38aRpoUmS\n\
BdCXAoGBAIfQvIBbEvzxJwJ/rXsocvAgdelgrS9hbaZETLuJ83j9EOfqJXvDpxPv\n\
+a0YwKVUlLIjV2uOXP461CCqplGTBrNwNzDx3Li8JYrObm/MvhX7rF+2jNhywBVS\n\
SEYO23fzOPBtq+UNxF+Ov6lb8+dooPqaecRQ55SPPGfPBr/mvt3H\n\
-----END RSA PRIVATE KEY-----\n\
-----BEGIN CERTIFICATE-----\n\
MIIDETCCAfmgAwIBAgIUOxPecJ9+7T8fAo1OknrFZh9/5mkwDQYJKoZIhvcNAQEL\n\
BQAwFzEVMBMGA1UEAwwMQW55RXZlbnQ6Ok1QMCAXDTI2MTEyNTIxMDgwNloYDzIx\n\
MjYxMTAxMjEwODA2WjAXMRUwEwYDVQQDDAxBbnlFdmVudDo6TVAwggEiMA0GCSqG\n\
SIb3DQEBAQUAA4IBDwAwggEKAoIBAQDnYjenZVGiDBTDupiK2WFENUd5mh/dLUl/\n\
iyuwmo9lRvfmFOx/5j6jtR/2AsEeWu7TCrCx+NyQsF8a8Eb6YwlTvygFD98d/2/R\n\
uNqONslpX7bIcOK54Iaep7v2H1hgWOSCx2zFwCljckEyw305zZI04wckBkZNfDwq\n\
a6Qvv17pnu6HvAZ05IFuhdwnejtlJ5H7zqhL6tvY5Kqa8uQtcFAnpHDZescrJoth\n\
KG6vRQ3Z34qWOvnFJAgC2pkTP7Hb9JFhBMJTcvBEGqsuLsX8Lyq5Bg9me7k2C7Ux\n\
FmiYwCAz3StK1Hkf8oO89NKH0zPBdogpO1bC7+N375q+AukzRzvNAgMBAAGjUzBR\n\
MB0GA1UdDgQWBBRqniMx6/Gf2gEKjghRNJgLngquYzAfBgNVHSMEGDAWgBRqniMx\n\
6/Gf2gEKjghRNJgLngquYzAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUA\n\
A4IBAQCoS+AAeVn15Ag88i7511iBN/OeoptbCpgcIa/0CuHJ6J3ZYIQksODTvUoK\n\
9KmlHPJT7cyahyEqu3qsZAlTNKePqAjX3v+uYchZl+0RCgIf/b15PpxGMpUve1eE\n\
vPNC0tRUVVJDWw7URU2GFxLjAmLzgEX9lN5KZylcrtAKAuEqM/PKTwGd5xJpe76+\n\
kVg0u1liGJgDUGXXageIrxlVd/DJErlfw+E2MF6UkqSHyGjePruYszmd0YJuLkZj\n\
9OwEtxkt4oL9fseuGVpTO4JEq/pD3nsxNWLylXI2HsXO1ySUBuZng/K8noH6pMP9\n\
lvUqxdQhkrGYHe8quNTl6mVzB8xm\n\
-----END CERTIFICATE-----\n\
";

    #[tokio::test]
    async fn openssl_made_certificate_works_as_identity() {
        let id = TlsIdentity::from_pem(OPENSSL_PEM).expect("OpenSSL PEM with PKCS#1 key");
        let parsed = ParsedPem::parse(OPENSSL_PEM).expect("parse");
        assert!(matches!(parsed.key, PrivateKeyDer::Pkcs1(_)));
        let (c, s) = handshake(&id, &id).await;
        exchange(&mut c.expect("client"), &mut s.expect("server")).await;
        // It and the gencert certificate do not trust each other (same subject name,
        // different keys).
        let (c, s) = handshake(&id, &shared_id()).await;
        assert_cert_rejected(&c, "invalid peer certificate");
        assert!(s.is_err());
    }

    #[test]
    fn pem_errors_are_specific() {
        let (key, cert) = other_self_signed("x", true);
        let (other_key, _) = other_self_signed("y", false);
        let err = |pem: &str| TlsIdentity::from_pem(pem).expect_err("must fail");

        assert!(matches!(err(""), TlsError::MissingKey));
        assert!(matches!(err("no pem here"), TlsError::MissingKey));
        assert!(matches!(err(&cert), TlsError::MissingKey));
        assert!(matches!(err(&key), TlsError::MissingCert));
        assert!(matches!(
            err("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            TlsError::Pem(_)
        ));
        assert!(matches!(
            err(&format!("{key}-----BEGIN CERTIFICATE-----\nAAAA\n")),
            TlsError::Pem(_)
        ));
        assert!(matches!(
            err(&format!(
                "{key}{cert}-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"
            )),
            TlsError::BadCert { index: 1, .. }
        ));
        // The key must belong to the first certificate.
        assert!(matches!(
            err(&format!("{other_key}{cert}")),
            TlsError::Config(_)
        ));
        // Key after the certificate and unrelated sections around are fine.
        let pem = format!("junk\n{cert}-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n{key}");
        TlsIdentity::from_pem(&pem).expect("order and foreign sections do not matter");
        // The Debug form never shows key material.
        let shown = format!("{:?}", TlsIdentity::from_pem(&pem).expect("identity"));
        assert!(shown.starts_with("TlsIdentity") && !shown.contains("PRIVATE"));
    }
}
